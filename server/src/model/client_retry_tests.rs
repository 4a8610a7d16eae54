//! The failure policy end to end: HTTP and stream retries, errors that are final, 401
//! recovery, idle streams, interrupts, and replay.

use chrono::DateTime;
use wiremock::ResponseTemplate;

use super::*;
use crate::model::testkit::{
    AFTER_SHELL_CALL, SHELL_CALL, StallServer, ev_created, ev_failed, ev_text_delta, http_error,
};
use pretty_assertions::assert_eq;

fn api_key_client(server_uri: &str) -> ModelClient {
    client(
        openai_at(Some(server_uri.to_string())),
        Some(api_key_auth()),
        settings(),
    )
}

fn retry_ms(template: ResponseTemplate) -> ResponseTemplate {
    template.insert_header("retry-after-ms", "1")
}

/// An error's contract fields, for comparing whole.
fn fields(error: &ModelError) -> Value {
    json!({
        "kind": error.turn_error_kind(),
        "message": error.to_string(),
        "httpStatus": error.http_status(),
        "resetsAt": error.resets_at().map(|t| t.to_rfc3339()),
        "planType": error.plan_type(),
    })
}

#[tokio::test]
async fn http_5xx_and_429_are_retried_with_the_hinted_waits() {
    let (server, _) = upstream(vec![
        retry_ms(http_error(503, json!({"error": {"message": "overloaded"}}))),
        http_error(429, json!({"error": {"code": "rate_limit_exceeded", "message": "Please try again in 2ms."}})),
        http_error(500, json!({"error": {"message": "oops"}})).insert_header("retry-after", "0"),
        sse(&ok_body("r")),
    ])
    .await;
    let mut expected = vec![
        retrying(1, 4, 1, "the model endpoint answered HTTP 503: overloaded"),
        retrying(
            2,
            4,
            2,
            "the model endpoint answered HTTP 429: Please try again in 2ms.",
        ),
        retrying(3, 4, 0, "the model endpoint answered HTTP 500: oops"),
    ];
    expected.extend(ok_all(ok_events("r")));
    assert_eq!(run(&api_key_client(&server.uri())).await, expected);
    assert_eq!(server.received_requests().await.unwrap().len(), 4);
}

