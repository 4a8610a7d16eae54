//! Sections 4 and 5 of the contract end to end: a turn's events, what goes upstream, the turn
//! queue, interrupts, failure kinds, retries, `seq`, many sessions at once, `session/list`,
//! `session/close`, missing credentials, local images and the replayed fixture.

use std::collections::HashMap;
use std::time::Duration;

use agent_server_tests::replies::{MESSAGE, kind_error, redact};
use agent_server_tests::schema::lifecycle::EmptyResult;
use agent_server_tests::schema::methods::{
    CloseSession, Interrupt, ListSessions, NewSession, Submit,
};
use agent_server_tests::schema::rpc::{ErrorKind, RpcError};
use agent_server_tests::schema::session::{
    CloseSessionParams, InputItem, InterruptParams, ListSessionsParams, NewSessionParams,
    SubmitParams,
};
use agent_server_tests::turns::{
    api_key_builder, completion, conversation_input, default_turn_started, just_events,
    new_session, normalize_ids, server_cwd, submit, turn_events,
};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_failed, ev_message_done, ev_output_text_delta, mount_sse,
    mount_sse_once, responses_requests, responses_usage, sse, sse_response,
};
use agent_server_tests::{TestServer, fixture, fixtures_dir};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn hello_usage() -> Value {
    json!({"inputTokens": 1830, "cachedInputTokens": 1536, "outputTokens": 48,
           "reasoningOutputTokens": 32, "totalTokens": 1878})
}

fn zero_usage() -> Value {
    json!({"inputTokens":0,"cachedInputTokens":0,"outputTokens":0,"reasoningOutputTokens":0,"totalTokens":0})
}

async fn fixture_upstream() -> MockServer {
    let upstream = MockServer::start().await;
    mount_sse(&upstream, fixture("text_answer.sse")).await;
    upstream
}

fn responses() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path_regex(r"/responses$"))
}

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

/// `response.output_item.added` for an assistant message `item_id`.
fn message_added(item_id: &str) -> Value {
    json!({
        "type": "response.output_item.added", "output_index": 0,
        "item": {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []},
    })
}

/// A typed reply as JSON, for comparing whole objects.
fn as_json<T: serde::Serialize>(reply: Result<T, RpcError>) -> Result<Value, RpcError> {
    reply.map(|r| serde_json::to_value(r).unwrap_or_else(|e| panic!("not JSON: {e}")))
}

/// `session/interrupt` of the running turn and every queued one.
fn interrupt_all(session: &str) -> InterruptParams {
    InterruptParams {
        session_id: session.to_string(),
        turn_id: None,
    }
}

fn user_message(text: &str) -> Value {
    json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
}

/// The reasoning and assistant items of `text_answer.sse` as they go back upstream.
fn hello_history() -> Vec<Value> {
    vec![
        json!({
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "**Greeting the user**"}],
            "encrypted_content": "gAAAAABo_ENCRYPTED_REASONING_BLOB==",
        }),
        json!({
            "type": "message", "role": "assistant",
            "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": "Hello there!"}],
        }),
    ]
}

/// The error of a failed `turnCompleted`, with its free-text message checked and redacted.
fn redacted_error(done: &Value) -> Value {
    assert_eq!(done["status"], "failed", "{done}");
    let mut error = done["error"].clone();
    let text = error["message"].as_str().unwrap_or_default();
    assert!(
        !text.trim().is_empty(),
        "an error without a message: {done}"
    );
    error["message"] = json!(MESSAGE);
    error
}

// ---- one turn ----

