"""The client's own mechanics against a scripted peer over in-memory streams: framing, event
ordering in submit_and_wait, cancellation, approvals, errors and the end of the connection."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List

import pytest

from agent_server_client import AgentServerClient, AgentServerError, ConnectionClosedError
from support import run

USAGE = {"inputTokens": 1, "cachedInputTokens": 0, "outputTokens": 2, "reasoningOutputTokens": 0, "totalTokens": 3}


class FakePeer:
    """Plays the server: reads what the client writes, feeds what the client reads."""

    def __init__(self) -> None:
        self.reader = asyncio.StreamReader()
        self.received: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()
        self.raw: List[bytes] = []
        self.closed = False

    # The client's writer.
    def write(self, data: bytes) -> None:
        self.raw.append(data)
        for line in data.splitlines():
            self.received.put_nowait(json.loads(line))

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    # The peer's side.
    def send(self, message: Dict[str, Any]) -> None:
        self.reader.feed_data((json.dumps(message) + "\n").encode())

    async def next(self) -> Dict[str, Any]:
        return await self.received.get()


def event(session_id: str, turn_id: str, seq: int, ev: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "session/event",
        "params": {"sessionId": session_id, "turnId": turn_id, "seq": seq, "event": ev},
    }


def connect() -> "tuple[AgentServerClient, FakePeer]":
    peer = FakePeer()
    return AgentServerClient.from_streams(peer.reader, peer), peer


def test_requests_are_single_json_lines_with_rising_ids() -> None:
    async def body() -> None:
        client, peer = connect()
        task = asyncio.ensure_future(client.submit({"text": "two\nlines ✓"}))
        request = await peer.next()
        assert request == {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "session/submit",
            "params": {"text": "two\nlines ✓"},
        }
        assert peer.raw == [('{"jsonrpc":"2.0","id":1,"method":"session/submit","params":{"text":"two\\nlines ✓"}}\n').encode()]
        peer.send({"jsonrpc": "2.0", "id": 1, "result": {"sessionId": "s", "turnId": "t"}})
        assert await task == {"sessionId": "s", "turnId": "t"}
        second = asyncio.ensure_future(client.list_sessions())
        assert (await peer.next())["id"] == 2
        peer.send({"jsonrpc": "2.0", "id": 2, "result": {"sessions": []}})
        assert await second == {"sessions": []}

    run(body())


def test_submit_and_wait_sees_events_before_the_reply_and_ignores_other_turns() -> None:
    async def body() -> None:
        client, peer = connect()
        seen: List[int] = []
        submitted: List[Any] = []
        task = asyncio.ensure_future(
            client.submit_and_wait({"text": "hi"}, on_event=lambda n: seen.append(n["seq"]), on_submitted=submitted.append)
        )
        request = await peer.next()
        peer.send(event("s-other", "t-9", 1, {"type": "turnStarted", "model": "m"}))
        peer.send(event("s-1", "t-1", 1, {"type": "turnStarted", "model": "m"}))
        peer.send(event("s-1", "t-1", 2, {"type": "agentMessageDelta", "itemId": "i", "delta": "hi"}))
        completed = {"type": "turnCompleted", "status": "completed", "lastAgentMessage": "hi", "usage": USAGE}
        peer.send(event("s-1", "t-1", 3, completed))
        peer.send({"jsonrpc": "2.0", "id": request["id"], "result": {"sessionId": "s-1", "turnId": "t-1"}})
        assert await task == completed
        assert seen == [1, 2, 3]
        assert submitted == [{"sessionId": "s-1", "turnId": "t-1"}]

    run(body())


def test_an_error_reply_raises_agent_server_error() -> None:
    async def body() -> None:
        client, peer = connect()
        task = asyncio.ensure_future(client.close_session({"sessionId": "nope"}))
        request = await peer.next()
        peer.send(
            {
                "jsonrpc": "2.0",
                "id": request["id"],
                "error": {"code": -32602, "message": "no session nope", "data": {"kind": "sessionNotFound"}},
            }
        )
        with pytest.raises(AgentServerError) as caught:
            await task
        error = caught.value
        assert (error.method, error.code, error.kind, error.message, error.data) == (
            "session/close",
            -32602,
            "sessionNotFound",
            "no session nope",
            {"kind": "sessionNotFound"},
        )

    run(body())


def test_cancelling_a_request_sends_cancel_request_and_ignores_the_late_reply() -> None:
    async def body() -> None:
        client, peer = connect()
        task = asyncio.ensure_future(client.list_sessions())
        request = await peer.next()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await peer.next() == {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": request["id"]}}
        peer.send({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32800, "message": "cancelled", "data": {"kind": "cancelled"}}})
        # The connection goes on.
        follow = asyncio.ensure_future(client.auth_status())
        follow_request = await peer.next()
        peer.send({"jsonrpc": "2.0", "id": follow_request["id"], "result": {"requiresOpenaiAuth": True}})
        assert await follow == {"requiresOpenaiAuth": True}

    run(body())


def test_initialize_declares_approvals_when_a_handler_is_set() -> None:
    async def body() -> None:
        client, peer = connect()
        client.on_approval_request(lambda params: {"decision": "approve"})
        task = asyncio.ensure_future(client.initialize({"clientInfo": {"name": "t"}}))
        request = await peer.next()
        assert request["params"] == {"protocolVersion": 1, "clientInfo": {"name": "t"}, "capabilities": {"approvals": True}}
        peer.send({"jsonrpc": "2.0", "id": request["id"], "result": {"protocolVersion": 1}})
        await task

    run(body())


def test_the_approval_handler_answers_and_a_failing_or_missing_one_denies() -> None:
    async def body() -> None:
        client, peer = connect()
        params = {"sessionId": "s", "turnId": "t", "itemId": "call_1", "kind": "commandExecution", "command": ["touch", "x"]}
        peer.send({"jsonrpc": "2.0", "id": "srv-1", "method": "session/requestApproval", "params": params})
        assert await peer.next() == {"jsonrpc": "2.0", "id": "srv-1", "result": {"decision": "deny"}}

        asked: List[Any] = []

        async def approve(p: Any) -> Any:
            asked.append(p)
            return {"decision": "approveForSession"}

        client.on_approval_request(approve)
        peer.send({"jsonrpc": "2.0", "id": "srv-2", "method": "session/requestApproval", "params": params})
        assert await peer.next() == {"jsonrpc": "2.0", "id": "srv-2", "result": {"decision": "approveForSession"}}
        assert asked == [params]

        def broken(p: Any) -> Any:
            raise RuntimeError("handler bug")

        client.on_approval_request(broken)
        peer.send({"jsonrpc": "2.0", "id": 7, "method": "session/requestApproval", "params": params})
        assert await peer.next() == {"jsonrpc": "2.0", "id": 7, "result": {"decision": "deny"}}

        peer.send({"jsonrpc": "2.0", "id": 8, "method": "no/such", "params": {}})
        reply = await peer.next()
        assert reply["id"] == 8 and reply["error"]["code"] == -32601

    run(body())


def test_a_withdrawn_approval_cancels_the_handler() -> None:
    async def body() -> None:
        client, peer = connect()
        started = asyncio.Event()
        outcome: List[str] = []

        async def wait_forever(p: Any) -> Any:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise
            return {"decision": "approve"}

        client.on_approval_request(wait_forever)
        params = {"sessionId": "s", "turnId": "t", "itemId": "i", "kind": "fileChange"}
        peer.send({"jsonrpc": "2.0", "id": "srv-1", "method": "session/requestApproval", "params": params})
        await started.wait()
        peer.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": "srv-1"}})
        reply = await peer.next()
        assert reply == {
            "jsonrpc": "2.0",
            "id": "srv-1",
            "error": {"code": -32800, "message": "approval request withdrawn", "data": {"kind": "cancelled"}},
        }
        assert outcome == ["cancelled"]

    run(body())


def test_notification_listeners_and_event_streams() -> None:
    async def body() -> None:
        client, peer = connect()
        statuses: List[Any] = []
        methods: List[str] = []
        client.on_notification("auth/statusChanged", lambda p: statuses.append(p["authMode"]))
        unsubscribe = client.on_notification(lambda m, p: methods.append(m))
        async with client.events("s-1") as stream:
            peer.send({"jsonrpc": "2.0", "method": "auth/statusChanged", "params": {"authMode": "apiKey", "requiresOpenaiAuth": True}})
            peer.send(event("s-2", "t", 1, {"type": "turnStarted", "model": "m"}))
            peer.send(event("s-1", "t", 1, {"type": "turnStarted", "model": "m"}))
            first = await stream.__anext__()
        assert first == event("s-1", "t", 1, {"type": "turnStarted", "model": "m"})["params"]
        assert statuses == ["apiKey"]
        assert methods == ["auth/statusChanged", "session/event", "session/event"]
        unsubscribe()
        peer.send({"jsonrpc": "2.0", "method": "auth/statusChanged", "params": {"authMode": None, "requiresOpenaiAuth": True}})
        await asyncio.sleep(0)  # Let the reader take the line.
        follow = asyncio.ensure_future(client.list_sessions())
        request = await peer.next()
        peer.send({"jsonrpc": "2.0", "id": request["id"], "result": {"sessions": []}})
        await follow
        assert methods == ["auth/statusChanged", "session/event", "session/event"]
        assert statuses == ["apiKey", None]

    run(body())


def test_the_end_of_the_connection_fails_pending_requests_and_ends_streams() -> None:
    async def body() -> None:
        client, peer = connect()
        stream = client.events("s-1")
        task = asyncio.ensure_future(client.list_sessions())
        await peer.next()
        peer.reader.feed_eof()
        with pytest.raises(ConnectionClosedError):
            await task
        assert [n async for n in stream] == []
        assert client.closed
        with pytest.raises(ConnectionClosedError):
            await client.auth_status()
        # Subscribing after the end is harmless: the stream is empty, submit_and_wait raises.
        assert [n async for n in client.events("s-1")] == []
        with pytest.raises(ConnectionClosedError):
            await client.submit_and_wait({"text": "x"})

    run(body())


def test_cancelling_submit_and_wait_interrupts_the_turn() -> None:
    async def body() -> None:
        client, peer = connect()
        submitted = asyncio.Event()
        task = asyncio.ensure_future(client.submit_and_wait({"text": "x"}, on_submitted=lambda r: submitted.set()))
        request = await peer.next()
        peer.send({"jsonrpc": "2.0", "id": request["id"], "result": {"sessionId": "s-1", "turnId": "t-1"}})
        await submitted.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        interrupt = await peer.next()
        assert (interrupt["method"], interrupt["params"]) == ("session/interrupt", {"sessionId": "s-1", "turnId": "t-1"})

    run(body())


def test_every_client_request_of_the_schema_has_a_typed_wrapper() -> None:
    from agent_server_client.protocol import CLIENT_REQUESTS

    async def body() -> None:
        client, peer = connect()
        wrappers = {
            "initialize": lambda: client.initialize(),
            "shutdown": lambda: client.shutdown(),
            "auth/status": lambda: client.auth_status(),
            "auth/loginApiKey": lambda: client.login_api_key({"apiKey": "sk-x"}),
            "auth/loginChatGPT": lambda: client.login_chatgpt(),
            "auth/cancelLogin": lambda: client.cancel_login({"loginId": "l"}),
            "auth/rateLimits": lambda: client.rate_limits({"refresh": True}),
            "auth/logout": lambda: client.logout(),
            "session/new": lambda: client.new_session(),
            "session/submit": lambda: client.submit({"text": "x"}),
            "session/interrupt": lambda: client.interrupt({"sessionId": "s"}),
            "session/list": lambda: client.list_sessions(),
            "session/close": lambda: client.close_session({"sessionId": "s"}),
            "session/read": lambda: client.read_session({"sessionId": "s"}),
            "session/resume": lambda: client.resume_session({"sessionId": "s"}),
            "session/fork": lambda: client.fork_session({"sessionId": "s"}),
            "session/archive": lambda: client.archive_session({"sessionId": "s"}),
            "session/unarchive": lambda: client.unarchive_session({"sessionId": "s"}),
            "session/delete": lambda: client.delete_session({"sessionId": "s"}),
            "session/setTitle": lambda: client.set_session_title({"sessionId": "s", "title": "t"}),
            "mcp/list": lambda: client.mcp_list(),
            "model/list": lambda: client.list_models(),
            "session/steer": lambda: client.steer({"sessionId": "s", "text": "x"}),
            "session/compact": lambda: client.compact({"sessionId": "s"}),
        }
        assert sorted(wrappers) == sorted(CLIENT_REQUESTS)
        seen = []
        for method in CLIENT_REQUESTS:
            task = asyncio.ensure_future(wrappers[method]())
            request = await peer.next()
            seen.append(request["method"])
            peer.send({"jsonrpc": "2.0", "id": request["id"], "result": None if method == "shutdown" else {}})
            await task
        assert seen == list(CLIENT_REQUESTS)

    run(body())
