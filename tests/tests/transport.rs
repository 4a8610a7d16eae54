//! Section 1 of the contract, over real pipes: framing (ndjson, CRLF, BOM, blank lines,
//! Content-Length auto-detected or forced), what stdout may carry, ids and the `jsonrpc`
//! member, notifications, batches, pipelining, cancellation, and the child's stdio.

use std::time::Duration;

use agent_server_tests::auth::ChatGptAccount;
use agent_server_tests::replies::{kind_error, ok_reply, redact};
use agent_server_tests::schema::lifecycle::InitializeParams;
use agent_server_tests::schema::methods::{Initialize, Submit};
use agent_server_tests::schema::session::SubmitParams;
use agent_server_tests::turns::{new_session, submit};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_function_call, ev_message_done, function_call_output, mount_sse,
    mount_sse_once, responses_requests, responses_usage, sse,
};
use agent_server_tests::{Framing, TestServer, fixture, run_to_end};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A cheap request whose result in a fresh home is known: `{"sessions":[]}`.
fn list_sessions(id: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "session/list"})
}

fn no_sessions() -> Value {
    json!({"sessions": [], "nextCursor": null})
}

fn line(message: &Value) -> String {
    format!("{message}\n")
}

fn content_length(body: &str) -> String {
    format!("Content-Length: {}\r\n\r\n{body}", body.len())
}

// ---- ndjson framing ----

#[tokio::test]
async fn a_reply_is_one_line_ending_in_lf() {
    let mut server = TestServer::start().await;
    // An id holding a newline and a quote: the reply must escape both to stay on one line.
    let id = json!("line\nbreak \"quoted\"");
    server.send_json(list_sessions(id.clone())).await;
    let reply = server.read_message_raw().await;
    assert_eq!(reply.value, ok_reply(id, no_sessions()));
    assert!(
        !reply.raw.contains('\r'),
        "a reply line must end in a bare \\n: {:?}",
        reply.raw
    );
}

#[tokio::test]
async fn crlf_line_endings_are_accepted() {
    let mut server = TestServer::start().await;
    let input = format!(
        "{}\r\n{}\r\n",
        list_sessions(json!(1)),
        list_sessions(json!(2))
    );
    server.send_raw(input).await;
    assert_eq!(
        server.wait_for_response(1).await,
        ok_reply(1, no_sessions())
    );
    assert_eq!(
        server.wait_for_response(2).await,
        ok_reply(2, no_sessions())
    );
}

#[tokio::test]
async fn a_leading_byte_order_mark_is_accepted() {
    let mut server = TestServer::start().await;
    server
        .send_raw(format!("\u{feff}{}", line(&list_sessions(json!(1)))))
        .await;
    assert_eq!(server.read_message().await, ok_reply(1, no_sessions()));
}

#[tokio::test]
async fn blank_and_whitespace_only_lines_are_skipped_without_a_reply() {
    let mut server = TestServer::start().await;
    let input = format!("\n\n   \n\t \r\n\r\n{}\n \n", list_sessions(json!(1)));
    server.send_raw(input).await;
    assert_eq!(server.read_message().await, ok_reply(1, no_sessions()));
    server.close_stdin().await;
    assert_eq!(server.read_to_end().await, Vec::<Value>::new());
    assert!(server.wait_exit().await.success());
}

#[tokio::test]
async fn bad_input_lines_do_not_swallow_the_line_after_them() {
    let mut server = TestServer::start().await;
    // The bad line and the good one arrive in one write, so a reader that drops its buffer
    // after an error would lose the request.
    server
        .send_raw(format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\n{}",
            line(&list_sessions(json!(2)))
        ))
        .await;
    assert_eq!(
        redact(server.wait_for_response(Value::Null).await),
        kind_error(Value::Null, -32700, "parseError")
    );
    assert_eq!(
        server.wait_for_response(2).await,
        ok_reply(2, no_sessions())
    );
}

// ---- Content-Length framing ----

async fn initialize_framing(server: &mut TestServer) -> Value {
    let reply = server
        .request::<Initialize>(InitializeParams {
            protocol_version: Some(1),
            ..InitializeParams::default()
        })
        .await;
    match reply {
        Ok(result) => json!(result.capabilities.framing),
        Err(error) => panic!("initialize failed: {error:?}"),
    }
}

