//! MCP servers for the tests: the reference server `@modelcontextprotocol/server-everything`
//! and our own fault server (`tests/mcp-servers/`, installed by `scripts/install-test-deps`),
//! `config.toml` tables that run them, a Streamable HTTP instance, and a way to find the
//! processes a server left behind.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::DEFAULT_TIMEOUT;

/// `tests/mcp-servers`.
pub fn mcp_servers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mcp-servers")
}

fn installed(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-deps (npm ci in tests/mcp-servers)",
        path.display()
    );
    path
}

/// The reference server's entry point.
pub fn everything_js() -> PathBuf {
    installed(
        mcp_servers_dir()
            .join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
    )
}

/// Our fault server (see its header for the modes).
pub fn fault_js() -> PathBuf {
    // Its imports resolve from node_modules beside it.
    installed(mcp_servers_dir().join("node_modules/@modelcontextprotocol/sdk"));
    mcp_servers_dir().join("fault-server.mjs")
}

/// A `[mcp_servers.<name>]` table running `node <script> <args…>`, plus `extra` TOML lines.
pub fn node_server_table(
    name: &str,
    script: &std::path::Path,
    args: &[&str],
    extra: &str,
) -> String {
    let mut all = vec![format!("{:?}", script.display().to_string())];
    all.extend(args.iter().map(|a| format!("{a:?}")));
    format!(
        "[mcp_servers.{name}]\ncommand = \"node\"\nargs = [{}]\n{extra}\n",
        all.join(", ")
    )
}

/// The reference server as a configured stdio server.
pub fn everything_table(name: &str, extra: &str) -> String {
    node_server_table(name, &everything_js(), &["stdio"], extra)
}

/// The fault server in `mode` as a configured stdio server.
pub fn fault_table(name: &str, mode: &str, extra: &str) -> String {
    node_server_table(name, &fault_js(), &["--mode", mode], extra)
}

/// The fault server serving Streamable HTTP on a loopback port; killed when dropped.
pub struct HttpFaultServer {
    _child: Child,
    /// The endpoint, `http://127.0.0.1:<port>/mcp`.
    pub url: String,
}

impl HttpFaultServer {
    /// Starts it and waits for its `listening <url>` line.
    pub async fn start() -> Self {
        let mut child = Command::new("node")
            .arg(fault_js())
            .arg("--http")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the HTTP fault server: {e}"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("the HTTP fault server has no stdout"));
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(DEFAULT_TIMEOUT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the HTTP fault server did not say where it listens"))
            .ok()
            .flatten()
            .unwrap_or_default();
        let url = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first line of the HTTP fault server: {line:?}"))
            .to_owned();
        Self { _child: child, url }
    }
}

/// The live (not zombie) processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                })
                .unwrap_or(true);
            !zombie
                && String::from_utf8_lossy(&cmdline)
                    .split('\0')
                    .any(|arg| arg == marker)
        })
        .collect()
}

/// Waits (bounded) until no live process has `marker` in its command line; panics naming the
/// ones left.
pub async fn wait_no_processes_with(marker: &str) {
    let deadline = tokio::time::Instant::now() + DEFAULT_TIMEOUT;
    loop {
        let left = processes_with(marker);
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes of an MCP server outlived the agent server: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
