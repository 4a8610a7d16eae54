//! Section 12 of the contract, the device-code login, end to end against a mock issuer: the
//! user-code request and its faults, polling (pending, transient, denied, malformed), the code
//! exchange and `auth.json`, expiry, every way to cancel, the CLI, and an authenticated model
//! call with the new tokens. Nothing secret may reach stdout or the trace log.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use agent_server_tests::TestServer;
use agent_server_tests::auth::ChatGptAccount;
use agent_server_tests::schema::auth::{
    AuthStatusParams, CancelLoginParams, CancelLoginResult, CancelLoginStatus, LoginChatGptParams,
    LoginChatGptResult, LoginFlow,
};
use agent_server_tests::schema::methods::{AuthStatusRequest, CancelLogin, LoginChatGpt, Method};
use agent_server_tests::schema::rpc::RpcError;
use agent_server_tests::turns::{completion, new_session, submit, turn_events};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_message_done, responses_usage, sse, sse_response,
};
use agent_server_tests::{decode_reply, run_to_end};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

const DEVICE_AUTH_ID: &str = "device-auth-id-1";
const USER_CODE: &str = "WXYZ-1234";
const AUTH_CODE: &str = "device-authorization-code-1";
const VERIFIER: &str = "device-code-verifier-1";
const REFRESH: &str = "device-refresh-token-1";

/// A mock issuer with the device-code endpoints.
struct Issuer {
    server: MockServer,
    account: ChatGptAccount,
    access_token: String,
}

impl Issuer {
    async fn start() -> Self {
        let account = ChatGptAccount::default();
        let access_token = account.access_token(chrono::Utc::now().timestamp() + 3600);
        Self {
            server: MockServer::start().await,
            account,
            access_token,
        }
    }

    fn uri(&self) -> String {
        self.server.uri()
    }

    /// The user-code endpoint answers `template`, once.
    async fn usercode(&self, template: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path("/api/accounts/deviceauth/usercode"))
            .and(body_json(
                json!({"client_id": "app_EMoamEEZ73f0CkXaXp7hrann"}),
            ))
            .respond_with(template)
            .expect(1)
            .mount(&self.server)
            .await;
    }

    /// The user-code endpoint hands out the test's code with this `interval`.
    async fn usercode_with_interval(&self, interval: Value) {
        let mut body = json!({"device_auth_id": DEVICE_AUTH_ID, "user_code": USER_CODE});
        if !interval.is_null() {
            body["interval"] = interval;
        }
        self.usercode(ResponseTemplate::new(200).set_body_json(body))
            .await;
    }

    /// The next `times` polls are answered with `template`.
    async fn polls(&self, template: ResponseTemplate, times: u64) {
        Mock::given(method("POST"))
            .and(path("/api/accounts/deviceauth/token"))
            .and(body_json(
                json!({"device_auth_id": DEVICE_AUTH_ID, "user_code": USER_CODE}),
            ))
            .respond_with(template)
            .up_to_n_times(times)
            .expect(times)
            .mount(&self.server)
            .await;
    }

    /// Polls keep answering `template`, however often they come.
    async fn polls_forever(&self, template: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path("/api/accounts/deviceauth/token"))
            .respond_with(template)
            .mount(&self.server)
            .await;
    }

    /// The poll that releases the code.
    fn released() -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({
            "authorization_code": AUTH_CODE, "code_verifier": VERIFIER,
            "code_challenge": "ignored",
        }))
    }

    /// The code exchange, with the device-code redirect URI and the released verifier.
    async fn exchange(&self) {
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .and(Form(vec![
                ("grant_type", "authorization_code".into()),
                ("code", AUTH_CODE.into()),
                (
                    "redirect_uri",
                    format!("{}/deviceauth/callback", self.uri()),
                ),
                ("client_id", "app_EMoamEEZ73f0CkXaXp7hrann".into()),
                ("code_verifier", VERIFIER.into()),
            ]))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id_token": self.account.id_token(),
                "access_token": self.access_token,
                "refresh_token": REFRESH,
            })))
            .expect(1)
            .mount(&self.server)
            .await;
    }

    /// Every secret of a login, for scanning output and logs.
    fn secrets(&self) -> Vec<String> {
        vec![
            self.access_token.clone(),
            self.account.id_token(),
            REFRESH.to_owned(),
            AUTH_CODE.to_owned(),
            VERIFIER.to_owned(),
            DEVICE_AUTH_ID.to_owned(),
        ]
    }
}

