//! What a model call yields: typed stream events and token usage.

use std::time::Duration;

use agent_server_schema::auth::RateLimits;
use serde::Deserialize;

use super::item::ResponseItem;

/// One event of a model call, in stream order.
///
/// A call's stream ends after `Completed`, `Incomplete` or one `Err`. `Retrying` means the
/// attempt failed and a new one starts after `delay`: everything received since the last
/// `Retrying` (or the start) is void, and the new attempt's events follow from its start.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseEvent {
    /// The upstream accepted the request (`response.created`).
    Created {
        /// The response id, when the upstream gave one.
        response_id: Option<String>,
    },
    /// An output item started (`response.output_item.added`); its content is still empty.
    OutputItemAdded {
        /// The item as announced (boxed: the other events, passed by value through every
        /// stream layer, stay small).
        item: Box<ResponseItem>,
    },
    /// An output item is complete (`response.output_item.done`); reasoning items carry
    /// `encrypted_content` when it was requested.
    OutputItemDone {
        /// The complete item (boxed, as above).
        item: Box<ResponseItem>,
    },
    /// Assistant text (`response.output_text.delta`).
    OutputTextDelta {
        /// The message item's id.
        item_id: String,
        /// The new text.
        delta: String,
    },
    /// Reasoning summary text (`response.reasoning_summary_text.delta`).
    ReasoningSummaryDelta {
        /// The reasoning item's id.
        item_id: String,
        /// Which summary part the text belongs to, as the upstream numbered it (unchecked).
        summary_index: u32,
        /// The new text.
        delta: String,
    },
    /// Function call arguments (`response.function_call_arguments.delta`).
    FunctionCallArgumentsDelta {
        /// The function call item's id.
        item_id: String,
        /// The new argument text.
        delta: String,
    },
    /// Input of a freeform custom tool call (`response.custom_tool_call_input.delta`).
    CustomToolCallInputDelta {
        /// The `custom_tool_call` item's id.
        item_id: String,
        /// The new input text.
        delta: String,
    },
    /// The response is complete (`response.completed`); the stream ends here.
    Completed {
        /// The response id (for `previous_response_id` when storing).
        response_id: String,
        /// Token usage of this call, when reported.
        usage: Option<TokenUsage>,
    },
    /// The response stopped early (`response.incomplete`, e.g. `max_output_tokens`); items done
    /// so far are valid. The stream ends here.
    Incomplete {
        /// Why it stopped, as the upstream said (`max_output_tokens`, `content_filter`).
        reason: Option<String>,
        /// Token usage of this call, when reported.
        usage: Option<TokenUsage>,
    },
    /// The response brought the plan's rate limits (its `x-codex-*` headers, or a
    /// `codex.rate_limits` event): what the process knows now, parts it left out kept from
    /// earlier responses.
    RateLimits(Box<RateLimits>),
    /// The attempt failed and another starts after `delay`; drop partial state.
    Retrying {
        /// 1-based retry number within its budget.
        attempt: u32,
        /// The budget this retry counts against (HTTP or stream retries).
        max_attempts: u32,
        /// How long the client waits before the new attempt.
        delay: Duration,
        /// What went wrong.
        message: String,
    },
}

impl ResponseEvent {
    /// Whether the stream ends after this event.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed { .. } | Self::Incomplete { .. })
    }
}

/// Token counts of one model call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Input tokens, cached ones included.
    pub input_tokens: u64,
    /// Input tokens served from the prompt cache.
    pub cached_input_tokens: u64,
    /// Output tokens, reasoning included.
    pub output_tokens: u64,
    /// Output tokens spent on reasoning.
    pub reasoning_output_tokens: u64,
    /// Input plus output tokens.
    pub total_tokens: u64,
}

/// `usage` of a Responses `response` object.
#[derive(Deserialize)]
pub(crate) struct ResponsesUsage {
    #[serde(default)]
    input_tokens: u64,
    input_tokens_details: Option<CachedDetails>,
    #[serde(default)]
    output_tokens: u64,
    output_tokens_details: Option<ReasoningDetails>,
    #[serde(default)]
    total_tokens: u64,
}

/// `usage` of a Chat Completions chunk.
#[derive(Deserialize)]
pub(crate) struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    prompt_tokens_details: Option<CachedDetails>,
    #[serde(default)]
    completion_tokens: u64,
    completion_tokens_details: Option<ReasoningDetails>,
    #[serde(default)]
    total_tokens: u64,
}

#[derive(Deserialize)]
struct CachedDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct ReasoningDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

impl From<ResponsesUsage> for TokenUsage {
    fn from(u: ResponsesUsage) -> Self {
        Self {
            input_tokens: u.input_tokens,
            cached_input_tokens: u.input_tokens_details.map_or(0, |d| d.cached_tokens),
            output_tokens: u.output_tokens,
            reasoning_output_tokens: u.output_tokens_details.map_or(0, |d| d.reasoning_tokens),
            total_tokens: u.total_tokens,
        }
    }
}

impl From<ChatUsage> for TokenUsage {
    fn from(u: ChatUsage) -> Self {
        Self {
            input_tokens: u.prompt_tokens,
            cached_input_tokens: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
            output_tokens: u.completion_tokens,
            reasoning_output_tokens: u
                .completion_tokens_details
                .map_or(0, |d| d.reasoning_tokens),
            total_tokens: u.total_tokens,
        }
    }
}
