//! Section 3 of the contract, the ChatGPT browser login, end to end in a real browser: headless
//! Chromium opens `authUrl`, the mock issuer redirects it to the server's callback with a code,
//! the server exchanges the code, saves the login and sends the browser to its success page.
//!
//! Needs Debian's Chromium at `/usr/bin/chromium`; `scripts/install-test-deps` installs it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use agent_server_tests::auth::ChatGptAccount;
use agent_server_tests::schema::auth::{AuthStatusParams, LoginChatGptParams};
use agent_server_tests::schema::methods::{AuthStatusRequest, LoginChatGpt};
use agent_server_tests::{SIGKILL, TestServer};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use url::Url;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Where Debian's `chromium` package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long the browser may take to load, follow the redirects and print the page. Guards
/// against a hang; not an assertion about speed.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// The issuer's authorize endpoint: the user is already signed in and consents at once, so it
/// sends the browser straight back to the `redirect_uri` it was given, with a code and the
/// `state` it was given.
struct ApproveAtOnce;

impl Respond for ApproveAtOnce {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let param = |name: &str| {
            request
                .url
                .query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        let (Some(redirect_uri), Some(state)) = (param("redirect_uri"), param("state")) else {
            return ResponseTemplate::new(400)
                .set_body_string("redirect_uri and state are required");
        };
        let mut location = match Url::parse(&redirect_uri) {
            Ok(url) => url,
            Err(e) => {
                return ResponseTemplate::new(400)
                    .set_body_string(format!("bad redirect_uri: {e}"));
            }
        };
        location
            .query_pairs_mut()
            .append_pair("code", "test-code")
            .append_pair("state", &state);
        ResponseTemplate::new(302).insert_header("Location", location.as_str())
    }
}

/// Kills the browser's whole process group (the browser and its helper processes) when the
/// test ends, however it ends.
struct KillGroup(libc::pid_t);

impl Drop for KillGroup {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

#[allow(
    unsafe_code,
    reason = "kill(2) has no safe wrapper among the declared dependencies"
)]
fn kill_group(pgid: libc::pid_t) {
    // SAFETY: kill(2) takes plain integers and touches no memory of this process. A group that
    // is already gone (ESRCH) is what the guard wants anyway.
    unsafe {
        libc::kill(-pgid, SIGKILL);
    }
}

