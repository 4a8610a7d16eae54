//! End-to-end: compaction of long conversations, automatic (token limit, context overflow) and
//! manual (`session/compact`), against a wiremock upstream.

use std::time::Duration;

use agent_server_tests::TestServer;
use agent_server_tests::schema::lifecycle::EmptyResult;
use agent_server_tests::schema::methods::{Compact, Interrupt};
use agent_server_tests::schema::rpc::ErrorKind;
use agent_server_tests::schema::session::{
    ApprovalPolicy, CompactParams, CompactResult, InterruptParams, SubmitParams,
};
use agent_server_tests::turns::{
    api_key_builder, completion, environment_message, just_events, new_session, normalize_ids,
    submit, submit_params, turn_events, user_text_message,
};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_message_done, responses_requests, responses_usage, sse,
    sse_response,
};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The start of the server's summarisation instruction, by which its request is recognised.
const SUMMARY_PROMPT_START: &str = "Stop here: the conversation above is about to be cut";
const SUMMARY_PREFIX: &str = "This is a summary of the earlier part of this conversation, written when it was compacted to save context:";

fn responses() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path_regex(r"/responses$"))
}

fn answer(id: &str, text: &str, total_tokens: u64) -> String {
    sse([
        ev_created(id),
        ev_message_done("m1", text),
        ev_completed(id, responses_usage(total_tokens - 2, 0, 2, 0)),
    ])
}

fn assistant(text: &str) -> Value {
    json!({"type": "message", "role": "assistant",
           "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]})
}

fn summary_message(text: &str) -> Value {
    user_text_message(&format!("{SUMMARY_PREFIX}\n\n{text}"))
}

/// Summarisation requests get `summary`; mounted before the other answers, it wins for them.
async fn mount_summary(upstream: &MockServer, summary: &str, delay: Duration) {
    responses()
        .and(body_string_contains(SUMMARY_PROMPT_START))
        .respond_with(sse_response(answer("resp_sum", summary, 900)).set_delay(delay))
        .mount(upstream)
        .await;
}

async fn mount_once(upstream: &MockServer, response: ResponseTemplate) {
    responses()
        .respond_with(response)
        .up_to_n_times(1)
        .mount(upstream)
        .await;
}

fn overflow() -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({"error": {
        "type": "invalid_request_error", "code": "context_length_exceeded",
        "message": "Your input exceeds the context window of this model.",
    }}))
}

async fn run_turn(server: &mut TestServer, session: &str, text: &str) -> Vec<Value> {
    let turn = submit(server, session, text).await;
    turn_events(server, &turn).await
}

async fn compact(server: &mut TestServer, session: &str) -> String {
    let params = CompactParams {
        session_id: session.to_owned(),
    };
    match server.request::<Compact>(params).await {
        Ok(CompactResult { turn_id }) => turn_id,
        Err(error) => panic!("session/compact failed: {error:?}"),
    }
}

fn is_summary_request(request: &Value) -> bool {
    request.to_string().contains(SUMMARY_PROMPT_START)
}

/// The events of a compaction inside a turn: usage, the summary item, `contextCompacted`.
fn compaction_events(summary: &str, tokens_before: u64) -> Vec<Value> {
    let usage = json!({"inputTokens": 898, "cachedInputTokens": 0, "outputTokens": 2,
                       "reasoningOutputTokens": 0, "totalTokens": 900});
    vec![
        json!({"type": "tokenUsage", "last": usage, "total": "<total>"}),
        json!({"type": "itemStarted", "item": {"type": "contextSummary", "id": "<cs>", "text": ""}}),
        json!({"type": "itemCompleted", "item": {"type": "contextSummary", "id": "<cs>", "text": summary}}),
        json!({"type": "contextCompacted", "tokensBefore": tokens_before, "summaryItemId": "<cs>"}),
    ]
}

/// `events` with the summary item id and the running session total blanked out.
fn blank(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if e["item"]["type"] == "contextSummary" {
                e["item"]["id"] = json!("<cs>");
            }
            if e["type"] == "contextCompacted" {
                e["summaryItemId"] = json!("<cs>");
            }
            if e["type"] == "tokenUsage" {
                e["total"] = json!("<total>");
            }
            e
        })
        .collect()
}

