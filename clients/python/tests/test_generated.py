"""The committed protocol.py matches the schema (regenerated into memory and compared)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "generate.py"


def test_generated_types_match_the_schema() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")


def test_the_generated_module_imports_and_names_every_method() -> None:
    from agent_server_client import protocol

    assert sorted(protocol.CLIENT_REQUESTS) == sorted(
        [
            "initialize",
            "shutdown",
            "auth/status",
            "auth/loginApiKey",
            "auth/loginChatGPT",
            "auth/cancelLogin",
            "auth/rateLimits",
            "auth/logout",
            "session/new",
            "session/submit",
            "session/interrupt",
            "session/list",
            "session/close",
            "session/read",
            "session/resume",
            "session/fork",
            "session/archive",
            "session/unarchive",
            "session/delete",
            "session/setTitle",
            "mcp/list",
            "model/list",
            "session/steer",
            "session/compact",
        ]
    )
    assert protocol.SERVER_REQUESTS == {"session/requestApproval": ("RequestApprovalParams", "RequestApprovalResult")}
    assert protocol.TurnCompletedEvent.__required_keys__ == frozenset({"type", "status", "usage"})
    for params_name, result_name in protocol.CLIENT_REQUESTS.values():
        assert hasattr(protocol, params_name)
        assert result_name == "None" or hasattr(protocol, result_name)