/// Opens `url` in headless Chromium with a fresh profile and returns the DOM of the page it
/// ends on, after every redirect.
async fn browse(url: &str, profile: &Path) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/install-test-deps (it installs Debian's chromium) and run the tests again"
    );
    let mut browser = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--disable-crash-reporter",
            "--no-proxy-server",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        // Keep the browser's caches and config inside the temp profile too.
        .env("HOME", profile)
        .env("XDG_CONFIG_HOME", profile.join("config"))
        .env("XDG_CACHE_HOME", profile.join("cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
    let pid = browser
        .id()
        .unwrap_or_else(|| panic!("{CHROMIUM} exited before it could be watched"));
    let _guard = KillGroup(
        libc::pid_t::try_from(pid).unwrap_or_else(|e| panic!("pid {pid} out of range: {e}")),
    );

    let mut stdout = browser
        .stdout
        .take()
        .unwrap_or_else(|| panic!("the browser has no stdout pipe"));
    let mut stderr = browser
        .stderr
        .take()
        .unwrap_or_else(|| panic!("the browser has no stderr pipe"));
    let run = async {
        let mut dom = String::new();
        let mut log = String::new();
        let (out, err) = tokio::join!(
            stdout.read_to_string(&mut dom),
            stderr.read_to_string(&mut log)
        );
        out.unwrap_or_else(|e| panic!("reading the browser's stdout failed: {e}"));
        err.unwrap_or_else(|e| panic!("reading the browser's stderr failed: {e}"));
        let status = browser
            .wait()
            .await
            .unwrap_or_else(|e| panic!("waiting for the browser failed: {e}"));
        (status, dom, log)
    };
    let (status, dom, log) = tokio::time::timeout(BROWSER_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| {
            panic!("the browser did not print the page within {BROWSER_TIMEOUT:?}")
        });
    assert!(
        status.success(),
        "the browser failed ({status}); its stderr:\n{log}"
    );
    dom
}

/// The `<body>…</body>` of a serialized page. (The parser moves the page's trailing newline
/// into the body, so callers drop newlines before comparing.)
fn body(dom: &str) -> &str {
    let start = dom
        .find("<body>")
        .unwrap_or_else(|| panic!("no <body> in the page:\n{dom}"));
    let end = dom
        .rfind("</body>")
        .unwrap_or_else(|| panic!("no </body> in the page:\n{dom}"));
    &dom[start..end + "</body>".len()]
}

#[tokio::test]
async fn chatgpt_login_in_a_headless_browser_lands_on_the_success_page() {
    let account = ChatGptAccount {
        email: "browser@example.com".into(),
        plan_type: "pro".into(),
        account_id: "acc-browser-1".into(),
    };
    let issuer = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/oauth/authorize"))
        .respond_with(ApproveAtOnce)
        .expect(1)
        .mount(&issuer)
        .await;
    let tokens = json!({
        "id_token": account.id_token(),
        "access_token": account.access_token(chrono::Utc::now().timestamp() + 3600),
        "refresh_token": "refresh-token-browser",
    });
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .and(body_string_contains("code=test-code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(tokens))
        .expect(1)
        .mount(&issuer)
        .await;

    let mut server = TestServer::builder()
        .env("AGENT_SERVER_AUTH_ISSUER", issuer.uri())
        .args(["-c", "login_callback_port=0"])
        .spawn()
        .await;
    let login = server
        .request::<LoginChatGpt>(LoginChatGptParams::default())
        .await
        .unwrap_or_else(|e| panic!("auth/loginChatGPT failed: {e:?}"));
    let login_id = login.login_id.clone();
    let auth_url = login
        .auth_url
        .clone()
        .unwrap_or_else(|| panic!("no authUrl in {login:?}"));
    assert!(
        auth_url.starts_with(&format!("{}/oauth/authorize?", issuer.uri())),
        "the authorize URL is not on the issuer: {auth_url}"
    );

    let profile = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
    let dom = browse(&auth_url, profile.path()).await;

    assert_eq!(
        body(&dom).replace('\n', ""),
        "<body><h1>Signed in</h1><p>You are signed in to agent-server. You can close this tab and return to your editor.</p></body>",
        "the browser did not land on the success page; its DOM:\n{dom}"
    );
    assert!(
        dom.contains("<title>Signed in - agent-server</title>"),
        "{dom}"
    );

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

    let status = server
        .request::<AuthStatusRequest>(AuthStatusParams::default())
        .await
        .unwrap_or_else(|e| panic!("auth/status failed: {e:?}"));
    let last_refresh = status.last_refresh.clone();
    assert!(
        last_refresh
            .as_deref()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
        "lastRefresh is not an RFC 3339 time: {status:?}"
    );
    let expected_status = json!({
        "authMode": "chatgpt", "source": "authFile", "email": "browser@example.com",
        "planType": "pro", "accountId": "acc-browser-1", "lastRefresh": last_refresh,
        "requiresOpenaiAuth": true, "error": null,
    });
    assert_eq!(changed["params"], expected_status);
    assert_eq!(json!(status), expected_status);

    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(server.home().join("auth.json"))
            .unwrap_or_else(|e| panic!("auth.json was not written: {e}")),
    )
    .unwrap_or_else(|e| panic!("auth.json is not JSON: {e}"));
    assert_eq!(saved["auth_mode"], json!("chatgpt"));
    assert_eq!(
        saved["tokens"]["refresh_token"],
        json!("refresh-token-browser")
    );
    assert_eq!(saved["tokens"]["account_id"], json!("acc-browser-1"));
}
