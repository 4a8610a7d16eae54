//! What the model client needs from credentials, as a trait the auth domain implements.
//!
//! The model client sits below `auth/` in the module order, so it defines the interface and
//! `auth::AuthManager` implements it; tests can supply a fixed implementation.

use crate::secret::Secret;

/// Which kind of credentials a model call uses; decides the endpoint, headers and `store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialMode {
    /// An OpenAI API key: the public API.
    ApiKey,
    /// A ChatGPT login: the ChatGPT backend, `chatgpt-account-id`, `store:false`.
    ChatGpt,
}

/// Credentials for one model call.
#[derive(Debug, Clone)]
pub struct UpstreamCredentials {
    /// The kind of credentials.
    pub mode: CredentialMode,
    /// The bearer token: the API key or the ChatGPT access token.
    pub bearer: Secret,
    /// The ChatGPT account id, sent as `chatgpt-account-id` when known.
    pub account_id: Option<String>,
}

/// Why credentials could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    /// No credentials are configured at all.
    #[error("not logged in: run `agent-server login` or call auth/loginApiKey")]
    NotLoggedIn,
    /// The stored login can no longer be used (refresh token expired, reused or revoked).
    #[error("{0}")]
    LoginRequired(String),
    /// A refresh failed for a reason that may pass (5xx, network); the caller may retry.
    #[error("{0}")]
    Transient(String),
    /// The stored credentials could not be read (e.g. a malformed auth.json).
    #[error("{0}")]
    Unusable(String),
}

/// The source of credentials for model calls.
#[async_trait::async_trait]
pub trait UpstreamAuth: Send + Sync {
    /// Credentials to use now; a ChatGPT access token that is due is refreshed first.
    async fn credentials(&self) -> Result<UpstreamCredentials, CredentialError>;

    /// The mode the next call would use, or `None` when there are no usable credentials.
    /// Implementations should answer from what they hold, without refreshing; the default
    /// asks [`UpstreamAuth::credentials`].
    async fn mode(&self) -> Option<CredentialMode> {
        self.credentials().await.ok().map(|c| c.mode)
    }

    /// Called once after the model endpoint answered 401 to `rejected`: re-read the stored
    /// credentials (another process may have refreshed), refresh if they are unchanged, and
    /// return the credentials to retry with.
    async fn recover_unauthorized(
        &self,
        rejected: &UpstreamCredentials,
    ) -> Result<UpstreamCredentials, CredentialError>;
}