#[tokio::test]
async fn a_text_turn_streams_the_whole_event_sequence() {
    let upstream = fixture_upstream().await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    let turn = submit(&mut server, &session, "hi").await;
    let events = turn_events(&mut server, &turn).await;

    let expected: Vec<Value> = [
        default_turn_started(&server_cwd()),
        json!({"type": "itemStarted", "item": {"id": "id1", "type": "reasoning", "summary": []}}),
        json!({"type": "reasoningDelta", "itemId": "id1", "delta": "**Greeting the user**"}),
        json!({"type": "itemCompleted", "item": {"id": "id1", "type": "reasoning", "summary": ["**Greeting the user**"]}}),
        json!({"type": "itemStarted", "item": {"id": "id2", "type": "agentMessage", "text": ""}}),
        json!({"type": "agentMessageDelta", "itemId": "id2", "delta": "Hello"}),
        json!({"type": "agentMessageDelta", "itemId": "id2", "delta": " there!"}),
        json!({"type": "itemCompleted", "item": {"id": "id2", "type": "agentMessage", "text": "Hello there!"}}),
        json!({"type": "tokenUsage", "last": hello_usage(), "total": hello_usage()}),
        json!({"type": "turnCompleted", "status": "completed", "lastAgentMessage": "Hello there!", "usage": hello_usage()}),
    ]
    .into_iter()
    .enumerate()
    .map(|(n, event)| json!({"sessionId": session, "turnId": turn, "seq": n + 1, "event": event}))
    .collect();
    assert_eq!(
        normalize_ids(&Value::Array(events.clone())),
        Value::Array(expected)
    );

    // The deltas add up to the final text, item by item.
    let mut streamed: HashMap<String, String> = HashMap::new();
    for event in just_events(&events) {
        if event["type"] == "agentMessageDelta" {
            let id = event["itemId"].as_str().unwrap().to_owned();
            streamed
                .entry(id)
                .or_default()
                .push_str(event["delta"].as_str().unwrap());
        }
    }
    let finals: HashMap<String, String> = just_events(&events)
        .iter()
        .filter(|e| e["type"] == "itemCompleted" && e["item"]["type"] == "agentMessage")
        .map(|e| {
            (
                e["item"]["id"].as_str().unwrap().to_owned(),
                e["item"]["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(streamed, finals);
}

#[tokio::test]
async fn without_store_the_second_request_carries_the_whole_first_turn() {
    let upstream = fixture_upstream().await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    for text in ["hi", "again"] {
        let turn = submit(&mut server, &session, text).await;
        assert_eq!(
            completion(&turn_events(&mut server, &turn).await)["status"],
            "completed"
        );
    }
    let requests = responses_requests(&upstream).await;
    assert_eq!(requests.len(), 2);
    let mut input = vec![user_message("hi")];
    input.extend(hello_history());
    input.push(user_message("again"));
    let second = &requests[1];
    assert_eq!(
        (
            &second["store"],
            &conversation_input(second),
            second.get("previous_response_id")
        ),
        (&json!(false), &Value::Array(input), None)
    );
    assert_eq!(second["include"], json!(["reasoning.encrypted_content"]));
}

#[tokio::test]
async fn with_store_the_second_request_sends_only_new_items_after_the_previous_response() {
    let upstream = fixture_upstream().await;
    let mut server = api_key_builder(&upstream)
        .args(["-c", "store=true"])
        .spawn()
        .await;
    let session = new_session(&mut server, json!({})).await;
    for text in ["hi", "again"] {
        let turn = submit(&mut server, &session, text).await;
        assert_eq!(
            completion(&turn_events(&mut server, &turn).await)["status"],
            "completed"
        );
    }
    let requests = responses_requests(&upstream).await;
    assert_eq!(requests.len(), 2);
    assert_eq!(
        (
            &requests[0]["store"],
            &conversation_input(&requests[0]),
            requests[0].get("previous_response_id")
        ),
        (&json!(true), &json!([user_message("hi")]), None)
    );
    assert_eq!(
        (
            &requests[1]["store"],
            &conversation_input(&requests[1]),
            &requests[1]["previous_response_id"]
        ),
        (
            &json!(true),
            &json!([user_message("again")]),
            &json!("resp_A")
        )
    );
}

// ---- the queue and interrupts ----

#[tokio::test]
async fn a_submit_during_a_running_turn_runs_after_it() {
    let upstream = MockServer::start().await;
    responses()
        .respond_with(sse_response(answer("resp_1", "first")).set_delay(Duration::from_millis(500)))
        .up_to_n_times(1)
        .mount(&upstream)
        .await;
    mount_sse(&upstream, answer("resp_2", "second")).await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    let first = submit(&mut server, &session, "one").await;
    server
        .wait_for_notification("session/event", |p| {
            p["turnId"] == first && p["event"]["type"] == "turnStarted"
        })
        .await;
    let second = submit(&mut server, &session, "two").await;
    let mut order = vec![json!(["first", "turnStarted", null])];
    loop {
        let m = server
            .wait_for_notification("session/event", |p| p["sessionId"] == session)
            .await;
        let p = &m["params"];
        let turn = if p["turnId"] == first {
            "first"
        } else if p["turnId"] == second {
            "second"
        } else {
            "?"
        };
        let kind = p["event"]["type"].as_str().unwrap().to_owned();
        let done = turn == "second" && kind == "turnCompleted";
        if kind.starts_with("turn") {
            let last = p["event"]
                .get("lastAgentMessage")
                .cloned()
                .unwrap_or(Value::Null);
            order.push(json!([turn, kind, last]));
        }
        if done {
            break;
        }
    }
    assert_eq!(
        order,
        vec![
            json!(["first", "turnStarted", null]),
            json!(["first", "turnCompleted", "first"]),
            json!(["second", "turnStarted", null]),
            json!(["second", "turnCompleted", "second"]),
        ]
    );
    let requests = responses_requests(&upstream).await;
    let inputs: Vec<usize> = requests
        .iter()
        .map(|r| conversation_input(r).as_array().unwrap().len())
        .collect();
    // The second call already holds the first turn's answer.
    assert_eq!(inputs, vec![1, 3]);
}

/// An upstream that takes far longer than any test to answer.
async fn stalled_upstream() -> MockServer {
    let upstream = MockServer::start().await;
    responses()
        .respond_with(sse_response(answer("resp_1", "late")).set_delay(Duration::from_secs(60)))
        .mount(&upstream)
        .await;
    upstream
}

#[tokio::test]
async fn interrupt_mid_stream_completes_the_turn_interrupted() {
    let upstream = stalled_upstream().await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    let turn = submit(&mut server, &session, "hi").await;
    server
        .wait_for_notification("session/event", |p| p["event"]["type"] == "turnStarted")
        .await;
    let reply = server
        .request::<Interrupt>(InterruptParams {
            session_id: session.clone(),
            turn_id: Some(turn.clone()),
        })
        .await;
    assert_eq!(reply, Ok(EmptyResult {}));
    let events = just_events(&turn_events(&mut server, &turn).await);
    assert_eq!(
        events,
        vec![
            json!({"type": "turnCompleted", "status": "interrupted", "lastAgentMessage": null, "usage": zero_usage()})
        ]
    );
}

#[tokio::test]
async fn interrupt_without_turn_id_also_interrupts_queued_turns() {
    let upstream = stalled_upstream().await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    let first = submit(&mut server, &session, "one").await;
    let second = submit(&mut server, &session, "two").await;
    server
        .wait_for_notification("session/event", |p| {
            p["turnId"] == first && p["event"]["type"] == "turnStarted"
        })
        .await;
    let reply = server.request::<Interrupt>(interrupt_all(&session)).await;
    assert_eq!(reply, Ok(EmptyResult {}));
    let first_done = completion(&turn_events(&mut server, &first).await);
    let second_events = just_events(&turn_events(&mut server, &second).await);
    assert_eq!(first_done["status"], "interrupted");
    assert_eq!(
        second_events,
        vec![
            default_turn_started(&server_cwd()),
            json!({"type": "turnCompleted", "status": "interrupted", "lastAgentMessage": null, "usage": zero_usage()}),
        ]
    );
    // The queued turn never called the model (the first may or may not have got that far).
    let calls = responses_requests(&upstream).await;
    assert!(
        calls
            .iter()
            .all(|r| conversation_input(r) == json!([user_message("one")])),
        "{calls:?}"
    );
}

#[tokio::test]
async fn interrupt_of_an_unknown_turn_is_turn_not_found() {
    let upstream = fixture_upstream().await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    let reply = server
        .request::<Interrupt>(InterruptParams {
            session_id: session,
            turn_id: Some("no-such-turn".into()),
        })
        .await;
    assert_eq!(
        reply.map_err(|e| (e.code, e.data.kind)),
        Err((-32602, ErrorKind::TurnNotFound))
    );
}

// ---- failures ----

/// Runs one turn against `upstream` (extra server args `args`) and returns its `turnCompleted`.
async fn failed_turn(upstream: &MockServer, args: &[&str]) -> (Vec<Value>, Value) {
    let mut server = api_key_builder(upstream)
        .args(args.iter().copied())
        .spawn()
        .await;
    let session = new_session(&mut server, json!({})).await;
    let turn = submit(&mut server, &session, "hi").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let done = completion_event(&events);
    (events, done)
}

fn completion_event(events: &[Value]) -> Value {
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(last["type"], "turnCompleted", "{events:?}");
    last
}

fn error_body(kind: &str, message: &str) -> Value {
    json!({"error": {"type": kind, "code": kind, "message": message}})
}

#[tokio::test]
async fn unauthorized_twice_with_an_api_key_fails_unauthorized() {
    let upstream = MockServer::start().await;
    responses()
        .respond_with(
            ResponseTemplate::new(401).set_body_json(error_body("invalid_api_key", "bad key")),
        )
        .mount(&upstream)
        .await;
    let (_, done) = failed_turn(&upstream, &[]).await;
    assert_eq!(
        redacted_error(&done),
        json!({"kind": "unauthorized", "message": MESSAGE, "httpStatus": 401})
    );
}

#[tokio::test]
async fn usage_limit_reached_carries_resets_at_and_plan_type() {
    let upstream = MockServer::start().await;
    responses()
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {
            "type": "usage_limit_reached", "message": "You've hit your usage limit.",
            "plan_type": "plus", "resets_at": 1_760_003_600,
        }})))
        .expect(1)
        .mount(&upstream)
        .await;
    let (_, done) = failed_turn(&upstream, &[]).await;
    assert_eq!(
        redacted_error(&done),
        json!({"kind": "usageLimitReached", "message": MESSAGE, "httpStatus": 429,
               "resetsAt": "2025-10-09T09:53:20Z", "planType": "plus"})
    );
}

