//! Credentials for model calls: proactive refresh before use, recovery after a 401, and the
//! locking that makes one refresh serve every caller and every process.

use super::claims::Claims;
use super::refresh::{self, RefreshError};
use super::status::{Active, Snapshot};
use super::store::{FileCredentials, Stored, Tokens};
use super::{AuthManager, lock};
use crate::model::auth::{CredentialError, CredentialMode, UpstreamAuth, UpstreamCredentials};
use crate::secret::Secret;

/// Why a refresh is considered.
#[derive(Debug, Clone)]
pub(crate) enum Trigger {
    /// Refresh only if the stored access token is (still) due.
    Due,
    /// The model endpoint rejected this access token: refresh unless the file already holds
    /// a different one.
    Rejected(Secret),
    /// Refresh whatever the token's age (`auth/status` with `refreshToken`).
    Forced,
}

fn api_key_credentials(key: Secret) -> UpstreamCredentials {
    UpstreamCredentials {
        mode: CredentialMode::ApiKey,
        bearer: key,
        account_id: None,
    }
}

fn chatgpt_credentials(tokens: &Tokens) -> UpstreamCredentials {
    let account_id = tokens.account_id.clone().or_else(|| {
        Claims::decode(tokens.id_token.expose())
            .ok()
            .and_then(|c| c.account_id)
    });
    UpstreamCredentials {
        mode: CredentialMode::ChatGpt,
        bearer: tokens.access_token.clone(),
        account_id,
    }
}

/// The credentials of a snapshot, or why there are none.
fn credentials_of(snapshot: Snapshot) -> Result<UpstreamCredentials, CredentialError> {
    match snapshot.active {
        Active::Env(key) | Active::FileApiKey(key) => Ok(api_key_credentials(key)),
        Active::ChatGpt { tokens, .. } => Ok(chatgpt_credentials(&tokens)),
        Active::None => Err(snapshot
            .error
            .map_or(CredentialError::NotLoggedIn, CredentialError::Unusable)),
    }
}

/// The account and plan of a login, to tell whether a refresh changed them.
fn identity(tokens: &Tokens) -> (Option<String>, Option<String>) {
    let claims = Claims::decode(tokens.id_token.expose()).unwrap_or_default();
    (
        tokens.account_id.clone().or(claims.account_id),
        claims.plan_type,
    )
}

impl AuthManager {
    /// Refreshes the ChatGPT login when `trigger` calls for it; does nothing in API-key mode.
    pub(crate) async fn refreshed_if_chatgpt(
        &self,
        trigger: Trigger,
    ) -> Result<(), CredentialError> {
        let snapshot = self.snapshot().await;
        match snapshot.active {
            Active::ChatGpt {
                tokens,
                last_refresh,
            } => {
                if matches!(trigger, Trigger::Due)
                    && !refresh::is_due(&tokens.access_token, last_refresh, super::store::now())
                {
                    return Ok(());
                }
                self.refresh_under_lock(trigger).await.map(drop)
            }
            _ => credentials_of(snapshot).map(drop),
        }
    }