#[tokio::test]
async fn content_length_framing_is_detected_and_used_for_replies() {
    let mut server = TestServer::builder().content_length().spawn().await;
    // The harness reads replies as Content-Length frames; an ndjson reply would break it.
    assert_eq!(
        initialize_framing(&mut server).await,
        json!("content-length")
    );
    server.send_json(list_sessions(json!(2))).await;
    assert_eq!(server.read_message().await, ok_reply(2, no_sessions()));
}

#[tokio::test]
async fn a_lowercase_content_length_header_is_detected() {
    let mut server = TestServer::builder().content_length().spawn().await;
    let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}).to_string();
    server
        .send_raw(format!("content-length: {}\r\n\r\n{body}", body.len()))
        .await;
    let reply = server.read_message().await;
    assert_eq!(
        reply["result"]["capabilities"]["framing"],
        json!("content-length")
    );
}

#[tokio::test]
async fn content_length_is_detected_after_leading_whitespace() {
    let mut server = TestServer::builder().content_length().spawn().await;
    let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}).to_string();
    server
        .send_raw(format!("\r\n \n{}", content_length(&body)))
        .await;
    let reply = server.read_message().await;
    assert_eq!(
        reply["result"]["capabilities"]["framing"],
        json!("content-length")
    );
}

#[tokio::test]
async fn a_content_type_header_next_to_content_length_is_accepted() {
    let mut server = TestServer::builder().content_length().spawn().await;
    let body = list_sessions(json!(1)).to_string();
    server
        .send_raw(format!(
            "Content-Length: {}\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{body}",
            body.len()
        ))
        .await;
    assert_eq!(server.read_message().await, ok_reply(1, no_sessions()));
}

#[tokio::test]
async fn content_length_messages_can_arrive_back_to_back_in_one_write() {
    let mut server = TestServer::builder().content_length().spawn().await;
    let input = format!(
        "{}{}",
        content_length(&list_sessions(json!(1)).to_string()),
        content_length(&list_sessions(json!(2)).to_string())
    );
    server.send_raw(input).await;
    assert_eq!(
        server.wait_for_response(1).await,
        ok_reply(1, no_sessions())
    );
    assert_eq!(
        server.wait_for_response(2).await,
        ok_reply(2, no_sessions())
    );
}

#[tokio::test]
async fn a_bad_content_length_body_gets_a_parse_error_and_the_next_message_is_served() {
    let mut server = TestServer::builder().content_length().spawn().await;
    server.send_raw(content_length("{not json")).await;
    server.send_json(list_sessions(json!(2))).await;
    assert_eq!(
        redact(server.wait_for_response(Value::Null).await),
        kind_error(Value::Null, -32700, "parseError")
    );
    assert_eq!(
        server.wait_for_response(2).await,
        ok_reply(2, no_sessions())
    );
}

#[tokio::test]
async fn forced_ndjson_treats_a_content_length_line_as_invalid_json() {
    let mut server = TestServer::builder()
        .args(["--framing", "ndjson"])
        .spawn()
        .await;
    let body = list_sessions(json!(1)).to_string();
    // The header line is bad JSON, the empty line is skipped, the body line is a request.
    server
        .send_raw(format!("{}\n", content_length(&body)))
        .await;
    assert_eq!(
        redact(server.wait_for_response(Value::Null).await),
        kind_error(Value::Null, -32700, "parseError")
    );
    assert_eq!(
        server.wait_for_response(1).await,
        ok_reply(1, no_sessions())
    );
}

#[tokio::test]
async fn forced_ndjson_reports_ndjson() {
    let mut server = TestServer::builder()
        .args(["--framing", "ndjson"])
        .spawn()
        .await;
    assert_eq!(initialize_framing(&mut server).await, json!("ndjson"));
}

#[tokio::test]
async fn forced_content_length_is_used_both_ways() {
    let mut server = TestServer::builder()
        .args(["--framing", "content-length"])
        .framing(Framing::ContentLength)
        .spawn()
        .await;
    assert_eq!(
        initialize_framing(&mut server).await,
        json!("content-length")
    );
    server.send_json(list_sessions(json!(2))).await;
    assert_eq!(server.read_message().await, ok_reply(2, no_sessions()));
}

