//! Typed model items: what a response contains and what a request's `input` carries.
//!
//! [`ResponseItem`] is the one shape of a conversation item on the model side. The SSE parser
//! and the Chat Completions adapter produce it, the session keeps its history as a list of it,
//! and the request builders serialize it; nothing outside `model/` reads item JSON by key.
//! Kinds this server does not know are kept as [`ResponseItem::Other`], raw, so they go back
//! upstream exactly as they came. Fields the upstream adds that only describe its own copy
//! (`id`, `status`) are not part of the history: [`ResponseItem::for_history`] drops the id,
//! and `status` is never kept.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One item of a model conversation, as the Responses API defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseItem {
    /// A message: the user's input, or the assistant's answer.
    Message {
        /// The upstream's id of the item; absent in the history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Who speaks.
        role: Role,
        /// Text and image parts.
        content: Vec<ContentItem>,
    },
    /// The model's reasoning: a readable summary and, for stateless requests, the encrypted
    /// reasoning that lets the next request continue it.
    Reasoning {
        /// The upstream's id of the item; absent in the history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The summary parts.
        #[serde(default)]
        summary: Vec<SummaryPart>,
        /// The raw reasoning text, when the upstream sends it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Vec<ReasoningContent>>,
        /// The encrypted reasoning (`include: ["reasoning.encrypted_content"]`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<String>,
    },
    /// A call of a function tool; its arguments are a JSON text as the model wrote it.
    FunctionCall {
        /// The upstream's id of the item; absent in the history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The call id its output refers to.
        call_id: String,
        /// The tool's name.
        name: String,
        /// The arguments, a JSON text.
        arguments: String,
    },
    /// What a function call produced.
    FunctionCallOutput {
        /// The call this answers.
        call_id: String,
        /// The text the model reads.
        output: String,
    },
    /// A call of a custom (free-form) tool; its input is plain text.
    CustomToolCall {
        /// The upstream's id of the item; absent in the history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The call id its output refers to.
        call_id: String,
        /// The tool's name.
        name: String,
        /// The input, as the model wrote it.
        input: String,
    },
    /// What a custom tool call produced.
    CustomToolCallOutput {
        /// The call this answers.
        call_id: String,
        /// The text the model reads.
        output: String,
    },
    /// Any other kind (web search calls, new item types, a known kind with an unexpected
    /// shape), kept as it came so that it goes back upstream unchanged.
    #[serde(untagged)]
    Other(Value),
}

/// Who speaks in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person at the keyboard.
    User,
    /// The model.
    Assistant,
    /// System instructions.
    System,
    /// Developer instructions.
    Developer,
}

/// One part of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentItem {
    /// Text the user wrote.
    InputText {
        /// The text.
        text: String,
    },
    /// An image the user attached: a `data:` or `https:` URL.
    InputImage {
        /// The URL.
        image_url: String,
    },
    /// Text the model wrote.
    OutputText {
        /// The text.
        text: String,
        /// Whatever else the upstream attached (`annotations`, `logprobs`), sent back as it
        /// came.
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
    /// Any other part (a refusal, new part kinds), kept as it came.
    #[serde(untagged)]
    Other(Value),
}

/// One part of a reasoning summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SummaryPart {
    /// Summary text.
    SummaryText {
        /// The text.
        text: String,
    },
}

/// One part of raw reasoning content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReasoningContent {
    /// Reasoning text.
    ReasoningText {
        /// The text.
        text: String,
    },
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
}

/// Which kind of tool call an output answers; the output item must be of the matching kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// A `function_call`, answered by a `function_call_output`.
    Function,
    /// A `custom_tool_call`, answered by a `custom_tool_call_output`.
    Custom,
}

impl ResponseItem {
    /// A user message made of `content`.
    pub fn user_message(content: Vec<ContentItem>) -> Self {
        Self::Message {
            id: None,
            role: Role::User,
            content,
        }
    }

    /// The output item answering call `call_id` of `kind`.
    pub fn call_output(kind: CallKind, call_id: String, output: String) -> Self {
        match kind {
            CallKind::Function => Self::FunctionCallOutput { call_id, output },
            CallKind::Custom => Self::CustomToolCallOutput { call_id, output },
        }
    }

    /// An item from JSON made elsewhere: typed when it is of a known shape, else kept raw.
    pub fn from_json(value: Value) -> Self {
        // Deserializing from a reference copies nothing when the shape is unknown (a restored
        // history of thousands of items is decoded here).
        match <Self as serde::Deserialize>::deserialize(&value) {
            Ok(item) => item,
            Err(_) => Self::Other(value),
        }
    }

