//! The agent loop of one turn: call the model, stream its answer as events, run the tools it
//! asks for, and call it again until it answers without tool calls.
//!
//! The loop ([`run`]) only sequences; each step is one function: [`next_request`] assembles the
//! request from the history, [`Turn::model_call`] streams one response through an
//! [`ItemTracker`], [`Turn::run_tools`] dispatches the calls by name and records their outputs,
//! and [`Reporter`] sends everything the client sees. Upstream data arrives typed
//! ([`ResponseEvent`], [`crate::model::ResponseItem`]); nothing here reads wire JSON.

use std::sync::Arc;

use agent_server_schema::session::{
    Event, Item, RequestApprovalParams, TurnError, TurnErrorKind, TurnStatus, Usage,
};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::items::{ItemTracker, Next, PendingCall, Update};
use super::settings::SessionSettings;
use super::worker::{QueuedTurn, Session, TurnInput};
use crate::mcp::TurnTools;
use crate::model::{CallKind, ModelError, ModelRequest, ResponseEvent, ResponseItem, TokenUsage};
use crate::tools::{self, ApprovalReply, ApprovalRequest, ToolHost};
use serde_json::Value;

/// What the model is told for a call that never ran because the turn ended before it.
pub(crate) const NOT_RUN: &str = "The turn was interrupted before this tool call ran.";

/// How a turn ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TurnOutcome {
    pub(crate) status: TurnStatus,
    pub(crate) last_agent_message: Option<String>,
    pub(crate) usage: Usage,
    pub(crate) error: Option<TurnError>,
}

/// Runs one turn to its end. Never panics on bad upstream data; the caller sends `turnCompleted`.
pub(crate) async fn run(session: Arc<Session>, queued: QueuedTurn) -> TurnOutcome {
    let mut turn = Turn {
        reporter: Reporter {
            session: Arc::clone(&session),
            turn_id: queued.turn_id,
        },
        session,
        cancel: queued.cancel,
        settings: queued.settings,
        output_schema: queued.output_schema,
        usage: Usage::default(),
        last_agent_message: None,
        mcp_tools: TurnTools::default(),
    };
    if turn.cancel.is_cancelled() {
        return turn.ended(TurnStatus::Interrupted, None);
    }
    let message = match queued.input {
        TurnInput::Compact => return turn.compact_turn().await,
        TurnInput::User(message) => message,
    };
    if let Err(end) = turn.start(message).await {
        return end;
    }
    // The MCP tools of this turn, read once before its first model request: the one place
    // that waits for servers still starting.
    turn.mcp_tools = tokio::select! {
        tools = turn.session.mcp.turn_tools(&turn.session.id) => tools,
        () = turn.cancel.cancelled() => return turn.ended(TurnStatus::Interrupted, None),
    };
    let store = turn.session.client.store_enabled().await;
    // Whether this request already overflowed the context window once and was compacted.
    let mut recovered = false;
    loop {
        if let Some(end) = turn.compact_if_due().await {
            return end;
        }
        turn.add_steered().await;
        let mut request = next_request(
            &turn.session,
            &turn.settings,
            turn.output_schema.as_ref(),
            store,
        )
        .await;
        request.tools.extend(turn.mcp_tools.specs.iter().cloned());
        let calls = match turn.model_call(request).await {
            Ok(calls) => {
                recovered = false;
                calls
            }
            Err(end) if !recovered && is_context_overflow(&end) => {
                // Once per request: compact, then send the same request on the shorter history.
                recovered = true;
                match turn.compact().await {
                    Ok(()) => continue,
                    Err(err) => return turn.overflow_unrecovered(end, &err),
                }
            }
            Err(end) => return end,
        };
        if calls.is_empty() {
            return turn.ended(TurnStatus::Completed, None);
        }
        if let Some(end) = turn.run_tools(calls).await {
            return end;
        }
    }
}

fn is_context_overflow(end: &TurnOutcome) -> bool {
    end.error
        .as_ref()
        .is_some_and(|e| e.kind == TurnErrorKind::ContextWindowExceeded)
}

/// The next model call's request: the turn's settings and what the history says to send.
pub(crate) async fn next_request(
    session: &Session,
    settings: &SessionSettings,
    output_schema: Option<&Value>,
    store: bool,
) -> ModelRequest {
    let input = session.history.lock().await.next_input(store);
    ModelRequest {
        output_schema: output_schema.cloned(),
        session_id: session.id.clone(),
        model: settings.model.clone(),
        instructions: settings.instructions.to_string(),
        input: input.items,
        tools: tools::tool_specs(settings.tool_shapes(&settings.model)),
        reasoning_effort: Some(settings.effort_name().to_string()),
        previous_response_id: input.previous_response_id,
        user_agent: session.link.user_agent(),
    }
}