#[tokio::test]
async fn explicit_auto_framing_detects_ndjson() {
    let mut server = TestServer::builder()
        .args(["--framing", "auto"])
        .spawn()
        .await;
    assert_eq!(initialize_framing(&mut server).await, json!("ndjson"));
}

// ---- stdout carries protocol messages only ----

/// One of everything: good requests, bad lines, a batch, an unknown notification.
fn mixed_input() -> String {
    [
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"clientInfo":{"name":"t","version":"1"}}}).to_string(),
        list_sessions(json!(1)).to_string(),
        "{broken".to_owned(),
        json!({"jsonrpc":"2.0","id":2,"method":"no/such/method"}).to_string(),
        json!({"jsonrpc":"2.0","id":3,"method":"auth/status","params":{}}).to_string(),
        json!([list_sessions(json!(4)), {"jsonrpc":"2.0","method":"some/notification"}]).to_string(),
        json!({"jsonrpc":"2.0","method":"some/notification"}).to_string(),
        json!({"jsonrpc":"2.0","id":5,"method":"shutdown"}).to_string(),
    ]
    .join("\n")
        + "\n"
}

/// Every line of `stdout` is a JSON-RPC message (or a batch of them) with `"jsonrpc":"2.0"`.
fn assert_protocol_only(stdout: &str) -> usize {
    let mut count = 0;
    for line in stdout.lines() {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout carried a non-JSON line ({e}): {line:?}"));
        let messages = match &value {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for message in messages {
            assert_eq!(message["jsonrpc"], json!("2.0"), "in {line}");
        }
        count += 1;
    }
    count
}

#[tokio::test]
async fn stdout_carries_only_protocol_messages_at_trace_level() {
    let home = tempfile::tempdir().unwrap();
    let home_arg = home.path().to_str().unwrap();
    let out = run_to_end(
        home.path(),
        &["--home", home_arg, "--log-level", "trace"],
        &[("RUST_LOG", "trace")],
        mixed_input().as_bytes(),
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    // initialize, list, parse error, unknown method, auth/status, the batch, shutdown.
    assert_eq!(assert_protocol_only(&out.stdout), 7, "{}", out.stdout);
    assert!(
        !out.stderr.trim().is_empty(),
        "trace logs should go to stderr"
    );
}

#[tokio::test]
async fn logs_can_go_to_a_file_instead() {
    let home = tempfile::tempdir().unwrap();
    let home_arg = home.path().to_str().unwrap();
    let log = home.path().join("server.log");
    let out = run_to_end(
        home.path(),
        &[
            "--home",
            home_arg,
            "--log-level",
            "trace",
            "--log-file",
            log.to_str().unwrap(),
        ],
        &[],
        mixed_input().as_bytes(),
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(assert_protocol_only(&out.stdout), 7, "{}", out.stdout);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!logged.trim().is_empty(), "nothing was logged to {log:?}");
}

// ---- the jsonrpc member and ids ----

#[tokio::test]
async fn every_reply_carries_jsonrpc_2_0_even_to_messages_without_it() {
    let mut server = TestServer::start().await;
    server
        .send_json(json!({"id": 1, "method": "session/list"}))
        .await;
    server.send_json(json!({"id": 2, "method": "nope"})).await;
    server.send_raw("{oops\n").await;
    assert_eq!(
        server.wait_for_response(1).await,
        ok_reply(1, no_sessions())
    );
    assert_eq!(
        redact(server.wait_for_response(2).await),
        kind_error(2, -32601, "methodNotFound")
    );
    assert_eq!(
        redact(server.wait_for_response(Value::Null).await),
        kind_error(Value::Null, -32700, "parseError")
    );
}

#[tokio::test]
async fn ids_are_echoed_exactly() {
    let mut server = TestServer::start().await;
    let ids = [
        json!(1),
        json!("1"),
        json!(0),
        json!(-7),
        json!(9_007_199_254_740_993_u64),
        json!(u64::MAX),
        json!(""),
        json!("ünïcødé ✓ 🚀"),
        json!("{\"not\":\"an object\"}"),
    ];
    // All in flight at once, so `1` and `"1"` must be told apart by the server.
    for id in &ids {
        server.send_json(list_sessions(id.clone())).await;
    }
    for id in &ids {
        let reply = server.wait_for_response(id.clone()).await;
        assert_eq!(reply, ok_reply(id.clone(), no_sessions()));
    }
}

#[tokio::test]
async fn large_integer_ids_keep_every_digit() {
    let mut server = TestServer::start().await;
    server
        .send_raw("{\"jsonrpc\":\"2.0\",\"id\":18446744073709551615,\"method\":\"session/list\"}\n")
        .await;
    let reply = server.read_message_raw().await;
    assert!(
        reply.raw.contains("\"id\":18446744073709551615"),
        "{}",
        reply.raw
    );
}

// ---- notifications ----

#[tokio::test]
async fn notifications_are_never_answered() {
    let mut server = TestServer::start().await;
    // Unknown, a request method sent as a notification, and one with bad params.
    server
        .send_notification("no/such/notification", Some(json!({})))
        .await;
    server.send_notification("session/list", None).await;
    server
        .send_notification("auth/loginApiKey", Some(json!({"apiKey": 5})))
        .await;
    server.send_json(list_sessions(json!(1))).await;
    assert_eq!(server.read_message().await, ok_reply(1, no_sessions()));
    server.close_stdin().await;
    assert_eq!(server.read_to_end().await, Vec::<Value>::new());
    assert!(server.wait_exit().await.success());
}

#[tokio::test]
async fn a_response_to_no_request_is_not_answered() {
    let mut server = TestServer::start().await;
    server
        .send_json(json!({"jsonrpc": "2.0", "id": "srv-99", "result": {"decision": "approve"}}))
        .await;
    server.send_json(list_sessions(json!(1))).await;
    assert_eq!(server.read_message().await, ok_reply(1, no_sessions()));
    server.close_stdin().await;
    assert_eq!(server.read_to_end().await, Vec::<Value>::new());
}

// ---- batches ----

#[tokio::test]
async fn an_empty_batch_gets_one_invalid_request_object() {
    let mut server = TestServer::start().await;
    server.send_raw("[]\n").await;
    assert_eq!(
        redact(server.read_message().await),
        kind_error(Value::Null, -32600, "invalidRequest")
    );
}

#[tokio::test]
async fn a_mixed_batch_gets_an_array_of_replies_in_request_order() {
    let mut server = TestServer::start().await;
    let batch = json!([
        list_sessions(json!(1)),
        {"jsonrpc": "2.0", "method": "some/notification"},
        {"jsonrpc": "2.0", "id": 2, "method": "no/such/method"},
        5,
        {"jsonrpc": "2.0", "id": "x", "method": "session/list", "params": 7},
        {"jsonrpc": "2.0", "id": 3, "method": "auth/loginApiKey", "params": {"apiKey": 5}},
    ]);
    server.send_json(batch).await;
    assert_eq!(
        redact(server.read_message().await),
        json!([
            ok_reply(1, no_sessions()),
            kind_error(2, -32601, "methodNotFound"),
            kind_error(Value::Null, -32600, "invalidRequest"),
            kind_error("x", -32600, "invalidRequest"),
            agent_server_tests::replies::invalid_params(3, "apiKey"),
        ])
    );
}

#[tokio::test]
async fn a_batch_of_only_notifications_gets_no_reply() {
    let mut server = TestServer::start().await;
    server
        .send_json(json!([
            {"jsonrpc": "2.0", "method": "some/notification"},
            {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 99}},
        ]))
        .await;
    server.send_json(list_sessions(json!(1))).await;
    assert_eq!(server.read_message().await, ok_reply(1, no_sessions()));
    server.close_stdin().await;
    assert_eq!(server.read_to_end().await, Vec::<Value>::new());
}

// ---- pipelining ----

#[tokio::test]
async fn ten_thousand_pipelined_requests_are_all_answered() {
    const COUNT: u64 = 10_000;
    let mut server = TestServer::builder()
        .timeout(Duration::from_secs(120))
        .spawn()
        .await;
    let mut input = String::new();
    for id in 1..=COUNT {
        input.push_str(&format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"auth/status\",\"params\":{{}}}}\n"
        ));
    }
    server.send_raw(input).await;
    let mut seen = vec![false; COUNT as usize + 1];
    let mut first_result = None;
    for _ in 0..COUNT {
        let reply = server.read_message().await;
        let id = reply["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("unexpected reply: {reply}"));
        let Some(result) = reply.get("result") else {
            panic!("request {id} was not served: {reply}");
        };
        let first = first_result.get_or_insert_with(|| result.clone());
        assert_eq!(result, first);
        assert!(!seen[id as usize], "two replies for id {id}");
        seen[id as usize] = true;
    }
    assert!(seen[1..].iter().all(|s| *s));
}

// ---- concurrency and ordering ----

#[tokio::test]
async fn a_slow_request_does_not_hold_up_the_next_one() {
    let (mut server, issuer) = server_with_slow_refresh().await;
    let slow = server
        .send_request("auth/status", Some(json!({"refreshToken": true})))
        .await;
    wait_until_requested(&issuer, "/oauth/token").await;
    server.send_json(list_sessions(json!("fast"))).await;
    // The slow reply cannot come for 30 s, so the first message must be the fast one.
    assert_eq!(server.read_message().await, ok_reply("fast", no_sessions()));
    server
        .send_notification("$/cancelRequest", Some(json!({ "id": slow })))
        .await;
}

#[tokio::test]
async fn session_events_arrive_in_seq_order() {
    let upstream = MockServer::start().await;
    mount_sse(&upstream, fixture("text_answer.sse")).await;
    let mut server = TestServer::builder()
        .env("OPENAI_API_KEY", "sk-test")
        .env("OPENAI_BASE_URL", upstream.uri())
        .spawn()
        .await;
    let submitted = server
        .request::<Submit>(SubmitParams {
            text: Some("say hello".into()),
            ..SubmitParams::default()
        })
        .await
        .unwrap_or_else(|e| panic!("session/submit failed: {e:?}"));
    let session_id = json!(submitted.session_id);
    let mut events = Vec::new();
    loop {
        let message = server
            .wait_for_notification("session/event", |_| true)
            .await;
        let params = message["params"].clone();
        assert_eq!(params["sessionId"], session_id, "{params}");
        let last = params["event"]["type"] == "turnCompleted";
        events.push(params);
        if last {
            break;
        }
    }
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected, "{events:#?}");
    assert_eq!(events[0]["event"]["type"], json!("turnStarted"));
    let completed = &events[events.len() - 1]["event"];
    assert_eq!(
        (&completed["status"], &completed["lastAgentMessage"]),
        (&json!("completed"), &json!("Hello there!"))
    );
}