    /// The upstream's id of the item, when it has one.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Message { id, .. }
            | Self::Reasoning { id, .. }
            | Self::FunctionCall { id, .. }
            | Self::CustomToolCall { id, .. } => id.as_deref(),
            Self::FunctionCallOutput { .. } | Self::CustomToolCallOutput { .. } => None,
            Self::Other(value) => value.get("id").and_then(Value::as_str),
        }
    }

    /// The item as the history keeps it: without the upstream's id, which would refer to an
    /// item the upstream did not keep when requests are sent with `store:false`.
    pub fn for_history(mut self) -> Self {
        match &mut self {
            Self::Message { id, .. }
            | Self::Reasoning { id, .. }
            | Self::FunctionCall { id, .. }
            | Self::CustomToolCall { id, .. } => *id = None,
            Self::FunctionCallOutput { .. } | Self::CustomToolCallOutput { .. } => {}
            Self::Other(value) => {
                if let Some(map) = value.as_object_mut() {
                    map.remove("id");
                    map.remove("status");
                }
            }
        }
        self
    }

    /// The kind of a raw item, for logs.
    pub fn kind_name(&self) -> &str {
        match self {
            Self::Message { .. } => "message",
            Self::Reasoning { .. } => "reasoning",
            Self::FunctionCall { .. } => "function_call",
            Self::FunctionCallOutput { .. } => "function_call_output",
            Self::CustomToolCall { .. } => "custom_tool_call",
            Self::CustomToolCallOutput { .. } => "custom_tool_call_output",
            Self::Other(value) => value.get("type").and_then(Value::as_str).unwrap_or("?"),
        }
    }
}

/// The text of a message's `output_text` parts, joined.
pub fn output_text(content: &[ContentItem]) -> String {
    content
        .iter()
        .filter_map(|part| match part {
            ContentItem::OutputText { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The texts of a reasoning summary, one per part.
pub fn summary_texts(summary: &[SummaryPart]) -> Vec<String> {
    summary
        .iter()
        .map(|SummaryPart::SummaryText { text }| text.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn parse(value: Value) -> ResponseItem {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn known_kinds_parse_typed_and_go_back_without_id_and_status() {
        let message = json!({"id": "msg_1", "type": "message", "status": "completed",
            "role": "assistant", "content": [{"type": "output_text", "annotations": [],
            "logprobs": [], "text": "Hi"}]});
        let item = parse(message);
        assert_eq!(
            item,
            ResponseItem::Message {
                id: Some("msg_1".into()),
                role: Role::Assistant,
                content: vec![ContentItem::OutputText {
                    text: "Hi".into(),
                    extra: Map::from_iter([
                        ("annotations".to_string(), json!([])),
                        ("logprobs".to_string(), json!([])),
                    ]),
                }],
            }
        );
        assert_eq!(
            serde_json::to_value(item.for_history()).unwrap(),
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text",
                "annotations": [], "logprobs": [], "text": "Hi"}]})
        );
        let reasoning = parse(json!({"id": "rs_1", "type": "reasoning", "summary": [
            {"type": "summary_text", "text": "A"}], "encrypted_content": "blob"}));
        assert_eq!(
            serde_json::to_value(reasoning.for_history()).unwrap(),
            json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": "A"}],
                "encrypted_content": "blob"})
        );
        let call = parse(
            json!({"id": "fc_1", "type": "custom_tool_call", "status": "completed",
            "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch"}),
        );
        assert_eq!(
            call,
            ResponseItem::CustomToolCall {
                id: Some("fc_1".into()),
                call_id: "c1".into(),
                name: "apply_patch".into(),
                input: "*** Begin Patch".into(),
            }
        );
    }

    #[test]
    fn unknown_kinds_and_odd_shapes_are_kept_raw() {
        let search = json!({"id": "ws_1", "type": "web_search_call", "status": "completed",
            "action": {"query": "rust"}});
        let item = parse(search.clone());
        assert_eq!(item, ResponseItem::Other(search));
        assert_eq!(item.kind_name(), "web_search_call");
        assert_eq!(item.id(), Some("ws_1"));
        assert_eq!(
            serde_json::to_value(item.for_history()).unwrap(),
            json!({"type": "web_search_call", "action": {"query": "rust"}})
        );
        // A known kind without a required field does not fail the stream either.
        let odd = json!({"type": "function_call", "name": "shell"});
        assert_eq!(parse(odd.clone()), ResponseItem::Other(odd));
        let refusal = json!({"type": "refusal", "refusal": "no"});
        assert_eq!(
            serde_json::from_value::<ContentItem>(refusal.clone()).unwrap(),
            ContentItem::Other(refusal)
        );
    }

    #[test]
    fn outputs_match_the_kind_of_their_call() {
        assert_eq!(
            serde_json::to_value(ResponseItem::call_output(
                CallKind::Custom,
                "c1".into(),
                "done".into()
            ))
            .unwrap(),
            json!({"type": "custom_tool_call_output", "call_id": "c1", "output": "done"})
        );
        assert_eq!(
            serde_json::to_value(ResponseItem::call_output(
                CallKind::Function,
                "c2".into(),
                "ok".into()
            ))
            .unwrap(),
            json!({"type": "function_call_output", "call_id": "c2", "output": "ok"})
        );
    }
}
