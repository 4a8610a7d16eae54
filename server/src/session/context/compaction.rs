//! Compaction: the summarisation instruction, and the shorter history that replaces a long one.
//!
//! The new history is the instructions and environment context, then the most recent user
//! messages up to [`RECENT_USER_TOKENS`] (estimated at [`BYTES_PER_TOKEN`]), then the summary.

use crate::model::item::output_text;
use crate::model::{ContentItem, ResponseItem, Role};

use super::{agents_md, environment};

/// How many tokens of recent user messages survive a compaction word for word.
pub const RECENT_USER_TOKENS: usize = 20_000;
/// The estimate of bytes per token used where no tokenizer is at hand.
pub const BYTES_PER_TOKEN: usize = 4;

/// The instruction sent as the last user message of a compaction request.
pub const SUMMARY_PROMPT: &str = "Stop here: the conversation above is about to be cut to save space, and whoever carries on (you or another agent, seeing none of it) will work from your notes alone. Write the handoff summary they need, in plain text, without calling any tool.

Include:
1. The task: what the user asked for, in their terms, with every requirement and acceptance criterion they stated.
2. What is done: the changes made and the commands run, with their outcome (what passed, what failed and why).
3. Decisions: what was chosen, what was ruled out, and the reasons.
4. Constraints: rules from the user or the project instructions, and limits discovered along the way (approvals, sandbox, tools that did not work).
5. What remains: the next steps in order, and any open question for the user.
6. Exact references: the file paths, function and type names, commands, identifiers, error messages and values that matter, copied exactly.

Be concise but complete: leave out nothing that would have to be rediscovered.";

/// The first line of a summary message: tells the model (and a later compaction) what it is.
pub const SUMMARY_PREFIX: &str = "This is a summary of the earlier part of this conversation, written when it was compacted to save context:";

/// What a summary message says when the model returned no summary text.
pub const EMPTY_SUMMARY_PLACEHOLDER: &str = "(No summary could be written. Earlier work in this conversation is not available; ask the user what to continue with if the recent messages do not say.)";

/// Marks where the oldest kept user message was cut.
const CUT_MARKER: &str = "\n[…cut to fit after compaction]";

/// The token count at which a session compacts before its next request: the configured
/// limit, else 90 % of the model's context window; `None` when neither is known.
pub fn auto_compact_limit(configured: Option<u64>, context_window: Option<u64>) -> Option<u64> {
    configured.or_else(|| context_window.map(|w| w / 10 * 9))
}

/// A user message holding `text`.
pub fn user_text_message(text: &str) -> ResponseItem {
    ResponseItem::user_message(vec![ContentItem::InputText {
        text: text.to_string(),
    }])
}

/// The summary as kept: trimmed, or the placeholder when the model wrote none.
pub fn summary_text(summary: &str) -> String {
    let summary = summary.trim();
    if summary.is_empty() {
        EMPTY_SUMMARY_PLACEHOLDER.to_string()
    } else {
        summary.to_string()
    }
}

/// The summary as the user message that ends a compacted history.
pub fn summary_message(summary: &str) -> ResponseItem {
    user_text_message(&format!("{SUMMARY_PREFIX}\n\n{}", summary_text(summary)))
}

/// The text of a user message's `input_text` parts; `None` for anything else.
fn user_text(item: &ResponseItem) -> Option<String> {
    let ResponseItem::Message {
        role: Role::User,
        content,
        ..
    } = item
    else {
        return None;
    };
    Some(
        content
            .iter()
            .filter_map(|part| match part {
                ContentItem::InputText { text } => Some(text.as_str()),
                _ => None,
            })
            .collect(),
    )
}

/// The text of an assistant message's `output_text` parts; empty for anything else.
pub fn assistant_text(item: &ResponseItem) -> String {
    let ResponseItem::Message {
        role: Role::Assistant,
        content,
        ..
    } = item
    else {
        return String::new();
    };
    output_text(content)
}

/// Whether `item` is one of the server's own messages (instructions, environment, summary)
/// rather than something the user wrote.
pub fn is_context_message(item: &ResponseItem) -> bool {
    user_text(item).is_some_and(|text| {
        text.starts_with(agents_md::MESSAGE_PREFIX)
            || text.starts_with(environment::MESSAGE_PREFIX)
            || text.starts_with(SUMMARY_PREFIX)
    })
}

/// The bytes an item costs in a request, as the token estimate counts them.
fn item_bytes(item: &ResponseItem) -> usize {
    // Serialising only to measure is fine here: compaction runs rarely.
    serde_json::to_vec(item).map(|v| v.len()).unwrap_or(0)
}

/// The estimated tokens of a history, at [`BYTES_PER_TOKEN`].
pub fn estimate_tokens(items: &[ResponseItem]) -> u64 {
    let bytes: usize = items.iter().map(item_bytes).sum();
    u64::try_from(bytes.div_ceil(BYTES_PER_TOKEN)).unwrap_or(u64::MAX)
}

/// The compacted history: `context` (instructions and environment messages as they stand
/// now), the most recent user messages of `history` within the budget (the oldest one that
/// does not fit cut to what is left), then `summary`.
pub fn compacted_history(
    context: Vec<ResponseItem>,
    history: &[ResponseItem],
    summary: &str,
) -> Vec<ResponseItem> {
    let mut budget = RECENT_USER_TOKENS * BYTES_PER_TOKEN;
    let mut kept = Vec::new();
    for item in history.iter().rev() {
        if budget == 0 {
            break;
        }
        let Some(text) = user_text(item) else {
            continue;
        };
        if is_context_message(item) {
            continue;
        }
        let size = item_bytes(item);
        if size <= budget {
            budget -= size;
            kept.push(item.clone());
        } else {
            kept.push(user_text_message(&cut_to(&text, budget)));
            budget = 0;
        }
    }
    kept.reverse();
    let mut out = context;
    out.extend(kept);
    out.push(summary_message(summary));
    out
}

/// Makes a summary request that overflowed the context window smaller: drops the oldest items
/// after the context messages, at least a quarter of the conversation's bytes, and then any
/// tool outputs left without their call. Returns false when there is too little left to drop.
pub fn trim_oldest(items: &mut Vec<ResponseItem>) -> bool {
    let start = items
        .iter()
        .position(|item| !is_context_message(item))
        .unwrap_or(items.len());
    let rest = &items[start..];
    if rest.len() < 2 {
        return false;
    }
    let total: usize = rest.iter().map(item_bytes).sum();
    let mut dropped = 0;
    let mut end = start;
    // Always keep the newest item: it is what the conversation was last about.
    while end < items.len() - 1 && dropped * 4 < total {
        dropped += item_bytes(&items[end]);
        end += 1;
    }
    while end < items.len() - 1
        && matches!(
            items[end],
            ResponseItem::FunctionCallOutput { .. } | ResponseItem::CustomToolCallOutput { .. }
        )
    {
        end += 1;
    }
    items.drain(start..end);
    true
}

/// The start of `text` in at most `max` bytes (marker included), at a character boundary.
fn cut_to(text: &str, max: usize) -> String {
    let room = max.saturating_sub(CUT_MARKER.len());
    let mut end = room.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT_MARKER}", &text[..end])
}

#[cfg(test)]
#[path = "compaction_tests.rs"]
mod tests;
