//! What one model call asks for, and how it becomes a URL, headers and a Responses body.

use reqwest::Url;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{DEFAULT_OPENAI_BASE_URL, WireApi};
use crate::secret::Secret;

use super::auth::{CredentialMode, UpstreamCredentials};
use super::error::ModelError;
use super::item::ResponseItem;
use super::provider::Provider;

/// One model call as the session describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRequest {
    /// The session id: sent as `session_id` and as `prompt_cache_key`.
    pub session_id: String,
    /// The model slug.
    pub model: String,
    /// The system instructions.
    pub instructions: String,
    /// The conversation so far (or, when storing, what is new since the previous response).
    pub input: Vec<ResponseItem>,
    /// Responses function tool specs.
    pub tools: Vec<Value>,
    /// Reasoning effort; `None` or `"none"` sends no `reasoning`.
    pub reasoning_effort: Option<String>,
    /// The previous response, sent only when storing (`store:true`).
    pub previous_response_id: Option<String>,
    /// The `User-Agent` header value.
    pub user_agent: String,
    /// A JSON Schema the final message must match (`outputSchema`), sent as `text.format`.
    pub output_schema: Option<Value>,
}

impl ModelRequest {
    /// The effort to send, if reasoning is on.
    pub(crate) fn effort(&self) -> Option<&str> {
        self.reasoning_effort
            .as_deref()
            .filter(|e| !e.is_empty() && *e != "none")
    }
}

/// The request URL for `provider` under credential `mode` (`None`: no OpenAI auth).
pub(crate) fn endpoint(
    provider: &Provider,
    mode: Option<CredentialMode>,
    chatgpt_base_url: &str,
) -> Result<Url, ModelError> {
    let base = match (&provider.base_url, mode) {
        (Some(base), _) => base.as_str(),
        (None, Some(CredentialMode::ChatGpt)) => chatgpt_base_url,
        (None, _) => DEFAULT_OPENAI_BASE_URL,
    };
    let path = match provider.wire_api {
        WireApi::Responses => "responses",
        WireApi::Chat => "chat/completions",
    };
    let joined = format!("{}/{path}", base.trim_end_matches('/'));
    let mut url = Url::parse(&joined).map_err(|err| {
        ModelError::InvalidProvider(format!(
            "model provider `{}` has an unusable base_url `{base}`: {err}",
            provider.id
        ))
    })?;
    if !provider.query_params.is_empty() {
        url.query_pairs_mut().extend_pairs(&provider.query_params);
    }
    Ok(url)
}

/// Everything a request's headers depend on besides the provider.
pub(crate) struct HeaderInputs<'a> {
    /// The bearer to send, if any.
    pub bearer: Option<&'a Secret>,
    /// The ChatGPT account id, sent in ChatGPT mode.
    pub account_id: Option<&'a str>,
    /// The `originator` header.
    pub originator: &'a str,
    /// The `User-Agent` header.
    pub user_agent: &'a str,
    /// The `session_id` header.
    pub session_id: &'a str,
}

/// The bearer and ChatGPT account id to send: the provider's own key wins over OpenAI auth.
pub(crate) fn auth_parts<'a>(
    provider: &'a Provider,
    creds: Option<&'a UpstreamCredentials>,
) -> (Option<&'a Secret>, Option<&'a str>) {
    let bearer = provider.bearer.as_ref().or(creds.map(|c| &c.bearer));
    let account_id = creds
        .filter(|c| c.mode == CredentialMode::ChatGpt)
        .and_then(|c| c.account_id.as_deref());
    (bearer, account_id)
}

/// The request headers: the provider's own first, then the contract's, which win.
pub(crate) fn headers(provider: &Provider, inputs: &HeaderInputs<'_>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in &provider.headers {
        // Names and values were checked when the provider was resolved.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.insert(name, value);
        }
    }
    let mut put = |name: HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            map.insert(name, value);
        }
    };
    put(HeaderName::from_static("originator"), inputs.originator);
    put(USER_AGENT, inputs.user_agent);
    put(HeaderName::from_static("session_id"), inputs.session_id);
    put(ACCEPT, "text/event-stream");
    if let Some(account) = inputs.account_id {
        put(HeaderName::from_static("chatgpt-account-id"), account);
    }
    if let Some(bearer) = inputs.bearer
        && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", bearer.expose()))
    {
        // Sensitive values are redacted by the http crate's Debug.
        value.set_sensitive(true);
        map.insert(AUTHORIZATION, value);
    }
    map
}

/// The `text` field: the default verbosity for the GPT-5 family (which accepts it, as the
/// Codex CLI sends it; other models may reject the field), and the `outputSchema` as a strict
/// `json_schema` format.
fn text_field(request: &ModelRequest) -> Option<Value> {
    let mut text = serde_json::Map::new();
    if request.model.starts_with("gpt-5") {
        text.insert("verbosity".into(), json!("medium"));
    }
    if let Some(schema) = &request.output_schema {
        text.insert(
            "format".into(),
            json!({"type": "json_schema", "name": "output", "schema": schema, "strict": true}),
        );
    }
    (!text.is_empty()).then_some(Value::Object(text))
}

/// The Responses API body, serialized straight from the request: no JSON tree of the whole
/// conversation is built on the way (it took several times the body's size per attempt).
/// Fields go out in this order.
#[derive(Serialize)]
pub(crate) struct ResponsesBody<'a> {
    model: &'a str,
    instructions: &'a str,
    input: &'a [ResponseItem],
    tools: &'a [Value],
    tool_choice: &'static str,
    parallel_tool_calls: bool,
    store: bool,
    stream: bool,
    prompt_cache_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<Reasoning<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    include: Option<[&'static str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_response_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Value>,
}

/// The `reasoning` field.
#[derive(Serialize)]
pub(crate) struct Reasoning<'a> {
    effort: &'a str,
    summary: &'static str,
}

/// The Responses API body. `previous_response_id` is only sent when storing, since without
/// storage the upstream has no previous response to refer to.
pub(crate) fn responses_body(request: &ModelRequest, store: bool) -> ResponsesBody<'_> {
    let effort = request.effort();
    ResponsesBody {
        model: &request.model,
        instructions: &request.instructions,
        input: &request.input,
        tools: &request.tools,
        tool_choice: "auto",
        parallel_tool_calls: false,
        store,
        stream: true,
        prompt_cache_key: &request.session_id,
        reasoning: effort.map(|effort| Reasoning {
            effort,
            summary: "auto",
        }),
        include: (!store && effort.is_some()).then_some(["reasoning.encrypted_content"]),
        previous_response_id: request.previous_response_id.as_deref().filter(|_| store),
        text: text_field(request),
    }
}
