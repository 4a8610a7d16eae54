//! The browser login against a fake issuer, with a fake browser (plain HTTP requests).

use std::collections::HashMap;
use std::net::TcpListener;

use base64::Engine as _;
use pretty_assertions::assert_eq;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use wiremock::matchers::{method, path};
use wiremock::{Match, Mock, Request, ResponseTemplate};

use super::*;
use crate::auth::{AuthMode, AuthSource, AuthStatus, LoginStarted};
use crate::secret::Secret;

/// Matches a form-encoded token request with these fields; `code_verifier` is checked
/// against the S256 challenge instead of by value.
struct TokenForm {
    fields: Vec<(&'static str, String)>,
    challenge: Option<String>,
}

impl Match for TokenForm {
    fn matches(&self, request: &Request) -> bool {
        let form: HashMap<String, String> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        let fields_match = self.fields.iter().all(|(k, v)| form.get(*k) == Some(v));
        let verifier_matches = self.challenge.as_ref().is_none_or(|challenge| {
            form.get("code_verifier").is_some_and(|verifier| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier))
                    == *challenge
            })
        });
        fields_match && verifier_matches
    }
}

/// The query parameters of the authorize URL.
fn query(started: &LoginStarted) -> HashMap<String, String> {
    url::Url::parse(&started.auth_url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Mounts the code exchange for `code`, answering with `id_token`.
async fn expect_code_exchange(h: &Harness, started: &LoginStarted, code: &str, id_token: &str) {
    let challenge = query(started)["code_challenge"].clone();
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(TokenForm {
            fields: vec![
                ("grant_type", "authorization_code".into()),
                ("code", code.into()),
                ("redirect_uri", started.redirect_uri.clone()),
                ("client_id", "app_test".into()),
            ],
            challenge: Some(challenge),
        })
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id_token": id_token,
            "access_token": "access-1",
            "refresh_token": "refresh-1"
        })))
        .expect(1)
        .mount(&h.issuer)
        .await;
}

/// Mounts the API-key exchange, expected `times` times.
async fn expect_key_exchange(h: &Harness, id_token: &str, answer: ResponseTemplate, times: u64) {
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(TokenForm {
            fields: vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange".into(),
                ),
                ("client_id", "app_test".into()),
                ("requested_token", "openai-api-key".into()),
                ("subject_token", id_token.into()),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:id_token".into(),
                ),
            ],
            challenge: None,
        })
        .respond_with(answer)
        .expect(times)
        .mount(&h.issuer)
        .await;
}

