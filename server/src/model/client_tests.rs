//! Tests of the model client against a mock upstream: routing, headers, bodies, replay.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::model::auth::{CredentialError, CredentialMode};
use crate::model::provider::resolve_provider_with_env;
use crate::model::testkit::{
    AFTER_SHELL_CALL_REQUEST, FixedAuth, TEXT_ANSWER, config, creds, env_of, ok_body, ok_events,
    sse, upstream,
};
use agent_server_schema::session::TurnErrorKind;

const SESSION: &str = "0199a213-81c0-7800-8aa1-bbab2a035a53";
/// Guards tests that must finish promptly; far longer than any of them needs.
const GUARD: Duration = Duration::from_secs(30);

fn request() -> ModelRequest {
    let fixture: Value = serde_json::from_str(AFTER_SHELL_CALL_REQUEST).unwrap();
    ModelRequest {
        session_id: SESSION.into(),
        model: "gpt-5-codex".into(),
        instructions: "You are a coding agent.".into(),
        input: serde_json::from_value(fixture["input"].clone()).unwrap(),
        tools: fixture["tools"].as_array().unwrap().clone(),
        reasoning_effort: Some("medium".into()),
        previous_response_id: None,
        user_agent: "agent-server/0.1.0 (test)".into(),
        output_schema: None,
    }
}

fn settings() -> ClientSettings {
    ClientSettings {
        originator: "agent-server".into(),
        chatgpt_base_url: "http://127.0.0.1:9/unused".into(),
        store: false,
        sse_fixture: None,
        // Zero backoff keeps retries instant and their announced delays exact.
        backoff_base: Duration::ZERO,
        rate_limits: crate::model::RateLimitTracker::default(),
    }
}

fn openai_at(base_url: Option<String>) -> Provider {
    let mut provider = resolve_provider_with_env(&config(), "openai", &env_of(&[])).unwrap();
    provider.base_url = base_url;
    provider
}

fn client(
    provider: Provider,
    auth: Option<Arc<FixedAuth>>,
    settings: ClientSettings,
) -> ModelClient {
    let auth = auth.map(|a| a as Arc<dyn UpstreamAuth>);
    ModelClient::new(settings, provider, auth, reqwest::Client::new())
}

fn api_key_auth() -> Arc<FixedAuth> {
    Arc::new(FixedAuth::new(
        vec![Ok(creds(CredentialMode::ApiKey, "sk-test"))],
        vec![],
    ))
}

async fn run(client: &ModelClient) -> Vec<Result<ResponseEvent, ModelError>> {
    let stream = client.stream(request(), CancellationToken::new());
    tokio::time::timeout(GUARD, stream.collect()).await.unwrap()
}

fn ok_all(events: Vec<ResponseEvent>) -> Vec<Result<ResponseEvent, ModelError>> {
    events.into_iter().map(Ok).collect()
}

fn retrying(
    attempt: u32,
    max_attempts: u32,
    delay_ms: u64,
    message: &str,
) -> Result<ResponseEvent, ModelError> {
    Ok(ResponseEvent::Retrying {
        attempt,
        max_attempts,
        delay: Duration::from_millis(delay_ms),
        message: message.into(),
    })
}

/// Method, path, query, the headers this client sets, and the body, as one JSON value.
fn seen(request: &wiremock::Request) -> Value {
    let headers: BTreeMap<String, String> = request
        .headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "host" | "content-length"))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string()))
        .collect();
    json!({
        "method": request.method.to_string(),
        "path": request.url.path(),
        "query": request.url.query(),
        "headers": headers,
        "body": request.body_json::<Value>().unwrap(),
    })
}

async fn seen_all(server: &wiremock::MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(seen)
        .collect()
}

fn text_answer_events() -> Vec<ResponseEvent> {
    let pieces: Vec<Result<Vec<u8>, std::convert::Infallible>> =
        vec![Ok(TEXT_ANSWER.as_bytes().to_vec())];
    futures::executor::block_on(
        crate::model::sse::responses_events(futures::stream::iter(pieces))
            .map(|r| r.unwrap())
            .collect(),
    )
}

