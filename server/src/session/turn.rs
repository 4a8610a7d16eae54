//! The agent loop of one turn: call the model, stream its answer as events, run the tools it
//! asks for, and call it again until it answers without tool calls.

use std::collections::HashMap;
use std::sync::Arc;

use agent_server_schema::session::{
    ApprovalDecision, Event, Item, RequestApprovalParams, TurnError, TurnErrorKind, TurnStatus,
    Usage,
};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::worker::{QueuedTurn, Session};
use crate::model::{ModelError, ModelRequest, ResponseEvent, TokenUsage};
use crate::tools::{self, ApprovalRequest, ToolCall, ToolContext, ToolHost};

/// How a turn ended.
pub(crate) struct TurnOutcome {
    pub(crate) status: TurnStatus,
    pub(crate) last_agent_message: Option<String>,
    pub(crate) usage: Usage,
    pub(crate) error: Option<TurnError>,
}

/// What the session remembers between model calls.
#[derive(Default)]
pub(crate) struct Conversation {
    /// Every item so far, as sent upstream with `store:false` (ids stripped).
    history: Vec<Value>,
    /// The last completed response, for `previous_response_id` with `store:true`.
    last_response_id: Option<String>,
    /// Items added since that response (user input, tool outputs), sent with `store:true`.
    unsent: Vec<Value>,
    /// The session's usage so far.
    total: Usage,
}

impl Conversation {
    fn push_own(&mut self, item: Value) {
        self.unsent.push(item.clone());
        self.history.push(item);
    }
}

/// Runs one turn to its end. Never panics on bad upstream data; the caller sends `turnCompleted`.
pub(crate) async fn run(session: Arc<Session>, turn: QueuedTurn) -> TurnOutcome {
    let mut state = TurnState {
        usage: Usage::default(),
        last_agent_message: None,
    };
    if turn.cancel.is_cancelled() {
        return state.interrupted();
    }
    let context = session.context_messages().await;
    {
        let mut conversation = session.conversation.lock().await;
        for message in context {
            conversation.push_own(message);
        }
        conversation.push_own(turn.message.clone());
    }
    let store = session.client.store_enabled().await;
    loop {
        let request = {
            let conversation = session.conversation.lock().await;
            let (input, previous) = if store && conversation.last_response_id.is_some() {
                (
                    conversation.unsent.clone(),
                    conversation.last_response_id.clone(),
                )
            } else {
                (conversation.history.clone(), None)
            };
            ModelRequest {
                session_id: session.id.clone(),
                model: session.model.clone(),
                instructions: session.instructions.clone(),
                input,
                tools: tools::tool_specs(),
                reasoning_effort: Some(effort_name(session.reasoning_effort).to_string()),
                previous_response_id: previous,
                user_agent: session.link.user_agent(),
            }
        };
        let calls = match model_call(&session, &turn, request, &mut state).await {
            Ok(calls) => calls,
            Err(end) => return end,
        };
        if calls.is_empty() {
            return state.completed();
        }
        let host = TurnHost {
            session: Arc::clone(&session),
            turn_id: turn.turn_id.clone(),
            cancel: turn.cancel.clone(),
        };
        let context = ToolContext {
            cwd: session.cwd.clone(),
            approval_policy: session.approval_policy,
            sandbox: session.sandbox,
            shell_timeout: session.shell_timeout,
            client_can_approve: session.link.can_approve(),
            cancel: turn.cancel.clone(),
            approvals: Arc::clone(&session.approvals),
        };
        let mut calls = calls.into_iter();
        while let Some(call) = calls.next() {
            let call_id = call.call_id.clone();
            let outcome = tools::dispatch(call, &context, &host).await;
            let mut conversation = session.conversation.lock().await;
            conversation.push_own(function_call_output(&call_id, &outcome.output));
            if outcome.abort_turn || turn.cancel.is_cancelled() {
                // Every call in the history needs its output, or the next turn's request is
                // refused upstream: the calls that never ran say so.
                for skipped in calls.by_ref() {
                    conversation.push_own(function_call_output(
                        &skipped.call_id,
                        "The turn was interrupted before this tool call ran.",
                    ));
                }
                return state.interrupted();
            }
        }
    }
}

