//! `apply_patch` as a tool: the `fileChange` item, approvals and the sandbox's write bounds.

use std::path::{Path, PathBuf};

use agent_server_schema::session::{
    ApprovalKind, Event, FileChange, FileChangeKind, Item, ItemStatus,
};

use super::approval::{Answer, ApprovalRequest, ask};
use super::decision::{Action, Bounds, Decision, decide};
use super::patch::{self, ChangeKind, Plan};
use super::sandbox::{SandboxPolicy, mode_name};
use super::{ToolContext, ToolHost, ToolOutcome};

/// What the model must send, for error messages.
pub(crate) const EXPECTED: &str =
    r#"{"input": "*** Begin Patch\n…\n*** End Patch"} (see the tool's description)"#;

/// Applies `input`, with paths relative to `base` (the session cwd, or the directory a shell
/// command changed to). Paths are resolved to real paths when planned: what is checked against
/// the sandbox, shown in the item and the approval request, remembered by `approveForSession`
/// and finally written is the same place.
pub(crate) async fn run(
    call_id: &str,
    input: &str,
    base: &Path,
    ctx: &ToolContext,
    host: &dyn ToolHost,
) -> ToolOutcome {
    let item = FileChangeItem { id: call_id, host };
    let plan = match plan_patch(input, base, ctx) {
        Ok(plan) => plan,
        Err(message) => {
            item.started(Vec::new());
            item.completed(Vec::new(), ItemStatus::Failed);
            return ToolOutcome::failed(format!("apply_patch failed: {message}"));
        }
    };
    let changes = wire_changes(&plan);
    item.started(changes.clone());

    let touched = touched(&plan);
    let sandbox = SandboxPolicy::new(ctx.sandbox, &ctx.cwd);
    let outside: Vec<PathBuf> = touched
        .iter()
        .filter(|p| !sandbox.allows_write(p))
        .cloned()
        .collect();
    let remembered = ctx.approvals.are_file_changes_approved(&touched);
    let action = Action::FileChange {
        outside_sandbox: !outside.is_empty(),
    };
    let bounds = match decide(ctx.approval_policy, ctx.sandbox, remembered, action) {
        Decision::Refuse => {
            item.completed(changes, ItemStatus::Failed);
            return ToolOutcome::failed(refusal(ctx, &outside));
        }
        Decision::Run(bounds) => bounds,
        Decision::Ask(bounds) => {
            let reason = (bounds == Bounds::Unsandboxed).then(|| {
                format!(
                    "The patch writes outside what the sandbox allows: {}",
                    shown(&outside)
                )
            });
            let request = ApprovalRequest {
                item_id: call_id.to_owned(),
                kind: ApprovalKind::FileChange,
                command: None,
                cwd: None,
                changes: Some(changes.clone()),
                reason,
                mcp: None,
            };
            let answer = ask(ctx, host, request).await;
            return after_approval(answer, input, base, ctx, &item, changes, bounds);
        }
        // Not a decision for file changes; asking is the safe reading of it.
        Decision::RunThenAskOnFailure => Bounds::Sandboxed,
    };
    let may_write = writable(&sandbox, bounds, &touched);
    commit(&plan, changes, &item, &may_write)
}

/// Parses and plans the patch.
fn plan_patch(input: &str, base: &Path, ctx: &ToolContext) -> Result<Plan, String> {
    let parsed = patch::parse(input).map_err(|e| e.to_string())?;
    patch::plan(&parsed, base, &ctx.cwd).map_err(|e| e.to_string())
}

/// What may be written: inside the sandbox's bounds, and with `Unsandboxed` also exactly the
/// (real) paths the user approved.
fn writable<'a>(
    sandbox: &'a SandboxPolicy,
    bounds: Bounds,
    approved: &'a [PathBuf],
) -> impl Fn(&Path) -> bool + 'a {
    move |path: &Path| {
        sandbox.allows_write(path)
            || (bounds == Bounds::Unsandboxed && approved.iter().any(|a| a == path))
    }
}