#[tokio::test]
async fn chatgpt_mode_sends_the_contract_request() {
    let (server, _) = upstream(vec![sse(TEXT_ANSWER)]).await;
    let auth = Arc::new(FixedAuth::new(
        vec![Ok(creds(CredentialMode::ChatGpt, "tok-chatgpt"))],
        vec![],
    ));
    let settings = ClientSettings {
        chatgpt_base_url: format!("{}/backend-api/codex", server.uri()),
        // Ignored in ChatGPT mode.
        store: true,
        ..settings()
    };
    let client = client(openai_at(None), Some(auth), settings);
    assert_eq!(run(&client).await, ok_all(text_answer_events()));
    let mut body: Value = serde_json::from_str(AFTER_SHELL_CALL_REQUEST).unwrap();
    body["store"] = json!(false);
    assert_eq!(
        seen_all(&server).await,
        vec![json!({
            "method": "POST",
            "path": "/backend-api/codex/responses",
            "query": null,
            "headers": {
                "accept": "text/event-stream",
                "authorization": "Bearer tok-chatgpt",
                "chatgpt-account-id": "acct_1",
                "content-type": "application/json",
                "originator": "agent-server",
                "session_id": SESSION,
                "user-agent": "agent-server/0.1.0 (test)",
            },
            "body": body,
        })]
    );
    assert!(!client.store_enabled().await);
}

#[tokio::test]
async fn api_key_mode_with_store_sends_previous_response_id() {
    let (server, _) = upstream(vec![sse(&ok_body("resp_2"))]).await;
    let mut provider = openai_at(Some(format!("{}/v1", server.uri())));
    provider.query_params = BTreeMap::from([("api-version".into(), "2025-01-01".into())]);
    provider.headers = BTreeMap::from([("OpenAI-Project".into(), "proj_1".into())]);
    let client = client(
        provider,
        Some(api_key_auth()),
        ClientSettings {
            store: true,
            ..settings()
        },
    );
    let mut req = request();
    req.previous_response_id = Some("resp_1".into());
    req.input.truncate(1);
    req.reasoning_effort = Some("none".into());
    req.model = "o4-mini".into();
    let events: Vec<_> = client.stream(req, CancellationToken::new()).collect().await;
    assert_eq!(events, ok_all(ok_events("resp_2")));
    assert!(client.store_enabled().await);
    let fixture: Value = serde_json::from_str(AFTER_SHELL_CALL_REQUEST).unwrap();
    assert_eq!(
        seen_all(&server).await,
        vec![json!({
            "method": "POST",
            "path": "/v1/responses",
            "query": "api-version=2025-01-01",
            "headers": {
                "accept": "text/event-stream",
                "authorization": "Bearer sk-test",
                "content-type": "application/json",
                "openai-project": "proj_1",
                "originator": "agent-server",
                "session_id": SESSION,
                "user-agent": "agent-server/0.1.0 (test)",
            },
            "body": {
                "model": "o4-mini",
                "instructions": "You are a coding agent.",
                "input": [fixture["input"][0]],
                "tools": fixture["tools"],
                "tool_choice": "auto",
                "parallel_tool_calls": false,
                "store": true,
                "stream": true,
                "prompt_cache_key": SESSION,
                "previous_response_id": "resp_1",
            },
        })]
    );
}

#[test]
fn default_endpoints_by_mode_and_wire_api() {
    use crate::model::request::endpoint;
    let mut chat = openai_at(None);
    chat.wire_api = crate::config::WireApi::Chat;
    let urls: Vec<String> = [
        (openai_at(None), Some(CredentialMode::ApiKey)),
        (openai_at(None), Some(CredentialMode::ChatGpt)),
        (
            openai_at(Some("http://proxy.local/v1".into())),
            Some(CredentialMode::ChatGpt),
        ),
        (chat, None),
    ]
    .iter()
    .map(|(p, mode)| {
        endpoint(p, *mode, crate::config::DEFAULT_CHATGPT_BASE_URL)
            .unwrap()
            .to_string()
    })
    .collect();
    assert_eq!(
        urls,
        vec![
            "https://api.openai.com/v1/responses",
            "https://chatgpt.com/backend-api/codex/responses",
            "http://proxy.local/v1/responses",
            "https://api.openai.com/v1/chat/completions",
        ]
    );
}

fn local_provider(
    base_url: String,
    key: Option<&str>,
    wire_api: crate::config::WireApi,
) -> Provider {
    let mut cfg = config();
    cfg.model_providers.insert(
        "local".into(),
        crate::config::ProviderConfig {
            base_url: Some(base_url),
            env_key: key.map(|_| "LOCAL_KEY".to_string()),
            wire_api: Some(wire_api),
            requires_auth: Some(false),
            ..Default::default()
        },
    );
    let env = env_of(&[("LOCAL_KEY", key.unwrap_or_default())]);
    resolve_provider_with_env(&cfg, "local", &env).unwrap()
}

