"""The client against the real ``agent-server`` binary: lifecycle, auth, session bookkeeping and
error replies (everything that needs no model)."""

from __future__ import annotations

import asyncio
import json
import stat
from datetime import datetime
from pathlib import Path
from typing import Any, List

import pytest

from agent_server_client import AgentServerClient, AgentServerError, ConnectionClosedError, SyncClient
from support import CLIENTS_DIR, MockIssuer, run, server_bin, server_env

LOGGED_OUT = {
    "authMode": None,
    "source": None,
    "email": None,
    "planType": None,
    "accountId": None,
    "lastRefresh": None,
    "requiresOpenaiAuth": True,
    "error": None,
}
API_KEY_FROM_FILE = {**LOGGED_OUT, "authMode": "apiKey", "source": "authFile"}
CLIENT_INFO = {"name": "py-test", "version": "9.9.9"}


def client_for(home: Path, **env: str) -> AgentServerClient:
    return AgentServerClient(server_bin(), env=server_env(home, **env))


def test_initialize_reports_server_framing_home_and_auth(home: Path) -> None:
    async def body() -> None:
        async with client_for(home) as client:
            result = await client.initialize({"clientInfo": CLIENT_INFO})
            version = result["serverInfo"]["version"]
            assert result == {
                "protocolVersion": 1,
                "serverInfo": {"name": "agent-server", "version": version},
                "capabilities": {"approvals": False, "framing": "ndjson"},
                "userAgent": f"agent-server/{version} (linux; x86_64) py-test/9.9.9",
                "home": str(home),
                "auth": LOGGED_OUT,
            }

    run(body())


def test_initialize_declares_approvals_when_a_handler_is_set(home: Path) -> None:
    async def body() -> None:
        async with client_for(home) as client:
            client.on_approval_request(lambda params: {"decision": "deny"})
            result = await client.initialize()
            assert result["capabilities"] == {"approvals": True, "framing": "ndjson"}

    run(body())


def test_initialize_errors(home: Path) -> None:
    async def body() -> None:
        async with client_for(home) as client:
            with pytest.raises(AgentServerError) as unsupported:
                await client.initialize({"protocolVersion": 99})
            assert (unsupported.value.code, unsupported.value.data) == (
                -32602,
                {"kind": "unsupportedProtocolVersion", "supported": [1]},
            )
            await client.initialize({"protocolVersion": 1})
            with pytest.raises(AgentServerError) as again:
                await client.initialize()
            assert (again.value.code, again.value.kind) == (-32600, "alreadyInitialized")

        async with client_for(home) as client:
            assert await client.auth_status() == LOGGED_OUT
            with pytest.raises(AgentServerError) as late:
                await client.initialize()
            assert (late.value.code, late.value.kind) == (-32600, "initializeNotFirst")

    run(body())


def test_an_env_api_key_shows_in_auth_status_with_the_token_on_request(home: Path) -> None:
    async def body() -> None:
        async with client_for(home, OPENAI_API_KEY="sk-env-test") as client:
            await client.initialize()
            env_key = {**LOGGED_OUT, "authMode": "apiKey", "source": "env"}
            assert await client.auth_status() == env_key
            assert await client.auth_status({"includeToken": True}) == {**env_key, "authToken": "sk-env-test"}

    run(body())


def test_login_api_key_writes_auth_json_and_announces_the_change(home: Path) -> None:
    async def body() -> None:
        async with client_for(home) as client:
            await client.initialize()
            changes: List[Any] = []
            logged_in = asyncio.Event()
            logged_out = asyncio.Event()

            def on_change(status: Any) -> None:
                changes.append(status)
                (logged_in if status["authMode"] == "apiKey" else logged_out).set()

            client.on_notification("auth/statusChanged", on_change)
            assert await client.login_api_key({"apiKey": "sk-file-test"}) == {}
            await logged_in.wait()
            assert await client.auth_status({"includeToken": True}) == {**API_KEY_FROM_FILE, "authToken": "sk-file-test"}
            auth_file = home / "auth.json"
            assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
            stored = json.loads(auth_file.read_text())
            assert (stored["auth_mode"], stored["OPENAI_API_KEY"]) == ("apikey", "sk-file-test")

            assert await client.logout() == {}
            await logged_out.wait()
            assert await client.auth_status() == LOGGED_OUT
            assert changes == [API_KEY_FROM_FILE, LOGGED_OUT]
            assert not auth_file.exists()

    run(body())


