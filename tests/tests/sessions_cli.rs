//! The command line over the store: `agent-server sessions list|show|export|delete` and
//! `exec --resume`/`--last`, each a real process on a home a server process wrote, against a
//! wiremock upstream.

use std::path::Path;

use agent_server_tests::turns::{api_key_builder, completion, new_session, submit, turn_events};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_message_done, ev_output_text_delta, mount_sse, mount_sse_once,
    responses_requests, responses_usage, sse,
};
use agent_server_tests::{RunOutput, TestServer, run_to_end};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::MockServer;

/// A short text answer `text` from response `id`.
fn answer(id: &str, text: &str) -> String {
    sse([
        ev_created(id),
        ev_output_text_delta("m1", text),
        ev_message_done("m1", text),
        ev_completed(id, responses_usage(10, 0, 2, 0)),
    ])
}

/// An upstream answering "answer 1", "answer 2", … to successive requests.
async fn counting_upstream(n: usize) -> MockServer {
    let upstream = MockServer::start().await;
    for i in 1..=n {
        mount_sse_once(
            &upstream,
            answer(&format!("resp_{i}"), &format!("answer {i}")),
        )
        .await;
    }
    mount_sse(&upstream, answer("resp_last", "no more answers")).await;
    upstream
}

async fn spawn_in(upstream: &MockServer, home: &Path) -> TestServer {
    api_key_builder(upstream).home(home).spawn().await
}

async fn result(server: &mut TestServer, method: &str, params: Value) -> Value {
    let reply = server.request_raw(method, Some(params)).await;
    match reply.get("result") {
        Some(result) => result.clone(),
        None => panic!("{method} failed: {reply}"),
    }
}

async fn run_turn(server: &mut TestServer, session: &str, text: &str) {
    let turn = submit(server, session, text).await;
    let events = turn_events(server, &turn).await;
    assert_eq!(completion(&events)["status"], "completed");
}

async fn stop(mut server: TestServer) {
    server.close_stdin().await;
    assert!(server.wait_exit().await.success());
}

/// Runs `agent-server --home HOME ARGS…` to its end, with the upstream's address and a key.
async fn cli(home: &Path, upstream: &MockServer, args: &[&str]) -> RunOutput {
    let home_arg = home.display().to_string();
    let mut all = vec!["--home", home_arg.as_str()];
    all.extend_from_slice(args);
    let base = format!("{}/v1", upstream.uri());
    run_to_end(
        home,
        &all,
        &[
            ("OPENAI_API_KEY", "test"),
            ("OPENAI_BASE_URL", base.as_str()),
        ],
        b"",
    )
    .await
}

/// The stored view of the home, as a fresh process that has nothing loaded sees it.
async fn stored(upstream: &MockServer, home: &Path, params: Value) -> Value {
    let mut reader = spawn_in(upstream, home).await;
    let list = result(&mut reader, "session/list", params).await;
    stop(reader).await;
    list
}

async fn read(upstream: &MockServer, home: &Path, session: &str) -> Value {
    let mut reader = spawn_in(upstream, home).await;
    let read = result(&mut reader, "session/read", json!({"sessionId": session})).await;
    stop(reader).await;
    read
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The session id `exec` printed on stderr.
fn printed_session_id(out: &RunOutput) -> String {
    let ids: Vec<&str> = out
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("session id: "))
        .collect();
    assert_eq!(ids.len(), 1, "stderr: {}", out.stderr);
    ids[0].to_string()
}

/// Three stored sessions in `home`: two with a turn each (in `cwd_a`, then in `cwd_b`) and an
/// archived one. Returns their ids in that order.
async fn three_sessions(
    upstream: &MockServer,
    home: &Path,
    cwd_a: &Path,
    cwd_b: &Path,
) -> [String; 3] {
    let mut server = spawn_in(upstream, home).await;
    let a = new_session(&mut server, json!({"cwd": cwd_a})).await;
    run_turn(&mut server, &a, "Explain the build\nplease").await;
    let b = new_session(&mut server, json!({"cwd": cwd_b})).await;
    run_turn(&mut server, &b, "Fix the tests").await;
    let c = new_session(&mut server, json!({"cwd": cwd_a})).await;
    run_turn(&mut server, &c, "Old idea").await;
    result(&mut server, "session/archive", json!({"sessionId": c})).await;
    stop(server).await;
    [a, b, c]
}

