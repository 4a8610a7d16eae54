/**
 * The client: spawns `agent-server` (or adopts streams to one), speaks JSON-RPC 2.0 with it over
 * `vscode-jsonrpc` (Content-Length framing, which the server detects from the first byte), and
 * exposes one typed method per request, event subscriptions, an approval hook and turn helpers.
 */

import { spawn, type ChildProcess } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import {
  CancellationTokenSource,
  createMessageConnection,
  ErrorCodes,
  ResponseError,
  StreamMessageReader,
  StreamMessageWriter,
  type CancellationToken,
  type DataCallback,
  type Disposable as JsonRpcDisposable,
  type MessageConnection,
  type NotificationMessage,
} from "vscode-jsonrpc/node";

import { AgentServerError, ConnectionClosedError } from "./errors.js";
import {
  PROTOCOL_VERSION,
  type ClientNotificationMethod,
  type ClientNotifications,
  type ClientRequestMethod,
  type ClientRequests,
  type ServerNotificationMethod,
  type ServerNotifications,
} from "./generated/methods.js";
import type {
  AuthStatus,
  AuthStatusParams,
  CancelLoginParams,
  CancelLoginResult,
  CloseSessionParams,
  CompactParams,
  CompactResult,
  EmptyResult,
  ErrorData,
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
} from "./generated/protocol.js";
import { AsyncQueue } from "./queue.js";

/** Something to stop listening with. */
export interface Disposable {
  dispose(): void;
}

/** Options of every request. */
export interface RequestOptions {
  /**
   * Aborting sends `$/cancelRequest` for the request. The server still replies exactly once, and
   * the promise settles with that reply: usually an `AgentServerError` with kind `cancelled`,
   * or the normal result when the work had already finished.
   */
  signal?: AbortSignal;
}

/** How to start the server. */
export interface SpawnOptions {
  /** The binary; default `$AGENT_SERVER_BIN`, else `agent-server` on `PATH`. */
  binaryPath?: string;
  /** Extra arguments, e.g. `["--home", dir]` or `["-c", "model=o3"]`. */
  args?: string[];
  /** The server's environment; default this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** The server's working directory (the default session cwd). */
  cwd?: string;
  /**
   * What to do with the server's stderr (its logs): `"pipe"` (the default) keeps the last few
   * kilobytes for error messages and passes each chunk to `onStderr`; `"inherit"` shares this
   * process's stderr; `"ignore"` drops it.
   */
  stderr?: "pipe" | "inherit" | "ignore";
  /** Called with each chunk of the server's stderr when `stderr` is `"pipe"`. */
  onStderr?: (chunk: string) => void;
}

/** How the server process ended. */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Extra context given to an approval handler. */
export interface ApprovalContext {
  /** Aborted when the server withdraws the request (`$/cancelRequest`), e.g. after an interrupt. */
  signal: AbortSignal;
}

/** Decides one `session/requestApproval`. */
export type ApprovalHandler = (
  params: RequestApprovalParams,
  context: ApprovalContext,
) => RequestApprovalResult | Promise<RequestApprovalResult>;

/** Options of `submitAndWait`. */
export interface SubmitAndWaitOptions {
  /**
   * Aborting cancels the submit if it is still pending, or interrupts the turn
   * (`session/interrupt`) once it runs; the promise then rejects with the signal's reason.
   */
  signal?: AbortSignal;
  /** Called with every event of this turn, in order, the final `turnCompleted` included. */
  onEvent?: (notification: SessionEventNotification) => void;
  /** Called once the server has accepted the turn. */
  onSubmitted?: (result: SubmitResult) => void;
}

type AnyNotificationListener = (method: string, params: unknown) => void;

/** Enough stderr for the reason a server stopped (it writes one line then exits 2). */
const STDERR_TAIL_BYTES = 8192;
/** How long to wait for the exit status once the server's stdout has closed. */
const EXIT_GRACE_MS = 2000;

/**
 * A notification the reader adds after the server's last message, never sent by the server:
 * the connection handles messages in order, so once this one is handled, everything the server
 * wrote has been delivered (replies, events), and only then is the connection treated as closed.
 */
const INPUT_DRAINED = "$/agentServerClient/inputDrained";

