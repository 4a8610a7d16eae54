//! `session/prompt` and `session/cancel`: one turn of the session layer per prompt.

use std::sync::Arc;

use agent_client_protocol::v1::schema::{
    CancelNotification, ContentBlock, EmbeddedResourceResource, PromptRequest, PromptResponse,
    StopReason,
};
use agent_server_schema::rpc::ErrorKind;
use agent_server_schema::session::{InputItem, SubmitParams, TurnErrorKind, TurnStatus};

use crate::gate::ReplyGate;

use super::link::TurnEnd;
use super::{Agent, error, session_error};

/// Runs one turn with the prompt as its input and answers how it stopped.
pub(crate) async fn prompt(
    agent: Arc<Agent>,
    request: PromptRequest,
) -> Result<PromptResponse, agent_client_protocol::Error> {
    let session_id = request.session_id.0.to_string();
    // Unknown sessions fail here, before anything is queued.
    let settings = agent.settings(&session_id)?;
    let input = input_items(&request.prompt)?;
    // The mode and config options chosen since the last prompt reach the turn as its
    // per-turn settings (the native `session/submit` overrides).
    let (approval_policy, sandbox) = settings.mode.policy();
    // The turn's events wait for `start` so that its end cannot pass before the wait for it exists.
    let start = ReplyGate::new();
    let (_, turn_id) = agent
        .sessions
        .submit(
            SubmitParams {
                session_id: Some(session_id),
                input: Some(input),
                model: Some(settings.model),
                reasoning_effort: Some(settings.effort),
                approval_policy: Some(approval_policy),
                sandbox: Some(sandbox),
                ..SubmitParams::default()
            },
            start.clone(),
        )
        .await
        .map_err(session_error)?;
    let end = agent.link.wait_turn(&turn_id);
    start.open();
    let end = end.await.map_err(|_| {
        error(
            ErrorKind::Internal,
            "the turn ended without reporting how; send the prompt again",
        )
    })?;
    answer(end)
}

/// `end_turn`, `cancelled`, or the turn's error (its message, with the error object as `data`).
fn answer(end: TurnEnd) -> Result<PromptResponse, agent_client_protocol::Error> {
    match end.status {
        TurnStatus::Completed => Ok(PromptResponse::new(StopReason::EndTurn)),
        TurnStatus::Interrupted => Ok(PromptResponse::new(StopReason::Cancelled)),
        TurnStatus::Failed => {
            let Some(turn_error) = end.error else {
                return Err(error(
                    ErrorKind::Internal,
                    "the turn failed without saying why",
                ));
            };
            let code = match turn_error.kind {
                TurnErrorKind::AuthRequired
                | TurnErrorKind::LoginRequired
                | TurnErrorKind::Unauthorized => ErrorKind::AuthRequired.code(),
                _ => ErrorKind::Internal.code(),
            };
            let data = serde_json::to_value(&turn_error).unwrap_or_default();
            Err(agent_client_protocol::Error::new(code, turn_error.message).data(data))
        }
    }
}

/// Interrupts the session's running turn (its prompt answers `cancelled`).
pub(crate) fn cancel(agent: &Agent, notification: &CancelNotification) {
    let id = &*notification.session_id.0;
    if let Err(err) = agent.sessions.interrupt(id, None) {
        tracing::debug!(%err, session_id = id, "session/cancel for no open session");
    }
}

/// The prompt's blocks as our input items: text and resource links become text, images
/// images (as `data:` URLs), embedded text resources their text wrapped with their URI.
pub(crate) fn input_items(
    blocks: &[ContentBlock],
) -> Result<Vec<InputItem>, agent_client_protocol::Error> {
    let mut items = Vec::with_capacity(blocks.len());
    for block in blocks {
        let item = match block {
            ContentBlock::Text(text) => InputItem::Text {
                text: text.text.clone(),
            },
            ContentBlock::ResourceLink(link) => InputItem::Text {
                text: format!("[@{}]({})", link.name, link.uri),
            },
            ContentBlock::Image(image) => InputItem::Image {
                url: format!("data:{};base64,{}", image.mime_type, image.data),
            },
            ContentBlock::Resource(embedded) => match &embedded.resource {
                EmbeddedResourceResource::TextResourceContents(text) => InputItem::Text {
                    text: format!("<context ref=\"{}\">\n{}\n</context>", text.uri, text.text),
                },
                EmbeddedResourceResource::BlobResourceContents(blob) => {
                    match blob.mime_type.as_deref() {
                        Some(mime) if mime.starts_with("image/") => InputItem::Image {
                            url: format!("data:{mime};base64,{}", blob.blob),
                        },
                        _ => InputItem::Text {
                            text: format!("[@{}]({})", blob.uri, blob.uri),
                        },
                    }
                }
                _ => return Err(unsupported("an unknown kind of embedded resource")),
            },
            ContentBlock::Audio(_) => return Err(unsupported("audio")),
            _ => return Err(unsupported("an unknown kind of content block")),
        };
        items.push(item);
    }
    if items.is_empty() {
        return Err(agent_client_protocol::Error::new(
            ErrorKind::InvalidParams.code(),
            "the prompt is empty; send at least one content block",
        )
        .data(
            serde_json::json!({"kind": ErrorKind::InvalidParams, "field": "prompt",
            "expected": "a non-empty list of content blocks"}),
        ));
    }
    Ok(items)
}

fn unsupported(what: &str) -> agent_client_protocol::Error {
    agent_client_protocol::Error::new(
        ErrorKind::InvalidParams.code(),
        format!("this agent does not take {what} in prompts; send text, images, resource links or embedded resources"),
    )
    .data(serde_json::json!({"kind": ErrorKind::InvalidParams, "field": "prompt",
        "expected": "text, image, resource_link or resource blocks"}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn every_supported_block_becomes_input() {
        let blocks: Vec<ContentBlock> = serde_json::from_value(json!([
            {"type":"text","text":"look"},
            {"type":"resource_link","name":"main.rs","uri":"file:///w/main.rs"},
            {"type":"image","data":"AQID","mimeType":"image/png"},
            {"type":"resource","resource":{"uri":"file:///w/a.txt","text":"hello","mimeType":"text/plain"}}
        ]))
        .unwrap();
        assert_eq!(
            input_items(&blocks).unwrap(),
            vec![
                InputItem::Text {
                    text: "look".into()
                },
                InputItem::Text {
                    text: "[@main.rs](file:///w/main.rs)".into()
                },
                InputItem::Image {
                    url: "data:image/png;base64,AQID".into()
                },
                InputItem::Text {
                    text: "<context ref=\"file:///w/a.txt\">\nhello\n</context>".into()
                },
            ]
        );
        let audio: Vec<ContentBlock> =
            serde_json::from_value(json!([{"type":"audio","data":"AA","mimeType":"audio/wav"}]))
                .unwrap();
        assert!(input_items(&audio).is_err());
        assert!(input_items(&[]).is_err());
    }
}