/// The browser coming back from the issuer; follows the redirect to `/success`.
async fn browser_callback(started: &LoginStarted, params: &[(&str, &str)]) -> (u16, String) {
    let mut url = url::Url::parse(&started.redirect_uri).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    let response = http().get(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Whether the login's port can be bound again (it has been freed).
fn port_is_free(started: &LoginStarted) -> bool {
    TcpListener::bind(("127.0.0.1", started.port().unwrap())).is_ok()
}

fn failed(started: &LoginStarted, error: &str) -> Seen {
    Seen::Login {
        login_id: started.login_id.clone(),
        success: false,
        error: Some(error.to_owned()),
    }
}

#[tokio::test]
async fn a_browser_login_saves_the_tokens_and_reports_the_account() {
    let mut h = Harness::new().await;
    let started = h.manager.start_chatgpt_login().await.unwrap();
    let port = started.port().unwrap();
    assert_eq!(
        started.redirect_uri,
        format!("http://localhost:{port}/auth/callback")
    );
    let q = query(&started);
    assert!(
        started
            .auth_url
            .starts_with(&format!("{}/oauth/authorize?", h.issuer.uri()))
    );
    assert_eq!(q["state"].len(), 43);
    assert_eq!(q["code_challenge"].len(), 43);
    let expected_query: HashMap<String, String> = [
        ("response_type", "code"),
        ("client_id", "app_test"),
        ("redirect_uri", started.redirect_uri.as_str()),
        ("scope", "openid profile email offline_access"),
        ("code_challenge", q["code_challenge"].as_str()),
        ("code_challenge_method", "S256"),
        ("id_token_add_organizations", "true"),
        ("state", q["state"].as_str()),
        ("originator", "agent-server"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(q, expected_query);

    let id = id_token("a@b.c", "plus", "acc-1");
    expect_code_exchange(&h, &started, "code-1", &id).await;
    expect_key_exchange(&h, &id, ResponseTemplate::new(500), 0).await;
    let (status, page) =
        browser_callback(&started, &[("code", "code-1"), ("state", &q["state"])]).await;
    assert_eq!(status, 200);
    assert!(page.contains("<h1>Signed in</h1>"), "{page}");

    assert_eq!(
        h.next_event().await,
        Seen::Login {
            login_id: started.login_id.clone(),
            success: true,
            error: None
        }
    );
    let Seen::Status(announced) = h.next_event().await else {
        panic!("expected a status change")
    };
    let expected = AuthStatus {
        auth_mode: Some(AuthMode::Chatgpt),
        source: Some(AuthSource::AuthFile),
        email: Some("a@b.c".into()),
        plan_type: Some("plus".into()),
        account_id: Some("acc-1".into()),
        last_refresh: announced.last_refresh.clone(),
        requires_openai_auth: true,
        ..AuthStatus::default()
    };
    assert_eq!(announced, expected);
    assert_eq!(h.manager.status(false, false).await.unwrap(), expected);
    assert!(port_is_free(&started));

    let mut file = h.read_auth();
    let last_refresh = file
        .as_object_mut()
        .unwrap()
        .remove("last_refresh")
        .unwrap();
    assert_eq!(
        Some(last_refresh.as_str().unwrap().to_owned()),
        expected.last_refresh
    );
    assert_eq!(
        file,
        json!({
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": null,
            "tokens": {"id_token": id, "access_token": "access-1", "refresh_token": "refresh-1", "account_id": "acc-1"}
        })
    );
    assert_eq!(mode_of(&h.auth_path()), 0o600);
    // The login is over: there is nothing left to cancel.
    assert!(!h.manager.cancel_login(&started.login_id).await);
}

#[tokio::test]
async fn callbacks_with_a_wrong_state_are_refused_and_the_login_keeps_waiting() {
    let mut h = Harness::new().await;
    let started = h.manager.start_chatgpt_login().await.unwrap();
    let state = query(&started)["state"].clone();
    let id = id_token("a@b.c", "plus", "acc-1");
    expect_code_exchange(&h, &started, "good", &id).await;

    for params in [
        vec![("code", "stray"), ("state", "wrong")],
        vec![("code", "stray")],
        vec![("error", "access_denied"), ("state", "wrong")],
    ] {
        let (status, page) = browser_callback(&started, &params).await;
        assert_eq!(status, 400, "{params:?}");
        assert!(page.contains("Unexpected request"), "{page}");
    }
    assert_eq!(h.pending_events(), vec![]);

    let (status, _) = browser_callback(&started, &[("code", "good"), ("state", &state)]).await;
    assert_eq!(status, 200);
    assert!(matches!(
        h.next_event().await,
        Seen::Login { success: true, .. }
    ));
}

#[tokio::test]
async fn an_error_callback_with_the_right_state_fails_the_login() {
    let mut h = Harness::new().await;
    let started = h.manager.start_chatgpt_login().await.unwrap();
    let state = query(&started)["state"].clone();
    let (status, page) = browser_callback(
        &started,
        &[
            ("error", "access_denied"),
            ("error_description", "The user said no"),
            ("state", &state),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert!(page.contains("Sign-in failed"), "{page}");
    assert_eq!(
        h.next_login_event().await,
        failed(
            &started,
            "the sign-in was not completed: access_denied: The user said no"
        )
    );
    assert!(port_is_free(&started));
    assert!(!h.auth_path().exists());
}

#[tokio::test]
async fn a_refused_code_exchange_fails_with_the_issuers_error() {
    let mut h = Harness::new().await;
    let started = h.manager.start_chatgpt_login().await.unwrap();
    let state = query(&started)["state"].clone();
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": "The code has expired"
        })))
        .expect(1)
        .mount(&h.issuer)
        .await;
    let (status, _) = browser_callback(&started, &[("code", "old"), ("state", &state)]).await;
    assert_eq!(status, 502);
    assert_eq!(
        h.next_login_event().await,
        failed(
            &started,
            "the issuer refused to exchange the authorization code (HTTP 400 Bad Request, invalid_grant: The code has expired)"
        )
    );
    assert!(port_is_free(&started));
    assert!(!h.auth_path().exists());
}

#[tokio::test]
async fn cancelling_completes_the_login_and_frees_the_port() {
    let mut h = Harness::new().await;
    let started = h.manager.start_chatgpt_login().await.unwrap();
    assert!(!h.manager.cancel_login("not-a-login").await);
    assert!(h.manager.cancel_login(&started.login_id).await);
    assert!(port_is_free(&started));
    assert_eq!(
        h.next_login_event().await,
        failed(&started, "the login was cancelled")
    );
    assert!(!h.manager.cancel_login(&started.login_id).await);
}

/// A port that was free a moment ago, to configure as the fixed callback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_new_login_replaces_the_pending_one_on_the_same_port() {
    let port = free_port();
    let mut h = Harness::with(|s| s.login_port = Some(port)).await;
    let first = h.manager.start_chatgpt_login().await.unwrap();
    let second = h.manager.start_chatgpt_login().await.unwrap();
    // The second login could bind the fixed port only because the first freed it.
    assert_eq!((first.port(), second.port()), (Some(port), Some(port)));
    assert_ne!(first.login_id, second.login_id);
    assert_eq!(
        h.next_login_event().await,
        failed(&first, "the login was replaced by a new login")
    );

    h.manager.login_api_key(Secret::new("sk-1")).await.unwrap();
    assert_eq!(
        h.next_login_event().await,
        failed(&second, "the login was cancelled by an API-key login")
    );
    assert!(port_is_free(&second));

    let third = h.manager.start_chatgpt_login().await.unwrap();
    h.manager.logout().await.unwrap();
    assert_eq!(
        h.next_login_event().await,
        failed(&third, "the login was cancelled by a logout")
    );
    assert!(port_is_free(&third));
}

#[tokio::test]
async fn a_login_times_out_and_frees_the_port() {
    let mut h = Harness::with(|s| s.login_timeout = Duration::from_millis(50)).await;
    let started = h.manager.start_chatgpt_login().await.unwrap();
    assert_eq!(
        h.next_login_event().await,
        failed(
            &started,
            "the login timed out after 0 seconds without a sign-in: start it again"
        )
    );
    assert!(port_is_free(&started));
}

#[tokio::test]
async fn a_busy_configured_port_is_reported_and_left_alone() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let h = Harness::with(|s| s.login_port = Some(port)).await;
    let err = h.manager.start_chatgpt_login().await.unwrap_err();
    assert_eq!(
        err.error_kind(),
        agent_server_schema::rpc::ErrorKind::LoginPortInUse
    );
    assert!(
        err.to_string().starts_with(&format!(
            "the login callback port {port} on 127.0.0.1 is in use"
        )),
        "{err}"
    );
    // The other listener still works.
    let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(taken.accept().is_ok());
    drop(client);
}

