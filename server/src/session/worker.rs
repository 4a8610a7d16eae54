//! One session: its settings, its queue of turns, and the worker that runs them one by one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use agent_server_schema::session::{
    Event, InputItem, SessionStatus, TurnError, TurnErrorKind, TurnStatus, Usage,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::context::ContextState;
use super::context::environment::Environment;
use super::events::EventSink;
use super::history::History;
use super::settings::SessionSettings;
use super::turn::{self, TurnOutcome};
use super::{ClientLink, ModelLink};
use crate::gate::ReplyGate;
use crate::mcp::McpManager;
use crate::model::ResponseItem;
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

impl Session {
    /// A session with an empty history; `client` makes its model calls, `link` reaches the
    /// client (its events go through a new [`EventSink`]).
    pub(crate) fn new(
        id: String,
        settings: SessionSettings,
        client: Arc<dyn ModelLink>,
        link: Arc<dyn ClientLink>,
        mcp: Arc<McpManager>,
    ) -> Arc<Self> {
        Arc::new(Self {
            sink: EventSink::spawn(id.clone(), Arc::clone(&link)),
            id,
            settings: Mutex::new(Arc::new(settings)),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
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
        let messages = context
            .before_turn(&settings.doc_settings, env, &settings.shell_name)
            .await;
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

    /// Queues a turn; it runs after the turns before it. `settings`, when given, become the
    /// session's settings (this turn's and later ones'); `output_schema` is this turn's only.
    /// Returns the turn id.
    pub(crate) fn submit(
        self: &Arc<Self>,
        input: TurnInput,
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
            self.sink.send(&turn_id, turn.settings.turn_started()).await;
            // The turn runs in its own task so that even a panic inside it ends in a
            // `turnCompleted`: this worker is the guard that always sends it.
            let span = tracing::info_span!("turn", session_id = %self.id, turn_id = %turn_id);
            let run = tracing::Instrument::instrument(turn::run(Arc::clone(&self), turn), span);
            let outcome = match tokio::spawn(run).await {
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
                    &turn_id,
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
