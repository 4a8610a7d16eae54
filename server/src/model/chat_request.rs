//! Responses-style requests translated into Chat Completions requests (`wire_api = "chat"`).

use serde_json::{Map, Value, json};

use super::item::{ContentItem, ResponseItem, Role};
use super::request::ModelRequest;

/// The Chat Completions body for `request`. Reasoning items are dropped (chat providers have
/// no place for them); `store` and `previous_response_id` do not exist there.
pub(crate) fn chat_body(request: &ModelRequest) -> Value {
    let mut messages: Vec<Value> = Vec::with_capacity(request.input.len() + 1);
    if !request.instructions.is_empty() {
        messages.push(json!({"role": "system", "content": request.instructions}));
    }
    for item in &request.input {
        push_item(&mut messages, item);
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let tools: Vec<Value> = request.tools.iter().filter_map(chat_tool).collect();
    // Some chat servers reject an empty `tools` array, so it is sent only when non-empty.
    if !tools.is_empty()
        && let Some(obj) = body.as_object_mut()
    {
        obj.insert("tools".into(), Value::Array(tools));
        obj.insert("tool_choice".into(), json!("auto"));
    }
    // `outputSchema` in the Chat Completions spelling of a strict JSON Schema answer.
    if let Some(schema) = &request.output_schema
        && let Some(obj) = body.as_object_mut()
    {
        obj.insert(
            "response_format".into(),
            json!({"type": "json_schema",
                   "json_schema": {"name": "output", "schema": schema, "strict": true}}),
        );
    }
    body
}

fn str_field<'a>(item: &'a Value, key: &str) -> &'a str {
    item.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn push_item(messages: &mut Vec<Value>, item: &ResponseItem) {
    match item {
        ResponseItem::Message { role, content, .. } => push_message(messages, *role, content),
        ResponseItem::FunctionCall {
            call_id,
            name,
            arguments,
            ..
        } => push_tool_call(messages, call_id, name, arguments),
        // Chat has only function tools; a free-form call goes as one whose arguments are its
        // input, and its output as that call's result.
        ResponseItem::CustomToolCall {
            call_id,
            name,
            input,
            ..
        } => push_tool_call(messages, call_id, name, input),
        ResponseItem::FunctionCallOutput { call_id, output }
        | ResponseItem::CustomToolCallOutput { call_id, output } => {
            messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
        }
        // Reasoning and any other item kinds have no Chat Completions form.
        ResponseItem::Reasoning { .. } | ResponseItem::Other(_) => {}
    }
}

fn push_message(messages: &mut Vec<Value>, role: Role, content: &[ContentItem]) {
    let role = match role {
        Role::Developer | Role::System => "system",
        Role::Assistant => "assistant",
        Role::User => "user",
    };
    let mut texts = Vec::new();
    let mut parts = Vec::new();
    let mut has_image = false;
    for part in content {
        match part {
            ContentItem::InputText { text } | ContentItem::OutputText { text, .. } => {
                texts.push(text.as_str());
                parts.push(json!({"type": "text", "text": text}));
            }
            ContentItem::InputImage { image_url } => {
                has_image = true;
                parts.push(json!({"type": "image_url", "image_url": {"url": image_url}}));
            }
            ContentItem::Other(_) => {}
        }
    }
    // Plain text goes as a string, which every chat server accepts; parts only with images.
    let content = if has_image && role == "user" {
        Value::Array(parts)
    } else {
        Value::String(texts.concat())
    };
    messages.push(json!({"role": role, "content": content}));
}

/// Adds a tool call to the preceding assistant message, or starts one, so that a text reply
/// and the calls that follow it (or several calls) form one assistant turn as chat expects.
fn push_tool_call(messages: &mut Vec<Value>, call_id: &str, name: &str, arguments: &str) {
    let call = json!({
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    });
    if let Some(last) = messages.last_mut().and_then(Value::as_object_mut)
        && last.get("role").and_then(Value::as_str) == Some("assistant")
    {
        match last.get_mut("tool_calls").and_then(Value::as_array_mut) {
            Some(calls) => calls.push(call),
            None => {
                last.insert("tool_calls".into(), json!([call]));
            }
        }
        return;
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert("content".into(), Value::Null);
    message.insert("tool_calls".into(), json!([call]));
    messages.push(Value::Object(message));
}

fn chat_tool(tool: &Value) -> Option<Value> {
    if str_field(tool, "type") != "function" {
        return None;
    }
    let mut function = Map::new();
    for key in ["name", "description", "parameters"] {
        if let Some(value) = tool.get(key) {
            function.insert(key.into(), value.clone());
        }
    }
    Some(json!({"type": "function", "function": function}))
}