#[tokio::test]
async fn custom_provider_with_env_key_uses_it_and_not_openai_auth() {
    let (server, _) = upstream(vec![sse(&ok_body("r"))]).await;
    let provider = local_provider(
        format!("{}/v1", server.uri()),
        Some("sk-local"),
        Default::default(),
    );
    let auth = api_key_auth();
    let client = client(provider, Some(auth.clone()), settings());
    assert_eq!(run(&client).await, ok_all(ok_events("r")));
    let seen = seen_all(&server).await;
    assert_eq!(
        (
            seen[0]["path"].clone(),
            seen[0]["headers"]["authorization"].clone(),
            auth.calls()
        ),
        (json!("/v1/responses"), json!("Bearer sk-local"), (0, 0))
    );
}

#[tokio::test]
async fn custom_chat_provider_without_auth_streams_like_responses() {
    let chat = include_str!("testdata/chat_text_and_tool.sse");
    let twin = include_str!("testdata/chat_text_and_tool.responses.sse");
    let (server, _) = upstream(vec![sse(chat)]).await;
    let provider = local_provider(
        format!("{}/v1", server.uri()),
        None,
        crate::config::WireApi::Chat,
    );
    let client = client(provider, None, settings());
    let events = run(&client).await;
    let pieces: Vec<Result<Vec<u8>, std::convert::Infallible>> = vec![Ok(twin.as_bytes().to_vec())];
    let expected: Vec<Result<ResponseEvent, ModelError>> =
        crate::model::sse::responses_events(futures::stream::iter(pieces))
            .map(|r| r.map_err(|f| ModelError::Internal(format!("{f:?}"))))
            .collect()
            .await;
    assert_eq!(events, expected);
    let seen = seen_all(&server).await;
    assert_eq!(
        (
            seen[0]["path"].clone(),
            seen[0]["headers"].get("authorization").cloned(),
            seen[0]["body"]["messages"][0].clone()
        ),
        (
            json!("/v1/chat/completions"),
            None,
            json!({"role": "system", "content": "You are a coding agent."})
        )
    );
    assert!(!client.store_enabled().await);
}

#[tokio::test]
async fn credential_errors_map_to_kinds() {
    let cases = [
        (None, TurnErrorKind::AuthRequired),
        (
            Some(CredentialError::NotLoggedIn),
            TurnErrorKind::AuthRequired,
        ),
        (
            Some(CredentialError::Unusable("auth.json line 3: bad".into())),
            TurnErrorKind::AuthRequired,
        ),
        (
            Some(CredentialError::LoginRequired("log in again".into())),
            TurnErrorKind::LoginRequired,
        ),
    ];
    let mut got = Vec::new();
    for (error, _) in &cases {
        let auth = error
            .clone()
            .map(|e| Arc::new(FixedAuth::new(vec![Err(e)], vec![])));
        let client = client(
            openai_at(Some("http://127.0.0.1:9/v1".into())),
            auth,
            settings(),
        );
        let events = run(&client).await;
        got.push(
            events
                .iter()
                .map(|e| e.clone().map_err(|e| e.turn_error_kind()))
                .collect::<Vec<_>>(),
        );
    }
    let want: Vec<Vec<Result<ResponseEvent, TurnErrorKind>>> =
        cases.iter().map(|(_, k)| vec![Err(*k)]).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn transient_refresh_failure_is_retried_then_succeeds() {
    let (server, _) = upstream(vec![sse(&ok_body("r"))]).await;
    let auth = Arc::new(FixedAuth::new(
        vec![
            Err(CredentialError::Transient("issuer answered 502".into())),
            Ok(creds(CredentialMode::ApiKey, "sk-test")),
        ],
        vec![],
    ));
    let client = client(
        openai_at(Some(server.uri())),
        Some(auth.clone()),
        settings(),
    );
    let mut expected = vec![retrying(
        1,
        4,
        0,
        "could not refresh the login: issuer answered 502",
    )];
    expected.extend(ok_all(ok_events("r")));
    assert_eq!(run(&client).await, expected);
    assert_eq!(auth.calls(), (2, 0));
}

#[path = "client_retry_tests.rs"]
mod retry_tests;

#[test]
fn client_and_its_stream_can_cross_threads() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    fn sendable<T: Send + 'static>(_: &T) {}
    shareable::<ModelClient>();
    let client = client(openai_at(None), None, settings());
    sendable(&client.stream(request(), CancellationToken::new()));
}