def test_wrong_params_unknown_methods_and_unknown_sessions(home: Path) -> None:
    async def body() -> None:
        async with client_for(home) as client:
            await client.initialize()
            with pytest.raises(AgentServerError) as invalid:
                await client.request("auth/loginApiKey", {})
            assert (invalid.value.code, invalid.value.kind, (invalid.value.data or {}).get("field")) == (
                -32602,
                "invalidParams",
                "apiKey",
            )
            with pytest.raises(AgentServerError) as unknown:
                await client.request("no/such", {})
            assert (unknown.value.code, unknown.value.kind) == (-32601, "methodNotFound")
            assert await client.list_sessions() == {"sessions": [], "nextCursor": None}
            models = (await client.list_models())["models"]
            codex = next(m for m in models if m["id"] == "gpt-5-codex")
            assert {k: v for k, v in codex.items() if k != "description"} == {
                "id": "gpt-5-codex",
                "displayName": "gpt-5-codex",
                "provider": "openai",
                "contextWindow": 272000,
                "defaultReasoningEffort": "medium",
                "reasoningEfforts": ["low", "medium", "high"],
                "inputModalities": ["text", "image"],
                "isDefault": True,
            }
            assert [m["id"] for m in models if m["isDefault"]] == ["gpt-5-codex"]
            for call in (
                client.close_session({"sessionId": "no-such-session"}),
                client.interrupt({"sessionId": "no-such-session"}),
            ):
                with pytest.raises(AgentServerError) as missing:
                    await call
                assert (missing.value.code, missing.value.kind) == (-32602, "sessionNotFound")
            assert await client.cancel_login({"loginId": "no-such-login"}) == {"status": "notFound"}

    run(body())


def test_sessions_need_auth(home: Path) -> None:
    async def body() -> None:
        async with client_for(home) as client:
            await client.initialize()
            with pytest.raises(AgentServerError) as caught:
                await client.new_session({})
            assert (caught.value.code, caught.value.kind) == (-32000, "authRequired")

    run(body())


def test_new_list_and_close_sessions(home: Path, workdir: Path) -> None:
    async def body() -> None:
        async with client_for(home, OPENAI_API_KEY="test") as client:
            await client.initialize()
            session = await client.new_session({"cwd": str(workdir), "approvalPolicy": "never", "sandbox": "readOnly"})
            with pytest.raises(AgentServerError) as no_turn:
                await client.steer({"sessionId": session["sessionId"], "text": "more"})
            assert (no_turn.value.code, no_turn.value.kind) == (-32002, "noRunningTurn")
            assert session == {
                "sessionId": session["sessionId"],
                "cwd": str(workdir),
                "model": "gpt-5-codex",
                "modelProvider": "openai",
                "approvalPolicy": "never",
                "sandbox": "readOnly",
                "createdAt": session["createdAt"],
                "status": "idle",
                "title": None,
                "updatedAt": session["updatedAt"],
                "ephemeral": False,
                "archived": False,
                "loaded": True,
                "turnCount": 0,
                "instructionSources": [],
            }
            datetime.fromisoformat(session["createdAt"].replace("Z", "+00:00"))
            assert await client.list_sessions() == {"sessions": [session], "nextCursor": None}
            assert await client.close_session({"sessionId": session["sessionId"]}) == {}
            assert await client.list_sessions() == {"sessions": [], "nextCursor": None}

    run(body())


def test_a_cancelled_request_leaves_the_connection_usable(home: Path) -> None:
    async def body() -> None:
        async with client_for(home) as client:
            await client.initialize()
            task = asyncio.ensure_future(client.list_sessions())
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await client.list_sessions() == {"sessions": [], "nextCursor": None}

    run(body())


def test_close_shuts_down_with_status_0(home: Path) -> None:
    async def body() -> None:
        client = client_for(home)
        await client.start()
        await client.initialize()
        assert await client.close() == 0
        assert client.closed
        with pytest.raises(ConnectionClosedError):
            await client.list_sessions()

    run(body())


def test_a_missing_binary_names_agent_server_bin(tmp_path: Path) -> None:
    async def body() -> None:
        with pytest.raises(ConnectionClosedError, match="AGENT_SERVER_BIN"):
            await AgentServerClient(str(tmp_path / "no-such-binary")).start()

    run(body())


def test_a_server_that_stops_at_start_shows_its_stderr(home: Path) -> None:
    (home / "config.toml").write_text("model = [unclosed\n")

    async def body() -> None:
        client = AgentServerClient(server_bin(), args=["--home", str(home)], env=server_env(home))
        await client.start()
        with pytest.raises(ConnectionClosedError) as caught:
            await client.initialize()
        assert caught.value.returncode == 2
        assert "config.toml" in caught.value.stderr
        await client.close()

    run(body())


def test_sync_client(home: Path) -> None:
    with SyncClient(server_bin(), env=server_env(home), timeout=30) as client:
        result = client.initialize({"clientInfo": CLIENT_INFO})
        assert result["capabilities"] == {"approvals": False, "framing": "ndjson"}
        assert client.auth_status() == LOGGED_OUT
        assert client.list_sessions() == {"sessions": [], "nextCursor": None}
        with pytest.raises(AgentServerError) as caught:
            client.close_session({"sessionId": "no-such-session"})
        assert caught.value.kind == "sessionNotFound"
    assert client.client.returncode == 0


