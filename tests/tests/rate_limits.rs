//! Section 12 of the contract, rate limits, end to end: the `x-codex-*` headers of model
//! responses and the `codex.rate_limits` stream event become `rateLimitsUpdated` events,
//! nonsense is ignored, `auth/rateLimits` answers from what the process saw or from the usage
//! endpoint (ChatGPT mode only, bounded when it is down), usage-limit errors carry the limits,
//! and `agent-server status` shows them.

use std::time::Duration;

use agent_server_tests::auth::{ChatGptAccount, api_key_auth_json};
use agent_server_tests::schema::auth::RateLimitsParams;
use agent_server_tests::schema::methods::RateLimitsRequest;
use agent_server_tests::turns::{completion, just_events, new_session, submit, turn_events};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_message_done, responses_usage, sse, sse_response,
};
use agent_server_tests::{TestServer, run_to_end};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// 2026-12-06T14:06:40Z.
const RESET: i64 = 1_796_566_000;
const RESET_TEXT: &str = "2026-12-06T14:06:40Z";

fn answer_with(extra: Option<Value>) -> String {
    let mut events = vec![ev_created("resp_1")];
    events.extend(extra);
    events.push(ev_message_done("msg_1", "ok"));
    events.push(ev_completed("resp_1", responses_usage(1, 0, 1, 0)));
    sse(events)
}

fn limit_headers(template: ResponseTemplate) -> ResponseTemplate {
    template
        .insert_header("x-codex-primary-used-percent", "72.5")
        .insert_header("x-codex-primary-window-minutes", "300")
        .insert_header("x-codex-primary-reset-at", RESET.to_string().as_str())
        .insert_header("x-codex-secondary-used-percent", "12")
        .insert_header("x-codex-secondary-window-minutes", "10080")
        .insert_header("x-codex-credits-has-credits", "true")
        .insert_header("x-codex-credits-unlimited", "false")
        .insert_header("x-codex-credits-balance", "9.50")
}

fn from_headers() -> Value {
    json!({
        "primary": {"usedPercent": 72.5, "windowMinutes": 300, "resetsAt": RESET_TEXT},
        "secondary": {"usedPercent": 12.0, "windowMinutes": 10080, "resetsAt": null},
        "credits": {"hasCredits": true, "unlimited": false, "balance": "9.50"},
        "planType": null,
    })
}

/// A ChatGPT-mode server whose model endpoint and usage endpoint are on `upstream`.
async fn chatgpt_server(upstream: &MockServer) -> TestServer {
    TestServer::builder()
        .home_file("auth.json", ChatGptAccount::default().fresh_auth_json())
        .args([
            "-c",
            &format!("chatgpt_base_url={}/backend-api/codex", upstream.uri()),
        ])
        .spawn()
        .await
}

fn responses() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path("/backend-api/codex/responses"))
}

fn usage_endpoint() -> wiremock::MockBuilder {
    Mock::given(method("GET")).and(path("/backend-api/wham/usage"))
}

async fn one_turn(server: &mut TestServer) -> Vec<Value> {
    let session = new_session(server, json!({})).await;
    let turn = submit(server, &session, "hi").await;
    just_events(&turn_events(server, &turn).await)
}

fn rate_limit_events(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "rateLimitsUpdated")
        .cloned()
        .collect()
}

#[tokio::test]
async fn headers_and_the_stream_event_become_rate_limit_events_and_the_latest_is_served() {
    let upstream = MockServer::start().await;
    let event = json!({"type": "codex.rate_limits", "plan_type": "plus",
        "rate_limits": {"primary": {"used_percent": 80, "window_minutes": 300, "reset_at": RESET}},
        "credits": {"has_credits": true, "unlimited": true, "balance": null}});
    responses()
        .respond_with(limit_headers(sse_response(answer_with(Some(event)))))
        .expect(1)
        .mount(&upstream)
        .await;
    usage_endpoint()
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&upstream)
        .await;
    let mut server = chatgpt_server(&upstream).await;
    let events = one_turn(&mut server).await;
    assert_eq!(completion_status(&events), "completed");
    let mut after_event = from_headers();
    after_event["primary"] =
        json!({"usedPercent": 80.0, "windowMinutes": 300, "resetsAt": RESET_TEXT});
    after_event["credits"] = json!({"hasCredits": true, "unlimited": true, "balance": null});
    after_event["planType"] = json!("plus");
    assert_eq!(
        rate_limit_events(&events),
        vec![
            json!({"type": "rateLimitsUpdated", "rateLimits": from_headers()}),
            json!({"type": "rateLimitsUpdated", "rateLimits": after_event}),
        ]
    );
    let reply = rate_limits(&mut server, false).await;
    let mut expected = after_event.clone();
    expected["error"] = Value::Null;
    assert_eq!(reply, expected, "{reply}");
}