#[tokio::test]
async fn an_api_key_is_obtained_when_the_id_token_names_an_organization_and_project() {
    let mut h = Harness::new().await;
    let started = h.manager.start_chatgpt_login().await.unwrap();
    let state = query(&started)["state"].clone();
    let id = jwt(json!({
        "email": "a@b.c",
        "https://api.openai.com/auth": {
            "chatgpt_account_id": "acc-1", "chatgpt_plan_type": "team",
            "organization_id": "org-1", "project_id": "proj-1"
        }
    }));
    expect_code_exchange(&h, &started, "code-1", &id).await;
    expect_key_exchange(
        &h,
        &id,
        ResponseTemplate::new(200).set_body_json(json!({"access_token": "sk-exchanged"})),
        1,
    )
    .await;
    let (status, _) = browser_callback(&started, &[("code", "code-1"), ("state", &state)]).await;
    assert_eq!(status, 200);
    assert!(matches!(
        h.next_event().await,
        Seen::Login { success: true, .. }
    ));
    let file = h.read_auth();
    assert_eq!(
        (file["auth_mode"].as_str(), file["OPENAI_API_KEY"].as_str()),
        (Some("chatgpt"), Some("sk-exchanged"))
    );
    // ChatGPT mode still sends the access token.
    let creds = crate::model::auth::UpstreamAuth::credentials(h.manager.as_ref())
        .await
        .unwrap();
    assert_eq!(creds.bearer.expose(), "access-1");
}

#[tokio::test]
async fn a_failed_api_key_exchange_does_not_fail_the_login() {
    let mut h = Harness::new().await;
    let started = h.manager.start_chatgpt_login().await.unwrap();
    let state = query(&started)["state"].clone();
    let id = jwt(json!({
        "email": "a@b.c",
        "https://api.openai.com/auth": {"organization_id": "org-1", "project_id": "proj-1"}
    }));
    expect_code_exchange(&h, &started, "code-1", &id).await;
    expect_key_exchange(&h, &id, ResponseTemplate::new(500), 1).await;
    let (status, _) = browser_callback(&started, &[("code", "code-1"), ("state", &state)]).await;
    assert_eq!(status, 200);
    assert!(matches!(
        h.next_event().await,
        Seen::Login { success: true, .. }
    ));
    assert_eq!(h.read_auth()["OPENAI_API_KEY"], serde_json::Value::Null);
}
