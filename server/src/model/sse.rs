//! Responses API SSE streams into [`ResponseEvent`]s.
//!
//! Frames are `event: <type>` + `data: <json>`; the payload's own `type` wins over the
//! `event:` line. Unknown types are skipped, so new upstream events do not break old clients.

use std::borrow::Cow;
use std::fmt::Display;

use chrono::Utc;
use futures::stream::{BoxStream, Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;

use super::error::ModelError;
use super::event::{ResponseEvent, ResponsesUsage};
use super::failure::{ErrorDetails, Failure, Origin, classify};
use super::item::ResponseItem;
use super::sse_decode::{Decoder, Event};

/// Events of one attempt; an `Err` ends the attempt and says whether to retry.
pub type AttemptStream = BoxStream<'static, Result<ResponseEvent, Failure>>;

/// SSE frames of a byte stream; transport errors are retryable, malformed SSE is not.
pub(crate) fn frames<S, B, E>(bytes: S) -> impl Stream<Item = Result<Event, Failure>> + Send
where
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]> + Send + 'static,
    E: Display + Send + 'static,
{
    let mut decoder = Decoder::new();
    bytes.flat_map(move |chunk| {
        let mut frames = Vec::new();
        let failure = match chunk {
            Ok(chunk) => decoder.push(chunk.as_ref(), &mut frames).err().map(|err| {
                Failure::Fatal(ModelError::Upstream {
                    message: format!("the model stream is not valid SSE: {err}"),
                    http_status: None,
                })
            }),
            Err(err) => Some(Failure::retryable(&format!(
                "the model stream broke: {err}"
            ))),
        };
        let items: Vec<Result<Event, Failure>> =
            frames.into_iter().map(Ok).chain(failure.map(Err)).collect();
        futures::stream::iter(items)
    })
}

/// Parses a Responses API SSE byte stream into events.
pub fn responses_events<S, B, E>(bytes: S) -> AttemptStream
where
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]> + Send + 'static,
    E: Display + Send + 'static,
{
    frames(bytes)
        .filter_map(|frame| async move {
            match frame {
                Ok(frame) => parse_frame(&frame).transpose(),
                Err(failure) => Some(Err(failure)),
            }
        })
        .boxed()
}

/// The fields any event of interest may carry; everything else is skipped unparsed.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    item_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    delta: Option<Cow<'a, str>>,
    summary_index: Option<u32>,
    item: Option<ResponseItem>,
    response: Option<ResponseObject>,
}

/// The `response` object of `response.*` lifecycle events, minus what is not needed.
#[derive(Deserialize)]
struct ResponseObject {
    id: Option<String>,
    usage: Option<ResponsesUsage>,
    error: Option<Value>,
    incomplete_details: Option<IncompleteDetails>,
}

#[derive(Deserialize)]
struct IncompleteDetails {
    reason: Option<String>,
}

/// One SSE frame into at most one event; `Err` ends the attempt.
pub(crate) fn parse_frame(frame: &Event) -> Result<Option<ResponseEvent>, Failure> {
    let parsed: Frame<'_> =
        serde_json::from_str(&frame.data).map_err(|err| malformed(&frame.event, &err))?;
    let kind = parsed.kind.as_deref().unwrap_or(frame.event.as_str());
    let missing = |field: &str| malformed(kind, &format!("missing field `{field}`"));
    let event = match kind {
        "response.created" => ResponseEvent::Created {
            response_id: parsed.response.and_then(|r| r.id),
        },
        "response.output_item.added" => ResponseEvent::OutputItemAdded {
            item: Box::new(parsed.item.ok_or_else(|| missing("item"))?),
        },
        "response.output_item.done" => ResponseEvent::OutputItemDone {
            item: Box::new(parsed.item.ok_or_else(|| missing("item"))?),
        },
        "response.output_text.delta" => ResponseEvent::OutputTextDelta {
            item_id: parsed
                .item_id
                .ok_or_else(|| missing("item_id"))?
                .into_owned(),
            delta: parsed.delta.ok_or_else(|| missing("delta"))?.into_owned(),
        },
        "response.reasoning_summary_text.delta" => ResponseEvent::ReasoningSummaryDelta {
            item_id: parsed
                .item_id
                .ok_or_else(|| missing("item_id"))?
                .into_owned(),
            summary_index: parsed.summary_index.unwrap_or(0),
            delta: parsed.delta.ok_or_else(|| missing("delta"))?.into_owned(),
        },
        "response.function_call_arguments.delta" => ResponseEvent::FunctionCallArgumentsDelta {
            item_id: parsed
                .item_id
                .ok_or_else(|| missing("item_id"))?
                .into_owned(),
            delta: parsed.delta.ok_or_else(|| missing("delta"))?.into_owned(),
        },
        "response.custom_tool_call_input.delta" => ResponseEvent::CustomToolCallInputDelta {
            item_id: parsed
                .item_id
                .ok_or_else(|| missing("item_id"))?
                .into_owned(),
            delta: parsed.delta.ok_or_else(|| missing("delta"))?.into_owned(),
        },
        "response.completed" => {
            let response = parsed.response.ok_or_else(|| missing("response"))?;
            ResponseEvent::Completed {
                response_id: response.id.ok_or_else(|| missing("response.id"))?,
                usage: response.usage.map(Into::into),
            }
        }
        "response.incomplete" => {
            let response = parsed.response.ok_or_else(|| missing("response"))?;
            ResponseEvent::Incomplete {
                reason: response.incomplete_details.and_then(|d| d.reason),
                usage: response.usage.map(Into::into),
            }
        }
        "codex.rate_limits" => {
            // Rate limits are news, never a reason to fail: a malformed event is skipped.
            let value: Value = serde_json::from_str(&frame.data).unwrap_or(Value::Null);
            return Ok(super::rate_limits::from_event(&value)
                .map(|limits| ResponseEvent::RateLimits(Box::new(limits))));
        }
        "response.failed" => {
            let error = parsed.response.and_then(|r| r.error).unwrap_or(Value::Null);
            return Err(stream_error(&error));
        }
        "error" => {
            // Both the flat form (`code`/`message` beside `type`) and the nested one
            // (`error: {…}`) occur; the details reader accepts either.
            let value: Value =
                serde_json::from_str(&frame.data).map_err(|err| malformed(kind, &err))?;
            return Err(stream_error(&value));
        }
        _ => return Ok(None),
    };
    Ok(Some(event))
}

fn stream_error(error: &Value) -> Failure {
    classify(
        ErrorDetails::from_value(error, Utc::now()),
        Origin::Stream,
        None,
    )
}

/// A frame whose JSON does not fit its type: not retried, since the same upstream would
/// send the same again.
pub(crate) fn malformed(event: &str, err: &dyn Display) -> Failure {
    Failure::Fatal(ModelError::Upstream {
        message: format!("the model stream sent a malformed `{event}` event: {err}"),
        http_status: None,
    })
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