    /// Re-reads `auth.json` under the lock and refreshes if `trigger` still calls for it.
    /// Within the process the refresh gate makes concurrent callers wait for the first one and
    /// then find its tokens in the file; across processes the file lock does the same.
    async fn refresh_under_lock(
        &self,
        trigger: Trigger,
    ) -> Result<UpstreamCredentials, CredentialError> {
        let _gate = self.refresh_gate.lock().await;
        let guard = self.store.lock().await.map_err(|e| {
            CredentialError::Transient(format!(
                "could not lock {}.lock to refresh the ChatGPT login: {e}: check the permissions of the home directory",
                self.store.path().display()
            ))
        })?;
        let mut file = match self.store.load().await {
            Stored::Present(file) => file,
            // Malformed, missing or unreadable: report it as it is, never write over it.
            other => return credentials_of(Snapshot::resolve(None, other, self.store.path())),
        };
        let tokens = match file.credentials(self.store.path()) {
            FileCredentials::ChatGpt(tokens) => tokens,
            // Another process switched to an API key or logged out meanwhile.
            _ => {
                return credentials_of(Snapshot::resolve(
                    None,
                    Stored::Present(file),
                    self.store.path(),
                ));
            }
        };
        let due = refresh::is_due(&tokens.access_token, file.last_refresh, super::store::now());
        let needed = match &trigger {
            Trigger::Due => due,
            Trigger::Rejected(rejected) => due || tokens.access_token == *rejected,
            Trigger::Forced => true,
        };
        if !needed {
            return Ok(chatgpt_credentials(&tokens));
        }
        if let Some(message) = self.known_dead(&tokens.refresh_token) {
            return Err(CredentialError::LoginRequired(message));
        }
        let refreshed = refresh::refresh(
            &self.http,
            &self.settings.issuer,
            &self.settings.client_id,
            &tokens.refresh_token,
        )
        .await;
        let refreshed = match refreshed {
            Ok(refreshed) => refreshed,
            Err(err) => return self.refresh_failed(err, &trigger, &tokens),
        };
        let before = identity(&tokens);
        let new_tokens = refreshed.apply_to(tokens);
        let after = identity(&new_tokens);
        let credentials = chatgpt_credentials(&new_tokens);
        file.tokens = Some(new_tokens);
        file.last_refresh = Some(super::store::now());
        if let Err(e) = self.store.save(file, &guard).await {
            // The new access token works for this call; the next refresh will tell whether
            // the old refresh token still does.
            tracing::error!(error = %e, path = %self.store.path().display(), "could not save the refreshed ChatGPT tokens");
        }
        drop(guard);
        tracing::info!("refreshed the ChatGPT login");
        if before != after {
            self.notify_status().await;
        }
        Ok(credentials)
    }

    /// What a failed refresh means for the call: a refusal for good is remembered (the login
    /// is dead); a passing failure of an early refresh still lets the current token serve.
    fn refresh_failed(
        &self,
        err: RefreshError,
        trigger: &Trigger,
        tokens: &Tokens,
    ) -> Result<UpstreamCredentials, CredentialError> {
        match err {
            RefreshError::Permanent(message) => {
                tracing::warn!(%message, "the ChatGPT login can no longer be refreshed");
                *lock(&self.dead_refresh) = Some((tokens.refresh_token.clone(), message.clone()));
                Err(CredentialError::LoginRequired(message))
            }
            RefreshError::Transient(message) => {
                tracing::warn!(%message, "refreshing the ChatGPT login failed");
                // An early refresh that failed for a passing reason need not fail the call:
                // the current token still works for a few minutes.
                if matches!(trigger, Trigger::Due)
                    && refresh::still_valid(&tokens.access_token, super::store::now())
                {
                    return Ok(chatgpt_credentials(tokens));
                }
                Err(CredentialError::Transient(message))
            }
        }
    }

    /// The message of a refresh token the issuer already refused for good.
    fn known_dead(&self, refresh_token: &Secret) -> Option<String> {
        lock(&self.dead_refresh)
            .as_ref()
            .filter(|(dead, _)| dead == refresh_token)
            .map(|(_, message)| message.clone())
    }
}

#[async_trait::async_trait]
impl UpstreamAuth for AuthManager {
    async fn credentials(&self) -> Result<UpstreamCredentials, CredentialError> {
        let snapshot = self.snapshot().await;
        if let Active::ChatGpt {
            tokens,
            last_refresh,
        } = &snapshot.active
            && refresh::is_due(&tokens.access_token, *last_refresh, super::store::now())
        {
            return self.refresh_under_lock(Trigger::Due).await;
        }
        credentials_of(snapshot)
    }

    async fn mode(&self) -> Option<CredentialMode> {
        // Answered from what is stored, without refreshing: asking the mode must not cost a
        // round trip to the issuer.
        credentials_of(self.snapshot().await).ok().map(|c| c.mode)
    }

    async fn recover_unauthorized(
        &self,
        rejected: &UpstreamCredentials,
    ) -> Result<UpstreamCredentials, CredentialError> {
        match rejected.mode {
            // The environment key wins over auth.json, so there is no login to refresh.
            CredentialMode::ChatGpt if self.env_key().is_some() => self.credentials().await,
            CredentialMode::ChatGpt => {
                self.refresh_under_lock(Trigger::Rejected(rejected.bearer.clone()))
                    .await
            }
            // An API key cannot be refreshed: retry with whatever is current now (a new login
            // may have replaced it). If that is the rejected key again, its second 401 fails
            // the turn as `unauthorized`, which is what a wrong key is.
            CredentialMode::ApiKey => self.credentials().await,
        }
    }
}
