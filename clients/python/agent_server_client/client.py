"""The asyncio client: spawns ``agent-server``, speaks newline-delimited JSON-RPC 2.0 over its
stdio, and exposes one method per request, notification listeners, per-session event streams,
an approval callback and ``submit_and_wait``.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import os
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
    cast,
    overload,
)

from .errors import AgentServerError, ConnectionClosedError, ErrorCode
from .protocol import (
    PROTOCOL_VERSION,
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
    RequestApprovalParams,
    RequestApprovalResult,
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

log = logging.getLogger("agent_server_client")

#: The largest message the client reads; matches the server's default ``max_message_bytes``.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Enough stderr for the reason a server stopped (it writes one line, then exits 2).
STDERR_TAIL_CHARS = 8192
#: How long to wait for the exit status once the server's stdout has closed.
EXIT_GRACE_SECONDS = 2.0

#: Decides one ``session/requestApproval``; may be a plain or an async function. When the server
#: withdraws the request (an interrupt), the call is cancelled.
ApprovalHandler = Callable[
    [RequestApprovalParams], Union[RequestApprovalResult, Awaitable[RequestApprovalResult]]
]
#: Listens to one notification's params.
NotificationCallback = Callable[[Any], Any]
#: Listens to every notification: ``(method, params)``.
AnyNotificationCallback = Callable[[str, Any], Any]
#: Stops listening.
Unsubscribe = Callable[[], None]


class _Writer:
    """What the client writes to: ``asyncio.StreamWriter`` or anything with the same three calls."""

    def write(self, data: bytes) -> None: ...  # pragma: no cover

    async def drain(self) -> None: ...  # pragma: no cover

    def close(self) -> None: ...  # pragma: no cover


_END = object()


class EventStream:
    """The events of one session from the moment it was created, as an async iterator.

    It buffers what the loop has not read yet, and ends when closed or when the connection ends.
    Use it as ``async with client.events(session_id) as events: async for n in events: ...`` so
    that leaving the loop early stops the listening.
    """

    def __init__(self, client: "AgentServerClient", session_id: str) -> None:
        self._queue: "asyncio.Queue[Any]" = asyncio.Queue()
        self._closed = False
        self._unsubscribe_event: Unsubscribe = lambda: None
        self._unsubscribe_close: Unsubscribe = lambda: None

        def on_event(notification: SessionEventNotification) -> None:
            if notification["sessionId"] == session_id:
                self._queue.put_nowait(notification)

        self._unsubscribe_event = client.on_event(on_event)
        self._unsubscribe_close = client._on_close(lambda _error: self._finish())

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._unsubscribe_event()
            self._unsubscribe_close()
            self._queue.put_nowait(_END)

    def close(self) -> None:
        """Stops listening; the iteration ends after what is already buffered."""
        self._finish()

    def __aiter__(self) -> "EventStream":
        return self

    async def __anext__(self) -> SessionEventNotification:
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)
            raise StopAsyncIteration
        return cast(SessionEventNotification, item)

    async def __aenter__(self) -> "EventStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class AgentServerClient:
    """A connection to one ``agent-server`` process.

    ``async with AgentServerClient() as client:`` starts the server and closes it cleanly at the
    end. ``binary`` defaults to ``$AGENT_SERVER_BIN``, else ``agent-server`` on ``PATH``.
    """

    def __init__(
        self,
        binary: Optional[str] = None,
        *,
        args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        stderr: str = "pipe",
        on_stderr: Optional[Callable[[str], None]] = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        """``stderr`` is ``"pipe"`` (keep the tail for error messages, pass lines to
        ``on_stderr``), ``"inherit"`` or ``"ignore"``."""
        if stderr not in ("pipe", "inherit", "ignore"):
            raise ValueError(f"stderr must be 'pipe', 'inherit' or 'ignore', not {stderr!r}")
        self.binary = binary or os.environ.get("AGENT_SERVER_BIN") or "agent-server"
        self._args = list(args)
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._stderr_mode = stderr
        self._on_stderr = on_stderr
        self._limit = max_message_bytes
        self._proc: Optional[asyncio.subprocess.Process] = None
        self._reader: Optional[asyncio.StreamReader] = None
        self._writer: Optional[_Writer] = None
        self._tasks: List["asyncio.Task[Any]"] = []
        self._ids = itertools.count(1)
        self._pending: Dict[Any, Tuple[str, "asyncio.Future[Any]"]] = {}
        self._incoming: Dict[str, "asyncio.Task[Any]"] = {}
        self._withdrawn: "set[str]" = set()
        self._listeners: List[AnyNotificationCallback] = []
        self._close_listeners: List[Callable[[ConnectionClosedError], None]] = []
        self._approval_handler: Optional[ApprovalHandler] = None
        self._stderr_tail = ""
        self._closed_error: Optional[ConnectionClosedError] = None
        self._closed_event: Optional[asyncio.Event] = None
        self._stderr_done: Optional[asyncio.Event] = None

    # ---- starting ---------------------------------------------------------------------------

    async def start(self) -> "AgentServerClient":
        """Spawns the server with stdio pipes and starts reading (call ``initialize`` next)."""
        if self._reader is not None:
            return self
        stderr_target = {
            "pipe": asyncio.subprocess.PIPE,
            "inherit": None,
            "ignore": asyncio.subprocess.DEVNULL,
        }[self._stderr_mode]
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self.binary,
                *self._args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr_target,
                env=self._env,
                cwd=self._cwd,
                limit=self._limit,
            )
        except OSError as error:
            raise ConnectionClosedError(
                f"could not start {self.binary}: {error}; set AGENT_SERVER_BIN or pass binary="
            ) from error
        assert self._proc.stdout is not None and self._proc.stdin is not None
        self._stderr_done = asyncio.Event()
        if self._proc.stderr is not None:
            self._tasks.append(asyncio.ensure_future(self._read_stderr(self._proc.stderr)))
        else:
            self._stderr_done.set()
        self._attach(self._proc.stdout, cast(_Writer, self._proc.stdin))
        return self

    @classmethod
    def from_streams(cls, reader: asyncio.StreamReader, writer: Any) -> "AgentServerClient":
        """Wraps an existing connection (``reader`` is the server's stdout, ``writer`` its stdin,
        with ``write``, ``drain`` and ``close``). Must be called inside a running event loop."""
        client = cls()
        client._attach(reader, cast(_Writer, writer))
        return client

    def _attach(self, reader: asyncio.StreamReader, writer: _Writer) -> None:
        self._reader = reader
        self._writer = writer
        self._closed_event = asyncio.Event()
        self._tasks.append(asyncio.ensure_future(self._read_loop()))

    async def __aenter__(self) -> "AgentServerClient":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- state ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the connection has ended."""
        return self._closed_error is not None

    @property
    def pid(self) -> Optional[int]:
        """The server's process id, once started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> Optional[int]:
        """The server's exit status once it has exited."""
        return self._proc.returncode if self._proc is not None else None

    @property
    def stderr(self) -> str:
        """The last few kilobytes the server wrote to stderr (with ``stderr="pipe"``)."""
        return self._stderr_tail

    # ---- requests ---------------------------------------------------------------------------

    async def request(self, method: str, params: Optional[Mapping[str, Any]] = None) -> Any:
        """Sends any request and returns its result.

        Raises ``AgentServerError`` for an error reply and ``ConnectionClosedError`` when the
        connection ends first. Cancelling the awaiting task sends ``$/cancelRequest`` for it (the
        server's late reply is then ignored), so ``asyncio.wait_for`` and ``asyncio.timeout``
        cancel server-side work too.
        """
        if self._closed_error is not None:
            raise self._closed_error
        if self._writer is None:
            raise RuntimeError("the client is not started; use `async with` or `await client.start()`")
        request_id = next(self._ids)
        future: "asyncio.Future[Any]" = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (method, future)
        message: Dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        try:
            try:
                await self._send(message)
            except (ConnectionClosedError, OSError):
                self._pending.pop(request_id, None)
                if future.done() and not future.cancelled():
                    future.exception()  # Retrieved here: the same error is raised below.
                raise
            return await future
        except asyncio.CancelledError:
            # The future itself is cancelled by now; a reply not yet received leaves the entry.
            if request_id in self._pending and self._closed_error is None:
                # Keep the entry: the server still answers once, and that answer is dropped.
                self._send_nowait({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": request_id}})
            raise

    async def notify(self, method: str, params: Optional[Mapping[str, Any]] = None) -> None:
        """Sends a notification (no reply)."""
        if self._closed_error is not None:
            raise self._closed_error
        message: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self._send(message)

    async def initialize(self, params: Optional[InitializeParams] = None) -> InitializeResult:
        """``initialize``: must be the first request if sent at all. ``protocolVersion``
        defaults to the version these types describe; ``capabilities.approvals`` defaults to
        whether an approval handler is set (set it with ``on_approval_request`` first)."""
        full: Dict[str, Any] = {"protocolVersion": PROTOCOL_VERSION, **(params or {})}
        if "capabilities" not in full:
            full["capabilities"] = {"approvals": self._approval_handler is not None}
        return cast(InitializeResult, await self.request("initialize", full))

    async def shutdown(self) -> None:
        """``shutdown``: interrupts running turns; the server exits after replying. See ``close``."""
        await self.request("shutdown", {})

    async def auth_status(self, params: Optional[AuthStatusParams] = None) -> AuthStatus:
        """``auth/status``."""
        return cast(AuthStatus, await self.request("auth/status", params or {}))

    async def login_api_key(self, params: LoginApiKeyParams) -> EmptyResult:
        """``auth/loginApiKey``: stores the key in ``auth.json``; ``auth/statusChanged`` follows."""
        return cast(EmptyResult, await self.request("auth/loginApiKey", params))

    async def login_chatgpt(self, params: Optional[LoginChatGptParams] = None) -> LoginChatGptResult:
        """``auth/loginChatGPT``: with no params (or ``flow: "browser"``) open ``authUrl`` in a
        browser; with ``flow: "deviceCode"`` show ``verificationUrl`` and ``userCode`` (for machines
        no browser can reach). ``auth/loginChatGPTComplete`` follows either way."""
        return cast(LoginChatGptResult, await self.request("auth/loginChatGPT", params or {}))

    async def cancel_login(self, params: CancelLoginParams) -> CancelLoginResult:
        """``auth/cancelLogin``."""
        return cast(CancelLoginResult, await self.request("auth/cancelLogin", params))

    async def rate_limits(self, params: Optional[RateLimitsParams] = None) -> RateLimitsResult:
        """``auth/rateLimits``: the ChatGPT plan's usage limits, as last seen in a model response
        or read from the usage endpoint (``refresh: True`` asks it again); ``error`` says why it
        could not be read."""
        return cast(RateLimitsResult, await self.request("auth/rateLimits", params or {}))

    async def logout(self) -> EmptyResult:
        """``auth/logout``: deletes ``auth.json``."""
        return cast(EmptyResult, await self.request("auth/logout", {}))

    async def new_session(self, params: Optional[NewSessionParams] = None) -> Session:
        """``session/new``."""
        return cast(Session, await self.request("session/new", params or {}))

    async def submit(self, params: SubmitParams) -> SubmitResult:
        """``session/submit``: replies at once; the turn's events arrive as ``session/event``."""
        return cast(SubmitResult, await self.request("session/submit", params))

    async def steer(self, params: SteerParams) -> SteerResult:
        """``session/steer``: adds input to the running turn; it joins at the turn's next model request."""
        return cast(SteerResult, await self.request("session/steer", params))

    async def interrupt(self, params: InterruptParams) -> EmptyResult:
        """``session/interrupt``."""
        return cast(EmptyResult, await self.request("session/interrupt", params))

    async def compact(self, params: CompactParams) -> CompactResult:
        """``session/compact``: replies at once; the compaction runs as a turn of its own (queued
        like a submit) whose events carry the ``contextSummary`` item and ``contextCompacted``."""
        return cast(CompactResult, await self.request("session/compact", params))

    async def list_sessions(self, params: Optional[ListSessionsParams] = None) -> ListSessionsResult:
        """``session/list``: the sessions loaded here, or with ``stored`` a page of the store."""
        return cast(ListSessionsResult, await self.request("session/list", params or {}))

    async def list_models(self) -> ListModelsResult:
        """``model/list``: the built-in catalog, ``[models.<id>]`` tables and what providers list."""
        return cast(ListModelsResult, await self.request("model/list", {}))

    async def close_session(self, params: CloseSessionParams) -> EmptyResult:
        """``session/close``: unloads the session (it stays stored)."""
        return cast(EmptyResult, await self.request("session/close", params))

    async def read_session(self, params: ReadSessionParams) -> SessionWithTurns:
        """``session/read``: a stored or loaded session and its turns; loads nothing."""
        return cast(SessionWithTurns, await self.request("session/read", params))

    async def resume_session(self, params: ResumeSessionParams) -> SessionWithTurns:
        """``session/resume``: loads a stored session into this server."""
        return cast(SessionWithTurns, await self.request("session/resume", params))

    async def fork_session(self, params: ForkSessionParams) -> SessionWithTurns:
        """``session/fork``: a new stored session holding the turns up to ``turnId``."""
        return cast(SessionWithTurns, await self.request("session/fork", params))

    async def archive_session(self, params: SessionIdParams) -> EmptyResult:
        """``session/archive``: hides the session from ``session/list {stored}``."""
        return cast(EmptyResult, await self.request("session/archive", params))

    async def unarchive_session(self, params: SessionIdParams) -> EmptyResult:
        """``session/unarchive``."""
        return cast(EmptyResult, await self.request("session/unarchive", params))

    async def delete_session(self, params: SessionIdParams) -> EmptyResult:
        """``session/delete``: removes the session from the store for good."""
        return cast(EmptyResult, await self.request("session/delete", params))

    async def set_session_title(self, params: SetTitleParams) -> EmptyResult:
        """``session/setTitle``."""
        return cast(EmptyResult, await self.request("session/setTitle", params))
    async def mcp_list(self, params: Optional[McpListParams] = None) -> McpListResult:
        """``mcp/list``: the MCP servers (the configured ones, plus a session's own with
        ``sessionId``), their status and the tools the model is offered. Status changes arrive
        as ``mcp/serverStatus`` notifications."""
        return cast(McpListResult, await self.request("mcp/list", params or {}))

    # ---- notifications and events -----------------------------------------------------------

    @overload
    def on_notification(self, method: str, callback: NotificationCallback) -> Unsubscribe: ...

    @overload
    def on_notification(self, method: AnyNotificationCallback) -> Unsubscribe: ...

    def on_notification(self, method: Any, callback: Any = None) -> Unsubscribe:
        """``on_notification("auth/statusChanged", cb)`` listens to one method (``cb(params)``);
        ``on_notification(cb)`` to all (``cb(method, params)``). Callbacks run in the reader
        task in arrival order; a coroutine they return is scheduled as a task."""
        if callback is None:
            listener = cast(AnyNotificationCallback, method)
        else:
            wanted = method

            def listener(got: str, params: Any) -> Any:
                if got == wanted:
                    return callback(params)
                return None

        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def on_event(self, callback: Callable[[SessionEventNotification], Any]) -> Unsubscribe:
        """Listens to every ``session/event`` of every session."""
        return self.on_notification("session/event", callback)

    def events(self, session_id: str) -> EventStream:
        """The events of one session from now on (see ``EventStream``)."""
        return EventStream(self, session_id)

    def _on_close(self, callback: Callable[[ConnectionClosedError], None]) -> Unsubscribe:
        if self._closed_error is not None:
            callback(self._closed_error)
            return lambda: None
        self._close_listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._close_listeners:
                self._close_listeners.remove(callback)

        return unsubscribe

    async def submit_and_wait(
        self,
        params: SubmitParams,
        *,
        on_event: Optional[Callable[[SessionEventNotification], Any]] = None,
        on_submitted: Optional[Callable[[SubmitResult], Any]] = None,
    ) -> TurnCompletedEvent:
        """Submits a turn and returns its ``turnCompleted`` event, whatever its status.

        It listens before submitting, so no event is missed even if events overtake the reply.
        ``on_event`` gets every event of this turn in order. Cancelling the awaiting task
        interrupts the turn (``session/interrupt``) and raises ``CancelledError``.
        """
        if self._closed_error is not None:
            raise self._closed_error
        loop = asyncio.get_running_loop()
        done: "asyncio.Future[TurnCompletedEvent]" = loop.create_future()
        early: List[SessionEventNotification] = []
        target: Optional[Tuple[str, str]] = None

        def handle(notification: SessionEventNotification) -> None:
            if done.done() or (notification["sessionId"], notification["turnId"]) != target:
                return
            if on_event is not None:
                on_event(notification)
            event = notification["event"]
            if event["type"] == "turnCompleted":
                done.set_result(event)

        def listener(notification: SessionEventNotification) -> None:
            if target is None:
                early.append(notification)
            else:
                handle(notification)

        def closed(error: ConnectionClosedError) -> None:
            if not done.done():
                done.set_exception(error)

        unsubscribe = self.on_event(listener)
        unsubscribe_close = self._on_close(closed)
        try:
            result = await self.submit(params)
            target = (result["sessionId"], result["turnId"])
            if on_submitted is not None:
                on_submitted(result)
            for notification in early:
                handle(notification)
            early.clear()
            try:
                return await done
            except asyncio.CancelledError:
                if self._closed_error is None:
                    self._spawn(self.interrupt({"sessionId": target[0], "turnId": target[1]}))
                raise
        finally:
            unsubscribe()
            unsubscribe_close()
            if done.done() and not done.cancelled():
                done.exception()  # Retrieved: a closed connection was already raised by submit.

    # ---- approvals --------------------------------------------------------------------------

    def on_approval_request(self, handler: Optional[ApprovalHandler]) -> None:
        """Sets (or with ``None`` clears) the handler answering ``session/requestApproval``.

        Set it before ``initialize`` so the client declares ``capabilities.approvals``; without
        one the server never asks. A handler that raises answers ``deny``. When the server
        withdraws the request, the handler's call is cancelled.
        """
        self._approval_handler = handler

    # ---- shutdown ---------------------------------------------------------------------------

    async def close(self, timeout: float = 5.0) -> Optional[int]:
        """Ends cleanly: ``shutdown`` (running turns complete ``interrupted``), close stdin, wait
        for the exit; after ``timeout`` seconds the server is killed. Returns the exit status."""
        if self._writer is None:
            return None
        if self._closed_error is None:
            try:
                await asyncio.wait_for(self.shutdown(), timeout)
            except (AgentServerError, ConnectionClosedError, asyncio.TimeoutError):
                pass  # Already on its way out, or stuck: the wait below settles it.
        self._close_writer()
        if self._proc is not None:
            try:
                await asyncio.wait_for(self._proc.wait(), timeout)
            except asyncio.TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        self._mark_closed("the client closed the connection")
        await self._cancel_tasks()
        return self.returncode

    async def kill(self) -> None:
        """Ends at once without a clean shutdown."""
        self._close_writer()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        self._mark_closed("the client killed the server")
        await self._cancel_tasks()

    # ---- internals --------------------------------------------------------------------------

    def _close_writer(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except (OSError, RuntimeError):
                pass

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.append(task)

        def done(t: "asyncio.Task[Any]") -> None:
            if t in self._tasks:
                self._tasks.remove(t)
            if not t.cancelled() and t.exception() is not None:
                log.debug("background task failed: %r", t.exception())

        task.add_done_callback(done)

    @staticmethod
    def _encode(message: Mapping[str, Any]) -> bytes:
        # json.dumps escapes every newline inside strings, so one message is one line.
        return (json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")

    async def _send(self, message: Mapping[str, Any]) -> None:
        assert self._writer is not None
        try:
            self._writer.write(self._encode(message))
            await self._writer.drain()
        except (BrokenPipeError, ConnectionResetError) as error:
            # The server's stdin is gone: it is exiting. Report the end of the connection, with
            # its exit status once the reader has seen stdout close.
            assert self._closed_event is not None
            try:
                await asyncio.wait_for(self._closed_event.wait(), EXIT_GRACE_SECONDS * 2)
            except asyncio.TimeoutError:
                self._mark_closed("the server's stdin is closed")
            assert self._closed_error is not None
            raise self._closed_error from error

    def _send_nowait(self, message: Mapping[str, Any]) -> None:
        if self._writer is None or self._closed_error is not None:
            return
        try:
            self._writer.write(self._encode(message))
        except (OSError, RuntimeError):
            pass

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        assert self._stderr_done is not None
        try:
            while True:
                chunk = await stream.read(4096)
                if not chunk:
                    break
                text = chunk.decode("utf-8", errors="replace")
                self._stderr_tail = (self._stderr_tail + text)[-STDERR_TAIL_CHARS:]
                if self._on_stderr is not None:
                    self._on_stderr(text)
        finally:
            self._stderr_done.set()

    async def _read_loop(self) -> None:
        assert self._reader is not None
        reason = "the server closed its stdout"
        try:
            while True:
                try:
                    line = await self._reader.readline()
                except ValueError:
                    reason = f"the server sent a message longer than {self._limit} bytes"
                    break
                if not line:
                    break
                text = line.strip()
                if not text:
                    continue
                try:
                    message = json.loads(text)
                except json.JSONDecodeError:
                    log.warning("ignoring a line that is not JSON: %.200r", text)
                    continue
                if isinstance(message, dict):
                    self._dispatch(message)
                else:
                    log.warning("ignoring a message that is not an object: %.200r", text)
        finally:
            await self._stream_closed(reason)

    async def _stream_closed(self, reason: str) -> None:
        if self._proc is not None:
            # Wait briefly for the exit status and the rest of stderr, so the error can say why.
            waits = [self._proc.wait()]
            if self._stderr_done is not None:
                waits.append(self._stderr_done.wait())
            try:
                await asyncio.wait_for(asyncio.gather(*waits), EXIT_GRACE_SECONDS)
            except asyncio.TimeoutError:
                pass
            if self._proc.returncode is not None:
                reason = f"the server exited with status {self._proc.returncode}"
        self._mark_closed(reason)

    def _mark_closed(self, reason: str) -> None:
        if self._closed_error is not None:
            return
        error = ConnectionClosedError(
            f"connection to agent-server ended: {reason}", self.returncode, self._stderr_tail
        )
        self._closed_error = error
        for _method, future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        for task in self._incoming.values():
            task.cancel()
        listeners, self._close_listeners = self._close_listeners, []
        for listener in listeners:
            listener(error)
        if self._closed_event is not None:
            self._closed_event.set()

    def _dispatch(self, message: Dict[str, Any]) -> None:
        method = message.get("method")
        if isinstance(method, str):
            if "id" in message:
                self._spawn(self._answer(message["id"], method, message.get("params")))
            else:
                self._notification(method, message.get("params"))
            return
        if "id" in message:
            entry = self._pending.pop(message["id"], None)
            if entry is None:
                log.debug("reply to an unknown or cancelled request %r", message["id"])
                return
            name, future = entry
            if future.done():
                return
            error = message.get("error")
            if isinstance(error, dict):
                future.set_exception(
                    AgentServerError(
                        name,
                        int(error.get("code", ErrorCode.INTERNAL_ERROR)),
                        str(error.get("message", "")),
                        error.get("data"),
                    )
                )
            else:
                future.set_result(message.get("result"))

    def _notification(self, method: str, params: Any) -> None:
        if method in ("$/cancelRequest", "notifications/cancelled"):
            key = "id" if method == "$/cancelRequest" else "requestId"
            request_id = params.get(key) if isinstance(params, dict) else None
            task = self._incoming.get(json.dumps(request_id))
            if task is not None:
                self._withdrawn.add(json.dumps(request_id))
                task.cancel()
            return
        for listener in list(self._listeners):
            try:
                result = listener(method, params)
                if inspect.isawaitable(result):
                    self._spawn(result)
            except Exception:  # A listener's bug must not stop the reader.
                log.exception("notification listener for %s failed", method)

    async def _answer(self, request_id: Any, method: str, params: Any) -> None:
        # Ids are keyed by their JSON text: "1" and 1 are different requests.
        key = json.dumps(request_id)
        if method != "session/requestApproval":
            await self._reply_error(request_id, ErrorCode.METHOD_NOT_FOUND, f"the client does not handle {method}", "methodNotFound")
            return
        handler = self._approval_handler
        if handler is None:
            await self._reply(request_id, {"decision": "deny"})
            return
        task = asyncio.current_task()
        assert task is not None
        self._incoming[key] = task
        try:
            try:
                outcome = handler(cast(RequestApprovalParams, params))
                if inspect.isawaitable(outcome):
                    outcome = await outcome
                result: Any = outcome
            except asyncio.CancelledError:
                if key in self._withdrawn:
                    await self._reply_error(request_id, ErrorCode.REQUEST_CANCELLED, "approval request withdrawn", "cancelled")
                    return
                raise
            except Exception:
                log.exception("approval handler failed; answering deny")
                result = {"decision": "deny"}
            await self._reply(request_id, result)
        finally:
            self._incoming.pop(key, None)
            self._withdrawn.discard(key)

    async def _reply(self, request_id: Any, result: Any) -> None:
        if self._closed_error is None:
            self._send_nowait({"jsonrpc": "2.0", "id": request_id, "result": result})

    async def _reply_error(self, request_id: Any, code: int, message: str, kind: str) -> None:
        if self._closed_error is None:
            self._send_nowait(
                {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message, "data": {"kind": kind}}}
            )
