//! The model client: one auth-aware entry point for every model call.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, WireApi};

use super::auth::{CredentialMode, UpstreamAuth};
use super::call::Call;
use super::error::ModelError;
use super::event::ResponseEvent;
use super::fixture::Replay;
use super::provider::Provider;
use super::rate_limits::RateLimitTracker;
use super::request::ModelRequest;

/// Default first backoff step; later steps double.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(200);

/// Settings of a client that do not belong to the provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSettings {
    /// The `originator` header.
    pub originator: String,
    /// Base URL of the ChatGPT backend, used in ChatGPT mode when the provider sets none.
    pub chatgpt_base_url: String,
    /// Whether to store responses upstream (never in ChatGPT mode).
    pub store: bool,
    /// Replay these SSE transcripts instead of calling the network (see [`super::fixture`]).
    pub sse_fixture: Option<String>,
    /// First step of the retry backoff (`200 ms · 2^(n-1)`).
    pub backoff_base: Duration,
    /// Where the rate limits seen in responses are recorded (one per process, shared).
    pub rate_limits: RateLimitTracker,
}

impl ClientSettings {
    /// The settings `config` asks for.
    pub fn from_config(config: &Config) -> Self {
        Self {
            originator: config.originator.clone(),
            chatgpt_base_url: config.chatgpt_base_url.clone(),
            store: config.store,
            sse_fixture: config.sse_fixture.clone(),
            backoff_base: DEFAULT_BACKOFF_BASE,
            rate_limits: RateLimitTracker::default(),
        }
    }
}

/// What every call of one client shares.
pub(crate) struct Shared {
    pub(crate) settings: ClientSettings,
    pub(crate) provider: Provider,
    pub(crate) auth: Option<Arc<dyn UpstreamAuth>>,
    pub(crate) http: reqwest::Client,
    pub(crate) replay: Option<Replay>,
}

/// Makes model calls for one provider; cheap to clone (clones share the replay position).
#[derive(Clone)]
pub struct ModelClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ModelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelClient")
            .field("provider", &self.shared.provider.id)
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl ModelClient {
    /// A client for `provider`; `auth` supplies OpenAI credentials when the provider needs them.
    pub fn new(
        settings: ClientSettings,
        provider: Provider,
        auth: Option<Arc<dyn UpstreamAuth>>,
        http: reqwest::Client,
    ) -> Self {
        let replay = settings.sse_fixture.as_deref().and_then(Replay::new);
        Self {
            shared: Arc::new(Shared {
                settings,
                provider,
                auth,
                http,
                replay,
            }),
        }
    }

    /// The provider this client calls.
    pub fn provider(&self) -> &Provider {
        &self.shared.provider
    }

    /// Whether requests will use `store:true`: config `store`, a Responses provider, and not
    /// ChatGPT mode. When it is false the session sends the whole conversation every time.
    pub async fn store_enabled(&self) -> bool {
        let shared = &self.shared;
        if !shared.settings.store || shared.provider.wire_api != WireApi::Responses {
            return false;
        }
        if !shared.provider.needs_openai_auth() {
            return true;
        }
        match &shared.auth {
            Some(auth) => auth.mode().await == Some(CredentialMode::ApiKey),
            None => false,
        }
    }

    /// Runs one model call with all retries inside. The stream ends after `Completed`,
    /// `Incomplete` or one `Err`; `Retrying` voids what came since the last attempt started.
    /// When `cancel` fires, the stream yields `Err(Interrupted)` at once and ends.
    pub fn stream(
        &self,
        request: ModelRequest,
        cancel: CancellationToken,
    ) -> BoxStream<'static, Result<ResponseEvent, ModelError>> {
        let fixture = self.shared.replay.as_ref().map(Replay::next_path);
        // Boxed: the state moves in and out of the unfold's future at every event.
        let call = Box::new(Call::new(
            Arc::clone(&self.shared),
            request,
            cancel,
            fixture,
        ));
        stream::unfold(call, |mut call| async move {
            call.next().await.map(|item| (item, call))
        })
        .boxed()
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
