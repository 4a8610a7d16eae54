//! `shell` as a tool: the `commandExecution` item, approvals, the sandbox and the output the
//! model reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_server_schema::session::{ApprovalKind, ApprovalPolicy, Event, Item, ItemStatus};
use serde::Deserialize;

use super::approval::{Answer, ApprovalRequest, ask};
use super::exec::{Ending, ExecError, ExecOutput, ExecRequest, execute};
use super::sandbox::{SandboxPolicy, mode_name};
use super::{ToolContext, ToolHost, ToolOutcome, edit, patch, safety};

/// Arguments of `shell`.
#[derive(Debug, Deserialize)]
pub(crate) struct ShellArgs {
    command: Vec<String>,
    #[serde(default)]
    workdir: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

impl ShellArgs {
    /// The arguments of a call made in another shape (`shell_command`).
    pub(crate) fn new(
        command: Vec<String>,
        workdir: Option<String>,
        timeout_ms: Option<u64>,
    ) -> Self {
        Self {
            command,
            workdir,
            timeout_ms,
        }
    }
}

/// What the model must send, for error messages.
pub(crate) const EXPECTED: &str =
    r#"{"command": [string, …], "workdir"?: string, "timeout_ms"?: number}"#;

/// Runs a `shell` call.
pub(crate) async fn run(
    call_id: &str,
    args: ShellArgs,
    ctx: &ToolContext,
    host: &dyn ToolHost,
) -> ToolOutcome {
    let cwd = match &args.workdir {
        Some(dir) => patch::resolve(&ctx.cwd, dir),
        None => ctx.cwd.clone(),
    };
    if let Some((input, dir)) = patch::from_command(&args.command) {
        let base = match dir {
            Some(dir) => patch::resolve(&cwd, &dir),
            None => cwd,
        };
        return edit::run(call_id, &input, &base, ctx, host).await;
    }
    let command = Command {
        id: call_id,
        argv: &args.command,
        cwd: &cwd,
        host,
    };
    command.started();
    if args.command.is_empty() {
        return command.failed_to_start(
            "the command is empty; pass the program and its \
                                        arguments as a list",
        );
    }
    if !cwd.is_dir() {
        return command.failed_to_start(&format!(
            "the working directory {} does not exist",
            cwd.display()
        ));
    }
    let timeout = args
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(ctx.shell_timeout);
    let sandbox = SandboxPolicy::new(ctx.sandbox, &ctx.cwd);
    let remembered = ctx.approvals.is_command_approved(&args.command);

    match ctx.approval_policy {
        ApprovalPolicy::Untrusted => {
            if !remembered && !safety::is_known_safe_command(&args.command) {
                let answer = ask(ctx, host, command.approval_request(None)).await;
                if let Some(outcome) = command.declined(answer, ctx) {
                    return outcome;
                }
            }
            let result = command.execute(ctx, timeout, Some(&sandbox)).await;
            command.finish(result, timeout, None)
        }
        ApprovalPolicy::Never => {
            let result = command.execute(ctx, timeout, Some(&sandbox)).await;
            command.finish(result, timeout, None)
        }
        ApprovalPolicy::OnFailure => {
            if remembered || !sandbox.confines() {
                let result = command.execute(ctx, timeout, None).await;
                return command.finish(result, timeout, None);
            }
            let first = command.execute(ctx, timeout, Some(&sandbox)).await;
            let Some(reason) = sandbox_failure(&first, &sandbox) else {
                return command.finish(first, timeout, None);
            };
            let answer = ask(ctx, host, command.approval_request(Some(reason))).await;
            match answer {
                Answer::Approved { .. } => {
                    command.approved(answer, ctx);
                    let second = command.execute(ctx, timeout, None).await;
                    command.finish(second, timeout, None)
                }
                Answer::Aborted => command
                    .declined(answer, ctx)
                    .unwrap_or_else(|| command.finish(first, timeout, None)),
                Answer::Denied | Answer::CannotAsk => {
                    let note = answer.declined_message("re-run without the sandbox");
                    command.finish(first, timeout, note)
                }
            }
        }
    }
}

/// Why a sandboxed run counts as failed in a way worth re-running unsandboxed.
fn sandbox_failure(
    result: &Result<ExecOutput, ExecError>,
    sandbox: &SandboxPolicy,
) -> Option<String> {
    let mode = mode_name(sandbox.mode());
    match result {
        Ok(out) => match out.ending {
            Ending::Exited(0) | Ending::TimedOut | Ending::Cancelled => None,
            Ending::Exited(code) => Some(format!(
                "The command failed in the {mode} sandbox (exit code {code}). Run it again \
                 without the sandbox?"
            )),
        },
        Err(ExecError::Sandbox(e)) => Some(format!("{e}. Run it without the sandbox?")),
        // A program that exists but cannot start confined: the confinement may be the cause.
        Err(ExecError::Spawn {
            source,
            sandboxed: true,
            ..
        }) if source.kind() != std::io::ErrorKind::NotFound => Some(format!(
            "The command could not start in the {mode} sandbox ({source}). Run it without the \
             sandbox?"
        )),
        Err(_) => None,
    }
}

/// One command's item and its events.
struct Command<'a> {
    id: &'a str,
    argv: &'a [String],
    cwd: &'a Path,
    host: &'a dyn ToolHost,
}

