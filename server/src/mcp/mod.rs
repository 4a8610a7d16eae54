//! MCP client support: the tools of Model Context Protocol servers, configured in
//! `config.toml` (`[mcp_servers.<name>]`) or passed to `session/new`, `session/resume` or
//! `session/fork`.
//!
//! This is the only module that sees the `rmcp` SDK ([`client`] alone imports it); the rest of
//! the server sees our own types: [`McpServerConfig`] in, tool infos, call results, statuses
//! and plain error strings out.
//!
//! - Servers start in the background ([`McpManager::start_configured_when`] just after the
//!   process's handshake, [`McpManager::start_configured`] at once for the CLI and ACP,
//!   [`McpManager::start_session`] when a session is created, resumed or forked); nothing
//!   waits for them but a turn's first model request ([`McpManager::turn_tools`]), each at
//!   most its `startup_timeout_sec`.
//! - Every status change is reported through [`McpObserver`] (`mcp/serverStatus`).
//! - stdio servers run in their own process group with piped stdin/stdout/stderr (never the
//!   server's fd 0/1); stderr goes to the log; stdout lines that are not JSON are logged and
//!   dropped. A server whose process exits is marked failed and restarted at the next turn
//!   that needs it. [`McpManager::shutdown`] kills every group.

pub mod cli;
mod client;
mod manager;
pub mod naming;

pub use crate::config::{McpServerConfig, McpTransportConfig};
pub use client::{CallError, ListedTool};
pub use manager::{LogObserver, McpManager, McpObserver, OfferedTool, Server, TurnTools};
