//! Sessions, turns, the `session/event` stream and approvals.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::RateLimits;

/// When to ask the client before acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ApprovalPolicy {
    /// Ask before any command that is not known read-only and before every file change.
    Untrusted,
    /// Run sandboxed; ask to re-run unsandboxed when that fails.
    OnFailure,
    /// Never ask; failures go back to the model.
    Never,
}

/// What a command may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SandboxMode {
    /// Read anything, write nothing, no network.
    ReadOnly,
    /// Write only under the session cwd and the temp dir, no network.
    WorkspaceWrite,
    /// No restrictions.
    DangerFullAccess,
}

/// How hard a reasoning model thinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningEffort {
    /// Send no `reasoning` at all.
    None,
    /// Minimal effort.
    Minimal,
    /// Low effort.
    Low,
    /// Medium effort (the default).
    Medium,
    /// High effort.
    High,
    /// Extra high effort (the newest codex-family models).
    Xhigh,
}

/// Whether a session is running a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SessionStatus {
    /// No turn is running.
    Idle,
    /// A turn is running.
    Running,
}

/// A conversation with the agent in one working directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// The session's id.
    pub session_id: String,
    /// The working directory commands and patches run in.
    pub cwd: String,
    /// The model used for its turns.
    pub model: String,
    /// The id of the model provider.
    pub model_provider: String,
    /// When to ask before acting.
    pub approval_policy: ApprovalPolicy,
    /// What commands may touch.
    pub sandbox: SandboxMode,
    /// When the session was created (RFC 3339).
    pub created_at: String,
    /// Whether a turn is running.
    pub status: SessionStatus,
    /// The session's title: the first line of its first user text (cut at 80 characters) until
    /// set with `session/setTitle`; `null` before the first turn.
    #[serde(default)]
    pub title: Option<String>,
    /// When the session last changed: created, a turn started or ended, retitled (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
    /// Whether the session is kept in memory only and never written to the store.
    #[serde(default)]
    pub ephemeral: bool,
    /// Whether the session is archived (hidden from `session/list {stored}` by default).
    #[serde(default)]
    pub archived: bool,
    /// Whether the session is loaded in this process (it takes `session/submit` here).
    #[serde(default)]
    pub loaded: bool,
    /// The session and turn this session was forked from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<ForkedFrom>,
    /// How many turns the session has (including a running one).
    #[serde(default)]
    pub turn_count: u64,
    /// The project instruction files (`AGENTS.md` and the like) the session sends the model,
    /// as absolute paths in the order they are joined; empty until the first turn starts.
    #[serde(default)]
    pub instruction_sources: Vec<String>,
}

/// Where a forked session came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForkedFrom {
    /// The source session.
    pub session_id: String,
    /// The last turn of the source that the fork holds.
    pub turn_id: String,
}

/// The state of a stored turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StoredTurnStatus {
    /// The turn is running in a live process.
    InProgress,
    /// The model answered without further tool calls.
    Completed,
    /// Interrupted, or its process stopped while it ran.
    Interrupted,
    /// Ended by an error (see `error`).
    Failed,
}

impl From<TurnStatus> for StoredTurnStatus {
    fn from(status: TurnStatus) -> Self {
        match status {
            TurnStatus::Completed => StoredTurnStatus::Completed,
            TurnStatus::Interrupted => StoredTurnStatus::Interrupted,
            TurnStatus::Failed => StoredTurnStatus::Failed,
        }
    }
}

/// One stored turn: its input and every item in its completed form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Turn {
    /// The turn's id.
    pub turn_id: String,
    /// How it ended, or `inProgress` while it runs.
    pub status: StoredTurnStatus,
    /// The user input that started it.
    pub input: Vec<InputItem>,
    /// Its items, as sent in `itemCompleted`, in order.
    pub items: Vec<Item>,
    /// Its token usage.
    pub usage: Usage,
    /// Why it failed or was cut short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TurnError>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

/// Params of `session/new`; every field defaults from `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewSessionParams {
    /// Working directory (default: the server's working directory). Must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Model name (default `gpt-5-codex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Model provider id (default `openai`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_provider: Option<String>,
    /// Approval policy (default `untrusted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_policy: Option<ApprovalPolicy>,
    /// Sandbox mode (default `workspaceWrite`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxMode>,
    /// Text appended to the server's base instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Reasoning effort (default `medium`; `none` sends no `reasoning`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Keep the session in memory only, never in the store (default: the `ephemeral` config key,
    /// else false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<bool>,
    /// MCP servers for this session, added to the configured ones (the same name replaces a
    /// configured server). They start in the background; `session/new` does not wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<Vec<crate::mcp::McpServerSpec>>,
}

