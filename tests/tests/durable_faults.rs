//! The store's faults end to end: a store that refuses writes in the middle of a turn (a
//! file-size limit, which makes writes fail as a full disk does, and holds when the tests run
//! as root), a home where the store cannot be created (then mended), and two processes
//! creating, listing and deleting on one home at once.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use agent_server_tests::turns::{api_key_builder, completion, new_session, submit, turn_events};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_message_done, ev_output_text_delta, mount_sse, responses_usage,
    sse, sse_response,
};
use agent_server_tests::{TestServer, fixture};
use pretty_assertions::assert_eq;
use rustix::process::{Pid, Resource, Rlimit, getrlimit, prlimit};
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer};

fn answer(id: &str, text: &str) -> String {
    sse([
        ev_created(id),
        ev_output_text_delta("m1", text),
        ev_message_done("m1", text),
        ev_completed(id, responses_usage(10, 0, 2, 0)),
    ])
}

async fn result(server: &mut TestServer, method: &str, params: Value) -> Value {
    let reply = server.request_raw(method, Some(params)).await;
    match reply.get("result") {
        Some(result) => result.clone(),
        None => panic!("{method} failed: {reply}"),
    }
}

async fn stop(mut server: TestServer) {
    server.close_stdin().await;
    assert!(server.wait_exit().await.success());
}

/// Sets the soft file-size limit of `pid` (`None`: back to the hard limit).
fn limit_file_size(pid: u32, bytes: Option<u64>) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .unwrap_or_else(|| panic!("pid {pid} is not a process id"));
    // The server inherited this process's limits; keep the hard one, set the soft one.
    let hard = getrlimit(Resource::Fsize).maximum;
    let new = Rlimit {
        current: bytes.or(hard),
        maximum: hard,
    };
    if let Err(e) = prlimit(Some(pid), Resource::Fsize, new) {
        panic!("cannot set the file-size limit of {pid:?}: {e}");
    }
}

