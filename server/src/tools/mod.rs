//! The agent's tools: shell commands, file patches and the plan, with approvals and a sandbox.
//!
//! The session calls [`dispatch`] for each tool call of the model (function or custom calls
//! alike: tools are chosen by name) and sends the returned [`ToolOutcome::output`] back as the
//! call's output item. Tools reach the client only
//! through [`ToolHost`]: events (`itemStarted`, `itemCompleted`, `commandOutputDelta`,
//! `planUpdated`) and approval requests.
//!
//! - `shell` becomes a `commandExecution` item, `apply_patch` a `fileChange` item (also when
//!   the patch comes as a command, `["apply_patch", PATCH]` or a `bash -lc` heredoc);
//!   `update_plan` emits `planUpdated` and no item. Unknown tools and malformed arguments become
//!   a failed `toolCall` item. The item id is the call's `call_id`. A call of an MCP tool
//!   (`mcp__<server>__<tool>`) goes to [`run_mcp_call`] instead and becomes an `mcpToolCall`
//!   item; under `untrusted` it is asked about unless the tool is annotated `readOnlyHint`.
//! - Approvals follow the session's policy: `untrusted` asks before every command that is not
//!   known read-only ([`safety`]) and before every file change; `onFailure` runs commands in the
//!   sandbox without asking, and asks to re-run one without the sandbox when it fails there
//!   (file changes the sandbox would not allow are asked about the same way); `never` never
//!   asks. The `itemStarted` of an item always comes before its approval request.
//! - The sandbox ([`sandbox`]) confines every command and bounds where patches may write; only
//!   an approval under `onFailure` lets an action past it. Under `untrusted` an approved
//!   command still runs in the sandbox, and a patch writing outside it is refused.
//!   `approveForSession` remembers the exact argv (under `onFailure`: it then runs unsandboxed
//!   without asking) or, for a file change, approves later file changes under the session cwd.
//! - Commands run in their own process group with stdin closed and without credential-like
//!   environment variables; the model gets `Exit code: N\nWall time: S seconds\nOutput:\n…`
//!   with output over [`output::MAX_OUTPUT_BYTES`] or [`output::MAX_OUTPUT_LINES`] cut in the
//!   middle. A timeout, an interrupt (`ToolContext::cancel`) or dropping the future kills the
//!   whole group.

mod approval;
pub mod decision;
mod edit;
mod exec;
mod mcp_call;
mod output;
pub mod patch;
mod plan;
pub mod safety;
pub mod sandbox;
mod shell;
mod shell_command;
mod spec;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_server_schema::session::{ApprovalPolicy, Event, Item, ItemStatus, SandboxMode};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

pub use approval::{ApprovalReply, ApprovalRequest, McpApprovalDetails, SessionApprovals};
pub use mcp_call::run as run_mcp_call;
pub(crate) use plan::plan_of;
pub use shell::set_max_command_timeout;
pub use shell_command::login_shell;
pub use spec::tool_specs;

/// Sets up, once at start-up, what the tools need for the whole process: the agent home
/// (`home`) recorded so that commands never see it, the cap on a command's `timeout_ms`, and
/// the server's own `/proc` entries made unreadable to the commands it runs. An error means the
/// last could not be done; the server must not serve then.
pub fn prepare_process(
    home: &std::path::Path,
    max_command_timeout: Duration,
) -> std::io::Result<()> {
    sandbox::protect_agent_home(home);
    set_max_command_timeout(max_command_timeout);
    sandbox::make_server_unreadable()
}

/// How tools reach the client; the session implements it.
#[async_trait::async_trait]
pub trait ToolHost: Send + Sync {
    /// Emits a session event: `itemStarted`, `itemCompleted`, `commandOutputDelta` or
    /// `planUpdated`.
    fn emit(&self, event: Event);
    /// Asks the client to approve: its decision, [`ApprovalReply::Withdrawn`] when the turn
    /// was interrupted while waiting, or [`ApprovalReply::Unavailable`] when the client cannot
    /// answer (then the policy declines, and the model is told so).
    async fn request_approval(&self, request: ApprovalRequest) -> ApprovalReply;
}

/// What the tools need to know about the session and the turn.
#[derive(Debug, Clone)]
pub struct ToolContext {
    /// The session's working directory: commands run here, patch paths are relative to it, and
    /// it is the writable root of `workspaceWrite`.
    pub cwd: PathBuf,
    /// When to ask the client.
    pub approval_policy: ApprovalPolicy,
    /// How commands are confined.
    pub sandbox: SandboxMode,
    /// Default timeout of a command (the model may set its own).
    pub shell_timeout: Duration,
    /// Whether the client declared `capabilities.approvals`; without it, whatever needs
    /// approval is declined.
    pub client_can_approve: bool,
    /// Cancelled when the turn is interrupted: running commands are killed and pending
    /// approvals count as withdrawn.
    pub cancel: CancellationToken,
    /// What the session approved for its whole life.
    pub approvals: Arc<SessionApprovals>,
}

