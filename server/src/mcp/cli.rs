//! `agent-server mcp list`: starts the configured servers, waits for them, and prints their
//! status and tools for people (or as JSON), then stops them.

use std::io::Write;
use std::sync::Arc;

use agent_server_schema::mcp::{McpListResult, McpServerInfo, McpServerStatus, McpTransportKind};

use super::{LogObserver, McpManager};
use crate::config::Config;

/// Runs `mcp list`. Returns whether every server started.
pub async fn list(
    config: &Config,
    http: reqwest::Client,
    json: bool,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let manager = McpManager::new(&config.mcp_servers, http, Arc::new(LogObserver));
    manager.start_configured();
    manager.wait_started(None).await;
    let servers = manager.list(None);
    manager.shutdown().await;
    if json {
        let text = serde_json::to_string_pretty(&McpListResult {
            servers: servers.clone(),
        })
        .map_err(std::io::Error::other)?;
        writeln!(out, "{text}")?;
    } else {
        write_table(&servers, config, out)?;
    }
    Ok(servers.iter().all(|s| s.status == McpServerStatus::Ready))
}

fn write_table(
    servers: &[McpServerInfo],
    config: &Config,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if servers.is_empty() {
        let disabled = config.mcp_servers.values().filter(|s| !s.enabled).count();
        writeln!(
            out,
            "No MCP servers are enabled in {}{}.",
            config.home.join("config.toml").display(),
            if disabled > 0 {
                format!(" ({disabled} disabled)")
            } else {
                String::new()
            }
        )?;
        writeln!(
            out,
            "Add one as a [mcp_servers.<name>] table with `command` (stdio) or `url` (Streamable HTTP)."
        )?;
        return Ok(());
    }
    for server in servers {
        let transport = match server.transport {
            McpTransportKind::Stdio => "stdio",
            McpTransportKind::Http => "http",
        };
        let status = match server.status {
            McpServerStatus::Starting => "starting",
            McpServerStatus::Ready => "ready",
            McpServerStatus::Failed => "failed",
            McpServerStatus::Stopped => "stopped",
        };
        match &server.error {
            Some(error) => writeln!(out, "{}  ({transport})  {status}: {error}", server.name)?,
            None => writeln!(
                out,
                "{}  ({transport})  {status}, {} tool{}",
                server.name,
                server.tools.len(),
                if server.tools.len() == 1 { "" } else { "s" }
            )?,
        }
        for tool in &server.tools {
            let description = tool
                .description
                .as_deref()
                .and_then(|d| d.lines().next())
                .unwrap_or("");
            writeln!(out, "    {:<28} {description}", tool.name)?;
        }
    }
    Ok(())
}
