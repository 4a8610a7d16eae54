//! Compacting a session's conversation: one model request asks for a handoff summary of the
//! whole history, and a shorter history (context, recent user messages, summary) replaces it.
//!
//! The history is replaced only when the summary arrived and the turn was not interrupted, so
//! a failed or interrupted compaction leaves the conversation exactly as it was.

use std::sync::Arc;

use agent_server_schema::session::{Event, Item, Usage};
use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::context::compaction::{self, SUMMARY_PROMPT};
use super::turn::{effort_name, new_item_id, to_usage};
use super::worker::Session;
use crate::model::{ModelError, ModelRequest, ResponseEvent, TokenUsage, context_window};
use crate::tools;

/// Whether the previous response used enough of the context window to compact before the
/// next request.
pub(crate) async fn due(session: &Session) -> bool {
    let Some(limit) = compaction::auto_compact_limit(
        session.auto_compact_token_limit,
        context_window(&session.model),
    ) else {
        return false;
    };
    let conversation = session.conversation.lock().await;
    conversation.last_total_tokens.is_some_and(|t| t >= limit)
}

/// Whether the conversation holds anything to summarise besides the server's own context.
pub(crate) async fn has_conversation(session: &Session) -> bool {
    let conversation = session.conversation.lock().await;
    conversation
        .history
        .iter()
        .any(|item| !compaction::is_context_message(item))
}

/// Compacts the conversation within turn `turn_id`: sends the summary request (a normal
/// request: retries and `retrying`, `tokenUsage`), then replaces the history and announces the
/// `contextSummary` item and `contextCompacted`. `usage` gets the request's tokens.
pub(crate) async fn compact(
    session: &Arc<Session>,
    turn_id: &str,
    cancel: &CancellationToken,
    usage: &mut Usage,
) -> Result<(), ModelError> {
    let (mut input, tokens_before) = {
        let conversation = session.conversation.lock().await;
        let before = conversation
            .last_total_tokens
            .unwrap_or_else(|| compaction::estimate_tokens(&conversation.history));
        (conversation.history.clone(), before)
    };
    input.push(compaction::user_text_message(SUMMARY_PROMPT));
    let request = ModelRequest {
        session_id: session.id.clone(),
        model: session.model.clone(),
        instructions: session.instructions.clone(),
        input,
        // The same tools as every request keep the prompt cache warm; the prompt asks for text.
        tools: tools::tool_specs(),
        reasoning_effort: Some(effort_name(session.reasoning_effort).to_string()),
        previous_response_id: None,
        user_agent: session.link.user_agent(),
    };
    tracing::info!(tokens_before, "compacting the conversation");
    let (summary, last) = summarise(session, turn_id, cancel, request).await?;
    let last = last.map(to_usage).unwrap_or_default();
    usage.add(&last);
    let total = {
        let mut conversation = session.conversation.lock().await;
        conversation.total.add(&last);
        conversation.total
    };
    session
        .sink
        .send(turn_id, Event::TokenUsage { last, total })
        .await;
    if cancel.is_cancelled() {
        return Err(ModelError::Interrupted);
    }
    let id = new_item_id("cs");
    let text = compaction::summary_text(&summary);
    session
        .sink
        .send(
            turn_id,
            Event::ItemStarted {
                item: Item::ContextSummary {
                    id: id.clone(),
                    text: String::new(),
                },
            },
        )
        .await;
    replace_history(session, &summary).await;
    let item = Item::ContextSummary {
        id: id.clone(),
        text,
    };
    session
        .sink
        .send(turn_id, Event::ItemCompleted { item })
        .await;
    session
        .sink
        .send(
            turn_id,
            Event::ContextCompacted {
                tokens_before,
                summary_item_id: id,
            },
        )
        .await;
    Ok(())
}

/// Swaps in the compacted history. The next request sends it whole: there is no stored
/// response upstream that it continues.
async fn replace_history(session: &Session, summary: &str) {
    let context = session.initial_context().await;
    let mut conversation = session.conversation.lock().await;
    let compacted = compaction::compacted_history(context, &conversation.history, summary);
    conversation.history = compacted;
    conversation.unsent.clear();
    conversation.last_response_id = None;
    conversation.last_total_tokens = None;
}

/// Streams the summary request; returns the summary text and the call's usage.
async fn summarise(
    session: &Arc<Session>,
    turn_id: &str,
    cancel: &CancellationToken,
    request: ModelRequest,
) -> Result<(String, Option<TokenUsage>), ModelError> {
    let mut stream = session.client.stream(request, cancel.clone());
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event? {
            ResponseEvent::OutputItemDone { item } => text.push_str(&message_text(&item)),
            ResponseEvent::Completed { usage, .. } | ResponseEvent::Incomplete { usage, .. } => {
                return Ok((text, usage));
            }
            ResponseEvent::Retrying {
                attempt,
                max_attempts,
                delay,
                message,
            } => {
                // What the failed attempt said is void; the new attempt starts over.
                text.clear();
                let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                session
                    .sink
                    .send(
                        turn_id,
                        Event::Retrying {
                            attempt,
                            max_attempts,
                            delay_ms,
                            message,
                        },
                    )
                    .await;
            }
            _ => {}
        }
    }
    if cancel.is_cancelled() {
        return Err(ModelError::Interrupted);
    }
    Err(ModelError::Upstream {
        message: "the model stream ended before the summary was complete; submit again".into(),
        http_status: None,
    })
}

/// The text of an assistant `message` item; empty for other items (a tool call the model made
/// despite the prompt is ignored).
fn message_text(item: &Value) -> String {
    if item.get("type").and_then(Value::as_str) != Some("message") {
        return String::new();
    }
    item.get("content")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("output_text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}
