//! Chat Completions chunk streams turned into the same typed [`ResponseEvent`]s a Responses
//! stream gives: a message item, function call items, then `Completed` with usage.
//!
//! Chat has no item ids, so they are made from the completion id (`msg_<id>`,
//! `fc_<id>_<index>`), which keeps them unique per call and stable in tests.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Display;

use super::sse_decode::Event;
use chrono::Utc;
use futures::stream::{self, BoxStream, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::event::{ChatUsage, ResponseEvent, TokenUsage};
use super::failure::{ErrorDetails, Failure, Origin, classify};
use super::item::{ContentItem, ResponseItem, Role};
use super::sse::{AttemptStream, frames, malformed};

/// Parses a Chat Completions SSE byte stream into Responses-style events.
pub fn chat_events<S, B, E>(bytes: S) -> AttemptStream
where
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]> + Send + 'static,
    E: Display + Send + 'static,
{
    let source: BoxStream<'static, Result<Event, Failure>> = frames(bytes).boxed();
    let start = (source, ChatState::default(), VecDeque::new());
    stream::unfold(start, |(mut source, mut state, mut queue)| async move {
        loop {
            if let Some(next) = queue.pop_front() {
                return Some((next, (source, state, queue)));
            }
            if state.ended {
                return None;
            }
            match source.next().await {
                Some(Ok(frame)) => match state.on_frame(&frame) {
                    Ok(events) => queue.extend(events.into_iter().map(Ok)),
                    Err(failure) => {
                        state.ended = true;
                        queue.push_back(Err(failure));
                    }
                },
                Some(Err(failure)) => {
                    state.ended = true;
                    queue.push_back(Err(failure));
                }
                None => {
                    // Some servers omit `[DONE]`; a stream that reported a finish reason is
                    // complete, one that did not was cut off (the caller retries it).
                    if state.finish_seen {
                        queue.extend(state.finish().into_iter().map(Ok));
                    }
                    state.ended = true;
                }
            }
        }
    })
    .boxed()
}

/// Tool calls one chat response may make (indexes `0..MAX_TOOL_CALLS`); far above what
/// models do in one answer, low enough that a hostile index cannot make thousands of items.
const MAX_TOOL_CALLS: u32 = 128;

#[derive(Deserialize)]
struct Chunk {
    id: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<ChatUsage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: u32,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

/// A streamed message or function call not yet done.
struct OpenItem {
    id: String,
    /// Message text, or function call arguments.
    text: String,
    /// `Some((call_id, name))` for a function call.
    call: Option<(String, String)>,
    /// Whether its `OutputItemDone` was sent.
    done: bool,
}

impl OpenItem {
    /// The item as announced (`done: false`, empty) or as finished.
    fn item(&self, done: bool) -> ResponseItem {
        let id = Some(self.id.clone());
        let text = if done {
            self.text.clone()
        } else {
            String::new()
        };
        match &self.call {
            Some((call_id, name)) => ResponseItem::FunctionCall {
                id,
                call_id: call_id.clone(),
                name: name.clone(),
                arguments: text,
            },
            None => ResponseItem::Message {
                id,
                role: Role::Assistant,
                content: if done {
                    vec![ContentItem::OutputText {
                        text,
                        extra: Map::from_iter([("annotations".to_string(), json!([]))]),
                    }]
                } else {
                    Vec::new()
                },
            },
        }
    }
}

#[derive(Default)]
struct ChatState {
    response_id: Option<String>,
    message: Option<OpenItem>,
    messages_started: u32,
    calls: BTreeMap<u32, OpenItem>,
    usage: Option<TokenUsage>,
    finish_seen: bool,
    ended: bool,
}

impl ChatState {
    fn on_frame(&mut self, frame: &Event) -> Result<Vec<ResponseEvent>, Failure> {
        if frame.data.trim() == "[DONE]" {
            self.ended = true;
            return Ok(self.finish());
        }
        let chunk: Chunk = serde_json::from_str(&frame.data)
            .map_err(|err| malformed("chat.completion.chunk", &err))?;
        if let Some(error) = chunk.error {
            let details = ErrorDetails::from_value(&error, Utc::now());
            return Err(classify(details, Origin::Stream, None));
        }
        let mut out = Vec::new();
        if self.response_id.is_none() {
            let id = chunk
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("chatcmpl_{}", uuid::Uuid::new_v4().simple()));
            out.push(ResponseEvent::Created {
                response_id: Some(id.clone()),
            });
            self.response_id = Some(id);
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        if let Some(index) = chunk
            .choices
            .iter()
            .flat_map(|c| &c.delta.tool_calls)
            .map(|call| call.index)
            .find(|index| *index >= MAX_TOOL_CALLS)
        {
            // The index comes from upstream; it must not name more calls than a response can
            // sensibly hold (nor overflow the item numbering).
            let detail = format!("tool call index {index} is over the limit of {MAX_TOOL_CALLS}");
            return Err(malformed("chat.completion.chunk", &detail));
        }
        for choice in chunk.choices {
            self.on_delta(choice.delta, &mut out);
            self.finish_seen |= choice.finish_reason.is_some();
        }
        Ok(out)
    }

