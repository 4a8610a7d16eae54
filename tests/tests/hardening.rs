//! Regression tests for the escapes a security review reproduced against the binary: each test
//! replays the model's tool calls the way the attack did and checks that the attack is now
//! refused or contained.
//!
//! The machine these run on (like CI and containers) runs them as root; the tests that depend
//! on it say so. Process tests find a command's descendants by a marker in their argv, scanning
//! `/proc`, and check that none is left.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_server_tests::TestServer;
use agent_server_tests::turns::{
    api_key_builder, initialize, just_events, new_session, submit, turn_events,
};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_function_call, ev_message_done, function_call_output, mount_sse,
    mount_sse_once, responses_requests, responses_usage, sse,
};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::MockServer;

/// Mounts one response asking for the tool calls `calls` (call id, tool name, arguments).
async fn mount_calls(upstream: &MockServer, calls: &[(String, &str, Value)]) {
    let mut events = vec![ev_created("resp_calls")];
    for (id, name, arguments) in calls {
        events.push(ev_function_call(id, name, &arguments.to_string()));
    }
    events.push(ev_completed("resp_calls", responses_usage(1, 0, 1, 0)));
    mount_sse_once(upstream, sse(events)).await;
}

async fn mount_call(upstream: &MockServer, call_id: &str, name: &str, arguments: Value) {
    mount_calls(upstream, &[(call_id.to_owned(), name, arguments)]).await;
}

/// Mounts the final text answer for every later request.
async fn mount_answer(upstream: &MockServer) {
    mount_sse(
        upstream,
        sse([
            ev_created("resp_final"),
            ev_message_done("msg_final", "done"),
            ev_completed("resp_final", responses_usage(1, 0, 1, 0)),
        ]),
    )
    .await;
}

async fn server_in(
    upstream: &MockServer,
    cwd: &Path,
    policy: &str,
    sandbox: &str,
) -> (TestServer, String) {
    let mut server = api_key_builder(upstream).spawn().await;
    initialize(&mut server, true).await;
    let session = new_session(
        &mut server,
        json!({"cwd": cwd, "approvalPolicy": policy, "sandbox": sandbox}),
    )
    .await;
    (server, session)
}

fn add_file(path: &str, text: &str) -> Value {
    json!({"input": format!("*** Begin Patch\n*** Add File: {path}\n+{text}\n*** End Patch")})
}

/// The `output` sent back for `call_id` in the last upstream request.
async fn told_model(upstream: &MockServer, call_id: &str) -> String {
    let requests = responses_requests(upstream).await;
    requests
        .last()
        .and_then(|r| function_call_output(r, call_id))
        .unwrap_or_else(|| panic!("no function_call_output for {call_id}: {requests:?}"))
}

fn items_of(events: &[Value], kind: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "itemCompleted" && e["item"]["type"] == kind)
        .map(|e| e["item"].clone())
        .collect()
}

/// Every entry of `dir` (names only).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn real(path: &Path) -> PathBuf {
    path.canonicalize()
        .unwrap_or_else(|e| panic!("cannot resolve {}: {e}", path.display()))
}

// ---- finding 1: patches written through a symlink swapped in after the check ----

/// Under `untrusted` + `workspaceWrite`, `sub/` is replaced by a symlink to a directory outside
/// while the approval is pending: after the approval nothing lands outside.
#[tokio::test]
async fn a_directory_swapped_for_a_symlink_during_the_approval_wait_is_not_written_through() {
    let upstream = MockServer::start().await;
    mount_call(
        &upstream,
        "call_1",
        "apply_patch",
        add_file("sub/first.txt", "x"),
    )
    .await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let outside = agent_server_tests::outside_temp_dir();
    std::fs::create_dir(cwd.path().join("sub")).unwrap();
    let (mut server, session) =
        server_in(&upstream, cwd.path(), "untrusted", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "add").await;
    let ask = server.next_server_request().await;
    assert_eq!(
        ask["params"]["changes"][0]["path"],
        json!(real(cwd.path()).join("sub/first.txt")),
        "{ask}"
    );
    // The swap, while the user is deciding.
    std::fs::rename(cwd.path().join("sub"), cwd.path().join("sub_moved")).unwrap();
    std::os::unix::fs::symlink(outside.path(), cwd.path().join("sub")).unwrap();
    server
        .respond(ask["id"].clone(), json!({"decision": "approve"}))
        .await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let items = items_of(&events, "fileChange");
    assert_eq!(items[0]["status"], "failed", "{events:?}");
    assert_eq!(entries(outside.path()), Vec::<String>::new());
    assert!(
        told_model(&upstream, "call_1")
            .await
            .starts_with("apply_patch failed"),
    );
}

