//! Tests of the Chat Completions translation and stream.

use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::model::chat_request::chat_body;
use crate::model::request::ModelRequest;
use crate::model::sse::responses_events;
use crate::model::testkit::parse_all;

const CHAT: &str = include_str!("testdata/chat_text_and_tool.sse");
const TWIN: &str = include_str!("testdata/chat_text_and_tool.responses.sse");

#[tokio::test]
async fn chat_stream_gives_the_same_events_as_its_responses_twin() {
    let from_chat = parse_all(chat_events, CHAT).await;
    let from_responses = parse_all(responses_events, TWIN).await;
    assert_eq!(from_chat.len(), 10);
    assert_eq!(from_chat, from_responses);
}

#[tokio::test]
async fn chat_stream_without_done_completes_after_a_finish_reason_only() {
    let finished = CHAT.replace("data: [DONE]\n\n", "");
    let cut = CHAT
        .split("data: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"local-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\"")
        .next()
        .unwrap_or_default()
        .to_string();
    let last = |events: Vec<Result<ResponseEvent, Failure>>| events.last().cloned();
    let done = last(parse_all(chat_events, &finished).await);
    let cut_off = last(parse_all(chat_events, &cut).await);
    assert_eq!(
        (
            matches!(done, Some(Ok(ResponseEvent::Completed { .. }))),
            cut_off
        ),
        (
            true,
            Some(Ok(ResponseEvent::FunctionCallArgumentsDelta {
                item_id: "fc_chatcmpl-9_1".into(),
                delta: "\"workdir\":\"/repo\"}".into()
            }))
        )
    );
}

#[tokio::test]
async fn chat_error_chunk_is_classified() {
    let body = "data: {\"error\":{\"message\":\"Context too long\",\"code\":\"context_length_exceeded\"}}\n\n";
    assert_eq!(
        parse_all(chat_events, body).await,
        vec![Err(Failure::Fatal(
            crate::model::ModelError::ContextWindowExceeded {
                message: "the model stream failed: Context too long".into(),
                http_status: None
            }
        ))]
    );
}

#[test]
fn responses_request_becomes_chat_messages() {
    let request = ModelRequest {
        session_id: "s".into(),
        model: "local-model".into(),
        instructions: "Be brief.".into(),
        input: serde_json::from_value(json!([
            {"type":"message","role":"user","content":[{"type":"input_text","text":"list files"}]},
            {"type":"message","role":"user","content":[
                {"type":"input_text","text":"and this:"},
                {"type":"input_image","image_url":"data:image/png;base64,AAAA"}]},
            {"type":"reasoning","summary":[],"encrypted_content":"x"},
            {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Sure."}]},
            {"type":"function_call","name":"shell","arguments":"{\"command\":[\"ls\"]}","call_id":"call_1"},
            {"type":"function_call","name":"shell","arguments":"{\"command\":[\"pwd\"]}","call_id":"call_2"},
            {"type":"function_call_output","call_id":"call_1","output":"Cargo.toml"},
            {"type":"custom_tool_call_output","call_id":"call_2","output":"/repo"},
            {"type":"web_search_call","id":"ws_1","action":{"query":"x"}},
        ]))
        .unwrap(),
        tools: vec![
            json!({"type":"function","name":"shell","description":"Runs a command.","strict":false,
                   "parameters":{"type":"object","properties":{}}}),
            json!({"type":"web_search"}),
        ],
        reasoning_effort: Some("medium".into()),
        previous_response_id: Some("resp_0".into()),
        user_agent: "ua".into(),
        output_schema: None,
    };
    assert_eq!(
        chat_body(&request),
        json!({
            "model": "local-model",
            "messages": [
                {"role":"system","content":"Be brief."},
                {"role":"user","content":"list files"},
                {"role":"user","content":[
                    {"type":"text","text":"and this:"},
                    {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
                {"role":"assistant","content":"Sure.","tool_calls":[
                    {"id":"call_1","type":"function","function":{"name":"shell","arguments":"{\"command\":[\"ls\"]}"}},
                    {"id":"call_2","type":"function","function":{"name":"shell","arguments":"{\"command\":[\"pwd\"]}"}}]},
                {"role":"tool","tool_call_id":"call_1","content":"Cargo.toml"},
                {"role":"tool","tool_call_id":"call_2","content":"/repo"},
            ],
            "tools": [{"type":"function","function":{"name":"shell","description":"Runs a command.",
                       "parameters":{"type":"object","properties":{}}}}],
            "tool_choice": "auto",
            "stream": true,
            "stream_options": {"include_usage": true},
        })
    );
}

#[tokio::test]
async fn a_tool_call_index_beyond_the_limit_fails_the_stream_without_allocating() {
    let body = format!(
        "data: {{\"id\":\"c1\",\"choices\":[{{\"delta\":{{\"tool_calls\":[{{\"index\":{},\"id\":\"call_1\",\"function\":{{\"name\":\"shell\",\"arguments\":\"{{}}\"}}}}]}}}}]}}\n\n",
        u32::MAX
    );
    let events = parse_all(chat_events, &body).await;
    assert_eq!(
        events,
        vec![Err(Failure::Fatal(crate::model::ModelError::Upstream {
            message: format!(
                "the model stream sent a malformed `chat.completion.chunk` event: tool call \
                 index {} is over the limit of 128",
                u32::MAX
            ),
            http_status: None,
        }))]
    );
}
