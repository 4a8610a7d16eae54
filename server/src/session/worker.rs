//! One session: its settings, its queue of turns, and the worker that runs them one by one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use agent_server_schema::session::{
    Event, SessionStatus, TurnError, TurnErrorKind, TurnStatus, Usage,
};
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
            settings,
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

    /// Queues a turn; it runs after the turns before it. Returns the turn id.
    pub(crate) fn submit(self: &Arc<Self>, input: TurnInput, gate: ReplyGate) -> String {
        let turn_id = uuid::Uuid::new_v4().to_string();
        let turn = QueuedTurn {
            turn_id: turn_id.clone(),
            input,
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
            self.sink
                .send(
                    &turn_id,
                    Event::TurnStarted {
                        model: self.settings.model.clone(),
                    },
                )
                .await;
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
            }),
        }
    }
}