/// Settings `session/resume` and `session/fork` may change; they become the session's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionOverrides {
    /// Working directory. Must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Approval policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_policy: Option<ApprovalPolicy>,
    /// Sandbox mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxMode>,
    /// Text appended to the server's base instructions (replaces the session's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Reasoning effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
}

/// Params of `session/list`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListSessionsParams {
    /// List the store (every process's sessions) instead of the sessions loaded here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<bool>,
    /// Where the previous page ended (its `nextCursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size, 1..500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only sessions with exactly this cwd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// List archived sessions instead of the others (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<bool>,
    /// Only sessions whose title or any user text contains this (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
}

/// Params of `session/read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadSessionParams {
    /// The session.
    pub session_id: String,
    /// Include the turns (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns: Option<bool>,
}

/// Params of `session/resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResumeSessionParams {
    /// The stored session to load into this process.
    pub session_id: String,
    /// Settings to change.
    #[serde(flatten)]
    pub overrides: SessionOverrides,
    /// MCP servers for the resumed session, as in `session/new` (they are not stored: pass them
    /// on every resume). Ignored when the session is already loaded here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<Vec<crate::mcp::McpServerSpec>>,
}

/// Params of `session/fork`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForkSessionParams {
    /// The session to copy from.
    pub session_id: String,
    /// The last turn to copy (default: every turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<String>,
    /// Settings of the new session that differ from the source's.
    #[serde(flatten)]
    pub overrides: SessionOverrides,
    /// MCP servers for the new session, as in `session/new` (the source's own servers are not
    /// carried over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<Vec<crate::mcp::McpServerSpec>>,
}

/// Result of `session/read`, `session/resume` and `session/fork`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionWithTurns {
    /// The session.
    pub session: Session,
    /// Its turns, oldest first.
    pub turns: Vec<Turn>,
}

/// Params naming one session (`session/archive`, `session/unarchive`, `session/delete`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionIdParams {
    /// The session.
    pub session_id: String,
}

/// Params of `session/setTitle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetTitleParams {
    /// The session.
    pub session_id: String,
    /// The new title.
    pub title: String,
}

/// One piece of user input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum InputItem {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image by URL (`data:` or `https:`).
    Image {
        /// The image URL.
        url: String,
    },
    /// An image file on the server's machine, read and sent as a `data:` URL.
    LocalImage {
        /// Path of the file (relative to the session cwd, or absolute).
        path: String,
    },
}

/// Params of `session/submit`: exactly one of `input` and `text`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmitParams {
    /// The session to run the turn in; absent creates a session with defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The user input as items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Vec<InputItem>>,
    /// The user input as plain text (shorthand for one text item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The model for this turn and later ones (also stored as the session's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The reasoning effort for this turn and later ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// The approval policy for this turn and later ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_policy: Option<ApprovalPolicy>,
    /// The sandbox for this turn and later ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxMode>,
    /// The working directory for this turn and later ones; must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// A JSON Schema (an object) the final message must match; this turn only. Sent upstream
    /// as `text.format` `{"type":"json_schema","name":"output","schema":…,"strict":true}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
}

/// Params of `session/steer`: exactly one of `input` and `text`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SteerParams {
    /// The session whose running turn gets the input.
    pub session_id: String,
    /// The input as items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Vec<InputItem>>,
    /// The input as plain text (shorthand for one text item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Fails with `turnMismatch` unless this is the running turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_turn_id: Option<String>,
}

/// Result of `session/steer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SteerResult {
    /// The running turn the input joins.
    pub turn_id: String,
}

/// Result of `session/submit`: the turn runs in the background.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmitResult {
    /// The session the turn runs in.
    pub session_id: String,
    /// The new turn's id.
    pub turn_id: String,
}

/// Params of `session/interrupt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterruptParams {
    /// The session.
    pub session_id: String,
    /// Only this turn (running or queued); absent interrupts the running turn and every queued one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<String>,
}

/// Result of `session/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListSessionsResult {
    /// The loaded sessions, oldest first; with `stored`, a page of the store, newest first.
    pub sessions: Vec<Session>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// Params of `session/compact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompactParams {
    /// The session whose conversation to compact.
    pub session_id: String,
}

/// Result of `session/compact`: the compaction runs as a turn of its own, queued like a submit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompactResult {
    /// The compaction turn's id.
    pub turn_id: String,
}

/// Params of `session/close`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloseSessionParams {
    /// The session to close.
    pub session_id: String,
}

/// The state of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ItemStatus {
    /// Still running.
    InProgress,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
    /// Not done: approval was declined.
    Declined,
}

/// What a file change does to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FileChangeKind {
    /// A new file.
    Add,
    /// A removed file.
    Delete,
    /// A changed (possibly moved) file.
    Update,
}

