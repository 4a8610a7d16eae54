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

/// An in-memory byte stream.
pub(crate) type Pieces = futures::stream::Iter<std::vec::IntoIter<Result<Vec<u8>, Infallible>>>;

/// Runs a parser over `body` fed in small pieces (to cross frame boundaries) and collects.
pub(crate) async fn parse_all(
    parser: fn(Pieces) -> AttemptStream,
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
        models: BTreeMap::new(),
        approval_policy: agent_server_schema::session::ApprovalPolicy::Untrusted,
        sandbox: agent_server_schema::session::SandboxMode::WorkspaceWrite,
        chatgpt_base_url: crate::config::DEFAULT_CHATGPT_BASE_URL.into(),
        auth_issuer: crate::config::DEFAULT_AUTH_ISSUER.into(),
        login_callback_port: None,
        login_timeout_secs: 600,
        device_login_timeout_secs: 900,
        max_message_bytes: crate::config::DEFAULT_MAX_MESSAGE_BYTES,
        store: false,
        originator: "agent-server".into(),
        reasoning_effort: agent_server_schema::session::ReasoningEffort::Medium,
        shell_timeout_ms: 10_000,
        ephemeral: false,
        mcp_servers: BTreeMap::new(),
        shell_max_timeout_ms: 3_600_000,
        env_api_key: None,
        env_openai_base_url: None,
        sse_fixture: None,
        project_doc_max_bytes: crate::config::DEFAULT_PROJECT_DOC_MAX_BYTES,
        project_doc_fallback_filenames: Vec::new(),
        model_auto_compact_token_limit: None,
    }
}

/// An environment lookup from pairs.
pub(crate) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

/// Answers requests with `templates` in order, repeating the last; reports each arrival.
pub(crate) struct Seq {
    templates: Mutex<VecDeque<wiremock::ResponseTemplate>>,
    arrived: tokio::sync::mpsc::UnboundedSender<()>,
}

impl wiremock::Respond for Seq {
    fn respond(&self, _request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let _ = self.arrived.send(());
        let mut templates = self.templates.lock().unwrap();
        if templates.len() > 1 {
            templates.pop_front().unwrap()
        } else {
            templates.front().cloned().unwrap()
        }
    }
}

/// A 200 answer with an SSE body.
pub(crate) fn sse(body: &str) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(200).set_body_raw(body.to_string(), "text/event-stream")
}

/// An error answer with a JSON body.
pub(crate) fn http_error(status: u16, body: Value) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(status).set_body_json(body)
}

/// A mock upstream answering every POST from `templates`; the receiver sees each arrival.
pub(crate) async fn upstream(
    templates: Vec<wiremock::ResponseTemplate>,
) -> (
    wiremock::MockServer,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let server = wiremock::MockServer::start().await;
    let (arrived, rx) = tokio::sync::mpsc::unbounded_channel();
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Seq {
            templates: Mutex::new(templates.into()),
            arrived,
        })
        .mount(&server)
        .await;
    (server, rx)
}

/// A raw HTTP server on 127.0.0.1: the first connection gets a response head and `first`
/// as one chunk, then silence (the socket stays open until the server is dropped); later
/// connections get `rest` in full.
pub(crate) struct StallServer {
    pub(crate) url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StallServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StallServer {
    pub(crate) async fn start(first: String, rest: String) -> Self {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            let mut first_done = false;
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                read_request(&mut socket).await;
                let response = if first_done {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{rest}",
                        rest.len()
                    )
                } else {
                    first_done = true;
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
                        first.len()
                    )
                };
                let _ = socket.write_all(response.as_bytes()).await;
                held.push(socket);
            }
        });
        Self { url, task }
    }
}

/// Reads one HTTP/1.1 request (head and `content-length` body) so the answer follows it.
async fn read_request(socket: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return;
            }
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