/// Matches a form-encoded body holding these fields.
struct Form(Vec<(&'static str, String)>);

impl Match for Form {
    fn matches(&self, request: &Request) -> bool {
        let form: HashMap<String, String> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        self.0.iter().all(|(k, v)| form.get(*k) == Some(v))
    }
}

async fn server_for(issuer: &Issuer, extra: &[&str]) -> TestServer {
    TestServer::builder()
        .env("AGENT_SERVER_AUTH_ISSUER", issuer.uri())
        .args(extra.iter().copied())
        .spawn()
        .await
}

async fn start_device_login(server: &mut TestServer) -> Result<LoginChatGptResult, RpcError> {
    server
        .request::<LoginChatGpt>(LoginChatGptParams {
            flow: LoginFlow::DeviceCode,
        })
        .await
}

/// The login's id, after checking the whole result.
fn check_started(
    reply: &Result<LoginChatGptResult, RpcError>,
    issuer: &Issuer,
    timeout_secs: i64,
) -> String {
    let started = reply
        .as_ref()
        .unwrap_or_else(|e| panic!("the device-code login did not start: {e:?}"));
    let expires_at = started
        .expires_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("expiresAt is not RFC 3339: {started:?}"));
    let left = expires_at.timestamp() - chrono::Utc::now().timestamp();
    assert!(
        (timeout_secs - 5..=timeout_secs).contains(&left),
        "expiresAt is {left} s away, expected about {timeout_secs}: {started:?}"
    );
    assert_eq!(
        json!(started),
        json!({"loginId": started.login_id,
               "verificationUrl": format!("{}/codex/device", issuer.uri()),
               "userCode": USER_CODE, "expiresAt": started.expires_at})
    );
    started.login_id.clone()
}

async fn completion_of(server: &mut TestServer, login_id: &str) -> Value {
    let id = json!(login_id);
    server
        .wait_for_notification("auth/loginChatGPTComplete", |p| p["loginId"] == id)
        .await["params"]
        .clone()
}

fn answer() -> String {
    sse([
        ev_created("resp_1"),
        ev_message_done("msg_1", "ok"),
        ev_completed("resp_1", responses_usage(1, 0, 1, 0)),
    ])
}

#[tokio::test]
async fn a_device_login_polls_through_pending_and_transient_answers_saves_and_authenticates_a_turn()
{
    let issuer = Issuer::start().await;
    let upstream = MockServer::start().await;
    // The interval comes as a string, as some issuers send it.
    issuer.usercode_with_interval(json!("1")).await;
    issuer.polls(ResponseTemplate::new(403), 1).await;
    issuer
        .polls(
            ResponseTemplate::new(404).set_body_json(json!({"error": "pending"})),
            1,
        )
        .await;
    issuer.polls(ResponseTemplate::new(503), 1).await;
    issuer.polls(Issuer::released(), 1).await;
    issuer.exchange().await;
    Mock::given(method("POST"))
        .and(path("/codex/responses"))
        .respond_with(sse_response(answer()))
        .expect(1)
        .mount(&upstream)
        .await;
    let mut server = server_for(
        &issuer,
        &[
            "--log-level",
            "trace",
            "-c",
            &format!("chatgpt_base_url={}/codex", upstream.uri()),
        ],
    )
    .await;
    server.set_timeout(Duration::from_secs(20));
    let mut seen = Vec::new();

    // The raw reply, so that every byte of it is checked for secrets below.
    let params = LoginChatGptParams {
        flow: LoginFlow::DeviceCode,
    };
    let raw = server
        .request_raw(LoginChatGpt::NAME, Some(json!(params)))
        .await;
    seen.push(raw.clone());
    let reply = decode_reply(LoginChatGpt::NAME, raw);
    let login_id = check_started(&reply, &issuer, 900);
    let complete = completion_of(&mut server, &login_id).await;
    seen.push(complete.clone());
    assert_eq!(
        complete,
        json!({"loginId": login_id, "success": true, "error": null})
    );
    let changed = server
        .wait_for_notification("auth/statusChanged", |_| true)
        .await;
    seen.push(changed.clone());
    let mut status = changed["params"].clone();
    assert!(status["lastRefresh"].is_string(), "{status}");
    status["lastRefresh"] = json!("<time>");
    assert_eq!(
        status,
        json!({"authMode": "chatgpt", "source": "authFile", "email": "user@example.com",
               "planType": "plus", "accountId": "acc-123", "lastRefresh": "<time>",
               "requiresOpenaiAuth": true, "error": null})
    );

    let file = server.home().join("auth.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        saved,
        json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
               "tokens": {"id_token": issuer.account.id_token(), "access_token": issuer.access_token,
                          "refresh_token": REFRESH, "account_id": "acc-123"},
               "last_refresh": saved["last_refresh"]})
    );

    let session = new_session(&mut server, json!({})).await;
    let turn = submit(&mut server, &session, "hi").await;
    let events = turn_events(&mut server, &turn).await;
    seen.extend(events.iter().cloned());
    assert_eq!(completion(&events)["status"], "completed", "{events:?}");
    let requests = upstream.received_requests().await.unwrap_or_default();
    let header = |name: &str| {
        requests[0]
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        (header("authorization"), header("chatgpt-account-id")),
        (
            Some(format!("Bearer {}", issuer.access_token)),
            Some("acc-123".to_owned())
        )
    );

    server.close_stdin().await;
    seen.extend(server.read_to_end().await);
    server.wait_exit().await;
    let log = server.stderr_text();
    assert!(
        log.contains("device"),
        "a trace log of the login is expected"
    );
    let output = seen
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    for secret in issuer.secrets() {
        assert!(!log.contains(&secret), "a secret is in the log: {secret}");
        assert!(
            !output.contains(&secret),
            "a secret reached the client: {secret}"
        );
    }
}

