//! The tools of section 4 end to end: `shell` with each approval decision, clients without the
//! approvals capability, the `never` policy, `apply_patch`, `update_plan`, interrupting a
//! pending approval, and killing a command's children on interrupt.

use std::time::Duration;

use agent_server_tests::schema::lifecycle::EmptyResult;
use agent_server_tests::schema::methods::{Interrupt, ListSessions};
use agent_server_tests::schema::session::{InterruptParams, ListSessionsParams, SessionStatus};
use agent_server_tests::turns::{
    default_turn_started, just_events, normalize_ids, session_in, submit, turn_events,
};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_function_call, function_call_output, mount_answer, mount_call,
    mount_sse_once, responses_requests, responses_usage, sse,
};
use agent_server_tests::{DEFAULT_TIMEOUT, TestServer};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::MockServer;

fn shell(script: &str) -> Value {
    json!({"command": ["sh", "-c", script]})
}

/// Replaces `durationMs` (how long a command took) with a placeholder, after checking it.
fn without_durations(mut events: Vec<Value>) -> Vec<Value> {
    for event in &mut events {
        if let Some(item) = event.get_mut("item")
            && let Some(ms) = item.get_mut("durationMs")
        {
            assert!(ms.is_u64(), "durationMs is not a count: {ms}");
            *ms = json!("<ms>");
        }
    }
    events
}

/// Joins runs of `commandOutputDelta` for the same item and stream into one event: how output
/// is cut into chunks depends on the pipe, not on the contract.
fn merged_output(events: Vec<Value>) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::new();
    for event in events {
        if event["type"] == "commandOutputDelta"
            && let Some(last) = merged.last_mut()
            && last["type"] == "commandOutputDelta"
            && last["itemId"] == event["itemId"]
            && last["stream"] == event["stream"]
        {
            let joined = format!(
                "{}{}",
                last["delta"].as_str().unwrap_or_default(),
                event["delta"].as_str().unwrap_or_default()
            );
            last["delta"] = json!(joined);
            continue;
        }
        merged.push(event);
    }
    merged
}

/// The `output` sent back for `call_id` in the last upstream request.
async fn told_model(upstream: &MockServer, call_id: &str) -> String {
    let requests = responses_requests(upstream).await;
    requests
        .last()
        .and_then(|r| function_call_output(r, call_id))
        .unwrap_or_else(|| panic!("no function_call_output for {call_id}: {requests:?}"))
}