/// Under `never`, another process keeps exchanging `sub/` with a symlink to a directory outside
/// (`renameat2(RENAME_EXCHANGE)`) while 60 patches add files under `sub/`: none lands outside.
#[tokio::test]
async fn patches_racing_a_symlink_exchange_never_write_outside() {
    let upstream = MockServer::start().await;
    let calls: Vec<(String, &str, Value)> = (0..60)
        .map(|n| {
            (
                format!("call_{n}"),
                "apply_patch",
                add_file(&format!("sub/p{n}.txt"), "x"),
            )
        })
        .collect();
    mount_calls(&upstream, &calls).await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let outside = agent_server_tests::outside_temp_dir();
    let ws = real(cwd.path());
    std::fs::create_dir(ws.join("sub")).unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.join("swap")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, ws) = (stop.clone(), ws.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    ws.join("sub"),
                    rustix::fs::CWD,
                    ws.join("swap"),
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .unwrap();
                swaps += 1;
                // About as long as one patch takes, so that checks and writes both see each.
                std::thread::sleep(Duration::from_micros(300));
            }
            swaps
        })
    };
    let (mut server, session) = server_in(&upstream, &ws, "never", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "add sixty").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 20, "the race hardly ran: {swaps} swaps");
    let items = items_of(&events, "fileChange");
    let statuses: Vec<&Value> = items.iter().map(|i| &i["status"]).collect();
    eprintln!("patch outcomes while racing: {statuses:?}");
    assert_eq!(items.len(), 60);
    assert_eq!(entries(outside.path()), Vec::<String>::new());
}

// ---- finding 6: unresolved paths in prompts and symlink-blind session approvals ----

/// Under `onFailure`, a link inside the cwd points outside: the prompt shows the real path,
/// and `approveForSession` does not let a later patch through the link without asking.
#[tokio::test]
async fn prompts_show_real_paths_and_session_approvals_compare_real_paths() {
    let upstream = MockServer::start().await;
    mount_call(
        &upstream,
        "call_1",
        "apply_patch",
        add_file("link/first.txt", "1"),
    )
    .await;
    mount_call(
        &upstream,
        "call_2",
        "apply_patch",
        add_file("link/second.txt", "2"),
    )
    .await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let outside = agent_server_tests::outside_temp_dir();
    let outside_real = real(outside.path());
    std::os::unix::fs::symlink(outside.path(), cwd.path().join("link")).unwrap();
    let (mut server, session) =
        server_in(&upstream, cwd.path(), "onFailure", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "two patches").await;
    let ask = server.next_server_request().await;
    let first = outside_real.join("first.txt").display().to_string();
    assert_eq!(
        (
            ask["params"]["changes"][0]["path"].clone(),
            ask["params"]["reason"].clone()
        ),
        (
            json!(first),
            json!(format!(
                "The patch writes outside what the sandbox allows: {first}"
            ))
        ),
    );
    server
        .respond(ask["id"].clone(), json!({"decision": "approveForSession"}))
        .await;
    // The model's next response asks for the second patch.
    let ask = server.next_server_request().await;
    assert!(outside_real.join("first.txt").exists());
    assert_eq!(
        ask["params"]["changes"][0]["path"],
        json!(outside_real.join("second.txt")),
        "a session approval of the cwd let a write through a link go unasked: {ask}"
    );
    server
        .respond(ask["id"].clone(), json!({"decision": "deny"}))
        .await;
    turn_events(&mut server, &turn).await;
    assert!(!outside_real.join("second.txt").exists());
}