/// One file in a `fileChange` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileChange {
    /// The file's path.
    pub path: String,
    /// What happens to it.
    pub kind: FileChangeKind,
    /// A unified diff of the change.
    pub diff: String,
}

/// Something the agent did or said in a turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Item {
    /// Text from the model to the user.
    AgentMessage {
        /// The item's id.
        id: String,
        /// The whole text (the concatenation of its deltas).
        text: String,
    },
    /// The model's reasoning summary.
    Reasoning {
        /// The item's id.
        id: String,
        /// The summary parts.
        summary: Vec<String>,
    },
    /// A shell command.
    CommandExecution {
        /// The item's id (the model's call id).
        id: String,
        /// The argv.
        command: Vec<String>,
        /// Where it runs.
        cwd: String,
        /// Its state.
        status: ItemStatus,
        /// Its exit code, once it exited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// Its output (stdout and stderr, long output cut), once it ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        /// How long it ran, once it ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    /// A patch to files.
    FileChange {
        /// The item's id (the model's call id).
        id: String,
        /// One entry per file.
        changes: Vec<FileChange>,
        /// Its state.
        status: ItemStatus,
    },
    /// Any other tool call.
    ToolCall {
        /// The item's id (the model's call id).
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments as the model sent them (a JSON string).
        arguments: String,
        /// Its state.
        status: ItemStatus,
        /// What the tool answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
    },
    /// A call to a tool of an MCP server.
    McpToolCall {
        /// The item's id (the model's call id).
        id: String,
        /// The MCP server's name.
        server: String,
        /// The tool's own name on that server.
        tool: String,
        /// The arguments the model sent (a JSON object, or the raw text when it was not JSON).
        arguments: serde_json::Value,
        /// Its state: `failed` for an `isError` result (kept in `result`) and for errors.
        status: ItemStatus,
        /// What the MCP server answered, once it answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<crate::mcp::McpToolCallResult>,
        /// Why the call failed without a result (timeout, crash, unknown tool, declined).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// How long the call took, once it ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    /// The summary that replaced the earlier conversation when it was compacted.
    ContextSummary {
        /// The item's id.
        id: String,
        /// The summary the model wrote (a placeholder when it wrote none).
        text: String,
    },
}

impl Item {
    /// The item's id.
    pub fn id(&self) -> &str {
        match self {
            Item::AgentMessage { id, .. }
            | Item::Reasoning { id, .. }
            | Item::CommandExecution { id, .. }
            | Item::FileChange { id, .. }
            | Item::ToolCall { id, .. }
            | Item::McpToolCall { id, .. }
            | Item::ContextSummary { id, .. } => id,
        }
    }
}

/// Which output stream a command's delta came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CommandStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// The state of a plan step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PlanStepStatus {
    /// Not started.
    Pending,
    /// Being worked on.
    InProgress,
    /// Done.
    Completed,
}

/// One step of the agent's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanStep {
    /// What the step is.
    pub step: String,
    /// Its state.
    pub status: PlanStepStatus,
}

/// Token counts of one or more model calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Input tokens.
    pub input_tokens: u64,
    /// Input tokens served from the prompt cache.
    pub cached_input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Output tokens spent on reasoning.
    pub reasoning_output_tokens: u64,
    /// All tokens.
    pub total_tokens: u64,
}

impl Usage {
    /// Adds another usage to this one.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.output_tokens += other.output_tokens;
        self.reasoning_output_tokens += other.reasoning_output_tokens;
        self.total_tokens += other.total_tokens;
    }
}

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TurnStatus {
    /// The model answered without further tool calls.
    Completed,
    /// Interrupted by the client, by `abort`, by `session/close` or by shutdown.
    Interrupted,
    /// Ended by an error (see `error`).
    Failed,
}

/// Why a turn failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TurnErrorKind {
    /// The provider needs OpenAI auth and none is available.
    AuthRequired,
    /// The stored login can no longer be used; log in again.
    LoginRequired,
    /// The model endpoint rejected the credentials even after a refresh.
    Unauthorized,
    /// The ChatGPT plan's usage limit was reached (see `resetsAt`, `planType`).
    UsageLimitReached,
    /// The API account is out of quota.
    QuotaExceeded,
    /// The conversation no longer fits the model's context window.
    ContextWindowExceeded,
    /// Rate limited and retries ran out.
    RateLimited,
    /// Another HTTP or stream failure, a connection failure, or retries exhausted.
    Upstream,
    /// The session store could not be written (disk full, read-only home, locked or broken file).
    StoreUnavailable,
    /// The turn was interrupted.
    Interrupted,
    /// A bug or unexpected failure inside the server.
    Internal,
}

