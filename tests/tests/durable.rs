//! Section 8 of the contract end to end: stored sessions outliving their process, two
//! processes on one home, `kill -9` mid-stream and mid-command, resume, fork, list, read,
//! archive, delete, titles, ephemeral sessions, and the store's faults.

use std::path::Path;
use std::time::Duration;

use agent_server_schema::methods::{
    ArchiveSession, CloseSession, DeleteSession, ForkSession, ListSessions, Method, ReadSession,
    ResumeSession, SetSessionTitle, UnarchiveSession,
};
use agent_server_tests::replies::{kind_error, redact};
use agent_server_tests::turns::{api_key_builder, completion, new_session, submit, turn_events};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_function_call, ev_message_done, ev_output_text_delta, mount_sse,
    mount_sse_once, responses_requests, responses_usage, sse, sse_response,
};
use agent_server_tests::{SIGKILL, TestServer, fixture};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer};

/// A short text answer `text` from response `id`.
fn answer(id: &str, text: &str) -> String {
    sse([
        ev_created(id),
        message_added("m1"),
        ev_output_text_delta("m1", text),
        ev_message_done("m1", text),
        ev_completed(id, responses_usage(10, 0, 2, 0)),
    ])
}

fn message_added(item_id: &str) -> Value {
    json!({
        "type": "response.output_item.added", "output_index": 0,
        "item": {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []},
    })
}

fn user(text: &str) -> Value {
    json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
}