impl Command<'_> {
    fn item(
        &self,
        status: ItemStatus,
        exit_code: Option<i32>,
        output: Option<String>,
        duration_ms: Option<u64>,
    ) -> Item {
        Item::CommandExecution {
            id: self.id.to_owned(),
            command: self.argv.to_vec(),
            cwd: self.cwd.display().to_string(),
            status,
            exit_code,
            output,
            duration_ms,
        }
    }

    fn started(&self) {
        let item = self.item(ItemStatus::InProgress, None, None, None);
        self.host.emit(Event::ItemStarted { item });
    }

    fn completed(&self, item: Item) {
        self.host.emit(Event::ItemCompleted { item });
    }

    fn approval_request(&self, reason: Option<String>) -> ApprovalRequest {
        ApprovalRequest {
            item_id: self.id.to_owned(),
            kind: ApprovalKind::CommandExecution,
            command: Some(self.argv.to_vec()),
            cwd: Some(PathBuf::from(self.cwd)),
            changes: None,
            reason,
        }
    }

    /// Remembers an `approveForSession`.
    fn approved(&self, answer: Answer, ctx: &ToolContext) {
        if answer == (Answer::Approved { for_session: true }) {
            ctx.approvals.approve_command(self.argv.to_vec());
        }
    }

    /// Completes the item as declined and says so to the model; `None` when approved.
    fn declined(&self, answer: Answer, ctx: &ToolContext) -> Option<ToolOutcome> {
        self.approved(answer, ctx);
        let message = answer.declined_message("command")?;
        self.completed(self.item(ItemStatus::Declined, None, None, None));
        Some(ToolOutcome {
            output: message,
            success: false,
            abort_turn: answer.aborts_turn(),
        })
    }

    fn failed_to_start(&self, message: &str) -> ToolOutcome {
        self.completed(self.item(ItemStatus::Failed, None, Some(message.to_owned()), None));
        ToolOutcome::failed(format!("Failed to run the command: {message}"))
    }

    async fn execute(
        &self,
        ctx: &ToolContext,
        timeout: Duration,
        sandbox: Option<&SandboxPolicy>,
    ) -> Result<ExecOutput, ExecError> {
        let host = self.host;
        let id = self.id;
        let mut on_output = |stream, delta| {
            host.emit(Event::CommandOutputDelta {
                item_id: id.to_owned(),
                stream,
                delta,
            });
        };
        let request = ExecRequest {
            argv: self.argv,
            cwd: self.cwd,
            timeout,
            sandbox,
        };
        execute(request, &ctx.cancel, &mut on_output).await
    }

    /// Completes the item with the run's result and builds the model's output; `note` is
    /// appended to it (e.g. why a re-run did not happen).
    fn finish(
        &self,
        result: Result<ExecOutput, ExecError>,
        timeout: Duration,
        note: Option<String>,
    ) -> ToolOutcome {
        let out = match result {
            Ok(out) => out,
            Err(e) => return self.failed_to_start(&e.to_string()),
        };
        let mut text = out.output.truncated();
        match out.ending {
            Ending::TimedOut => push_line(
                &mut text,
                &format!(
                    "[command timed out after {} ms; it and every process it started were killed]",
                    timeout.as_millis()
                ),
            ),
            Ending::Cancelled => push_line(
                &mut text,
                "[command interrupted; it and every process it started were killed]",
            ),
            Ending::Exited(_) => {}
        }
        let exit_code = out.exit_code();
        let success = out.ending == Ending::Exited(0);
        let status = if success {
            ItemStatus::Completed
        } else {
            ItemStatus::Failed
        };
        let duration_ms = u64::try_from(out.duration.as_millis()).unwrap_or(u64::MAX);
        self.completed(self.item(status, exit_code, Some(text.clone()), Some(duration_ms)));
        let mut output = format!(
            "Exit code: {}\nWall time: {:.1} seconds\nOutput:\n{text}",
            exit_code.map_or_else(|| "none (interrupted)".to_owned(), |c| c.to_string()),
            out.duration.as_secs_f64()
        );
        if let Some(note) = note {
            push_line(&mut output, &note);
        }
        ToolOutcome {
            output,
            success,
            abort_turn: out.ending == Ending::Cancelled,
        }
    }
}

fn push_line(text: &mut String, line: &str) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
}
