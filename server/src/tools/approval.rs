//! Asking the client for approval, and what a session remembers of its answers.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use agent_server_schema::session::{ApprovalDecision, ApprovalKind, FileChange};

use super::{ToolContext, ToolHost};

/// What the client is asked to approve. The session turns it into `session/requestApproval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// The item awaiting approval (already announced with `itemStarted`).
    pub item_id: String,
    /// A command or a file change.
    pub kind: ApprovalKind,
    /// The argv, for commands.
    pub command: Option<Vec<String>>,
    /// Where the command runs, for commands.
    pub cwd: Option<PathBuf>,
    /// The file changes, for patches.
    pub changes: Option<Vec<FileChange>>,
    /// Why approval is needed, when it is not the policy's usual question.
    pub reason: Option<String>,
    /// The server, tool and arguments, for MCP tool calls.
    pub mcp: Option<McpApprovalDetails>,
}

/// What the client is shown about an MCP tool call it is asked to approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpApprovalDetails {
    /// The MCP server's name.
    pub server: String,
    /// The tool's own name on that server.
    pub tool: String,
    /// The arguments the model sent.
    pub arguments: serde_json::Value,
}

/// How an approval request ended, as the client link reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalReply {
    /// The client answered.
    Decided(ApprovalDecision),
    /// The request was withdrawn because the turn was interrupted while it waited.
    Withdrawn,
    /// The client cannot answer: it declared no `capabilities.approvals`, it is gone (stdin
    /// closed), or its answer was unusable. The contract has the action declined by policy,
    /// and the model is told so (not that a user declined it).
    Unavailable,
}

/// What one session has approved for its whole life (`approveForSession`).
#[derive(Debug, Default)]
pub struct SessionApprovals {
    commands: Mutex<HashSet<Vec<String>>>,
    file_roots: Mutex<Vec<PathBuf>>,
    mcp_tools: Mutex<HashSet<(String, String)>>,
}

impl SessionApprovals {
    /// Nothing approved yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether this exact argv was approved for the session.
    pub fn is_command_approved(&self, argv: &[String]) -> bool {
        lock(&self.commands).contains(argv)
    }

    /// Approves this exact argv for the rest of the session.
    pub fn approve_command(&self, argv: Vec<String>) {
        lock(&self.commands).insert(argv);
    }

    /// Whether every path (a real path) is under a directory whose file changes were approved.
    pub fn are_file_changes_approved(&self, paths: &[PathBuf]) -> bool {
        let roots = lock(&self.file_roots);
        !paths.is_empty() && paths.iter().all(|p| roots.iter().any(|r| p.starts_with(r)))
    }

    /// Whether this MCP server's tool was approved for the session.
    pub fn is_mcp_tool_approved(&self, server: &str, tool: &str) -> bool {
        lock(&self.mcp_tools).contains(&(server.to_string(), tool.to_string()))
    }

    /// Approves every later call of this MCP server's tool.
    pub fn approve_mcp_tool(&self, server: &str, tool: &str) {
        lock(&self.mcp_tools).insert((server.to_string(), tool.to_string()));
    }

    /// Approves later file changes under `root` (the session cwd), remembered as its real
    /// path: a symlink inside it that points elsewhere does not extend the approval.
    pub fn approve_file_changes_under(&self, root: &Path) {
        let root = &super::patch::nofollow::real_path(root);
        let mut roots = lock(&self.file_roots);
        if !roots.iter().any(|r| r == root) {
            roots.push(root.to_path_buf());
        }
    }
}

/// A poisoned lock only means another thread panicked while holding it; the set itself is
/// always valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The outcome of asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Go ahead; `for_session` when the same is approved from now on.
    Approved {
        /// The client chose `approveForSession`.
        for_session: bool,
    },
    /// The user said no.
    Denied,
    /// The user said no and ended the turn, or the request was withdrawn (interrupt).
    Aborted,
    /// The client cannot answer approval requests (no capability, or gone), so the policy
    /// declines.
    CannotAsk,
}

impl Answer {
    /// Whether the turn must end.
    pub(crate) fn aborts_turn(self) -> bool {
        self == Answer::Aborted
    }

    /// What the model is told when the action was declined; `None` when approved. `what` names
    /// the action ("command", "file change").
    pub(crate) fn declined_message(self, what: &str) -> Option<String> {
        match self {
            Answer::Approved { .. } => None,
            Answer::Denied => Some(format!(
                "The {what} was declined by the user. Do not try it again; change your approach \
                 or ask the user how to proceed."
            )),
            Answer::Aborted => Some(format!(
                "The {what} was declined by the user, who stopped the turn."
            )),
            Answer::CannotAsk => Some(format!(
                "The {what} was declined by policy: it needs approval, and the client cannot \
                 answer approval requests. Do not try it again; continue without it, or tell the \
                 user what to run."
            )),
        }
    }
}

/// Asks the client, unless it cannot answer. An interrupt while waiting counts as `Aborted`; a
/// client that turns out unable to answer (gone, or an unusable answer) as `CannotAsk`.
pub(crate) async fn ask(
    ctx: &ToolContext,
    host: &dyn ToolHost,
    request: ApprovalRequest,
) -> Answer {
    if !ctx.client_can_approve {
        return Answer::CannotAsk;
    }
    let reply = tokio::select! {
        reply = host.request_approval(request) => reply,
        () = ctx.cancel.cancelled() => ApprovalReply::Withdrawn,
    };
    match reply {
        ApprovalReply::Decided(ApprovalDecision::Approve) => {
            Answer::Approved { for_session: false }
        }
        ApprovalReply::Decided(ApprovalDecision::ApproveForSession) => {
            Answer::Approved { for_session: true }
        }
        ApprovalReply::Decided(ApprovalDecision::Deny) => Answer::Denied,
        ApprovalReply::Decided(ApprovalDecision::Abort) | ApprovalReply::Withdrawn => {
            Answer::Aborted
        }
        ApprovalReply::Unavailable => Answer::CannotAsk,
    }
}
