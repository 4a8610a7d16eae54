//! JSON-RPC error codes and the `data` object every error carries.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The normative `data.kind` of an error; each kind belongs to exactly one JSON-RPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ErrorKind {
    /// The line was not valid JSON (-32700).
    ParseError,
    /// Valid JSON that is not a JSON-RPC request, notification or response (-32600).
    InvalidRequest,
    /// A message longer than `max_message_bytes` (-32600).
    MessageTooLarge,
    /// A second successful `initialize` (-32600).
    AlreadyInitialized,
    /// `initialize` sent after another request (-32600).
    InitializeNotFirst,
    /// No such method (-32601).
    MethodNotFound,
    /// Params of the wrong shape (-32602).
    InvalidParams,
    /// No session with that id (-32602).
    SessionNotFound,
    /// The client asked for a protocol version the server does not speak (-32602).
    UnsupportedProtocolVersion,
    /// No turn with that id in the session (-32602).
    TurnNotFound,
    /// A bug or an unexpected failure inside the server (-32603).
    Internal,
    /// The request was cancelled by the client (-32800).
    Cancelled,
    /// The provider needs OpenAI auth and none is available (-32000).
    AuthRequired,
    /// The stored login can no longer be used; log in again (-32000).
    LoginRequired,
    /// Work stayed piled up; retry later (-32001).
    Overloaded,
    /// The session is loaded by another live process (-32002); `data.pid` names it.
    SessionInUse,
    /// The session store cannot be opened or written; the message names the file (-32603).
    StoreUnavailable,
    /// The login callback port is taken (-32010).
    LoginPortInUse,
    /// Another login is in progress (-32010).
    LoginInProgress,
    /// The issuer gave no device code: device-code login is not enabled for it, or it could
    /// not be asked (-32010, 1.1).
    DeviceCodeUnavailable,
    /// `session/steer` while no turn runs (-32002).
    NoRunningTurn,
    /// `session/steer` with an `expectedTurnId` that is not the running turn (-32002).
    TurnMismatch,
}

impl ErrorKind {
    /// The JSON-RPC error code this kind is sent with.
    pub fn code(self) -> i32 {
        match self {
            ErrorKind::ParseError => -32700,
            ErrorKind::InvalidRequest
            | ErrorKind::MessageTooLarge
            | ErrorKind::AlreadyInitialized
            | ErrorKind::InitializeNotFirst => -32600,
            ErrorKind::MethodNotFound => -32601,
            ErrorKind::InvalidParams
            | ErrorKind::SessionNotFound
            | ErrorKind::UnsupportedProtocolVersion
            | ErrorKind::TurnNotFound => -32602,
            ErrorKind::Internal | ErrorKind::StoreUnavailable => -32603,
            ErrorKind::SessionInUse => -32002,
            ErrorKind::Cancelled => -32800,
            ErrorKind::AuthRequired | ErrorKind::LoginRequired => -32000,
            ErrorKind::Overloaded => -32001,
            ErrorKind::LoginPortInUse
            | ErrorKind::LoginInProgress
            | ErrorKind::DeviceCodeUnavailable => -32010,
            ErrorKind::NoRunningTurn | ErrorKind::TurnMismatch => -32002,
        }
    }

    /// The wire name of this kind (`data.kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ParseError => "parseError",
            ErrorKind::InvalidRequest => "invalidRequest",
            ErrorKind::MessageTooLarge => "messageTooLarge",
            ErrorKind::AlreadyInitialized => "alreadyInitialized",
            ErrorKind::InitializeNotFirst => "initializeNotFirst",
            ErrorKind::MethodNotFound => "methodNotFound",
            ErrorKind::InvalidParams => "invalidParams",
            ErrorKind::SessionNotFound => "sessionNotFound",
            ErrorKind::UnsupportedProtocolVersion => "unsupportedProtocolVersion",
            ErrorKind::TurnNotFound => "turnNotFound",
            ErrorKind::Internal => "internal",
            ErrorKind::SessionInUse => "sessionInUse",
            ErrorKind::StoreUnavailable => "storeUnavailable",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::AuthRequired => "authRequired",
            ErrorKind::LoginRequired => "loginRequired",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::LoginPortInUse => "loginPortInUse",
            ErrorKind::LoginInProgress => "loginInProgress",
            ErrorKind::DeviceCodeUnavailable => "deviceCodeUnavailable",
            ErrorKind::NoRunningTurn => "noRunningTurn",
            ErrorKind::TurnMismatch => "turnMismatch",
        }
    }
}

/// The `data` member of every error the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorData {
    /// What kind of error this is; see the contract's error table.
    pub kind: ErrorKind,
    /// For `invalidParams`: the path of the offending field (e.g. `input[0].type`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `invalidParams`: what was expected there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// For `unsupportedProtocolVersion`: the versions the server speaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported: Option<Vec<u32>>,
    /// For `sessionInUse`: the process id of the process that has the session loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

impl ErrorData {
    /// Data with only a kind.
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            field: None,
            expected: None,
            supported: None,
            pid: None,
        }
    }
}

/// A JSON-RPC error object as the server sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RpcError {
    /// The JSON-RPC error code.
    pub code: i32,
    /// What happened and what to do next.
    pub message: String,
    /// The machine-readable details.
    pub data: ErrorData,
}

/// Params of `$/cancelRequest` (LSP style).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CancelRequestParams {
    /// The id of the request to cancel, exactly as it was sent.
    pub id: serde_json::Value,
}

/// Params of `notifications/cancelled` (MCP style).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelledNotificationParams {
    /// The id of the request to cancel, exactly as it was sent.
    pub request_id: serde_json::Value,
    /// Why it was cancelled, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
