//! A mock Responses API: small builders for SSE events and a wiremock mount for them.
//!
//! Event payloads follow the shapes in `tests/fixtures/` (the OpenAI Responses streaming
//! events). [`sse`] numbers them (`sequence_number`) when a payload does not say.

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// `response.created` for response `id`.
pub fn ev_created(id: &str) -> Value {
    json!({
        "type": "response.created",
        "response": {"id": id, "object": "response", "status": "in_progress", "output": []},
    })
}

/// `response.output_text.delta`: more text of message item `item_id`.
pub fn ev_output_text_delta(item_id: &str, delta: &str) -> Value {
    json!({
        "type": "response.output_text.delta",
        "item_id": item_id, "output_index": 0, "content_index": 0,
        "delta": delta, "logprobs": [],
    })
}

/// `response.output_item.done` for a finished assistant message.
pub fn ev_message_done(item_id: &str, text: &str) -> Value {
    json!({
        "type": "response.output_item.done",
        "output_index": 0,
        "item": {
            "id": item_id, "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}],
        },
    })
}

/// `response.output_item.done` for a function call (`arguments` is the JSON text the model
/// produced).
pub fn ev_function_call(call_id: &str, name: &str, arguments: &str) -> Value {
    json!({
        "type": "response.output_item.done",
        "output_index": 0,
        "item": {
            "id": format!("fc_{call_id}"), "type": "function_call", "status": "completed",
            "call_id": call_id, "name": name, "arguments": arguments,
        },
    })
}

/// A Responses `usage` object.
pub fn responses_usage(input: u64, cached: u64, output: u64, reasoning: u64) -> Value {
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input + output,
    })
}

/// `response.completed` for response `id` with `usage` (see [`responses_usage`]).
pub fn ev_completed(id: &str, usage: Value) -> Value {
    json!({
        "type": "response.completed",
        "response": {"id": id, "object": "response", "status": "completed", "usage": usage},
    })
}

/// `response.failed` with `response.error.code` and `message`.
pub fn ev_failed(code: &str, message: &str) -> Value {
    json!({
        "type": "response.failed",
        "response": {
            "id": "resp_failed", "object": "response", "status": "failed",
            "error": {"code": code, "message": message},
        },
    })
}

/// An SSE body: `event: <type>\ndata: <json>\n\n` per event, numbered from 0 where the
/// payload has no `sequence_number`.
pub fn sse(events: impl IntoIterator<Item = Value>) -> String {
    let mut body = String::new();
    for (n, mut event) in events.into_iter().enumerate() {
        if let Some(object) = event.as_object_mut() {
            object.entry("sequence_number").or_insert_with(|| json!(n));
        }
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("an SSE event without a type: {event}"))
            .to_owned();
        body.push_str(&format!("event: {kind}\ndata: {event}\n\n"));
    }
    body
}

/// A `200 text/event-stream` answer carrying `body`.
pub fn sse_response(body: impl Into<String>) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream")
        .set_body_raw(body.into(), "text/event-stream")
}

/// Answers every `POST …/responses` with the SSE `body`.
pub async fn mount_sse(server: &MockServer, body: impl Into<String>) {
    Mock::given(method("POST"))
        .and(path_regex(r"/responses$"))
        .respond_with(sse_response(body))
        .mount(server)
        .await;
}

/// Answers the next `POST …/responses` (once) with `body`. Mounted in order, successive calls
/// get successive bodies: wiremock tries mocks in the order they were mounted.
pub async fn mount_sse_once(server: &MockServer, body: impl Into<String>) {
    Mock::given(method("POST"))
        .and(path_regex(r"/responses$"))
        .respond_with(sse_response(body))
        .up_to_n_times(1)
        .mount(server)
        .await;
}

/// Answers the next `POST …/responses` (once) with a response (`resp_calls`) asking for the
/// tool calls `calls`: call id, tool name, arguments.
pub async fn mount_calls(server: &MockServer, calls: &[(String, &str, Value)]) {
    let mut events = vec![ev_created("resp_calls")];
    for (id, name, arguments) in calls {
        events.push(ev_function_call(id, name, &arguments.to_string()));
    }
    events.push(ev_completed("resp_calls", responses_usage(1, 0, 1, 0)));
    mount_sse_once(server, sse(events)).await;
}

/// Answers the next `POST …/responses` (once) with a response (`resp_<call_id>`) asking for
/// one call of tool `name` with `arguments`.
pub async fn mount_call(server: &MockServer, call_id: &str, name: &str, arguments: &Value) {
    mount_sse_once(
        server,
        sse([
            ev_created(&format!("resp_{call_id}")),
            ev_function_call(call_id, name, &arguments.to_string()),
            ev_completed(&format!("resp_{call_id}"), responses_usage(1, 0, 1, 0)),
        ]),
    )
    .await;
}

/// Answers every later `POST …/responses` with the final text answer `done` (response
/// `resp_final`, message `msg_final`). Mounted after the [`mount_call`]s, it serves the
/// requests they leave.
pub async fn mount_answer(server: &MockServer) {
    mount_sse(
        server,
        sse([
            ev_created("resp_final"),
            ev_message_done("msg_final", "done"),
            ev_completed("resp_final", responses_usage(1, 0, 1, 0)),
        ]),
    )
    .await;
}

/// The JSON bodies of every `…/responses` request the mock received, in order.
pub async fn responses_requests(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/responses"))
        .map(|r| {
            serde_json::from_slice(&r.body)
                .unwrap_or_else(|e| panic!("a /responses request body is not JSON: {e}"))
        })
        .collect()
}

/// The `output` text of the `function_call_output` for `call_id` in a Responses request body.
pub fn function_call_output(request: &Value, call_id: &str) -> Option<String> {
    request["input"].as_array()?.iter().find_map(|item| {
        (item["type"] == "function_call_output" && item["call_id"] == call_id).then(
            || match &item["output"] {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            },
        )
    })
}
