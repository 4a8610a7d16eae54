//! Helpers for the auth tests: JWTs, a recording observer, settings for a temp home.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::mpsc;

use super::{AuthObserver, AuthSettings, AuthStatus};

/// An unsigned JWT with `payload` as its claims.
pub(crate) fn jwt(payload: serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(payload.to_string());
    format!("{header}.{body}.sig")
}

/// What the observer was told.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seen {
    /// `status_changed`.
    Status(AuthStatus),
    /// `login_completed`.
    Login {
        login_id: String,
        success: bool,
        error: Option<String>,
    },
}

/// An observer that records every call and lets a test await the next one.
#[derive(Debug)]
pub(crate) struct Recorder {
    sender: mpsc::UnboundedSender<Seen>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Seen>>>,
}

impl Recorder {
    pub(crate) fn new() -> Arc<Self> {
        let (sender, receiver) = mpsc::unbounded_channel();
        Arc::new(Self {
            sender,
            receiver: Mutex::new(Some(receiver)),
        })
    }

    /// The receiving end; call once.
    pub(crate) fn events(&self) -> mpsc::UnboundedReceiver<Seen> {
        self.receiver.lock().unwrap().take().unwrap()
    }
}

impl AuthObserver for Recorder {
    fn status_changed(&self, status: AuthStatus) {
        let _ = self.sender.send(Seen::Status(status));
    }

    fn login_completed(&self, login_id: &str, success: bool, error: Option<String>) {
        let _ = self.sender.send(Seen::Login {
            login_id: login_id.to_owned(),
            success,
            error,
        });
    }
}

/// Settings for a test home and issuer: no env key, port 0, a generous login timeout.
pub(crate) fn settings(home: &Path, issuer: &str) -> AuthSettings {
    AuthSettings {
        home: home.to_path_buf(),
        issuer: issuer.to_owned(),
        client_id: "app_test".to_owned(),
        env_api_key: None,
        login_port: Some(0),
        login_timeout: Duration::from_secs(600),
        device_login_timeout: Duration::from_secs(900),
        originator: "agent-server".to_owned(),
        requires_openai_auth: true,
        // Nothing listens on the discard port: a usage read fails at once.
        chatgpt_base_url: "http://127.0.0.1:9/backend-api/codex".to_owned(),
    }
}
