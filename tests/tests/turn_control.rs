//! Section 9's turn control end to end: per-turn settings on `session/submit` (checked at the
//! upstream request bodies, persisted as the contract says, refused before anything is queued
//! when unusable), `outputSchema` as `text.format`, and `session/steer` (the input joins the
//! running turn's next request, survives a racing interrupt, never a second `turnCompleted`).

use std::time::Duration;

use agent_server_tests::TestServer;
use agent_server_tests::schema::methods::{ListSessions, Steer};
use agent_server_tests::schema::rpc::ErrorKind;
use agent_server_tests::schema::session::{SteerParams, SteerResult};
use agent_server_tests::turns::{
    api_key_builder, completion, initialize, just_events, new_session, submit, turn_events,
};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_function_call, ev_message_done, mount_sse, mount_sse_once,
    responses_requests, responses_usage, sse, sse_response,
};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn answer(id: &str) -> String {
    sse([
        ev_created(id),
        ev_message_done(&format!("msg_{id}"), "done"),
        ev_completed(id, responses_usage(1, 0, 1, 0)),
    ])
}

/// A response asking for a `shell` run of `script`.
fn shell_call(call_id: &str, script: &str) -> String {
    sse([
        ev_created(&format!("resp_{call_id}")),
        ev_function_call(
            call_id,
            "shell",
            &json!({"command": ["sh", "-c", script]}).to_string(),
        ),
        ev_completed(&format!("resp_{call_id}"), responses_usage(1, 0, 1, 0)),
    ])
}

/// Submits with extra params; returns the turn id (panics on an error reply).
async fn submit_with(server: &mut TestServer, session: &str, text: &str, extra: Value) -> String {
    let mut params = json!({"sessionId": session, "text": text});
    if let (Some(params), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
        params.extend(extra.clone());
    }
    let reply = server.request_raw("session/submit", Some(params)).await;
    reply["result"]["turnId"]
        .as_str()
        .unwrap_or_else(|| panic!("session/submit failed: {reply}"))
        .to_owned()
}

/// The sessions `session/list` answers, as JSON.
async fn sessions(server: &mut TestServer) -> Vec<Value> {
    match server.request::<ListSessions>(Default::default()).await {
        Ok(listed) => listed.sessions.iter().map(|s| json!(s)).collect(),
        Err(error) => panic!("session/list failed: {error:?}"),
    }
}

/// `(model, reasoning, text)` of a request body: what the per-turn settings change upstream.
fn settings_sent(body: &Value) -> (Value, Value, Value) {
    (
        body["model"].clone(),
        body["reasoning"].clone(),
        body["text"].clone(),
    )
}

/// The text of every user message in a request's input, without the context messages
/// (environment, project instructions) the server puts first.
fn user_texts(body: &Value) -> Vec<String> {
    body["input"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| i["role"] == "user")
                .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
                .filter_map(|c| c["text"].as_str().map(str::to_owned))
                .filter(|t| {
                    !t.starts_with("<environment_context>") && !t.starts_with("# AGENTS.md")
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn overrides_apply_to_their_turn_and_persist_except_the_output_schema() {
    let upstream = MockServer::start().await;
    mount_sse(&upstream, answer("resp_a")).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({"cwd": dir.path()})).await;
    let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}},
                        "required": ["ok"], "additionalProperties": false});
    let first = submit_with(
        &mut server,
        &session,
        "one",
        json!({"model": "gpt-5", "reasoningEffort": "high", "approvalPolicy": "never",
               "sandbox": "readOnly", "cwd": "sub", "outputSchema": schema}),
    )
    .await;
    let first_events = just_events(&turn_events(&mut server, &first).await);
    let second = submit(&mut server, &session, "two").await;
    let second_events = just_events(&turn_events(&mut server, &second).await);
    let started = json!({"type": "turnStarted", "model": "gpt-5", "reasoningEffort": "high",
        "approvalPolicy": "never", "sandbox": "readOnly", "cwd": sub});
    assert_eq!((&first_events[0], &second_events[0]), (&started, &started));
    let bodies = responses_requests(&upstream).await;
    assert_eq!(
        bodies.iter().map(settings_sent).collect::<Vec<_>>(),
        vec![
            (
                json!("gpt-5"),
                json!({"effort": "high", "summary": "auto"}),
                json!({"verbosity": "medium", "format": {"type": "json_schema", "name": "output",
                       "schema": schema, "strict": true}})
            ),
            (
                json!("gpt-5"),
                json!({"effort": "high", "summary": "auto"}),
                json!({"verbosity": "medium"})
            ),
        ]
    );
    let list = sessions(&mut server).await;
    let info = &list[0];
    assert_eq!(
        (
            &info["model"],
            &info["approvalPolicy"],
            &info["sandbox"],
            &info["cwd"]
        ),
        (
            &json!("gpt-5"),
            &json!("never"),
            &json!("readOnly"),
            &json!(sub)
        )
    );
}