fn function_call_output(call_id: &str, output: &str) -> Value {
    json!({"type": "function_call_output", "call_id": call_id, "output": output})
}

fn effort_name(effort: agent_server_schema::session::ReasoningEffort) -> &'static str {
    use agent_server_schema::session::ReasoningEffort as E;
    match effort {
        E::None => "none",
        E::Minimal => "minimal",
        E::Low => "low",
        E::Medium => "medium",
        E::High => "high",
    }
}

struct TurnState {
    usage: Usage,
    last_agent_message: Option<String>,
}

impl TurnState {
    fn completed(&self) -> TurnOutcome {
        TurnOutcome {
            status: TurnStatus::Completed,
            last_agent_message: self.last_agent_message.clone(),
            usage: self.usage,
            error: None,
        }
    }

    fn interrupted(&self) -> TurnOutcome {
        TurnOutcome {
            status: TurnStatus::Interrupted,
            last_agent_message: self.last_agent_message.clone(),
            usage: self.usage,
            error: None,
        }
    }

    fn failed(&self, err: &ModelError) -> TurnOutcome {
        let kind: TurnErrorKind =
            serde_json::from_value(json!(err.kind())).unwrap_or(TurnErrorKind::Internal);
        if kind == TurnErrorKind::Interrupted {
            return self.interrupted();
        }
        TurnOutcome {
            status: TurnStatus::Failed,
            last_agent_message: self.last_agent_message.clone(),
            usage: self.usage,
            error: Some(TurnError {
                kind,
                message: err.to_string(),
                http_status: err.http_status(),
                resets_at: err
                    .resets_at()
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                plan_type: err.plan_type(),
            }),
        }
    }
}

/// The items of one streamed response attempt, keyed by the upstream item id.
#[derive(Default)]
struct Attempt {
    /// Upstream item id → our item id and what streamed so far.
    open: HashMap<String, OpenItem>,
    /// Finished items to add to the history once the response completes.
    done: Vec<Value>,
    calls: Vec<ToolCall>,
}

struct OpenItem {
    id: String,
    text: String,
    summary: Vec<String>,
}