#[tokio::test]
async fn http_retries_exhausted() {
    let (server, _) = upstream(vec![retry_ms(http_error(
        502,
        json!({"error": {"message": "bad gateway"}}),
    ))])
    .await;
    let (limited, _) = upstream(vec![retry_ms(http_error(
        429,
        json!({"error": {"code": "rate_limit_exceeded", "message": "slow down"}}),
    ))])
    .await;
    let mut provider = openai_at(Some(server.uri()));
    provider.request_max_retries = 2;
    let events = run(&client(provider.clone(), Some(api_key_auth()), settings())).await;
    provider.base_url = Some(limited.uri());
    let limited_events = run(&client(provider, Some(api_key_auth()), settings())).await;
    let last = |events: &[Result<ResponseEvent, ModelError>]| match events.last() {
        Some(Err(e)) => fields(e),
        other => json!(format!("{other:?}")),
    };
    assert_eq!(
        (
            events.len(),
            last(&events),
            limited_events.len(),
            last(&limited_events)
        ),
        (
            3,
            json!({"kind": "upstream", "message": "the model endpoint answered HTTP 502: bad gateway; retries exhausted",
                   "httpStatus": 502, "resetsAt": null, "planType": null}),
            3,
            json!({"kind": "rateLimited", "message": "the model endpoint answered HTTP 429: slow down; retries exhausted",
                   "httpStatus": 429, "resetsAt": null, "planType": null}),
        )
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn connect_errors_are_retried_then_reported_without_status() {
    // A port that was free a moment ago refuses connections.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut provider = openai_at(Some(format!("http://127.0.0.1:{port}/v1")));
    provider.request_max_retries = 1;
    let events = run(&client(provider, Some(api_key_auth()), settings())).await;
    let summary: Vec<Value> = events
        .iter()
        .map(|e| match e {
            Ok(ResponseEvent::Retrying {
                attempt, message, ..
            }) => json!([
                attempt,
                message.starts_with("could not reach the model endpoint")
            ]),
            Err(e) => json!([e.turn_error_kind(), e.http_status()]),
            other => json!(format!("{other:?}")),
        })
        .collect();
    assert_eq!(summary, vec![json!([1, true]), json!(["upstream", null])]);
}

#[tokio::test]
async fn final_http_errors_are_not_retried() {
    let cases = [
        http_error(
            429,
            json!({"error": {"type": "usage_limit_reached", "message": "You've hit your usage limit.",
            "plan_type": "plus", "resets_at": 1_760_003_600}}),
        ),
        http_error(
            429,
            json!({"error": {"code": "insufficient_quota", "message": "You exceeded your current quota."}}),
        ),
        http_error(
            400,
            json!({"error": {"code": "context_length_exceeded", "message": "Input is too long."}}),
        ),
        http_error(
            404,
            json!({"error": {"message": "The model `x` does not exist."}}),
        ),
    ];
    let mut got = Vec::new();
    for template in cases {
        let (server, _) = upstream(vec![template]).await;
        let events = run(&api_key_client(&server.uri())).await;
        got.push(match events.as_slice() {
            [Err(e)] => fields(e),
            other => json!(format!("{other:?}")),
        });
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }
    let resets = DateTime::from_timestamp(1_760_003_600, 0)
        .unwrap()
        .to_rfc3339();
    assert_eq!(
        got,
        vec![
            json!({"kind": "usageLimitReached", "message": "You've hit your usage limit.", "httpStatus": 429,
                   "resetsAt": resets, "planType": "plus"}),
            json!({"kind": "quotaExceeded", "message": "the model endpoint answered HTTP 429: You exceeded your current quota.",
                   "httpStatus": 429, "resetsAt": null, "planType": null}),
            json!({"kind": "contextWindowExceeded", "message": "the model endpoint answered HTTP 400: Input is too long.",
                   "httpStatus": 400, "resetsAt": null, "planType": null}),
            json!({"kind": "upstream", "message": "the model endpoint answered HTTP 404: The model `x` does not exist.",
                   "httpStatus": 404, "resetsAt": null, "planType": null}),
        ]
    );
}

#[tokio::test]
async fn stream_failures_are_retried_from_the_start() {
    let cut = [ev_created("r1"), ev_text_delta("msg_1", "par")].concat();
    let (server, _) = upstream(vec![
        sse(&cut),
        sse(&[ev_created("r2"), ev_failed("server_error", "hiccup")].concat()),
        sse(&ev_failed(
            "rate_limit_exceeded",
            "Rate limit reached. Please try again in 3ms.",
        )),
        sse(&ok_body("r4")),
    ])
    .await;
    let mut expected = vec![
        Ok(ResponseEvent::Created {
            response_id: Some("r1".into()),
        }),
        Ok(ResponseEvent::OutputTextDelta {
            item_id: "msg_1".into(),
            delta: "par".into(),
        }),
        retrying(1, 5, 0, "the model stream closed before response.completed"),
        Ok(ResponseEvent::Created {
            response_id: Some("r2".into()),
        }),
        retrying(2, 5, 0, "the model stream failed: hiccup"),
        retrying(
            3,
            5,
            3,
            "the model stream failed: Rate limit reached. Please try again in 3ms.",
        ),
    ];
    expected.extend(ok_all(ok_events("r4")));
    assert_eq!(run(&api_key_client(&server.uri())).await, expected);
}

#[tokio::test]
async fn stream_retries_exhausted_and_final_stream_errors() {
    let (cut, _) = upstream(vec![sse(&ev_created("r"))]).await;
    let mut provider = openai_at(Some(cut.uri()));
    provider.stream_max_retries = 1;
    let exhausted = run(&client(provider, Some(api_key_auth()), settings())).await;
    let (failed, _) = upstream(vec![sse(&ev_failed("context_length_exceeded", "too long"))]).await;
    let final_error = run(&api_key_client(&failed.uri())).await;
    let created = || {
        Ok(ResponseEvent::Created {
            response_id: Some("r".into()),
        })
    };
    assert_eq!(
        (exhausted, final_error),
        (
            vec![
                created(),
                retrying(1, 1, 0, "the model stream closed before response.completed"),
                created(),
                Err(ModelError::Upstream {
                    message: "the model stream closed before response.completed; retries exhausted"
                        .into(),
                    http_status: None
                }),
            ],
            vec![Err(ModelError::ContextWindowExceeded {
                message: "the model stream failed: too long".into(),
                http_status: None
            })]
        )
    );
    assert_eq!(failed.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn idle_stream_is_retried() {
    let stall = StallServer::start(ev_created("r1"), ok_body("r2")).await;
    let mut provider = openai_at(Some(stall.url.clone()));
    provider.stream_idle_timeout = Duration::from_millis(100);
    let events = run(&client(provider, Some(api_key_auth()), settings())).await;
    let mut expected = vec![
        Ok(ResponseEvent::Created {
            response_id: Some("r1".into()),
        }),
        retrying(1, 5, 0, "the model stream sent nothing for 100 ms"),
    ];
    expected.extend(ok_all(ok_events("r2")));
    assert_eq!(events, expected);
}

#[tokio::test]
async fn silent_server_is_retried_as_an_http_failure() {
    let (server, _) = upstream(vec![
        sse(&ok_body("late")).set_delay(Duration::from_secs(20)),
        sse(&ok_body("r")),
    ])
    .await;
    let mut provider = openai_at(Some(server.uri()));
    provider.stream_idle_timeout = Duration::from_millis(100);
    let mut expected = vec![retrying(
        1,
        4,
        0,
        "the model endpoint did not answer within 100 ms",
    )];
    expected.extend(ok_all(ok_events("r")));
    assert_eq!(
        run(&client(provider, Some(api_key_auth()), settings())).await,
        expected
    );
}

#[tokio::test]
async fn unauthorized_recovers_once_and_retries() {
    let unauthorized = || http_error(401, json!({"error": {"message": "token expired"}}));
    let (server, _) = upstream(vec![unauthorized(), sse(&ok_body("r"))]).await;
    let auth = Arc::new(FixedAuth::new(
        vec![Ok(creds(CredentialMode::ChatGpt, "tok-old"))],
        vec![Ok(creds(CredentialMode::ChatGpt, "tok-new"))],
    ));
    let client = client(
        openai_at(Some(server.uri())),
        Some(auth.clone()),
        settings(),
    );
    assert_eq!(run(&client).await, ok_all(ok_events("r")));
    let bearers: Vec<Value> = seen_all(&server)
        .await
        .iter()
        .map(|r| r["headers"]["authorization"].clone())
        .collect();
    assert_eq!(
        (bearers, auth.calls()),
        (
            vec![json!("Bearer tok-old"), json!("Bearer tok-new")],
            (1, 1)
        )
    );

    let (twice, _) = upstream(vec![unauthorized()]).await;
    let auth = Arc::new(FixedAuth::new(
        vec![Ok(creds(CredentialMode::ChatGpt, "tok-old"))],
        vec![Ok(creds(CredentialMode::ChatGpt, "tok-new"))],
    ));
    let client = super::client(openai_at(Some(twice.uri())), Some(auth.clone()), settings());
    assert_eq!(
        (run(&client).await, auth.calls(), twice.received_requests().await.unwrap().len()),
        (
            vec![Err(ModelError::Unauthorized(
                "the model endpoint rejected the credentials (HTTP 401): token expired; log in again".into()
            ))],
            (1, 1),
            2
        )
    );

    let (refused, _) = upstream(vec![unauthorized()]).await;
    let auth = Arc::new(FixedAuth::new(
        vec![Ok(creds(CredentialMode::ChatGpt, "tok-old"))],
        vec![Err(CredentialError::LoginRequired(
            "refresh token expired: log in again".into(),
        ))],
    ));
    let client = super::client(openai_at(Some(refused.uri())), Some(auth), settings());
    assert_eq!(
        run(&client).await,
        vec![Err(ModelError::LoginRequired(
            "refresh token expired: log in again".into()
        ))]
    );
}

#[tokio::test]
async fn interrupt_during_backoff_returns_promptly() {
    let (server, _) = upstream(vec![
        http_error(503, json!({})).insert_header("retry-after", "100"),
    ])
    .await;
    let cancel = CancellationToken::new();
    let mut stream = api_key_client(&server.uri()).stream(request(), cancel.clone());
    let first = tokio::time::timeout(GUARD, stream.next()).await.unwrap();
    cancel.cancel();
    let rest: Vec<_> = tokio::time::timeout(GUARD, stream.collect()).await.unwrap();
    assert_eq!(
        (first, rest),
        (
            Some(retrying(
                1,
                4,
                100_000,
                "the model endpoint answered HTTP 503: no error message"
            )),
            vec![Err(ModelError::Interrupted)]
        )
    );
}

#[tokio::test]
async fn interrupt_mid_stream_and_mid_connect() {
    let stall = StallServer::start(ev_created("r1"), ok_body("r2")).await;
    let cancel = CancellationToken::new();
    let client = client(
        openai_at(Some(stall.url.clone())),
        Some(api_key_auth()),
        settings(),
    );
    let mut stream = client.stream(request(), cancel.clone());
    let first = tokio::time::timeout(GUARD, stream.next()).await.unwrap();
    cancel.cancel();
    let rest: Vec<_> = tokio::time::timeout(GUARD, stream.collect()).await.unwrap();
    assert_eq!(
        (first, rest),
        (
            Some(Ok(ResponseEvent::Created {
                response_id: Some("r1".into())
            })),
            vec![Err(ModelError::Interrupted)]
        )
    );

    let (server, mut arrived) = upstream(vec![
        sse(&ok_body("late")).set_delay(Duration::from_secs(100)),
    ])
    .await;
    let cancel = CancellationToken::new();
    let stream = api_key_client(&server.uri()).stream(request(), cancel.clone());
    let call = tokio::spawn(stream.collect::<Vec<_>>());
    arrived.recv().await.unwrap();
    cancel.cancel();
    let events = tokio::time::timeout(GUARD, call).await.unwrap().unwrap();
    assert_eq!(events, vec![Err(ModelError::Interrupted)]);
}

#[tokio::test]
async fn replay_from_one_file_and_from_two_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path.display().to_string()
    };
    let shell = write("shell_call.sse", SHELL_CALL);
    let after = write("after_shell_call.sse", AFTER_SHELL_CALL);
    let parse = |body: &str| -> Vec<Result<ResponseEvent, ModelError>> {
        let pieces: Vec<Result<Vec<u8>, std::convert::Infallible>> =
            vec![Ok(body.as_bytes().to_vec())];
        futures::executor::block_on(
            crate::model::sse::responses_events(futures::stream::iter(pieces))
                .map(|r| r.map_err(|f| ModelError::Internal(format!("{f:?}"))))
                .collect(),
        )
    };
    // No auth and an unreachable base URL: replay never touches either.
    let replaying = |spec: String| {
        let provider = openai_at(Some("http://127.0.0.1:9/v1".into()));
        client(
            provider,
            None,
            ClientSettings {
                sse_fixture: Some(spec),
                ..settings()
            },
        )
    };
    let one = replaying(shell.clone());
    let two = replaying(format!("{shell}:{after}"));
    let got = (
        run(&one).await,
        run(&one).await,
        run(&two).await,
        run(&two.clone()).await,
        run(&two).await,
    );
    assert_eq!(
        got,
        (
            parse(SHELL_CALL),
            parse(SHELL_CALL),
            parse(SHELL_CALL),
            parse(AFTER_SHELL_CALL),
            parse(AFTER_SHELL_CALL)
        )
    );
    let missing = replaying(dir.path().join("nope.sse").display().to_string());
    let events = run(&missing).await;
    assert_eq!(
        events
            .iter()
            .map(|e| e.as_ref().map_err(ModelError::turn_error_kind).err())
            .collect::<Vec<_>>(),
        vec![Some(agent_server_schema::session::TurnErrorKind::Internal)]
    );
}

#[tokio::test]
async fn store_enabled_follows_config_mode_and_wire_api() {
    let chatgpt = Arc::new(FixedAuth::new(
        vec![Ok(creds(CredentialMode::ChatGpt, "t"))],
        vec![],
    ));
    let logged_out = Arc::new(FixedAuth::new(
        vec![Err(CredentialError::NotLoggedIn)],
        vec![],
    ));
    let store = || ClientSettings {
        store: true,
        ..settings()
    };
    let local = local_provider("http://127.0.0.1:9/v1".into(), None, Default::default());
    let local_chat = local_provider(
        "http://127.0.0.1:9/v1".into(),
        None,
        crate::config::WireApi::Chat,
    );
    let got = [
        client(openai_at(None), Some(api_key_auth()), settings()),
        client(openai_at(None), Some(api_key_auth()), store()),
        client(openai_at(None), Some(chatgpt), store()),
        client(openai_at(None), Some(logged_out), store()),
        client(local, None, store()),
        client(local_chat, None, store()),
    ];
    let mut enabled = Vec::new();
    for c in &got {
        enabled.push(c.store_enabled().await);
    }
    assert_eq!(enabled, vec![false, true, false, false, true, false]);
}
