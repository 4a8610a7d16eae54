//! MCP servers: the per-session server specs, their status, `mcp/list` and `mcp/serverStatus`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An MCP server a client passes to `session/new`, `session/resume` or `session/fork`: a child
/// process (stdio) or a Streamable HTTP endpoint. Added to the configured servers for that
/// session; the same name replaces a configured server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum McpServerSpec {
    /// A server run as a child process speaking MCP on its stdin/stdout.
    Stdio(McpStdioServerSpec),
    /// A server reached over Streamable HTTP.
    Http(McpHttpServerSpec),
}

/// A server run as a child process speaking MCP on its stdin/stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpStdioServerSpec {
    /// The server's name: tools appear as `mcp__<name>__<tool>`.
    pub name: String,
    /// The program to run.
    pub command: String,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Variables added to the environment the server inherits.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Its working directory (default: the server process's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

/// A server reached over Streamable HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpHttpServerSpec {
    /// The server's name: tools appear as `mcp__<name>__<tool>`.
    pub name: String,
    /// The endpoint, e.g. `https://mcp.example.com/mcp`.
    pub url: String,
    /// Headers sent with every request (e.g. `Authorization`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl McpServerSpec {
    /// The server's name.
    pub fn name(&self) -> &str {
        match self {
            McpServerSpec::Stdio(spec) => &spec.name,
            McpServerSpec::Http(spec) => &spec.name,
        }
    }
}

/// Where an MCP server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum McpServerStatus {
    /// Being started: spawned or connecting, `initialize` and `tools/list` under way.
    Starting,
    /// Connected; its tools are offered to the model.
    Ready,
    /// Could not start, timed out starting, or crashed (see `error`).
    Failed,
    /// Stopped by the server (session closed, shutdown).
    Stopped,
}

/// How the server reaches an MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum McpTransportKind {
    /// A child process on stdin/stdout.
    Stdio,
    /// Streamable HTTP.
    Http,
}

/// Params of the `mcp/serverStatus` notification, sent on every change of a server's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpServerStatusNotification {
    /// The server's name.
    pub name: String,
    /// The session, for a server passed to `session/new`; absent for a configured server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The new status.
    pub status: McpServerStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many tools it offers the model (after the filters), once ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_count: Option<u32>,
}

/// Params of `mcp/list`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpListParams {
    /// List the servers of this session (configured ones and its own); absent lists the
    /// configured servers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// One tool of an MCP server, as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpToolInfo {
    /// The tool's own name (the model sees it as `mcp__<server>__<tool>`).
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// The JSON Schema of its arguments.
    pub input_schema: Value,
    /// Hints such as `readOnlyHint`, as the server sent them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
}

/// One MCP server in `mcp/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpServerInfo {
    /// The server's name.
    pub name: String,
    /// How it is reached.
    pub transport: McpTransportKind,
    /// Its status.
    pub status: McpServerStatus,
    /// Why it failed; `null` otherwise.
    pub error: Option<String>,
    /// The tools the model is offered (after `enabled_tools`/`disabled_tools`); empty until ready.
    pub tools: Vec<McpToolInfo>,
}

/// Result of `mcp/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct McpListResult {
    /// The servers, configured ones first, each group by name.
    pub servers: Vec<McpServerInfo>,
}

/// The result of an MCP tool call, as the MCP server sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpToolCallResult {
    /// The content blocks (`text`, `image`, `audio`, `resource_link`, `resource`).
    pub content: Vec<Value>,
    /// The structured result, when the tool gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_content: Option<Value>,
    /// Whether the tool reported an error.
    pub is_error: bool,
}