fn shown(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

fn refusal(ctx: &ToolContext, outside: &[PathBuf]) -> String {
    format!(
        "apply_patch refused: the {} sandbox does not allow writing {}. Change only files under \
         {}.",
        mode_name(ctx.sandbox),
        shown(outside),
        ctx.cwd.display()
    )
}

/// After the client answered: declined, or re-planned and written if the files are still as
/// shown (they may have changed while the user was deciding; only what was shown is applied,
/// and the bounds are checked again when writing).
fn after_approval(
    answer: Answer,
    input: &str,
    base: &Path,
    ctx: &ToolContext,
    item: &FileChangeItem<'_>,
    changes: Vec<FileChange>,
    bounds: Bounds,
) -> ToolOutcome {
    if let Some(message) = answer.declined_message("file change") {
        item.completed(changes, ItemStatus::Declined);
        return ToolOutcome {
            output: message,
            success: false,
            abort_turn: answer.aborts_turn(),
        };
    }
    if answer == (Answer::Approved { for_session: true }) {
        ctx.approvals.approve_file_changes_under(&ctx.cwd);
    }
    match plan_patch(input, base, ctx) {
        Ok(fresh) if wire_changes(&fresh) == changes => {
            let sandbox = SandboxPolicy::new(ctx.sandbox, &ctx.cwd);
            let touched = touched(&fresh);
            let may_write = writable(&sandbox, bounds, &touched);
            commit(&fresh, changes, item, &may_write)
        }
        Ok(_) => {
            item.completed(changes, ItemStatus::Failed);
            ToolOutcome::failed(
                "apply_patch failed: the files changed while waiting for approval; read them \
                 again and send a new patch"
                    .to_owned(),
            )
        }
        Err(message) => {
            item.completed(changes, ItemStatus::Failed);
            ToolOutcome::failed(format!("apply_patch failed: {message}"))
        }
    }
}

fn commit(
    plan: &Plan,
    changes: Vec<FileChange>,
    item: &FileChangeItem<'_>,
    may_write: &dyn Fn(&Path) -> bool,
) -> ToolOutcome {
    match plan.commit(may_write) {
        Ok(()) => {
            item.completed(changes, ItemStatus::Completed);
            ToolOutcome {
                output: summary(plan),
                success: true,
                abort_turn: false,
            }
        }
        Err(e) => {
            item.completed(changes, ItemStatus::Failed);
            ToolOutcome::failed(format!("apply_patch failed: {e}"))
        }
    }
}

/// `Success. Updated the following files:` and one `A|M|D path` line per operation.
fn summary(plan: &Plan) -> String {
    let mut out = "Success. Updated the following files:".to_owned();
    for change in &plan.changes {
        let letter = match change.kind {
            ChangeKind::Add => 'A',
            ChangeKind::Delete => 'D',
            ChangeKind::Update => 'M',
        };
        out.push_str(&format!("\n{letter} {}", change.path.display()));
    }
    out
}

/// Every path the patch writes or deletes (a move touches both ends).
fn touched(plan: &Plan) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for change in &plan.changes {
        paths.push(change.path.clone());
        if let Some(from) = &change.moved_from {
            paths.push(from.clone());
        }
    }
    paths
}

/// The item's changes. A move is an `update` whose `path` is the destination and whose diff
/// header names both paths (`--- a/old`, `+++ b/new`).
fn wire_changes(plan: &Plan) -> Vec<FileChange> {
    plan.changes
        .iter()
        .map(|c| FileChange {
            path: c.path.display().to_string(),
            kind: match c.kind {
                ChangeKind::Add => FileChangeKind::Add,
                ChangeKind::Delete => FileChangeKind::Delete,
                ChangeKind::Update => FileChangeKind::Update,
            },
            diff: c.diff.clone(),
        })
        .collect()
}

struct FileChangeItem<'a> {
    id: &'a str,
    host: &'a dyn ToolHost,
}

impl FileChangeItem<'_> {
    fn item(&self, changes: Vec<FileChange>, status: ItemStatus) -> Item {
        Item::FileChange {
            id: self.id.to_owned(),
            changes,
            status,
        }
    }

    fn started(&self, changes: Vec<FileChange>) {
        let item = self.item(changes, ItemStatus::InProgress);
        self.host.emit(Event::ItemStarted {
            item: Box::new(item),
        });
    }

    fn completed(&self, changes: Vec<FileChange>, status: ItemStatus) {
        let item = self.item(changes, status);
        self.host.emit(Event::ItemCompleted {
            item: Box::new(item),
        });
    }
}