#[tokio::test]
async fn a_long_conversation_over_the_auto_limit_is_compacted_before_the_next_request() {
    let upstream = MockServer::start().await;
    mount_summary(&upstream, "SUMMARY: the user said one", Duration::ZERO).await;
    // A long first answer whose response reports a nearly full context window.
    let long = "lorem ipsum dolor sit amet ".repeat(20_000);
    mount_once(&upstream, sse_response(answer("resp_1", &long, 120_000))).await;
    mount_once(&upstream, sse_response(answer("resp_2", "two done", 3_000))).await;
    mount_once(
        &upstream,
        sse_response(answer("resp_3", "three done", 3_000)),
    )
    .await;
    let cwd = tempfile::tempdir().unwrap();
    let mut server = api_key_builder(&upstream)
        .home_file("AGENTS.md", "global rules")
        .args(["-c", "model_auto_compact_token_limit=100000"])
        .spawn()
        .await;
    let session = new_session(&mut server, json!({"cwd": cwd.path()})).await;
    assert_eq!(
        completion(&run_turn(&mut server, &session, "one").await)["status"],
        "completed"
    );
    let events = just_events(&run_turn(&mut server, &session, "two").await);
    let requests = responses_requests(&upstream).await;
    assert_eq!(requests.len(), 3, "answer, summary, answer");
    let instructions = user_text_message(&format!(
        "# AGENTS.md instructions for {}\n\n<INSTRUCTIONS>\nglobal rules\n</INSTRUCTIONS>",
        cwd.path().display()
    ));
    let env = environment_message(cwd.path(), "untrusted", "workspaceWrite");
    // The summary request: the whole history, then the instruction.
    let history = [
        instructions.clone(),
        env.clone(),
        user_text_message("one"),
        assistant(&long),
    ];
    let summary_input = requests[1]["input"].as_array().unwrap();
    assert_eq!(summary_input[..4], history[..]);
    assert!(
        is_summary_request(&summary_input[4]),
        "{}",
        summary_input[4]
    );
    assert_eq!(summary_input.len(), 5);
    // The next request: context, recent user messages, the summary, then the new input.
    assert_eq!(
        requests[2]["input"],
        json!([
            instructions,
            env,
            user_text_message("one"),
            summary_message("SUMMARY: the user said one"),
            user_text_message("two")
        ])
    );
    let (before, after) = (requests[1].to_string().len(), requests[2].to_string().len());
    assert!(after * 20 < before, "{after} bytes after, {before} before");
    let mut expected = vec![json!({"type": "turnStarted", "model": "gpt-5-codex",
        "reasoningEffort": "medium", "approvalPolicy": "untrusted", "sandbox": "workspaceWrite",
        "cwd": cwd.path()})];
    expected.extend(compaction_events("SUMMARY: the user said one", 120_000));
    assert_eq!(blank(&events[..5]), expected);
    assert_eq!(events.last().unwrap()["status"], "completed");
    // The compacted conversation goes on from there; no second compaction.
    assert_eq!(
        completion(&run_turn(&mut server, &session, "three").await)["status"],
        "completed"
    );
    let requests = responses_requests(&upstream).await;
    assert_eq!(requests.len(), 4);
    assert_eq!(
        requests[3]["input"][3],
        summary_message("SUMMARY: the user said one")
    );
}

#[tokio::test]
async fn context_length_exceeded_compacts_once_then_retries_once() {
    let upstream = MockServer::start().await;
    mount_summary(&upstream, "SUMMARY", Duration::ZERO).await;
    mount_once(&upstream, sse_response(answer("resp_1", "first", 100))).await;
    mount_once(&upstream, overflow()).await;
    mount_once(&upstream, sse_response(answer("resp_2", "second", 100))).await;
    let cwd = tempfile::tempdir().unwrap();
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({"cwd": cwd.path()})).await;
    run_turn(&mut server, &session, "one").await;
    let events = just_events(&run_turn(&mut server, &session, "two").await);
    assert_eq!(
        (
            &events.last().unwrap()["status"],
            &events.last().unwrap()["lastAgentMessage"]
        ),
        (&json!("completed"), &json!("second"))
    );
    let requests = responses_requests(&upstream).await;
    let summaries: Vec<bool> = requests.iter().map(is_summary_request).collect();
    assert_eq!(summaries, vec![false, false, true, false]);
    let env = environment_message(cwd.path(), "untrusted", "workspaceWrite");
    // The overflowing request, then the same request on the compacted history.
    assert_eq!(
        requests[1]["input"],
        json!([
            env,
            user_text_message("one"),
            assistant("first"),
            user_text_message("two")
        ])
    );
    assert_eq!(
        requests[3]["input"],
        json!([
            env,
            user_text_message("one"),
            user_text_message("two"),
            summary_message("SUMMARY")
        ])
    );
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "turnStarted",
            "tokenUsage",
            "itemStarted",
            "itemCompleted",
            "contextCompacted",
            "itemStarted",
            "itemCompleted",
            "tokenUsage",
            "turnCompleted"
        ]
    );
    assert_eq!(events[4]["tokensBefore"], 100);
}

