//! Section 3 of the contract end to end: API-key login and logout, the environment key, ChatGPT
//! token refresh before a turn and after a 401, permanent refresh failures, no secrets in logs,
//! and the browser login flow over the wire.

use std::os::unix::fs::PermissionsExt;

use agent_server_tests::auth::ChatGptAccount;
use agent_server_tests::schema::auth::{
    AuthStatus, AuthStatusParams, CancelLoginParams, CancelLoginResult, CancelLoginStatus,
    LoginApiKeyParams, LoginChatGptParams,
};
use agent_server_tests::schema::lifecycle::{EmptyParams, EmptyResult};
use agent_server_tests::schema::methods::{
    AuthStatusRequest, CancelLogin, LoginApiKey, LoginChatGpt, Logout,
};
use agent_server_tests::turns::{completion, new_session, submit, turn_events};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_message_done, responses_requests, responses_usage, sse,
    sse_response,
};
use agent_server_tests::{TestServer, TestServerBuilder};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn logged_out() -> Value {
    json!({"authMode": null, "source": null, "email": null, "planType": null, "accountId": null,
           "lastRefresh": null, "requiresOpenaiAuth": true, "error": null})
}

fn answer() -> String {
    sse([
        ev_created("resp_1"),
        ev_message_done("msg_1", "ok"),
        ev_completed("resp_1", responses_usage(1, 0, 1, 0)),
    ])
}

fn responses() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path_regex(r"/responses$"))
}

#[tokio::test]
async fn login_api_key_writes_a_private_auth_json_and_logout_removes_it() {
    let mut server = TestServer::start().await;
    let reply = server
        .request::<LoginApiKey>(LoginApiKeyParams {
            api_key: "sk-written".into(),
        })
        .await;
    assert_eq!(reply, Ok(EmptyResult {}));
    let changed = server
        .wait_for_notification("auth/statusChanged", |_| true)
        .await;
    let mut status = logged_out();
    status["authMode"] = json!("apiKey");
    status["source"] = json!("authFile");
    assert_eq!(changed["params"], status);
    let file = server.home().join("auth.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        (&written["auth_mode"], &written["OPENAI_API_KEY"]),
        (&json!("apikey"), &json!("sk-written"))
    );
    let reply = server
        .request::<AuthStatusRequest>(AuthStatusParams {
            include_token: true,
            refresh_token: false,
        })
        .await;
    let mut with_token = status.clone();
    with_token["authToken"] = json!("sk-written");
    assert_eq!(
        reply.map(|r| serde_json::to_value(r).unwrap()),
        Ok(with_token)
    );

    let reply = server.request::<Logout>(EmptyParams {}).await;
    assert_eq!(reply, Ok(EmptyResult {}));
    let changed = server
        .wait_for_notification("auth/statusChanged", |_| true)
        .await;
    assert_eq!(changed["params"], logged_out());
    assert!(!file.exists());
}

#[tokio::test]
async fn an_environment_key_shows_source_env_and_survives_logout() {
    let mut server = TestServer::builder()
        .env("OPENAI_API_KEY", "sk-env")
        .spawn()
        .await;
    let mut status = logged_out();
    status["authMode"] = json!("apiKey");
    status["source"] = json!("env");
    let plain = AuthStatusParams {
        include_token: false,
        refresh_token: false,
    };
    let reply = server.request::<AuthStatusRequest>(plain.clone()).await;
    assert_eq!(
        reply.map(|r| serde_json::to_value(r).unwrap()),
        Ok(status.clone())
    );
    let reply = server.request::<Logout>(EmptyParams {}).await;
    assert_eq!(reply, Ok(EmptyResult {}));
    let reply = server.request::<AuthStatusRequest>(plain).await;
    assert_eq!(reply.map(|r| serde_json::to_value(r).unwrap()), Ok(status));
}

// ---- ChatGPT mode ----

struct ChatGpt {
    account: ChatGptAccount,
    upstream: MockServer,
    issuer: MockServer,
}

impl ChatGpt {
    async fn new() -> Self {
        Self {
            account: ChatGptAccount::default(),
            upstream: MockServer::start().await,
            issuer: MockServer::start().await,
        }
    }

    fn builder(&self, auth_json: String) -> TestServerBuilder {
        TestServer::builder()
            .home_file("auth.json", auth_json)
            .env("AGENT_SERVER_AUTH_ISSUER", self.issuer.uri())
            .args([
                "-c",
                &format!("chatgpt_base_url={}/codex", self.upstream.uri()),
            ])
    }