#[tokio::test]
async fn a_queued_turn_keeps_the_settings_it_was_submitted_with() {
    let upstream = MockServer::start().await;
    // The first turn's answer is slow, so the next two submits queue behind it.
    Mock::given(method("POST"))
        .and(path_regex(r"/responses$"))
        .respond_with(sse_response(answer("resp_slow")).set_delay(Duration::from_millis(600)))
        .up_to_n_times(1)
        .mount(&upstream)
        .await;
    mount_sse(&upstream, answer("resp_b")).await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({})).await;
    let first = submit(&mut server, &session, "one").await;
    let second = submit_with(&mut server, &session, "two", json!({"model": "gpt-5"})).await;
    let third = submit_with(
        &mut server,
        &session,
        "three",
        json!({"model": "gpt-5.1", "reasoningEffort": "low"}),
    )
    .await;
    let mut started = Vec::new();
    for turn in [&first, &second, &third] {
        let events = just_events(&turn_events(&mut server, turn).await);
        started.push((
            events[0]["model"].clone(),
            events[0]["reasoningEffort"].clone(),
        ));
    }
    let expected = vec![
        (json!("gpt-5-codex"), json!("medium")),
        (json!("gpt-5"), json!("medium")),
        (json!("gpt-5.1"), json!("low")),
    ];
    assert_eq!(started, expected);
    let sent: Vec<(Value, Value)> = responses_requests(&upstream)
        .await
        .iter()
        .map(|b| (b["model"].clone(), b["reasoning"]["effort"].clone()))
        .collect();
    assert_eq!(sent, expected);
}

