//! The bookkeeping of one streamed response: which upstream item became which client item,
//! what streamed into it, and what the response leaves behind.
//!
//! [`ItemTracker`] turns the item events of a model stream (`added`, text and summary deltas,
//! `done`) into what the client is told ([`Update`]), and collects the finished items and the
//! tool calls of the response. It does no I/O, so every rule is unit-tested here:
//! - every client item has exactly one start and one end, also when the upstream sends a delta
//!   or a `done` for an item it never announced (the item is started then);
//! - [`ItemTracker::abandon`] ends the items a failed attempt left open, as they stood, and
//!   forgets the rest of it: the retry's items are new client items, so the deltas of one item
//!   always concatenate to its final text, and no item stays in progress (found by the fault
//!   matrix in `tests/tests/faults.rs`); [`ItemTracker::close_open`] does the same when a
//!   response or the turn ends with items still open;
//! - upstream numbers are bounded where they are used: a `summary_index` beyond
//!   [`MAX_SUMMARY_PARTS`] adds to the last part instead of sizing the summary by it.

use std::collections::HashMap;

use agent_server_schema::session::{Event, Item};

use crate::model::item::{output_text, summary_texts};
use crate::model::{CallKind, ContentItem, ResponseItem};
use crate::tools::ToolCall;

/// Summary parts one reasoning item may have. Models write a handful; the index comes from
/// upstream, so it is capped before it sizes anything.
pub(crate) const MAX_SUMMARY_PARTS: usize = 64;

/// A tool call of a finished response, with the kind of output item it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingCall {
    /// The call as the tools take it.
    pub(crate) call: ToolCall,
    /// Whether it was a function or a custom tool call.
    pub(crate) kind: CallKind,
}

impl PendingCall {
    /// The history item answering this call with `output`.
    pub(crate) fn output(&self, output: String) -> ResponseItem {
        ResponseItem::call_output(self.kind, self.call.call_id.clone(), output)
    }
}

/// What to tell the client about one stream event: at most one `itemStarted`, then at most
/// one delta or completion.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Update {
    /// An item to announce first (boxed, like the completed item below: an update is made
    /// for every streamed delta, and stays small that way).
    pub(crate) started: Option<Box<Item>>,
    /// What follows it.
    pub(crate) next: Option<Next>,
}

/// The second half of an [`Update`].
#[derive(Debug, PartialEq)]
pub(crate) enum Next {
    /// A delta event of an open item.
    Delta(Event),
    /// An item is complete; it goes out as `itemCompleted` through the turn's reporter.
    Completed(Box<Item>),
}

/// A client item still streaming.
#[derive(Debug)]
struct OpenItem {
    /// Our id of the item.
    id: String,
    kind: OpenKind,
    /// When it was opened within the attempt, so items still open end in the order they began.
    opened: usize,
}

#[derive(Debug)]
enum OpenKind {
    Message { text: String },
    Reasoning { summary: Vec<String> },
}

impl OpenKind {
    fn message() -> Self {
        Self::Message {
            text: String::new(),
        }
    }

    fn reasoning() -> Self {
        Self::Reasoning {
            summary: Vec::new(),
        }
    }
}

/// The items of one response attempt, keyed by the upstream item id.
#[derive(Debug, Default)]
pub(crate) struct ItemTracker {
    open: HashMap<String, OpenItem>,
    /// Items opened so far in this attempt.
    opened: usize,
    /// Finished items, for the history once the response completes.
    done: Vec<ResponseItem>,
    calls: Vec<PendingCall>,
    /// Input streamed for custom tool calls, by upstream item id.
    custom_input: HashMap<String, String>,
}

impl ItemTracker {
    /// An upstream item was announced. Messages and reasoning become client items now; tool
    /// calls become items when their tool runs, other kinds never.
    pub(crate) fn added(&mut self, item: &ResponseItem) -> Update {
        let Some(upstream_id) = item.id() else {
            return Update::default();
        };
        let kind = match item {
            ResponseItem::Message { .. } => OpenKind::message(),
            ResponseItem::Reasoning { .. } => OpenKind::reasoning(),
            _ => return Update::default(),
        };
        let started = self.open(upstream_id.to_string(), kind);
        Update {
            started: Some(Box::new(started)),
            next: None,
        }
    }