async fn wait_for_requests(upstream: &MockServer, n: usize) {
    for _ in 0..500 {
        if upstream.received_requests().await.unwrap_or_default().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the upstream never received request {n}");
}

#[tokio::test]
async fn a_store_refusing_writes_mid_turn_fails_the_turn_and_the_session_stays_readable() {
    let upstream = MockServer::start().await;
    // The first answer comes late, so the store can be made to refuse writes while the turn
    // waits for it (after the turn's start is stored, before any item is).
    Mock::given(method("POST"))
        .and(path_regex(r"/responses$"))
        .respond_with(
            sse_response(answer("resp_1", "never stored")).set_delay(Duration::from_secs(2)),
        )
        .up_to_n_times(1)
        .mount(&upstream)
        .await;
    mount_sse(&upstream, answer("resp_2", "stored again")).await;
    let home = tempfile::tempdir().unwrap();
    let mut server = api_key_builder(&upstream)
        .home(home.path())
        .ignore_file_size_signal()
        .spawn()
        .await;
    let session = new_session(&mut server, json!({})).await;
    let turn = submit(&mut server, &session, "first").await;
    wait_for_requests(&upstream, 1).await;
    limit_file_size(server.pid(), Some(1));

    let events = turn_events(&mut server, &turn).await;
    let end = completion(&events);
    assert_eq!(end["status"], "failed", "{end}");
    assert_eq!(end["error"]["kind"], "storeUnavailable", "{end}");
    let message = end["error"]["message"].as_str().unwrap();
    let db = home.path().join("sessions").join("sessions.db");
    assert!(
        message.contains(&format!(
            "the session store {} could not be written",
            db.display()
        )) && message.contains("free some space")
            && message.contains("submit again"),
        "{message}"
    );

    // Still serving, and the session reads (here and from another process) while writes fail.
    let read = result(&mut server, "session/read", json!({"sessionId": session})).await;
    assert_eq!(read["turns"][0]["status"], "failed");
    assert_eq!(read["turns"][0]["error"]["kind"], "storeUnavailable");
    let mut other = api_key_builder(&upstream).home(home.path()).spawn().await;
    let seen = result(&mut other, "session/read", json!({"sessionId": session})).await;
    assert_eq!(seen["turns"][0]["input"][0]["text"], "first");
    let listed = result(&mut other, "session/list", json!({"stored": true})).await;
    assert_eq!(listed["sessions"][0]["sessionId"], json!(session));
    stop(other).await;

    // Writes work again: the next turn is stored, and the failed one is stored as failed.
    limit_file_size(server.pid(), None);
    let turn = submit(&mut server, &session, "second").await;
    assert_eq!(
        completion(&turn_events(&mut server, &turn).await)["status"],
        "completed"
    );
    stop(server).await;
    let mut after = api_key_builder(&upstream).home(home.path()).spawn().await;
    let read = result(&mut after, "session/read", json!({"sessionId": session})).await;
    let turns = read["turns"].as_array().unwrap();
    let shown: Vec<(&Value, &Value)> = turns
        .iter()
        .map(|t| (&t["status"], &t["error"]["kind"]))
        .collect();
    assert_eq!(
        shown,
        [
            (&json!("failed"), &json!("storeUnavailable")),
            (&json!("completed"), &Value::Null)
        ]
    );
    assert_eq!(turns[1]["items"][0]["text"], "stored again");
    stop(after).await;
}

#[tokio::test]
async fn a_store_refusing_writes_at_session_new_or_submit_is_a_clear_error_and_nothing_breaks() {
    let upstream = MockServer::start().await;
    mount_sse(&upstream, answer("resp_1", "hello")).await;
    let home = tempfile::tempdir().unwrap();
    let mut server = api_key_builder(&upstream)
        .home(home.path())
        .ignore_file_size_signal()
        .spawn()
        .await;
    let session = new_session(&mut server, json!({})).await;
    limit_file_size(server.pid(), Some(1));
    // The turn's start cannot be stored: the turn ends failed at once, nothing reaches the model.
    let turn = submit(&mut server, &session, "hi").await;
    let end = completion(&turn_events(&mut server, &turn).await);
    assert_eq!(
        (&end["status"], &end["error"]["kind"]),
        (&json!("failed"), &json!("storeUnavailable")),
        "{end}"
    );
    assert_eq!(upstream.received_requests().await.unwrap().len(), 0);
    let reply = server.request_raw("session/new", Some(json!({}))).await;
    assert_eq!(reply["error"]["code"], -32603, "{reply}");
    assert_eq!(
        reply["error"]["data"]["kind"], "storeUnavailable",
        "{reply}"
    );
    // What needs no writes goes on.
    let listed = result(&mut server, "session/list", json!({"stored": true})).await;
    assert_eq!(listed["sessions"][0]["sessionId"], json!(session));
    let ephemeral = new_session(&mut server, json!({"ephemeral": true})).await;
    let turn = submit(&mut server, &ephemeral, "hi").await;
    assert_eq!(
        completion(&turn_events(&mut server, &turn).await)["status"],
        "completed"
    );
    limit_file_size(server.pid(), None);
    let turn = submit(&mut server, &session, "again").await;
    assert_eq!(
        completion(&turn_events(&mut server, &turn).await)["status"],
        "completed"
    );
    stop(server).await;
}

#[tokio::test]
async fn a_home_where_the_store_cannot_be_created_is_named_the_rest_works_and_mending_it_needs_no_restart()
 {
    let upstream = MockServer::start().await;
    mount_sse(&upstream, fixture("text_answer.sse")).await;
    // `sessions` is a file: no user, root included, can create the store under it.
    let mut server = api_key_builder(&upstream)
        .home_file("sessions", "not a directory\n")
        .spawn()
        .await;
    let dir = server.home().join("sessions");
    for (method, params) in [
        ("session/new", json!({})),
        ("session/list", json!({"stored": true})),
    ] {
        let reply = server.request_raw(method, Some(params)).await;
        assert_eq!(
            reply["error"]["data"]["kind"], "storeUnavailable",
            "{reply}"
        );
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("cannot create {}", dir.display()))
                && message.contains("check the home's permissions"),
            "{message}"
        );
    }
    let session = new_session(&mut server, json!({"ephemeral": true})).await;
    let turn = submit(&mut server, &session, "hi").await;
    assert_eq!(
        completion(&turn_events(&mut server, &turn).await)["status"],
        "completed"
    );
    assert_eq!(std::fs::read_to_string(&dir).unwrap(), "not a directory\n");

    // The user moves the file aside: the same process now opens the store, without a restart.
    std::fs::remove_file(&dir).unwrap();
    let stored = new_session(&mut server, json!({})).await;
    let turn = submit(&mut server, &stored, "hi").await;
    assert_eq!(
        completion(&turn_events(&mut server, &turn).await)["status"],
        "completed"
    );
    let list = result(&mut server, "session/list", json!({"stored": true})).await;
    assert_eq!(stored_ids(&list), BTreeSet::from([stored.clone()]));
    assert!(dir.join("sessions.db").is_file());
    stop(server).await;
}

fn results(replies: &[Value]) -> Vec<&Value> {
    replies
        .iter()
        .map(|r| match r.get("result") {
            Some(result) => result,
            None => panic!("an error reply: {r}"),
        })
        .collect()
}