#[tokio::test]
async fn insufficient_quota_is_quota_exceeded() {
    let upstream = MockServer::start().await;
    responses()
        .respond_with(
            ResponseTemplate::new(429).set_body_json(error_body("insufficient_quota", "no quota")),
        )
        .expect(1)
        .mount(&upstream)
        .await;
    let (_, done) = failed_turn(&upstream, &[]).await;
    assert_eq!(
        redacted_error(&done),
        json!({"kind": "quotaExceeded", "message": MESSAGE, "httpStatus": 429})
    );
}

#[tokio::test]
async fn context_length_exceeded_is_context_window_exceeded() {
    let upstream = MockServer::start().await;
    responses()
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(error_body("context_length_exceeded", "too long")),
        )
        // The request, then the compaction that tries to make room (it overflows too).
        .expect(2)
        .mount(&upstream)
        .await;
    let (_, done) = failed_turn(&upstream, &[]).await;
    assert_eq!(
        redacted_error(&done),
        json!({"kind": "contextWindowExceeded", "message": MESSAGE, "httpStatus": 400})
    );
}

#[tokio::test]
async fn a_stream_failing_with_context_length_exceeded_has_no_http_status() {
    let upstream = MockServer::start().await;
    mount_sse(
        &upstream,
        sse([
            ev_created("r"),
            ev_failed("context_length_exceeded", "too long"),
        ]),
    )
    .await;
    let (_, done) = failed_turn(&upstream, &[]).await;
    assert_eq!(
        redacted_error(&done),
        json!({"kind": "contextWindowExceeded", "message": MESSAGE})
    );
}

