"""Test support: the real ``agent-server`` binary with a throw-away home, and a mock Responses API
upstream on 127.0.0.1 that streams the SSE transcripts in ``clients/fixtures/``."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Awaitable, Dict, List, TypeVar

import asyncio

CLIENTS_DIR = Path(__file__).resolve().parents[2]
FIXTURES_DIR = CLIENTS_DIR / "fixtures"


def server_bin() -> str:
    """``$AGENT_SERVER_BIN``, else the workspace's debug build."""
    return os.environ.get("AGENT_SERVER_BIN") or str(CLIENTS_DIR.parent / "target" / "debug" / "agent-server")


def server_env(home: Path, **extra: str) -> Dict[str, str]:
    """This process's environment without OpenAI or agent-server settings, plus a private home."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OPENAI_") and not k.startswith("AGENT_SERVER_") and k != "RUST_LOG"
    }
    env["AGENT_SERVER_HOME"] = str(home)
    env.update(extra)
    return env


class MockUpstream:
    """Answers each ``POST /v1/responses`` with the next transcript, recording every request."""

    def __init__(self, fixtures: List[str]) -> None:
        self.bodies = [(FIXTURES_DIR / name).read_bytes() for name in fixtures]
        self.requests: List[Dict[str, Any]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                upstream.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.path != "/v1/responses" or not upstream.bodies:
                    payload = json.dumps({"error": {"message": f"mock upstream has no answer for {self.path}"}}).encode()
                    self.send_response(500)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                sse = upstream.bodies.pop(0)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(sse)))
                self.end_headers()
                self.wfile.write(sse)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # Keep test output clean.

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class MockIssuer:
    """An OAuth issuer for the device-code login: the first user-code request is refused (device
    login disabled), later ones hand out ``ABCD-1234``; polls stay pending."""

    def __init__(self) -> None:
        issuer = self
        self.user_code_requests = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers.get("content-length") or 0))
                status, payload = 404, b""
                if self.path == "/api/accounts/deviceauth/usercode":
                    issuer.user_code_requests += 1
                    if issuer.user_code_requests > 1:
                        status = 200
                        payload = json.dumps(
                            {"device_auth_id": "dev-1", "user_code": "ABCD-1234", "interval": "1"}
                        ).encode()
                elif self.path == "/api/accounts/deviceauth/token":
                    status = 403
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # Keep test output clean.

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


T = TypeVar("T")

#: A guard against a hung test, not a timed assertion.
TEST_TIMEOUT = 60.0


def run(coroutine: Awaitable[T]) -> T:
    """Runs one async test body on a fresh event loop."""
    return asyncio.run(asyncio.wait_for(coroutine, TEST_TIMEOUT))
