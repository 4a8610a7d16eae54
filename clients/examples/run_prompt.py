#!/usr/bin/env python3
"""Run one prompt with agent-server in a directory and print the answer.

    python clients/examples/run_prompt.py --cwd path/to/project "What does this project do?"

Commands and file changes that need approval are asked about on the terminal (or approved
with --yes, or declined when there is no terminal). The answer streams to stdout; the exit
status is 0 when the turn completed, 1 otherwise.

Offline, replaying a recorded answer instead of calling the model:

    AGENT_SERVER_SSE_FIXTURE=clients/fixtures/text_answer.sse OPENAI_API_KEY=unused \\
        python clients/examples/run_prompt.py hello
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

try:
    from agent_server_client import AgentServerClient
except ImportError:  # Not installed: use the copy in this repository.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    from agent_server_client import AgentServerClient


def ask_user(params: Any, approve_all: bool) -> Any:
    """Answers one approval request: --yes, else a y/N question on the terminal."""
    if params["kind"] == "commandExecution":
        what = "run " + " ".join(params.get("command") or [])
    else:
        what = "change " + ", ".join(c["path"] for c in params.get("changes") or [])
    if approve_all:
        print(f"[approved: {what}]", file=sys.stderr)
        return {"decision": "approve"}
    if not sys.stdin.isatty():
        print(f"[declined, no terminal to ask: {what}]", file=sys.stderr)
        return {"decision": "deny"}
    answer = input(f"Allow the agent to {what}? [y/N] ")
    return {"decision": "approve" if answer.strip().lower() in ("y", "yes") else "deny"}


async def main() -> int:
    parser = argparse.ArgumentParser(description="Run one prompt with agent-server and print the answer.")
    parser.add_argument("prompt")
    parser.add_argument("--cwd", default=os.getcwd(), help="the directory the agent works in")
    parser.add_argument("--yes", action="store_true", help="approve every command and file change")
    parser.add_argument("--binary", help="the agent-server binary (default $AGENT_SERVER_BIN or PATH)")
    args = parser.parse_args()

    async with AgentServerClient(args.binary) as client:
        # The handler is set before initialize, so the client declares that it answers approvals.
        client.on_approval_request(lambda params: ask_user(params, args.yes))
        await client.initialize({"clientInfo": {"name": "run_prompt", "version": "0.1.0"}})
        session = await client.new_session({"cwd": str(Path(args.cwd).resolve())})

        def show(notification: Any) -> None:
            event = notification["event"]
            if event["type"] == "agentMessageDelta":
                print(event["delta"], end="", flush=True)

        done = await client.submit_and_wait({"sessionId": session["sessionId"], "text": args.prompt}, on_event=show)
        print()
        if done["status"] != "completed":
            error: Any = done.get("error") or {}
            print(f"turn {done['status']}: {error.get('message', '')}", file=sys.stderr)
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