#[tokio::test]
async fn another_400_is_upstream_with_its_status() {
    let upstream = MockServer::start().await;
    responses()
        .respond_with(
            ResponseTemplate::new(400).set_body_json(error_body("invalid_request_error", "bad")),
        )
        .expect(1)
        .mount(&upstream)
        .await;
    let (_, done) = failed_turn(&upstream, &[]).await;
    assert_eq!(
        redacted_error(&done),
        json!({"kind": "upstream", "message": MESSAGE, "httpStatus": 400})
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_fail_upstream() {
    let upstream = MockServer::start().await;
    responses()
        .respond_with(
            ResponseTemplate::new(500)
                .insert_header("retry-after-ms", "1")
                .set_body_json(error_body("server_error", "boom")),
        )
        .expect(2)
        .mount(&upstream)
        .await;
    let (events, done) = failed_turn(
        &upstream,
        &["-c", "model_providers.openai.request_max_retries=1"],
    )
    .await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["turnStarted", "retrying", "turnCompleted"]);
    let mut retrying = events[1].clone();
    assert!(
        retrying["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{retrying}"
    );
    retrying["message"] = json!(MESSAGE);
    assert_eq!(
        retrying,
        json!({"type": "retrying", "attempt": 1, "maxAttempts": 1, "delayMs": 1, "message": MESSAGE})
    );
    assert_eq!(
        redacted_error(&done),
        json!({"kind": "upstream", "message": MESSAGE, "httpStatus": 500})
    );
}

/// A stream that stops after its first delta, without `response.completed`.
fn cut_stream() -> String {
    sse([
        ev_created("r"),
        message_added("m1"),
        ev_output_text_delta("m1", "par"),
    ])
}

#[tokio::test]
async fn a_stream_closed_early_is_retried_then_succeeds() {
    let upstream = MockServer::start().await;
    mount_sse_once(&upstream, cut_stream()).await;
    mount_sse_once(&upstream, answer("resp_2", "whole")).await;
    let (events, done) = failed_turn(&upstream, &[]).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        vec![
            "turnStarted",
            "itemStarted",
            "agentMessageDelta",
            // The abandoned item ends as it stood, so no item stays in progress.
            "itemCompleted",
            "retrying",
            "itemStarted",
            "agentMessageDelta",
            "itemCompleted",
            "tokenUsage",
            "turnCompleted",
        ]
    );
    assert_eq!(events[3]["item"]["text"], "par");
    assert_eq!(events[1]["item"]["id"], events[3]["item"]["id"]);
    assert_ne!(events[5]["item"]["id"], events[3]["item"]["id"]);
    assert_eq!(
        (&done["status"], &done["lastAgentMessage"]),
        (&json!("completed"), &json!("whole"))
    );
    assert_eq!(responses_requests(&upstream).await.len(), 2);
}

#[tokio::test]
async fn a_stream_closed_early_every_time_fails_once_retries_run_out() {
    let upstream = MockServer::start().await;
    mount_sse(&upstream, cut_stream()).await;
    let (events, done) = failed_turn(
        &upstream,
        &["-c", "model_providers.openai.stream_max_retries=2"],
    )
    .await;
    let retries: Vec<(Value, Value)> = events
        .iter()
        .filter(|e| e["type"] == "retrying")
        .map(|e| (e["attempt"].clone(), e["maxAttempts"].clone()))
        .collect();
    assert_eq!(retries, vec![(json!(1), json!(2)), (json!(2), json!(2))]);
    assert_eq!(
        redacted_error(&done),
        json!({"kind": "upstream", "message": MESSAGE})
    );
    assert_eq!(responses_requests(&upstream).await.len(), 3);
}

// ---- seq, many turns, many sessions ----

#[tokio::test]
async fn seq_has_no_gaps_across_twenty_turns() {
    let upstream = MockServer::start().await;
    mount_sse(&upstream, answer("resp", "ok")).await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    let mut seqs = Vec::new();
    for n in 0..20 {
        let turn = submit(&mut server, &session, &format!("turn {n}")).await;
        let events = turn_events(&mut server, &turn).await;
        assert_eq!(completion(&events)["status"], "completed");
        seqs.extend(events.iter().map(|e| e["seq"].as_u64().unwrap()));
    }
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected);
    assert_eq!(seqs.len(), 20 * 6);
}

