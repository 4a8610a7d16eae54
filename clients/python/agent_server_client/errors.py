"""Errors the client raises: the server's JSON-RPC errors, and the connection ending."""

from __future__ import annotations

from typing import Any, Optional

from .protocol import ErrorData


class ErrorCode:
    """JSON-RPC error codes the server uses (see the contract's error table)."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    REQUEST_CANCELLED = -32800
    AUTH_REQUIRED = -32000
    OVERLOADED = -32001
    LOGIN_FAILED_TO_START = -32010


class AgentServerError(Exception):
    """An error reply from the server to one of the client's requests."""

    def __init__(self, method: str, code: int, message: str, data: Optional[ErrorData] = None) -> None:
        super().__init__(message)
        #: The method of the request that failed.
        self.method = method
        #: The JSON-RPC error code, e.g. ``-32602``.
        self.code = code
        #: What happened and what to do next.
        self.message = message
        #: The machine-readable details; ``data["kind"]`` is normative.
        self.data = data

    @property
    def kind(self) -> Optional[str]:
        """``data.kind``, e.g. ``"sessionNotFound"``, when the server sent one."""
        data: Any = self.data
        return data.get("kind") if isinstance(data, dict) else None

    def __repr__(self) -> str:
        return f"AgentServerError(method={self.method!r}, code={self.code}, kind={self.kind!r}, message={self.message!r})"


class ConnectionClosedError(Exception):
    """The connection ended (the server exited, or could not start) before a reply arrived."""

    def __init__(self, reason: str, returncode: Optional[int] = None, stderr: str = "") -> None:
        message = reason if not stderr.strip() else f"{reason}; server stderr:\n{stderr.rstrip()}"
        super().__init__(message)
        #: Why the connection ended.
        self.reason = reason
        #: The server's exit status, when it has exited (negative: killed by that signal).
        self.returncode = returncode
        #: The last lines the server wrote to stderr (only when stderr is piped).
        self.stderr = stderr
