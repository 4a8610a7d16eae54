//! The one ChatGPT login at a time: starting one (either flow) replaces the pending one,
//! cancelling ends it, and however it ends it is saved like every other login and reported
//! through [`AuthObserver`](super::AuthObserver).

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, SecondsFormat, Utc};
use tokio_util::sync::CancellationToken;

use super::login::{self, LoginPrompt, NewLogin};
use super::store::{self, AuthFile, MODE_CHATGPT, Tokens};
use super::{AuthError, AuthManager, LoginChatGptResult, LoginFlow, PendingLogin, lock};

/// A login that has started: what `auth/loginChatGPT` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginStarted {
    /// Identifies the login in `cancel_login` and in the completion.
    pub login_id: String,
    /// What the user has to do.
    pub prompt: LoginPrompt,
    /// When the login gives up waiting.
    pub expires_at: DateTime<Utc>,
}

impl LoginStarted {
    /// The authorize URL (browser flow).
    pub fn auth_url(&self) -> Option<&str> {
        match &self.prompt {
            LoginPrompt::Browser { auth_url, .. } => Some(auth_url),
            LoginPrompt::DeviceCode { .. } => None,
        }
    }

    /// The loopback callback URL (browser flow).
    pub fn redirect_uri(&self) -> Option<&str> {
        match &self.prompt {
            LoginPrompt::Browser { redirect_uri, .. } => Some(redirect_uri),
            LoginPrompt::DeviceCode { .. } => None,
        }
    }

    /// The port the callback server listens on (useful when the configured port is `0`).
    pub fn port(&self) -> Option<u16> {
        url::Url::parse(self.redirect_uri()?).ok()?.port()
    }
}

impl From<LoginStarted> for LoginChatGptResult {
    fn from(started: LoginStarted) -> Self {
        let mut result = LoginChatGptResult {
            login_id: started.login_id,
            auth_url: None,
            redirect_uri: None,
            verification_url: None,
            user_code: None,
            expires_at: None,
        };
        match started.prompt {
            LoginPrompt::Browser {
                auth_url,
                redirect_uri,
            } => {
                result.auth_url = Some(auth_url);
                result.redirect_uri = Some(redirect_uri);
            }
            LoginPrompt::DeviceCode {
                verification_url,
                user_code,
            } => {
                result.verification_url = Some(verification_url);
                result.user_code = Some(user_code);
                result.expires_at = Some(
                    started
                        .expires_at
                        .to_rfc3339_opts(SecondsFormat::Secs, true),
                );
            }
        }
        result
    }
}

impl AuthManager {
    /// Starts a ChatGPT login of `flow` and returns at once; the outcome arrives through
    /// [`AuthObserver::login_completed`](super::AuthObserver::login_completed). A pending
    /// login (of either flow) is cancelled first.
    pub async fn start_login(self: &Arc<Self>, flow: LoginFlow) -> Result<LoginStarted, AuthError> {
        let _gate = self.login_gate.lock().await;
        self.cancel_pending_login("the login was replaced by a new login")
            .await;
        let prepared = login::prepare(&self.login_options(), flow).await?;
        let expires_at = Utc::now()
            + chrono::Duration::from_std(prepared.timeout).unwrap_or(chrono::Duration::MAX);
        let started = LoginStarted {
            login_id: uuid::Uuid::new_v4().to_string(),
            prompt: prepared.prompt.clone(),
            expires_at,
        };
        let cancel = CancellationToken::new();
        let reason = Arc::new(OnceLock::new());
        let flow_run = prepared.into_flow(cancel.clone(), reason.clone());
        let manager = Arc::clone(self);
        let id = started.login_id.clone();
        // The slot is filled while its lock is held, so the task cannot finish (and try to
        // clear the slot) before its entry exists.
        let mut slot = lock(&self.login);
        let task = tokio::spawn(async move {
            let result = flow_run
                .run(|new_login| async { manager.save_chatgpt_login(new_login).await })
                .await;
            manager.finish_login(&id, result).await;
        });
        *slot = Some(PendingLogin {
            id: started.login_id.clone(),
            cancel,
            reason,
            task,
        });
        tracing::info!(login_id = %started.login_id, ?flow, "ChatGPT login started");
        Ok(started)
    }

    fn login_options(&self) -> login::LoginOptions {
        login::LoginOptions {
            http: self.http.clone(),
            issuer: self.settings.issuer.clone(),
            client_id: self.settings.client_id.clone(),
            originator: self.settings.originator.clone(),
            port: self.settings.login_port,
            browser_timeout: self.settings.login_timeout,
            device_timeout: self.settings.device_login_timeout,
        }
    }

    /// Cancels the login `login_id`: `true` if it was pending (it then completes with
    /// `success:false` and, for a browser login, its port is free when this returns),
    /// `false` if no such login.
    pub async fn cancel_login(&self, login_id: &str) -> bool {
        let pending = {
            let mut slot = lock(&self.login);
            match slot.as_ref() {
                Some(p) if p.id == login_id => slot.take(),
                _ => None,
            }
        };
        match pending {
            Some(pending) => {
                stop_login(pending, "the login was cancelled").await;
                true
            }
            None => false,
        }
    }

    /// Cancels whatever login is pending and waits until it has ended.
    pub(super) async fn cancel_pending_login(&self, reason: &str) {
        let pending = lock(&self.login).take();
        if let Some(pending) = pending {
            stop_login(pending, reason).await;
        }
    }

    /// Called by the login task when it ends, however it ends.
    async fn finish_login(&self, login_id: &str, result: Result<(), String>) {
        {
            let mut slot = lock(&self.login);
            if slot.as_ref().is_some_and(|p| p.id == login_id) {
                *slot = None;
            }
        }
        match &result {
            Ok(()) => tracing::info!(login_id, "ChatGPT login succeeded"),
            Err(error) => tracing::info!(login_id, %error, "ChatGPT login failed"),
        }
        self.observer
            .login_completed(login_id, result.is_ok(), result.err());
        // Sent either way, so a client can simply re-render on every status notification.
        self.notify_status().await;
    }

    /// Saves a successful login (the code exchange is done), the same for both flows.
    async fn save_chatgpt_login(&self, new_login: NewLogin) -> Result<(), String> {
        let file = AuthFile {
            auth_mode: Some(MODE_CHATGPT.to_owned()),
            openai_api_key: new_login.api_key,
            tokens: Some(Tokens {
                id_token: new_login.tokens.id_token,
                access_token: new_login.tokens.access_token,
                refresh_token: new_login.tokens.refresh_token,
                account_id: new_login.claims.account_id,
                extra: serde_json::Map::new(),
            }),
            last_refresh: Some(store::now()),
            extra: serde_json::Map::new(),
        };
        self.replace_file(Some(file))
            .await
            .map_err(|e| e.to_string())
    }
}

/// Cancels a login and waits for its task, which reports the completion (and frees the port
/// of a browser login).
async fn stop_login(pending: PendingLogin, reason: &str) {
    // Set before cancelling so the task reads it when it wakes up.
    let _ = pending.reason.set(reason.to_owned());
    pending.cancel.cancel();
    if let Err(e) = pending.task.await {
        tracing::warn!(error = %e, "the login task ended abnormally");
    }
}
