"""A small synchronous wrapper for scripts: the asyncio client on a private event loop.

The loop runs only while a call is in progress, so notifications and approval requests are
handled during calls (``submit_and_wait`` runs it for the whole turn) and wait in the pipe
between them. Callbacks run on the calling thread.

    with SyncClient() as client:
        client.initialize({"clientInfo": {"name": "my-script"}})
        print(client.submit_and_wait({"text": "hello"}).get("lastAgentMessage"))
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine, Mapping, Optional, Sequence, TypeVar

from .client import AgentServerClient, AnyNotificationCallback, ApprovalHandler, Unsubscribe
from .protocol import (
    AuthStatus,
    AuthStatusParams,
    CancelLoginParams,
    CancelLoginResult,
    CloseSessionParams,
    CompactParams,
    CompactResult,
    EmptyResult,
    InitializeParams,
    InitializeResult,
    ForkSessionParams,
    InterruptParams,
    ListSessionsParams,
    ListModelsResult,
    SteerParams,
    SteerResult,
    ListSessionsResult,
    LoginApiKeyParams,
    LoginChatGptParams,
    LoginChatGptResult,
    McpListParams,
    McpListResult,
    RateLimitsParams,
    RateLimitsResult,
    NewSessionParams,
    ReadSessionParams,
    ResumeSessionParams,
    Session,
    SessionEventNotification,
    SessionIdParams,
    SessionWithTurns,
    SetTitleParams,
    SubmitParams,
    SubmitResult,
    TurnCompletedEvent,
)

T = TypeVar("T")


class SyncClient:
    """Blocking twin of ``AgentServerClient``; the server starts in the constructor."""

    def __init__(
        self,
        binary: Optional[str] = None,
        *,
        args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        stderr: str = "pipe",
        timeout: Optional[float] = None,
    ) -> None:
        """``timeout`` (seconds) bounds every call; a call that runs out raises ``TimeoutError``
        after cancelling the request on the server (``asyncio.TimeoutError`` on Python 3.10)."""
        self._loop = asyncio.new_event_loop()
        self._timeout = timeout
        self._client = AgentServerClient(binary, args=args, env=env, cwd=cwd, stderr=stderr)
        try:
            self._run(self._client.start())
        except BaseException:
            self._loop.close()
            raise

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._timeout is not None:
            return self._loop.run_until_complete(asyncio.wait_for(coroutine, self._timeout))
        return self._loop.run_until_complete(coroutine)

    @property
    def client(self) -> AgentServerClient:
        """The asyncio client underneath."""
        return self._client

    def __enter__(self) -> "SyncClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, params: Optional[Mapping[str, Any]] = None) -> Any:
        return self._run(self._client.request(method, params))

    def initialize(self, params: Optional[InitializeParams] = None) -> InitializeResult:
        return self._run(self._client.initialize(params))

    def shutdown(self) -> None:
        self._run(self._client.shutdown())

    def auth_status(self, params: Optional[AuthStatusParams] = None) -> AuthStatus:
        return self._run(self._client.auth_status(params))

    def login_api_key(self, params: LoginApiKeyParams) -> EmptyResult:
        return self._run(self._client.login_api_key(params))

    def login_chatgpt(self, params: Optional[LoginChatGptParams] = None) -> LoginChatGptResult:
        return self._run(self._client.login_chatgpt(params))

    def cancel_login(self, params: CancelLoginParams) -> CancelLoginResult:
        return self._run(self._client.cancel_login(params))

    def rate_limits(self, params: Optional[RateLimitsParams] = None) -> RateLimitsResult:
        return self._run(self._client.rate_limits(params))

    def logout(self) -> EmptyResult:
        return self._run(self._client.logout())

    def new_session(self, params: Optional[NewSessionParams] = None) -> Session:
        return self._run(self._client.new_session(params))

    def submit(self, params: SubmitParams) -> SubmitResult:
        return self._run(self._client.submit(params))

    def interrupt(self, params: InterruptParams) -> EmptyResult:
        return self._run(self._client.interrupt(params))

    def compact(self, params: CompactParams) -> CompactResult:
        return self._run(self._client.compact(params))

    def list_sessions(self, params: Optional[ListSessionsParams] = None) -> ListSessionsResult:
        return self._run(self._client.list_sessions(params))

    def steer(self, params: SteerParams) -> SteerResult:
        return self._run(self._client.steer(params))

    def list_models(self) -> ListModelsResult:
        return self._run(self._client.list_models())

    def close_session(self, params: CloseSessionParams) -> EmptyResult:
        return self._run(self._client.close_session(params))

    def read_session(self, params: ReadSessionParams) -> SessionWithTurns:
        return self._run(self._client.read_session(params))

    def resume_session(self, params: ResumeSessionParams) -> SessionWithTurns:
        return self._run(self._client.resume_session(params))

    def fork_session(self, params: ForkSessionParams) -> SessionWithTurns:
        return self._run(self._client.fork_session(params))

    def archive_session(self, params: SessionIdParams) -> EmptyResult:
        return self._run(self._client.archive_session(params))

    def unarchive_session(self, params: SessionIdParams) -> EmptyResult:
        return self._run(self._client.unarchive_session(params))

    def delete_session(self, params: SessionIdParams) -> EmptyResult:
        return self._run(self._client.delete_session(params))

    def set_session_title(self, params: SetTitleParams) -> EmptyResult:
        return self._run(self._client.set_session_title(params))
    def mcp_list(self, params: Optional[McpListParams] = None) -> McpListResult:
        return self._run(self._client.mcp_list(params))

    def submit_and_wait(
        self,
        params: SubmitParams,
        *,
        on_event: Optional[Callable[[SessionEventNotification], Any]] = None,
        on_submitted: Optional[Callable[[SubmitResult], Any]] = None,
    ) -> TurnCompletedEvent:
        return self._run(self._client.submit_and_wait(params, on_event=on_event, on_submitted=on_submitted))

    def on_approval_request(self, handler: Optional[ApprovalHandler]) -> None:
        self._client.on_approval_request(handler)

    def on_notification(self, method: Any, callback: Any = None) -> Unsubscribe:
        return self._client.on_notification(method, callback)

    def on_event(self, callback: Callable[[SessionEventNotification], Any]) -> Unsubscribe:
        return self._client.on_event(callback)

    def close(self, timeout: float = 5.0) -> Optional[int]:
        """Shuts the server down cleanly and closes the loop; returns the exit status."""
        if self._loop.is_closed():
            return self._client.returncode
        try:
            return self._loop.run_until_complete(self._client.close(timeout))
        finally:
            self._loop.close()


__all__ = ["SyncClient", "AnyNotificationCallback"]
