//! Tests of the tools through `dispatch`, with a host that records events and answers approval
//! requests from a script.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_server_schema::session::{
    ApprovalDecision, ApprovalKind, ApprovalPolicy, CommandStream, Event, FileChange,
    FileChangeKind, Item, ItemStatus, PlanStep, PlanStepStatus, SandboxMode,
};
use pretty_assertions::assert_eq;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::process_group::{group_exists, wait_group_gone};

/// What the host saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Event(Event),
    Approval(ApprovalRequest),
}

#[derive(Default)]
struct FakeHost {
    seen: Mutex<Vec<Seen>>,
    answers: Mutex<VecDeque<Option<ApprovalDecision>>>,
    first_output: Notify,
}

impl FakeHost {
    fn answering(answers: &[Option<ApprovalDecision>]) -> Self {
        Self {
            answers: Mutex::new(answers.iter().copied().collect()),
            ..Self::default()
        }
    }

    /// Everything seen except output deltas, with durations zeroed.
    fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| !matches!(s, Seen::Event(Event::CommandOutputDelta { .. })))
            .cloned()
            .map(|s| match s {
                Seen::Event(Event::ItemCompleted { item }) => Seen::Event(Event::ItemCompleted {
                    item: Box::new(zero_duration(*item)),
                }),
                other => other,
            })
            .collect()
    }

    /// The concatenated output deltas of one stream.
    fn streamed(&self, which: CommandStream) -> String {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|s| match s {
                Seen::Event(Event::CommandOutputDelta { stream, delta, .. })
                    if *stream == which =>
                {
                    Some(delta.clone())
                }
                _ => None,
            })
            .collect()
    }

    fn approvals(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| matches!(s, Seen::Approval(_)))
            .count()
    }
}

#[async_trait::async_trait]
impl ToolHost for FakeHost {
    fn emit(&self, event: Event) {
        if matches!(event, Event::CommandOutputDelta { .. }) {
            self.first_output.notify_one();
        }
        self.seen.lock().unwrap().push(Seen::Event(event));
    }

    async fn request_approval(&self, request: ApprovalRequest) -> ApprovalReply {
        self.seen.lock().unwrap().push(Seen::Approval(request));
        // `None` in the script stands for a request withdrawn by an interrupt.
        match self.answers.lock().unwrap().pop_front().flatten() {
            Some(decision) => ApprovalReply::Decided(decision),
            None => ApprovalReply::Withdrawn,
        }
    }
}

fn zero_duration(item: Item) -> Item {
    match item {
        Item::CommandExecution {
            id,
            command,
            cwd,
            status,
            exit_code,
            output,
            duration_ms,
        } => Item::CommandExecution {
            id,
            command,
            cwd,
            status,
            exit_code,
            output,
            duration_ms: duration_ms.map(|_| 0),
        },
        other => other,
    }
}

fn context(cwd: &Path, policy: ApprovalPolicy, sandbox: SandboxMode) -> ToolContext {
    ToolContext {
        cwd: cwd.to_path_buf(),
        approval_policy: policy,
        sandbox,
        shell_timeout: Duration::from_secs(60),
        client_can_approve: true,
        cancel: CancellationToken::new(),
        approvals: Arc::new(SessionApprovals::new()),
    }
}

