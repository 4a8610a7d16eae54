//! `initialize`, `shutdown` and `exit`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::AuthStatus;

/// Who the client is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ClientInfo {
    /// The client's name, e.g. `my-ide`; goes into the `User-Agent`.
    pub name: String,
    /// The client's version, e.g. `1.2.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// What the client can do.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCapabilities {
    /// Whether the client answers `session/requestApproval`. Without it, actions that need
    /// approval are declined and the model is told so.
    #[serde(default)]
    pub approvals: bool,
}

/// Params of `initialize`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    /// The protocol version the client speaks (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u32>,
    /// Who the client is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_info: Option<ClientInfo>,
    /// What the client can do.
    #[serde(default)]
    pub capabilities: ClientCapabilities,
}

/// The name and version of the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServerInfo {
    /// Always `agent-server`.
    pub name: String,
    /// The server's version.
    pub version: String,
}

/// The framing in use on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// One JSON message per line.
    Ndjson,
    /// LSP base-protocol `Content-Length:` headers.
    ContentLength,
}

/// What the server does on this connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerCapabilities {
    /// Whether the server will send `session/requestApproval` (it echoes the client's capability).
    pub approvals: bool,
    /// The framing in use on this connection.
    pub framing: Framing,
}

/// Result of `initialize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResult {
    /// The protocol version in use.
    pub protocol_version: u32,
    /// Who the server is.
    pub server_info: ServerInfo,
    /// What the server does on this connection.
    pub capabilities: ServerCapabilities,
    /// The `User-Agent` of every upstream request.
    pub user_agent: String,
    /// The home directory in use.
    pub home: String,
    /// The current auth status.
    pub auth: AuthStatus,
}

/// Params of a method that takes none (`{}` or absent).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct EmptyParams {}

/// A result with nothing in it (`{}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct EmptyResult {}