/// One function call of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The call id; it becomes the item id.
    pub call_id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, a JSON string as the model wrote it.
    pub arguments: String,
}

/// The result of a tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutcome {
    /// The `function_call_output` text for the model.
    pub output: String,
    /// Whether the tool did what was asked.
    pub success: bool,
    /// The turn must end now: the user chose `abort`, an approval request was withdrawn, or
    /// the turn was cancelled while the tool ran.
    pub abort_turn: bool,
}

impl ToolOutcome {
    fn failed(output: String) -> Self {
        Self {
            output,
            success: false,
            abort_turn: false,
        }
    }
}

/// Runs one function call of the model. Never panics on bad input: unknown tools and malformed
/// arguments give the model an error output and a failed `toolCall` item.
pub async fn dispatch(call: ToolCall, ctx: &ToolContext, host: &dyn ToolHost) -> ToolOutcome {
    match call.name.as_str() {
        "shell" | "container.exec" => {
            match serde_json::from_str::<shell::ShellArgs>(&call.arguments) {
                Ok(args) => shell::run(&call.call_id, args, ctx, host).await,
                Err(e) => bad_call(&call, host, format!("{e}; expected {}", shell::EXPECTED)),
            }
        }
        "shell_command" => {
            match serde_json::from_str::<shell_command::ShellCommandArgs>(&call.arguments) {
                Ok(args) => {
                    let args = args.into_shell_args(&login_shell());
                    shell::run(&call.call_id, args, ctx, host).await
                }
                Err(e) => bad_call(
                    &call,
                    host,
                    format!("{e}; expected {}", shell_command::EXPECTED),
                ),
            }
        }
        "apply_patch" => match patch_input(&call.arguments) {
            Ok(input) => edit::run(&call.call_id, &input, &ctx.cwd, ctx, host).await,
            Err(e) => bad_call(&call, host, format!("{e}; expected {}", edit::EXPECTED)),
        },
        "update_plan" => match serde_json::from_str::<plan::UpdatePlanArgs>(&call.arguments) {
            Ok(args) => plan::update_plan(args, host),
            Err(e) => bad_call(&call, host, format!("{e}; expected {}", plan::EXPECTED)),
        },
        other => {
            let message = format!(
                "unknown tool `{other}`; the available tools are shell, apply_patch and \
                 update_plan"
            );
            failed_tool_call(&call, host, message)
        }
    }
}

/// Runs one freeform `custom` tool call: its `input` is the tool's whole argument. Only
/// `apply_patch` has a freeform shape; any other name is answered as an unknown tool.
pub async fn dispatch_custom(
    call: ToolCall,
    ctx: &ToolContext,
    host: &dyn ToolHost,
) -> ToolOutcome {
    match call.name.as_str() {
        "apply_patch" => edit::run(&call.call_id, &call.arguments, &ctx.cwd, ctx, host).await,
        _ => dispatch(call, ctx, host).await,
    }
}

/// The patch text: `{"input": PATCH}`, or the bare patch some models send.
fn patch_input(arguments: &str) -> Result<String, serde_json::Error> {
    #[derive(Deserialize)]
    struct Args {
        input: String,
    }
    if arguments.trim_start().starts_with("*** Begin Patch") {
        return Ok(arguments.to_owned());
    }
    serde_json::from_str::<Args>(arguments).map(|a| a.input)
}

fn bad_call(call: &ToolCall, host: &dyn ToolHost, detail: String) -> ToolOutcome {
    let message = format!("invalid arguments for {}: {detail}", call.name);
    failed_tool_call(call, host, message)
}

/// A `toolCall` item that failed at once.
fn failed_tool_call(call: &ToolCall, host: &dyn ToolHost, message: String) -> ToolOutcome {
    let item = |status, output| Item::ToolCall {
        id: call.call_id.clone(),
        name: call.name.clone(),
        arguments: call.arguments.clone(),
        status,
        output,
    };
    host.emit(Event::ItemStarted {
        item: Box::new(item(ItemStatus::InProgress, None)),
    });
    host.emit(Event::ItemCompleted {
        item: Box::new(item(ItemStatus::Failed, Some(message.clone()))),
    });
    ToolOutcome::failed(message)
}
