//! In-memory stand-ins for the client and the model, to drive whole turns in unit tests.
//!
//! [`MemoryLink`] is a [`ClientLink`] that keeps every event and answers approval requests
//! from a script; [`ScriptedModel`] is a [`ModelLink`] that answers each model call with the
//! next scripted list of stream events and keeps the requests. [`session_with`] builds a
//! session on both.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agent_server_schema::session::{
    ApprovalPolicy, Event, ReasoningEffort, RequestApprovalParams, SandboxMode,
    SessionEventNotification,
};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::context::agents_md::DocSettings;
use super::settings::SessionSettings;
use super::worker::Session;
use super::worker::TurnInput;
use super::{ApprovalReply, ClientLink, ModelLink, ModelStream};
use crate::gate::ReplyGate;
use crate::model::{ContentItem, ModelError, ModelRequest, ResponseEvent, ResponseItem};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A client that keeps what it is sent and answers approvals from a script.
#[derive(Default)]
pub(crate) struct MemoryLink {
    events: Mutex<Vec<SessionEventNotification>>,
    approvals_asked: Mutex<Vec<RequestApprovalParams>>,
    replies: Mutex<VecDeque<ApprovalReply>>,
    can_approve: bool,
}

impl MemoryLink {
    /// A client that declared `capabilities.approvals` and answers with `replies` in order
    /// (then `Unavailable`, as a client that went away).
    pub(crate) fn approving(replies: &[ApprovalReply]) -> Arc<Self> {
        Arc::new(Self {
            replies: Mutex::new(replies.iter().copied().collect()),
            can_approve: true,
            ..Self::default()
        })
    }

    /// A client without the approvals capability.
    pub(crate) fn without_approvals() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every event sent so far, in order.
    pub(crate) fn events(&self) -> Vec<SessionEventNotification> {
        lock(&self.events).clone()
    }

    /// The events of every notification so far, without their envelope.
    pub(crate) fn just_events(&self) -> Vec<Event> {
        lock(&self.events).iter().map(|n| n.event.clone()).collect()
    }

    /// The approval requests made so far.
    pub(crate) fn approvals_asked(&self) -> Vec<RequestApprovalParams> {
        lock(&self.approvals_asked).clone()
    }
}

#[async_trait::async_trait]
impl ClientLink for MemoryLink {
    async fn send_events(&self, events: &[SessionEventNotification]) -> bool {
        lock(&self.events).extend_from_slice(events);
        true
    }

    async fn request_approval(
        &self,
        params: RequestApprovalParams,
        cancel: &CancellationToken,
    ) -> ApprovalReply {
        if cancel.is_cancelled() {
            return ApprovalReply::Withdrawn;
        }
        lock(&self.approvals_asked).push(params);
        lock(&self.replies)
            .pop_front()
            .unwrap_or(ApprovalReply::Unavailable)
    }

    fn can_approve(&self) -> bool {
        self.can_approve
    }

    fn user_agent(&self) -> String {
        "agent-server/test".into()
    }
}

/// One scripted model call: the events its stream yields, in order.
pub(crate) type Script = Vec<Result<ResponseEvent, ModelError>>;

/// A model that answers each call with the next script (the last one repeats) and keeps
/// every request it was sent.
pub(crate) struct ScriptedModel {
    scripts: Mutex<VecDeque<Script>>,
    requests: Mutex<Vec<ModelRequest>>,
    store: bool,
    /// When set, each call's stream stops after this many events and then waits for the
    /// call's cancellation, as a model that is still thinking.
    hang_after: Option<usize>,
}

impl ScriptedModel {
    /// A model answering calls with `scripts` in order, not storing responses upstream.
    pub(crate) fn new(scripts: Vec<Script>) -> Arc<Self> {
        Arc::new(Self {
            scripts: Mutex::new(scripts.into()),
            requests: Mutex::new(Vec::new()),
            store: false,
            hang_after: None,
        })
    }

    /// A model whose streams stall after `events` events until the turn is interrupted.
    pub(crate) fn hanging(script: Script, events: usize) -> Arc<Self> {
        Arc::new(Self {
            scripts: Mutex::new(VecDeque::from([script])),
            requests: Mutex::new(Vec::new()),
            store: false,
            hang_after: Some(events),
        })
    }

    /// Every request sent so far.
    pub(crate) fn requests(&self) -> Vec<ModelRequest> {
        lock(&self.requests).clone()
    }
}

#[async_trait::async_trait]
impl ModelLink for ScriptedModel {
    async fn store_enabled(&self) -> bool {
        self.store
    }

    fn stream(&self, request: ModelRequest, cancel: CancellationToken) -> ModelStream {
        lock(&self.requests).push(request);
        let script = {
            let mut scripts = lock(&self.scripts);
            match scripts.len() {
                0 => Vec::new(),
                1 => scripts.front().cloned().unwrap_or_default(),
                _ => scripts.pop_front().unwrap_or_default(),
            }
        };
        let events = futures::stream::iter(script);
        match self.hang_after {
            None => events.boxed(),
            Some(n) => {
                let stall = futures::stream::once(async move {
                    cancel.cancelled().await;
                    Err(ModelError::Interrupted)
                });
                events.take(n).chain(stall).boxed()
            }
        }
    }
}

/// Settings for a test session in `cwd`.
pub(crate) fn settings_in(cwd: &Path, approval_policy: ApprovalPolicy) -> SessionSettings {
    SessionSettings {
        cwd: cwd.to_path_buf(),
        model: "test-model".into(),
        provider_id: "openai".into(),
        approval_policy,
        sandbox: SandboxMode::WorkspaceWrite,
        reasoning_effort: ReasoningEffort::Medium,
        instructions: "Be brief.".into(),
        shell_timeout: Duration::from_secs(10),
        // Project docs off: the home is the cwd, and nothing is read.
        doc_settings: DocSettings {
            home: cwd.to_path_buf(),
            max_bytes: 0,
            fallback_filenames: Vec::new(),
        },
        shell_name: "bash".into(),
        model_tables: Default::default(),
        wire_api: crate::config::WireApi::Responses,
        auto_compact_token_limit: None,
    }
}

/// The conversation items of a request, without the context messages (environment,
/// project instructions) the session puts before a turn's input.
pub(crate) fn conversation(input: &[ResponseItem]) -> Vec<ResponseItem> {
    input
        .iter()
        .filter(|item| !super::context::compaction::is_context_message(item))
        .cloned()
        .collect()
}

/// A session on the in-memory client and model.
pub(crate) fn session_with(
    settings: SessionSettings,
    model: Arc<ScriptedModel>,
    link: Arc<MemoryLink>,
) -> Arc<Session> {
    let mcp = crate::mcp::McpManager::new(
        &std::collections::BTreeMap::new(),
        reqwest::Client::new(),
        Arc::new(crate::mcp::LogObserver),
    );
    Session::new("s1".into(), settings, model, link, mcp)
}

/// The user message `text`.
pub(crate) fn user_text(text: &str) -> ResponseItem {
    ResponseItem::user_message(vec![ContentItem::InputText { text: text.into() }])
}

/// Submits `text` as a turn (its gate already open) and waits until the session is idle.
pub(crate) async fn run_turn(session: &Arc<Session>, text: &str) -> String {
    let turn_id = session.submit(
        TurnInput::User(user_text(text)),
        Vec::new(),
        ReplyGate::opened_now(),
        None,
        None,
    );
    session.wait_idle().await;
    turn_id
}
