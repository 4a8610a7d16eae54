//! Configuration: `config.toml` in the home, `-c key=value` overrides, environment, defaults.
//!
//! Precedence: `-c` > environment > `config.toml` > defaults. A malformed file stops the
//! server at start (the error names the path and line) and is never changed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// Default model when neither config nor session names one.
pub const DEFAULT_MODEL: &str = "gpt-5-codex";
/// Default OAuth issuer for ChatGPT login and token refresh.
pub const DEFAULT_AUTH_ISSUER: &str = "https://auth.openai.com";
/// Default base URL of the ChatGPT backend.
pub const DEFAULT_CHATGPT_BASE_URL: &str = "https://chatgpt.com/backend-api/codex";
/// Default base URL of the public OpenAI API.
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Default cap on one incoming message (64 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Which wire API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireApi {
    /// The Responses API (`POST <base>/responses`).
    #[default]
    Responses,
    /// The Chat Completions API (`POST <base>/chat/completions`).
    Chat,
}

/// One `[model_providers.<id>]` table. Every field is optional so that
/// `[model_providers.openai]` can override single fields of the built-in provider.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Display name.
    pub name: Option<String>,
    /// Base URL; `/responses` or `/chat/completions` is appended.
    pub base_url: Option<String>,
    /// Environment variable holding the bearer key for this provider.
    pub env_key: Option<String>,
    /// Which wire API the provider speaks.
    pub wire_api: Option<WireApi>,
    /// Query parameters appended to every request URL.
    pub query_params: Option<BTreeMap<String, String>>,
    /// Extra headers sent as they are.
    pub http_headers: Option<BTreeMap<String, String>>,
    /// Extra headers whose values come from environment variables (header → variable).
    pub env_http_headers: Option<BTreeMap<String, String>>,
    /// HTTP retries for connect errors, 5xx and 429 (default 4).
    pub request_max_retries: Option<u32>,
    /// Retries of a stream that failed mid-way (default 5).
    pub stream_max_retries: Option<u32>,
    /// How long a stream may stay silent before it counts as failed (default 300000).
    pub stream_idle_timeout_ms: Option<u64>,
    /// Whether the provider needs OpenAI auth (API key or ChatGPT login).
    pub requires_auth: Option<bool>,
}

/// The whole configuration after merging every source.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The home directory (`auth.json`, `config.toml`, `sessions/`).
    pub home: PathBuf,
    /// Default model for new sessions.
    pub model: String,
    /// Id of the active model provider (default `openai`).
    pub model_provider: String,
    /// Providers declared in `config.toml` (including overrides of `openai`).
    pub model_providers: BTreeMap<String, ProviderConfig>,
    /// Default approval policy for new sessions, as on the wire (`untrusted`, `onFailure`, `never`).
    pub approval_policy: String,
    /// Default sandbox mode for new sessions, as on the wire.
    pub sandbox: String,
    /// Base URL of the ChatGPT backend.
    pub chatgpt_base_url: String,
    /// OAuth issuer.
    pub auth_issuer: String,
    /// Fixed port for the login callback server (`0` = any free port); `None` = 1455 then 1457.
    pub login_callback_port: Option<u16>,
    /// How long a browser login may stay pending, in seconds.
    pub login_timeout_secs: u64,
    /// Cap on one incoming message in bytes.
    pub max_message_bytes: usize,
    /// Whether responses are stored upstream (never in ChatGPT mode).
    pub store: bool,
    /// The `originator` header.
    pub originator: String,
    /// Default reasoning effort (`none` sends no `reasoning`).
    pub reasoning_effort: String,
    /// Default timeout of a shell command in milliseconds.
    pub shell_timeout_ms: u64,
    /// `OPENAI_API_KEY` from the environment, if set and not empty.
    pub env_api_key: Option<crate::secret::Secret>,
    /// `OPENAI_BASE_URL` from the environment, if set and not empty.
    pub env_openai_base_url: Option<String>,
    /// `AGENT_SERVER_SSE_FIXTURE`: replay SSE transcripts instead of calling the network.
    pub sse_fixture: Option<String>,
}