#[tokio::test]
async fn a_hundred_sessions_run_turns_at_once_each_event_delivered_once_in_order() {
    let upstream = MockServer::start().await;
    mount_sse(&upstream, answer("resp", "ok")).await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let mut sessions = Vec::new();
    for _ in 0..100 {
        sessions.push(new_session(&mut server, json!({})).await);
    }
    for session in &sessions {
        let id = server
            .send_request(
                "session/submit",
                Some(json!({"sessionId": session, "text": "go"})),
            )
            .await;
        let _ = id;
    }
    let mut per_session: HashMap<String, Vec<Value>> = HashMap::new();
    let mut completed = 0;
    while completed < sessions.len() {
        let m = server
            .wait_for_notification("session/event", |_| true)
            .await;
        let p = m["params"].clone();
        if p["event"]["type"] == "turnCompleted" {
            completed += 1;
        }
        per_session
            .entry(p["sessionId"].as_str().unwrap().to_owned())
            .or_default()
            .push(p);
    }
    assert_eq!(per_session.len(), 100);
    for (session, events) in &per_session {
        let shape: Vec<(u64, String)> = events
            .iter()
            .map(|p| {
                (
                    p["seq"].as_u64().unwrap(),
                    p["event"]["type"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected: Vec<(u64, String)> = [
            "turnStarted",
            "itemStarted",
            "agentMessageDelta",
            "itemCompleted",
            "tokenUsage",
            "turnCompleted",
        ]
        .iter()
        .enumerate()
        .map(|(n, k)| (n as u64 + 1, (*k).to_owned()))
        .collect();
        assert_eq!(shape, expected, "session {session}");
    }
}

// ---- list, status, close ----

#[tokio::test]
async fn session_list_shows_running_then_idle_once_turn_completed_is_seen() {
    let upstream = MockServer::start().await;
    responses()
        .respond_with(sse_response(answer("resp_1", "ok")).set_delay(Duration::from_millis(300)))
        .mount(&upstream)
        .await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let cwd = tempfile::tempdir().unwrap();
    let reply = server
        .request::<NewSession>(NewSessionParams {
            cwd: Some(cwd.path().display().to_string()),
            ..NewSessionParams::default()
        })
        .await;
    let info = as_json(reply).unwrap();
    let session = info["sessionId"].as_str().unwrap().to_owned();
    let mut expected = info.clone();
    let shown = |info: &Value| {
        let mut shown = info.clone();
        shown["createdAt"] = json!("<time>");
        shown["updatedAt"] = json!("<time>");
        shown["sessionId"] = json!("<id>");
        shown
    };
    assert_eq!(
        shown(&info),
        json!({"sessionId": "<id>", "cwd": cwd.path(), "model": "gpt-5-codex", "modelProvider": "openai",
               "approvalPolicy": "untrusted", "sandbox": "workspaceWrite", "createdAt": "<time>", "status": "idle",
               "title": null, "updatedAt": "<time>", "ephemeral": false, "archived": false, "loaded": true,
               "turnCount": 0, "instructionSources": []})
    );
    let turn = submit(&mut server, &session, "hi").await;
    server
        .wait_for_notification("session/event", |p| {
            p["turnId"] == turn && p["event"]["type"] == "turnStarted"
        })
        .await;
    let listed = as_json(
        server
            .request::<ListSessions>(ListSessionsParams::default())
            .await,
    );
    expected["status"] = json!("running");
    expected["title"] = json!("hi");
    expected["turnCount"] = json!(1);
    let listed = listed.unwrap();
    assert_eq!(shown(&listed["sessions"][0]), shown(&expected));
    assert_eq!(listed["sessions"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["nextCursor"], Value::Null);
    turn_events(&mut server, &turn).await;
    let listed = as_json(
        server
            .request::<ListSessions>(ListSessionsParams::default())
            .await,
    );
    expected["status"] = json!("idle");
    let listed = listed.unwrap();
    assert_eq!(shown(&listed["sessions"][0]), shown(&expected));
}

#[tokio::test]
async fn session_close_interrupts_the_running_turn_and_unloads_the_session() {
    let upstream = stalled_upstream().await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    let turn = submit(&mut server, &session, "hi").await;
    server
        .wait_for_notification("session/event", |p| p["event"]["type"] == "turnStarted")
        .await;
    let reply = server
        .request::<CloseSession>(CloseSessionParams {
            session_id: session.clone(),
        })
        .await;
    assert_eq!(reply, Ok(EmptyResult {}));
    assert_eq!(
        completion(&turn_events(&mut server, &turn).await)["status"],
        "interrupted"
    );
    let listed = as_json(
        server
            .request::<ListSessions>(ListSessionsParams::default())
            .await,
    );
    assert_eq!(listed, Ok(json!({"sessions": [], "nextCursor": null})));
    for (method, params) in [
        (
            "session/submit",
            json!({"sessionId": session, "text": "again"}),
        ),
        ("session/interrupt", json!({"sessionId": session})),
        ("session/close", json!({"sessionId": session})),
    ] {
        let reply = server.request_raw(method, Some(params)).await;
        assert_eq!(
            redact(reply.clone()),
            kind_error(reply["id"].clone(), -32602, "sessionNotFound"),
            "{method}"
        );
    }
}

// ---- credentials, inputs, replay ----

#[tokio::test]
async fn without_credentials_new_and_submit_are_auth_required() {
    let upstream = fixture_upstream().await;
    let mut server = TestServer::builder()
        .env("OPENAI_BASE_URL", format!("{}/v1", upstream.uri()))
        .spawn()
        .await;
    let reply = server.request_raw("session/new", Some(json!({}))).await;
    assert_eq!(
        redact(reply.clone()),
        kind_error(reply["id"].clone(), -32000, "authRequired")
    );
    let reply = server
        .request_raw("session/submit", Some(json!({"text": "hi"})))
        .await;
    assert_eq!(
        redact(reply.clone()),
        kind_error(reply["id"].clone(), -32000, "authRequired")
    );
    assert_eq!(responses_requests(&upstream).await.len(), 0);
}

#[tokio::test]
async fn a_missing_local_image_is_invalid_params_naming_the_path() {
    let upstream = fixture_upstream().await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    let missing = tempfile::tempdir().unwrap().path().join("nope.png");
    let reply = server
        .request::<Submit>(SubmitParams {
            session_id: Some(session),
            input: Some(vec![InputItem::LocalImage {
                path: missing.display().to_string(),
            }]),
            ..SubmitParams::default()
        })
        .await;
    let error = reply.expect_err("a submit of a missing image was accepted");
    assert!(
        error.message.contains(&missing.display().to_string()),
        "{error:?}"
    );
    assert_eq!(
        (error.code, error.data.kind),
        (-32602, ErrorKind::InvalidParams)
    );
    assert_eq!(responses_requests(&upstream).await.len(), 0);
}

#[tokio::test]
async fn the_sse_fixture_replays_without_credentials() {
    let mut server = TestServer::builder()
        .env(
            "AGENT_SERVER_SSE_FIXTURE",
            fixtures_dir().join("text_answer.sse"),
        )
        .spawn()
        .await;
    let session = new_session(&mut server, json!({})).await;
    let turn = submit(&mut server, &session, "hi").await;
    let events = turn_events(&mut server, &turn).await;
    assert_eq!(
        completion(&events),
        json!({"type": "turnCompleted", "status": "completed", "lastAgentMessage": "Hello there!", "usage": hello_usage()})
    );
    assert_eq!(events.len(), 10);
}

#[tokio::test]
async fn deltas_of_an_item_never_announced_still_make_a_whole_item() {
    let upstream = MockServer::start().await;
    mount_sse(
        &upstream,
        sse([
            ev_created("resp_U"),
            ev_output_text_delta("m9", "Hel"),
            ev_output_text_delta("m9", "lo"),
            ev_message_done("m9", "Hello"),
            ev_completed("resp_U", responses_usage(10, 0, 2, 0)),
        ]),
    )
    .await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    let turn = submit(&mut server, &session, "hi").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let items: Vec<Value> = events
        .iter()
        .filter(|e| {
            e["type"] != "tokenUsage" && e["type"] != "turnStarted" && e["type"] != "turnCompleted"
        })
        .cloned()
        .collect();
    assert_eq!(
        normalize_ids(&Value::Array(items)),
        json!([
            {"type": "itemStarted", "item": {"type": "agentMessage", "id": "id1", "text": ""}},
            {"type": "agentMessageDelta", "itemId": "id1", "delta": "Hel"},
            {"type": "agentMessageDelta", "itemId": "id1", "delta": "lo"},
            {"type": "itemCompleted", "item": {"type": "agentMessage", "id": "id1", "text": "Hello"}},
        ])
    );
}

#[tokio::test]
async fn interrupt_during_a_retry_backoff_ends_the_turn_without_waiting_it_out() {
    let upstream = MockServer::start().await;
    responses()
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("retry-after", "60")
                .set_body_json(json!({"error": {"message": "overloaded"}})),
        )
        .mount(&upstream)
        .await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    let turn = submit(&mut server, &session, "hi").await;
    let retrying = server
        .wait_for_notification("session/event", |p| p["event"]["type"] == "retrying")
        .await;
    assert_eq!(retrying["params"]["event"]["delayMs"], json!(60_000));
    let reply = server.request::<Interrupt>(interrupt_all(&session)).await;
    assert_eq!(reply, Ok(EmptyResult {}));
    // The harness's read timeout (far below the 60 s backoff) is what shows it did not wait.
    // (`retrying` was taken above; `turnStarted` came before it.)
    let events = just_events(&turn_events(&mut server, &turn).await);
    assert_eq!(
        events,
        vec![
            default_turn_started(&server_cwd()),
            json!({"type": "turnCompleted", "status": "interrupted", "lastAgentMessage": null, "usage": zero_usage()}),
        ]
    );
}
