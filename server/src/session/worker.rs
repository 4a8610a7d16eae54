//! One session: its settings, its queue of turns, and the worker that runs them one by one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use agent_server_schema::session::{
    Event, ForkedFrom, InputItem, SessionStatus, TurnError, TurnErrorKind, TurnStatus, Usage,
};
use tokio_util::sync::CancellationToken;

use super::context::ContextState;
use super::context::environment::Environment;
use super::events::EventSink;
use super::history::History;
use super::record::{Recorder, store_error};
use super::settings::SessionSettings;
use super::turn::{self, TurnOutcome};
use super::{ClientLink, ModelLink};
use crate::gate::ReplyGate;
use crate::mcp::McpManager;
use crate::model::ResponseItem;
use crate::store::{Lease, TurnStart};
use crate::tools::SessionApprovals;

/// What a turn does.
pub(crate) enum TurnInput {
    /// Runs the agent on this user message.
    User(ResponseItem),
    /// Compacts the conversation (`session/compact`).
    Compact,
}

/// A turn waiting to run (or running).
pub(crate) struct QueuedTurn {
    pub(crate) turn_id: String,
    pub(crate) input: TurnInput,
    /// The input as the client sent it, for the store (empty for a compaction).
    pub(crate) user_input: Vec<InputItem>,
    pub(crate) cancel: CancellationToken,
    /// Opens once the `session/submit` reply is written; the turn's events come after it.
    pub(crate) gate: ReplyGate,
}

#[derive(Default)]
struct Queue {
    running: Option<(String, CancellationToken)>,
    waiting: VecDeque<QueuedTurn>,
    worker_active: bool,
}

/// A conversation with the agent in one working directory.
pub struct Session {
    /// The session's id.
    pub id: String,
    /// What it was set up with.
    pub settings: SessionSettings,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Kept in memory only, never in the home's store.
    pub ephemeral: bool,
    /// Writes the session's progress to its store (`None` in unit tests of the turn engine).
    pub(crate) recorder: Option<Arc<Recorder>>,
    /// The exclusive lease of a stored session, held while it is loaded here.
    pub(crate) lease: Mutex<Option<Lease>>,
    pub(crate) meta: Mutex<Meta>,
    pub(crate) client: Arc<dyn ModelLink>,
    pub(crate) sink: EventSink,
    pub(crate) link: Arc<dyn ClientLink>,
    /// The MCP servers (the configured ones and this session's own).
    pub(crate) mcp: Arc<McpManager>,
    pub(crate) approvals: Arc<SessionApprovals>,
    pub(crate) history: tokio::sync::Mutex<History>,
    /// What the model has been told about its context.
    context: tokio::sync::Mutex<ContextState>,
    /// The instruction files in use, for `Session.instructionSources`.
    instruction_sources: Mutex<Vec<String>>,
    queue: Mutex<Queue>,
    /// Fires when the worker has nothing left to run.
    idle: tokio::sync::Notify,
}

/// What changes about a session besides its turns.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meta {
    pub(crate) title: Option<String>,
    pub(crate) updated_at: String,
    pub(crate) turn_count: u64,
    pub(crate) forked_from: Option<ForkedFrom>,
}

/// How a session is loaded: its store side, what it remembers, where its `seq` goes on from.
pub(crate) struct Loaded {
    pub(crate) created_at: String,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) lease: Option<Lease>,
    pub(crate) meta: Meta,
    pub(crate) history: History,
    pub(crate) context: ContextState,
    pub(crate) last_seq: u64,
    pub(crate) mcp: Arc<McpManager>,
}