#[tokio::test]
async fn a_second_overflow_after_compacting_ends_the_turn_context_window_exceeded() {
    let upstream = MockServer::start().await;
    mount_summary(&upstream, "SUMMARY", Duration::ZERO).await;
    mount_once(&upstream, sse_response(answer("resp_1", "first", 100))).await;
    responses().respond_with(overflow()).mount(&upstream).await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    run_turn(&mut server, &session, "one").await;
    let done = completion(&run_turn(&mut server, &session, "two").await);
    assert_eq!(
        (
            &done["status"],
            &done["error"]["kind"],
            &done["error"]["httpStatus"]
        ),
        (
            &json!("failed"),
            &json!("contextWindowExceeded"),
            &json!(400)
        )
    );
    let summaries: Vec<bool> = responses_requests(&upstream)
        .await
        .iter()
        .map(is_summary_request)
        .collect();
    assert_eq!(
        summaries,
        vec![false, false, true, false],
        "one compaction, one retry"
    );
}

#[tokio::test]
async fn a_failing_compaction_keeps_the_original_error_kind_and_the_history() {
    let upstream = MockServer::start().await;
    responses()
        .and(body_string_contains(SUMMARY_PROMPT_START))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"error": {"code": "invalid_request", "message": "nope"}})),
        )
        .mount(&upstream)
        .await;
    mount_once(&upstream, sse_response(answer("resp_1", "first", 100))).await;
    mount_once(&upstream, overflow()).await;
    mount_once(&upstream, sse_response(answer("resp_3", "third", 100))).await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    run_turn(&mut server, &session, "one").await;
    let done = completion(&run_turn(&mut server, &session, "two").await);
    assert_eq!(
        (&done["status"], &done["error"]["kind"]),
        (&json!("failed"), &json!("contextWindowExceeded"))
    );
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.contains("compacting the conversation"), "{message}");
    run_turn(&mut server, &session, "three").await;
    let requests = responses_requests(&upstream).await;
    assert_eq!(requests.len(), 4);
    let last: Vec<Value> = requests[3]["input"].as_array().unwrap()[1..].to_vec();
    assert_eq!(
        last,
        vec![
            user_text_message("one"),
            assistant("first"),
            user_text_message("two"),
            user_text_message("three")
        ]
    );
}

#[tokio::test]
async fn manual_compact_on_an_idle_session_with_an_empty_summary_uses_a_placeholder() {
    let upstream = MockServer::start().await;
    mount_summary(&upstream, "", Duration::ZERO).await;
    mount_once(&upstream, sse_response(answer("resp_1", "first", 100))).await;
    mount_once(&upstream, sse_response(answer("resp_2", "second", 100))).await;
    let cwd = tempfile::tempdir().unwrap();
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({"cwd": cwd.path()})).await;
    run_turn(&mut server, &session, "one").await;
    let turn = compact(&mut server, &session).await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let placeholder = "(No summary could be written. Earlier work in this conversation is not available; ask the user what to continue with if the recent messages do not say.)";
    let mut expected = vec![json!({"type": "turnStarted", "model": "gpt-5-codex",
        "reasoningEffort": "medium", "approvalPolicy": "untrusted", "sandbox": "workspaceWrite",
        "cwd": cwd.path()})];
    expected.extend(compaction_events(placeholder, 100));
    expected.push(json!({"type": "turnCompleted", "status": "completed", "lastAgentMessage": null,
        "usage": {"inputTokens": 898, "cachedInputTokens": 0, "outputTokens": 2, "reasoningOutputTokens": 0, "totalTokens": 900}}));
    assert_eq!(blank(&events), expected);
    run_turn(&mut server, &session, "two").await;
    let requests = responses_requests(&upstream).await;
    assert_eq!(
        requests[2]["input"],
        json!([
            environment_message(cwd.path(), "untrusted", "workspaceWrite"),
            user_text_message("one"),
            summary_message(placeholder),
            user_text_message("two"),
        ])
    );
    // An unknown session is refused.
    let params = CompactParams {
        session_id: "nope".into(),
    };
    let reply = server.request::<Compact>(params).await;
    assert_eq!(
        reply.map_err(|e| e.data.kind),
        Err(ErrorKind::SessionNotFound)
    );
}