    /// Assistant text for `upstream_id`.
    pub(crate) fn text_delta(&mut self, upstream_id: String, delta: String) -> Update {
        let (started, open) = self.open_or_start(upstream_id, OpenKind::message);
        let next = match &mut open.kind {
            OpenKind::Message { text } => {
                text.push_str(&delta);
                Some(Next::Delta(Event::AgentMessageDelta {
                    item_id: open.id.clone(),
                    delta,
                }))
            }
            OpenKind::Reasoning { .. } => {
                tracing::warn!(item_id = %open.id, "dropped message text sent for a reasoning item");
                None
            }
        };
        Update {
            started: started.map(Box::new),
            next,
        }
    }

    /// Reasoning summary text for part `index` of `upstream_id`.
    pub(crate) fn summary_delta(
        &mut self,
        upstream_id: String,
        index: u32,
        delta: String,
    ) -> Update {
        let (started, open) = self.open_or_start(upstream_id, OpenKind::reasoning);
        let next = match &mut open.kind {
            OpenKind::Reasoning { summary } => {
                summary_part(summary, index).push_str(&delta);
                Some(Next::Delta(Event::ReasoningDelta {
                    item_id: open.id.clone(),
                    delta,
                }))
            }
            OpenKind::Message { .. } => {
                tracing::warn!(item_id = %open.id, "dropped reasoning text sent for a message");
                None
            }
        };
        Update {
            started: started.map(Box::new),
            next,
        }
    }

    /// More input of a custom tool call, kept for a `done` item that comes without it.
    pub(crate) fn custom_input_delta(&mut self, item_id: String, delta: &str) {
        self.custom_input
            .entry(item_id)
            .or_default()
            .push_str(delta);
    }

    /// An upstream item is complete: messages and reasoning complete their client item (started
    /// now if it never was), tool calls are collected, and every item is kept for the history.
    pub(crate) fn done(&mut self, item: ResponseItem) -> Update {
        let item = self.with_streamed_input(item);
        let upstream_id = item.id().unwrap_or_default().to_string();
        let update = match &item {
            ResponseItem::Message { content, .. } => {
                let streamed = self.open.remove(&upstream_id);
                let text = final_text(content, streamed.as_ref());
                let (started, id) = finishing(streamed, OpenKind::message());
                Update {
                    started: started.map(Box::new),
                    next: Some(Next::Completed(Box::new(Item::AgentMessage { id, text }))),
                }
            }
            ResponseItem::Reasoning { summary, .. } => {
                let streamed = self.open.remove(&upstream_id);
                let summary = match (summary_texts(summary), &streamed) {
                    (
                        texts,
                        Some(OpenItem {
                            kind: OpenKind::Reasoning { summary },
                            ..
                        }),
                    ) if texts.is_empty() => summary.clone(),
                    (texts, _) => texts,
                };
                let (started, id) = finishing(streamed, OpenKind::reasoning());
                Update {
                    started: started.map(Box::new),
                    next: Some(Next::Completed(Box::new(Item::Reasoning { id, summary }))),
                }
            }
            ResponseItem::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            } => self.call(call_id, name, arguments, CallKind::Function),
            ResponseItem::CustomToolCall {
                call_id,
                name,
                input,
                ..
            } => self.call(call_id, name, input, CallKind::Custom),
            ResponseItem::FunctionCallOutput { .. }
            | ResponseItem::CustomToolCallOutput { .. }
            | ResponseItem::Other(_) => {
                tracing::debug!(
                    kind = item.kind_name(),
                    "kept an item the client is not shown"
                );
                Update::default()
            }
        };
        self.done.push(item);
        update
    }

    /// Forgets the failed attempt: its finished items and calls do not reach the history, and
    /// the items it left open are returned, ended as they stood, for `itemCompleted`.
    #[must_use = "the items left open must be completed for the client"]
    pub(crate) fn abandon(&mut self) -> Vec<Item> {
        let closed = self.close_open();
        *self = Self::default();
        closed
    }

    /// Ends every item still open, as it stands, in the order they were opened: a response
    /// that completes without finishing an item, or a turn that ends mid-stream, leaves none
    /// in progress for the client.
    #[must_use = "the items left open must be completed for the client"]
    pub(crate) fn close_open(&mut self) -> Vec<Item> {
        let mut open: Vec<OpenItem> = self.open.drain().map(|(_, item)| item).collect();
        open.sort_by_key(|item| item.opened);
        open.into_iter()
            .map(|item| match item.kind {
                OpenKind::Message { text } => Item::AgentMessage { id: item.id, text },
                OpenKind::Reasoning { summary } => Item::Reasoning {
                    id: item.id,
                    summary,
                },
            })
            .collect()
    }

    /// The finished items and tool calls of a completed response.
    pub(crate) fn finish(self) -> (Vec<ResponseItem>, Vec<PendingCall>) {
        (self.done, self.calls)
    }

    /// A `custom_tool_call` that came without `input` (kept as `Other`) gets the input its
    /// deltas streamed; anything else passes unchanged.
    fn with_streamed_input(&mut self, item: ResponseItem) -> ResponseItem {
        let ResponseItem::Other(value) = &item else {
            return item;
        };
        let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
        let (Some("custom_tool_call"), Some(id), Some(call_id), Some(name)) =
            (field("type"), field("id"), field("call_id"), field("name"))
        else {
            return item;
        };
        match self.custom_input.remove(id) {
            Some(input) => ResponseItem::CustomToolCall {
                id: Some(id.to_string()),
                call_id: call_id.to_string(),
                name: name.to_string(),
                input,
            },
            None => item,
        }
    }

    fn call(&mut self, call_id: &str, name: &str, input: &str, kind: CallKind) -> Update {
        self.calls.push(PendingCall {
            call: ToolCall {
                call_id: call_id.to_string(),
                name: name.to_string(),
                arguments: input.to_string(),
            },
            kind,
        });
        Update::default()
    }

    fn open(&mut self, upstream_id: String, kind: OpenKind) -> Item {
        let (item, id) = started_item(&kind);
        let opened = self.next_opened();
        self.open.insert(upstream_id, OpenItem { id, kind, opened });
        item
    }

    fn next_opened(&mut self) -> usize {
        self.opened += 1;
        self.opened
    }

    /// The open item `upstream_id`, started with `kind` when the upstream never announced it.
    fn open_or_start(
        &mut self,
        upstream_id: String,
        kind: impl FnOnce() -> OpenKind,
    ) -> (Option<Item>, &mut OpenItem) {
        use std::collections::hash_map::Entry;
        let opened = self.opened + 1;
        match self.open.entry(upstream_id) {
            Entry::Occupied(entry) => (None, entry.into_mut()),
            Entry::Vacant(entry) => {
                self.opened = opened;
                let kind = kind();
                let (item, id) = started_item(&kind);
                (Some(item), entry.insert(OpenItem { id, kind, opened }))
            }
        }
    }
}