/// The answer to `auth/rateLimits` (`refresh` as given), as JSON.
async fn rate_limits(server: &mut TestServer, refresh: bool) -> Value {
    match server
        .request::<RateLimitsRequest>(RateLimitsParams { refresh })
        .await
    {
        Ok(result) => json!(result),
        Err(error) => panic!("auth/rateLimits failed: {error:?}"),
    }
}

fn completion_status(events: &[Value]) -> String {
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(last["type"], "turnCompleted", "{last}");
    last["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn nonsense_headers_and_events_are_ignored_and_never_fail_the_turn() {
    let upstream = MockServer::start().await;
    let event = json!({"type": "codex.rate_limits", "rate_limits": {"primary": {"used_percent": "lots"}},
                       "credits": "none"});
    responses()
        .respond_with(
            sse_response(answer_with(Some(event)))
                .insert_header("x-codex-primary-used-percent", "-5")
                .insert_header("x-codex-primary-reset-at", "tomorrow")
                .insert_header("x-codex-secondary-used-percent", "NaN")
                .insert_header("x-codex-credits-has-credits", "perhaps"),
        )
        .mount(&upstream)
        .await;
    let mut server = chatgpt_server(&upstream).await;
    let events = one_turn(&mut server).await;
    assert_eq!(completion_status(&events), "completed", "{events:?}");
    assert_eq!(rate_limit_events(&events), Vec::<Value>::new());
}

#[tokio::test]
async fn rate_limits_come_from_the_usage_endpoint_with_the_login_when_none_were_seen() {
    let upstream = MockServer::start().await;
    let account = ChatGptAccount::default();
    let auth: Value = serde_json::from_str(&account.fresh_auth_json()).unwrap();
    let bearer = format!(
        "Bearer {}",
        auth["tokens"]["access_token"].as_str().unwrap()
    );
    usage_endpoint()
        .and(header("authorization", bearer.as_str()))
        .and(header("chatgpt-account-id", "acc-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "plan_type": "pro",
            "rate_limit": {
                "primary_window": {"used_percent": 42, "limit_window_seconds": 18000, "reset_at": RESET},
                "secondary_window": {"used_percent": 3.5, "limit_window_seconds": 604800, "reset_at": null}
            },
            "credits": {"has_credits": false, "unlimited": false, "balance": "0"}
        })))
        .expect(2)
        .mount(&upstream)
        .await;
    let mut server = chatgpt_server(&upstream).await;
    let expected = json!({
        "primary": {"usedPercent": 42.0, "windowMinutes": 300, "resetsAt": RESET_TEXT},
        "secondary": {"usedPercent": 3.5, "windowMinutes": 10080, "resetsAt": null},
        "credits": {"hasCredits": false, "unlimited": false, "balance": "0"},
        "planType": "pro", "error": null,
    });
    let reply = rate_limits(&mut server, false).await;
    assert_eq!(reply, expected, "{reply}");
    // Seen now: answered from memory, until a refresh is asked for.
    // (Without params at all, as a client may send it.)
    let again = server.request_raw("auth/rateLimits", None).await;
    assert_eq!(again["result"], expected, "{again}");
    let refreshed = rate_limits(&mut server, true).await;
    assert_eq!(refreshed, expected, "{refreshed}");
}

