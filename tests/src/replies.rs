//! Expected reply objects, for comparing whole replies with `pretty_assertions::assert_eq`.
//!
//! The contract fixes codes, ids and `data.kind`, but not the wording of `message` or of
//! `data.expected`; [`redact`] replaces those two with placeholders (after checking they are
//! non-empty text) so the rest of the object can be compared exactly.

use serde_json::{Value, json};

/// Stands in for `error.message` after [`redact`].
pub const MESSAGE: &str = "<message>";
/// Stands in for `error.data.expected` after [`redact`].
pub const EXPECTED: &str = "<expected>";

/// Replaces the free-text parts of an error reply with [`MESSAGE`] and [`EXPECTED`], panicking
/// when `message` is missing or empty (the contract wants a human-readable one on every error).
/// Other replies are returned unchanged; batch replies are redacted element by element.
pub fn redact(mut reply: Value) -> Value {
    if let Value::Array(items) = reply {
        return Value::Array(items.into_iter().map(redact).collect());
    }
    let Some(error) = reply.get_mut("error") else {
        return reply;
    };
    match error.get("message").and_then(Value::as_str) {
        Some(text) if !text.trim().is_empty() => error["message"] = json!(MESSAGE),
        _ => panic!("an error without a human-readable message: {error}"),
    }
    if let Some(expected) = error.get_mut("data").and_then(|d| d.get_mut("expected")) {
        match expected.as_str() {
            Some(text) if !text.trim().is_empty() => *expected = json!(EXPECTED),
            _ => panic!("data.expected is not a non-empty string: {expected}"),
        }
    }
    reply
}

/// The reply `{"jsonrpc":"2.0","id":id,"result":result}`.
pub fn ok_reply(id: impl Into<Value>, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id.into(), "result": result})
}

/// A redacted error reply with `code` and `data`.
pub fn error_reply(id: impl Into<Value>, code: i64, data: Value) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id.into(),
        "error": {"code": code, "message": MESSAGE, "data": data},
    })
}

/// A redacted error reply whose data is only `{"kind": kind}`.
pub fn kind_error(id: impl Into<Value>, code: i64, kind: &str) -> Value {
    error_reply(id, code, json!({ "kind": kind }))
}

/// A redacted `-32602 invalidParams` reply naming `field`.
pub fn invalid_params(id: impl Into<Value>, field: &str) -> Value {
    error_reply(
        id,
        -32602,
        json!({"kind": "invalidParams", "field": field, "expected": EXPECTED}),
    )
}
