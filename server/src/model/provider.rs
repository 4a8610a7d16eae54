//! Model providers: the built-in `openai` one and `[model_providers.<id>]` from config.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{Config, ProviderConfig, WireApi};
use crate::secret::Secret;

use super::error::ModelError;

/// Id of the built-in provider.
pub const OPENAI_PROVIDER_ID: &str = "openai";
/// Default HTTP retries for connect errors, 5xx and 429.
pub const DEFAULT_REQUEST_MAX_RETRIES: u32 = 4;
/// Default retries of a stream that failed mid-way.
pub const DEFAULT_STREAM_MAX_RETRIES: u32 = 5;
/// Default time a stream may stay silent before it counts as failed.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_millis(300_000);

/// A provider resolved against the environment, ready for requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    /// The id it was configured under (`openai`, `ollama`, …).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Base URL; `None` means "the default for the auth mode".
    pub base_url: Option<String>,
    /// The variable that supplied `bearer`, for messages.
    pub env_key: Option<String>,
    /// The bearer from `env_key`; when set it is used instead of OpenAI auth.
    pub bearer: Option<Secret>,
    /// Which wire API the provider speaks.
    pub wire_api: WireApi,
    /// Appended to every request URL.
    pub query_params: BTreeMap<String, String>,
    /// `http_headers` plus the `env_http_headers` whose variables are set.
    pub headers: BTreeMap<String, String>,
    /// HTTP retry budget.
    pub request_max_retries: u32,
    /// Stream retry budget.
    pub stream_max_retries: u32,
    /// How long a stream (or the wait for response headers) may stay silent.
    pub stream_idle_timeout: Duration,
    /// Whether requests need OpenAI auth (an API key or a ChatGPT login).
    pub requires_auth: bool,
}

impl Provider {
    /// Whether calls need OpenAI auth (an API key or a ChatGPT login): the provider requires
    /// it and has no key of its own.
    pub fn needs_openai_auth(&self) -> bool {
        self.requires_auth && self.bearer.is_none()
    }
}

/// Whether the configured default provider needs OpenAI auth; a provider that cannot be
/// resolved counts as needing it (the error itself surfaces when a session uses it).
pub fn default_provider_needs_openai_auth(config: &Config) -> bool {
    resolve_provider(config, &config.model_provider).map_or(true, |p| p.needs_openai_auth())
}

/// Resolves provider `id` from config and the process environment.
pub fn resolve_provider(config: &Config, id: &str) -> Result<Provider, ModelError> {
    resolve_provider_with_env(config, id, &|name| std::env::var(name).ok())
}

/// [`resolve_provider`] with the environment supplied by `env` (tests pass a map).
pub fn resolve_provider_with_env(
    config: &Config,
    id: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider, ModelError> {
    let env_value = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let declared = config.model_providers.get(id);
    let merged = if id == OPENAI_PROVIDER_ID {
        let mut merged = builtin_openai();
        if let Some(overrides) = declared {
            merged = overlay(merged, overrides.clone());
        }
        if let Some(url) = config.env_openai_base_url.clone().filter(|u| !u.is_empty()) {
            merged.base_url = Some(url);
        }
        merged
    } else {
        declared
            .cloned()
            .ok_or_else(|| ModelError::UnknownProvider(id.to_string()))?
    };

    let bearer = match &merged.env_key {
        Some(var) => Some(env_value(var).map(Secret::new).ok_or_else(|| {
            ModelError::AuthRequired(format!(
                "model provider `{id}` reads its API key from the environment variable {var}, \
                 which is not set: set it and start again"
            ))
        })?),
        None => None,
    };
    let mut headers = merged.http_headers.unwrap_or_default();
    for (header, var) in merged.env_http_headers.unwrap_or_default() {
        if let Some(value) = env_value(&var) {
            headers.insert(header, value);
        }
    }
    check_headers(id, &headers)?;

    Ok(Provider {
        id: id.to_string(),
        name: merged.name.unwrap_or_else(|| id.to_string()),
        base_url: merged
            .base_url
            .filter(|u| !u.trim().is_empty())
            .map(|u| u.trim_end_matches('/').to_string()),
        env_key: merged.env_key,
        bearer,
        wire_api: merged.wire_api.unwrap_or_default(),
        query_params: merged.query_params.unwrap_or_default(),
        headers,
        request_max_retries: merged
            .request_max_retries
            .unwrap_or(DEFAULT_REQUEST_MAX_RETRIES),
        stream_max_retries: merged
            .stream_max_retries
            .unwrap_or(DEFAULT_STREAM_MAX_RETRIES),
        stream_idle_timeout: merged
            .stream_idle_timeout_ms
            .map_or(DEFAULT_STREAM_IDLE_TIMEOUT, Duration::from_millis),
        // Custom providers are usually local or third-party servers; only the built-in one
        // defaults to OpenAI auth.
        requires_auth: merged.requires_auth.unwrap_or(false),
    })
}

fn builtin_openai() -> ProviderConfig {
    ProviderConfig {
        name: Some("OpenAI".to_string()),
        env_http_headers: Some(BTreeMap::from([
            (
                "OpenAI-Organization".to_string(),
                "OPENAI_ORGANIZATION".to_string(),
            ),
            ("OpenAI-Project".to_string(), "OPENAI_PROJECT".to_string()),
        ])),
        requires_auth: Some(true),
        ..ProviderConfig::default()
    }
}

/// Fields set in `top` replace those of `base`, one by one.
fn overlay(base: ProviderConfig, top: ProviderConfig) -> ProviderConfig {
    ProviderConfig {
        name: top.name.or(base.name),
        base_url: top.base_url.or(base.base_url),
        env_key: top.env_key.or(base.env_key),
        wire_api: top.wire_api.or(base.wire_api),
        query_params: top.query_params.or(base.query_params),
        http_headers: top.http_headers.or(base.http_headers),
        env_http_headers: top.env_http_headers.or(base.env_http_headers),
        request_max_retries: top.request_max_retries.or(base.request_max_retries),
        stream_max_retries: top.stream_max_retries.or(base.stream_max_retries),
        stream_idle_timeout_ms: top.stream_idle_timeout_ms.or(base.stream_idle_timeout_ms),
        requires_auth: top.requires_auth.or(base.requires_auth),
        list_models: top.list_models.or(base.list_models),
    }
}

/// Rejects headers reqwest could not send, naming the config key to fix.
fn check_headers(id: &str, headers: &BTreeMap<String, String>) -> Result<(), ModelError> {
    use reqwest::header::{HeaderName, HeaderValue};
    for (name, value) in headers {
        if HeaderName::from_bytes(name.as_bytes()).is_err() || HeaderValue::from_str(value).is_err()
        {
            return Err(ModelError::InvalidProvider(format!(
                "model_providers.{id}: header `{name}` has an invalid name or value: fix it in config.toml"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "provider_tests.rs"]
mod tests;