/// The shell tool's output text, with the wall time (which varies) replaced.
fn without_wall_time(output: &str) -> String {
    let mut lines: Vec<String> = output.lines().map(str::to_owned).collect();
    if let Some(line) = lines.get_mut(1)
        && line.starts_with("Wall time: ")
        && line.ends_with(" seconds")
    {
        *line = "Wall time: <s> seconds".into();
    }
    let mut text = lines.join("\n");
    if output.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Ends the conversation and returns the server → client requests left unanswered.
async fn unanswered_requests(server: &mut TestServer) -> Vec<Value> {
    server.close_stdin().await;
    server
        .read_to_end()
        .await
        .into_iter()
        .filter(|m| m.get("id").is_some() && m.get("method").is_some())
        .collect()
}

#[tokio::test]
async fn an_approved_command_runs_in_the_session_cwd_and_its_output_goes_back() {
    let upstream = MockServer::start().await;
    mount_call(&upstream, "call_1", "shell", &shell("echo hi; pwd")).await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let dir = cwd.path().display().to_string();
    let (mut server, session) =
        session_in(&upstream, cwd.path(), true, "untrusted", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "run it").await;

    let ask = server.next_server_request().await;
    assert_eq!(
        ask,
        json!({"jsonrpc": "2.0", "id": ask["id"], "method": "session/requestApproval", "params": {
            "sessionId": session, "turnId": turn, "itemId": "call_1",
            "kind": "commandExecution", "command": ["sh", "-c", "echo hi; pwd"], "cwd": dir,
        }})
    );
    server
        .respond(ask["id"].clone(), json!({"decision": "approve"}))
        .await;
    let events = merged_output(without_durations(just_events(
        &turn_events(&mut server, &turn).await,
    )));
    let command = json!(["sh", "-c", "echo hi; pwd"]);
    let usage = |n: u64| {
        json!({"inputTokens": n, "cachedInputTokens": 0, "outputTokens": n,
               "reasoningOutputTokens": 0, "totalTokens": 2 * n})
    };
    assert_eq!(
        normalize_ids(&Value::Array(events)),
        json!([
            default_turn_started(cwd.path()),
            {"type": "tokenUsage", "last": usage(1), "total": usage(1)},
            {"type": "itemStarted", "item": {"id": "id1", "type": "commandExecution",
                "command": command, "cwd": dir, "status": "inProgress"}},
            {"type": "commandOutputDelta", "itemId": "id1", "stream": "stdout", "delta": format!("hi\n{dir}\n")},
            {"type": "itemCompleted", "item": {"id": "id1", "type": "commandExecution",
                "command": command, "cwd": dir, "status": "completed", "exitCode": 0,
                "output": format!("hi\n{dir}\n"), "durationMs": "<ms>"}},
            {"type": "itemStarted", "item": {"id": "id2", "type": "agentMessage", "text": ""}},
            {"type": "itemCompleted", "item": {"id": "id2", "type": "agentMessage", "text": "done"}},
            {"type": "tokenUsage", "last": usage(1), "total": usage(2)},
            {"type": "turnCompleted", "status": "completed", "lastAgentMessage": "done", "usage": usage(2)},
        ])
    );
    assert_eq!(
        without_wall_time(&told_model(&upstream, "call_1").await),
        format!("Exit code: 0\nWall time: <s> seconds\nOutput:\nhi\n{dir}\n")
    );
}

/// Runs one turn whose model asks for `echo hi > out.txt`, answering the approval with
/// `decision`; returns the turn's events and the server.
async fn decide(decision: &str) -> (Vec<Value>, MockServer, tempfile::TempDir) {
    let upstream = MockServer::start().await;
    mount_call(&upstream, "call_1", "shell", &shell("echo hi > out.txt")).await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
    let (mut server, session) =
        session_in(&upstream, cwd.path(), true, "untrusted", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "write").await;
    let ask = server.next_server_request().await;
    assert_eq!(ask["params"]["itemId"], "call_1", "{ask}");
    server
        .respond(ask["id"].clone(), json!({"decision": decision}))
        .await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    (events, upstream, cwd)
}

fn command_items(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "itemCompleted" && e["item"]["type"] == "commandExecution")
        .map(|e| e["item"].clone())
        .collect()
}

#[tokio::test]
async fn a_denied_command_does_not_run_and_the_model_is_told_the_user_declined() {
    let (events, upstream, cwd) = decide("deny").await;
    assert_eq!(
        command_items(&events),
        vec![json!({"id": "call_1", "type": "commandExecution",
            "command": ["sh", "-c", "echo hi > out.txt"], "cwd": cwd.path(), "status": "declined"})]
    );
    assert_eq!(completion_status(&events), "completed");
    assert!(!cwd.path().join("out.txt").exists());
    let told = told_model(&upstream, "call_1").await;
    assert!(told.contains("declined by the user"), "{told}");
}

