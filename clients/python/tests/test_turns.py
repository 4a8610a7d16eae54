"""Turns against the real ``agent-server`` binary and a mock upstream: streamed events,
submit_and_wait, per-session event streams, approvals, interrupts and shutdown mid-turn."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from agent_server_client import AgentServerClient, AgentServerError, SyncClient
from support import FIXTURES_DIR, MockUpstream, run, server_bin, server_env

TEXT_ANSWER_USAGE = {
    "inputTokens": 1830,
    "cachedInputTokens": 1536,
    "outputTokens": 48,
    "reasoningOutputTokens": 32,
    "totalTokens": 1878,
}
TEXT_ANSWER_DONE = {
    "type": "turnCompleted",
    "status": "completed",
    "lastAgentMessage": "Hello there!",
    "usage": TEXT_ANSWER_USAGE,
}
AFTER_SHELL_ANSWER = "There are two entries: `Cargo.toml` and `src`."


def client_with(home: Path, upstream: MockUpstream) -> AgentServerClient:
    env = server_env(home, OPENAI_API_KEY="test", OPENAI_BASE_URL=upstream.base_url)
    return AgentServerClient(server_bin(), env=env)


def assert_turn_shape(events: List[Dict[str, Any]]) -> None:
    """What every turn guarantees: seq rises by 1, one turnStarted first, one turnCompleted last."""
    assert len(events) >= 2
    first = events[0]["seq"]
    assert [e["seq"] for e in events] == list(range(first, first + len(events)))
    types = [e["event"]["type"] for e in events]
    assert [t for t in types if t in ("turnStarted", "turnCompleted")] == ["turnStarted", "turnCompleted"]
    assert types[0] == "turnStarted" and types[-1] == "turnCompleted"


def command_items(events: List[Dict[str, Any]], which: str) -> List[Dict[str, Any]]:
    return [
        e["event"]["item"]
        for e in events
        if e["event"]["type"] == which and e["event"]["item"]["type"] == "commandExecution"
    ]


def tool_output(upstream: MockUpstream, index: int, call_id: str) -> str:
    items = upstream.requests[index]["body"].get("input", [])
    outputs = [i["output"] for i in items if i.get("type") == "function_call_output" and i.get("call_id") == call_id]
    assert len(outputs) == 1, f"request {index} carries the output of {call_id}"
    return str(outputs[0])


def test_project_instructions_and_environment_open_the_conversation(
    home: Path, workdir: Path, upstream_factory: Any
) -> None:
    upstream = upstream_factory("text_answer.sse")
    (workdir / "AGENTS.md").write_text("Run the linter before committing.\n")

    async def body() -> None:
        async with client_with(home, upstream) as client:
            session = await client.new_session({"cwd": str(workdir), "sandbox": "readOnly", "approvalPolicy": "never"})
            assert session["instructionSources"] == []
            done = await client.submit_and_wait({"sessionId": session["sessionId"], "text": "hi"})
            assert done["status"] == "completed"
            listed = await client.list_sessions()
            assert listed["sessions"][0]["instructionSources"] == [str(workdir / "AGENTS.md")]

    run(body())
    # The server names the login shell after $SHELL, which the test server inherits.
    shell = os.path.basename(os.environ.get("SHELL", "")) or "bash"
    texts = [(i["role"], i["content"][0]["text"]) for i in upstream.requests[0]["body"]["input"][:3]]
    assert texts == [
        ("user", f"# AGENTS.md instructions for {workdir}\n\n<INSTRUCTIONS>\nRun the linter before committing.\n</INSTRUCTIONS>"),
        (
            "user",
            f"<environment_context>\n  <cwd>{workdir}</cwd>\n  <approval_policy>never</approval_policy>\n"
            f"  <sandbox_mode>readOnly</sandbox_mode>\n  <network_access>restricted</network_access>\n"
            f"  <shell>{shell}</shell>\n</environment_context>",
        ),
        ("user", "hi"),
    ]


def test_compact_runs_as_a_turn_with_a_context_summary(home: Path, workdir: Path, upstream_factory: Any) -> None:
    upstream = upstream_factory("text_answer.sse", "text_answer.sse")

    async def body() -> None:
        async with client_with(home, upstream) as client:
            session = await client.new_session({"cwd": str(workdir)})
            await client.submit_and_wait({"sessionId": session["sessionId"], "text": "say hello"})
            events: List[Dict[str, Any]] = []
            async with client.events(session["sessionId"]) as stream:
                turn = await client.compact({"sessionId": session["sessionId"]})
                async for notification in stream:
                    events.append(notification)
                    if notification["event"]["type"] == "turnCompleted":
                        break
            assert_turn_shape(events)
            assert all(e["turnId"] == turn["turnId"] for e in events)
            completed = [e["event"]["item"] for e in events if e["event"]["type"] == "itemCompleted"]
            assert [(i["type"], i["text"]) for i in completed] == [("contextSummary", "Hello there!")]
            compacted = [e["event"] for e in events if e["event"]["type"] == "contextCompacted"]
            assert compacted == [
                {"type": "contextCompacted", "tokensBefore": 1878, "summaryItemId": completed[0]["id"]}
            ]
            assert events[-1]["event"]["status"] == "completed"

    run(body())
    # The summarisation request carried the first turn and ended with the instruction.
    last = upstream.requests[1]["body"]["input"][-1]
    assert last["role"] == "user" and "handoff summary" in last["content"][0]["text"]


def test_submit_and_wait_streams_a_text_answer(home: Path, workdir: Path, upstream_factory: Any) -> None:
    upstream = upstream_factory("text_answer.sse")

    async def body() -> None:
        async with client_with(home, upstream) as client:
            await client.initialize({"clientInfo": {"name": "py-test", "version": "9.9.9"}})
            session = await client.new_session({"cwd": str(workdir)})
            events: List[Dict[str, Any]] = []
            done = await client.submit_and_wait(
                {"sessionId": session["sessionId"], "text": "say hello"}, on_event=events.append
            )
            assert done == TEXT_ANSWER_DONE
            assert_turn_shape(events)
            assert events[0]["seq"] == 1
            assert events[0]["event"] == {
                "type": "turnStarted",
                "model": "gpt-5-codex",
                "reasoningEffort": "medium",
                "approvalPolicy": "untrusted",
                "sandbox": "workspaceWrite",
                "cwd": str(workdir),
            }
            assert [e["event"]["delta"] for e in events if e["event"]["type"] == "agentMessageDelta"] == ["Hello", " there!"]
            assert [
                e["event"]["item"]["text"]
                for e in events
                if e["event"]["type"] == "itemCompleted" and e["event"]["item"]["type"] == "agentMessage"
            ] == ["Hello there!"]
            listed = await client.list_sessions()
            assert listed == {
                "sessions": [
                    {
                        **session,
                        "status": "idle",
                        "title": "say hello",
                        "turnCount": 1,
                        "updatedAt": listed["sessions"][0]["updatedAt"],
                    }
                ],
                "nextCursor": None,
            }

        assert len(upstream.requests) == 1
        request = upstream.requests[0]
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert request["path"] == "/v1/responses"
        assert headers["authorization"] == "Bearer test"
        assert headers["session_id"] == session["sessionId"]
        assert headers["user-agent"].endswith(" py-test/9.9.9")
        assert (request["body"]["model"], request["body"]["stream"]) == ("gpt-5-codex", True)

    run(body())


def test_event_streams_follow_one_session_across_turns(home: Path, upstream_factory: Any) -> None:
    upstream = upstream_factory("text_answer.sse", "text_answer.sse")

    async def body() -> None:
        async with client_with(home, upstream) as client:
            await client.initialize()
            first = await client.submit_and_wait({"text": "hello"})
            assert first["status"] == "completed"
            (session,) = (await client.list_sessions())["sessions"]
            events: List[Dict[str, Any]] = []
            async with client.events(session["sessionId"]) as stream:
                turn = await client.submit({"sessionId": session["sessionId"], "input": [{"type": "text", "text": "again"}]})
                async for notification in stream:
                    events.append(notification)
                    if notification["event"]["type"] == "turnCompleted":
                        break
            assert_turn_shape(events)
            assert all(e["turnId"] == turn["turnId"] for e in events)
            assert events[0]["seq"] > 1

    run(body())


def run_shell_turn(
    home: Path,
    workdir: Path,
    upstream: MockUpstream,
    handler: Optional[Any],
    approvals: bool,
) -> "tuple[Dict[str, Any], List[Dict[str, Any]], str]":
    async def body() -> "tuple[Dict[str, Any], List[Dict[str, Any]], str]":
        async with client_with(home, upstream) as client:
            if handler is not None:
                client.on_approval_request(handler)
            await client.initialize({"capabilities": {"approvals": approvals}})
            session = await client.new_session({"cwd": str(workdir), "approvalPolicy": "untrusted"})
            events: List[Dict[str, Any]] = []
            turn_ids: List[str] = []
            done = await client.submit_and_wait(
                {"sessionId": session["sessionId"], "text": "create a file"},
                on_event=events.append,
                on_submitted=lambda r: turn_ids.append(r["turnId"]),
            )
            assert_turn_shape(events)
            return dict(done), events, turn_ids[0]

    return run(body())


def test_an_approved_command_runs(home: Path, workdir: Path, upstream_factory: Any) -> None:
    upstream = upstream_factory("shell_touch.sse", "after_shell_call.sse")
    asked: List[Dict[str, Any]] = []

    def approve(params: Any) -> Any:
        asked.append(dict(params))
        return {"decision": "approve"}

    done, events, turn_id = run_shell_turn(home, workdir, upstream, approve, approvals=True)
    assert (done["status"], done["lastAgentMessage"]) == ("completed", AFTER_SHELL_ANSWER)
    assert len(asked) == 1
    asked[0].pop("reason", None)
    assert asked[0] == {
        "sessionId": events[0]["sessionId"],
        "turnId": turn_id,
        "itemId": "call_Xy12",
        "kind": "commandExecution",
        "command": ["bash", "-lc", "touch approved.txt"],
        "cwd": str(workdir),
    }
    assert (workdir / "approved.txt").exists()
    (completed,) = command_items(events, "itemCompleted")
    assert (completed["id"], completed["status"], completed.get("exitCode")) == ("call_Xy12", "completed", 0)
    assert tool_output(upstream, 1, "call_Xy12").startswith("Exit code: 0\n")


def test_a_denied_command_does_not_run(home: Path, workdir: Path, upstream_factory: Any) -> None:
    upstream = upstream_factory("shell_touch.sse", "after_shell_call.sse")

    async def deny(params: Any) -> Any:
        return {"decision": "deny"}

    done, events, _ = run_shell_turn(home, workdir, upstream, deny, approvals=True)
    assert done["status"] == "completed"
    assert not (workdir / "approved.txt").exists()
    assert [(i["id"], i["status"]) for i in command_items(events, "itemCompleted")] == [("call_Xy12", "declined")]
    assert re.search("declined", tool_output(upstream, 1, "call_Xy12"), re.IGNORECASE)


def test_without_the_approvals_capability_the_command_is_declined(home: Path, workdir: Path, upstream_factory: Any) -> None:
    upstream = upstream_factory("shell_touch.sse", "after_shell_call.sse")
    asked: List[Any] = []
    done, events, _ = run_shell_turn(home, workdir, upstream, lambda p: asked.append(p) or {"decision": "approve"}, approvals=False)
    assert done["status"] == "completed"
    assert asked == []
    assert not (workdir / "approved.txt").exists()
    assert [i["status"] for i in command_items(events, "itemCompleted")] == ["declined"]
    assert re.search("declined", tool_output(upstream, 1, "call_Xy12"), re.IGNORECASE)


def test_an_abort_answer_ends_the_turn_interrupted(home: Path, workdir: Path, upstream_factory: Any) -> None:
    upstream = upstream_factory("shell_touch.sse")
    done, _, _ = run_shell_turn(home, workdir, upstream, lambda p: {"decision": "abort"}, approvals=True)
    assert done["status"] == "interrupted"
    assert not (workdir / "approved.txt").exists()


def test_an_interrupt_withdraws_a_pending_approval(home: Path, workdir: Path, upstream_factory: Any) -> None:
    upstream = upstream_factory("shell_touch.sse")

    async def body() -> None:
        asked: "asyncio.Queue[Any]" = asyncio.Queue()
        withdrawn = asyncio.Event()

        async def wait_for_user(params: Any) -> Any:
            asked.put_nowait(params)
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                withdrawn.set()
                raise
            return {"decision": "approve"}

        async with client_with(home, upstream) as client:
            client.on_approval_request(wait_for_user)
            await client.initialize()
            session = await client.new_session({"cwd": str(workdir)})
            waiting = asyncio.ensure_future(client.submit_and_wait({"sessionId": session["sessionId"], "text": "go"}))
            request = await asked.get()
            assert await client.interrupt({"sessionId": session["sessionId"], "turnId": request["turnId"]}) == {}
            done = await waiting
            assert done["status"] == "interrupted"
            # The withdrawal comes before the turn's end; its cancellation ran before this task.
            assert withdrawn.is_set(), "the server withdrew the approval request with $/cancelRequest"
            assert not (workdir / "approved.txt").exists()

    run(body())


def test_close_mid_turn_completes_it_interrupted_and_exits_0(home: Path, workdir: Path, upstream_factory: Any) -> None:
    upstream = upstream_factory("shell_touch.sse")

    async def body() -> None:
        asked = asyncio.Event()

        async def never_answer(params: Any) -> Any:
            asked.set()
            await asyncio.Event().wait()

        client = client_with(home, upstream)
        await client.start()
        client.on_approval_request(never_answer)
        await client.initialize()
        completions: List[str] = []
        client.on_event(lambda n: completions.append(n["event"]["status"]) if n["event"]["type"] == "turnCompleted" else None)
        session = await client.new_session({"cwd": str(workdir)})
        await client.submit({"sessionId": session["sessionId"], "text": "go"})
        await asked.wait()
        assert await client.close() == 0
        assert completions == ["interrupted"]

    run(body())


def test_replayed_transcript_with_the_sync_client(home: Path) -> None:
    env = server_env(home, OPENAI_API_KEY="test", AGENT_SERVER_SSE_FIXTURE=str(FIXTURES_DIR / "text_answer.sse"))
    with SyncClient(server_bin(), env=env, timeout=30) as client:
        client.initialize()
        deltas: List[str] = []
        done = client.submit_and_wait(
            {"text": "say hello"},
            on_event=lambda n: deltas.append(n["event"]["delta"]) if n["event"]["type"] == "agentMessageDelta" else None,
        )
        assert done == TEXT_ANSWER_DONE
        assert deltas == ["Hello", " there!"]


def test_stored_sessions_resume_fork_archive_and_delete(home: Path, workdir: Path, upstream_factory: Any) -> None:
    upstream = upstream_factory("text_answer.sse", "text_answer.sse")

    async def body() -> None:
        async with client_with(home, upstream) as client:
            await client.initialize()
            session = await client.new_session({"cwd": str(workdir)})
            sid = session["sessionId"]
            first: List[Dict[str, Any]] = []
            await client.submit_and_wait({"sessionId": sid, "text": "First question"}, on_event=first.append)
            page = await client.list_sessions({"stored": True, "search": "first QUESTION"})
            assert [(s["sessionId"], s["title"], s["turnCount"]) for s in page["sessions"]] == [(sid, "First question", 1)]
            assert page["nextCursor"] is None
            assert await client.set_session_title({"sessionId": sid, "title": "Renamed"}) == {}
            read = await client.read_session({"sessionId": sid})
            assert read["session"]["title"] == "Renamed"
            turn_id = read["turns"][0]["turnId"]
            assert [(t["status"], [i["type"] for i in t["items"]]) for t in read["turns"]] == [
                ("completed", ["reasoning", "agentMessage"])
            ]
            await client.close_session({"sessionId": sid})
            with pytest.raises(AgentServerError) as caught:
                await client.submit({"sessionId": sid, "text": "not loaded"})
            assert caught.value.kind == "sessionNotFound"
            resumed = await client.resume_session({"sessionId": sid})
            assert (resumed["session"]["loaded"], len(resumed["turns"])) == (True, 1)
            second: List[Dict[str, Any]] = []
            await client.submit_and_wait({"sessionId": sid, "text": "second"}, on_event=second.append)
            assert second[0]["seq"] == first[-1]["seq"] + 1
            fork = await client.fork_session({"sessionId": sid, "turnId": turn_id})
            assert fork["session"]["forkedFrom"] == {"sessionId": sid, "turnId": turn_id}
            assert [t["turnId"] for t in fork["turns"]] == [turn_id]
            fid = fork["session"]["sessionId"]
            assert await client.archive_session({"sessionId": fid}) == {}
            archived = await client.list_sessions({"stored": True, "archived": True})
            assert [s["sessionId"] for s in archived["sessions"]] == [fid]
            assert await client.unarchive_session({"sessionId": fid}) == {}
            assert await client.delete_session({"sessionId": fid}) == {}
            with pytest.raises(AgentServerError) as gone:
                await client.read_session({"sessionId": fid})
            assert gone.value.kind == "sessionNotFound"

        # The resumed turn sent the first turn's history upstream (after the environment
        # message, which is not repeated).
        types = [i["type"] for i in upstream.requests[1]["body"]["input"]]
        assert types == ["message", "message", "reasoning", "message", "message"]

    run(body())