#[tokio::test]
async fn unusable_overrides_are_refused_naming_the_field_before_anything_is_queued() {
    let upstream = MockServer::start().await;
    mount_sse(&upstream, answer("resp_c")).await;
    Mock::given(method("GET"))
        .and(path("/listing/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"id": "llama3"}]})))
        .mount(&upstream)
        .await;
    let config = format!(
        "[model_providers.listing]\nbase_url = \"{0}/listing/v1\"\nlist_models = true\n\
         [model_providers.unlisted]\nbase_url = \"{0}/unlisted/v1\"\nlist_models = true\n",
        upstream.uri()
    );
    let mut server = api_key_builder(&upstream)
        .home_file("config.toml", config)
        .spawn()
        .await;
    let plain = new_session(&mut server, json!({})).await;
    let listing = new_session(&mut server, json!({"modelProvider": "listing"})).await;
    let unlisted = new_session(&mut server, json!({"modelProvider": "unlisted"})).await;
    let cases = [
        (&plain, json!({"cwd": "/no/such/dir"}), "cwd"),
        (
            &plain,
            json!({"outputSchema": "an object please"}),
            "outputSchema",
        ),
        (&plain, json!({"outputSchema": [1]}), "outputSchema"),
        (
            &plain,
            json!({"reasoningEffort": "extreme"}),
            "reasoningEffort",
        ),
        (
            &plain,
            json!({"approvalPolicy": "sometimes"}),
            "approvalPolicy",
        ),
        (&plain, json!({"model": ""}), "model"),
        (&listing, json!({"model": "gpt-9"}), "model"),
    ];
    for (session, extra, field) in cases {
        let mut params = json!({"sessionId": session, "text": "x"});
        if let (Some(params), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
            params.extend(extra.clone());
        }
        let reply = server.request_raw("session/submit", Some(params)).await;
        assert_eq!(
            (&reply["error"]["code"], &reply["error"]["data"]["field"]),
            (&json!(-32602), &json!(field)),
            "{extra}: {reply}"
        );
        if field == "model" && session == &listing {
            let message = reply["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("gpt-9")
                    && message.contains(&format!("GET {}/listing/v1/models", upstream.uri()))
                    && message.contains("llama3"),
                "{message}"
            );
        }
    }
    assert_eq!(responses_requests(&upstream).await, Vec::<Value>::new());
    let list = sessions(&mut server).await;
    let statuses: Vec<&Value> = list.iter().map(|s| &s["status"]).collect();
    assert_eq!(statuses, vec![&json!("idle"); 3]);
    // A listed model passes; a provider whose list cannot be had lets any model through.
    for (session, model) in [(&listing, "llama3"), (&unlisted, "anything-goes")] {
        let turn = submit_with(&mut server, session, "x", json!({"model": model})).await;
        turn_events(&mut server, &turn).await;
    }
}

/// A server whose first response runs `sleep` under the `never` policy, then answers.
async fn busy_server(upstream: &MockServer, seconds: &str) -> (TestServer, String, String) {
    mount_sse_once(
        upstream,
        shell_call("call_busy", &format!("sleep {seconds}")),
    )
    .await;
    mount_sse(upstream, answer("resp_after")).await;
    let mut server = api_key_builder(upstream).spawn().await;
    initialize(&mut server, false).await;
    let session = new_session(
        &mut server,
        json!({"approvalPolicy": "never", "sandbox": "workspaceWrite"}),
    )
    .await;
    let turn = submit(&mut server, &session, "work").await;
    server
        .wait_for_notification("session/event", |p| {
            p["turnId"] == turn && p["event"]["type"] == "itemStarted"
        })
        .await;
    (server, session, turn)
}

#[tokio::test]
async fn steered_input_joins_the_running_turn_at_its_next_request() {
    let upstream = MockServer::start().await;
    let (mut server, session, turn) = busy_server(&upstream, "0.5").await;
    let reply = server
        .request::<Steer>(SteerParams {
            session_id: session.clone(),
            text: Some("also do X".into()),
            expected_turn_id: Some(turn.clone()),
            ..SteerParams::default()
        })
        .await;
    assert_eq!(
        reply,
        Ok(SteerResult {
            turn_id: turn.clone()
        })
    );
    let events = just_events(&turn_events(&mut server, &turn).await);
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| e["type"].as_str())
        .filter(|k| *k != "tokenUsage")
        .collect();
    // (The command's itemStarted was taken while waiting for the turn to be busy.)
    assert_eq!(
        kinds,
        vec![
            "turnStarted",
            "itemCompleted",
            "inputAdded",
            "itemStarted",
            "itemCompleted",
            "turnCompleted"
        ]
    );
    let added = events.iter().find(|e| e["type"] == "inputAdded").cloned();
    assert_eq!(
        added,
        Some(json!({"type": "inputAdded", "input": [{"type": "text", "text": "also do X"}]}))
    );
    assert_eq!(completion_of(&events), "completed");
    let bodies = responses_requests(&upstream).await;
    assert_eq!(bodies.len(), 2);
    assert!(!user_texts(&bodies[0]).contains(&"also do X".to_owned()));
    // After the tool output, so the call and its output stay together.
    let input = bodies[1]["input"].as_array().unwrap();
    let output_at = input
        .iter()
        .position(|i| i["type"] == "function_call_output")
        .unwrap();
    let steer_at = input
        .iter()
        .position(|i| i["role"] == "user" && i["content"][0]["text"] == "also do X")
        .unwrap();
    assert!(output_at < steer_at, "{input:?}");
}

fn completion_of(events: &[Value]) -> &str {
    events
        .last()
        .and_then(|e| e["status"].as_str())
        .unwrap_or_default()
}

#[tokio::test]
async fn steer_errors_name_the_state_or_the_field() {
    let upstream = MockServer::start().await;
    let (mut server, session, turn) = busy_server(&upstream, "0.5").await;
    let cases = [
        (
            json!({"sessionId": session, "text": "x", "expectedTurnId": "other"}),
            -32002,
            "turnMismatch",
        ),
        (
            json!({"sessionId": session, "text": ""}),
            -32602,
            "invalidParams",
        ),
        (
            json!({"sessionId": session, "input": []}),
            -32602,
            "invalidParams",
        ),
        (
            json!({"sessionId": "no-such", "text": "x"}),
            -32602,
            "sessionNotFound",
        ),
    ];
    for (params, code, kind) in cases {
        let reply = server
            .request_raw("session/steer", Some(params.clone()))
            .await;
        assert_eq!(
            (&reply["error"]["code"], &reply["error"]["data"]["kind"]),
            (&json!(code), &json!(kind)),
            "{params}: {reply}"
        );
    }
    completion(&turn_events(&mut server, &turn).await);
    let reply = server
        .request::<Steer>(SteerParams {
            session_id: session.clone(),
            text: Some("late".into()),
            ..SteerParams::default()
        })
        .await;
    assert_eq!(
        reply.map_err(|e| (e.code, e.data.kind)),
        Err((-32002, ErrorKind::NoRunningTurn))
    );
    // Nothing the refused steers carried reached the model.
    let bodies = responses_requests(&upstream).await;
    assert!(
        bodies
            .iter()
            .all(|b| user_texts(b) == vec!["work".to_owned()])
    );
}

#[tokio::test]
async fn steered_input_a_racing_interrupt_left_unsent_starts_the_next_turn() {
    let upstream = MockServer::start().await;
    let (mut server, session, turn) = busy_server(&upstream, "30").await;
    let steer = server
        .send_request(
            "session/steer",
            Some(json!({"sessionId": session, "text": "then do Y"})),
        )
        .await;
    let interrupt = server
        .send_request("session/interrupt", Some(json!({"sessionId": session})))
        .await;
    let steer_reply = server.wait_for_response(steer).await;
    assert_eq!(
        steer_reply["result"],
        json!({"turnId": turn}),
        "{steer_reply}"
    );
    server.wait_for_response(interrupt).await;
    let first = just_events(&turn_events(&mut server, &turn).await);
    assert_eq!(completion_of(&first), "interrupted");
    // The steered input was never sent: it runs as the next turn, with its own start and end.
    let next = server
        .wait_for_notification("session/event", |p| {
            p["turnId"] != turn && p["event"]["type"] == "turnStarted"
        })
        .await;
    let next_turn = next["params"]["turnId"].as_str().unwrap().to_owned();
    let second = just_events(&turn_events(&mut server, &next_turn).await);
    assert_eq!(completion_of(&second), "completed");
    let bodies = responses_requests(&upstream).await;
    assert_eq!(
        bodies.iter().map(user_texts).collect::<Vec<_>>(),
        vec![
            vec!["work".to_owned()],
            vec!["work".to_owned(), "then do Y".to_owned()]
        ]
    );
    // Exactly one turnCompleted for each turn: nothing else is left when the server exits.
    let list = sessions(&mut server).await;
    assert_eq!(list[0]["status"], "idle");
    server.close_stdin().await;
    let rest: Vec<Value> = server
        .read_to_end()
        .await
        .into_iter()
        .filter(|m| m["params"]["event"]["type"] == "turnCompleted")
        .collect();
    assert_eq!(rest, Vec::<Value>::new());
    assert_eq!(completion_of(&second), "completed");
}