/** How long to wait for `INPUT_DRAINED` after the stream closed before closing anyway. */
const DRAIN_FALLBACK_MS = 1000;

/** A reader that, when the server's output ends, queues `INPUT_DRAINED` behind its last message. */
class DrainingReader extends StreamMessageReader {
  private deliver: DataCallback | undefined;

  override listen(callback: DataCallback): JsonRpcDisposable {
    this.deliver = callback;
    return super.listen(callback);
  }

  protected override fireClose(): void {
    this.deliver?.({ jsonrpc: "2.0", method: INPUT_DRAINED } as NotificationMessage);
    super.fireClose();
  }
}

/** The client library's own version, sent nowhere unless you put it in `clientInfo`. */
export const CLIENT_VERSION = "0.1.0";

/** A connection to one `agent-server` process. */
export class AgentServerClient {
  private readonly connection: MessageConnection;
  private readonly child: ChildProcess | undefined;
  private readonly output: Writable;
  private readonly listeners = new Set<AnyNotificationListener>();
  private readonly closeListeners = new Set<(error: ConnectionClosedError) => void>();
  private approvalHandler: ApprovalHandler | undefined;
  private stderrTail = "";
  private closedError: ConnectionClosedError | undefined;
  private closing = false;
  private exitStatus: ExitStatus | undefined;
  private readonly exitPromise: Promise<ExitStatus>;
  private resolveExit: (status: ExitStatus) => void = () => undefined;

  /**
   * Wraps an existing connection: `input` is the server's stdout, `output` its stdin. Use
   * `AgentServerClient.spawn` to start the server; use this when something else started it.
   */
  constructor(input: Readable, output: Writable, child?: ChildProcess) {
    this.child = child;
    this.output = output;
    this.connection = createMessageConnection(new DrainingReader(input), new StreamMessageWriter(output));
    this.connection.onNotification((method: string, params: unknown) => {
      if (method === INPUT_DRAINED) {
        this.streamClosed();
        return;
      }
      for (const listener of [...this.listeners]) {
        try {
          listener(method, params);
        } catch (error) {
          // One listener's bug must not keep the others (or submitAndWait) from the message.
          console.error(`agent-server client: a listener for ${method} threw`, error);
        }
      }
    });
    this.connection.onRequest("session/requestApproval", (params: RequestApprovalParams, token: CancellationToken) =>
      this.answerApproval(params, token),
    );
    // Normally `INPUT_DRAINED` closes the connection once every message read is delivered.
    this.connection.onClose(() => {
      setTimeout(() => this.streamClosed(), DRAIN_FALLBACK_MS).unref();
    });
    this.connection.onError(([error]) => {
      // A broken pipe on write means the server is gone; reads keep their own close event.
      if ((error as NodeJS.ErrnoException).code === "EPIPE") this.streamClosed();
    });
    this.exitPromise = new Promise<ExitStatus>((resolve) => (this.resolveExit = resolve));
    if (child === undefined) {
      this.closeListeners.add(() => this.resolveExit({ code: null, signal: null }));
    } else {
      // `close` rather than `exit`: it comes after stderr is drained, so errors carry all of it.
      child.once("close", (code, signal) => {
        this.exitStatus = { code, signal };
        this.resolveExit(this.exitStatus);
      });
    }
    this.connection.listen();
  }