def test_device_code_login_shows_the_url_and_code_and_a_disabled_issuer_is_device_code_unavailable(
    home: Path,
) -> None:
    issuer = MockIssuer()

    async def body() -> None:
        async with client_for(home, AGENT_SERVER_AUTH_ISSUER=issuer.base_url) as client:
            await client.initialize()
            with pytest.raises(AgentServerError) as refused:
                await client.login_chatgpt({"flow": "deviceCode"})
            assert (refused.value.code, refused.value.kind) == (-32010, "deviceCodeUnavailable")

            completions: "asyncio.Queue[Any]" = asyncio.Queue()
            client.on_notification("auth/loginChatGPTComplete", completions.put_nowait)
            started = await client.login_chatgpt({"flow": "deviceCode"})
            datetime.fromisoformat(str(started.get("expiresAt")).replace("Z", "+00:00"))
            assert started == {
                "loginId": started["loginId"],
                "verificationUrl": f"{issuer.base_url}/codex/device",
                "userCode": "ABCD-1234",
                "expiresAt": started.get("expiresAt"),
            }
            assert await client.cancel_login({"loginId": started["loginId"]}) == {"status": "cancelled"}
            assert await completions.get() == {
                "loginId": started["loginId"],
                "success": False,
                "error": "the login was cancelled",
            }

    try:
        run(body())
    finally:
        issuer.stop()


def test_rate_limits_without_a_chatgpt_login_are_all_null(home: Path) -> None:
    async def body() -> None:
        async with client_for(home) as client:
            await client.initialize()
            assert await client.rate_limits({"refresh": True}) == {
                "primary": None,
                "secondary": None,
                "credits": None,
                "planType": None,
                "error": None,
            }


FAULT_SERVER = str(CLIENTS_DIR.parent / "tests" / "mcp-servers" / "fault-server.mjs")


def test_mcp_list_shows_a_sessions_own_server_once_it_reports_ready(home: Path) -> None:
    async def body() -> None:
        async with client_for(home, OPENAI_API_KEY="test") as client:
            await client.initialize()
            ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

            def on_status(params: Any) -> None:
                if params["status"] == "ready" and not ready.done():
                    ready.set_result(params)

            client.on_notification("mcp/serverStatus", on_status)
            session = await client.new_session(
                {"mcpServers": [{"name": "fault", "command": "node", "args": [FAULT_SERVER]}]}
            )
            status = await asyncio.wait_for(ready, 20)
            assert status == {
                "name": "fault",
                "sessionId": session["sessionId"],
                "status": "ready",
                "toolCount": 7,
            }
            listed = await client.mcp_list({"sessionId": session["sessionId"]})
            assert [(s["name"], s["transport"], s["status"], s["error"]) for s in listed["servers"]] == [
                ("fault", "stdio", "ready", None)
            ]
            echo = [t for t in listed["servers"][0]["tools"] if t["name"] == "echo"]
            assert echo[0]["description"] == "Echoes the message back"
            assert await client.mcp_list() == {"servers": []}

    run(body())


def test_resume_and_fork_start_the_mcp_servers_they_are_given(home: Path) -> None:
    async def body() -> None:
        async with client_for(home, OPENAI_API_KEY="test") as client:
            await client.initialize()
            loop = asyncio.get_running_loop()
            ready: dict[str, asyncio.Future[Any]] = {
                "resumed": loop.create_future(),
                "forked": loop.create_future(),
            }

            def on_status(params: Any) -> None:
                wait = ready.get(params["name"])
                if params["status"] == "ready" and wait is not None and not wait.done():
                    wait.set_result(params)

            client.on_notification("mcp/serverStatus", on_status)
            session_id = (await client.new_session({}))["sessionId"]
            await client.close_session({"sessionId": session_id})

            resumed = await client.resume_session(
                {
                    "sessionId": session_id,
                    "mcpServers": [{"name": "resumed", "command": "node", "args": [FAULT_SERVER]}],
                }
            )
            assert resumed["session"]["sessionId"] == session_id
            assert await asyncio.wait_for(ready["resumed"], 20) == {
                "name": "resumed",
                "sessionId": session_id,
                "status": "ready",
                "toolCount": 7,
            }

            fork = await client.fork_session(
                {
                    "sessionId": session_id,
                    "mcpServers": [{"name": "forked", "command": "node", "args": [FAULT_SERVER]}],
                }
            )
            fork_id = fork["session"]["sessionId"]
            assert fork_id != session_id
            assert await asyncio.wait_for(ready["forked"], 20) == {
                "name": "forked",
                "sessionId": fork_id,
                "status": "ready",
                "toolCount": 7,
            }

            async def listed(sid: str) -> list[tuple[str, str]]:
                servers = (await client.mcp_list({"sessionId": sid}))["servers"]
                return [(s["name"], s["status"]) for s in servers]

            assert await listed(session_id) == [("resumed", "ready")]
            assert await listed(fork_id) == [("forked", "ready")]

    run(body())