#[tokio::test]
async fn manual_compact_queues_behind_a_running_turn() {
    let upstream = MockServer::start().await;
    mount_summary(&upstream, "SUMMARY", Duration::ZERO).await;
    mount_once(
        &upstream,
        sse_response(answer("resp_1", "first", 100)).set_delay(Duration::from_millis(400)),
    )
    .await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    let first = submit(&mut server, &session, "one").await;
    let compaction = compact(&mut server, &session).await;
    let first_done = completion(&turn_events(&mut server, &first).await);
    assert_eq!(first_done["status"], "completed");
    let events = just_events(&turn_events(&mut server, &compaction).await);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "turnStarted",
            "tokenUsage",
            "itemStarted",
            "itemCompleted",
            "contextCompacted",
            "turnCompleted"
        ]
    );
    // The compaction saw the first turn's answer.
    let requests = responses_requests(&upstream).await;
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1]["input"]
            .as_array()
            .unwrap()
            .contains(&assistant("first"))
    );
}

#[tokio::test]
async fn interrupting_a_compaction_leaves_the_history_unchanged() {
    let upstream = MockServer::start().await;
    mount_summary(&upstream, "SUMMARY", Duration::from_secs(60)).await;
    responses()
        .respond_with(sse_response(answer("resp_1", "ok", 100)))
        .mount(&upstream)
        .await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    run_turn(&mut server, &session, "one").await;
    let turn = compact(&mut server, &session).await;
    server
        .wait_for_notification("session/event", |p| {
            p["turnId"] == turn && p["event"]["type"] == "turnStarted"
        })
        .await;
    // Wait until the summary request is in flight.
    for _ in 0..100 {
        if responses_requests(&upstream).await.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = server
        .request::<Interrupt>(InterruptParams {
            session_id: session.clone(),
            turn_id: None,
        })
        .await;
    assert_eq!(reply, Ok(EmptyResult {}));
    let events = normalize_ids(&json!(just_events(&turn_events(&mut server, &turn).await)));
    assert_eq!(
        events,
        json!([{"type": "turnCompleted", "status": "interrupted", "lastAgentMessage": null,
                "usage": {"inputTokens": 0, "cachedInputTokens": 0, "outputTokens": 0, "reasoningOutputTokens": 0, "totalTokens": 0}}])
    );
    run_turn(&mut server, &session, "two").await;
    let requests = responses_requests(&upstream).await;
    let last: Vec<Value> = requests.last().unwrap()["input"].as_array().unwrap()[1..].to_vec();
    assert_eq!(
        last,
        vec![
            user_text_message("one"),
            assistant("ok"),
            user_text_message("two")
        ]
    );
}

#[tokio::test]
async fn a_summary_request_that_overflows_too_is_retried_without_the_oldest_items() {
    let upstream = MockServer::start().await;
    // A summary request that still holds the oldest message overflows; a trimmed one succeeds.
    responses()
        .and(body_string_contains(SUMMARY_PROMPT_START))
        .and(body_string_contains("OLDEST-MESSAGE"))
        .respond_with(overflow())
        .mount(&upstream)
        .await;
    mount_summary(&upstream, "SUMMARY", Duration::ZERO).await;
    mount_once(&upstream, sse_response(answer("resp_1", "first", 100))).await;
    mount_once(&upstream, overflow()).await;
    mount_once(&upstream, sse_response(answer("resp_2", "second", 100))).await;
    let cwd = tempfile::tempdir().unwrap();
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({"cwd": cwd.path()})).await;
    run_turn(&mut server, &session, "OLDEST-MESSAGE").await;
    let done = completion(&run_turn(&mut server, &session, "two").await);
    assert_eq!(done["status"], "completed", "{done}");
    let requests = responses_requests(&upstream).await;
    let summaries: Vec<bool> = requests.iter().map(is_summary_request).collect();
    assert_eq!(summaries, vec![false, false, true, true, false]);
    let env = environment_message(cwd.path(), "untrusted", "workspaceWrite");
    let trimmed = requests[3]["input"].as_array().unwrap();
    assert_eq!(
        trimmed[..3],
        [env.clone(), assistant("first"), user_text_message("two")]
    );
    // The kept user messages still come from the whole conversation.
    assert_eq!(
        requests[4]["input"],
        json!([
            env,
            user_text_message("OLDEST-MESSAGE"),
            user_text_message("two"),
            summary_message("SUMMARY")
        ])
    );
}