/// The error of a failed turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnError {
    /// What kind of failure.
    pub kind: TurnErrorKind,
    /// What happened and what to do next.
    pub message: String,
    /// The upstream HTTP status, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// When the usage limit resets (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<String>,
    /// The ChatGPT plan, for `usageLimitReached`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_type: Option<String>,
    /// For `usageLimitReached`: the rate limits known when it happened (1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<Box<RateLimits>>,
}

/// One step of a turn, as sent in `session/event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    /// The turn began; always the turn's first event.
    TurnStarted {
        /// The model the turn uses.
        model: String,
        /// The reasoning effort it uses.
        reasoning_effort: ReasoningEffort,
        /// Its approval policy.
        approval_policy: ApprovalPolicy,
        /// Its sandbox.
        sandbox: SandboxMode,
        /// Its working directory.
        cwd: String,
    },
    /// Steered input (`session/steer`) was added to the conversation: it goes out with the
    /// turn's next model request.
    InputAdded {
        /// The input as the client sent it.
        input: Vec<InputItem>,
    },
    /// An item began.
    ItemStarted {
        // Large variants are boxed so that the frequent small events (deltas) stay small as
        // they move through the server; the wire form is the same.
        /// The item as far as it is known.
        item: Box<Item>,
    },
    /// An item ended.
    ItemCompleted {
        /// The item in its final state.
        item: Box<Item>,
    },
    /// More text of an agent message.
    AgentMessageDelta {
        /// The `agentMessage` item.
        item_id: String,
        /// The new text.
        delta: String,
    },
    /// More reasoning summary text.
    ReasoningDelta {
        /// The `reasoning` item.
        item_id: String,
        /// The new text.
        delta: String,
    },
    /// More output of a running command.
    CommandOutputDelta {
        /// The `commandExecution` item.
        item_id: String,
        /// Which stream.
        stream: CommandStream,
        /// The new output.
        delta: String,
    },
    /// The agent's plan changed.
    PlanUpdated {
        /// Why, in the model's words.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        explanation: Option<String>,
        /// The whole plan.
        plan: Vec<PlanStep>,
    },
    /// Token counts after a model call.
    TokenUsage {
        /// That call's usage.
        last: Usage,
        /// The session's usage so far.
        total: Usage,
    },
    /// A failed upstream request or stream is retried.
    Retrying {
        /// 1-based retry number.
        attempt: u32,
        /// The retry budget.
        max_attempts: u32,
        /// How long the server waits first.
        delay_ms: u64,
        /// What failed.
        message: String,
    },
    /// The conversation was compacted: the model now sees the summary item instead of the
    /// earlier history. Follows the summary's `itemCompleted`.
    ContextCompacted {
        /// The estimated tokens of the conversation before compaction (the last response's
        /// total when known).
        tokens_before: u64,
        /// The `contextSummary` item.
        summary_item_id: String,
    },
    /// A model response brought the plan's rate limits (1.1).
    RateLimitsUpdated {
        /// What this process knows now: the response's values, with parts it left out kept
        /// from earlier responses.
        rate_limits: Box<RateLimits>,
    },
    /// The turn ended; always the turn's last event.
    TurnCompleted {
        /// How it ended.
        status: TurnStatus,
        /// The text of its last agent message.
        last_agent_message: Option<String>,
        /// The turn's total usage.
        usage: Usage,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<Box<TurnError>>,
    },
}

/// Params of the `session/event` notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionEventNotification {
    /// The session.
    pub session_id: String,
    /// The turn.
    pub turn_id: String,
    /// Starts at 1 per session and rises by 1 with every event.
    pub seq: u64,
    /// What happened.
    pub event: Event,
}

/// What the client is asked to approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ApprovalKind {
    /// Running a command.
    CommandExecution,
    /// Changing files.
    FileChange,
    /// Calling a tool of an MCP server.
    McpToolCall,
}

/// Params of the server → client request `session/requestApproval`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestApprovalParams {
    /// The session.
    pub session_id: String,
    /// The turn.
    pub turn_id: String,
    /// The item (already announced with `itemStarted`).
    pub item_id: String,
    /// What is to be approved.
    pub kind: ApprovalKind,
    /// The argv, for commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Where the command runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The file changes, for patches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<FileChange>>,
    /// Why approval is needed (e.g. the sandboxed run failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The MCP server, for MCP tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The tool's own name on that server, for MCP tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The arguments the model sent, for MCP tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Value>,
}

/// The client's answer to an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ApprovalDecision {
    /// Do it this once.
    Approve,
    /// Do it, and the same again for the rest of the session.
    ApproveForSession,
    /// Don't; the model is told it was declined.
    Deny,
    /// Don't, and end the turn (`interrupted`).
    Abort,
}

/// Result of `session/requestApproval`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequestApprovalResult {
    /// The decision.
    pub decision: ApprovalDecision,
}
