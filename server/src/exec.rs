//! `agent-server exec "prompt"`: runs one turn through a real server child process over
//! pipes, exactly as an IDE would, and prints the conversation for a person (or the raw
//! `session/event` lines with `--json`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use agent_server_schema::session::{Event, Item, ItemStatus, TurnStatus};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Arguments of `exec`.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// The prompt.
    prompt: String,
    /// Print each `session/event` notification as a JSON line instead of text.
    #[arg(long)]
    json: bool,
    /// Working directory of the session (default: the current directory).
    #[arg(long = "cd")]
    cwd: Option<PathBuf>,
    /// Approval policy for this run (untrusted, onFailure, never).
    #[arg(long)]
    approval_policy: Option<String>,
    /// Continue this stored session instead of starting a new one.
    #[arg(long, value_name = "SESSION_ID", conflicts_with = "last")]
    resume: Option<String>,
    /// Continue the newest stored session of the working directory.
    #[arg(long)]
    last: bool,
}

/// The request id of the request that opens the session (`session/new` or `session/resume`).
const OPEN_ID: i64 = 2;
/// The request id of the `session/list` that finds the newest session for `--last`.
const LIST_ID: i64 = 5;

fn resume_request(id: &str, settings: &Value) -> Value {
    let mut params = settings.clone();
    params["sessionId"] = json!(id);
    json!({"jsonrpc":"2.0","id":OPEN_ID,"method":"session/resume","params":params})
}

/// Runs the prompt; exit status 0 when the turn completed, 1 otherwise.
pub async fn run(args: &ExecArgs, home: Option<&Path>, overrides: &[String]) -> ExitCode {
    match drive(args, home, overrides).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        // The reader of our output went away (e.g. `| head`): that ends the run quietly.
        Err(err)
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "agent-server exec: {err}");
            ExitCode::from(2)
        }
    }
}

/// The server this command drives: a child `agent-server` over pipes.
struct Child {
    process: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

/// Starts `agent-server` (this same binary) with the given home and config overrides.
fn spawn_server(home: Option<&Path>, overrides: &[String]) -> anyhow::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut command = tokio::process::Command::new(exe);
    if let Some(home) = home {
        command.arg("--home").arg(home);
    }
    for o in overrides {
        command.arg("-c").arg(o);
    }
    let mut process = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdin = process
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    let stdout = process
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    Ok(Child {
        process,
        stdin,
        lines: BufReader::new(stdout).lines(),
    })
}

/// The request that opens the session: `session/new`, `session/resume`, or for `--last` the
/// `session/list` that finds it.
fn opening_request(args: &ExecArgs, cwd: &Path, settings: &Value) -> Value {
    match (&args.resume, args.last) {
        (Some(id), _) => resume_request(id, settings),
        (None, true) => json!({"jsonrpc":"2.0","id":LIST_ID,"method":"session/list","params":{
            "stored": true, "cwd": cwd.display().to_string(), "limit": 1}}),
        (None, false) => {
            let mut params = settings.clone();
            params["cwd"] = json!(cwd.display().to_string());
            json!({"jsonrpc":"2.0","id":OPEN_ID,"method":"session/new","params":params})
        }
    }
}

/// The settings `exec` gives the session it opens (or resumes).
fn session_settings(args: &ExecArgs) -> Value {
    let mut settings = json!({});
    if let Some(policy) = &args.approval_policy {
        settings["approvalPolicy"] = json!(policy);
    }
    settings
}

/// The session id in the reply to `session/new` (a `Session`) or `session/resume` (a
/// `{session, turns}`).
fn opened_session_id(result: &Value) -> Value {
    match &result["sessionId"] {
        Value::Null => result["session"]["sessionId"].clone(),
        id => id.clone(),
    }
}