#[tokio::test]
async fn a_missing_interval_means_five_seconds_between_polls() {
    let issuer = Issuer::start().await;
    issuer.usercode_with_interval(Value::Null).await;
    issuer.polls(Issuer::released(), 1).await;
    issuer.exchange().await;
    let mut server = server_for(&issuer, &[]).await;
    server.set_timeout(Duration::from_secs(20));
    let started = tokio::time::Instant::now();
    let reply = start_device_login(&mut server).await;
    let login_id = check_started(&reply, &issuer, 900);
    let complete = completion_of(&mut server, &login_id).await;
    assert_eq!(complete["success"], json!(true), "{complete}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(5),
        "the first poll came after {waited:?}, before the default interval of 5 s"
    );
}

#[tokio::test]
async fn an_issuer_without_device_login_answers_device_code_unavailable() {
    let issuer = Issuer::start().await;
    issuer
        .usercode(ResponseTemplate::new(404).set_body_string("Not Found"))
        .await;
    let mut server = server_for(&issuer, &[]).await;
    let reply = start_device_login(&mut server).await;
    assert_eq!(
        reply.as_ref().err().map(|e| json!(e)),
        Some(json!({"code": -32010, "message": format!(
            "device-code login is not enabled for the issuer {}: use the browser login (auth/loginChatGPT without a flow, or `agent-server login`), or ask the workspace admin to enable device-code login",
            issuer.uri()
        ), "data": {"kind": "deviceCodeUnavailable"}})),
        "{reply:?}"
    );
    // The server keeps serving, and nothing was written.
    let status = server
        .request::<AuthStatusRequest>(AuthStatusParams::default())
        .await
        .map(|status| status.auth_mode);
    assert_eq!(status, Ok(None));
    assert!(!server.home().join("auth.json").exists());
}