    fn on_delta(&mut self, delta: Delta, out: &mut Vec<ResponseEvent>) {
        if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
            if self.message.is_none() {
                self.close_calls(out);
                self.messages_started = self.messages_started.saturating_add(1);
                let item = OpenItem {
                    id: self.item_id("msg", self.messages_started),
                    text: String::new(),
                    call: None,
                    done: false,
                };
                out.push(ResponseEvent::OutputItemAdded {
                    item: Box::new(item.item(false)),
                });
                self.message = Some(item);
            }
            if let Some(message) = &mut self.message {
                message.text.push_str(&text);
                out.push(ResponseEvent::OutputTextDelta {
                    item_id: message.id.clone(),
                    delta: text,
                });
            }
        }
        for call in delta.tool_calls {
            let function = call.function.unwrap_or(FunctionDelta {
                name: None,
                arguments: None,
            });
            if !self.calls.contains_key(&call.index) {
                // Responses finishes one item before the next starts; so does this.
                self.close_message(out);
                self.close_calls(out);
                let id = self.item_id("fc", call.index + 1);
                let call_id = call.id.unwrap_or_else(|| id.replacen("fc_", "call_", 1));
                let item = OpenItem {
                    id,
                    text: String::new(),
                    call: Some((call_id, function.name.unwrap_or_default())),
                    done: false,
                };
                out.push(ResponseEvent::OutputItemAdded {
                    item: Box::new(item.item(false)),
                });
                self.calls.insert(call.index, item);
            }
            if let (Some(item), Some(args)) = (self.calls.get_mut(&call.index), function.arguments)
                && !args.is_empty()
            {
                if item.done {
                    // Calls are streamed one after another; a late fragment of a finished
                    // one cannot be delivered any more.
                    tracing::warn!(item_id = %item.id, "dropped arguments of a finished tool call");
                    continue;
                }
                item.text.push_str(&args);
                out.push(ResponseEvent::FunctionCallArgumentsDelta {
                    item_id: item.id.clone(),
                    delta: args,
                });
            }
        }
    }

    /// `msg_<id>` for the first message, `msg_<id>_<n>` after; `fc_<id>_<n>` for calls.
    fn item_id(&self, prefix: &str, n: u32) -> String {
        let id = self.response_id.as_deref().unwrap_or("chat");
        if prefix == "msg" && n == 1 {
            format!("{prefix}_{id}")
        } else {
            format!("{prefix}_{id}_{n}")
        }
    }

    fn close_message(&mut self, out: &mut Vec<ResponseEvent>) {
        if let Some(message) = self.message.take() {
            out.push(ResponseEvent::OutputItemDone {
                item: Box::new(message.item(true)),
            });
        }
    }

    /// Marks open calls done; they stay in the map so later deltas for them are recognised.
    fn close_calls(&mut self, out: &mut Vec<ResponseEvent>) {
        for call in self.calls.values_mut().filter(|c| !c.done) {
            call.done = true;
            out.push(ResponseEvent::OutputItemDone {
                item: Box::new(call.item(true)),
            });
        }
    }

    fn finish(&mut self) -> Vec<ResponseEvent> {
        let mut out = Vec::new();
        self.close_message(&mut out);
        self.close_calls(&mut out);
        out.push(ResponseEvent::Completed {
            response_id: self.response_id.clone().unwrap_or_default(),
            usage: self.usage,
        });
        out
    }
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