/// One running turn.
pub(super) struct Turn {
    pub(super) session: Arc<Session>,
    pub(super) reporter: Reporter,
    pub(super) cancel: CancellationToken,
    /// The settings this turn runs with.
    pub(super) settings: Arc<SessionSettings>,
    /// `outputSchema` of this turn.
    output_schema: Option<Value>,
    /// Token usage of this turn's model calls.
    pub(super) usage: Usage,
    /// The text of the model's last completed message.
    last_agent_message: Option<String>,
    /// The MCP tools offered in this turn, by the name the model sees.
    mcp_tools: TurnTools,
}

impl Turn {
    /// Adds the input steered into this turn since its last request to the conversation, and
    /// tells the client (`inputAdded`): it goes out with the request about to be made.
    async fn add_steered(&mut self) {
        let steered = self.session.take_steered(&self.reporter.turn_id);
        if steered.is_empty() {
            return;
        }
        {
            let mut history = self.session.history.lock().await;
            for input in &steered {
                history.push_own(input.message.clone());
            }
        }
        for input in steered {
            let event = Event::InputAdded { input: input.items };
            self.reporter.send(event).await;
        }
    }

    /// Streams one model call into events; returns the tool calls it asked for, or how the
    /// turn ends.
    async fn model_call(&mut self, request: ModelRequest) -> Result<Vec<PendingCall>, TurnOutcome> {
        let mut stream = self.session.client.stream(request, self.cancel.clone());
        let mut tracker = ItemTracker::default();
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(err) => {
                    self.end_open_items(tracker.close_open());
                    return Err(self.failed(&err));
                }
            };
            let update = match event {
                ResponseEvent::Created { .. }
                | ResponseEvent::FunctionCallArgumentsDelta { .. } => {
                    continue;
                }
                ResponseEvent::OutputItemAdded { item } => tracker.added(&item),
                ResponseEvent::CustomToolCallInputDelta { item_id, delta } => {
                    tracker.custom_input_delta(item_id, &delta);
                    continue;
                }
                ResponseEvent::OutputTextDelta { item_id, delta } => {
                    tracker.text_delta(item_id, delta)
                }
                ResponseEvent::ReasoningSummaryDelta {
                    item_id,
                    summary_index,
                    delta,
                } => tracker.summary_delta(item_id, summary_index, delta),
                ResponseEvent::OutputItemDone { item } => tracker.done(*item),
                ResponseEvent::Completed { response_id, usage } => {
                    self.end_open_items(tracker.close_open());
                    return Ok(self
                        .finish_response(tracker, Some(response_id), usage)
                        .await);
                }
                ResponseEvent::Incomplete { reason, usage } => {
                    tracing::warn!(?reason, "the response ended incomplete");
                    self.end_open_items(tracker.close_open());
                    return Ok(self.finish_response(tracker, None, usage).await);
                }
                ResponseEvent::RateLimits(rate_limits) => {
                    let event = Event::RateLimitsUpdated { rate_limits };
                    self.reporter.send(event).await;
                    continue;
                }
                ResponseEvent::Retrying {
                    attempt,
                    max_attempts,
                    delay,
                    message,
                } => {
                    // What the failed attempt started ends as it stood; the new one starts afresh.
                    self.end_open_items(tracker.abandon());
                    let event = retrying(attempt, max_attempts, delay, message);
                    self.reporter.send(event).await;
                    continue;
                }
            };
            self.apply(update).await;
        }
        self.end_open_items(tracker.close_open());
        if self.cancel.is_cancelled() {
            return Err(self.ended(TurnStatus::Interrupted, None));
        }
        Err(self.failed(&ModelError::Upstream {
            message: "the model stream ended before the response completed; submit again".into(),
            http_status: None,
        }))
    }

    /// Completes items the stream left open (as they stood), so none stays in progress. They
    /// are not the turn's last agent message: that is only a message the model finished.
    fn end_open_items(&self, items: Vec<Item>) {
        for item in items {
            self.reporter.completed(Box::new(item));
        }
    }

    /// Tells the client what one stream event changed.
    async fn apply(&mut self, update: Update) {
        if let Some(item) = update.started {
            self.reporter.send(Event::ItemStarted { item }).await;
        }
        match update.next {
            None => {}
            Some(Next::Delta(event)) => self.reporter.send(event).await,
            Some(Next::Completed(item)) => {
                if let Item::AgentMessage { text, .. } = &*item {
                    self.last_agent_message = Some(text.clone());
                }
                self.reporter.completed(item);
            }
        }
    }

    /// Records a finished response in the history and reports its usage; returns its calls.
    async fn finish_response(
        &mut self,
        tracker: ItemTracker,
        response_id: Option<String>,
        usage: Option<TokenUsage>,
    ) -> Vec<PendingCall> {
        let (items, calls) = tracker.finish();
        let last = usage.map(to_usage).unwrap_or_default();
        self.usage.add(&last);
        let total = {
            let mut history = self.session.history.lock().await;
            history.record_response(items, response_id, &last);
            self.session
                .record_history(&history, &self.reporter.turn_id);
            history.total()
        };
        if usage.is_some() {
            self.reporter.send(Event::TokenUsage { last, total }).await;
        }
        calls
    }

    /// Runs the calls one after another, each output going into the history; `Some` when the
    /// turn ends early (an abort, an interrupt). Every call gets an output item, also those
    /// that never ran, or the next request would be refused upstream.
    async fn run_tools(&self, calls: Vec<PendingCall>) -> Option<TurnOutcome> {
        let session = &self.session;
        let host = TurnHost {
            reporter: self.reporter.clone(),
            cancel: self.cancel.clone(),
        };
        let context = self.settings.tool_context(
            session.link.can_approve(),
            self.cancel.clone(),
            Arc::clone(&session.approvals),
        );
        let mut calls = calls.into_iter();
        while let Some(pending) = calls.next() {
            let PendingCall { call, kind } = pending;
            let call_id = call.call_id.clone();
            // Tools are chosen by name; a custom tool call takes its input as the arguments.
            let outcome = match kind {
                CallKind::Function if call.name.starts_with("mcp__") => {
                    let offered = self.mcp_tools.by_name.get(&call.name);
                    tools::run_mcp_call(&call, offered, &session.mcp, &context, &host).await
                }
                CallKind::Function => tools::dispatch(call, &context, &host).await,
                CallKind::Custom => tools::dispatch_custom(call, &context, &host).await,
            };
            let mut history = session.history.lock().await;
            history.push_own(ResponseItem::call_output(kind, call_id, outcome.output));
            if outcome.abort_turn || self.cancel.is_cancelled() {
                for skipped in calls.by_ref() {
                    history.push_own(skipped.output(NOT_RUN.to_string()));
                }
                session.record_history(&history, &self.reporter.turn_id);
                return Some(self.ended(TurnStatus::Interrupted, None));
            }
            session.record_history(&history, &self.reporter.turn_id);
        }
        None
    }

    /// The outcome of a turn ending with `status`.
    pub(super) fn ended(&self, status: TurnStatus, error: Option<TurnError>) -> TurnOutcome {
        TurnOutcome {
            status,
            last_agent_message: self.last_agent_message.clone(),
            usage: self.usage,
            error,
        }
    }

    /// The outcome of a turn a model error ends; an interrupted call is no failure.
    pub(super) fn failed(&self, err: &ModelError) -> TurnOutcome {
        match err {
            ModelError::Interrupted => self.ended(TurnStatus::Interrupted, None),
            _ => self.ended(TurnStatus::Failed, Some(err.to_turn_error())),
        }
    }
}