fn list_line(session: &Value) -> String {
    format!(
        "{}  {}  {:>4} turns  {}{}  ({})",
        session["sessionId"].as_str().unwrap_or_default(),
        session["updatedAt"].as_str().unwrap_or_default(),
        session["turnCount"].as_u64().unwrap_or_default(),
        session["title"].as_str().unwrap_or_default(),
        if session["archived"] == true {
            "  [archived]"
        } else {
            ""
        },
        session["cwd"].as_str().unwrap_or_default()
    )
}

#[tokio::test]
async fn sessions_list_prints_the_store_newest_first_and_all_adds_the_archived() {
    let upstream = counting_upstream(3).await;
    let home = tempfile::tempdir().unwrap();
    let (cwd_a, cwd_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let [a, b, c] = three_sessions(&upstream, home.path(), cwd_a.path(), cwd_b.path()).await;

    let visible = stored(&upstream, home.path(), json!({"stored": true})).await;
    let archived = stored(
        &upstream,
        home.path(),
        json!({"stored": true, "archived": true}),
    )
    .await;
    let ids = |list: &Value| -> Vec<String> {
        list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["sessionId"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&visible), [b.clone(), a.clone()]);
    assert_eq!(ids(&archived), std::slice::from_ref(&c));

    let out = cli(home.path(), &upstream, &["sessions", "list", "--json"]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        json_lines(&out.stdout),
        visible["sessions"].as_array().unwrap().clone()
    );

    let out = cli(
        home.path(),
        &upstream,
        &["sessions", "list", "--json", "--all"],
    )
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    let mut everything = visible["sessions"].as_array().unwrap().clone();
    everything.extend(archived["sessions"].as_array().unwrap().iter().cloned());
    assert_eq!(json_lines(&out.stdout), everything);

    let out = cli(home.path(), &upstream, &["sessions", "list"]).await;
    assert!(out.status.success(), "{}", out.stderr);
    let expected: Vec<String> = visible["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(list_line)
        .collect();
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), expected);
    assert!(
        expected[1].contains("   1 turns  Explain the build  ("),
        "{expected:?}"
    );

    let out = cli(home.path(), &upstream, &["sessions", "list", "--all"]).await;
    let expected: Vec<String> = everything.iter().map(list_line).collect();
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), expected);
    assert!(expected[2].ends_with(&format!(
        "Old idea  [archived]  ({})",
        cwd_a.path().display()
    )));

    // An empty home lists nothing, and says nothing.
    let empty = tempfile::tempdir().unwrap();
    let out = cli(empty.path(), &upstream, &["sessions", "list"]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
}

#[tokio::test]
async fn sessions_show_and_export_print_what_session_read_returns() {
    let upstream = counting_upstream(2).await;
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut server = spawn_in(&upstream, home.path()).await;
    let session = new_session(&mut server, json!({"cwd": cwd.path()})).await;
    run_turn(&mut server, &session, "Explain the build\nplease").await;
    run_turn(&mut server, &session, "and the tests?").await;
    stop(server).await;
    let read = read(&upstream, home.path(), &session).await;

    let out = cli(home.path(), &upstream, &["sessions", "export", &session]).await;
    assert!(out.status.success(), "{}", out.stderr);
    let mut expected = vec![read["session"].clone()];
    expected.extend(read["turns"].as_array().unwrap().iter().cloned());
    assert_eq!(json_lines(&out.stdout), expected);
    assert_eq!(expected.len(), 3);

    let out = cli(home.path(), &upstream, &["sessions", "show", &session]).await;
    assert!(out.status.success(), "{}", out.stderr);
    let info = &read["session"];
    let turn = |i: usize| read["turns"][i]["turnId"].as_str().unwrap().to_string();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        vec![
            format!("session {session}: Explain the build"),
            format!(
                "cwd {}, model {}, updated {}",
                cwd.path().display(),
                info["model"].as_str().unwrap(),
                info["updatedAt"].as_str().unwrap()
            ),
            format!("── turn {} (Completed)", turn(0)),
            "user: Explain the build".to_string(),
            "please".to_string(),
            "assistant: answer 1".to_string(),
            format!("── turn {} (Completed)", turn(1)),
            "user: and the tests?".to_string(),
            "assistant: answer 2".to_string(),
        ]
    );
}

