//! Which credentials are active right now, and the [`AuthStatus`] the client sees.

use chrono::{DateTime, SecondsFormat, Utc};

use super::claims::Claims;
use super::credentials::Trigger;
use super::store::{FileCredentials, Stored, Tokens};
use super::{AuthError, AuthManager, AuthMode, AuthSource, AuthStatus};
use crate::model::auth::CredentialError;
use crate::secret::Secret;

/// The active credentials, by the contract's precedence.
#[derive(Debug, Clone)]
pub(crate) enum Active {
    /// `OPENAI_API_KEY` from the environment.
    Env(Secret),
    /// An API key from `auth.json`.
    FileApiKey(Secret),
    /// A ChatGPT login from `auth.json`.
    ChatGpt {
        /// Its tokens.
        tokens: Tokens,
        /// When they were last obtained.
        last_refresh: Option<DateTime<Utc>>,
    },
    /// Nothing usable.
    None,
}

/// What was found, and why stored auth could not be used (if it could not).
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// The active credentials.
    pub active: Active,
    /// Why `auth.json` could not be used, e.g. a malformed file.
    pub error: Option<String>,
}

impl Snapshot {
    /// Applies the precedence: the env key, else what `auth.json` holds.
    pub(crate) fn resolve(
        env_key: Option<&Secret>,
        stored: Stored,
        path: &std::path::Path,
    ) -> Self {
        let (from_file, error) = match stored {
            Stored::Missing => (Active::None, None),
            Stored::Malformed(message) | Stored::Unreadable(message) => {
                (Active::None, Some(message))
            }
            Stored::Present(file) => match file.credentials(path) {
                FileCredentials::ApiKey(key) => (Active::FileApiKey(key), None),
                FileCredentials::ChatGpt(tokens) => (
                    Active::ChatGpt {
                        tokens,
                        last_refresh: file.last_refresh,
                    },
                    None,
                ),
                FileCredentials::Empty => (Active::None, None),
                FileCredentials::Unusable(message) => (Active::None, Some(message)),
            },
        };
        let active = match env_key {
            Some(key) => Active::Env(key.clone()),
            None => from_file,
        };
        Self { active, error }
    }

    /// Whether there is something to send upstream.
    pub(crate) fn is_usable(&self) -> bool {
        !matches!(self.active, Active::None)
    }
}

impl AuthManager {
    /// The current status. `include_token` adds the bearer that would be sent upstream (a
    /// ChatGPT token that is due is refreshed first); `refresh_token` forces a refresh of a
    /// ChatGPT login. A refresh refused for good is an error (`loginRequired`); a transient
    /// refresh failure is reported in `error`, with the status as it stands.
    pub async fn status(
        &self,
        include_token: bool,
        refresh_token: bool,
    ) -> Result<AuthStatus, AuthError> {
        let mut refresh_error = None;
        if refresh_token || include_token {
            let trigger = if refresh_token {
                Trigger::Forced
            } else {
                Trigger::Due
            };
            match self.refreshed_if_chatgpt(trigger).await {
                Ok(()) | Err(CredentialError::NotLoggedIn | CredentialError::Unusable(_)) => {}
                Err(CredentialError::LoginRequired(message)) if refresh_token => {
                    return Err(AuthError::LoginRequired(message));
                }
                Err(
                    CredentialError::LoginRequired(message) | CredentialError::Transient(message),
                ) => {
                    refresh_error = Some(message);
                }
            }
        }
        let snapshot = self.snapshot().await;
        let mut status = self.status_of(&snapshot, include_token);
        if refresh_error.is_some() {
            status.error = refresh_error;
        }
        Ok(status)
    }

    /// What is active now (re-reads `auth.json`).
    pub(crate) async fn snapshot(&self) -> Snapshot {
        let stored = self.store.load().await;
        Snapshot::resolve(self.env_key(), stored, self.store.path())
    }

    /// [`AuthManager::snapshot`] for synchronous callers.
    pub(crate) fn snapshot_now(&self) -> Snapshot {
        Snapshot::resolve(self.env_key(), self.store.read(), self.store.path())
    }

    /// The status of a snapshot.
    pub(crate) fn status_of(&self, snapshot: &Snapshot, include_token: bool) -> AuthStatus {
        let mut status = AuthStatus {
            requires_openai_auth: self.settings.requires_openai_auth,
            error: snapshot.error.clone(),
            ..AuthStatus::default()
        };
        let token = match &snapshot.active {
            Active::Env(key) => {
                status.auth_mode = Some(AuthMode::ApiKey);
                status.source = Some(AuthSource::Env);
                Some(key)
            }
            Active::FileApiKey(key) => {
                status.auth_mode = Some(AuthMode::ApiKey);
                status.source = Some(AuthSource::AuthFile);
                Some(key)
            }
            Active::ChatGpt {
                tokens,
                last_refresh,
            } => {
                status.auth_mode = Some(AuthMode::Chatgpt);
                status.source = Some(AuthSource::AuthFile);
                status.last_refresh =
                    last_refresh.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
                status.account_id = tokens.account_id.clone();
                match Claims::decode(tokens.id_token.expose()) {
                    Ok(claims) => {
                        status.email = claims.email;
                        status.plan_type = claims.plan_type;
                        status.account_id = status.account_id.or(claims.account_id);
                    }
                    Err(e) => {
                        status.error = status.error.or_else(|| {
                            Some(format!(
                                "the id_token in {} could not be read ({e}): log in again",
                                self.store.path().display()
                            ))
                        });
                    }
                }
                Some(&tokens.access_token)
            }
            Active::None => None,
        };
        if include_token {
            status.auth_token = token.map(|t| t.expose().to_owned());
        }
        status
    }
}