// ---- cancellation ----

/// A server whose `auth/status {"refreshToken":true}` hangs: its issuer answers the token
/// refresh only after 30 s.
async fn server_with_slow_refresh() -> (TestServer, MockServer) {
    let issuer = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(30))
                .set_body_json(json!({"access_token": "late", "id_token": "late"})),
        )
        .mount(&issuer)
        .await;
    let server = TestServer::builder()
        .env("AGENT_SERVER_AUTH_ISSUER", issuer.uri())
        .home_file("auth.json", ChatGptAccount::default().fresh_auth_json())
        .spawn()
        .await;
    (server, issuer)
}

/// Waits until the mock has seen a request to `path` (the slow request is really in flight).
async fn wait_until_requested(mock: &MockServer, path: &str) {
    let deadline = tokio::time::Instant::now() + agent_server_tests::DEFAULT_TIMEOUT;
    loop {
        let requests = mock.received_requests().await.unwrap_or_default();
        if requests.iter().any(|r| r.url.path() == path) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("the server never called {path}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn cancel_slow_request(cancel: impl Fn(Value) -> (&'static str, Value)) {
    let (mut server, issuer) = server_with_slow_refresh().await;
    let id = server
        .send_request("auth/status", Some(json!({"refreshToken": true})))
        .await;
    wait_until_requested(&issuer, "/oauth/token").await;
    let (method, params) = cancel(id.clone());
    server.send_notification(method, Some(params)).await;
    assert_eq!(
        redact(server.wait_for_response(id.clone()).await),
        kind_error(id, -32800, "cancelled")
    );
    // Exactly one reply: nothing more comes before the server exits on EOF.
    server.close_stdin().await;
    assert_eq!(server.read_to_end().await, Vec::<Value>::new());
    assert!(server.wait_exit().await.success());
}

#[tokio::test]
async fn lsp_cancel_request_cancels_a_slow_request_with_one_reply() {
    cancel_slow_request(|id| ("$/cancelRequest", json!({ "id": id }))).await;
}

#[tokio::test]
async fn mcp_cancelled_notification_cancels_a_slow_request_with_one_reply() {
    cancel_slow_request(|id| {
        (
            "notifications/cancelled",
            json!({"requestId": id, "reason": "user gave up"}),
        )
    })
    .await;
}

#[tokio::test]
async fn cancelling_an_unknown_id_does_nothing() {
    let mut server = TestServer::start().await;
    server
        .send_notification("$/cancelRequest", Some(json!({"id": 4242})))
        .await;
    server
        .send_notification(
            "notifications/cancelled",
            Some(json!({"requestId": "nope"})),
        )
        .await;
    server.send_json(list_sessions(json!(1))).await;
    assert_eq!(server.read_message().await, ok_reply(1, no_sessions()));
    server.close_stdin().await;
    assert_eq!(server.read_to_end().await, Vec::<Value>::new());
}

#[tokio::test]
async fn cancelling_a_finished_request_is_ignored() {
    let mut server = TestServer::start().await;
    server.send_json(list_sessions(json!(1))).await;
    assert_eq!(server.read_message().await, ok_reply(1, no_sessions()));
    server
        .send_notification("$/cancelRequest", Some(json!({"id": 1})))
        .await;
    server
        .send_notification("notifications/cancelled", Some(json!({"requestId": 1})))
        .await;
    server.send_json(list_sessions(json!(2))).await;
    assert_eq!(server.read_message().await, ok_reply(2, no_sessions()));
    server.close_stdin().await;
    assert_eq!(server.read_to_end().await, Vec::<Value>::new());
}

// ---- child processes ----

#[tokio::test]
async fn tool_processes_inherit_neither_stdin_nor_stdout() {
    let upstream = MockServer::start().await;
    // If the command inherited stdout, "leaked" would land on the protocol stream (the harness
    // rejects non-JSON lines); if it inherited stdin, `cat` would wait on the open pipe forever.
    let command = json!({"command": ["sh", "-c", "echo leaked; cat; echo done"]}).to_string();
    mount_sse_once(
        &upstream,
        sse([
            ev_created("resp_1"),
            ev_function_call("call_1", "shell", &command),
            ev_completed("resp_1", responses_usage(10, 0, 5, 0)),
        ]),
    )
    .await;
    mount_sse_once(
        &upstream,
        sse([
            ev_created("resp_2"),
            ev_message_done("msg_1", "ok"),
            ev_completed("resp_2", responses_usage(20, 0, 2, 0)),
        ]),
    )
    .await;
    let workdir = tempfile::tempdir().unwrap();
    let mut server = TestServer::builder()
        .env("OPENAI_API_KEY", "sk-test")
        .env("OPENAI_BASE_URL", upstream.uri())
        .spawn()
        .await;
    let session = new_session(
        &mut server,
        json!({
            "cwd": workdir.path(),
            "approvalPolicy": "never",
            "sandbox": "dangerFullAccess",
        }),
    )
    .await;
    submit(&mut server, &session, "run it").await;
    let done = server
        .wait_for_notification("session/event", |p| p["event"]["type"] == "turnCompleted")
        .await;
    assert_eq!(
        done["params"]["event"]["status"],
        json!("completed"),
        "{done}"
    );
    let requests = responses_requests(&upstream).await;
    let text = requests
        .last()
        .and_then(|r| function_call_output(r, "call_1"))
        .unwrap_or_else(|| panic!("no function_call_output sent upstream: {requests:#?}"));
    assert!(
        text.contains("leaked") && text.contains("done"),
        "the command's output should go to the model: {text}"
    );
}