#[tokio::test]
async fn a_garbage_user_code_answer_is_a_clear_error() {
    let issuer = Issuer::start().await;
    issuer
        .usercode(ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"))
        .await;
    let mut server = server_for(&issuer, &[]).await;
    let reply = start_device_login(&mut server).await;
    assert_eq!(
        reply.as_ref().err().map(|e| json!(e)),
        Some(json!({"code": -32010, "message": format!(
            "the issuer answered the device-code request at {}/api/accounts/deviceauth/usercode without a device code (expected device_auth_id and user_code): try again later, or use the browser login",
            issuer.uri()
        ), "data": {"kind": "deviceCodeUnavailable"}})),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_denial_fails_the_login_with_the_issuers_error() {
    let issuer = Issuer::start().await;
    issuer.usercode_with_interval(json!(1)).await;
    issuer.polls(ResponseTemplate::new(403), 1).await;
    issuer
        .polls(
            ResponseTemplate::new(401).set_body_json(
                json!({"error": "access_denied", "error_description": "the user declined"}),
            ),
            1,
        )
        .await;
    let mut server = server_for(&issuer, &[]).await;
    let reply = start_device_login(&mut server).await;
    let login_id = check_started(&reply, &issuer, 900);
    let complete = completion_of(&mut server, &login_id).await;
    assert_eq!(
        complete,
        json!({"loginId": login_id, "success": false, "error":
            "the sign-in was not completed: the issuer answered the device-code poll with HTTP 401 Unauthorized, access_denied: the user declined: start the login again"})
    );
    assert!(!server.home().join("auth.json").exists());
}

#[tokio::test]
async fn a_400_or_a_2xx_without_a_code_fails_the_login() {
    for (answer, error) in [
        (
            ResponseTemplate::new(400).set_body_json(json!({"error": {"code": "expired_token"}})),
            "the sign-in was not completed: the issuer answered the device-code poll with HTTP 400 Bad Request, expired_token: start the login again",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"status": "approved"})),
            "the issuer answered the device-code poll without an authorization code and code verifier: start the login again",
        ),
    ] {
        let issuer = Issuer::start().await;
        issuer.usercode_with_interval(json!(1)).await;
        issuer.polls(answer, 1).await;
        let mut server = server_for(&issuer, &[]).await;
        let reply = start_device_login(&mut server).await;
        let login_id = check_started(&reply, &issuer, 900);
        let complete = completion_of(&mut server, &login_id).await;
        assert_eq!(
            complete,
            json!({"loginId": login_id, "success": false, "error": error})
        );
        let changed = server
            .wait_for_notification("auth/statusChanged", |_| true)
            .await;
        assert_eq!(changed["params"]["authMode"], Value::Null, "{changed}");
    }
}

#[tokio::test]
async fn a_device_login_expires_after_its_timeout() {
    let issuer = Issuer::start().await;
    issuer.usercode_with_interval(json!(1)).await;
    issuer.polls_forever(ResponseTemplate::new(403)).await;
    let mut server = server_for(&issuer, &["-c", "device_login_timeout_secs=2"]).await;
    let reply = start_device_login(&mut server).await;
    let login_id = check_started(&reply, &issuer, 2);
    let complete = completion_of(&mut server, &login_id).await;
    assert_eq!(
        complete,
        json!({"loginId": login_id, "success": false, "error":
            "the login timed out after 2 seconds without a sign-in: start it again"})
    );
    let polls = issuer
        .server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/api/accounts/deviceauth/token")
        .count();
    assert!((1..=2).contains(&polls), "{polls} polls in 2 s at 1 s");
}

/// Starts a device login whose polls hang (a slow issuer), so whatever ends it arrives in the
/// middle of a poll.
async fn login_stuck_in_a_poll(issuer: &Issuer, server: &mut TestServer) -> String {
    issuer
        .polls_forever(ResponseTemplate::new(403).set_delay(Duration::from_secs(60)))
        .await;
    let reply = start_device_login(server).await;
    let login_id = check_started(&reply, issuer, 900);
    // Wait until the first poll is in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let requests = issuer.server.received_requests().await.unwrap_or_default();
        if requests
            .iter()
            .any(|r| r.url.path() == "/api/accounts/deviceauth/token")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no poll within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    login_id
}

#[tokio::test]
async fn cancel_login_ends_a_device_login_in_the_middle_of_a_poll() {
    let issuer = Issuer::start().await;
    issuer.usercode_with_interval(json!(1)).await;
    let mut server = server_for(&issuer, &[]).await;
    let login_id = login_stuck_in_a_poll(&issuer, &mut server).await;
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
    let complete = completion_of(&mut server, &login_id).await;
    assert_eq!(
        complete,
        json!({"loginId": login_id, "success": false, "error": "the login was cancelled"})
    );
    let again = server.request::<CancelLogin>(cancel).await;
    assert_eq!(
        again,
        Ok(CancelLoginResult {
            status: CancelLoginStatus::NotFound
        })
    );
}

