//! Credentials: the API key or ChatGPT login in use, `auth.json`, token refresh, and the
//! ChatGPT browser login.
//!
//! [`AuthManager`] is the one entry point. It re-reads `auth.json` whenever it needs it (the
//! file is small, and another process may have changed it), refreshes ChatGPT tokens before
//! they lapse, and runs at most one browser login at a time. It reaches the client only
//! through [`AuthObserver`].

mod claims;
pub mod cli;
mod credentials;
mod error;
mod login;
mod refresh;
mod status;
mod store;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

pub use agent_server_schema::auth::{AuthMode, AuthSource, AuthStatus, LoginChatGptResult};
pub use error::AuthError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::secret::Secret;
use login::NewLogin;
use store::{AuthFile, MODE_API_KEY, MODE_CHATGPT, Store, Tokens};

/// The OAuth client id of the ChatGPT login.
pub const DEFAULT_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

/// Everything the auth domain needs to know from the configuration.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The home directory holding `auth.json`.
    pub home: PathBuf,
    /// The OAuth issuer, e.g. `https://auth.openai.com`.
    pub issuer: String,
    /// The OAuth client id (default [`DEFAULT_CLIENT_ID`]).
    pub client_id: String,
    /// `OPENAI_API_KEY` from the environment; it wins over `auth.json`.
    pub env_api_key: Option<Secret>,
    /// Fixed port for the login callback server (`0` = any free port); `None` = 1455 then 1457.
    pub login_port: Option<u16>,
    /// How long a browser login may stay pending.
    pub login_timeout: Duration,
    /// The `originator` parameter of the authorize URL.
    pub originator: String,
    /// Whether the active model provider needs OpenAI auth (reported in [`AuthStatus`]).
    pub requires_openai_auth: bool,
}

impl AuthSettings {
    /// Settings taken from the merged configuration.
    pub fn from_config(config: &Config, requires_openai_auth: bool) -> Self {
        Self {
            home: config.home.clone(),
            issuer: config.auth_issuer.clone(),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            env_api_key: config.env_api_key.clone(),
            login_port: config.login_callback_port,
            login_timeout: Duration::from_secs(config.login_timeout_secs),
            originator: config.originator.clone(),
            requires_openai_auth,
        }
    }
}

/// How the auth domain reaches the client (the api layer implements it with notifications).
pub trait AuthObserver: Send + Sync {
    /// The status changed: after a login, a logout, or a refresh that changed account or
    /// plan. `status` never carries a token.
    fn status_changed(&self, status: AuthStatus);
    /// A browser login ended, either way.
    fn login_completed(&self, login_id: &str, success: bool, error: Option<String>);
}

/// A browser login that has started: what `auth/loginChatGPT` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginStarted {
    /// Identifies the login in `cancel_login` and in the completion.
    pub login_id: String,
    /// The URL to open in a browser.
    pub auth_url: String,
    /// The loopback callback URL, `http://localhost:<port>/auth/callback`.
    pub redirect_uri: String,
}

impl LoginStarted {
    /// The port the callback server listens on (useful when the configured port is `0`).
    pub fn port(&self) -> Option<u16> {
        url::Url::parse(&self.redirect_uri).ok()?.port()
    }
}

impl From<LoginStarted> for LoginChatGptResult {
    fn from(started: LoginStarted) -> Self {
        Self {
            login_id: started.login_id,
            auth_url: started.auth_url,
            redirect_uri: started.redirect_uri,
        }
    }
}

/// The browser login in progress.
#[derive(Debug)]
struct PendingLogin {
    id: String,
    cancel: CancellationToken,
    /// Why it was cancelled, for its completion message.
    reason: Arc<OnceLock<String>>,
    task: JoinHandle<()>,
}

/// The credentials of this process: status, logins, logout, and the bearer for model calls.
/// Share it as `Arc<AuthManager>`; it implements [`crate::model::auth::UpstreamAuth`].
pub struct AuthManager {
    settings: AuthSettings,
    http: reqwest::Client,
    observer: Arc<dyn AuthObserver>,
    store: Store,
    /// Serialises refreshes within the process; waiters then find the new tokens in the file.
    refresh_gate: tokio::sync::Mutex<()>,
    /// A refresh token the issuer refused for good, with the message, so that every later
    /// model call does not ask again with the same dead token.
    dead_refresh: Mutex<Option<(Secret, String)>>,
    /// Serialises starting browser logins.
    login_gate: tokio::sync::Mutex<()>,
    /// The browser login in progress. A std mutex: it is never held across an await.
    login: Mutex<Option<PendingLogin>>,
}

impl std::fmt::Debug for AuthManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthManager")
            .field("home", &self.settings.home)
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