/// The `retrying` event for the model client's retry `attempt` of `max_attempts`, starting
/// after `delay`.
pub(super) fn retrying(
    attempt: u32,
    max_attempts: u32,
    delay: std::time::Duration,
    message: String,
) -> Event {
    Event::Retrying {
        attempt,
        max_attempts,
        delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        message,
    }
}

pub(super) fn to_usage(u: TokenUsage) -> Usage {
    Usage {
        input_tokens: u.input_tokens,
        cached_input_tokens: u.cached_input_tokens,
        output_tokens: u.output_tokens,
        reasoning_output_tokens: u.reasoning_output_tokens,
        total_tokens: u.total_tokens,
    }
}

/// Everything a turn tells the client goes through here, in order, tagged with the turn.
#[derive(Clone)]
pub(super) struct Reporter {
    session: Arc<Session>,
    pub(super) turn_id: String,
}

impl Reporter {
    /// Sends an event, waiting while the session's event queue is full.
    pub(super) async fn send(&self, event: Event) {
        self.session.sink.send(&self.turn_id, event).await;
    }

    /// Queues an event without waiting (tools call this from synchronous code).
    fn emit(&self, event: Event) {
        match event {
            Event::ItemCompleted { item } => self.completed(item),
            event => self.session.sink.emit(&self.turn_id, event),
        }
    }

    /// An item of this turn is complete, from the model stream or from a tool: the one place
    /// every finished item passes before `itemCompleted` goes out, in the order of the events.
    pub(super) fn completed(&self, item: Box<Item>) {
        self.session
            .sink
            .emit(&self.turn_id, Event::ItemCompleted { item });
    }
}

/// How tools reach the client during this turn.
struct TurnHost {
    reporter: Reporter,
    cancel: CancellationToken,
}

#[async_trait::async_trait]
impl ToolHost for TurnHost {
    fn emit(&self, event: Event) {
        self.reporter.emit(event);
    }

    async fn request_approval(&self, request: ApprovalRequest) -> ApprovalReply {
        let session = &self.reporter.session;
        // The item's start must reach the client before the question about it.
        session.sink.flushed().await;
        let params = RequestApprovalParams {
            session_id: session.id.clone(),
            turn_id: self.reporter.turn_id.clone(),
            item_id: request.item_id,
            kind: request.kind,
            command: request.command,
            cwd: request.cwd.map(|p| p.display().to_string()),
            changes: request.changes,
            reason: request.reason,
            server: request.mcp.as_ref().map(|m| m.server.clone()),
            tool: request.mcp.as_ref().map(|m| m.tool.clone()),
            arguments: request.mcp.map(|m| m.arguments),
        };
        session.link.request_approval(params, &self.cancel).await
    }
}
