//! One session: its settings, its queue of turns, and the worker that runs them one by one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use agent_server_schema::session::{
    Event, ForkedFrom, InputItem, SessionStatus, TurnError, TurnErrorKind, TurnStatus, Usage,
};
use serde_json::Value;
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
    /// The settings it runs with, fixed when it was queued.
    pub(crate) settings: Arc<SessionSettings>,
    /// `outputSchema`: the JSON Schema of this turn's final message.
    pub(crate) output_schema: Option<Value>,
    /// Steered input waiting for this turn's first model request (left over from the turn
    /// before it).
    pub(crate) steered: Vec<Steered>,
}

/// Input from `session/steer`, waiting for the running turn's next model request.
#[derive(Debug, Clone)]
pub(crate) struct Steered {
    /// The user message for the model.
    pub(crate) message: ResponseItem,
    /// The input as the client sent it, for `inputAdded`.
    pub(crate) items: Vec<InputItem>,
}

/// The turn that runs now.
struct Running {
    turn_id: String,
    cancel: CancellationToken,
    steered: Vec<Steered>,
}

#[derive(Default)]
struct Queue {
    running: Option<Running>,
    waiting: VecDeque<QueuedTurn>,
    worker_active: bool,
}

/// Why `session/steer` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SteerError {
    /// No turn runs.
    #[error("no turn is running in this session; send the input with session/submit instead")]
    NoRunningTurn,
    /// The running turn is not the expected one.
    #[error("the running turn is `{running}`, not `{expected}`; steer that turn or submit instead")]
    TurnMismatch {
        /// The turn the client expected.
        expected: String,
        /// The turn that runs.
        running: String,
    },
}

/// A conversation with the agent in one working directory.
pub struct Session {
    /// The session's id.
    pub id: String,
    /// Its settings for the next turn queued (a running or queued turn keeps its own).
    settings: Mutex<Arc<SessionSettings>>,
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
            settings: Mutex::new(Arc::new(settings)),
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
            settings: Mutex::new(Arc::new(settings)),
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

    /// The session's current settings: those of its last submit.
    pub fn settings(&self) -> Arc<SessionSettings> {
        Arc::clone(
            &self
                .settings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
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
    pub(crate) async fn context_messages(&self, settings: &SessionSettings) -> Vec<ResponseItem> {
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

    /// Queues a turn; it runs after the turns before it. `user_input` is the input as the
    /// client sent it, for the store (empty for a compaction). `settings`, when given, become the
    /// session's settings (this turn's and later ones'); `output_schema` is this turn's only.
    /// Returns the turn id.
    pub(crate) fn submit(
        self: &Arc<Self>,
        input: TurnInput,
        user_input: Vec<InputItem>,
        gate: ReplyGate,
        settings: Option<SessionSettings>,
        output_schema: Option<Value>,
    ) -> String {
        let turn_id = uuid::Uuid::new_v4().to_string();
        let start_worker = {
            let mut queue = self.lock();
            // Under the queue lock, so turns take settings in the order they are queued.
            let settings = {
                let mut current = self
                    .settings
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(settings) = settings {
                    *current = Arc::new(settings);
                }
                Arc::clone(&current)
            };
            queue.waiting.push_back(QueuedTurn {
                turn_id: turn_id.clone(),
                input,
                user_input,
                cancel: CancellationToken::new(),
                gate,
                settings,
                output_schema,
                steered: Vec::new(),
            });
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
        if let Some(running) = &queue.running
            && turn_id.is_none_or(|t| t == running.turn_id)
        {
            running.cancel.cancel();
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

    /// Adds input to the running turn; returns its id.
    pub(crate) fn steer(
        &self,
        expected_turn_id: Option<&str>,
        steered: Steered,
    ) -> Result<String, SteerError> {
        let mut queue = self.lock();
        let running = queue.running.as_mut().ok_or(SteerError::NoRunningTurn)?;
        if let Some(expected) = expected_turn_id
            && expected != running.turn_id
        {
            return Err(SteerError::TurnMismatch {
                expected: expected.to_string(),
                running: running.turn_id.clone(),
            });
        }
        running.steered.push(steered);
        Ok(running.turn_id.clone())
    }

    /// The steered input waiting for turn `turn_id`'s next request, taken.
    pub(crate) fn take_steered(&self, turn_id: &str) -> Vec<Steered> {
        match self.lock().running.as_mut() {
            Some(running) if running.turn_id == turn_id => std::mem::take(&mut running.steered),
            _ => Vec::new(),
        }
    }

    /// The running turn ended: steered input it never sent starts the next turn (ahead of
    /// the queue, with the session's current settings), so none is lost.
    fn end_running(&self) {
        let mut queue = self.lock();
        let Some(running) = queue.running.take() else {
            return;
        };
        let mut steered = running.steered.into_iter();
        let Some(first) = steered.next() else {
            return;
        };
        queue.waiting.push_front(QueuedTurn {
            turn_id: uuid::Uuid::new_v4().to_string(),
            input: TurnInput::User(first.message),
            user_input: first.items,
            cancel: CancellationToken::new(),
            gate: ReplyGate::opened_now(),
            settings: self.settings(),
            output_schema: None,
            steered: steered.collect(),
        });
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
                    Some(mut turn) => {
                        queue.running = Some(Running {
                            turn_id: turn.turn_id.clone(),
                            cancel: turn.cancel.clone(),
                            steered: std::mem::take(&mut turn.steered),
                        });
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
            self.sink.send(&turn_id, turn.settings.turn_started()).await;
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
        self.end_running();
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
                    error: error.map(Box::new),
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
                rate_limits: None,
            }),
        }
    }
}