/// The session's working directory: `--cd` or the current one, in one spelling per directory
/// so `--last` finds what `--cd .` or `--cd a/../b` stored (a directory that does not exist is
/// left for the server to refuse).
fn exec_cwd(args: &ExecArgs) -> anyhow::Result<PathBuf> {
    let cwd = match &args.cwd {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    Ok(std::fs::canonicalize(&cwd).unwrap_or(cwd))
}

async fn drive(args: &ExecArgs, home: Option<&Path>, overrides: &[String]) -> anyhow::Result<bool> {
    let Child {
        process: mut child,
        mut stdin,
        mut lines,
    } = spawn_server(home, overrides)?;
    let cwd = exec_cwd(args)?;
    let settings = session_settings(args);
    let requests = [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"clientInfo":{"name":"agent-server-exec","version":env!("CARGO_PKG_VERSION")}}}),
        opening_request(args, &cwd, &settings),
    ];
    for request in &requests {
        stdin.write_all(format!("{request}\n").as_bytes()).await?;
    }
    let mut out = std::io::stdout().lock();
    let mut printer = Printer::default();
    let mut completed = None;
    let mut session_id = None;
    while let Some(line) = lines.next_line().await? {
        let message: Value = serde_json::from_str(&line)?;
        if let Some(error) = message.get("error") {
            anyhow::bail!(
                "the server answered request {} with an error: {}",
                message["id"],
                error["message"]
            );
        }
        if message["id"] == json!(LIST_ID) {
            let Some(id) = message["result"]["sessions"][0]["sessionId"].as_str() else {
                anyhow::bail!(
                    "no stored session in {}; run exec without --last to start one",
                    cwd.display()
                );
            };
            let resume = resume_request(id, &settings);
            stdin.write_all(format!("{resume}\n").as_bytes()).await?;
            continue;
        }
        if message["id"] == json!(OPEN_ID) {
            let id = opened_session_id(&message["result"]);
            session_id = id.as_str().map(str::to_string);
            let submit = json!({"jsonrpc":"2.0","id":3,"method":"session/submit","params":{"sessionId":id,"text":args.prompt}});
            stdin.write_all(format!("{submit}\n").as_bytes()).await?;
            continue;
        }
        if message["method"] != json!("session/event") {
            continue;
        }
        if args.json {
            writeln!(out, "{line}")?;
        }
        let event: Event = serde_json::from_value(message["params"]["event"].clone())?;
        if !args.json {
            printer.print(&event, &mut out)?;
        }
        if let Event::TurnCompleted { status, .. } = event {
            completed = Some(status);
            break;
        }
    }
    out.flush()?;
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"shutdown\"}\n")
        .await?;
    drop(stdin);
    let _ = child.wait().await;
    if let Some(id) = &session_id {
        // stdout is the conversation; the id goes to stderr so scripts can pick it up apart.
        let _ = writeln!(std::io::stderr(), "session id: {id}");
    }
    match completed {
        Some(status) => Ok(status == TurnStatus::Completed),
        None => anyhow::bail!("the server stopped before the turn completed"),
    }
}

/// How a completed item reads.
fn item_completed(item: &Item, out: &mut dyn Write) -> std::io::Result<()> {
    match item {
        Item::Reasoning { summary, .. } if !summary.is_empty() => {
            writeln!(out, "thinking: {}", summary.join(" "))
        }
        Item::CommandExecution {
            status,
            exit_code,
            output,
            ..
        } => {
            if let Some(output) = output {
                for line in output.lines().take(20) {
                    writeln!(out, "  {line}")?;
                }
            }
            match (status, exit_code) {
                (ItemStatus::Declined, _) => writeln!(out, "  (declined)"),
                (_, Some(code)) => writeln!(out, "  (exit code {code})"),
                _ => writeln!(out, "  ({status:?})"),
            }
        }
        Item::FileChange {
            changes, status, ..
        } => {
            for change in changes {
                writeln!(out, "patch {:?}: {} ({status:?})", change.kind, change.path)?;
            }
            Ok(())
        }
        Item::ToolCall { name, status, .. } => writeln!(out, "tool {name} ({status:?})"),
        _ => Ok(()),
    }
}

/// Renders events as a readable conversation.
#[derive(Default)]
struct Printer {
    in_text: bool,
}

impl Printer {
    fn end_text(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        if std::mem::take(&mut self.in_text) {
            writeln!(out)?;
        }
        Ok(())
    }

    fn print(&mut self, event: &Event, out: &mut dyn Write) -> std::io::Result<()> {
        match event {
            Event::TurnStarted { model, .. } => writeln!(out, "── turn started ({model})"),
            Event::AgentMessageDelta { delta, .. } => {
                if !self.in_text {
                    write!(out, "assistant: ")?;
                    self.in_text = true;
                }
                write!(out, "{delta}")?;
                out.flush()
            }
            Event::ReasoningDelta { .. }
            | Event::CommandOutputDelta { .. }
            | Event::TokenUsage { .. }
            | Event::RateLimitsUpdated { .. }
            | Event::InputAdded { .. } => Ok(()),
            Event::ItemStarted { item } => match &**item {
                Item::CommandExecution { command, cwd, .. } => {
                    self.end_text(out)?;
                    writeln!(out, "$ {}    (in {cwd})", command.join(" "))
                }
                _ => Ok(()),
            },
            Event::ItemCompleted { item } => {
                self.end_text(out)?;
                item_completed(item, out)
            }
            Event::ContextCompacted { tokens_before, .. } => {
                self.end_text(out)?;
                writeln!(
                    out,
                    "── context compacted (about {tokens_before} tokens before)"
                )
            }
            Event::PlanUpdated { plan, .. } => {
                self.end_text(out)?;
                for step in plan {
                    writeln!(out, "plan [{:?}] {}", step.status, step.step)?;
                }
                Ok(())
            }
            Event::Retrying {
                attempt,
                max_attempts,
                message,
                ..
            } => {
                writeln!(out, "retrying ({attempt}/{max_attempts}): {message}")
            }
            Event::TurnCompleted {
                status,
                usage,
                error,
                ..
            } => {
                self.end_text(out)?;
                writeln!(out, "── turn {status:?}: {} tokens", usage.total_tokens)?;
                if let Some(error) = error {
                    writeln!(out, "error ({:?}): {}", error.kind, error.message)?;
                }
                Ok(())
            }
        }
    }
}