fn completion_status(events: &[Value]) -> String {
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(last["type"], "turnCompleted", "{events:?}");
    last["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_aborted_command_ends_the_turn_interrupted() {
    let (events, upstream, cwd) = decide("abort").await;
    assert_eq!(completion_status(&events), "interrupted");
    assert_eq!(command_items(&events)[0]["status"], "declined");
    assert!(!cwd.path().join("out.txt").exists());
    // The model is not called again.
    assert_eq!(responses_requests(&upstream).await.len(), 1);
}

#[tokio::test]
async fn approve_for_session_stops_asking_for_the_same_command() {
    let upstream = MockServer::start().await;
    mount_call(&upstream, "call_1", "shell", &shell("echo hi >> out.txt")).await;
    mount_call(&upstream, "call_2", "shell", &shell("echo hi >> out.txt")).await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let (mut server, session) =
        session_in(&upstream, cwd.path(), true, "untrusted", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "twice").await;
    let ask = server.next_server_request().await;
    assert_eq!(ask["params"]["itemId"], "call_1", "{ask}");
    server
        .respond(ask["id"].clone(), json!({"decision": "approveForSession"}))
        .await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let statuses: Vec<(Value, Value)> = command_items(&events)
        .iter()
        .map(|i| (i["id"].clone(), i["status"].clone()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (json!("call_1"), json!("completed")),
            (json!("call_2"), json!("completed"))
        ]
    );
    assert_eq!(
        std::fs::read_to_string(cwd.path().join("out.txt")).unwrap(),
        "hi\nhi\n"
    );
    assert_eq!(unanswered_requests(&mut server).await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_client_without_approvals_is_never_asked_and_the_policy_declines() {
    let upstream = MockServer::start().await;
    mount_call(&upstream, "call_1", "shell", &shell("echo hi > out.txt")).await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let (mut server, session) =
        session_in(&upstream, cwd.path(), false, "untrusted", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "write").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    assert_eq!(command_items(&events)[0]["status"], "declined");
    assert_eq!(completion_status(&events), "completed");
    assert!(!cwd.path().join("out.txt").exists());
    let told = told_model(&upstream, "call_1").await;
    assert!(told.contains("declined by policy"), "{told}");
    assert_eq!(unanswered_requests(&mut server).await, Vec::<Value>::new());
}

#[tokio::test]
async fn policy_never_runs_without_asking() {
    let upstream = MockServer::start().await;
    mount_call(&upstream, "call_1", "shell", &shell("echo hi > out.txt")).await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let (mut server, session) =
        session_in(&upstream, cwd.path(), true, "never", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "write").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    assert_eq!(command_items(&events)[0]["status"], "completed");
    assert_eq!(
        std::fs::read_to_string(cwd.path().join("out.txt")).unwrap(),
        "hi\n"
    );
    assert_eq!(unanswered_requests(&mut server).await, Vec::<Value>::new());
}

#[tokio::test]
async fn an_approved_patch_adds_the_file_with_a_file_change_item() {
    let upstream = MockServer::start().await;
    let patch = "*** Begin Patch\n*** Add File: notes/new.txt\n+hello\n+world\n*** End Patch\n";
    mount_call(&upstream, "call_1", "apply_patch", &json!({"input": patch})).await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let path = cwd.path().join("notes/new.txt").display().to_string();
    let (mut server, session) =
        session_in(&upstream, cwd.path(), true, "untrusted", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "patch").await;
    let changes = json!([{"path": path, "kind": "add",
        "diff": "--- /dev/null\n+++ b/notes/new.txt\n@@ -0,0 +1,2 @@\n+hello\n+world\n"}]);
    let ask = server.next_server_request().await;
    assert_eq!(
        ask["params"],
        json!({"sessionId": session, "turnId": turn, "itemId": "call_1",
               "kind": "fileChange", "changes": changes})
    );
    server
        .respond(ask["id"].clone(), json!({"decision": "approve"}))
        .await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let items: Vec<Value> = events
        .iter()
        .filter(|e| e["item"]["type"] == "fileChange")
        .cloned()
        .collect();
    assert_eq!(
        items,
        vec![
            json!({"type": "itemStarted", "item": {"id": "call_1", "type": "fileChange", "changes": changes, "status": "inProgress"}}),
            json!({"type": "itemCompleted", "item": {"id": "call_1", "type": "fileChange", "changes": changes, "status": "completed"}}),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(cwd.path().join("notes/new.txt")).unwrap(),
        "hello\nworld\n"
    );
}

#[tokio::test]
async fn update_plan_becomes_plan_updated() {
    let upstream = MockServer::start().await;
    let plan = json!({"explanation": "two steps", "plan": [
        {"step": "read", "status": "completed"},
        {"step": "write", "status": "in_progress"},
        {"step": "test", "status": "pending"},
    ]});
    mount_call(&upstream, "call_1", "update_plan", &plan).await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let (mut server, session) =
        session_in(&upstream, cwd.path(), true, "untrusted", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "plan").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let plans: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "planUpdated")
        .collect();
    assert_eq!(
        plans,
        vec![
            &json!({"type": "planUpdated", "explanation": "two steps", "plan": [
                {"step": "read", "status": "completed"},
                {"step": "write", "status": "inProgress"},
                {"step": "test", "status": "pending"},
            ]})
        ]
    );
    assert_eq!(completion_status(&events), "completed");
}

#[tokio::test]
async fn interrupt_while_an_approval_is_pending_withdraws_it() {
    let upstream = MockServer::start().await;
    mount_call(&upstream, "call_1", "shell", &shell("echo hi > out.txt")).await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let (mut server, session) =
        session_in(&upstream, cwd.path(), true, "untrusted", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "write").await;
    let ask = server.next_server_request().await;
    let reply = server
        .request::<Interrupt>(InterruptParams {
            session_id: session.clone(),
            turn_id: None,
        })
        .await;
    assert_eq!(reply, Ok(EmptyResult {}));
    let cancel = server
        .wait_for_notification("$/cancelRequest", |_| true)
        .await;
    assert_eq!(
        cancel,
        json!({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": ask["id"]}})
    );
    let events = just_events(&turn_events(&mut server, &turn).await);
    assert_eq!(completion_status(&events), "interrupted");
    // A late answer is ignored.
    server
        .respond(ask["id"].clone(), json!({"decision": "approve"}))
        .await;
    let listed = server
        .request::<ListSessions>(ListSessionsParams::default())
        .await;
    assert_eq!(
        listed.map(|l| l.sessions.into_iter().map(|s| s.status).collect::<Vec<_>>()),
        Ok(vec![SessionStatus::Idle])
    );
    assert!(!cwd.path().join("out.txt").exists());
    assert_eq!(responses_requests(&upstream).await.len(), 1);
}

/// Whether a live (not zombie) process has `marker` in its argv. Commands run in their own PID
/// namespace, so the pids they print mean nothing here: processes are found by argv.
fn marked_process_exists(marker: &str) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            !zombie && String::from_utf8_lossy(&cmdline).contains(marker)
        })
}

#[tokio::test]
async fn interrupt_kills_the_children_a_command_spawned() {
    let upstream = MockServer::start().await;
    // A sleep length no other process uses.
    let marker = format!("300.{}", std::process::id());
    mount_call(
        &upstream,
        "call_1",
        "shell",
        &shell(&format!("sleep {marker} & echo started; wait")),
    )
    .await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let (mut server, session) =
        session_in(&upstream, cwd.path(), true, "never", "dangerFullAccess").await;
    let turn = submit(&mut server, &session, "sleep").await;
    let output = server
        .wait_for_notification("session/event", |p| {
            p["event"]["type"] == "commandOutputDelta"
        })
        .await;
    assert!(marked_process_exists(&marker), "{output}");
    let reply = server
        .request::<Interrupt>(InterruptParams {
            session_id: session.clone(),
            turn_id: Some(turn.clone()),
        })
        .await;
    assert_eq!(reply, Ok(EmptyResult {}));
    let events = just_events(&turn_events(&mut server, &turn).await);
    assert_eq!(completion_status(&events), "interrupted");
    // The kill is signalled before turnCompleted; wait (bounded) for the kernel to finish it.
    let deadline = tokio::time::Instant::now() + DEFAULT_TIMEOUT;
    while marked_process_exists(&marker) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the child `sleep {marker}` outlived the interrupt"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn workspace_write_allows_writes_inside_and_blocks_writes_outside_and_the_network() {
    let upstream = MockServer::start().await;
    // Outside the cwd and outside the temp dir (which workspaceWrite may write).
    let outside = agent_server_tests::outside_temp_dir();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let outside_file = outside.path().join("outside.txt");
    mount_call(&upstream, "call_1", "shell", &shell("echo in > inside.txt")).await;
    mount_call(
        &upstream,
        "call_2",
        "shell",
        &shell(&format!("echo out > {}", outside_file.display())),
    )
    .await;
    mount_call(
        &upstream,
        "call_3",
        "shell",
        &json!({"command": ["bash", "-c", format!("echo hi > /dev/tcp/127.0.0.1/{port}")]}),
    )
    .await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let (mut server, session) =
        session_in(&upstream, cwd.path(), true, "never", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "write and connect").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let exit_codes: Vec<Value> = command_items(&events)
        .iter()
        .map(|item| item["exitCode"].clone())
        .collect();
    assert_eq!(exit_codes[0], json!(0), "{events:?}");
    assert_ne!(exit_codes[1], json!(0), "{events:?}");
    assert_ne!(exit_codes[2], json!(0), "{events:?}");
    assert_eq!(
        std::fs::read_to_string(cwd.path().join("inside.txt")).unwrap(),
        "in\n"
    );
    assert!(
        !outside_file.exists(),
        "a write outside the cwd got through"
    );
    // The command has ended, so a connection that got through would be waiting to be accepted.
    listener.set_nonblocking(true).unwrap();
    assert_eq!(
        listener.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock)
    );
}

#[tokio::test]
async fn on_failure_asks_to_rerun_unsandboxed_after_a_sandboxed_failure() {
    let upstream = MockServer::start().await;
    let outside = agent_server_tests::outside_temp_dir();
    let outside_file = outside.path().join("outside.txt");
    let script = format!("echo out > {}", outside_file.display());
    mount_call(&upstream, "call_1", "shell", &shell(&script)).await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let (mut server, session) =
        session_in(&upstream, cwd.path(), true, "onFailure", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "write outside").await;
    // No question before the sandboxed run; one after it failed, for the same item, with a reason.
    let ask = server.next_server_request().await;
    assert_eq!(
        (
            &ask["params"]["itemId"],
            &ask["params"]["kind"],
            ask["params"]["reason"].is_string()
        ),
        (&json!("call_1"), &json!("commandExecution"), true),
        "{ask}"
    );
    assert!(
        !outside_file.exists(),
        "the sandboxed run wrote outside the cwd"
    );
    server
        .respond(ask["id"].clone(), json!({"decision": "approve"}))
        .await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let items = command_items(&events);
    assert_eq!(
        (items.len(), &items[0]["status"], &items[0]["exitCode"]),
        (1, &json!("completed"), &json!(0)),
        "{events:?}"
    );
    assert_eq!(std::fs::read_to_string(&outside_file).unwrap(), "out\n");
}

#[tokio::test]
async fn after_an_abort_every_call_of_the_response_has_an_output_in_the_next_request() {
    let upstream = MockServer::start().await;
    mount_sse_once(
        &upstream,
        sse([
            ev_created("resp_two"),
            ev_function_call("call_1", "shell", &shell("touch a").to_string()),
            ev_function_call("call_2", "shell", &shell("touch b").to_string()),
            ev_completed("resp_two", responses_usage(1, 0, 1, 0)),
        ]),
    )
    .await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let (mut server, session) =
        session_in(&upstream, cwd.path(), true, "untrusted", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "two calls").await;
    let ask = server.next_server_request().await;
    assert_eq!(ask["params"]["itemId"], "call_1");
    server
        .respond(ask["id"].clone(), json!({"decision": "abort"}))
        .await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    assert_eq!(events.last().unwrap()["status"], "interrupted");
    // The next turn sends the whole conversation: both calls must have their outputs.
    let next = submit(&mut server, &session, "go on").await;
    turn_events(&mut server, &next).await;
    let requests = responses_requests(&upstream).await;
    let last = requests.last().unwrap();
    assert!(function_call_output(last, "call_1").is_some(), "{last}");
    assert_eq!(
        function_call_output(last, "call_2").as_deref(),
        Some("The turn was interrupted before this tool call ran.")
    );
    assert!(!cwd.path().join("b").exists());
}