#[tokio::test]
async fn a_compaction_request_is_retried_like_any_other_with_retrying_events() {
    let upstream = MockServer::start().await;
    responses()
        .and(body_string_contains(SUMMARY_PROMPT_START))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&upstream)
        .await;
    mount_summary(&upstream, "SUMMARY", Duration::ZERO).await;
    mount_once(&upstream, sse_response(answer("resp_1", "first", 100))).await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    run_turn(&mut server, &session, "one").await;
    let turn = compact(&mut server, &session).await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "turnStarted",
            "retrying",
            "tokenUsage",
            "itemStarted",
            "itemCompleted",
            "contextCompacted",
            "turnCompleted"
        ]
    );
    assert_eq!(events[1]["attempt"], 1);
    assert_eq!(events[6]["status"], "completed");
}

#[tokio::test]
async fn the_auto_limit_defaults_to_ninety_percent_of_the_models_context_window() {
    let upstream = MockServer::start().await;
    mount_summary(&upstream, "SUMMARY", Duration::ZERO).await;
    // 899 of a 1,000-token window: no compaction yet; 900: compaction before the next turn.
    mount_once(&upstream, sse_response(answer("resp_1", "first", 899))).await;
    mount_once(&upstream, sse_response(answer("resp_2", "second", 900))).await;
    mount_once(&upstream, sse_response(answer("resp_3", "third", 10))).await;
    let mut server = api_key_builder(&upstream)
        .args(["-c", "models.gpt-5-codex.context_window=1000"])
        .spawn()
        .await;
    let session = new_session(&mut server, json!({})).await;
    for text in ["one", "two", "three"] {
        let done = completion(&run_turn(&mut server, &session, text).await);
        assert_eq!(done["status"], "completed", "{done}");
    }
    let summaries: Vec<bool> = responses_requests(&upstream)
        .await
        .iter()
        .map(is_summary_request)
        .collect();
    assert_eq!(summaries, vec![false, false, true, false]);
}

/// Runs one turn of `text` with `params`' per-turn settings; returns its events.
async fn run_turn_with(
    server: &mut TestServer,
    session: &str,
    text: &str,
    params: SubmitParams,
) -> Vec<Value> {
    let params = SubmitParams {
        session_id: Some(session.to_owned()),
        text: Some(text.to_owned()),
        ..params
    };
    let turn = submit_params(server, params).await;
    turn_events(server, &turn).await
}

fn with_model(model: &str) -> SubmitParams {
    SubmitParams {
        model: Some(model.to_owned()),
        ..SubmitParams::default()
    }
}