    fn expired(&self) -> String {
        let past = chrono::Utc::now() - chrono::Duration::hours(2);
        self.account.auth_json(
            past.timestamp(),
            &past.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
    }

    fn new_access_token(&self) -> String {
        self.account
            .access_token(chrono::Utc::now().timestamp() + 7200)
    }

    /// The issuer answers one refresh with a new access token.
    async fn refresh_succeeds_once(&self) -> String {
        let token = self.new_access_token();
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .and(body_partial_json(json!({
                "grant_type": "refresh_token", "refresh_token": "refresh-token-1",
                "client_id": "app_EMoamEEZ73f0CkXaXp7hrann",
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id_token": self.account.id_token(), "access_token": token,
                "refresh_token": "refresh-token-2",
            })))
            .expect(1)
            .mount(&self.issuer)
            .await;
        token
    }

    /// `(authorization, chatgpt-account-id)` of every model request.
    async fn headers_seen(&self) -> Vec<(String, String)> {
        let header = |r: &wiremock::Request, name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        self.upstream
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path().ends_with("/responses"))
            .map(|r| (header(r, "authorization"), header(r, "chatgpt-account-id")))
            .collect()
    }
}

async fn one_turn(server: &mut TestServer) -> Value {
    let session = new_session(server, json!({})).await;
    let turn = submit(server, &session, "hi").await;
    completion(&turn_events(server, &turn).await)
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_once_before_the_turn() {
    let chatgpt = ChatGpt::new().await;
    let token = chatgpt.refresh_succeeds_once().await;
    responses()
        .and(path("/codex/responses"))
        .respond_with(sse_response(answer()))
        .mount(&chatgpt.upstream)
        .await;
    let mut server = chatgpt.builder(chatgpt.expired()).spawn().await;
    let done = one_turn(&mut server).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        chatgpt.headers_seen().await,
        vec![(format!("Bearer {token}"), "acc-123".to_owned())]
    );
    let bodies = responses_requests(&chatgpt.upstream).await;
    assert_eq!(bodies[0]["store"], json!(false));
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(server.home().join("auth.json")).unwrap())
            .unwrap();
    assert_eq!(
        (
            &saved["tokens"]["access_token"],
            &saved["tokens"]["refresh_token"]
        ),
        (&json!(token), &json!("refresh-token-2"))
    );
}

/// Another process (e.g. a sandboxed command, before the home was hidden from them) holding
/// `auth.json.lock` makes a refresh wait a bounded time, then fail as a transient error that is
/// retried like a model request; once the lock is free the turn completes.
#[tokio::test]
async fn a_refresh_waits_a_bounded_time_for_a_held_lock_and_is_retried() {
    let chatgpt = ChatGpt::new().await;
    let token = chatgpt.refresh_succeeds_once().await;
    responses()
        .and(path("/codex/responses"))
        .respond_with(sse_response(answer()))
        .mount(&chatgpt.upstream)
        .await;
    let mut server = chatgpt.builder(chatgpt.expired()).spawn().await;
    server.set_timeout(std::time::Duration::from_secs(60));
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .open(server.home().join("auth.json.lock"))
        .or_else(|_| {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(server.home().join("auth.json.lock"))
        })
        .unwrap();
    lock.lock().unwrap();
    let holder = std::thread::spawn(move || {
        // Longer than the server's bounded wait (5 s), so its first attempt gives up.
        std::thread::sleep(std::time::Duration::from_secs(7));
        drop(lock);
    });
    let session = new_session(&mut server, json!({})).await;
    let turn = submit(&mut server, &session, "hi").await;
    let events = turn_events(&mut server, &turn).await;
    holder.join().unwrap();
    let retry = events
        .iter()
        .find(|e| e["event"]["type"] == "retrying")
        .unwrap_or_else(|| panic!("no retry: {events:?}"));
    assert!(
        retry["event"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("auth.json.lock")),
        "{retry}"
    );
    let done = completion(&events);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        chatgpt.headers_seen().await,
        vec![(format!("Bearer {token}"), "acc-123".to_owned())]
    );
}