/// Streams one model call into events; returns the tool calls it asked for.
async fn model_call(
    session: &Arc<Session>,
    turn: &QueuedTurn,
    request: ModelRequest,
    state: &mut TurnState,
) -> Result<Vec<ToolCall>, TurnOutcome> {
    let sink = &session.sink;
    let turn_id = turn.turn_id.as_str();
    let mut stream = session.client.stream(request, turn.cancel.clone());
    let mut attempt = Attempt::default();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => return Err(state.failed(&err)),
        };
        match event {
            ResponseEvent::Created { .. } | ResponseEvent::FunctionCallArgumentsDelta { .. } => {}
            ResponseEvent::OutputItemAdded { item } => {
                let Some(upstream_id) = item.get("id").and_then(Value::as_str) else {
                    continue;
                };
                let started = match item.get("type").and_then(Value::as_str) {
                    Some("message") => Item::AgentMessage {
                        id: new_item_id("msg"),
                        text: String::new(),
                    },
                    Some("reasoning") => Item::Reasoning {
                        id: new_item_id("rs"),
                        summary: Vec::new(),
                    },
                    _ => continue,
                };
                open_item(
                    sink,
                    turn_id,
                    &mut attempt,
                    upstream_id.to_string(),
                    started,
                )
                .await;
            }
            ResponseEvent::OutputTextDelta { item_id, delta } => {
                if !attempt.open.contains_key(&item_id) {
                    // A delta for an item never announced: start it now rather than lose text.
                    let started = Item::AgentMessage {
                        id: new_item_id("msg"),
                        text: String::new(),
                    };
                    open_item(sink, turn_id, &mut attempt, item_id.clone(), started).await;
                }
                if let Some(open) = attempt.open.get_mut(&item_id) {
                    open.text.push_str(&delta);
                    let item_id = open.id.clone();
                    sink.send(turn_id, Event::AgentMessageDelta { item_id, delta })
                        .await;
                }
            }
            ResponseEvent::ReasoningSummaryDelta {
                item_id,
                summary_index,
                delta,
            } => {
                if !attempt.open.contains_key(&item_id) {
                    let started = Item::Reasoning {
                        id: new_item_id("rs"),
                        summary: Vec::new(),
                    };
                    open_item(sink, turn_id, &mut attempt, item_id.clone(), started).await;
                }
                if let Some(open) = attempt.open.get_mut(&item_id) {
                    let index = summary_index as usize;
                    if open.summary.len() <= index {
                        open.summary.resize(index + 1, String::new());
                    }
                    open.summary[index].push_str(&delta);
                    let item_id = open.id.clone();
                    sink.send(turn_id, Event::ReasoningDelta { item_id, delta })
                        .await;
                }
            }
            ResponseEvent::OutputItemDone { item } => {
                item_done(sink, turn_id, &mut attempt, item, state).await
            }
            ResponseEvent::Completed { response_id, usage } => {
                return Ok(finish_response(
                    session,
                    turn_id,
                    attempt,
                    Some(response_id),
                    usage,
                    state,
                )
                .await);
            }
            ResponseEvent::Incomplete { reason, usage } => {
                tracing::warn!(?reason, "the response ended incomplete");
                return Ok(finish_response(session, turn_id, attempt, None, usage, state).await);
            }
            ResponseEvent::Retrying {
                attempt: n,
                max_attempts,
                delay,
                message,
            } => {
                // Items the failed attempt started are abandoned; the new attempt starts new ones.
                attempt = Attempt::default();
                let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                sink.send(
                    turn_id,
                    Event::Retrying {
                        attempt: n,
                        max_attempts,
                        delay_ms,
                        message,
                    },
                )
                .await;
            }
        }
    }
    if turn.cancel.is_cancelled() {
        return Err(state.interrupted());
    }
    Err(state.failed(&ModelError::Upstream {
        message: "the model stream ended before the response completed; submit again".into(),
        http_status: None,
    }))
}

/// Announces an item and remembers it under the upstream id.
async fn open_item(
    sink: &super::EventSink,
    turn_id: &str,
    attempt: &mut Attempt,
    upstream_id: String,
    item: Item,
) {
    let id = item.id().to_string();
    attempt.open.insert(
        upstream_id,
        OpenItem {
            id,
            text: String::new(),
            summary: Vec::new(),
        },
    );
    sink.send(turn_id, Event::ItemStarted { item }).await;
}

/// A new item id, unique in this process: short, because it goes into every delta event.
fn new_item_id(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!(
        "{prefix}_{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Drops the fields that only mean something to the upstream that produced the item: with
/// `store:false` an id would refer to an item the upstream did not keep.
fn for_history(mut item: Value) -> Value {
    if let Some(map) = item.as_object_mut() {
        map.remove("id");
        map.remove("status");
    }
    item
}

fn output_text(item: &Value) -> Option<String> {
    let parts = item.get("content")?.as_array()?;
    let text: String = parts
        .iter()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("output_text"))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    Some(text)
}

fn summary_texts(item: &Value) -> Option<Vec<String>> {
    let parts = item.get("summary")?.as_array()?;
    Some(
        parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str).map(str::to_string))
            .collect(),
    )
}

/// The id of the item a `done` event finishes: the one it opened, or, for an item done without
/// ever being added, `unannounced`, started now so every item has a start and an end.
async fn finishing_id(
    sink: &super::EventSink,
    turn_id: &str,
    open: Option<OpenItem>,
    unannounced: Item,
) -> String {
    match open {
        Some(open) => open.id,
        None => {
            let id = unannounced.id().to_string();
            sink.send(turn_id, Event::ItemStarted { item: unannounced })
                .await;
            id
        }
    }
}