impl Session {
    /// A session with an empty history and no store; `client` makes its model calls, `link`
    /// reaches the client (its events go through a new [`EventSink`]).
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "the turn engine's unit tests use it")
    )]
    pub(crate) fn new(
        id: String,
        settings: SessionSettings,
        client: Arc<dyn ModelLink>,
        link: Arc<dyn ClientLink>,
        mcp: Arc<McpManager>,
    ) -> Arc<Self> {
        Arc::new(Self {
            sink: EventSink::spawn(id.clone(), Arc::clone(&link), 0, None),
            id,
            settings,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ephemeral: true,
            recorder: None,
            lease: Mutex::new(None),
            meta: Mutex::new(Meta::default()),
            client,
            link,
            mcp,
            approvals: Arc::new(SessionApprovals::new()),
            history: tokio::sync::Mutex::new(History::default()),
            context: tokio::sync::Mutex::new(ContextState::default()),
            instruction_sources: Mutex::new(Vec::new()),
            queue: Mutex::new(Queue::default()),
            idle: tokio::sync::Notify::new(),
        })
    }

    /// A session backed by a store (new, resumed or forked).
    pub(crate) fn loaded(
        id: String,
        settings: SessionSettings,
        client: Arc<dyn ModelLink>,
        link: Arc<dyn ClientLink>,
        loaded: Loaded,
    ) -> Arc<Self> {
        let recorder = Arc::clone(&loaded.recorder);
        let sources = loaded.context.sources().to_vec();
        Arc::new(Self {
            sink: EventSink::spawn(
                id.clone(),
                Arc::clone(&link),
                loaded.last_seq,
                Some(Arc::clone(&recorder)),
            ),
            id,
            settings,
            created_at: loaded.created_at,
            ephemeral: !recorder.store().is_durable(),
            recorder: Some(recorder),
            lease: Mutex::new(loaded.lease),
            meta: Mutex::new(loaded.meta),
            client,
            link,
            mcp: loaded.mcp,
            approvals: Arc::new(SessionApprovals::new()),
            history: tokio::sync::Mutex::new(loaded.history),
            context: tokio::sync::Mutex::new(loaded.context),
            instruction_sources: Mutex::new(sources),
            queue: Mutex::new(Queue::default()),
            idle: tokio::sync::Notify::new(),
        })
    }

    /// The store the session is kept in (`None` only in unit tests of the turn engine).
    pub(crate) fn store(&self) -> Option<&crate::store::Store> {
        self.recorder.as_ref().map(|r| r.store())
    }

    /// What changes about the session besides its turns.
    pub(crate) fn meta(&self) -> Meta {
        self.meta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_title(&self, title: String) {
        let mut meta = self
            .meta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        meta.title = Some(title);
    }

    /// Stores what the history gained since it was last stored (call with the history locked,
    /// after changing it).
    pub(crate) fn record_history(&self, history: &History, turn_id: &str) {
        if let Some(recorder) = &self.recorder {
            recorder.history(history.items(), Some(turn_id));
        }
    }

    /// Stores a history that replaced the one before (a compaction).
    pub(crate) fn replace_history(&self, history: &History, turn_id: &str) {
        if let Some(recorder) = &self.recorder {
            recorder.replace_history(history.items(), Some(turn_id));
        }
    }

    /// Lets go of the session once it is idle: releases the lease of a stored one, forgets an
    /// ephemeral one.
    pub(crate) fn unload(&self) {
        let lease = self
            .lease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if self.ephemeral
            && let Some(recorder) = &self.recorder
            && let Err(err) = recorder.store().delete(&self.id, None)
        {
            tracing::warn!(session_id = %self.id, %err, "could not forget an ephemeral session");
        }
        drop(lease);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The project instruction files the model is given, as absolute paths.
    pub fn instruction_sources(&self) -> Vec<String> {
        self.instruction_sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The messages that go before a turn's input: project instructions at the first turn
    /// (again after a cwd change), the environment whenever it changed.
    pub(crate) async fn context_messages(&self) -> Vec<ResponseItem> {
        let settings = &self.settings;
        let env = Environment {
            cwd: settings.cwd.clone(),
            approval_policy: settings.approval_policy,
            sandbox: settings.sandbox,
        };
        let mut context = self.context.lock().await;
        let before = context.clone();
        let messages = context
            .before_turn(&settings.doc_settings, env, &settings.shell_name)
            .await;
        if *context != before
            && let Some(recorder) = &self.recorder
        {
            recorder.context(&context);
        }
        *self
            .instruction_sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = context.sources().to_vec();
        messages
    }

    /// The instructions and environment messages as last sent: the start of a compacted history.
    pub(crate) async fn initial_context(&self) -> Vec<ResponseItem> {
        self.context.lock().await.initial_context()
    }

    /// Whether a turn is running or queued.
    pub fn status(&self) -> SessionStatus {
        let queue = self.lock();
        if queue.running.is_some() || !queue.waiting.is_empty() {
            SessionStatus::Running
        } else {
            SessionStatus::Idle
        }
    }

    /// Queues a turn; it runs after the turns before it. Returns the turn id.
    pub(crate) fn submit(
        self: &Arc<Self>,
        input: TurnInput,
        user_input: Vec<InputItem>,
        gate: ReplyGate,
    ) -> String {
        let turn_id = uuid::Uuid::new_v4().to_string();
        let turn = QueuedTurn {
            turn_id: turn_id.clone(),
            input,
            user_input,
            cancel: CancellationToken::new(),
            gate,
        };
        let start_worker = {
            let mut queue = self.lock();
            queue.waiting.push_back(turn);
            !std::mem::replace(&mut queue.worker_active, true)
        };
        if start_worker {
            tokio::spawn(Arc::clone(self).work());
        }
        turn_id
    }

    /// Interrupts one turn (running or queued), or the running turn and every queued one.
    /// Returns false when `turn_id` names no running or queued turn.
    pub fn interrupt(&self, turn_id: Option<&str>) -> bool {
        let queue = self.lock();
        let mut found = false;
        if let Some((id, cancel)) = &queue.running
            && turn_id.is_none_or(|t| t == id)
        {
            cancel.cancel();
            found = true;
        }
        for turn in &queue.waiting {
            if turn_id.is_none_or(|t| t == turn.turn_id) {
                turn.cancel.cancel();
                found = true;
            }
        }
        found || turn_id.is_none()
    }

    /// Waits until no turn is running or queued and every event has been sent.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if !self.lock().worker_active {
                break;
            }
            notified.await;
        }
        self.sink.flushed().await;
    }

    /// Runs queued turns one at a time until the queue is empty.
    async fn work(self: Arc<Self>) {
        loop {
            let turn = {
                let mut queue = self.lock();
                match queue.waiting.pop_front() {
                    Some(turn) => {
                        queue.running = Some((turn.turn_id.clone(), turn.cancel.clone()));
                        turn
                    }
                    None => {
                        queue.worker_active = false;
                        queue.running = None;
                        drop(queue);
                        self.idle.notify_waiters();
                        return;
                    }
                }
            };
            turn.gate.opened().await;
            let turn_id = turn.turn_id.clone();
            let begun = self.begin_turn(&turn);
            self.sink
                .send(
                    &turn_id,
                    Event::TurnStarted {
                        model: self.settings.model.clone(),
                    },
                )
                .await;
            let outcome = match begun {
                Ok(()) => self.run_turn(turn).await,
                Err(err) => {
                    self.take_store_failure();
                    TurnOutcome {
                        error: Some(store_error(&err)),
                        ..TurnOutcome::failed(
                            TurnErrorKind::StoreUnavailable,
                            String::new(),
                            Usage::default(),
                        )
                    }
                }
            };
            self.finish_turn(&turn_id, outcome).await;
        }
    }

    fn take_store_failure(&self) -> Option<crate::store::StoreError> {
        self.recorder.as_ref().and_then(|r| r.take_failure())
    }

    /// Stores the turn's start (its input, the title of a first turn) before `turnStarted`.
    fn begin_turn(&self, turn: &QueuedTurn) -> Result<(), crate::store::StoreError> {
        let user_text = super::input::user_text(&turn.user_input);
        let mut meta = self
            .meta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let title = match &meta.title {
            Some(_) => None,
            None => super::input::title_of(&user_text),
        };
        if let Some(recorder) = &self.recorder {
            let start = TurnStart {
                turn_id: turn.turn_id.clone(),
                input: turn.user_input.clone(),
                title: title.clone(),
            };
            meta.updated_at = recorder.begin_turn(&start, &user_text, turn.cancel.clone())?;
        }
        meta.turn_count += 1;
        if meta.title.is_none() {
            meta.title = title;
        }
        Ok(())
    }

    /// Runs the turn in its own task, so that even a panic inside it ends in a
    /// `turnCompleted`: the worker is the guard that always sends it.
    async fn run_turn(self: &Arc<Self>, turn: QueuedTurn) -> TurnOutcome {
        let turn_id = turn.turn_id.clone();
        let span = tracing::info_span!("turn", session_id = %self.id, turn_id = %turn_id);
        let run = tracing::Instrument::instrument(turn::run(Arc::clone(self), turn), span);
        let mut outcome = match tokio::spawn(run).await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::error!(session_id = %self.id, turn_id, %err, "a turn crashed");
                TurnOutcome::failed(
                    TurnErrorKind::Internal,
                    format!(
                        "the turn crashed inside the server ({err}); submit again, and report this bug"
                    ),
                    Usage::default(),
                )
            }
        };
        if let Some(err) = self.take_store_failure() {
            outcome.status = TurnStatus::Failed;
            outcome.error = Some(store_error(&err));
        }
        outcome
    }

    /// Sends the turn's `turnCompleted` (the forwarder stores the turn's end first).
    async fn finish_turn(&self, turn_id: &str, outcome: TurnOutcome) {
        {
            let mut queue = self.lock();
            queue.running = None;
        }
        let TurnOutcome {
            status,
            last_agent_message,
            usage,
            error,
        } = outcome;
        let error = error.filter(|_| status == TurnStatus::Failed);
        self.sink
            .send(
                turn_id,
                Event::TurnCompleted {
                    status,
                    last_agent_message,
                    usage,
                    error,
                },
            )
            .await;
    }
}

impl TurnOutcome {
    pub(crate) fn failed(kind: TurnErrorKind, message: String, usage: Usage) -> Self {
        Self {
            status: TurnStatus::Failed,
            last_agent_message: None,
            usage,
            error: Some(TurnError {
                kind,
                message,
                http_status: None,
                resets_at: None,
                plan_type: None,
            }),
        }
    }
}
