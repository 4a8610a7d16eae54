//! The error a handler returns, and its one mapping to a JSON-RPC error object.

use agent_server_schema::rpc::{ErrorData, ErrorKind};
use jsonrpsee_types::ErrorObjectOwned;

/// An error answered to a request: a contract kind (which fixes the code), a message that says
/// what to do next, and optional details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    /// The machine-readable details, `data` on the wire.
    pub data: ErrorData,
    /// What happened and what to do next.
    pub message: String,
}

impl RpcError {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            data: ErrorData::new(kind),
            message: message.into(),
        }
    }

    /// `-32602 invalidParams` naming the field and what was expected there.
    pub fn invalid_params(
        field: impl Into<String>,
        expected: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let mut err = Self::new(ErrorKind::InvalidParams, message);
        err.data.field = Some(field.into());
        err.data.expected = Some(expected.into());
        err
    }

    /// `-32603 internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The JSON-RPC error code.
    pub fn code(&self) -> i32 {
        self.data.kind.code()
    }

    /// The error as a JSON object (`code`, `message`, `data`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"code": self.code(), "message": self.message, "data": self.data})
    }

    /// Turns a params deserialization failure into `invalidParams` with the field path and
    /// what was expected, in words a client author can act on.
    pub fn from_params_error(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let text = strip_position(&inner.to_string());
        let (field, expected) = describe(&path, &text);
        let message = if field.is_empty() {
            format!("invalid params: {text}; send params of the documented shape")
        } else {
            format!("invalid params: `{field}`: {text}; fix that field and send the request again")
        };
        Self::invalid_params(field, expected, message)
    }
}

impl From<RpcError> for ErrorObjectOwned {
    fn from(err: RpcError) -> Self {
        ErrorObjectOwned::owned(err.code(), err.message, Some(err.data))
    }
}

/// serde_json appends " at line L column C", which means little inside a params object.
fn strip_position(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// Finds the offending field and the expectation in a serde message.
fn describe(path: &str, text: &str) -> (String, String) {
    let mut field = if path == "." {
        String::new()
    } else {
        path.to_string()
    };
    if let Some(rest) = text.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        field = if field.is_empty() {
            name.to_string()
        } else {
            format!("{field}.{name}")
        };
        return (field, "a value (this field is required)".into());
    }
    if let Some(rest) = text.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        field = if field.is_empty() {
            name.to_string()
        } else {
            format!("{field}.{name}")
        };
        return (field, "no such field".into());
    }
    let expected = match text.find("expected ") {
        Some(i) => text[i + "expected ".len()..].to_string(),
        None => text.to_string(),
    };
    (field, expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code, reason = "only deserialized")]
    struct P {
        api_key: String,
        items: Option<Vec<Inner>>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code, reason = "only deserialized")]
    struct Inner {
        n: u32,
    }

    fn parse(text: &str) -> RpcError {
        let de = &mut serde_json::Deserializer::from_str(text);
        let err = serde_path_to_error::deserialize::<_, P>(de).unwrap_err();
        RpcError::from_params_error(err)
    }

    #[test]
    fn names_the_field_and_the_expectation() {
        let err = parse(r#"{"apiKey":5}"#);
        assert_eq!(
            (
                err.data.field.as_deref(),
                err.data.expected.as_deref(),
                err.code()
            ),
            (Some("apiKey"), Some("a string"), -32602)
        );
        let err = parse(r#"{}"#);
        assert_eq!(err.data.field.as_deref(), Some("apiKey"));
        let err = parse(r#"{"apiKey":"k","items":[{"n":"x"}]}"#);
        assert_eq!(
            (err.data.field.as_deref(), err.data.expected.as_deref()),
            (Some("items[0].n"), Some("u32"))
        );
        assert!(err.message.contains("`items[0].n`"), "{}", err.message);
    }
}