fn assistant(text: &str) -> Value {
    json!({"type": "message", "role": "assistant",
           "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]})
}

fn is_context(item: &Value) -> bool {
    let text = item["content"][0]["text"].as_str().unwrap_or_default();
    text.starts_with("<environment_context>") || text.starts_with("# AGENTS.md instructions")
}

/// A request's input without the context messages the server opens a conversation with,
/// checking they were sent exactly once (a resumed session does not send them again).
fn conversation(request: &Value) -> Vec<Value> {
    let input = request["input"].as_array().cloned().unwrap_or_default();
    let context = input.iter().filter(|i| is_context(i)).count();
    assert_eq!(context, 1, "one environment message in {input:?}");
    input.into_iter().filter(|i| !is_context(i)).collect()
}

/// An upstream answering every request with `text_answer.sse`.
async fn hello_upstream() -> MockServer {
    let upstream = MockServer::start().await;
    mount_sse(&upstream, fixture("text_answer.sse")).await;
    upstream
}

async fn spawn_in(upstream: &MockServer, home: &Path) -> TestServer {
    api_key_builder(upstream).home(home).spawn().await
}

/// Runs one turn of `text` and returns its events.
async fn run_turn(server: &mut TestServer, session: &str, text: &str) -> Vec<Value> {
    let turn = submit(server, session, text).await;
    turn_events(server, &turn).await
}

/// Calls `M` with `params` (checked against its params type first) and returns its result as
/// JSON, so the assertions below read the wire shape.
async fn result<M: Method>(server: &mut TestServer, params: Value) -> Value {
    let typed: M::Params = serde_json::from_value(params.clone())
        .unwrap_or_else(|err| panic!("bad params for {}: {err}: {params}", M::NAME));
    match server.request::<M>(typed).await {
        Ok(result) => serde_json::to_value(result)
            .unwrap_or_else(|err| panic!("{} result not JSON: {err}", M::NAME)),
        Err(err) => panic!("{} failed: {err:?}", M::NAME),
    }
}

/// Stops a server by closing its input and waits for it to exit.
async fn stop(mut server: TestServer) {
    server.close_stdin().await;
    assert!(server.wait_exit().await.success());
}

async fn kill(mut server: TestServer) {
    server.kill_signal(SIGKILL);
    server.wait_exit().await;
}

fn error_kind(reply: &Value) -> (i64, String) {
    (
        reply["error"]["code"].as_i64().unwrap_or_default(),
        reply["error"]["data"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test]
async fn a_session_outlives_its_process_and_resumes_where_it_stopped() {
    let upstream = hello_upstream().await;
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut first = spawn_in(&upstream, home.path()).await;
    let session = new_session(&mut first, json!({"cwd": cwd.path()})).await;
    let events = run_turn(&mut first, &session, "Explain the build\nin detail").await;
    let last_seq = events.last().unwrap()["seq"].as_u64().unwrap();
    stop(first).await;

    let mut second = spawn_in(&upstream, home.path()).await;
    let listed = result::<ListSessions>(&mut second, json!({"stored": true})).await;
    let shown = &listed["sessions"][0];
    assert_eq!(
        (
            &shown["sessionId"],
            &shown["title"],
            &shown["turnCount"],
            &shown["loaded"],
            &shown["status"]
        ),
        (
            &json!(session),
            &json!("Explain the build"),
            &json!(1),
            &json!(false),
            &json!("idle")
        )
    );
    assert_eq!(listed["nextCursor"], Value::Null);
    let read = result::<ReadSession>(&mut second, json!({"sessionId": session})).await;
    let turn = &read["turns"][0];
    assert_eq!(turn["status"], "completed");
    assert_eq!(
        turn["input"],
        json!([{"type": "text", "text": "Explain the build\nin detail"}])
    );
    let completed: Vec<Value> = events
        .iter()
        .filter(|e| e["event"]["type"] == "itemCompleted")
        .map(|e| e["event"]["item"].clone())
        .collect();
    assert_eq!(turn["items"], json!(completed));
    assert_eq!(turn["usage"], completion(&events)["usage"]);
    let without_turns =
        result::<ReadSession>(&mut second, json!({"sessionId": session, "turns": false})).await;
    assert_eq!(without_turns["turns"], json!([]));

    // Not loaded here: a submit says to resume it.
    let reply = second
        .request_raw(
            "session/submit",
            Some(json!({"sessionId": session, "text": "x"})),
        )
        .await;
    assert_eq!(error_kind(&reply), (-32602, "sessionNotFound".into()));
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session/resume"),
        "{reply}"
    );

    let resumed = result::<ResumeSession>(&mut second, json!({"sessionId": session})).await;
    assert_eq!(resumed["turns"], read["turns"]);
    assert_eq!(resumed["session"]["loaded"], true);
    let again = result::<ResumeSession>(&mut second, json!({"sessionId": session})).await;
    assert_eq!(again["session"]["sessionId"], json!(session));
    let events = run_turn(&mut second, &session, "and now?").await;
    assert_eq!(events[0]["seq"], json!(last_seq + 1));
    let requests = responses_requests(&upstream).await;
    let input = conversation(&requests[1]);
    assert_eq!(input[0], user("Explain the build\nin detail"));
    assert_eq!(
        input[1]["encrypted_content"],
        "gAAAAABo_ENCRYPTED_REASONING_BLOB=="
    );
    assert_eq!(input[3], user("and now?"));
    assert_eq!(input.len(), 4);
}

/// The request bodies with what differs between two sessions by design (the session id in
/// `prompt_cache_key`, the wall time of a command) made equal.
fn comparable(mut bodies: Vec<Value>) -> Vec<Value> {
    for body in &mut bodies {
        body["prompt_cache_key"] = json!("<session>");
        let items = body["input"].as_array_mut();
        for item in items.into_iter().flatten() {
            if let Some(output) = item["output"].as_str() {
                let stable: Vec<&str> = output
                    .lines()
                    .filter(|l| !l.starts_with("Wall time:"))
                    .collect();
                item["output"] = json!(stable.join("\n"));
            }
        }
    }
    bodies
}

async fn tool_then_answer_upstream() -> MockServer {
    let upstream = MockServer::start().await;
    mount_sse_once(&upstream, fixture("shell_call.sse")).await;
    mount_sse_once(&upstream, fixture("after_shell_call.sse")).await;
    mount_sse(&upstream, fixture("text_answer.sse")).await;
    upstream
}

#[tokio::test]
async fn a_resumed_conversation_sends_upstream_exactly_what_an_uninterrupted_one_does() {
    let cwd = tempfile::tempdir().unwrap();
    let settings = json!({"cwd": cwd.path(), "approvalPolicy": "never"});

    let straight = tool_then_answer_upstream().await;
    let mut server = api_key_builder(&straight).spawn().await;
    let session = new_session(&mut server, settings.clone()).await;
    run_turn(&mut server, &session, "list the files").await;
    run_turn(&mut server, &session, "thanks").await;
    stop(server).await;

    let resumed = tool_then_answer_upstream().await;
    let home = tempfile::tempdir().unwrap();
    let mut first = spawn_in(&resumed, home.path()).await;
    let session = new_session(&mut first, settings).await;
    run_turn(&mut first, &session, "list the files").await;
    stop(first).await;
    let mut second = spawn_in(&resumed, home.path()).await;
    result::<ResumeSession>(&mut second, json!({"sessionId": session})).await;
    run_turn(&mut second, &session, "thanks").await;

    let expected = comparable(responses_requests(&straight).await);
    let got = comparable(responses_requests(&resumed).await);
    assert_eq!(got.len(), 3);
    assert_eq!(got, expected);
    // The last request carries the reasoning, the call and its output of the first turn.
    let types: Vec<&str> = got[2]["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert!(is_context(&got[2]["input"][0]));
    assert_eq!(
        types,
        [
            "message",
            "message",
            "reasoning",
            "function_call",
            "function_call_output",
            "message",
            "message"
        ]
    );
}

#[tokio::test]
async fn two_processes_share_a_home_and_a_session_is_loaded_by_one_at_a_time() {
    let upstream = hello_upstream().await;
    let home = tempfile::tempdir().unwrap();
    let mut a = spawn_in(&upstream, home.path()).await;
    let session = new_session(&mut a, json!({})).await;
    run_turn(&mut a, &session, "hello from A").await;

    let mut b = spawn_in(&upstream, home.path()).await;
    let listed = result::<ListSessions>(&mut b, json!({"stored": true})).await;
    assert_eq!(listed["sessions"][0]["sessionId"], json!(session));
    assert_eq!(listed["sessions"][0]["loaded"], false);
    let read = result::<ReadSession>(&mut b, json!({"sessionId": session})).await;
    assert_eq!(read["turns"][0]["status"], "completed");
    for method in ["session/resume", "session/archive", "session/delete"] {
        let reply = b
            .request_raw(method, Some(json!({"sessionId": session})))
            .await;
        assert_eq!(
            reply["error"]["data"],
            json!({"kind": "sessionInUse", "pid": a.pid()}),
            "{method}: {reply}"
        );
        assert_eq!(reply["error"]["code"], -32002);
    }
    // A closes it: B may load it now, and continues the conversation.
    result::<CloseSession>(&mut a, json!({"sessionId": session})).await;
    result::<ResumeSession>(&mut b, json!({"sessionId": session})).await;
    let events = run_turn(&mut b, &session, "hello from B").await;
    assert_eq!(completion(&events)["status"], "completed");
    let reply = a
        .request_raw("session/resume", Some(json!({"sessionId": session})))
        .await;
    assert_eq!(
        reply["error"]["data"],
        json!({"kind": "sessionInUse", "pid": b.pid()})
    );

    // B dies without a word: its lease goes with it, and A takes the session over at once.
    kill(b).await;
    let resumed = result::<ResumeSession>(&mut a, json!({"sessionId": session})).await;
    assert_eq!(resumed["turns"].as_array().unwrap().len(), 2);
    let events = run_turn(&mut a, &session, "A again").await;
    assert_eq!(completion(&events)["status"], "completed");
}

#[tokio::test]
async fn kill_9_mid_stream_keeps_completed_items_and_the_turn_reads_interrupted() {
    let upstream = MockServer::start().await;
    // The stream ends after a finished message but before `response.completed`; the retry
    // never answers.
    mount_sse_once(
        &upstream,
        sse([
            ev_created("resp_1"),
            message_added("m1"),
            ev_output_text_delta("m1", "partial answer"),
            ev_message_done("m1", "partial answer"),
        ]),
    )
    .await;
    Mock::given(method("POST"))
        .and(path_regex(r"/responses$"))
        .respond_with(sse_response(answer("resp_late", "late")).set_delay(Duration::from_secs(60)))
        .up_to_n_times(1)
        .mount(&upstream)
        .await;
    mount_sse(&upstream, answer("resp_2", "recovered")).await;
    let home = tempfile::tempdir().unwrap();
    let mut first = spawn_in(&upstream, home.path()).await;
    let session = new_session(&mut first, json!({})).await;
    let turn = submit(&mut first, &session, "start").await;
    let done = first
        .wait_for_notification("session/event", |p| {
            p["turnId"] == turn && p["event"]["type"] == "itemCompleted"
        })
        .await;
    first
        .wait_for_notification("session/event", |p| p["event"]["type"] == "retrying")
        .await;
    // Kill it while the retry is in flight (the request that never answers has arrived).
    while responses_requests(&upstream).await.len() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill(first).await;

    let mut second = spawn_in(&upstream, home.path()).await;
    let read = result::<ReadSession>(&mut second, json!({"sessionId": session})).await;
    let stored = &read["turns"][0];
    assert_eq!(stored["status"], "interrupted");
    assert_eq!(
        stored["error"],
        json!({"kind": "interrupted", "message": "the server stopped during this turn"})
    );
    assert_eq!(stored["items"], json!([done["params"]["event"]["item"]]));
    let listed = result::<ListSessions>(&mut second, json!({"stored": true})).await;
    assert_eq!(listed["sessions"][0]["status"], "idle");
    let resumed = result::<ResumeSession>(&mut second, json!({"sessionId": session})).await;
    assert_eq!(resumed["turns"][0]["status"], "interrupted");
    let events = run_turn(&mut second, &session, "continue").await;
    assert_eq!(completion(&events)["status"], "completed");
    let requests = responses_requests(&upstream).await;
    // The partial response never completed, so the conversation is the two user messages.
    assert_eq!(
        conversation(requests.last().unwrap()),
        [user("start"), user("continue")]
    );
}

#[tokio::test]
async fn kill_9_mid_command_gives_the_dangling_call_an_aborted_output() {
    let upstream = MockServer::start().await;
    let args = json!({"command": ["sleep", "20"]}).to_string();
    mount_sse_once(
        &upstream,
        sse([
            ev_created("resp_1"),
            ev_function_call("call_1", "shell", &args),
            ev_completed("resp_1", responses_usage(10, 0, 2, 0)),
        ]),
    )
    .await;
    mount_sse(&upstream, answer("resp_2", "ok")).await;
    let home = tempfile::tempdir().unwrap();
    let mut first = spawn_in(&upstream, home.path()).await;
    let session = new_session(&mut first, json!({"approvalPolicy": "never"})).await;
    submit(&mut first, &session, "sleep a while").await;
    first
        .wait_for_notification("session/event", |p| {
            p["event"]["type"] == "itemStarted" && p["event"]["item"]["type"] == "commandExecution"
        })
        .await;
    kill(first).await;

    let mut second = spawn_in(&upstream, home.path()).await;
    let resumed = result::<ResumeSession>(&mut second, json!({"sessionId": session})).await;
    assert_eq!(resumed["turns"][0]["status"], "interrupted");
    assert_eq!(resumed["turns"][0]["items"], json!([]));
    let events = run_turn(&mut second, &session, "what happened?").await;
    assert_eq!(completion(&events)["status"], "completed");
    let requests = responses_requests(&upstream).await;
    let input = conversation(requests.last().unwrap());
    assert_eq!(input.len(), 4, "{input:?}");
    assert_eq!(input[1]["type"], "function_call");
    assert_eq!(input[2]["type"], "function_call_output");
    assert_eq!(input[2]["call_id"], "call_1");
    assert!(
        input[2]["output"].as_str().unwrap().starts_with("aborted"),
        "{input:?}"
    );
    assert_eq!(input[3], user("what happened?"));
}

#[tokio::test]
async fn a_fork_at_a_middle_turn_goes_on_apart_from_its_source() {
    let upstream = MockServer::start().await;
    for n in 1..=5 {
        mount_sse_once(
            &upstream,
            answer(&format!("resp_{n}"), &format!("answer {n}")),
        )
        .await;
    }
    let home = tempfile::tempdir().unwrap();
    let mut server = spawn_in(&upstream, home.path()).await;
    let source = new_session(&mut server, json!({})).await;
    let mut turn_ids = Vec::new();
    for text in ["one", "two", "three"] {
        let events = run_turn(&mut server, &source, text).await;
        turn_ids.push(events[0]["turnId"].as_str().unwrap().to_string());
    }
    let fork = result::<ForkSession>(
        &mut server,
        json!({"sessionId": source, "turnId": turn_ids[1], "model": "gpt-5"}),
    )
    .await;
    let forked = fork["session"]["sessionId"].as_str().unwrap().to_string();
    assert_ne!(forked, source);
    assert_eq!(
        fork["session"]["forkedFrom"],
        json!({"sessionId": source, "turnId": turn_ids[1]})
    );
    assert_eq!(
        (&fork["session"]["model"], &fork["session"]["title"]),
        (&json!("gpt-5"), &json!("one"))
    );
    let copied: Vec<&Value> = fork["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["turnId"])
        .collect();
    assert_eq!(copied, [&json!(turn_ids[0]), &json!(turn_ids[1])]);

    let events = run_turn(&mut server, &forked, "four (fork)").await;
    assert_eq!(events[0]["seq"], 1);
    run_turn(&mut server, &source, "four (source)").await;
    let requests = responses_requests(&upstream).await;
    assert_eq!(
        conversation(&requests[3]),
        [
            user("one"),
            assistant("answer 1"),
            user("two"),
            assistant("answer 2"),
            user("four (fork)")
        ]
    );
    assert_eq!(requests[3]["model"], "gpt-5");
    assert_eq!(conversation(&requests[4]).len(), 7);
    let source_read = result::<ReadSession>(&mut server, json!({"sessionId": source})).await;
    assert_eq!(source_read["turns"].as_array().unwrap().len(), 4);
    let reply = server
        .request_raw(
            "session/fork",
            Some(json!({"sessionId": source, "turnId": "no-such-turn"})),
        )
        .await;
    assert_eq!(
        redact(reply.clone()),
        kind_error(reply["id"].clone(), -32602, "turnNotFound")
    );
}

#[tokio::test]
async fn the_store_lists_in_pages_newest_first_with_filters_and_search() {
    let upstream = hello_upstream().await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let (left, right) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ids = Vec::new();
    for (n, cwd) in [
        left.path(),
        right.path(),
        left.path(),
        right.path(),
        left.path(),
    ]
    .iter()
    .enumerate()
    {
        let id = new_session(&mut server, json!({"cwd": cwd})).await;
        run_turn(&mut server, &id, &format!("Task number {n} ÄBC")).await;
        ids.push(id);
    }
    let mut seen = Vec::new();
    let mut params = json!({"stored": true, "limit": 2});
    loop {
        let page = result::<ListSessions>(&mut server, params.clone()).await;
        let sessions = page["sessions"].as_array().unwrap();
        assert!(sessions.len() <= 2);
        seen.extend(
            sessions
                .iter()
                .map(|s| s["sessionId"].as_str().unwrap().to_string()),
        );
        match page["nextCursor"].as_str() {
            Some(cursor) => params["cursor"] = json!(cursor),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let ids_of = |page: &Value| -> Vec<String> {
        page["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["sessionId"].as_str().unwrap().to_string())
            .collect()
    };
    let by_cwd =
        result::<ListSessions>(&mut server, json!({"stored": true, "cwd": right.path()})).await;
    assert_eq!(ids_of(&by_cwd), [ids[3].clone(), ids[1].clone()]);
    let searched = result::<ListSessions>(
        &mut server,
        json!({"stored": true, "search": "NUMBER 2 äbc"}),
    )
    .await;
    assert_eq!(ids_of(&searched), [ids[2].clone()]);
    result::<SetSessionTitle>(
        &mut server,
        json!({"sessionId": ids[0], "title": "Renamed Work"}),
    )
    .await;
    let searched =
        result::<ListSessions>(&mut server, json!({"stored": true, "search": "renamed"})).await;
    assert_eq!(ids_of(&searched), [ids[0].clone()]);
    assert_eq!(searched["sessions"][0]["title"], "Renamed Work");

    for (params, field) in [
        (json!({"stored": true, "cursor": "not-a-cursor"}), "cursor"),
        (json!({"stored": true, "limit": 0}), "limit"),
        (json!({"stored": true, "limit": 501}), "limit"),
    ] {
        let reply = server.request_raw("session/list", Some(params)).await;
        assert_eq!(
            (
                reply["error"]["code"].as_i64(),
                &reply["error"]["data"]["field"]
            ),
            (Some(-32602), &json!(field)),
            "{reply}"
        );
    }
}

#[tokio::test]
async fn archive_hides_unarchive_shows_delete_removes_and_titles_follow_the_rules() {
    let upstream = hello_upstream().await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let long = format!("  {}\nsecond line", "word ".repeat(30));
    let session = new_session(&mut server, json!({})).await;
    run_turn(&mut server, &session, &long).await;
    let read = result::<ReadSession>(&mut server, json!({"sessionId": session})).await;
    let title = read["session"]["title"].as_str().unwrap();
    assert_eq!(title.chars().count(), 80);
    assert!(title.starts_with("word word"));

    // Archiving a loaded session closes it first.
    result::<ArchiveSession>(&mut server, json!({"sessionId": session})).await;
    let loaded = result::<ListSessions>(&mut server, json!({})).await;
    assert_eq!(loaded["sessions"], json!([]));
    let visible = result::<ListSessions>(&mut server, json!({"stored": true})).await;
    assert_eq!(visible["sessions"], json!([]));
    let archived =
        result::<ListSessions>(&mut server, json!({"stored": true, "archived": true})).await;
    assert_eq!(archived["sessions"][0]["archived"], true);
    result::<UnarchiveSession>(&mut server, json!({"sessionId": session})).await;
    let visible = result::<ListSessions>(&mut server, json!({"stored": true})).await;
    assert_eq!(visible["sessions"][0]["sessionId"], json!(session));
    // Resuming an archived session unarchives it.
    result::<ArchiveSession>(&mut server, json!({"sessionId": session})).await;
    let resumed = result::<ResumeSession>(&mut server, json!({"sessionId": session})).await;
    assert_eq!(resumed["session"]["archived"], false);

    let reply = server
        .request_raw(
            "session/setTitle",
            Some(json!({"sessionId": session, "title": "  "})),
        )
        .await;
    assert_eq!(reply["error"]["data"]["field"], "title");
    result::<DeleteSession>(&mut server, json!({"sessionId": session})).await;
    for (method, params) in [
        ("session/read", json!({"sessionId": session})),
        ("session/resume", json!({"sessionId": session})),
        ("session/delete", json!({"sessionId": session})),
        ("session/submit", json!({"sessionId": session, "text": "x"})),
    ] {
        let reply = server.request_raw(method, Some(params)).await;
        assert_eq!(
            error_kind(&reply),
            (-32602, "sessionNotFound".into()),
            "{method}"
        );
    }
    assert!(
        !server
            .home()
            .join("sessions")
            .join(format!("{session}.lock"))
            .exists()
    );
}

#[tokio::test]
async fn ephemeral_sessions_work_as_in_v1_and_are_never_stored() {
    let upstream = hello_upstream().await;
    let home = tempfile::tempdir().unwrap();
    let mut server = spawn_in(&upstream, home.path()).await;
    let session = new_session(&mut server, json!({"ephemeral": true})).await;
    let events = run_turn(&mut server, &session, "secret work").await;
    assert_eq!(completion(&events)["status"], "completed");
    let read = result::<ReadSession>(&mut server, json!({"sessionId": session})).await;
    assert_eq!(
        (&read["session"]["ephemeral"], &read["session"]["title"]),
        (&json!(true), &json!("secret work"))
    );
    assert_eq!(read["turns"][0]["status"], "completed");
    let stored = result::<ListSessions>(&mut server, json!({"stored": true})).await;
    assert_eq!(stored["sessions"], json!([]));
    stop(server).await;

    // `--ephemeral`: a submit without a session makes an ephemeral one.
    let mut server = api_key_builder(&upstream)
        .home(home.path())
        .arg("--ephemeral")
        .spawn()
        .await;
    let reply = server
        .request_raw("session/submit", Some(json!({"text": "more secrets"})))
        .await;
    let turn = reply["result"]["turnId"].as_str().unwrap().to_string();
    turn_events(&mut server, &turn).await;
    let loaded = result::<ListSessions>(&mut server, json!({})).await;
    assert_eq!(loaded["sessions"][0]["ephemeral"], true);
    let stored = result::<ListSessions>(&mut server, json!({"stored": true})).await;
    assert_eq!(stored["sessions"], json!([]));
    let reply = server
        .request_raw("session/resume", Some(json!({"sessionId": session})))
        .await;
    assert_eq!(error_kind(&reply), (-32602, "sessionNotFound".into()));
    let bytes = std::fs::read(home.path().join("sessions").join("sessions.db")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&bytes).contains("secret"));
}

#[tokio::test]
async fn garbled_and_unknown_ids_are_session_not_found_and_touch_no_file() {
    let upstream = hello_upstream().await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let unknown = "0b0e5b8a-8a43-4f0e-9d55-3f0e2b7c9a11";
    for id in [
        "../../etc/passwd",
        "",
        "not a uuid",
        unknown,
        "0B0E5B8A-8A43-4F0E-9D55-3F0E2B7C9A11",
    ] {
        for (method, params) in [
            ("session/read", json!({"sessionId": id})),
            ("session/resume", json!({"sessionId": id})),
            ("session/fork", json!({"sessionId": id})),
            ("session/archive", json!({"sessionId": id})),
            ("session/unarchive", json!({"sessionId": id})),
            ("session/delete", json!({"sessionId": id})),
            ("session/setTitle", json!({"sessionId": id, "title": "t"})),
        ] {
            let reply = server.request_raw(method, Some(params)).await;
            assert_eq!(
                redact(reply.clone()),
                kind_error(reply["id"].clone(), -32602, "sessionNotFound"),
                "{method} {id}"
            );
        }
    }
    let names: Vec<String> = std::fs::read_dir(server.home().join("sessions"))
        .map(|dir| {
            dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        names.iter().all(|n| n.starts_with("sessions.db")),
        "{names:?}"
    );
}

#[tokio::test]
async fn a_corrupt_store_is_named_nothing_is_deleted_and_the_rest_still_works() {
    let upstream = hello_upstream().await;
    let garbage = "this is not a database, but it must survive untouched\n".repeat(200);
    let mut server = api_key_builder(&upstream)
        .home_file("sessions/sessions.db", garbage.clone())
        .spawn()
        .await;
    let init = server.request_raw("initialize", Some(json!({}))).await;
    assert!(init.get("result").is_some(), "{init}");
    let path = server.home().join("sessions").join("sessions.db");
    for (method, params) in [
        ("session/new", json!({})),
        ("session/list", json!({"stored": true})),
        (
            "session/resume",
            json!({"sessionId": "0b0e5b8a-8a43-4f0e-9d55-3f0e2b7c9a11"}),
        ),
    ] {
        let reply = server.request_raw(method, Some(params)).await;
        assert_eq!(
            error_kind(&reply),
            (-32603, "storeUnavailable".into()),
            "{method}: {reply}"
        );
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
    // What needs no store goes on: auth, the loaded list, and ephemeral sessions with turns.
    assert!(
        server
            .request_raw("auth/status", Some(json!({})))
            .await
            .get("result")
            .is_some()
    );
    assert_eq!(
        result::<ListSessions>(&mut server, json!({})).await["sessions"],
        json!([])
    );
    let session = new_session(&mut server, json!({"ephemeral": true})).await;
    let events = run_turn(&mut server, &session, "hi").await;
    assert_eq!(completion(&events)["status"], "completed");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), garbage);
}

#[tokio::test]
async fn a_store_from_a_newer_version_is_refused_and_left_unchanged() {
    let upstream = hello_upstream().await;
    let home = tempfile::tempdir().unwrap();
    let mut server = spawn_in(&upstream, home.path()).await;
    new_session(&mut server, json!({})).await;
    stop(server).await;
    // SQLite keeps `user_version` in the header, 4 bytes big-endian at offset 60.
    let path = home.path().join("sessions").join("sessions.db");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[60..64].copy_from_slice(&999u32.to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let mut server = spawn_in(&upstream, home.path()).await;
    let reply = server
        .request_raw("session/list", Some(json!({"stored": true})))
        .await;
    assert_eq!(error_kind(&reply), (-32603, "storeUnavailable".into()));
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("newer") && message.contains(&path.display().to_string()),
        "{message}"
    );
    stop(server).await;
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[tokio::test]
async fn the_store_is_private_to_its_user() {
    use std::os::unix::fs::PermissionsExt;
    let upstream = hello_upstream().await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    run_turn(&mut server, &session, "hi").await;
    let dir = server.home().join("sessions");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() >= 2, "{files:?}");
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[tokio::test]
async fn per_turn_settings_are_stored_and_a_resumed_session_goes_on_with_them() {
    let upstream = hello_upstream().await;
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let sub = cwd.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let mut first = spawn_in(&upstream, home.path()).await;
    let session = new_session(&mut first, json!({"cwd": cwd.path()})).await;
    let reply = first
        .request_raw(
            "session/submit",
            Some(
                json!({"sessionId": session, "text": "switch", "model": "gpt-5",
                        "reasoningEffort": "high", "approvalPolicy": "never",
                        "sandbox": "readOnly", "cwd": "sub"}),
            ),
        )
        .await;
    let turn = reply["result"]["turnId"].as_str().unwrap().to_string();
    assert_eq!(
        completion(&turn_events(&mut first, &turn).await)["status"],
        "completed"
    );
    stop(first).await;

    let mut second = spawn_in(&upstream, home.path()).await;
    let read = result::<ReadSession>(&mut second, json!({"sessionId": session})).await;
    let expected = (
        json!("gpt-5"),
        json!("never"),
        json!("readOnly"),
        json!(sub.display().to_string()),
    );
    let shown = |s: &Value| {
        (
            s["model"].clone(),
            s["approvalPolicy"].clone(),
            s["sandbox"].clone(),
            s["cwd"].clone(),
        )
    };
    assert_eq!(shown(&read["session"]), expected);
    let resumed = result::<ResumeSession>(&mut second, json!({"sessionId": session})).await;
    assert_eq!(shown(&resumed["session"]), expected);
    let events = run_turn(&mut second, &session, "and on").await;
    assert_eq!(events[0]["event"]["type"], "turnStarted");
    assert_eq!(events[0]["event"]["reasoningEffort"], "high");
    assert_eq!(events[0]["event"]["cwd"], json!(sub.display().to_string()));
    let requests = responses_requests(&upstream).await;
    let last = requests.last().unwrap();
    assert_eq!(last["model"], "gpt-5");
    assert_eq!(last["reasoning"]["effort"], "high");
}