fn stored_ids(list: &Value) -> BTreeSet<String> {
    list["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["sessionId"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Writes both bursts before reading either, so the two processes work on the store at once.
async fn bursts(
    a: &mut TestServer,
    b: &mut TestServer,
    requests_a: &[(&str, Value)],
    requests_b: &[(&str, Value)],
) -> (Vec<Value>, Vec<Value>) {
    let mut ids_a = Vec::new();
    let mut ids_b = Vec::new();
    for i in 0..requests_a.len().max(requests_b.len()) {
        if let Some((method, params)) = requests_a.get(i) {
            ids_a.push(a.send_request(method, Some(params.clone())).await);
        }
        if let Some((method, params)) = requests_b.get(i) {
            ids_b.push(b.send_request(method, Some(params.clone())).await);
        }
    }
    let mut replies_a = Vec::new();
    for id in ids_a {
        replies_a.push(a.wait_for_response(id).await);
    }
    let mut replies_b = Vec::new();
    for id in ids_b {
        replies_b.push(b.wait_for_response(id).await);
    }
    (replies_a, replies_b)
}

fn created(replies: &[Value]) -> Vec<String> {
    replies
        .iter()
        .filter_map(|r| r["result"]["sessionId"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn two_processes_creating_listing_and_deleting_at_once_lose_nothing() {
    let upstream = MockServer::start().await;
    mount_sse(&upstream, answer("resp", "hello")).await;
    let home = tempfile::tempdir().unwrap();
    let mut a = api_key_builder(&upstream).home(home.path()).spawn().await;
    let mut b = api_key_builder(&upstream).home(home.path()).spawn().await;
    const N: usize = 60;
    let mix = |n: usize| -> Vec<(&'static str, Value)> {
        (0..n)
            .flat_map(|_| {
                [
                    ("session/new", json!({})),
                    ("session/list", json!({"stored": true, "limit": 20})),
                ]
            })
            .collect()
    };
    let (replies_a, replies_b) = bursts(&mut a, &mut b, &mix(N), &mix(N)).await;
    results(&replies_a);
    results(&replies_b);
    let (made_a, made_b) = (created(&replies_a), created(&replies_b));
    assert_eq!((made_a.len(), made_b.len()), (N, N));

    // Each deletes half of its own sessions and runs a turn, while the other creates more and
    // lists; deleting a session the other has loaded is refused, as documented.
    let turn_a = made_a[0].clone();
    let mut work_a: Vec<(&str, Value)> = vec![(
        "session/submit",
        json!({"sessionId": turn_a, "text": "busy"}),
    )];
    work_a.extend(
        made_a[N / 2..]
            .iter()
            .map(|id| ("session/delete", json!({"sessionId": id}))),
    );
    work_a.push(("session/delete", json!({"sessionId": made_b[0]})));
    let mut work_b = mix(N / 2);
    work_b.extend(
        made_b[N / 2..]
            .iter()
            .map(|id| ("session/delete", json!({"sessionId": id}))),
    );
    let (replies_a, replies_b) = bursts(&mut a, &mut b, &work_a, &work_b).await;
    let refused = replies_a.last().unwrap();
    assert_eq!(
        refused["error"]["data"],
        json!({"kind": "sessionInUse", "pid": b.pid()}),
        "{refused}"
    );
    results(&replies_a[..replies_a.len() - 1]);
    results(&replies_b);
    let turn = replies_a[0]["result"]["turnId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        completion(&turn_events(&mut a, &turn).await)["status"],
        "completed"
    );
    let more_b = created(&replies_b);
    assert_eq!(more_b.len(), N / 2);

    let mut expected: BTreeSet<String> = made_a[..N / 2].iter().cloned().collect();
    expected.extend(made_b[..N / 2].iter().cloned());
    expected.extend(more_b);
    for server in [&mut a, &mut b] {
        let list = result(
            server,
            "session/list",
            json!({"stored": true, "limit": 500}),
        )
        .await;
        assert_eq!(stored_ids(&list), expected);
        assert_eq!(list["nextCursor"], Value::Null);
    }
    stop(a).await;
    stop(b).await;
    let mut c = api_key_builder(&upstream).home(home.path()).spawn().await;
    let list = result(
        &mut c,
        "session/list",
        json!({"stored": true, "limit": 500}),
    )
    .await;
    assert_eq!(stored_ids(&list), expected);
    let read = result(&mut c, "session/read", json!({"sessionId": turn_a})).await;
    assert_eq!(read["turns"][0]["status"], "completed");
    // Every lock file left belongs to a stored session.
    let locks: BTreeSet<String> = std::fs::read_dir(home.path().join("sessions"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".lock").map(str::to_string)
        })
        .collect();
    assert!(locks.is_subset(&expected), "{locks:?}");
    assert!(Path::new(&home.path().join("sessions/sessions.db")).is_file());
}
