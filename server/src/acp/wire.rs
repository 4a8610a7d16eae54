//! The ACP connection's stdio: our framing and stdout writer under the SDK's connection.
//!
//! The SDK takes and yields whole JSON-RPC frames through a [`Channel`]; this module feeds it
//! from the same reader the native protocol uses (newline-delimited, BOM, `\r\n` and blank lines
//! tolerated, the message size cap enforced without buffering) and writes what it yields through
//! the one stdout writer. Input the SDK would only have to reject (unparseable JSON, a value that
//! is not a JSON-RPC message, a batch, an oversized line) is answered here, with the error
//! objects of the contract's section 1 and 7 (`data.kind`), and never reaches it.

use agent_client_protocol::{Channel, RawJsonRpcMessage, TransportFrame};
use agent_server_schema::rpc::ErrorKind;
use futures::StreamExt;
use serde_json::value::RawValue;
use tokio::io::AsyncRead;

use crate::rpc::{RpcError, render_error};
use crate::transport::{FramingChoice, Inbound, MessageReader, WriterHandle};

/// Reads messages from `input` into the SDK's end of the channel until the input ends; answers
/// input that is not a JSON-RPC message itself. Dropping the sender on return is the SDK's EOF.
pub(crate) async fn read_into<R: AsyncRead + Unpin>(
    input: R,
    max_message_bytes: usize,
    to_sdk: futures::channel::mpsc::UnboundedSender<TransportFrame>,
    writer: WriterHandle,
) {
    let mut reader = MessageReader::new(input, FramingChoice::Ndjson, max_message_bytes);
    loop {
        let bytes = match reader.next().await {
            Ok(Inbound::Message(bytes)) => bytes,
            Ok(Inbound::TooLarge) => {
                let err = RpcError::new(
                    ErrorKind::MessageTooLarge,
                    format!(
                        "the message is longer than max_message_bytes ({max_message_bytes}); it was skipped"
                    ),
                );
                writer.send(render_error("null", &err)).await;
                continue;
            }
            // Only the Content-Length framing reports bad headers; ACP is newline-delimited.
            Ok(Inbound::BadHeader(_)) => continue,
            Ok(Inbound::Eof) => return,
            Err(err) => {
                tracing::warn!(%err, "reading stdin failed; treating it as the end of input");
                return;
            }
        };
        match frame(&bytes) {
            Ok(frame) => {
                if to_sdk.unbounded_send(frame).is_err() {
                    return;
                }
            }
            Err(reply) => {
                writer.send(reply).await;
            }
        }
    }
}

/// One line as a frame for the SDK, or the error reply that answers it here.
fn frame(bytes: &[u8]) -> Result<TransportFrame, String> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(reject(
            None,
            ErrorKind::ParseError,
            "the line is not valid UTF-8; send one JSON-RPC message per line",
        ));
    };
    let value: &RawValue = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(err) => {
            return Err(reject(
                None,
                ErrorKind::ParseError,
                &format!("the line is not valid JSON ({err}); send one JSON-RPC message per line"),
            ));
        }
    };
    if value.get().starts_with('[') {
        return Err(reject(
            None,
            ErrorKind::InvalidRequest,
            "the ACP profile does not accept batches; send each message on its own line",
        ));
    }
    match serde_json::from_str::<RawJsonRpcMessage>(text) {
        Ok(message) => Ok(TransportFrame::Single(message)),
        Err(err) => Err(reject(
            readable_id(value),
            ErrorKind::InvalidRequest,
            &format!("not a JSON-RPC request, notification or response ({err}); see JSON-RPC 2.0"),
        )),
    }
}

/// The `id` of an invalid message when it is a string or a number, so the reply names it.
fn readable_id(value: &RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct WithId<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    let id = serde_json::from_str::<WithId<'_>>(value.get()).ok()?.id?;
    matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'))
        .then(|| id.get().to_string())
}

fn reject(id: Option<String>, kind: ErrorKind, message: &str) -> String {
    render_error(
        id.as_deref().unwrap_or("null"),
        &RpcError::new(kind, message),
    )
}

/// Writes what the SDK sends, in its order, through the one stdout writer; returns when the SDK
/// closes its end.
pub(crate) async fn write_from(
    mut from_sdk: futures::channel::mpsc::UnboundedReceiver<TransportFrame>,
    writer: WriterHandle,
) {
    while let Some(frame) = from_sdk.next().await {
        match frame.to_json() {
            Ok(line) => {
                if !writer.send(line).await {
                    return;
                }
            }
            Err(err) => tracing::error!(%err, "could not serialize an outgoing ACP message"),
        }
    }
}

/// The two ends of the SDK's transport: the channel the SDK connects to, and ours.
pub(crate) fn channel() -> (Channel, Channel) {
    Channel::duplex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::{Value, json};

    fn reply(line: &str) -> Value {
        let text = frame(line.as_bytes()).err().unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn input_that_is_not_a_message_is_answered_here() {
        let parse = reply("{not json");
        assert_eq!(parse["id"], Value::Null);
        assert_eq!(parse["error"]["code"], json!(-32700));
        assert_eq!(parse["error"]["data"]["kind"], json!("parseError"));

        let batch = reply(r#"[{"jsonrpc":"2.0","id":1,"method":"initialize"}]"#);
        assert_eq!(batch["error"]["code"], json!(-32600));

        let shapeless = reply(r#"{"jsonrpc":"2.0","id":7}"#);
        assert_eq!(shapeless["id"], json!(7));
        assert_eq!(shapeless["error"]["code"], json!(-32600));
        assert_eq!(shapeless["error"]["data"]["kind"], json!("invalidRequest"));
    }

    #[test]
    fn messages_pass_to_the_sdk() {
        let ok = frame(br#"{"jsonrpc":"2.0","id":"a","method":"session/new","params":{}}"#);
        assert!(matches!(
            ok,
            Ok(TransportFrame::Single(RawJsonRpcMessage::Request(_)))
        ));
    }
}