#[tokio::test]
async fn api_key_mode_answers_all_null_without_a_request() {
    let upstream = MockServer::start().await;
    usage_endpoint()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"plan_type": "plus"})))
        .expect(0)
        .mount(&upstream)
        .await;
    let mut server = TestServer::builder()
        .home_file("auth.json", api_key_auth_json("sk-file"))
        .args([
            "-c",
            &format!("chatgpt_base_url={}/backend-api/codex", upstream.uri()),
        ])
        .spawn()
        .await;
    let reply = rate_limits(&mut server, true).await;
    assert_eq!(
        reply,
        json!({"primary": null, "secondary": null, "credits": null, "planType": null, "error": null})
    );
}

#[tokio::test]
async fn a_down_usage_endpoint_answers_what_is_known_with_the_error() {
    let upstream = MockServer::start().await;
    responses()
        .respond_with(limit_headers(sse_response(answer_with(None))))
        .mount(&upstream)
        .await;
    usage_endpoint()
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&upstream)
        .await;
    // Then it hangs: the answer must not wait for it.
    usage_endpoint()
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(60)))
        .mount(&upstream)
        .await;
    let mut server = chatgpt_server(&upstream).await;
    let url = format!("{}/backend-api/wham/usage", upstream.uri());
    let reply = rate_limits(&mut server, false).await;
    assert_eq!(
        reply,
        json!({"primary": null, "secondary": null, "credits": null, "planType": null,
               "error": format!("the usage endpoint {url} answered HTTP 503 Service Unavailable: try again later")})
    );
    let events = one_turn(&mut server).await;
    assert_eq!(completion_status(&events), "completed");
    let reply = rate_limits(&mut server, true).await;
    let mut expected = from_headers();
    expected["error"] = json!(format!(
        "the usage endpoint {url} did not answer within 5 s: try again later"
    ));
    assert_eq!(reply, expected, "{reply}");
}

#[tokio::test]
async fn a_usage_limit_error_carries_the_rate_limits() {
    let upstream = MockServer::start().await;
    responses()
        .respond_with(limit_headers(ResponseTemplate::new(429).set_body_json(
            json!({
                "error": {"type": "usage_limit_reached", "message": "You've hit your usage limit.",
                          "plan_type": "plus", "resets_at": RESET}
            }),
        )))
        .expect(1)
        .mount(&upstream)
        .await;
    let mut server = chatgpt_server(&upstream).await;
    let session = new_session(&mut server, json!({})).await;
    let turn = submit(&mut server, &session, "hi").await;
    let done = completion(&turn_events(&mut server, &turn).await);
    assert_eq!(
        done["error"],
        json!({"kind": "usageLimitReached", "message": "You've hit your usage limit.",
               "httpStatus": 429, "resetsAt": RESET_TEXT, "planType": "plus",
               "rateLimits": from_headers()}),
        "{done}"
    );
}

#[tokio::test]
async fn status_shows_the_plans_limits_when_the_usage_endpoint_has_them() {
    let upstream = MockServer::start().await;
    usage_endpoint()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "plan_type": "plus",
            "rate_limit": {
                "primary_window": {"used_percent": 72, "limit_window_seconds": 18000, "reset_at": RESET},
                "secondary_window": {"used_percent": 10, "limit_window_seconds": 604800}
            },
            "credits": {"has_credits": true, "unlimited": false, "balance": "4.20"}
        })))
        .expect(1)
        .mount(&upstream)
        .await;
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("auth.json"),
        ChatGptAccount::default().fresh_auth_json(),
    )
    .unwrap();
    let home_arg = home.path().display().to_string();
    let base = format!("chatgpt_base_url={}/backend-api/codex", upstream.uri());
    let out = run_to_end(
        home.path(),
        &["--home", &home_arg, "-c", &base, "status"],
        &[],
        b"",
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let limits = out
        .stdout
        .lines()
        .filter(|l| l.contains("limit:") || l.contains("Credits:"))
        .collect::<Vec<_>>();
    assert_eq!(
        limits,
        vec![
            format!("  5-hour limit: 72% used, resets at {RESET_TEXT}"),
            "  Weekly limit: 10% used".to_owned(),
            "  Credits: 4.20".to_owned(),
        ],
        "{}",
        out.stdout
    );
}