#[tokio::test]
async fn a_401_in_chatgpt_mode_refreshes_and_retries_once() {
    let chatgpt = ChatGpt::new().await;
    let token = chatgpt.refresh_succeeds_once().await;
    responses()
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"error": {"message": "expired"}})),
        )
        .up_to_n_times(1)
        .mount(&chatgpt.upstream)
        .await;
    responses()
        .respond_with(sse_response(answer()))
        .mount(&chatgpt.upstream)
        .await;
    let fresh = chatgpt.account.fresh_auth_json();
    let old: Value = serde_json::from_str(&fresh).unwrap();
    let old_token = old["tokens"]["access_token"].as_str().unwrap().to_owned();
    let mut server = chatgpt.builder(fresh).spawn().await;
    let done = one_turn(&mut server).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        chatgpt.headers_seen().await,
        vec![
            (format!("Bearer {old_token}"), "acc-123".to_owned()),
            (format!("Bearer {token}"), "acc-123".to_owned()),
        ]
    );
}

async fn mount_permanent_refresh_failure(issuer: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"code": "refresh_token_expired", "message": "expired"},
        })))
        .expect(1)
        .mount(issuer)
        .await;
}

#[tokio::test]
async fn a_permanent_refresh_failure_after_a_401_fails_the_turn_with_login_required() {
    let chatgpt = ChatGpt::new().await;
    mount_permanent_refresh_failure(&chatgpt.issuer).await;
    responses()
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"error": {"message": "expired"}})),
        )
        .expect(1)
        .mount(&chatgpt.upstream)
        .await;
    let mut server = chatgpt
        .builder(chatgpt.account.fresh_auth_json())
        .spawn()
        .await;
    let done = one_turn(&mut server).await;
    assert_eq!(
        (&done["status"], &done["error"]["kind"]),
        (&json!("failed"), &json!("loginRequired")),
        "{done}"
    );
}

#[tokio::test]
async fn an_expired_login_that_cannot_be_refreshed_fails_the_turn_with_login_required() {
    let chatgpt = ChatGpt::new().await;
    mount_permanent_refresh_failure(&chatgpt.issuer).await;
    let mut server = chatgpt.builder(chatgpt.expired()).spawn().await;
    // Creating the session only checks that a login exists; the refresh happens before the
    // first model call, and its permanent failure ends that turn.
    let done = one_turn(&mut server).await;
    assert_eq!(
        (&done["status"], &done["error"]["kind"]),
        (&json!("failed"), &json!("loginRequired")),
        "{done}"
    );
    assert_eq!(chatgpt.headers_seen().await, Vec::new());
}

#[tokio::test]
async fn no_token_appears_in_the_trace_log() {
    let chatgpt = ChatGpt::new().await;
    let token = chatgpt.refresh_succeeds_once().await;
    responses()
        .respond_with(sse_response(answer()))
        .mount(&chatgpt.upstream)
        .await;
    let expired = chatgpt.expired();
    let old: Value = serde_json::from_str(&expired).unwrap();
    let mut server = chatgpt
        .builder(expired.clone())
        .args(["--log-level", "trace"])
        .spawn()
        .await;
    let done = one_turn(&mut server).await;
    assert_eq!(done["status"], "completed", "{done}");
    server.close_stdin().await;
    server.wait_exit().await;
    let log = server.stderr_text();
    assert!(!log.is_empty(), "a trace log is expected");
    for secret in [
        token.as_str(),
        old["tokens"]["access_token"].as_str().unwrap(),
        old["tokens"]["id_token"].as_str().unwrap(),
        "refresh-token-1",
        "refresh-token-2",
    ] {
        assert!(!log.contains(secret), "a secret is in the log: {secret}");
    }
}

// ---- browser login ----