#[tokio::test]
async fn a_new_login_an_api_key_login_or_a_logout_cancels_a_device_login() {
    for (method, params, error) in [
        (
            "auth/loginChatGPT",
            json!({"flow": "browser"}),
            "the login was replaced by a new login",
        ),
        (
            "auth/loginApiKey",
            json!({"apiKey": "sk-new"}),
            "the login was cancelled by an API-key login",
        ),
        (
            "auth/logout",
            json!({}),
            "the login was cancelled by a logout",
        ),
    ] {
        let issuer = Issuer::start().await;
        issuer.usercode_with_interval(json!(1)).await;
        let mut server = server_for(&issuer, &["-c", "login_callback_port=0"]).await;
        let login_id = login_stuck_in_a_poll(&issuer, &mut server).await;
        let reply = server.request_raw(method, Some(params)).await;
        assert!(reply.get("result").is_some(), "{method}: {reply}");
        let complete = completion_of(&mut server, &login_id).await;
        assert_eq!(
            complete,
            json!({"loginId": login_id, "success": false, "error": error}),
            "{method}"
        );
    }
}

// ---- the CLI ----

#[tokio::test]
async fn cli_device_login_prints_the_url_and_code_waits_and_exits_0() {
    let issuer = Issuer::start().await;
    issuer.usercode_with_interval(json!(1)).await;
    issuer.polls(ResponseTemplate::new(403), 1).await;
    issuer.polls(Issuer::released(), 1).await;
    issuer.exchange().await;
    let home = tempfile::tempdir().unwrap();
    let out = run_to_end(
        home.path(),
        &[
            "--home",
            &home.path().display().to_string(),
            "--log-level",
            "trace",
            "login",
            "--device-code",
        ],
        &[("AGENT_SERVER_AUTH_ISSUER", issuer.uri().as_str())],
        b"",
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        out.stdout,
        format!(
            "To log in with ChatGPT, open this URL in a browser on any device:\n\n  {}/codex/device\n\nand enter this one-time code (it expires in 15 minutes):\n\n  {USER_CODE}\n\nNever share this code with anyone.\nWaiting for the sign-in to finish (press Ctrl-C to cancel)...\nLogged in as user@example.com (plus plan).\n",
            issuer.uri()
        )
    );
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("auth.json")).unwrap())
            .unwrap();
    assert_eq!(saved["tokens"]["refresh_token"], json!(REFRESH));
    for secret in issuer.secrets() {
        assert!(
            !out.stderr.contains(&secret) && !out.stdout.contains(&secret),
            "a secret was printed: {secret}"
        );
    }
}

#[tokio::test]
async fn cli_device_login_fails_with_the_reason() {
    let cases = [
        (
            ResponseTemplate::new(404),
            &[][..],
            "agent-server: device-code login is not enabled for the issuer",
        ),
        (
            ResponseTemplate::new(200).set_body_json(
                json!({"device_auth_id": DEVICE_AUTH_ID, "user_code": USER_CODE, "interval": 1}),
            ),
            &["-c", "device_login_timeout_secs=1"][..],
            "agent-server: login failed: the login timed out after 1 seconds without a sign-in: start it again\n",
        ),
    ];
    for (usercode, args, expected) in cases {
        let issuer = Issuer::start().await;
        issuer.usercode(usercode).await;
        issuer.polls_forever(ResponseTemplate::new(403)).await;
        let home = tempfile::tempdir().unwrap();
        let home_arg = home.path().display().to_string();
        let mut all = vec!["--home", home_arg.as_str()];
        all.extend_from_slice(args);
        all.extend(["login", "--device-code"]);
        let out = run_to_end(
            home.path(),
            &all,
            &[("AGENT_SERVER_AUTH_ISSUER", issuer.uri().as_str())],
            b"",
        )
        .await;
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(out.stderr.starts_with(expected), "{out:?}");
        assert!(!home.path().join("auth.json").exists());
    }
}
