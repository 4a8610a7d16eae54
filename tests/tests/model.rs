//! Section 5 of the contract end to end: the headers and body of a model call, and image inputs.

use agent_server_tests::schema::methods::Submit;
use agent_server_tests::schema::session::{InputItem, SubmitParams};
use agent_server_tests::turns::{
    api_key_builder, completion, conversation_input, new_session, submit, turn_events,
};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_message_done, mount_sse, responses_requests, responses_usage, sse,
};
use base64::Engine;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::MockServer;

async fn upstream() -> MockServer {
    let upstream = MockServer::start().await;
    mount_sse(
        &upstream,
        sse([
            ev_created("resp_1"),
            ev_message_done("msg_1", "ok"),
            ev_completed("resp_1", responses_usage(1, 0, 1, 0)),
        ]),
    )
    .await;
    upstream
}

#[tokio::test]
async fn a_model_call_carries_the_contract_headers_and_body_fields() {
    let upstream = upstream().await;
    let mut server = api_key_builder(&upstream)
        .env("OPENAI_ORGANIZATION", "org-1")
        .env("OPENAI_PROJECT", "proj-1")
        .spawn()
        .await;
    let session = new_session(&mut server, json!({})).await;
    let turn = submit(&mut server, &session, "hi").await;
    assert_eq!(
        completion(&turn_events(&mut server, &turn).await)["status"],
        "completed"
    );
    let requests = upstream.received_requests().await.unwrap_or_default();
    let header = |name: &str| {
        requests[0]
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        [
            "authorization",
            "originator",
            "session_id",
            "accept",
            "openai-organization",
            "openai-project",
            "chatgpt-account-id",
        ]
        .map(header),
        [
            Some("Bearer test".to_owned()),
            Some("agent-server".to_owned()),
            Some(session.clone()),
            Some("text/event-stream".to_owned()),
            Some("org-1".to_owned()),
            Some("proj-1".to_owned()),
            None,
        ]
    );
    assert_eq!(requests[0].url.path(), "/v1/responses");
    let body = &responses_requests(&upstream).await[0];
    let fields: Vec<Value> = [
        "model",
        "tool_choice",
        "parallel_tool_calls",
        "store",
        "stream",
        "include",
        "reasoning",
    ]
    .iter()
    .map(|k| body[*k].clone())
    .collect();
    assert_eq!(
        fields,
        vec![
            json!("gpt-5-codex"),
            json!("auto"),
            json!(false),
            json!(false),
            json!(true),
            json!(["reasoning.encrypted_content"]),
            json!({"effort": "medium", "summary": "auto"}),
        ]
    );
    // gpt-5-codex was trained on the freeform patch tool and the one-string shell tool.
    let tools: Vec<(&Value, &Value)> = body["tools"]
        .as_array()
        .map(|t| t.iter().map(|t| (&t["type"], &t["name"])).collect())
        .unwrap_or_default();
    assert_eq!(
        tools,
        vec![
            (&json!("function"), &json!("shell_command")),
            (&json!("custom"), &json!("apply_patch")),
            (&json!("function"), &json!("update_plan"))
        ]
    );
}

#[tokio::test]
async fn image_inputs_become_input_image_parts() {
    let upstream = upstream().await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("pixel.png");
    let bytes = b"\x89PNG\r\n\x1a\nnot really";
    std::fs::write(&png, bytes).unwrap();
    let session = new_session(&mut server, json!({})).await;
    let reply = server
        .request::<Submit>(SubmitParams {
            session_id: Some(session),
            input: Some(vec![
                InputItem::Text {
                    text: "look".into(),
                },
                InputItem::Image {
                    url: "https://example.com/a.png".into(),
                },
                InputItem::LocalImage {
                    path: png.display().to_string(),
                },
            ]),
            ..SubmitParams::default()
        })
        .await;
    let turn = reply
        .unwrap_or_else(|e| panic!("session/submit failed: {e:?}"))
        .turn_id;
    assert_eq!(
        completion(&turn_events(&mut server, &turn).await)["status"],
        "completed"
    );
    let body = &responses_requests(&upstream).await[0];
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    assert_eq!(
        conversation_input(body),
        json!([{"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "https://example.com/a.png"},
            {"type": "input_image", "image_url": format!("data:image/png;base64,{data}")},
        ]}])
    );
}