/// Starts a login; returns `(loginId, state, callback port)`.
async fn start_login(server: &mut TestServer) -> (String, String, u16) {
    let started = server
        .request::<LoginChatGpt>(LoginChatGptParams::default())
        .await
        .unwrap_or_else(|e| panic!("auth/loginChatGPT failed: {e:?}"));
    let parse = |key: &str, url: &Option<String>| {
        url::Url::parse(url.as_deref().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{key} is not a URL ({e}): {started:?}"))
    };
    let auth_url = parse("authUrl", &started.auth_url);
    let state = auth_url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no state in {auth_url}"));
    let redirect = parse("redirectUri", &started.redirect_uri);
    assert_eq!(
        (redirect.host_str(), redirect.path()),
        (Some("localhost"), "/auth/callback")
    );
    let port = redirect
        .port()
        .unwrap_or_else(|| panic!("no port in {redirect}"));
    (started.login_id, state, port)
}

#[tokio::test]
async fn the_browser_login_completes_over_the_wire() {
    let chatgpt = ChatGpt::new().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id_token": chatgpt.account.id_token(),
            "access_token": chatgpt.new_access_token(),
            "refresh_token": "refresh-token-9",
        })))
        .expect(1)
        .mount(&chatgpt.issuer)
        .await;
    let mut server = TestServer::builder()
        .env("AGENT_SERVER_AUTH_ISSUER", chatgpt.issuer.uri())
        .args(["-c", "login_callback_port=0"])
        .spawn()
        .await;
    let (login_id, state, port) = start_login(&mut server).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let wrong = client
        .get(format!(
            "http://127.0.0.1:{port}/auth/callback?code=c&state=wrong"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let answer = client
        .get(format!("http://127.0.0.1:{port}/auth/callback"))
        .query(&[("code", "the-code"), ("state", state.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 302);
    let complete = server
        .wait_for_notification("auth/loginChatGPTComplete", |_| true)
        .await;
    assert_eq!(
        complete["params"],
        json!({"loginId": login_id, "success": true, "error": null})
    );
    let changed = server
        .wait_for_notification("auth/statusChanged", |_| true)
        .await;
    let mut status = changed["params"].clone();
    assert!(status["lastRefresh"].is_string(), "{status}");
    status["lastRefresh"] = json!("<time>");
    assert_eq!(
        status,
        json!({"authMode": "chatgpt", "source": "authFile", "email": "user@example.com",
               "planType": "plus", "accountId": "acc-123", "lastRefresh": "<time>",
               "requiresOpenaiAuth": true, "error": null})
    );
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(server.home().join("auth.json")).unwrap())
            .unwrap();
    assert_eq!(saved["tokens"]["refresh_token"], json!("refresh-token-9"));
}

#[tokio::test]
async fn cancel_login_completes_it_unsuccessfully() {
    let mut server = TestServer::builder()
        .args(["-c", "login_callback_port=0"])
        .spawn()
        .await;
    let (login_id, _, _) = start_login(&mut server).await;
    let cancel = CancelLoginParams {
        login_id: login_id.clone(),
    };
    let reply = server.request::<CancelLogin>(cancel.clone()).await;
    assert_eq!(
        reply,
        Ok(CancelLoginResult {
            status: CancelLoginStatus::Cancelled
        })
    );
    let complete = server
        .wait_for_notification("auth/loginChatGPTComplete", |_| true)
        .await;
    assert_eq!(
        (
            &complete["params"]["loginId"],
            &complete["params"]["success"]
        ),
        (&json!(login_id), &json!(false))
    );
    let reply = server.request::<CancelLogin>(cancel).await;
    assert_eq!(
        reply,
        Ok(CancelLoginResult {
            status: CancelLoginStatus::NotFound
        })
    );
}

#[tokio::test]
async fn two_server_processes_sharing_a_home_refresh_once_between_them() {
    let chatgpt = ChatGpt::new().await;
    let token = chatgpt.new_access_token();
    // A slow answer, so that both processes find the token due while the refresh is running.
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({
                    "id_token": chatgpt.account.id_token(), "access_token": token,
                    "refresh_token": "refresh-token-2",
                }))
                .set_delay(std::time::Duration::from_millis(500)),
        )
        .expect(1)
        .mount(&chatgpt.issuer)
        .await;
    let mut first = chatgpt.builder(chatgpt.expired()).spawn().await;
    let mut second = TestServer::builder()
        .home(first.home().to_path_buf())
        .env("AGENT_SERVER_AUTH_ISSUER", chatgpt.issuer.uri())
        .spawn()
        .await;
    let status = AuthStatusParams {
        include_token: true,
        ..AuthStatusParams::default()
    };
    let (a, b) = tokio::join!(
        first.request::<AuthStatusRequest>(status.clone()),
        second.request::<AuthStatusRequest>(status),
    );
    let token_of = |reply: &Result<AuthStatus, _>| reply.as_ref().ok()?.auth_token.clone();
    assert_eq!(
        (token_of(&a), token_of(&b)),
        (Some(token.clone()), Some(token)),
        "{a:?}\n{b:?}"
    );
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(first.home().join("auth.json")).unwrap())
            .unwrap();
    assert_eq!(saved["tokens"]["refresh_token"], "refresh-token-2");
}
