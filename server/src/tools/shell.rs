//! `shell` as a tool: the `commandExecution` item, approvals, the sandbox and the output the
//! model reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_server_schema::session::{ApprovalKind, Event, Item, ItemStatus};
use serde::Deserialize;

use super::approval::{Answer, ApprovalRequest, ask};
use super::decision::{Action, Bounds, Decision, decide};
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

/// The most a model may set as `timeout_ms`, for the whole process (config
/// `shell_max_timeout_ms`); one hour until set.
static MAX_TIMEOUT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Sets the cap on the model's `timeout_ms` (once, at start-up).
pub fn set_max_command_timeout(max: Duration) {
    let _ = MAX_TIMEOUT.set(max);
}

fn max_timeout() -> Duration {
    MAX_TIMEOUT
        .get()
        .copied()
        .unwrap_or(Duration::from_secs(3600))
}

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
        return command
            .failed_to_start("the command is empty; pass the program and its arguments as a list");
    }
    if !cwd.is_dir() {
        return command.failed_to_start(&format!(
            "the working directory {} does not exist",
            cwd.display()
        ));
    }
    let (timeout, capped) = timeout_of(&args, ctx);
    let known_safe = safety::is_known_safe_command(&args.command)
        && !safety::names_protected_path(&args.command, &cwd, &protected_paths());
    let remembered = ctx.approvals.is_command_approved(&args.command);
    let decision = decide(
        ctx.approval_policy,
        ctx.sandbox,
        remembered,
        Action::Command { known_safe },
    );
    let run = Run {
        command: &command,
        ctx,
        timeout,
        // Known-safe git commands run with the repository's program hooks turned off.
        argv: safety::without_repo_programs(&args.command),
        capped,
    };
    run.decided(decision).await
}

/// The timeout: the model's (capped at the configured maximum), else the session's default.
/// The second value is the model's request when it was capped.
fn timeout_of(args: &ShellArgs, ctx: &ToolContext) -> (Duration, Option<u64>) {
    let max = max_timeout();
    match args.timeout_ms.map(Duration::from_millis) {
        Some(asked) if asked > max => (max, args.timeout_ms),
        Some(asked) => (asked, None),
        None => (ctx.shell_timeout.min(max), None),
    }
}

/// What a known-safe command must not read without approval: the agent home and the server's
/// own `/proc` entry.
fn protected_paths() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from(format!("/proc/{}", std::process::id()))];
    paths.extend(super::sandbox::agent_home().map(Path::to_path_buf));
    paths
}

/// One decided command run.
struct Run<'a> {
    command: &'a Command<'a>,
    ctx: &'a ToolContext,
    timeout: Duration,
    argv: Vec<String>,
    /// The model's `timeout_ms`, when it was capped.
    capped: Option<u64>,
}

impl Run<'_> {
    async fn decided(&self, decision: Decision) -> ToolOutcome {
        let sandbox = SandboxPolicy::new(self.ctx.sandbox, &self.ctx.cwd);
        let policy = |bounds| (bounds == Bounds::Sandboxed).then_some(&sandbox);
        match decision {
            Decision::Run(bounds) => self.run_and_finish(policy(bounds), None).await,
            Decision::Ask(bounds) => {
                let request = self.command.approval_request(None);
                let answer = ask(self.ctx, self.command.host, request).await;
                if let Some(outcome) = self.command.declined(answer, self.ctx) {
                    return outcome;
                }
                self.run_and_finish(policy(bounds), None).await
            }
            Decision::RunThenAskOnFailure => self.on_failure(&sandbox).await,
            Decision::Refuse => self
                .command
                .failed_to_start("the policy refuses this command"),
        }
    }

    async fn execute(&self, sandbox: Option<&SandboxPolicy>) -> Result<ExecOutput, ExecError> {
        self.command
            .execute(self.ctx, &self.argv, self.timeout, sandbox)
            .await
    }

    async fn run_and_finish(
        &self,
        sandbox: Option<&SandboxPolicy>,
        note: Option<String>,
    ) -> ToolOutcome {
        let result = self.execute(sandbox).await;
        self.finish(result, note)
    }

    fn finish(&self, result: Result<ExecOutput, ExecError>, note: Option<String>) -> ToolOutcome {
        let capped = self.capped.map(|asked| {
            format!(
                "[timeout_ms {asked} is more than the maximum; the command ran with a timeout of \
                 {} ms]",
                self.timeout.as_millis()
            )
        });
        let note = match (capped, note) {
            (Some(a), Some(b)) => Some(format!("{a}\n{b}")),
            (a, b) => a.or(b),
        };
        self.command.finish(result, self.timeout, note)
    }

    /// `onFailure`: sandboxed first; when the sandbox made it fail, ask to re-run unsandboxed.
    async fn on_failure(&self, sandbox: &SandboxPolicy) -> ToolOutcome {
        let first = self.execute(Some(sandbox)).await;
        let Some(reason) = sandbox_failure(&first, sandbox) else {
            return self.finish(first, None);
        };
        let request = self.command.approval_request(Some(reason));
        let answer = ask(self.ctx, self.command.host, request).await;
        match answer {
            Answer::Approved { .. } => {
                self.command.approved(answer, self.ctx);
                self.run_and_finish(None, None).await
            }
            Answer::Aborted => self
                .command
                .declined(answer, self.ctx)
                .unwrap_or_else(|| self.finish(first, None)),
            Answer::Denied | Answer::CannotAsk => {
                let note = answer.declined_message("re-run without the sandbox");
                self.finish(first, note)
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
        self.host.emit(Event::ItemStarted {
            item: Box::new(item),
        });
    }

    fn completed(&self, item: Item) {
        self.host.emit(Event::ItemCompleted {
            item: Box::new(item),
        });
    }

    fn approval_request(&self, reason: Option<String>) -> ApprovalRequest {
        ApprovalRequest {
            item_id: self.id.to_owned(),
            kind: ApprovalKind::CommandExecution,
            command: Some(self.argv.to_vec()),
            cwd: Some(PathBuf::from(self.cwd)),
            changes: None,
            reason,
            mcp: None,
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
        argv: &[String],
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
            argv,
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
