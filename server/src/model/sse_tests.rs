//! Tests of the Responses SSE parsing on the recorded transcripts.

use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::model::event::TokenUsage;
use crate::model::testkit::{
    AFTER_SHELL_CALL, SHELL_CALL, TEXT_ANSWER, ev_failed, frame, parse_all,
};

fn typed(item: Value) -> Box<crate::model::ResponseItem> {
    Box::new(serde_json::from_value(item).unwrap())
}

fn ok(events: Vec<ResponseEvent>) -> Vec<Result<ResponseEvent, Failure>> {
    events.into_iter().map(Ok).collect()
}

#[tokio::test]
async fn text_answer_transcript() {
    let reasoning_done = json!({"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"**Greeting the user**"}],"encrypted_content":"gAAAAABo_ENCRYPTED_REASONING_BLOB=="});
    let message_done = json!({"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"Hello there!"}]});
    assert_eq!(
        parse_all(responses_events, TEXT_ANSWER).await,
        ok(vec![
            ResponseEvent::Created {
                response_id: Some("resp_A".into())
            },
            ResponseEvent::OutputItemAdded {
                item: typed(json!({"id":"rs_1","type":"reasoning","summary":[]}))
            },
            ResponseEvent::ReasoningSummaryDelta {
                item_id: "rs_1".into(),
                summary_index: 0,
                delta: "**Greeting the user**".into()
            },
            ResponseEvent::OutputItemDone {
                item: typed(reasoning_done)
            },
            ResponseEvent::OutputItemAdded {
                item: typed(
                    json!({"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]})
                )
            },
            ResponseEvent::OutputTextDelta {
                item_id: "msg_1".into(),
                delta: "Hello".into()
            },
            ResponseEvent::OutputTextDelta {
                item_id: "msg_1".into(),
                delta: " there!".into()
            },
            ResponseEvent::OutputItemDone {
                item: typed(message_done)
            },
            ResponseEvent::Completed {
                response_id: "resp_A".into(),
                usage: Some(TokenUsage {
                    input_tokens: 1830,
                    cached_input_tokens: 1536,
                    output_tokens: 48,
                    reasoning_output_tokens: 32,
                    total_tokens: 1878
                })
            },
        ])
    );
}

#[tokio::test]
async fn shell_call_transcript() {
    let args = r#"{"command":["bash","-lc","ls"],"workdir":"/repo"}"#;
    assert_eq!(
        parse_all(responses_events, SHELL_CALL).await,
        ok(vec![
            ResponseEvent::Created {
                response_id: Some("resp_B1".into())
            },
            ResponseEvent::OutputItemAdded {
                item: typed(json!({"id":"rs_1","type":"reasoning","summary":[]}))
            },
            ResponseEvent::OutputItemDone {
                item: typed(
                    json!({"id":"rs_1","type":"reasoning","summary":[],"encrypted_content":"gAAAAABo_ENCRYPTED_REASONING_BLOB=="})
                )
            },
            ResponseEvent::OutputItemAdded {
                item: typed(
                    json!({"id":"fc_1","type":"function_call","status":"in_progress","arguments":"","call_id":"call_Xy12","name":"shell"})
                )
            },
            ResponseEvent::FunctionCallArgumentsDelta {
                item_id: "fc_1".into(),
                delta: r#"{"command":["bash","-lc","#.into()
            },
            ResponseEvent::FunctionCallArgumentsDelta {
                item_id: "fc_1".into(),
                delta: r#""ls"],"workdir":"/repo"}"#.into()
            },
            ResponseEvent::OutputItemDone {
                item: typed(
                    json!({"id":"fc_1","type":"function_call","status":"completed","arguments":args,"call_id":"call_Xy12","name":"shell"})
                )
            },
            ResponseEvent::Completed {
                response_id: "resp_B1".into(),
                usage: Some(TokenUsage {
                    input_tokens: 2100,
                    cached_input_tokens: 0,
                    output_tokens: 61,
                    reasoning_output_tokens: 24,
                    total_tokens: 2161
                })
            },
        ])
    );
}

#[tokio::test]
async fn after_shell_call_transcript() {
    let text = "There are two entries: `Cargo.toml` and `src`.";
    assert_eq!(
        parse_all(responses_events, AFTER_SHELL_CALL).await,
        ok(vec![
            ResponseEvent::Created {
                response_id: Some("resp_B2".into())
            },
            ResponseEvent::OutputItemAdded {
                item: typed(
                    json!({"id":"msg_2","type":"message","status":"in_progress","role":"assistant","content":[]})
                )
            },
            ResponseEvent::OutputTextDelta {
                item_id: "msg_2".into(),
                delta: text.into()
            },
            ResponseEvent::OutputItemDone {
                item: typed(
                    json!({"id":"msg_2","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","annotations":[],"logprobs":[],"text":text}]})
                )
            },
            ResponseEvent::Completed {
                response_id: "resp_B2".into(),
                usage: Some(TokenUsage {
                    input_tokens: 2230,
                    cached_input_tokens: 2048,
                    output_tokens: 19,
                    reasoning_output_tokens: 0,
                    total_tokens: 2249
                })
            },
        ])
    );
}

#[tokio::test]
async fn incomplete_ends_with_reason_and_usage() {
    let body = frame(
        "response.incomplete",
        &json!({"type":"response.incomplete","response":{"id":"r","status":"incomplete",
            "incomplete_details":{"reason":"max_output_tokens"},
            "usage":{"input_tokens":3,"output_tokens":4,"total_tokens":7}}}),
    );
    assert_eq!(
        parse_all(responses_events, &body).await,
        ok(vec![ResponseEvent::Incomplete {
            reason: Some("max_output_tokens".into()),
            usage: Some(TokenUsage {
                input_tokens: 3,
                cached_input_tokens: 0,
                output_tokens: 4,
                reasoning_output_tokens: 0,
                total_tokens: 7
            })
        }])
    );
}

#[tokio::test]
async fn failures_in_stream() {
    let cases = [
        ev_failed(
            "context_length_exceeded",
            "Your input exceeds the context window",
        ),
        ev_failed("server_error", "boom"),
        frame(
            "error",
            &json!({"type":"error","code":"insufficient_quota","message":"flat form","param":null}),
        ),
        frame(
            "error",
            &json!({"type":"error","error":{"type":"invalid_request_error","code":"rate_limit_exceeded","message":"nested form, try again in 2s"}}),
        ),
    ];
    let mut got = Vec::new();
    for body in cases {
        got.extend(parse_all(responses_events, &body).await);
    }
    assert_eq!(
        got,
        vec![
            Err(Failure::Fatal(ModelError::ContextWindowExceeded {
                message: "the model stream failed: Your input exceeds the context window".into(),
                http_status: None
            })),
            Err(Failure::Retry {
                message: "the model stream failed: boom".into(),
                delay: None,
                exhausted: ModelError::Upstream {
                    message: "the model stream failed: boom; retries exhausted".into(),
                    http_status: None
                }
            }),
            Err(Failure::Fatal(ModelError::QuotaExceeded {
                message: "the model stream failed: flat form".into(),
                http_status: None
            })),
            Err(Failure::Retry {
                message: "the model stream failed: nested form, try again in 2s".into(),
                delay: Some(std::time::Duration::from_secs(2)),
                exhausted: ModelError::RateLimited {
                    message:
                        "the model stream failed: nested form, try again in 2s; retries exhausted"
                            .into(),
                    http_status: None
                }
            }),
        ]
    );
}

#[tokio::test]
async fn unknown_events_are_skipped_and_malformed_data_names_its_event() {
    let body = [
        frame(
            "response.future_thing",
            &json!({"type":"response.future_thing","x":1}),
        ),
        "event: response.output_text.delta\ndata: {not json\n\n".to_string(),
    ]
    .concat();
    let missing = frame(
        "response.output_text.delta",
        &json!({"type":"response.output_text.delta","item_id":"m"}),
    );
    let mut got = parse_all(responses_events, &body).await;
    got.extend(parse_all(responses_events, &missing).await);
    let messages: Vec<String> = got
        .into_iter()
        .map(|r| match r {
            Err(Failure::Fatal(e)) => e.to_string(),
            other => format!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        messages,
        vec![
            "the model stream sent a malformed `response.output_text.delta` event: key must be a string at line 1 column 2".to_string(),
            "the model stream sent a malformed `response.output_text.delta` event: missing field `delta`".to_string(),
        ]
    );
}
