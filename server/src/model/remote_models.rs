//! A provider's own model list (`GET <base_url>/models`), asked with a short timeout and kept
//! for the life of the process.
//!
//! Failure modes, each logged with the reason and answered as "no list": the provider cannot be
//! resolved (e.g. its `env_key` is unset), the request times out (2 s) or cannot connect, the
//! answer is not 2xx, or the body is not a model list. A failure is remembered for
//! [`RETRY_AFTER`] so a provider that is down does not slow every `model/list` and submit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde_json::Value;

use crate::config::{Config, DEFAULT_OPENAI_BASE_URL, WireApi};

use super::provider::{OPENAI_PROVIDER_ID, Provider, resolve_provider};

/// How long the list request may take in all.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a failed listing is remembered before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

enum Cached {
    Listed(Arc<Vec<String>>),
    Failed(Instant),
}

/// The model lists of the providers that offer one.
pub struct RemoteModels {
    http: reqwest::Client,
    cache: Mutex<HashMap<String, Cached>>,
}

/// Whether `model/list` and model checks ask this provider for its list.
pub fn lists_models(config: &Config, provider: &Provider) -> bool {
    provider.wire_api == WireApi::Chat
        || config
            .model_providers
            .get(&provider.id)
            .and_then(|p| p.list_models)
            .unwrap_or(false)
}

/// The ids of every provider whose list `model/list` shows: declared ones, and `openai`.
pub fn listing_provider_ids(config: &Config) -> Vec<String> {
    let mut ids: Vec<String> = config.model_providers.keys().cloned().collect();
    if !ids.iter().any(|id| id == OPENAI_PROVIDER_ID) {
        ids.insert(0, OPENAI_PROVIDER_ID.to_string());
    }
    ids
}

/// The URL of a provider's list.
pub fn models_url(provider: &Provider) -> String {
    let base = provider
        .base_url
        .as_deref()
        .unwrap_or(DEFAULT_OPENAI_BASE_URL);
    format!("{}/models", base.trim_end_matches('/'))
}

impl RemoteModels {
    /// An empty cache.
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The provider's model ids, or `None` when it has no list or it could not be had.
    pub async fn models(&self, config: &Config, provider: &Provider) -> Option<Arc<Vec<String>>> {
        if !lists_models(config, provider) {
            return None;
        }
        match self.lock().get(&provider.id) {
            Some(Cached::Listed(ids)) => return Some(Arc::clone(ids)),
            Some(Cached::Failed(at)) if at.elapsed() < RETRY_AFTER => return None,
            _ => {}
        }
        let url = models_url(provider);
        let result = tokio::time::timeout(LIST_TIMEOUT, self.fetch(provider, &url)).await;
        let outcome = match result {
            Ok(Ok(ids)) => Ok(ids),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err(format!("no answer within {} s", LIST_TIMEOUT.as_secs())),
        };
        match outcome {
            Ok(ids) => {
                let ids = Arc::new(ids);
                self.lock()
                    .insert(provider.id.clone(), Cached::Listed(Arc::clone(&ids)));
                Some(ids)
            }
            Err(reason) => {
                tracing::warn!(
                    provider = %provider.id,
                    %url,
                    %reason,
                    "the provider's model list could not be had; model/list answers without it"
                );
                self.lock()
                    .insert(provider.id.clone(), Cached::Failed(Instant::now()));
                None
            }
        }
    }

    async fn fetch(&self, provider: &Provider, url: &str) -> Result<Vec<String>, String> {
        let mut request = self.http.get(url);
        for (name, value) in &provider.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                request = request.header(name, value);
            }
        }
        if let Some(bearer) = &provider.bearer
            && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", bearer.expose()))
        {
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        parse_list(&body).ok_or_else(|| "the answer is not a model list".to_string())
    }

    /// Every listing provider's models, in provider id order; never fails.
    pub async fn all(&self, config: &Config) -> Vec<(String, Vec<String>)> {
        let mut lists = Vec::new();
        for id in listing_provider_ids(config) {
            let provider = match resolve_provider(config, &id) {
                Ok(provider) => provider,
                Err(err) => {
                    tracing::warn!(provider = %id, %err, "provider skipped in model/list");
                    continue;
                }
            };
            if let Some(ids) = self.models(config, &provider).await {
                lists.push((id, ids.as_ref().clone()));
            }
        }
        lists
    }
}

/// The ids of an OpenAI-style `{"data":[{"id"}]}` list, or an Ollama-style
/// `{"models":[{"name"}]}` one.
fn parse_list(body: &Value) -> Option<Vec<String>> {
    let (items, key) = match (body.get("data"), body.get("models")) {
        (Some(Value::Array(items)), _) => (items, "id"),
        (_, Some(Value::Array(items))) => (items, "name"),
        _ => return None,
    };
    Some(
        items
            .iter()
            .filter_map(|item| {
                item.get(key)
                    .or_else(|| item.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn reads_openai_and_ollama_style_lists() {
        assert_eq!(
            parse_list(&json!({"object":"list","data":[{"id":"a","object":"model"},{"id":"b"}]})),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(
            parse_list(&json!({"models":[{"name":"llama3:8b"}]})),
            Some(vec!["llama3:8b".to_string()])
        );
        assert_eq!(parse_list(&json!({"error":"nope"})), None);
    }
}
