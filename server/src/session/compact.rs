//! Compacting a session's conversation: one model request asks for a handoff summary of the
//! whole history, and a shorter history (context, recent user messages, summary) replaces it.
//!
//! The history is replaced only when the summary arrived and the turn was not interrupted, so
//! a failed or interrupted compaction leaves the conversation exactly as it was.

use agent_server_schema::session::{Event, Item, TurnStatus};
use futures::StreamExt;

use super::context::compaction::{self, SUMMARY_PROMPT};
use super::items::new_item_id;
use super::turn::{Turn, TurnOutcome, next_request, retrying, to_usage};
use crate::model::{
    ModelError, ModelRequest, ResponseEvent, ResponseItem, TokenUsage, context_window,
};

/// How many times a summary request that overflows is retried on a shorter history.
const MAX_TRIMS: u32 = 4;

impl Turn {
    /// Adds the turn's context messages and input to the conversation, compacting it first
    /// when the previous response filled the context window (so the new input comes after the
    /// summary). A failed compaction still leaves the input in the history, as any failed turn.
    pub(super) async fn start(&mut self, message: ResponseItem) -> Result<(), TurnOutcome> {
        let context = self.session.context_messages(&self.settings).await;
        let mut compacted = false;
        let mut failed = None;
        if self.compaction_due().await {
            match self.compact().await {
                // The compacted history already starts with the context as it stands now.
                Ok(()) => compacted = true,
                Err(err) => failed = Some(self.failed(&err)),
            }
        }
        let mut history = self.session.history.lock().await;
        if !compacted {
            for item in context {
                history.push_own(item);
            }
        }
        history.push_own(message);
        self.session
            .record_history(&history, &self.reporter.turn_id);
        failed.map_or(Ok(()), Err)
    }

    /// A `session/compact` turn: compacts the conversation, when there is one.
    pub(super) async fn compact_turn(mut self) -> TurnOutcome {
        let has_conversation = {
            let history = self.session.history.lock().await;
            history
                .items()
                .iter()
                .any(|item| !compaction::is_context_message(item))
        };
        if !has_conversation {
            return self.ended(TurnStatus::Completed, None);
        }
        match self.compact().await {
            Ok(()) => self.ended(TurnStatus::Completed, None),
            Err(err) => self.failed(&err),
        }
    }

    /// Compacts before the next request when the last response reached the limit; `Some` when
    /// that failed and the turn ends.
    pub(super) async fn compact_if_due(&mut self) -> Option<TurnOutcome> {
        if !self.compaction_due().await {
            return None;
        }
        self.compact().await.err().map(|err| self.failed(&err))
    }

    /// Whether the last response used enough of the context window to compact first: at or
    /// above `model_auto_compact_token_limit`, else 90 % of the model's known window.
    async fn compaction_due(&self) -> bool {
        let settings = &self.settings;
        let Some(limit) = compaction::auto_compact_limit(
            settings.auto_compact_token_limit,
            context_window(&settings.model_tables, &settings.model),
        ) else {
            return false;
        };
        let history = self.session.history.lock().await;
        history.last_total_tokens().is_some_and(|t| t >= limit)
    }

    /// The turn's end when compacting after a context overflow failed: the overflow, as in
    /// v1, saying that compaction did not help (an interrupt stays an interrupt).
    pub(super) fn overflow_unrecovered(
        &self,
        mut end: TurnOutcome,
        err: &ModelError,
    ) -> TurnOutcome {
        if matches!(err, ModelError::Interrupted) {
            return self.ended(TurnStatus::Interrupted, None);
        }
        end.usage = self.usage;
        if let Some(error) = end.error.as_mut() {
            error.message = format!(
                "{}; compacting the conversation to make room failed too: {err}",
                error.message
            );
        }
        end
    }

    /// Compacts the conversation: the summary request (a normal request: retries and
    /// `retrying`, `tokenUsage`), then the new history, the `contextSummary` item and
    /// `contextCompacted`.
    pub(super) async fn compact(&mut self) -> Result<(), ModelError> {
        let (mut request, tokens_before) = {
            let history = self.session.history.lock().await;
            let before = history
                .last_total_tokens()
                .unwrap_or_else(|| compaction::estimate_tokens(history.items()));
            drop(history);
            // The whole history, never a continuation of a stored response.
            (
                next_request(&self.session, &self.settings, None, false).await,
                before,
            )
        };
        tracing::info!(tokens_before, "compacting the conversation");
        let mut trims = 0;
        let (summary, usage) = loop {
            let mut attempt = request.clone();
            attempt
                .input
                .push(compaction::user_text_message(SUMMARY_PROMPT));
            match self.summarise(attempt).await {
                // The history is too long to summarise whole: summarise its newer part.
                Err(ModelError::ContextWindowExceeded { .. })
                    if trims < MAX_TRIMS && compaction::trim_oldest(&mut request.input) =>
                {
                    trims += 1;
                    tracing::info!(
                        trims,
                        "the summary request overflowed; dropping the oldest items"
                    );
                }
                result => break result?,
            }
        };
        let last = usage.map(to_usage).unwrap_or_default();
        self.usage.add(&last);
        let total = {
            let mut history = self.session.history.lock().await;
            history.add_usage(&last);
            history.total()
        };
        if usage.is_some() {
            self.reporter.send(Event::TokenUsage { last, total }).await;
        }
        if self.cancel.is_cancelled() {
            return Err(ModelError::Interrupted);
        }
        let id = new_item_id("cs");
        let started = Item::ContextSummary {
            id: id.clone(),
            text: String::new(),
        };
        self.reporter
            .send(Event::ItemStarted {
                item: Box::new(started),
            })
            .await;
        let context = self.session.initial_context().await;
        {
            let mut history = self.session.history.lock().await;
            let compacted = compaction::compacted_history(context, history.items(), &summary);
            history.replace_compacted(compacted);
            self.session
                .replace_history(&history, &self.reporter.turn_id);
        }
        let text = compaction::summary_text(&summary);
        self.reporter.completed(Box::new(Item::ContextSummary {
            id: id.clone(),
            text,
        }));
        let event = Event::ContextCompacted {
            tokens_before,
            summary_item_id: id,
        };
        self.reporter.send(event).await;
        Ok(())
    }

    /// Streams the summary request; returns the summary text and the call's usage.
    async fn summarise(
        &self,
        request: ModelRequest,
    ) -> Result<(String, Option<TokenUsage>), ModelError> {
        let mut stream = self.session.client.stream(request, self.cancel.clone());
        let mut text = String::new();
        while let Some(event) = stream.next().await {
            match event? {
                // A tool call the model made despite the prompt is ignored.
                ResponseEvent::OutputItemDone { item } => {
                    text.push_str(&compaction::assistant_text(&item))
                }
                ResponseEvent::Completed { usage, .. }
                | ResponseEvent::Incomplete { usage, .. } => return Ok((text, usage)),
                ResponseEvent::Retrying {
                    attempt,
                    max_attempts,
                    delay,
                    message,
                } => {
                    // What the failed attempt said is void; the new attempt starts over.
                    text.clear();
                    let event = retrying(attempt, max_attempts, delay, message);
                    self.reporter.send(event).await;
                }
                _ => {}
            }
        }
        if self.cancel.is_cancelled() {
            return Err(ModelError::Interrupted);
        }
        Err(ModelError::Upstream {
            message: "the model stream ended before the summary was complete; submit again".into(),
            http_status: None,
        })
    }
}
