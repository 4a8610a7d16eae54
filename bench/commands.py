#!/usr/bin/env python3
"""Command spawn overhead: how long the server takes to run a trivial command, per sandbox mode.

Build first:   cargo build --release -p agent-server
Then run:      python3 bench/commands.py [--binary PATH] [--commands N] [--json]

One turn per sandbox mode (readOnly, workspaceWrite, dangerFullAccess; policy `never`): a local
HTTP upstream answers the first request with N `shell` calls of `["true"]` and later requests
with a final message. The figure is each command item's `durationMs` (the server's own clock,
from spawning the command to the end of its output: namespaces, mounts, capability drop,
seccomp, Landlock and the exec of `true` included), plus the whole turn's wall time per command.

Only the Python 3 standard library is used. Linux only.
"""

import argparse
import http.server
import json
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import DEFAULT_BINARY, Server, percentile, sse_frame  # noqa: E402


def response(resp_id, items):
    """A Responses SSE body whose output is `items`."""
    base = {"id": resp_id, "object": "response", "created_at": 1760000000, "status": "in_progress",
            "model": "gpt-5-codex", "output": [], "usage": None}
    frames = [sse_frame({"type": "response.created", "sequence_number": 0, "response": base})]
    for n, item in enumerate(items):
        frames.append(sse_frame({"type": "response.output_item.done", "sequence_number": n + 1,
                                 "output_index": n, "item": item}))
    done = dict(base, status="completed", output=items, usage={
        "input_tokens": 1, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 1,
        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 2})
    frames.append(sse_frame({"type": "response.completed", "sequence_number": len(items) + 1,
                             "response": done}))
    return "".join(frames).encode()


class Upstream:
    """First POST: the calls; every later POST: the final message."""

    def __init__(self, commands):
        calls = [{"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}", "name": "shell",
                  "arguments": json.dumps({"command": ["true"]}), "status": "completed"}
                 for n in range(commands)]
        bodies = [response("resp_calls", calls)]
        final = response("resp_final", [{"id": "msg_1", "type": "message", "status": "completed",
                                          "role": "assistant", "content": [
                                              {"type": "output_text", "annotations": [],
                                               "text": "done"}]}])
        outer = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = bodies[0] if outer.requests == 0 else final
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def one_mode(binary, sandbox, commands, tmp):
    upstream = Upstream(commands)
    home = tempfile.mkdtemp(prefix=f"cmd-{sandbox}-", dir=tmp)
    cwd = tempfile.mkdtemp(prefix="cwd-", dir=tmp)
    env = {"OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream.port}/v1"}
    server = Server(binary, home, env, cwd=cwd)
    try:
        server.initialize()
        session = server.request(1, "session/new", {"cwd": cwd, "approvalPolicy": "never",
                                                    "sandbox": sandbox})
        start = time.perf_counter()
        server.send({"jsonrpc": "2.0", "id": 2, "method": "session/submit",
                     "params": {"sessionId": session["sessionId"], "text": "run"}})
        data = server.read_lines_until(lambda buf: b'"turnCompleted"' in buf and buf.endswith(b"\n"),
                                       timeout=600)
        elapsed = time.perf_counter() - start
    finally:
        server.close()
        upstream.close()
    durations, failed = [], 0
    for line in data.splitlines():
        if not line.strip():
            continue
        event = json.loads(line).get("params", {}).get("event", {})
        item = event.get("item", {})
        if event.get("type") == "itemCompleted" and item.get("type") == "commandExecution":
            durations.append(item["durationMs"])
            failed += item.get("exitCode") != 0
    if len(durations) != commands or failed:
        raise SystemExit(f"{sandbox}: {len(durations)} commands ran, {failed} failed; "
                         f"stderr: {server.stderr_tail()}")
    return {"median_ms": statistics.median(durations), "p95_ms": percentile(durations, 95),
            "turn_ms_per_command": elapsed * 1000 / commands}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=DEFAULT_BINARY)
    parser.add_argument("--commands", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="agent-server-bench-") as tmp:
        for sandbox in ["dangerFullAccess", "readOnly", "workspaceWrite"]:
            results[sandbox] = one_mode(args.binary, sandbox, args.commands, tmp)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return
    print(f"{'mode':<18} {'median ms':>10} {'p95 ms':>8} {'turn ms/cmd':>12}   ({args.commands} x `true`)")
    for sandbox, r in results.items():
        print(f"{sandbox:<18} {r['median_ms']:>10} {r['p95_ms']:>8} {r['turn_ms_per_command']:>12.2f}")


if __name__ == "__main__":
    main()
