//! One session: its settings, its queue of turns, and the worker that runs them one by one.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agent_server_schema::session::{
    ApprovalPolicy, Event, ReasoningEffort, SandboxMode, SessionStatus, TurnError, TurnErrorKind,
    TurnStatus, Usage,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::context::ContextState;
use super::context::agents_md::DocSettings;
use super::context::environment::Environment;
use super::events::EventSink;
use super::turn::{self, Conversation, TurnOutcome};
use crate::model::ModelClient;
use crate::tools::SessionApprovals;

/// A turn waiting to run (or running).
pub(crate) struct QueuedTurn {
    pub(crate) turn_id: String,
    pub(crate) message: Value,
    pub(crate) cancel: CancellationToken,
    /// Fires once the `session/submit` reply is written; the turn's events come after it.
    pub(crate) start_after: CancellationToken,
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
    /// Where commands run and patches apply.
    pub cwd: PathBuf,
    /// The model of its turns.
    pub model: String,
    /// The model provider id.
    pub provider_id: String,
    /// When to ask before acting.
    pub approval_policy: ApprovalPolicy,
    /// What commands may touch.
    pub sandbox: SandboxMode,
    /// How hard the model thinks.
    pub reasoning_effort: ReasoningEffort,
    /// The full instructions sent with every model call.
    pub instructions: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Default timeout of a command.
    pub shell_timeout: std::time::Duration,
    pub(crate) client: ModelClient,
    pub(crate) sink: EventSink,
    pub(crate) link: Arc<dyn super::ClientLink>,
    pub(crate) approvals: Arc<SessionApprovals>,
    pub(crate) conversation: tokio::sync::Mutex<Conversation>,
    /// Where project instructions come from and how much of them to read.
    doc_settings: DocSettings,
    /// The name of the user's login shell, for the environment message.
    shell_name: String,
    /// What the model has been told about its context.
    context: tokio::sync::Mutex<ContextState>,
    /// The instruction files in use, for `Session.instructionSources`.
    instruction_sources: Mutex<Vec<String>>,
    queue: Mutex<Queue>,
    /// Fires when the worker has nothing left to run.
    idle: tokio::sync::Notify,
}

/// Everything needed to make a session.
pub(crate) struct SessionParts {
    pub(crate) id: String,
    pub(crate) cwd: PathBuf,
    pub(crate) model: String,
    pub(crate) provider_id: String,
    pub(crate) approval_policy: ApprovalPolicy,
    pub(crate) sandbox: SandboxMode,
    pub(crate) reasoning_effort: ReasoningEffort,
    pub(crate) instructions: String,
    pub(crate) shell_timeout: std::time::Duration,
    pub(crate) client: ModelClient,
    pub(crate) sink: EventSink,
    pub(crate) link: Arc<dyn super::ClientLink>,
    pub(crate) doc_settings: DocSettings,
    pub(crate) shell_name: String,
}

impl Session {
    pub(crate) fn new(parts: SessionParts) -> Arc<Self> {
        Arc::new(Self {
            id: parts.id,
            cwd: parts.cwd,
            model: parts.model,
            provider_id: parts.provider_id,
            approval_policy: parts.approval_policy,
            sandbox: parts.sandbox,
            reasoning_effort: parts.reasoning_effort,
            instructions: parts.instructions,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            shell_timeout: parts.shell_timeout,
            client: parts.client,
            sink: parts.sink,
            link: parts.link,
            approvals: Arc::new(SessionApprovals::new()),
            conversation: tokio::sync::Mutex::new(Conversation::default()),
            doc_settings: parts.doc_settings,
            shell_name: parts.shell_name,
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
    pub(crate) async fn context_messages(&self) -> Vec<Value> {
        let env = Environment {
            cwd: self.cwd.clone(),
            approval_policy: self.approval_policy,
            sandbox: self.sandbox,
        };
        let mut context = self.context.lock().await;
        let messages = context
            .before_turn(&self.doc_settings, env, &self.shell_name)
            .await;
        *self
            .instruction_sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = context.sources().to_vec();
        messages
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
        message: Value,
        start_after: CancellationToken,
    ) -> String {
        let turn_id = uuid::Uuid::new_v4().to_string();
        let turn = QueuedTurn {
            turn_id: turn_id.clone(),
            message,
            cancel: CancellationToken::new(),
            start_after,
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
            turn.start_after.cancelled().await;
            let turn_id = turn.turn_id.clone();
            self.sink
                .send(
                    &turn_id,
                    Event::TurnStarted {
                        model: self.model.clone(),
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