/// Locks a std mutex, recovering from poisoning: the guarded data stays consistent because
/// no code here panics while holding it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AuthManager {
    /// A manager for `settings.home`; nothing is read until it is asked.
    pub fn new(
        settings: AuthSettings,
        http: reqwest::Client,
        observer: Arc<dyn AuthObserver>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store: Store::new(&settings.home),
            settings,
            http,
            observer,
            refresh_gate: tokio::sync::Mutex::new(()),
            dead_refresh: Mutex::new(None),
            login_gate: tokio::sync::Mutex::new(()),
            login: Mutex::new(None),
        })
    }

    /// The settings this manager was built with.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Whether any credentials are available (an env key or a usable `auth.json`), for the
    /// `authRequired` check before a turn.
    pub fn has_credentials(&self) -> bool {
        self.env_key().is_some() || self.snapshot_now().is_usable()
    }

    /// Logs in with an API key: writes `auth.json` in API-key mode. A pending browser login
    /// is cancelled first, and a malformed `auth.json` is moved aside.
    pub async fn login_api_key(&self, key: Secret) -> Result<(), AuthError> {
        if key.is_blank() {
            return Err(AuthError::InvalidApiKey);
        }
        self.cancel_pending_login("the login was cancelled by an API-key login")
            .await;
        let file = AuthFile {
            auth_mode: Some(MODE_API_KEY.to_owned()),
            openai_api_key: Some(Secret::new(key.expose().trim())),
            ..AuthFile::default()
        };
        self.replace_file(Some(file)).await?;
        self.notify_status().await;
        Ok(())
    }

    /// Logs out: deletes `auth.json` (a malformed one is moved aside instead). A pending
    /// browser login is cancelled first. An env key stays in effect.
    pub async fn logout(&self) -> Result<(), AuthError> {
        self.cancel_pending_login("the login was cancelled by a logout")
            .await;
        self.replace_file(None).await?;
        self.notify_status().await;
        Ok(())
    }

    /// Starts a ChatGPT browser login and returns at once; the outcome arrives through
    /// [`AuthObserver::login_completed`]. A pending login is cancelled first.
    pub async fn start_chatgpt_login(self: &Arc<Self>) -> Result<LoginStarted, AuthError> {
        let _gate = self.login_gate.lock().await;
        self.cancel_pending_login("the login was replaced by a new login")
            .await;
        let prepared = login::prepare(&login::LoginOptions {
            http: self.http.clone(),
            issuer: self.settings.issuer.clone(),
            client_id: self.settings.client_id.clone(),
            originator: self.settings.originator.clone(),
            port: self.settings.login_port,
            timeout: self.settings.login_timeout,
        })
        .await?;
        let started = LoginStarted {
            login_id: uuid::Uuid::new_v4().to_string(),
            auth_url: prepared.auth_url.clone(),
            redirect_uri: prepared.redirect_uri.clone(),
        };
        let cancel = CancellationToken::new();
        let reason = Arc::new(OnceLock::new());
        let flow = prepared.into_flow(cancel.clone(), reason.clone());
        let manager = Arc::clone(self);
        let id = started.login_id.clone();
        // The slot is filled while its lock is held, so the task cannot finish (and try to
        // clear the slot) before its entry exists.
        let mut slot = lock(&self.login);
        let task = tokio::spawn(async move {
            let result = flow
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
        tracing::info!(login_id = %started.login_id, redirect_uri = %started.redirect_uri, "ChatGPT login started");
        Ok(started)
    }

    /// Cancels the browser login `login_id`: `true` if it was pending (it then completes with
    /// `success:false` and its port is free when this returns), `false` if no such login.
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

    /// Cancels whatever browser login is pending and waits until it has ended.
    async fn cancel_pending_login(&self, reason: &str) {
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

    /// Saves a successful browser login (the code exchange is done).
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

    /// Writes (or with `None` deletes) `auth.json` under the lock, moving a malformed file
    /// aside first so that nothing is lost.
    async fn replace_file(&self, file: Option<AuthFile>) -> Result<(), AuthError> {
        let path = self.store.path().to_path_buf();
        let guard = self.store.lock().await.map_err(|e| {
            AuthError::storage("lock", self.settings.home.join("auth.json.lock"), e)
        })?;
        self.store
            .move_aside_if_malformed(&guard)
            .await
            .map_err(|e| AuthError::storage("move aside", &path, e))?;
        match file {
            Some(file) => self
                .store
                .save(file, &guard)
                .await
                .map_err(|e| AuthError::storage("write", &path, e)),
            None => self
                .store
                .delete(&guard)
                .await
                .map_err(|e| AuthError::storage("delete", &path, e)),
        }
    }

    /// Tells the observer the current status (without a token).
    async fn notify_status(&self) {
        let snapshot = self.snapshot().await;
        self.observer
            .status_changed(self.status_of(&snapshot, /*include_token*/ false));
    }

    fn env_key(&self) -> Option<&Secret> {
        self.settings.env_api_key.as_ref().filter(|k| !k.is_blank())
    }
}

/// Cancels a login and waits for its task, which reports the completion and frees the port.
async fn stop_login(pending: PendingLogin, reason: &str) {
    // Set before cancelling so the task reads it when it wakes up.
    let _ = pending.reason.set(reason.to_owned());
    pending.cancel.cancel();
    if let Err(e) = pending.task.await {
        tracing::warn!(error = %e, "the login task ended abnormally");
    }
}