fn shell_call(id: &str, argv: &[&str]) -> ToolCall {
    ToolCall {
        call_id: id.to_owned(),
        name: "shell".to_owned(),
        arguments: serde_json::json!({ "command": argv }).to_string(),
    }
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// The model's output with the wall time, which varies, replaced.
fn steady(outcome: ToolOutcome) -> ToolOutcome {
    let output = outcome
        .output
        .lines()
        .map(|l| {
            if l.starts_with("Wall time: ") {
                "Wall time: T seconds"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let trailing = if outcome.output.ends_with('\n') {
        "\n"
    } else {
        ""
    };
    ToolOutcome {
        output: output + trailing,
        ..outcome
    }
}

fn command_item(
    id: &str,
    command: &[&str],
    cwd: &Path,
    status: ItemStatus,
    exit_code: Option<i32>,
    output: Option<&str>,
) -> Item {
    let ended = status != ItemStatus::InProgress && status != ItemStatus::Declined;
    Item::CommandExecution {
        id: id.to_owned(),
        command: argv(command),
        cwd: cwd.display().to_string(),
        status,
        exit_code,
        output: output.map(str::to_owned),
        duration_ms: (ended && exit_code.is_some()).then_some(0),
    }
}

fn started(item: Item) -> Seen {
    Seen::Event(Event::ItemStarted {
        item: Box::new(item),
    })
}

fn completed(item: Item) -> Seen {
    Seen::Event(Event::ItemCompleted {
        item: Box::new(item),
    })
}

fn command_approval(id: &str, command: &[&str], cwd: &Path, reason: Option<&str>) -> Seen {
    Seen::Approval(ApprovalRequest {
        item_id: id.to_owned(),
        kind: ApprovalKind::CommandExecution,
        command: Some(argv(command)),
        cwd: Some(cwd.to_path_buf()),
        changes: None,
        reason: reason.map(str::to_owned),
        mcp: None,
    })
}

fn success(output: String) -> ToolOutcome {
    ToolOutcome {
        output,
        success: true,
        abort_turn: false,
    }
}

fn ran(exit: i32, output: &str) -> String {
    format!("Exit code: {exit}\nWall time: T seconds\nOutput:\n{output}")
}

fn workspace() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A directory outside both the workspace and the temp dir (both writable in
/// `workspaceWrite`).
fn outside_dir() -> tempfile::TempDir {
    // Somewhere workspaceWrite must refuse: outside the temp dir (which it allows, and where
    // the workspace is). The checkout itself may be under the temp dir, so look further.
    let temp = std::env::temp_dir();
    let candidates = [
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        std::path::PathBuf::from("/var/tmp"),
        std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()),
    ];
    let base = candidates
        .into_iter()
        .find(|c| c.is_absolute() && c.is_dir() && !c.starts_with(&temp))
        .expect("a writable directory outside the temp dir");
    tempfile::tempdir_in(base).unwrap()
}

#[tokio::test]
async fn an_approved_command_runs_in_the_session_cwd() {
    let dir = workspace();
    let cwd = dir.path();
    std::fs::write(cwd.join("hello.txt"), "hi\n").unwrap();
    let host = FakeHost::answering(&[Some(ApprovalDecision::Approve)]);
    let ctx = context(cwd, ApprovalPolicy::Untrusted, SandboxMode::WorkspaceWrite);
    let cmd = ["bash", "-c", "pwd; cat hello.txt"];

    let outcome = dispatch(shell_call("c1", &cmd), &ctx, &host).await;

    let output = format!("{}\nhi\n", cwd.display());
    assert_eq!(steady(outcome), success(ran(0, &output)));
    assert_eq!(
        host.seen(),
        vec![
            started(command_item(
                "c1",
                &cmd,
                cwd,
                ItemStatus::InProgress,
                None,
                None
            )),
            command_approval("c1", &cmd, cwd, None),
            completed(command_item(
                "c1",
                &cmd,
                cwd,
                ItemStatus::Completed,
                Some(0),
                Some(&output)
            )),
        ]
    );
    assert_eq!(host.streamed(CommandStream::Stdout), output);
}

#[tokio::test]
async fn workdir_is_relative_to_the_session_cwd_and_stderr_is_streamed() {
    let dir = workspace();
    let cwd = dir.path();
    std::fs::create_dir(cwd.join("sub")).unwrap();
    let host = FakeHost::default();
    let ctx = context(cwd, ApprovalPolicy::Never, SandboxMode::WorkspaceWrite);
    let call = ToolCall {
        call_id: "c1".into(),
        name: "shell".into(),
        arguments: r#"{"command":["bash","-c","pwd >&2; exit 3"],"workdir":"sub"}"#.into(),
    };

    let outcome = steady(dispatch(call, &ctx, &host).await);

    let output = format!("{}\n", cwd.join("sub").display());
    assert_eq!(
        outcome,
        ToolOutcome {
            output: ran(3, &output),
            success: false,
            abort_turn: false
        }
    );
    assert_eq!(host.streamed(CommandStream::Stderr), output);
}

#[tokio::test]
async fn a_denied_command_is_declined_by_the_user_and_not_run() {
    let dir = workspace();
    let cwd = dir.path();
    let host = FakeHost::answering(&[Some(ApprovalDecision::Deny)]);
    let ctx = context(cwd, ApprovalPolicy::Untrusted, SandboxMode::WorkspaceWrite);
    let cmd = ["touch", "made.txt"];

    let outcome = dispatch(shell_call("c1", &cmd), &ctx, &host).await;

    assert_eq!(
        outcome,
        ToolOutcome {
            output: "The command was declined by the user. Do not try it again; change your \
                     approach or ask the user how to proceed."
                .into(),
            success: false,
            abort_turn: false,
        }
    );
    assert_eq!(
        host.seen(),
        vec![
            started(command_item(
                "c1",
                &cmd,
                cwd,
                ItemStatus::InProgress,
                None,
                None
            )),
            command_approval("c1", &cmd, cwd, None),
            completed(command_item(
                "c1",
                &cmd,
                cwd,
                ItemStatus::Declined,
                None,
                None
            )),
        ]
    );
    assert_eq!(cwd.join("made.txt").exists(), false);
}

#[tokio::test]
async fn abort_and_a_withdrawn_request_decline_and_end_the_turn() {
    for answer in [Some(ApprovalDecision::Abort), None] {
        let dir = workspace();
        let cwd = dir.path();
        let host = FakeHost::answering(&[answer]);
        let ctx = context(cwd, ApprovalPolicy::Untrusted, SandboxMode::WorkspaceWrite);
        let cmd = ["touch", "made.txt"];

        let outcome = dispatch(shell_call("c1", &cmd), &ctx, &host).await;

        assert_eq!(
            outcome,
            ToolOutcome {
                output: "The command was declined by the user, who stopped the turn.".into(),
                success: false,
                abort_turn: true,
            }
        );
        assert_eq!(
            host.seen(),
            vec![
                started(command_item(
                    "c1",
                    &cmd,
                    cwd,
                    ItemStatus::InProgress,
                    None,
                    None
                )),
                command_approval("c1", &cmd, cwd, None),
                completed(command_item(
                    "c1",
                    &cmd,
                    cwd,
                    ItemStatus::Declined,
                    None,
                    None
                )),
            ]
        );
        assert_eq!(cwd.join("made.txt").exists(), false);
    }
}

#[tokio::test]
async fn approve_for_session_is_not_asked_again_for_the_same_argv() {
    let dir = workspace();
    let cwd = dir.path();
    let host = FakeHost::answering(&[
        Some(ApprovalDecision::ApproveForSession),
        Some(ApprovalDecision::Deny),
    ]);
    let ctx = context(cwd, ApprovalPolicy::Untrusted, SandboxMode::WorkspaceWrite);
    let cmd = ["touch", "a.txt"];

    let first = dispatch(shell_call("c1", &cmd), &ctx, &host).await;
    let second = dispatch(shell_call("c2", &cmd), &ctx, &host).await;
    let other = dispatch(shell_call("c3", &["touch", "b.txt"]), &ctx, &host).await;

    assert_eq!(
        (steady(first), steady(second), other.success),
        (success(ran(0, "")), success(ran(0, "")), false)
    );
    assert_eq!(
        host.seen(),
        vec![
            started(command_item(
                "c1",
                &cmd,
                cwd,
                ItemStatus::InProgress,
                None,
                None
            )),
            command_approval("c1", &cmd, cwd, None),
            completed(command_item(
                "c1",
                &cmd,
                cwd,
                ItemStatus::Completed,
                Some(0),
                Some("")
            )),
            started(command_item(
                "c2",
                &cmd,
                cwd,
                ItemStatus::InProgress,
                None,
                None
            )),
            completed(command_item(
                "c2",
                &cmd,
                cwd,
                ItemStatus::Completed,
                Some(0),
                Some("")
            )),
            started(command_item(
                "c3",
                &["touch", "b.txt"],
                cwd,
                ItemStatus::InProgress,
                None,
                None
            )),
            command_approval("c3", &["touch", "b.txt"], cwd, None),
            completed(command_item(
                "c3",
                &["touch", "b.txt"],
                cwd,
                ItemStatus::Declined,
                None,
                None
            )),
        ]
    );
}

#[tokio::test]
async fn a_client_that_cannot_approve_gets_commands_declined_by_policy() {
    let dir = workspace();
    let cwd = dir.path();
    let host = FakeHost::default();
    let mut ctx = context(cwd, ApprovalPolicy::Untrusted, SandboxMode::WorkspaceWrite);
    ctx.client_can_approve = false;
    let cmd = ["touch", "made.txt"];

    let outcome = dispatch(shell_call("c1", &cmd), &ctx, &host).await;

    assert_eq!(
        outcome,
        ToolOutcome {
            output: "The command was declined by policy: it needs approval, and the client \
                     cannot answer approval requests. Do not try it again; continue without it, \
                     or tell the user what to run."
                .into(),
            success: false,
            abort_turn: false,
        }
    );
    assert_eq!(
        host.seen(),
        vec![
            started(command_item(
                "c1",
                &cmd,
                cwd,
                ItemStatus::InProgress,
                None,
                None
            )),
            completed(command_item(
                "c1",
                &cmd,
                cwd,
                ItemStatus::Declined,
                None,
                None
            )),
        ]
    );
}

#[tokio::test]
async fn untrusted_runs_known_read_only_commands_without_asking() {
    let dir = workspace();
    let cwd = dir.path();
    std::fs::write(cwd.join("a.txt"), "x\n").unwrap();
    let host = FakeHost::default();
    let ctx = context(cwd, ApprovalPolicy::Untrusted, SandboxMode::ReadOnly);

    let outcome = dispatch(shell_call("c1", &["bash", "-c", "ls"]), &ctx, &host).await;

    assert_eq!(
        (steady(outcome), host.approvals()),
        (success(ran(0, "a.txt\n")), 0)
    );
}

#[tokio::test]
async fn never_runs_everything_without_asking_and_reports_failures() {
    let dir = workspace();
    let cwd = dir.path();
    let host = FakeHost::default();
    let ctx = context(cwd, ApprovalPolicy::Never, SandboxMode::WorkspaceWrite);

    let ok = dispatch(shell_call("c1", &["touch", "a.txt"]), &ctx, &host).await;
    let failed = dispatch(
        shell_call("c2", &["bash", "-c", "echo no; exit 7"]),
        &ctx,
        &host,
    )
    .await;
    let missing = dispatch(shell_call("c3", &["no-such-program-x"]), &ctx, &host).await;

    assert_eq!(
        (steady(ok), steady(failed), missing, host.approvals()),
        (
            success(ran(0, "")),
            ToolOutcome {
                output: ran(7, "no\n"),
                success: false,
                abort_turn: false
            },
            ToolOutcome {
                output: "Failed to run the command: could not start `no-such-program-x` in the \
                         sandbox: No such file or directory (os error 2)"
                    .into(),
                success: false,
                abort_turn: false
            },
            0
        )
    );
    assert_eq!(cwd.join("a.txt").exists(), true);
}

#[tokio::test]
async fn on_failure_asks_to_rerun_unsandboxed_when_the_sandboxed_run_fails() {
    let dir = workspace();
    let cwd = dir.path();
    let outside = outside_dir();
    let target = outside.path().join("escaped.txt");
    let host = FakeHost::answering(&[Some(ApprovalDecision::Approve)]);
    let ctx = context(cwd, ApprovalPolicy::OnFailure, SandboxMode::WorkspaceWrite);
    let target_arg = target.display().to_string();
    let cmd = ["touch", target_arg.as_str()];

    let inside = dispatch(shell_call("c0", &["touch", "in.txt"]), &ctx, &host).await;
    let outcome = dispatch(shell_call("c1", &cmd), &ctx, &host).await;

    assert_eq!(
        (steady(inside), steady(outcome)),
        (success(ran(0, "")), success(ran(0, "")))
    );
    // Every mount outside the writable roots is read-only in the command's mount namespace.
    let first_output = format!("touch: cannot touch '{target_arg}': Read-only file system\n");
    let seen = host.seen();
    assert_eq!(
        seen[2..],
        vec![
            started(command_item(
                "c1",
                &cmd,
                cwd,
                ItemStatus::InProgress,
                None,
                None
            )),
            command_approval(
                "c1",
                &cmd,
                cwd,
                Some(
                    "The command failed in the workspaceWrite sandbox (exit code 1). Run it \
                     again without the sandbox?"
                )
            ),
            completed(command_item(
                "c1",
                &cmd,
                cwd,
                ItemStatus::Completed,
                Some(0),
                Some("")
            )),
        ]
    );
    assert_eq!(host.streamed(CommandStream::Stderr), first_output);
    assert_eq!((cwd.join("in.txt").exists(), target.exists()), (true, true));
}

#[tokio::test]
async fn on_failure_keeps_the_failure_when_the_rerun_is_denied() {
    let dir = workspace();
    let cwd = dir.path();
    let host = FakeHost::answering(&[Some(ApprovalDecision::Deny)]);
    let ctx = context(cwd, ApprovalPolicy::OnFailure, SandboxMode::ReadOnly);
    let cmd = ["touch", "a.txt"];

    let outcome = dispatch(shell_call("c1", &cmd), &ctx, &host).await;

    let output = "touch: cannot touch 'a.txt': Read-only file system\n";
    assert_eq!(
        steady(outcome),
        ToolOutcome {
            output: format!(
                "{}\nThe re-run without the sandbox was declined by the user. Do not try it \
                 again; change your approach or ask the user how to proceed.",
                ran(1, output).trim_end()
            ),
            success: false,
            abort_turn: false,
        }
    );
    assert_eq!(
        host.seen().last(),
        Some(&completed(command_item(
            "c1",
            &cmd,
            cwd,
            ItemStatus::Failed,
            Some(1),
            Some(output)
        )))
    );
    assert_eq!(cwd.join("a.txt").exists(), false);
}

/// The pid the script printed first (`echo $$`): the leader, so the process group id.
fn printed_pgid(host: &FakeHost) -> i32 {
    host.streamed(CommandStream::Stdout)
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let dir = workspace();
    let cwd = dir.path();
    let host = FakeHost::default();
    let ctx = context(cwd, ApprovalPolicy::Never, SandboxMode::WorkspaceWrite);
    let call = ToolCall {
        call_id: "c1".into(),
        name: "shell".into(),
        arguments: serde_json::json!({
            "command": ["sh", "-c", "echo $$; sleep 30 & sleep 30; wait"],
            "timeout_ms": 1000
        })
        .to_string(),
    };

    let outcome = steady(dispatch(call, &ctx, &host).await);

    let pgid = printed_pgid(&host);
    assert_eq!(
        outcome,
        ToolOutcome {
            output: ran(
                124,
                &format!(
                    "{pgid}\n[command timed out after 1000 ms; it and every process it started \
                     were killed]"
                )
            ),
            success: false,
            abort_turn: false
        }
    );
    assert_eq!(group_exists(pgid), false);
}

#[tokio::test]
async fn an_interrupt_kills_the_whole_process_group_and_ends_the_turn() {
    let dir = workspace();
    let cwd = dir.path();
    let host = FakeHost::default();
    let ctx = context(cwd, ApprovalPolicy::Never, SandboxMode::WorkspaceWrite);
    let cmd = ["sh", "-c", "echo $$; sleep 30 & sleep 30; wait"];

    let (outcome, ()) = tokio::join!(dispatch(shell_call("c1", &cmd), &ctx, &host), async {
        host.first_output.notified().await;
        ctx.cancel.cancel();
    });

    let pgid = printed_pgid(&host);
    let output =
        format!("{pgid}\n[command interrupted; it and every process it started were killed]");
    assert_eq!(
        steady(outcome),
        ToolOutcome {
            output: format!(
                "Exit code: none (interrupted)\nWall time: T seconds\nOutput:\n{output}"
            ),
            success: false,
            abort_turn: true
        }
    );
    assert_eq!(
        host.seen().last(),
        Some(&completed(Item::CommandExecution {
            id: "c1".into(),
            command: argv(&cmd),
            cwd: cwd.display().to_string(),
            status: ItemStatus::Failed,
            exit_code: None,
            output: Some(output),
            duration_ms: Some(0),
        }))
    );
    assert_eq!(group_exists(pgid), false);
}

#[tokio::test]
async fn dropping_a_running_call_kills_the_whole_process_group() {
    let dir = workspace();
    let cwd = dir.path();
    let host = FakeHost::default();
    let ctx = context(cwd, ApprovalPolicy::Never, SandboxMode::WorkspaceWrite);
    let cmd = ["sh", "-c", "echo $$; sleep 30 & sleep 30; wait"];

    tokio::select! {
        _ = dispatch(shell_call("c1", &cmd), &ctx, &host) => {}
        () = host.first_output.notified() => {}
    }

    // The processes were killed when the call was dropped; their parent reaps them.
    let pgid = printed_pgid(&host);
    assert_eq!(wait_group_gone(pgid, Duration::from_secs(10)).await, true);
    assert_eq!(group_exists(pgid), false);
}

#[tokio::test]
async fn long_output_reaches_the_model_cut_in_the_middle() {
    let dir = workspace();
    let host = FakeHost::default();
    let ctx = context(dir.path(), ApprovalPolicy::Never, SandboxMode::ReadOnly);

    let outcome = dispatch(shell_call("c1", &["seq", "1", "1000"]), &ctx, &host).await;

    let head: String = (1..=128).map(|i| format!("{i}\n")).collect();
    let tail: String = (873..=1000).map(|i| format!("{i}\n")).collect();
    let omitted: usize = (129..=872).map(|i: usize| i.to_string().len() + 1).sum();
    assert_eq!(
        steady(outcome),
        success(ran(
            0,
            &format!("{head}[… 744 lines ({omitted} bytes) of output omitted …]\n{tail}")
        ))
    );
    let all: String = (1..=1000).map(|i| format!("{i}\n")).collect();
    assert_eq!(host.streamed(CommandStream::Stdout), all);
}

fn sandboxed_run(cwd: &Path, policy: &sandbox::SandboxPolicy, argv_: &[&str]) -> (i32, String) {
    let argv_ = argv(argv_);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut sink = |_, _| {};
        let out = exec::execute(
            exec::ExecRequest {
                argv: &argv_,
                cwd,
                timeout: Duration::from_secs(30),
                sandbox: Some(policy),
            },
            &CancellationToken::new(),
            &mut sink,
        )
        .await
        .unwrap();
        (out.exit_code().unwrap(), out.output.truncated())
    })
}

#[test]
fn workspace_write_allows_writes_inside_only_and_no_network() {
    let dir = workspace();
    let cwd = dir.path();
    let outside = outside_dir();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = format!("echo hi > /dev/tcp/127.0.0.1/{port}");
    let outside_file = outside.path().join("x.txt").display().to_string();

    for net in [
        sandbox::NetIsolation::NamespaceElseSeccomp,
        sandbox::NetIsolation::Seccomp,
    ] {
        let policy = sandbox::SandboxPolicy::with_roots(
            SandboxMode::WorkspaceWrite,
            vec![cwd.to_path_buf()],
            net,
        );
        let results = (
            sandboxed_run(
                cwd,
                &policy,
                &["bash", "-c", "echo in > inside.txt && cat inside.txt"],
            ),
            sandboxed_run(cwd, &policy, &["touch", &outside_file]).0,
            sandboxed_run(cwd, &policy, &["bash", "-c", &connect]).0,
        );
        assert_eq!(
            (results.0, results.1 != 0, results.2 != 0),
            ((0, "in\n".to_owned()), true, true),
            "{net:?}"
        );
        assert_eq!(
            listener.accept().map_err(|e| e.kind()).map(|_| ()),
            Err(std::io::ErrorKind::WouldBlock),
            "{net:?}"
        );
    }
    assert_eq!(std::path::Path::new(&outside_file).exists(), false);

    // The same connection without the sandbox does arrive, so the test can see one.
    let free = sandbox::SandboxPolicy::new(SandboxMode::DangerFullAccess, cwd);
    assert_eq!(sandboxed_run(cwd, &free, &["bash", "-c", &connect]).0, 0);
    assert_eq!(listener.accept().map(|_| ()).map_err(|e| e.kind()), Ok(()));
}

#[test]
fn read_only_allows_no_write_at_all() {
    let dir = workspace();
    let cwd = dir.path();
    let policy = sandbox::SandboxPolicy::new(SandboxMode::ReadOnly, cwd);
    assert_eq!(
        (
            sandboxed_run(cwd, &policy, &["touch", "a.txt"]).0,
            sandboxed_run(
                cwd,
                &policy,
                &["bash", "-c", "echo x > /dev/null && echo ok"]
            ),
        ),
        (1, (0, "ok\n".to_owned()))
    );
    assert_eq!(cwd.join("a.txt").exists(), false);
}

const PATCH: &str = "*** Begin Patch\n\
                     *** Add File: new.txt\n\
                     +fresh\n\
                     *** Update File: edit.txt\n\
                     @@\n\
                     -old\n\
                     +new\n\
                     *** Update File: move.txt\n\
                     *** Move to: moved/here.txt\n\
                     @@\n \
                     keep\n\
                     -drop\n\
                     +add\n\
                     *** Delete File: gone.txt\n\
                     *** End Patch";

fn patch_fixture(cwd: &Path) {
    std::fs::write(cwd.join("edit.txt"), "old\n").unwrap();
    std::fs::write(cwd.join("move.txt"), "keep\ndrop\n").unwrap();
    std::fs::write(cwd.join("gone.txt"), "bye\n").unwrap();
}

fn patch_changes(cwd: &Path) -> Vec<FileChange> {
    let path = |p: &str| cwd.join(p).display().to_string();
    vec![
        FileChange {
            path: path("new.txt"),
            kind: FileChangeKind::Add,
            diff: "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+fresh\n".into(),
        },
        FileChange {
            path: path("edit.txt"),
            kind: FileChangeKind::Update,
            diff: "--- a/edit.txt\n+++ b/edit.txt\n@@ -1 +1 @@\n-old\n+new\n".into(),
        },
        FileChange {
            path: path("moved/here.txt"),
            kind: FileChangeKind::Update,
            diff: "--- a/move.txt\n+++ b/moved/here.txt\n@@ -1,2 +1,2 @@\n keep\n-drop\n+add\n"
                .into(),
        },
        FileChange {
            path: path("gone.txt"),
            kind: FileChangeKind::Delete,
            diff: "--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n".into(),
        },
    ]
}

fn patch_call(id: &str, patch: &str) -> ToolCall {
    ToolCall {
        call_id: id.into(),
        name: "apply_patch".into(),
        arguments: serde_json::json!({ "input": patch }).to_string(),
    }
}

fn file_item(id: &str, changes: Vec<FileChange>, status: ItemStatus) -> Item {
    Item::FileChange {
        id: id.into(),
        changes,
        status,
    }
}

fn read_tree(cwd: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![cwd.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(cwd).unwrap().display().to_string();
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn an_approved_patch_adds_updates_moves_and_deletes_files() {
    let dir = workspace();
    let cwd = dir.path();
    patch_fixture(cwd);
    let host = FakeHost::answering(&[Some(ApprovalDecision::Approve)]);
    let ctx = context(cwd, ApprovalPolicy::Untrusted, SandboxMode::WorkspaceWrite);

    let outcome = dispatch(patch_call("p1", PATCH), &ctx, &host).await;

    let path = |p: &str| cwd.join(p).display().to_string();
    assert_eq!(
        outcome,
        success(format!(
            "Success. Updated the following files:\nA {}\nM {}\nM {}\nD {}",
            path("new.txt"),
            path("edit.txt"),
            path("moved/here.txt"),
            path("gone.txt")
        ))
    );
    assert_eq!(
        host.seen(),
        vec![
            started(file_item("p1", patch_changes(cwd), ItemStatus::InProgress)),
            Seen::Approval(ApprovalRequest {
                item_id: "p1".into(),
                kind: ApprovalKind::FileChange,
                command: None,
                cwd: None,
                changes: Some(patch_changes(cwd)),
                reason: None,
                mcp: None,
            }),
            completed(file_item("p1", patch_changes(cwd), ItemStatus::Completed)),
        ]
    );
    assert_eq!(
        read_tree(cwd),
        vec![
            ("edit.txt".to_owned(), "new\n".to_owned()),
            ("moved/here.txt".to_owned(), "keep\nadd\n".to_owned()),
            ("new.txt".to_owned(), "fresh\n".to_owned()),
        ]
    );
}

#[tokio::test]
async fn file_changes_approved_for_the_session_are_not_asked_again() {
    let dir = workspace();
    let cwd = dir.path();
    let host = FakeHost::answering(&[Some(ApprovalDecision::ApproveForSession)]);
    let ctx = context(cwd, ApprovalPolicy::Untrusted, SandboxMode::WorkspaceWrite);
    let add = |name: &str| format!("*** Begin Patch\n*** Add File: {name}\n+x\n*** End Patch");

    let first = dispatch(patch_call("p1", &add("a.txt")), &ctx, &host).await;
    let second = dispatch(patch_call("p2", &add("sub/b.txt")), &ctx, &host).await;

    assert_eq!(
        (first.success, second.success, host.approvals()),
        (true, true, 1)
    );
    assert_eq!(
        read_tree(cwd),
        vec![
            ("a.txt".to_owned(), "x\n".to_owned()),
            ("sub/b.txt".to_owned(), "x\n".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_declined_patch_changes_nothing() {
    for (answer, can_approve, abort) in [
        (Some(ApprovalDecision::Deny), true, false),
        (Some(ApprovalDecision::Abort), true, true),
        (None, false, false),
    ] {
        let dir = workspace();
        let cwd = dir.path();
        patch_fixture(cwd);
        let before = read_tree(cwd);
        let host = FakeHost::answering(&[answer]);
        let mut ctx = context(cwd, ApprovalPolicy::Untrusted, SandboxMode::WorkspaceWrite);
        ctx.client_can_approve = can_approve;

        let outcome = dispatch(patch_call("p1", PATCH), &ctx, &host).await;

        assert_eq!((outcome.success, outcome.abort_turn), (false, abort));
        assert_eq!(
            host.seen().last(),
            Some(&completed(file_item(
                "p1",
                patch_changes(cwd),
                ItemStatus::Declined
            )))
        );
        assert_eq!(read_tree(cwd), before);
    }
}

#[tokio::test]
async fn a_patch_with_a_bad_hunk_changes_nothing_on_disk() {
    let dir = workspace();
    let cwd = dir.path();
    patch_fixture(cwd);
    let before = read_tree(cwd);
    let host = FakeHost::default();
    let ctx = context(cwd, ApprovalPolicy::Never, SandboxMode::WorkspaceWrite);
    let bad = PATCH.replace("-drop", "-not there");

    let outcome = dispatch(patch_call("p1", &bad), &ctx, &host).await;

    assert_eq!(
        outcome,
        ToolOutcome::failed(format!(
            "apply_patch failed: could not find these lines in {}:\nkeep\nnot there\nRead the \
             file again and make the hunk's context and '-' lines match it",
            cwd.join("move.txt").display()
        ))
    );
    assert_eq!(
        host.seen(),
        vec![
            started(file_item("p1", vec![], ItemStatus::InProgress)),
            completed(file_item("p1", vec![], ItemStatus::Failed)),
        ]
    );
    assert_eq!(read_tree(cwd), before);
}

#[tokio::test]
async fn patches_outside_the_workspace_follow_the_sandbox() {
    let dir = workspace();
    let cwd = dir.path();
    let outside = outside_dir();
    let target = outside.path().join("x.txt");
    let patch = format!(
        "*** Begin Patch\n*** Add File: {}\n+x\n*** End Patch",
        target.display()
    );

    // `never`: refused without asking.
    let host = FakeHost::default();
    let ctx = context(cwd, ApprovalPolicy::Never, SandboxMode::WorkspaceWrite);
    let refused = dispatch(patch_call("p1", &patch), &ctx, &host).await;
    assert_eq!(
        (refused, host.approvals(), target.exists()),
        (
            ToolOutcome::failed(format!(
                "apply_patch refused: the workspaceWrite sandbox does not allow writing {}. \
                 Change only files under {}.",
                target.display(),
                cwd.display()
            )),
            0,
            false
        )
    );

    // `onFailure`: asked, with the reason, and written once approved.
    let host = FakeHost::answering(&[Some(ApprovalDecision::Approve)]);
    let ctx = context(cwd, ApprovalPolicy::OnFailure, SandboxMode::WorkspaceWrite);
    let approved = dispatch(patch_call("p2", &patch), &ctx, &host).await;
    let reasons: Vec<Option<String>> = host
        .seen()
        .into_iter()
        .filter_map(|s| match s {
            Seen::Approval(r) => Some(r.reason),
            Seen::Event(_) => None,
        })
        .collect();
    assert_eq!(
        (
            approved.success,
            reasons,
            std::fs::read_to_string(&target).unwrap()
        ),
        (
            true,
            vec![Some(format!(
                "The patch writes outside what the sandbox allows: {}",
                target.display()
            ))],
            "x\n".to_owned()
        )
    );
}

#[tokio::test]
async fn a_patch_sent_as_a_shell_command_becomes_a_file_change() {
    let dir = workspace();
    let cwd = dir.path();
    std::fs::create_dir(cwd.join("sub")).unwrap();
    let host = FakeHost::default();
    let ctx = context(cwd, ApprovalPolicy::Never, SandboxMode::WorkspaceWrite);
    let script = "cd sub && apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: a.txt\n+x\n*** \
                  End Patch\nEOF\n";

    let outcome = dispatch(shell_call("c1", &["bash", "-lc", script]), &ctx, &host).await;

    let path = cwd.join("sub/a.txt");
    assert_eq!(
        outcome,
        success(format!(
            "Success. Updated the following files:\nA {}",
            path.display()
        ))
    );
    let changes = vec![FileChange {
        path: path.display().to_string(),
        kind: FileChangeKind::Add,
        diff: "--- /dev/null\n+++ b/sub/a.txt\n@@ -0,0 +1 @@\n+x\n".into(),
    }];
    assert_eq!(
        host.seen(),
        vec![
            started(file_item("c1", changes.clone(), ItemStatus::InProgress)),
            completed(file_item("c1", changes, ItemStatus::Completed)),
        ]
    );
}

#[tokio::test]
async fn update_plan_emits_plan_updated() {
    let dir = workspace();
    let host = FakeHost::default();
    let ctx = context(dir.path(), ApprovalPolicy::Untrusted, SandboxMode::ReadOnly);
    let call = ToolCall {
        call_id: "u1".into(),
        name: "update_plan".into(),
        arguments: r#"{"explanation":"starting","plan":[{"step":"read","status":"completed"},
            {"step":"edit","status":"in_progress"},{"step":"test","status":"pending"}]}"#
            .into(),
    };

    let outcome = dispatch(call, &ctx, &host).await;

    assert_eq!(outcome, success("Plan updated".into()));
    let step = |s: &str, status| PlanStep {
        step: s.into(),
        status,
    };
    assert_eq!(
        host.seen(),
        vec![Seen::Event(Event::PlanUpdated {
            explanation: Some("starting".into()),
            plan: vec![
                step("read", PlanStepStatus::Completed),
                step("edit", PlanStepStatus::InProgress),
                step("test", PlanStepStatus::Pending),
            ],
        })]
    );
}

#[tokio::test]
async fn unknown_tools_and_malformed_arguments_fail_as_tool_calls() {
    let dir = workspace();
    let host = FakeHost::default();
    let ctx = context(dir.path(), ApprovalPolicy::Never, SandboxMode::ReadOnly);
    let calls = [
        ("t1", "frobnicate", "{}"),
        ("t2", "shell", r#"{"command":"ls"}"#),
        ("t3", "update_plan", "not json"),
    ];
    let mut outputs = Vec::new();
    for (id, name, arguments) in calls {
        let call = ToolCall {
            call_id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        };
        outputs.push(dispatch(call, &ctx, &host).await);
    }
    let messages = [
        "unknown tool `frobnicate`; the available tools are shell, apply_patch and update_plan"
            .to_owned(),
        format!(
            "invalid arguments for shell: invalid type: string \"ls\", expected a sequence at \
             line 1 column 15; expected {}",
            shell::EXPECTED
        ),
        format!(
            "invalid arguments for update_plan: expected ident at line 1 column 2; expected {}",
            plan::EXPECTED
        ),
    ];
    assert_eq!(
        outputs,
        messages
            .iter()
            .map(|m| ToolOutcome::failed(m.clone()))
            .collect::<Vec<_>>()
    );
    let mut expected = Vec::new();
    for ((id, name, arguments), message) in calls.iter().zip(&messages) {
        let item = |status, output: Option<String>| Item::ToolCall {
            id: (*id).into(),
            name: (*name).into(),
            arguments: (*arguments).into(),
            status,
            output,
        };
        expected.push(started(item(ItemStatus::InProgress, None)));
        expected.push(completed(item(ItemStatus::Failed, Some(message.clone()))));
    }
    assert_eq!(host.seen(), expected);
}

#[test]
fn the_kernel_enforces_the_sandbox() {
    // Landlock must be available for the sandbox tests above to mean anything; on a kernel
    // without it, preparing fails with the documented error instead.
    let dir = workspace();
    let policy = sandbox::SandboxPolicy::new(SandboxMode::ReadOnly, dir.path());
    assert_eq!(
        policy
            .prepare()
            .map(|c| c.confines())
            .map_err(|e| e.to_string()),
        Ok(true)
    );
}
