//! Helpers shared by the model client's tests: SSE builders, a fixed auth, a config.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::config::Config;
use crate::secret::Secret;

use super::auth::{CredentialError, CredentialMode, UpstreamAuth, UpstreamCredentials};
use super::error::ModelError;
use super::event::ResponseEvent;
use super::failure::Failure;
use super::sse::AttemptStream;

pub(crate) const TEXT_ANSWER: &str = include_str!("testdata/text_answer.sse");
pub(crate) const SHELL_CALL: &str = include_str!("testdata/shell_call.sse");
pub(crate) const AFTER_SHELL_CALL: &str = include_str!("testdata/after_shell_call.sse");
pub(crate) const AFTER_SHELL_CALL_REQUEST: &str =
    include_str!("testdata/after_shell_call.request.json");

/// One SSE frame.
pub(crate) fn frame(kind: &str, data: &Value) -> String {
    format!("event: {kind}\ndata: {data}\n\n")
}

pub(crate) fn ev_created(id: &str) -> String {
    frame(
        "response.created",
        &json!({"type": "response.created", "response": {"id": id}}),
    )
}

pub(crate) fn ev_text_delta(item_id: &str, delta: &str) -> String {
    frame(
        "response.output_text.delta",
        &json!({"type": "response.output_text.delta", "item_id": item_id, "delta": delta}),
    )
}

pub(crate) fn ev_completed(id: &str) -> String {
    frame(
        "response.completed",
        &json!({"type": "response.completed", "response": {"id": id, "usage": {
            "input_tokens": 10, "input_tokens_details": {"cached_tokens": 4},
            "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2},
            "total_tokens": 15}}}),
    )
}

pub(crate) fn ev_failed(code: &str, message: &str) -> String {
    frame(
        "response.failed",
        &json!({"type": "response.failed", "response": {"id": "resp_f", "status": "failed",
                "error": {"code": code, "message": message}}}),
    )
}

/// The events `ev_completed(id)` parses to.
pub(crate) fn completed(id: &str) -> ResponseEvent {
    ResponseEvent::Completed {
        response_id: id.to_string(),
        usage: Some(super::TokenUsage {
            input_tokens: 10,
            cached_input_tokens: 4,
            output_tokens: 5,
            reasoning_output_tokens: 2,
            total_tokens: 15,
        }),
    }
}

/// A short successful stream: created, one delta, completed.
pub(crate) fn ok_body(id: &str) -> String {
    [
        ev_created(id),
        ev_text_delta("msg_1", "hi"),
        ev_completed(id),
    ]
    .concat()
}

/// The events of [`ok_body`].
pub(crate) fn ok_events(id: &str) -> Vec<ResponseEvent> {
    vec![
        ResponseEvent::Created {
            response_id: Some(id.to_string()),
        },
        ResponseEvent::OutputTextDelta {
            item_id: "msg_1".into(),
            delta: "hi".into(),
        },
        completed(id),
    ]
}

/// Runs a parser over `body` fed in small pieces (to cross frame boundaries) and collects.
pub(crate) async fn parse_all(
    parser: fn(
        futures::stream::Iter<std::vec::IntoIter<Result<Vec<u8>, Infallible>>>,
    ) -> AttemptStream,
    body: &str,
) -> Vec<Result<ResponseEvent, Failure>> {
    let pieces: Vec<Result<Vec<u8>, Infallible>> =
        body.as_bytes().chunks(7).map(|c| Ok(c.to_vec())).collect();
    parser(futures::stream::iter(pieces)).collect().await
}

/// Credentials in ChatGPT or API key mode.
pub(crate) fn creds(mode: CredentialMode, token: &str) -> UpstreamCredentials {
    UpstreamCredentials {
        mode,
        bearer: Secret::new(token),
        account_id: (mode == CredentialMode::ChatGpt).then(|| "acct_1".to_string()),
    }
}

/// An auth that answers from a script and counts calls.
pub(crate) struct FixedAuth {
    pub(crate) current: Mutex<VecDeque<Result<UpstreamCredentials, CredentialError>>>,
    pub(crate) recovered: Mutex<VecDeque<Result<UpstreamCredentials, CredentialError>>>,
    pub(crate) credential_calls: AtomicUsize,
    pub(crate) recover_calls: AtomicUsize,
}

impl FixedAuth {
    /// Always answers `creds`; a recovery answers `recovered` (once each, then `creds`).
    pub(crate) fn new(
        current: Vec<Result<UpstreamCredentials, CredentialError>>,
        recovered: Vec<Result<UpstreamCredentials, CredentialError>>,
    ) -> Self {
        Self {
            current: Mutex::new(current.into()),
            recovered: Mutex::new(recovered.into()),
            credential_calls: AtomicUsize::new(0),
            recover_calls: AtomicUsize::new(0),
        }
    }

    pub(crate) fn calls(&self) -> (usize, usize) {
        (
            self.credential_calls.load(Ordering::SeqCst),
            self.recover_calls.load(Ordering::SeqCst),
        )
    }

    fn take(
        queue: &Mutex<VecDeque<Result<UpstreamCredentials, CredentialError>>>,
    ) -> Result<UpstreamCredentials, CredentialError> {
        let mut queue = queue.lock().unwrap();
        if queue.len() > 1 {
            queue.pop_front().unwrap()
        } else {
            queue
                .front()
                .cloned()
                .unwrap_or(Err(CredentialError::NotLoggedIn))
        }
    }
}

#[async_trait::async_trait]
impl UpstreamAuth for FixedAuth {
    async fn credentials(&self) -> Result<UpstreamCredentials, CredentialError> {
        self.credential_calls.fetch_add(1, Ordering::SeqCst);
        Self::take(&self.current)
    }

    async fn recover_unauthorized(
        &self,
        _rejected: &UpstreamCredentials,
    ) -> Result<UpstreamCredentials, CredentialError> {
        self.recover_calls.fetch_add(1, Ordering::SeqCst);
        Self::take(&self.recovered)
    }
}

/// A configuration with defaults and no environment.
pub(crate) fn config() -> Config {
    Config {
        home: PathBuf::from("/nonexistent"),
        model: "gpt-5-codex".into(),
        model_provider: "openai".into(),
        model_providers: BTreeMap::new(),
        approval_policy: "untrusted".into(),
        sandbox: "workspaceWrite".into(),
        chatgpt_base_url: crate::config::DEFAULT_CHATGPT_BASE_URL.into(),
        auth_issuer: crate::config::DEFAULT_AUTH_ISSUER.into(),
        login_callback_port: None,
        login_timeout_secs: 600,
        max_message_bytes: crate::config::DEFAULT_MAX_MESSAGE_BYTES,
        store: false,
        originator: "agent-server".into(),
        reasoning_effort: "medium".into(),
        shell_timeout_ms: 10_000,
        env_api_key: None,
        env_openai_base_url: None,
        sse_fixture: None,
    }
}

/// An environment lookup from pairs.
pub(crate) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

/// Unwraps the error of a finished call, for comparing kinds.
pub(crate) fn kinds(errors: &[ModelError]) -> Vec<&'static str> {
    errors.iter().map(ModelError::kind).collect()
}
