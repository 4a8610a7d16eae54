//! One session: its settings, its queue of turns, and the worker that runs them one by one.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agent_server_schema::session::{
    ApprovalPolicy, Event, ForkedFrom, InputItem, ReasoningEffort, SandboxMode, SessionStatus,
    TurnError, TurnErrorKind, TurnStatus, Usage,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::events::EventSink;
use super::record::{Recorder, store_error};
use super::turn::{self, Conversation, TurnOutcome};
use crate::model::ModelClient;
use crate::store::{Lease, TurnStart};
use crate::tools::SessionApprovals;

/// A turn waiting to run (or running).
pub(crate) struct QueuedTurn {
    pub(crate) turn_id: String,
    pub(crate) message: Value,
    /// The input as the client sent it, for the store.
    pub(crate) input: Vec<InputItem>,
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
    /// Kept in memory only, never in the home's store.
    pub ephemeral: bool,
    /// The session's own instructions (appended to the base ones), as given.
    pub extra_instructions: Option<String>,
    pub(crate) recorder: Arc<Recorder>,
    /// The exclusive lease of a stored session, held while it is loaded here.
    pub(crate) lease: Mutex<Option<Lease>>,
    pub(crate) meta: Mutex<Meta>,
    pub(crate) client: ModelClient,
    pub(crate) sink: EventSink,
    pub(crate) link: Arc<dyn super::ClientLink>,
    pub(crate) approvals: Arc<SessionApprovals>,
    pub(crate) conversation: tokio::sync::Mutex<Conversation>,
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
    pub(crate) created_at: String,
    pub(crate) ephemeral: bool,
    pub(crate) extra_instructions: Option<String>,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) lease: Option<Lease>,
    pub(crate) meta: Meta,
    pub(crate) conversation: Conversation,
    pub(crate) client: ModelClient,
    pub(crate) sink: EventSink,
    pub(crate) link: Arc<dyn super::ClientLink>,
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
            created_at: parts.created_at,
            shell_timeout: parts.shell_timeout,
            ephemeral: parts.ephemeral,
            extra_instructions: parts.extra_instructions,
            recorder: parts.recorder,
            lease: Mutex::new(parts.lease),
            meta: Mutex::new(parts.meta),
            client: parts.client,
            sink: parts.sink,
            link: parts.link,
            approvals: Arc::new(SessionApprovals::new()),
            conversation: tokio::sync::Mutex::new(parts.conversation),
            queue: Mutex::new(Queue::default()),
            idle: tokio::sync::Notify::new(),
        })
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

    /// Lets go of the session once it is idle: releases the lease of a stored one, forgets an
    /// ephemeral one.
    pub(crate) fn unload(&self) {
        let lease = self
            .lease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if self.ephemeral
            && let Err(err) = self.recorder.store().delete(&self.id, None)
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
        input: Vec<InputItem>,
        start_after: CancellationToken,
    ) -> String {
        let turn_id = uuid::Uuid::new_v4().to_string();
        let turn = QueuedTurn {
            turn_id: turn_id.clone(),
            message,
            input,
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
            let begun = self.begin_turn(&turn);
            self.sink
                .send(
                    &turn_id,
                    Event::TurnStarted {
                        model: self.model.clone(),
                    },
                )
                .await;
            let outcome = match begun {
                Ok(()) => self.run_turn(turn).await,
                Err(err) => {
                    self.recorder.take_failure();
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

    /// Stores the turn's start (its input, the title of a first turn) before `turnStarted`.
    fn begin_turn(&self, turn: &QueuedTurn) -> Result<(), crate::store::StoreError> {
        let user_text = super::input::user_text(&turn.input);
        let title = {
            let meta = self
                .meta
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            meta.title
                .is_none()
                .then(|| super::input::title_of(&user_text))
                .flatten()
        };
        let start = TurnStart {
            turn_id: turn.turn_id.clone(),
            input: turn.input.clone(),
            title: title.clone(),
        };
        let updated_at = self
            .recorder
            .begin_turn(&start, &user_text, turn.cancel.clone())?;
        let mut meta = self
            .meta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        meta.turn_count += 1;
        meta.updated_at = updated_at;
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
        if let Some(err) = self.recorder.take_failure() {
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
