//! Classifying one incoming JSON value: request, notification, response, or invalid.

use serde::Deserialize;
use serde_json::value::RawValue;

/// One incoming message, borrowing from the text it was parsed from.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// A request: must be answered exactly once.
    Request {
        /// The id exactly as sent (raw JSON text), echoed in the reply.
        id: &'a RawValue,
        /// The method name.
        method: String,
        /// Raw params, `None` when absent or `null`.
        params: Option<&'a RawValue>,
    },
    /// A notification: never answered.
    Notification {
        /// The method name.
        method: String,
        /// Raw params, `None` when absent or `null`.
        params: Option<&'a RawValue>,
    },
    /// A response to a request the server sent.
    Response {
        /// The id the server used.
        id: &'a RawValue,
        /// `Ok(result)` or `Err(error object)`.
        outcome: Result<&'a RawValue, &'a RawValue>,
    },
    /// Valid JSON that is not a JSON-RPC message; answered with `-32600`.
    Invalid {
        /// The id when it could be read (a string, number or null), for the reply.
        id: Option<&'a RawValue>,
        /// What is wrong, for the error message.
        reason: String,
    },
}

/// Every member as raw JSON; `present` keeps an explicit `null` apart from an absent member.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

pub(crate) fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn first_byte(raw: &RawValue) -> u8 {
    raw.get().bytes().next().unwrap_or(b' ')
}

/// Whether a raw id is of a type JSON-RPC allows (string, number or null).
fn is_valid_id(raw: &RawValue) -> bool {
    matches!(first_byte(raw), b'"' | b'-' | b'0'..=b'9' | b'n')
}

/// Classifies one JSON value (already known to be valid JSON).
pub fn classify(value: &RawValue) -> Incoming<'_> {
    if first_byte(value) != b'{' {
        return Incoming::Invalid {
            id: None,
            reason: "a message must be a JSON object (or an array of them)".into(),
        };
    }
    let env: Envelope<'_> = match serde_json::from_str(value.get()) {
        Ok(env) => env,
        Err(err) => {
            return Incoming::Invalid {
                id: None,
                reason: format!("unreadable message: {err}"),
            };
        }
    };
    let id = env.id.filter(|id| is_valid_id(id));
    if let Some(raw) = env.id
        && !is_valid_id(raw)
    {
        return Incoming::Invalid {
            id: None,
            reason: "`id` must be a string, a number or null".into(),
        };
    }
    if let Some(v) = env.jsonrpc
        && v.get() != "\"2.0\""
    {
        return Incoming::Invalid {
            id,
            reason: format!("`jsonrpc` must be \"2.0\", not {}", v.get()),
        };
    }
    let params = env.params.filter(|p| p.get() != "null");
    if let Some(method) = env.method {
        let Ok(method) = serde_json::from_str::<String>(method.get()) else {
            return Incoming::Invalid {
                id,
                reason: "`method` must be a string".into(),
            };
        };
        if let Some(p) = params
            && !matches!(first_byte(p), b'{' | b'[')
        {
            return Incoming::Invalid {
                id,
                reason: format!("`params` must be an object or an array, not {}", p.get()),
            };
        }
        return match id {
            Some(id) => Incoming::Request { id, method, params },
            None => Incoming::Notification { method, params },
        };
    }
    match (id, env.result, env.error) {
        (Some(id), Some(result), None) => Incoming::Response { id, outcome: Ok(result) },
        (Some(id), None, Some(error)) => Incoming::Response { id, outcome: Err(error) },
        _ => Incoming::Invalid {
            id,
            reason: "a message needs `method` (a request or notification) or `id` with `result` or `error` (a response)"
                .into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> String {
        let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
        match classify(&raw) {
            Incoming::Request { id, method, params } => format!(
                "request {} {method} {:?}",
                id.get(),
                params.map(|p| p.get())
            ),
            Incoming::Notification { method, .. } => format!("notification {method}"),
            Incoming::Response { id, outcome } => {
                format!("response {} {}", id.get(), outcome.is_ok())
            }
            Incoming::Invalid { id, .. } => format!("invalid {:?}", id.map(|i| i.get())),
        }
    }

    #[test]
    fn classifies_every_shape() {
        let table = [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"a"}"#,
                "request 1 a None",
            ),
            (
                r#"{"id":"1","method":"a","params":null}"#,
                r#"request "1" a None"#,
            ),
            (
                r#"{"id":null,"method":"a","params":[1]}"#,
                "request null a Some(\"[1]\")",
            ),
            (r#"{"method":"a"}"#, "notification a"),
            (
                r#"{"id":"srv-1","result":null}"#,
                r#"response "srv-1" true"#,
            ),
            (
                r#"{"id":"srv-1","error":{"code":1}}"#,
                r#"response "srv-1" false"#,
            ),
            (r#"{"id":7,"method":"a","params":5}"#, "invalid Some(\"7\")"),
            (r#"{"id":7,"method":3}"#, "invalid Some(\"7\")"),
            (r#"{"id":{},"method":"a"}"#, "invalid None"),
            (r#"{"id":7}"#, "invalid Some(\"7\")"),
            (
                r#"{"jsonrpc":"1.0","id":7,"method":"a"}"#,
                "invalid Some(\"7\")",
            ),
            ("5", "invalid None"),
        ];
        for (text, expected) in table {
            assert_eq!(kind(text), expected, "{text}");
        }
    }
}