#[tokio::test]
async fn the_auto_limit_follows_the_model_a_turn_runs_with() {
    let upstream = MockServer::start().await;
    mount_summary(&upstream, "SUMMARY", Duration::ZERO).await;
    // Every answer reports 950 tokens: over 90 % of `small`'s 1,000, far under gpt-5-codex's.
    for (i, text) in ["first", "second", "third", "fourth"].iter().enumerate() {
        let id = format!("resp_{i}");
        mount_once(&upstream, sse_response(answer(&id, text, 950))).await;
    }
    let cwd = tempfile::tempdir().unwrap();
    let sub = cwd.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let mut server = api_key_builder(&upstream)
        .args(["-c", "models.small.context_window=1000"])
        .spawn()
        .await;
    let session = new_session(
        &mut server,
        json!({"cwd": cwd.path(), "model": "small", "approvalPolicy": "never"}),
    )
    .await;
    let first = run_turn(&mut server, &session, "one").await;
    assert_eq!(completion(&first)["status"], "completed");
    // gpt-5-codex for this turn (and the next): 950 tokens do not come near its window.
    let second = run_turn_with(&mut server, &session, "two", with_model("gpt-5-codex")).await;
    assert_eq!(completion(&second)["status"], "completed");
    let third = run_turn(&mut server, &session, "three").await;
    assert_eq!(completion(&third)["status"], "completed");
    // Back to `small`, in another cwd under another policy: compacted before the first request,
    // and the compacted history starts with the environment this turn runs in.
    let back = SubmitParams {
        cwd: Some(sub.display().to_string()),
        approval_policy: Some(ApprovalPolicy::OnFailure),
        ..with_model("small")
    };
    let fourth = just_events(&run_turn_with(&mut server, &session, "four", back).await);
    assert_eq!(fourth.last().unwrap()["status"], "completed", "{fourth:?}");
    assert_eq!(
        fourth
            .iter()
            .filter(|e| e["type"] == "contextCompacted")
            .count(),
        1
    );
    let requests = responses_requests(&upstream).await;
    let sent: Vec<(bool, &str)> = requests
        .iter()
        .map(|r| (is_summary_request(r), r["model"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        sent,
        vec![
            (false, "small"),
            (false, "gpt-5-codex"),
            (false, "gpt-5-codex"),
            (true, "small"),
            (false, "small"),
        ]
    );
    assert_eq!(
        requests[4]["input"],
        json!([
            environment_message(&sub, "onFailure", "workspaceWrite"),
            user_text_message("one"),
            user_text_message("two"),
            user_text_message("three"),
            summary_message("SUMMARY"),
            user_text_message("four"),
        ])
    );
}

#[tokio::test]
async fn a_resumed_compacted_session_sends_exactly_the_compacted_history() {
    let upstream = MockServer::start().await;
    mount_summary(&upstream, "SUMMARY", Duration::ZERO).await;
    mount_once(&upstream, sse_response(answer("resp_1", "first", 1_200))).await;
    mount_once(&upstream, sse_response(answer("resp_2", "second", 10))).await;
    mount_once(&upstream, sse_response(answer("resp_3", "third", 10))).await;
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let spawn = || {
        api_key_builder(&upstream)
            .home(home.path())
            .args(["-c", "model_auto_compact_token_limit=1000"])
            .spawn()
    };
    let mut first = spawn().await;
    let session = new_session(&mut first, json!({"cwd": cwd.path()})).await;
    for text in ["one", "two"] {
        let done = completion(&run_turn(&mut first, &session, text).await);
        assert_eq!(done["status"], "completed", "{done}");
    }
    first.close_stdin().await;
    assert!(first.wait_exit().await.success());

    let mut second = spawn().await;
    let reply = second
        .request_raw("session/resume", Some(json!({"sessionId": session})))
        .await;
    // The store keeps the full turns for reading, the first answer included.
    let turns = reply["result"]["turns"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(turns.len(), 2, "{reply}");
    assert!(turns[0]["items"].to_string().contains("first"), "{reply}");
    let done = completion(&run_turn(&mut second, &session, "three").await);
    assert_eq!(done["status"], "completed", "{done}");
    let requests = responses_requests(&upstream).await;
    let summaries: Vec<bool> = requests.iter().map(is_summary_request).collect();
    assert_eq!(summaries, vec![false, true, false, false]);
    // The model gets the compacted history it had before the restart, then the new input: no
    // context message again, nothing of what the summary replaced.
    let env = environment_message(cwd.path(), "untrusted", "workspaceWrite");
    let compacted = json!([env, user_text_message("one"), summary_message("SUMMARY")]);
    let after_compacting = requests[2]["input"].as_array().cloned().unwrap_or_default();
    assert_eq!(json!(after_compacting[..3]), compacted);
    let mut expected = compacted.as_array().cloned().unwrap_or_default();
    expected.extend([
        user_text_message("two"),
        assistant("second"),
        user_text_message("three"),
    ]);
    assert_eq!(requests[3]["input"], json!(expected));
}
