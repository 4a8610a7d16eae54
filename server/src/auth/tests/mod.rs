//! Behaviour of the auth domain against a fake issuer (wiremock) and a temp home.

mod login;
mod refresh;
mod status;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::mpsc;
use wiremock::MockServer;

use super::test_support::{Recorder, Seen, jwt, settings};
use super::{AuthManager, AuthSettings};

/// A home, an issuer, and a manager whose observer the test can read.
struct Harness {
    home: TempDir,
    issuer: MockServer,
    manager: Arc<AuthManager>,
    events: mpsc::UnboundedReceiver<Seen>,
}

impl Harness {
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// A harness whose settings `adjust` may change.
    async fn with(adjust: impl FnOnce(&mut AuthSettings)) -> Self {
        let home = tempfile::tempdir().unwrap();
        let issuer = MockServer::start().await;
        let mut settings = settings(home.path(), &issuer.uri());
        adjust(&mut settings);
        let recorder = Recorder::new();
        let events = recorder.events();
        let manager = AuthManager::new(settings, http(), recorder);
        Self {
            home,
            issuer,
            manager,
            events,
        }
    }

    /// A second manager on the same home and issuer (as another process would be).
    fn other_manager(&self) -> Arc<AuthManager> {
        let recorder = Recorder::new();
        AuthManager::new(self.manager.settings().clone(), http(), recorder)
    }

    fn auth_path(&self) -> std::path::PathBuf {
        self.home.path().join("auth.json")
    }

    fn write_auth(&self, value: &Value) {
        std::fs::write(self.auth_path(), serde_json::to_vec_pretty(value).unwrap()).unwrap();
    }

    fn read_auth(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.auth_path()).unwrap()).unwrap()
    }

    /// The next observer call; fails the test instead of hanging if none comes.
    async fn next_event(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(30), self.events.recv())
            .await
            .expect("no observer call arrived")
            .expect("the observer channel closed")
    }

    /// The next `login_completed`, skipping status changes.
    async fn next_login_event(&mut self) -> Seen {
        loop {
            let event = self.next_event().await;
            if matches!(event, Seen::Login { .. }) {
                return event;
            }
        }
    }

    /// Observer calls already made and not yet read.
    fn pending_events(&mut self) -> Vec<Seen> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// An id token for `email` on `plan`.
fn id_token(email: &str, plan: &str, account: &str) -> String {
    jwt(json!({
        "email": email,
        "https://api.openai.com/auth": {"chatgpt_account_id": account, "chatgpt_plan_type": plan}
    }))
}

/// An access token expiring `secs` from now.
fn access_token(tag: &str, secs: i64) -> String {
    jwt(json!({"tag": tag, "exp": chrono::Utc::now().timestamp() + secs}))
}

/// An `auth.json` of a ChatGPT login.
fn chatgpt_file(
    id_token: &str,
    access_token: &str,
    refresh_token: &str,
    last_refresh: &str,
) -> Value {
    json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": id_token,
            "access_token": access_token,
            "refresh_token": refresh_token,
            "account_id": "acc-1"
        },
        "last_refresh": last_refresh
    })
}