async fn item_done(
    sink: &super::EventSink,
    turn_id: &str,
    attempt: &mut Attempt,
    item: Value,
    state: &mut TurnState,
) {
    let upstream_id = item
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match item.get("type").and_then(Value::as_str) {
        Some("message") => {
            let open = attempt.open.remove(&upstream_id);
            let text = output_text(&item)
                .or_else(|| open.as_ref().map(|o| o.text.clone()))
                .unwrap_or_default();
            let id = finishing_id(
                sink,
                turn_id,
                open,
                Item::AgentMessage {
                    id: new_item_id("msg"),
                    text: String::new(),
                },
            )
            .await;
            state.last_agent_message = Some(text.clone());
            sink.send(
                turn_id,
                Event::ItemCompleted {
                    item: Item::AgentMessage { id, text },
                },
            )
            .await;
            attempt.done.push(for_history(item));
        }
        Some("reasoning") => {
            let open = attempt.open.remove(&upstream_id);
            let summary = summary_texts(&item)
                .filter(|s| !s.is_empty())
                .or_else(|| open.as_ref().map(|o| o.summary.clone()))
                .unwrap_or_default();
            let id = finishing_id(
                sink,
                turn_id,
                open,
                Item::Reasoning {
                    id: new_item_id("rs"),
                    summary: Vec::new(),
                },
            )
            .await;
            sink.send(
                turn_id,
                Event::ItemCompleted {
                    item: Item::Reasoning { id, summary },
                },
            )
            .await;
            attempt.done.push(for_history(item));
        }
        Some("function_call") => {
            let field = |name: &str| {
                item.get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            attempt.calls.push(ToolCall {
                call_id: field("call_id"),
                name: field("name"),
                arguments: field("arguments"),
            });
            attempt.done.push(for_history(item));
        }
        _ => attempt.done.push(for_history(item)),
    }
}

/// Records a finished response: history, usage events; returns its tool calls.
async fn finish_response(
    session: &Arc<Session>,
    turn_id: &str,
    attempt: Attempt,
    response_id: Option<String>,
    usage: Option<TokenUsage>,
    state: &mut TurnState,
) -> Vec<ToolCall> {
    let last = usage.map(to_usage).unwrap_or_default();
    state.usage.add(&last);
    let total = {
        let mut conversation = session.conversation.lock().await;
        conversation.history.extend(attempt.done);
        if let Some(id) = response_id {
            conversation.last_response_id = Some(id);
            conversation.unsent.clear();
        }
        conversation.total.add(&last);
        conversation.total
    };
    if usage.is_some() {
        session
            .sink
            .send(turn_id, Event::TokenUsage { last, total })
            .await;
    }
    attempt.calls
}

fn to_usage(u: TokenUsage) -> Usage {
    Usage {
        input_tokens: u.input_tokens,
        cached_input_tokens: u.cached_input_tokens,
        output_tokens: u.output_tokens,
        reasoning_output_tokens: u.reasoning_output_tokens,
        total_tokens: u.total_tokens,
    }
}

/// How tools reach the client during this turn.
struct TurnHost {
    session: Arc<Session>,
    turn_id: String,
    cancel: CancellationToken,
}

#[async_trait::async_trait]
impl ToolHost for TurnHost {
    fn emit(&self, event: Event) {
        self.session.sink.emit(&self.turn_id, event);
    }

    async fn request_approval(&self, request: ApprovalRequest) -> Option<ApprovalDecision> {
        // The item's start must reach the client before the question about it.
        self.session.sink.flushed().await;
        let params = RequestApprovalParams {
            session_id: self.session.id.clone(),
            turn_id: self.turn_id.clone(),
            item_id: request.item_id,
            kind: request.kind,
            command: request.command,
            cwd: request.cwd.map(|p| p.display().to_string()),
            changes: request.changes,
            reason: request.reason,
        };
        self.session
            .link
            .request_approval(params, &self.cancel)
            .await
    }
}