#[tokio::test]
async fn sessions_delete_removes_a_session_for_good_and_refuses_one_in_use() {
    let upstream = counting_upstream(3).await;
    let home = tempfile::tempdir().unwrap();
    let (cwd_a, cwd_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let [a, b, c] = three_sessions(&upstream, home.path(), cwd_a.path(), cwd_b.path()).await;
    let lock = |id: &str| home.path().join("sessions").join(format!("{id}.lock"));
    assert!(lock(&a).exists());

    let out = cli(home.path(), &upstream, &["sessions", "delete", &a]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
    assert!(!lock(&a).exists());
    let mut server = spawn_in(&upstream, home.path()).await;
    let reply = server
        .request_raw("session/read", Some(json!({"sessionId": a})))
        .await;
    assert_eq!(reply["error"]["data"]["kind"], "sessionNotFound", "{reply}");
    // The others are untouched (the archived one too).
    let listed = result(
        &mut server,
        "session/list",
        json!({"stored": true, "archived": true}),
    )
    .await;
    assert_eq!(listed["sessions"][0]["sessionId"], json!(c));

    // A session loaded by a live process is refused, and stays.
    result(&mut server, "session/resume", json!({"sessionId": b})).await;
    let out = cli(home.path(), &upstream, &["sessions", "delete", &b]).await;
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains(&format!(
            "is loaded by another agent-server process (pid {})",
            server.pid()
        )),
        "{}",
        out.stderr
    );
    let still = result(&mut server, "session/read", json!({"sessionId": b})).await;
    assert_eq!(still["turns"].as_array().unwrap().len(), 1);
    stop(server).await;

    // Once that process has gone, the delete goes through.
    let out = cli(home.path(), &upstream, &["sessions", "delete", &b]).await;
    assert!(out.status.success(), "{}", out.stderr);
    let left = stored(&upstream, home.path(), json!({"stored": true})).await;
    assert_eq!(left["sessions"], json!([]));
}

#[tokio::test]
async fn unknown_and_garbled_ids_fail_with_status_1_and_a_message_and_change_nothing() {
    let upstream = counting_upstream(3).await;
    let home = tempfile::tempdir().unwrap();
    let (cwd_a, cwd_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    three_sessions(&upstream, home.path(), cwd_a.path(), cwd_b.path()).await;
    let db = home.path().join("sessions").join("sessions.db");
    let before = stored(&upstream, home.path(), json!({"stored": true})).await;
    for id in ["0b0e5b8a-8a43-4f0e-9d55-3f0e2b7c9a11", "../sessions.db", ""] {
        for command in ["show", "export", "delete"] {
            let out = cli(home.path(), &upstream, &["sessions", command, id]).await;
            assert_eq!(out.status.code(), Some(1), "{command} {id}: {}", out.stderr);
            assert_eq!(out.stdout, "", "{command} {id}");
            assert_eq!(
                out.stderr,
                format!(
                    "agent-server sessions: no stored session `{id}`; \
                     `agent-server sessions list --all` shows the stored sessions\n"
                ),
                "{command} {id}"
            );
        }
    }
    assert!(db.is_file());
    assert_eq!(
        stored(&upstream, home.path(), json!({"stored": true})).await,
        before
    );
}

#[tokio::test]
async fn exec_prints_the_session_id_and_resume_and_last_continue_the_stored_conversation() {
    let upstream = counting_upstream(4).await;
    let home = tempfile::tempdir().unwrap();
    let (cwd_a, cwd_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (dir_a, dir_b) = (
        cwd_a.path().display().to_string(),
        cwd_b.path().display().to_string(),
    );

    let out = cli(
        home.path(),
        &upstream,
        &["exec", "--cd", &dir_a, "first question"],
    )
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("assistant: answer 1"), "{}", out.stdout);
    let first = printed_session_id(&out);
    assert!(!out.stdout.contains(&first), "the id goes to stderr only");

    // A newer session in another directory, which `--last` in the first must not pick.
    let out = cli(
        home.path(),
        &upstream,
        &["exec", "--cd", &dir_b, "elsewhere"],
    )
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    let other = printed_session_id(&out);
    assert_ne!(other, first);

    let out = cli(
        home.path(),
        &upstream,
        &["exec", "--resume", &first, "second question"],
    )
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("assistant: answer 3"), "{}", out.stdout);
    assert_eq!(printed_session_id(&out), first);

    // `--last` finds the directory however it is spelled.
    std::fs::create_dir(cwd_a.path().join("sub")).unwrap();
    let spelled = format!("{dir_a}/sub/..");
    let out = cli(
        home.path(),
        &upstream,
        &["exec", "--last", "--cd", &spelled, "third question"],
    )
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(printed_session_id(&out), first);

    // The store has the three turns, and the last request carried the whole conversation.
    let read = read(&upstream, home.path(), &first).await;
    let inputs: Vec<&Value> = read["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["input"][0]["text"])
        .collect();
    assert_eq!(
        inputs,
        [
            &json!("first question"),
            &json!("second question"),
            &json!("third question")
        ]
    );
    assert_eq!(read["session"]["cwd"], json!(dir_a));
    let requests = responses_requests(&upstream).await;
    let texts: Vec<String> = requests[3]["input"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .map(|i| {
            i["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .filter(|t| !t.starts_with('<') && !t.starts_with('#'))
        .collect();
    assert_eq!(
        texts,
        [
            "first question",
            "answer 1",
            "second question",
            "answer 3",
            "third question"
        ]
    );
    let other_read = read_turn_count(&upstream, home.path(), &other).await;
    assert_eq!(other_read, 1);
}

async fn read_turn_count(upstream: &MockServer, home: &Path, session: &str) -> usize {
    read(upstream, home, session).await["turns"]
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test]
async fn exec_resume_and_last_fail_clearly_when_there_is_nothing_to_continue() {
    let upstream = counting_upstream(1).await;
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let dir = cwd.path().display().to_string();

    let out = cli(
        home.path(),
        &upstream,
        &["exec", "--last", "--cd", &dir, "hi"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "no stored session in {dir}; run exec without --last to start one"
        )),
        "{}",
        out.stderr
    );

    let unknown = "0b0e5b8a-8a43-4f0e-9d55-3f0e2b7c9a11";
    let out = cli(home.path(), &upstream, &["exec", "--resume", unknown, "hi"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains(unknown), "{}", out.stderr);

    let out = cli(
        home.path(),
        &upstream,
        &["exec", "--resume", unknown, "--last", "hi"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
    // None of these reached the model.
    assert_eq!(responses_requests(&upstream).await.len(), 0);

    // A session another live process has loaded cannot be continued; the error says so.
    let mut server = spawn_in(&upstream, home.path()).await;
    let session = new_session(&mut server, json!({"cwd": cwd.path()})).await;
    let out = cli(
        home.path(),
        &upstream,
        &["exec", "--resume", &session, "hi"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    let in_use = format!(
        "is loaded by another agent-server process (pid {})",
        server.pid()
    );
    assert!(out.stderr.contains(&in_use), "{}", out.stderr);
    let out = cli(
        home.path(),
        &upstream,
        &["exec", "--last", "--cd", &dir, "hi"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains(&in_use), "{}", out.stderr);
    assert_eq!(responses_requests(&upstream).await.len(), 0);
    stop(server).await;
}