  /** Starts `agent-server` with stdio pipes and connects to it (call `initialize` next). */
  static spawn(options: SpawnOptions = {}): AgentServerClient {
    const binary = options.binaryPath ?? process.env.AGENT_SERVER_BIN ?? "agent-server";
    const stderrMode = options.stderr ?? "pipe";
    const child = spawn(binary, options.args ?? [], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["pipe", "pipe", stderrMode],
    });
    if (child.stdout === null || child.stdin === null) {
      throw new Error("spawning agent-server gave no stdio pipes");
    }
    const client = new AgentServerClient(child.stdout, child.stdin, child);
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      client.stderrTail = (client.stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
      options.onStderr?.(chunk);
    });
    child.once("error", (error) => {
      // A process that never started emits no `close`; its exit status is unknown.
      if (child.pid === undefined) client.resolveExit({ code: null, signal: null });
      client.markClosed(
        `could not start ${binary}: ${error.message}; set AGENT_SERVER_BIN or pass binaryPath`,
      );
    });
    // Writes to a server that already exited fail with EPIPE; the close handling reports it.
    child.stdin.on("error", () => client.streamClosed());
    return client;
  }

  /** Spawns the server and sends `initialize` in one step. */
  static async start(options: SpawnOptions = {}, init: InitializeParams = {}): Promise<AgentServerClient> {
    const client = AgentServerClient.spawn(options);
    try {
      await client.initialize(init);
    } catch (error) {
      client.dispose();
      throw error;
    }
    return client;
  }

  /** The process id of the spawned server, if this client spawned one. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Whether the connection has ended. */
  get closed(): boolean {
    return this.closedError !== undefined;
  }

  /** The last few kilobytes the server wrote to stderr (with `stderr: "pipe"`). */
  get stderr(): string {
    return this.stderrTail;
  }

  /** Settles when the server process exits (at once when there is no process). */
  get exited(): Promise<ExitStatus> {
    return this.exitPromise;
  }

  // ---- requests -------------------------------------------------------------------------

  /**
   * Sends any client → server request of the method map, typed by method name.
   * Error replies reject with `AgentServerError`; a lost connection with `ConnectionClosedError`.
   */
  async request<M extends ClientRequestMethod>(
    method: M,
    params: ClientRequests[M]["params"],
    options: RequestOptions = {},
  ): Promise<ClientRequests[M]["result"]> {
    if (this.closedError !== undefined) throw this.closedError;
    const source = new CancellationTokenSource();
    const onAbort = () => source.cancel();
    const { signal } = options;
    if (signal?.aborted) source.cancel();
    else signal?.addEventListener("abort", onAbort, { once: true });
    try {
      return (await this.connection.sendRequest(method, params, source.token)) as ClientRequests[M]["result"];
    } catch (error) {
      throw await this.translate(method, error);
    } finally {
      signal?.removeEventListener("abort", onAbort);
      source.dispose();
    }
  }

  /** Sends a client → server notification. */
  async notify<M extends ClientNotificationMethod>(method: M, params: ClientNotifications[M]): Promise<void> {
    if (this.closedError !== undefined) throw this.closedError;
    await this.connection.sendNotification(method, params);
  }

  /**
   * `initialize`: must be the first request if sent at all. `protocolVersion` defaults to the
   * version these types describe; `capabilities.approvals` defaults to whether an approval handler
   * is set (set it with `onApprovalRequest` first).
   */
  initialize(params: InitializeParams = {}, options?: RequestOptions): Promise<InitializeResult> {
    const full: InitializeParams = {
      protocolVersion: PROTOCOL_VERSION,
      ...params,
      capabilities: params.capabilities ?? { approvals: this.approvalHandler !== undefined },
    };
    return this.request("initialize", full, options);
  }

  /** `shutdown`: interrupts running turns; the server exits after replying. See also `close`. */
  shutdown(options?: RequestOptions): Promise<null> {
    return this.request("shutdown", {}, options);
  }

  /** `auth/status`. */
  authStatus(params: AuthStatusParams = {}, options?: RequestOptions): Promise<AuthStatus> {
    return this.request("auth/status", params, options);
  }

  /** `auth/loginApiKey`: stores the key in `auth.json`; `auth/statusChanged` follows. */
  loginApiKey(params: LoginApiKeyParams, options?: RequestOptions): Promise<EmptyResult> {
    return this.request("auth/loginApiKey", params, options);
  }

  /**
   * `auth/loginChatGPT`: with no params (or `flow: "browser"`) open `authUrl` in a browser; with
   * `flow: "deviceCode"` show `verificationUrl` and `userCode` (for machines no browser can reach).
   * `auth/loginChatGPTComplete` follows either way.
   */
  loginChatGPT(params: LoginChatGptParams = {}, options?: RequestOptions): Promise<LoginChatGptResult> {
    return this.request("auth/loginChatGPT", params, options);
  }

  /** `auth/cancelLogin`. */
  cancelLogin(params: CancelLoginParams, options?: RequestOptions): Promise<CancelLoginResult> {
    return this.request("auth/cancelLogin", params, options);
  }

  /**
   * `auth/rateLimits`: the ChatGPT plan's usage limits, as last seen in a model response or read
   * from the usage endpoint (`refresh: true` asks it again); `error` says why it could not be read.
   */
  rateLimits(params: RateLimitsParams = {}, options?: RequestOptions): Promise<RateLimitsResult> {
    return this.request("auth/rateLimits", params, options);
  }

  /** `auth/logout`: deletes `auth.json`. */
  logout(options?: RequestOptions): Promise<EmptyResult> {
    return this.request("auth/logout", {}, options);
  }

  /** `session/new`. */
  newSession(params: NewSessionParams = {}, options?: RequestOptions): Promise<Session> {
    return this.request("session/new", params, options);
  }

  /** `session/submit`: replies at once; the turn's events arrive as `session/event`. */
  submit(params: SubmitParams, options?: RequestOptions): Promise<SubmitResult> {
    return this.request("session/submit", params, options);
  }

  /** `session/steer`: adds input to the running turn; it joins at the turn's next model request. */
  steer(params: SteerParams, options?: RequestOptions): Promise<SteerResult> {
    return this.request("session/steer", params, options);
  }

  /** `session/interrupt`. */
  interrupt(params: InterruptParams, options?: RequestOptions): Promise<EmptyResult> {
    return this.request("session/interrupt", params, options);
  }

  /**
   * `session/compact`: replies at once; the compaction runs as a turn of its own (queued like a
   * submit) whose events carry the `contextSummary` item and `contextCompacted`.
   */
  compact(params: CompactParams, options?: RequestOptions): Promise<CompactResult> {
    return this.request("session/compact", params, options);
  }

  /** `session/list`: the sessions loaded here, or with `stored: true` a page of the store. */
  listSessions(params: ListSessionsParams = {}, options?: RequestOptions): Promise<ListSessionsResult> {
    return this.request("session/list", params, options);
  }

  /** `model/list`: the built-in catalog, `[models.<id>]` tables and what providers list. */
  listModels(options?: RequestOptions): Promise<ListModelsResult> {
    return this.request("model/list", {}, options);
  }

  /** `session/close`: unloads the session (it stays stored). */
  closeSession(params: CloseSessionParams, options?: RequestOptions): Promise<EmptyResult> {
    return this.request("session/close", params, options);
  }

  /** `session/read`: a stored or loaded session and its turns; loads nothing. */
  readSession(params: ReadSessionParams, options?: RequestOptions): Promise<SessionWithTurns> {
    return this.request("session/read", params, options);
  }

  /** `session/resume`: loads a stored session into this server. */
  resumeSession(params: ResumeSessionParams, options?: RequestOptions): Promise<SessionWithTurns> {
    return this.request("session/resume", params, options);
  }

  /** `session/fork`: a new stored session holding the turns up to `turnId`. */
  forkSession(params: ForkSessionParams, options?: RequestOptions): Promise<SessionWithTurns> {
    return this.request("session/fork", params, options);
  }

  /** `session/archive`: hides the session from `session/list {stored}`. */
  archiveSession(params: SessionIdParams, options?: RequestOptions): Promise<EmptyResult> {
    return this.request("session/archive", params, options);
  }

  /** `session/unarchive`. */
  unarchiveSession(params: SessionIdParams, options?: RequestOptions): Promise<EmptyResult> {
    return this.request("session/unarchive", params, options);
  }

  /** `session/delete`: removes the session from the store for good. */
  deleteSession(params: SessionIdParams, options?: RequestOptions): Promise<EmptyResult> {
    return this.request("session/delete", params, options);
  }

  /** `session/setTitle`. */
  setSessionTitle(params: SetTitleParams, options?: RequestOptions): Promise<EmptyResult> {
    return this.request("session/setTitle", params, options);
  }

  /**
   * `mcp/list`: the MCP servers (the configured ones, plus a session's own with `sessionId`),
   * their status and the tools the model is offered. Status changes arrive as
   * `mcp/serverStatus` notifications.
   */
  mcpList(params: McpListParams = {}, options?: RequestOptions): Promise<McpListResult> {
    return this.request("mcp/list", params, options);
  }

  // ---- notifications and events ---------------------------------------------------------

  /** Listens to one server notification, typed by method name. */
  onNotification<M extends ServerNotificationMethod>(
    method: M,
    listener: (params: ServerNotifications[M]) => void,
  ): Disposable;
  /** Listens to every server notification. */
  onNotification(listener: (method: string, params: unknown) => void): Disposable;
  onNotification(
    methodOrListener: string | AnyNotificationListener,
    maybeListener?: (params: never) => void,
  ): Disposable {
    let listener: AnyNotificationListener;
    if (typeof methodOrListener === "string") {
      const wanted = methodOrListener;
      const typed = maybeListener as (params: unknown) => void;
      listener = (method, params) => {
        if (method === wanted) typed(params);
      };
    } else {
      listener = methodOrListener;
    }
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }

  /** Listens to every `session/event` of every session. */
  onEvent(listener: (notification: SessionEventNotification) => void): Disposable {
    return this.onNotification("session/event", listener);
  }

  /** Runs `listener` once when the connection ends (at once if it already has). */
  onClose(listener: (error: ConnectionClosedError) => void): Disposable {
    if (this.closedError !== undefined) {
      listener(this.closedError);
      return { dispose: () => undefined };
    }
    this.closeListeners.add(listener);
    return { dispose: () => this.closeListeners.delete(listener) };
  }

  /**
   * The events of one session from now on, as an async iterator. It buffers what the loop has not
   * read yet; it ends when the loop `break`s, when `signal` aborts, or when the connection ends.
   */
  events(sessionId: string, options: { signal?: AbortSignal } = {}): AsyncIterableIterator<SessionEventNotification> {
    const { signal } = options;
    let subscription: Disposable | undefined;
    let closing: Disposable | undefined;
    const onAbort = () => queue.end();
    const queue = new AsyncQueue<SessionEventNotification>(() => {
      subscription?.dispose();
      closing?.dispose();
      signal?.removeEventListener("abort", onAbort);
    });
    subscription = this.onEvent((notification) => {
      if (notification.sessionId === sessionId) queue.push(notification);
    });
    closing = this.onClose(() => queue.end());
    if (signal?.aborted) queue.end();
    else signal?.addEventListener("abort", onAbort, { once: true });
    return queue;
  }

  /**
   * Submits a turn and settles with its `turnCompleted` event, whatever its status. It listens
   * before submitting, so no event is missed even when events overtake the submit's reply.
   */
  submitAndWait(params: SubmitParams, options: SubmitAndWaitOptions = {}): Promise<TurnCompletedEvent> {
    const { signal, onEvent, onSubmitted } = options;
    return new Promise<TurnCompletedEvent>((resolve, reject) => {
      if (this.closedError !== undefined) {
        reject(this.closedError);
        return;
      }
      let turn: SubmitResult | undefined;
      let settled = false;
      const early: SessionEventNotification[] = [];
      const cleanup = () => {
        settled = true;
        subscription.dispose();
        closing.dispose();
        signal?.removeEventListener("abort", onAbort);
      };
      const handle = (notification: SessionEventNotification) => {
        if (settled || turn === undefined) return;
        if (notification.sessionId !== turn.sessionId || notification.turnId !== turn.turnId) return;
        onEvent?.(notification);
        if (notification.event.type === "turnCompleted") {
          cleanup();
          resolve(notification.event);
        }
      };
      const subscription = this.onEvent((notification) => {
        if (turn === undefined) early.push(notification);
        else handle(notification);
      });
      const closing = this.onClose((error) => {
        if (settled) return;
        cleanup();
        reject(error);
      });
      const submitAbort = new AbortController();
      const onAbort = () => {
        if (settled) return;
        if (turn === undefined) {
          submitAbort.abort(signal?.reason);
        } else {
          this.interrupt({ sessionId: turn.sessionId, turnId: turn.turnId }).catch(() => undefined);
        }
        cleanup();
        reject(signal?.reason);
      };
      if (signal?.aborted) {
        cleanup();
        reject(signal.reason);
        return;
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      this.submit(params, { signal: submitAbort.signal }).then(
        (result) => {
          if (settled) return;
          turn = result;
          onSubmitted?.(result);
          for (const notification of early.splice(0)) handle(notification);
        },
        (error: unknown) => {
          if (settled) return;
          cleanup();
          reject(error);
        },
      );
    });
  }

  // ---- approvals ------------------------------------------------------------------------

  /**
   * Sets the handler that answers `session/requestApproval` (replacing any earlier one). Set it
   * before `initialize` so the client declares `capabilities.approvals`; without a handler the
   * server never asks. If the handler throws, the request is answered `deny`.
   */
  onApprovalRequest(handler: ApprovalHandler): Disposable {
    this.approvalHandler = handler;
    return {
      dispose: () => {
        if (this.approvalHandler === handler) this.approvalHandler = undefined;
      },
    };
  }

  private async answerApproval(
    params: RequestApprovalParams,
    token: CancellationToken,
  ): Promise<RequestApprovalResult> {
    const handler = this.approvalHandler;
    if (handler === undefined) return { decision: "deny" };
    const controller = new AbortController();
    const subscription = token.onCancellationRequested(() => controller.abort(new Error("approval request withdrawn by the server")));
    if (token.isCancellationRequested) controller.abort(new Error("approval request withdrawn by the server"));
    try {
      return await handler(params, { signal: controller.signal });
    } catch {
      return { decision: "deny" };
    } finally {
      subscription.dispose();
    }
  }

  // ---- shutdown -------------------------------------------------------------------------

  /**
   * Ends the session cleanly: sends `shutdown` (running turns complete `interrupted`), closes the
   * server's stdin and waits for it to exit; after `timeoutMs` the process is killed.
   */
  async close(options: { timeoutMs?: number } = {}): Promise<ExitStatus> {
    const timeoutMs = options.timeoutMs ?? 5000;
    if (this.closedError === undefined) {
      try {
        await this.shutdown();
      } catch {
        // The server may already be on its way out; waiting for the exit below is what counts.
      }
    }
    this.child?.stdin?.end();
    if (this.child === undefined) {
      this.dispose();
      return this.exitPromise;
    }
    if (this.exitStatus !== undefined) return this.exitStatus;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const outcome = await Promise.race([this.exitPromise, timeout]);
    clearTimeout(timer);
    if (outcome === "timeout") this.child.kill("SIGKILL");
    const status = await this.exitPromise;
    this.dispose();
    return status;
  }

  /** Drops the connection at once and kills the server if it still runs (no clean shutdown). */
  dispose(): void {
    this.markClosed("the client was disposed");
    if (this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGTERM");
    }
  }

  private streamClosed(): void {
    if (this.closing) return;
    this.closing = true;
    if (this.child === undefined) {
      this.markClosed("the server closed its stdout");
      return;
    }
    // Wait briefly for the exit status and the rest of stderr, so the error can say why.
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, EXIT_GRACE_MS);
    });
    void Promise.race([this.exitPromise, grace]).then(() => {
      clearTimeout(timer);
      const status = this.exitStatus;
      this.markClosed(
        status === undefined
          ? "the server closed its stdout"
          : `the server exited (${status.signal === null ? `status ${status.code}` : `signal ${status.signal}`})`,
      );
    });
  }

  private markClosed(reason: string): void {
    if (this.closedError !== undefined) return;
    const error = new ConnectionClosedError(
      `connection to agent-server ended: ${reason}`,
      this.exitStatus?.code ?? this.child?.exitCode ?? null,
      this.exitStatus?.signal ?? this.child?.signalCode ?? null,
      this.stderrTail,
    );
    this.closedError = error;
    // Disposing rejects every pending request; `translate` turns those into `error`.
    this.connection.dispose();
    for (const listener of [...this.closeListeners]) listener(error);
    this.closeListeners.clear();
  }

  private async translate(method: string, error: unknown): Promise<unknown> {
    if (!(error instanceof ResponseError)) return this.closedError ?? error;
    if (error.code === ErrorCodes.PendingResponseRejected && this.closedError !== undefined) return this.closedError;
    if (error.code === ErrorCodes.MessageWriteError && (this.output.destroyed || this.output.writableEnded)) {
      // The server's stdin is gone: report the end of the connection, with its exit status.
      this.streamClosed();
      return this.closedError ?? (await new Promise<ConnectionClosedError>((ok) => this.onClose(ok)));
    }
    return new AgentServerError(method, error.code, error.message, error.data as ErrorData | undefined);
  }
}