/// The id of the item a `done` finishes: the one it opened, or a new one of `kind` started now.
fn finishing(streamed: Option<OpenItem>, kind: OpenKind) -> (Option<Item>, String) {
    match streamed {
        Some(open) => (None, open.id),
        None => {
            let (item, id) = started_item(&kind);
            (Some(item), id)
        }
    }
}

/// Part `index` of a streaming summary. The index comes from upstream: within
/// [`MAX_SUMMARY_PARTS`] the summary grows to it; beyond, the text joins the last part rather
/// than sizing anything by it.
fn summary_part(summary: &mut Vec<String>, index: u32) -> &mut String {
    let index = usize::try_from(index).unwrap_or(usize::MAX);
    if index >= summary.len() {
        let len = if index < MAX_SUMMARY_PARTS {
            index + 1
        } else {
            summary.len().max(1)
        };
        summary.resize(len, String::new());
    }
    let last = summary.len() - 1;
    &mut summary[index.min(last)]
}

/// The final text of a message: its `output_text` parts, or what streamed when the final item
/// carries no text part at all.
fn final_text(content: &[ContentItem], streamed: Option<&OpenItem>) -> String {
    let has_text = content
        .iter()
        .any(|part| matches!(part, ContentItem::OutputText { .. }));
    match streamed {
        Some(OpenItem {
            kind: OpenKind::Message { text },
            ..
        }) if !has_text => text.clone(),
        _ => output_text(content),
    }
}

/// The `itemStarted` item for a new client item of `kind`, and its id.
fn started_item(kind: &OpenKind) -> (Item, String) {
    match kind {
        OpenKind::Message { .. } => {
            let id = new_item_id("msg");
            let item = Item::AgentMessage {
                id: id.clone(),
                text: String::new(),
            };
            (item, id)
        }
        OpenKind::Reasoning { .. } => {
            let id = new_item_id("rs");
            let item = Item::Reasoning {
                id: id.clone(),
                summary: Vec::new(),
            };
            (item, id)
        }
    }
}

/// A new item id, unique in this process: short, because it goes into every delta event.
pub(crate) fn new_item_id(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!(
        "{prefix}_{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

#[cfg(test)]
#[path = "items_tests.rs"]
mod tests;
