//! The one file that speaks rmcp: connect to a server (child process or Streamable HTTP), run
//! `initialize` and `tools/list`, call tools. Everything it returns is our own type, so an
//! upgrade of the SDK touches this file only.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use agent_server_schema::mcp::{McpToolCallResult, McpToolInfo};
use futures::StreamExt;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientCapabilities, ClientInfo, ClientRequest,
    Implementation, ServerResult,
};
use rmcp::service::{PeerRequestOptions, RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ServiceExt, service::Peer};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStderr, ChildStdout, Command};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;

use crate::config::McpTransportConfig;
use crate::process_group::ProcessGroup;

/// How long closing waits for the killed processes of a stdio server to be reaped.
const REAP_GRACE: Duration = Duration::from_secs(2);

/// The longest line read from a server's stdout or stderr; longer ones are dropped with a log
/// line. A tool result of this size is already far past what a model can take.
const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// Bytes buffered between the stdout filter and the MCP client: a few messages' worth, so the
/// filter waits for the client rather than reading ahead without bound.
const FILTER_BUFFER_BYTES: usize = 256 * 1024;

/// A tool as the server lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedTool {
    /// Name, description, input schema and annotations, as sent.
    pub info: McpToolInfo,
    /// `annotations.readOnlyHint` is `true`.
    pub read_only: bool,
}

/// Why a call got no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer within the tool timeout (the server was sent a cancellation).
    #[error("the MCP server did not answer within {}s (tool_timeout_sec)", .0.as_secs_f64())]
    Timeout(Duration),
    /// The connection ended: the process exited or the HTTP endpoint went away.
    #[error("the MCP server's connection closed during the call (the server crashed or exited)")]
    Closed,
    /// The server answered with a JSON-RPC error.
    #[error("the MCP server answered with an error: {0}")]
    Server(String),
    /// The turn was interrupted while the call ran (the server was sent a cancellation).
    #[error("the call was interrupted")]
    Interrupted,
}

/// A live connection to one MCP server.
pub struct Connection {
    service: RunningService<RoleClient, ClientInfo>,
    /// The child process, for stdio servers.
    process: Option<Arc<ProcessGroup>>,
    /// Fires when the connection ends on its own (the child exited).
    closed: CancellationToken,
}

impl Connection {
    /// Spawns or connects, then runs `initialize`; `tools/list` is [`Connection::list_tools`].
    /// The caller bounds the whole start with the startup timeout (dropping the future kills a
    /// spawned process).
    pub async fn connect(
        server: &str,
        transport: &McpTransportConfig,
        http: &reqwest::Client,
    ) -> Result<Self, String> {
        match transport {
            McpTransportConfig::Stdio {
                command,
                args,
                env,
                cwd,
            } => connect_stdio(server, command, args, env, cwd.as_deref()).await,
            McpTransportConfig::Http {
                url,
                bearer_token_env_var,
                headers,
            } => connect_http(url, bearer_token_env_var.as_deref(), headers, http).await,
        }
    }

    /// Every tool of the server (following pagination).
    pub async fn list_tools(&self) -> Result<Vec<ListedTool>, String> {
        let tools = self
            .service
            .peer()
            .list_all_tools()
            .await
            .map_err(|e| format!("tools/list failed: {}", describe(&e)))?;
        Ok(tools
            .into_iter()
            .map(|tool| {
                let read_only = tool
                    .annotations
                    .as_ref()
                    .and_then(|a| a.read_only_hint)
                    .unwrap_or(false);
                ListedTool {
                    info: McpToolInfo {
                        name: tool.name.to_string(),
                        description: tool.description.map(|d| d.to_string()),
                        input_schema: Value::Object((*tool.input_schema).clone()),
                        annotations: tool.annotations.and_then(|a| serde_json::to_value(a).ok()),
                    },
                    read_only,
                }
            })
            .collect())
    }

    /// Calls a tool, bounded by `timeout`; `cancel` sends the server a cancellation and returns
    /// at once.
    pub async fn call(
        &self,
        tool: &str,
        arguments: Option<serde_json::Map<String, Value>>,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<McpToolCallResult, CallError> {
        let peer: &Peer<RoleClient> = self.service.peer();
        let request = ClientRequest::CallToolRequest(CallToolRequest {
            method: Default::default(),
            params: CallToolRequestParams {
                meta: None,
                name: tool.to_string().into(),
                arguments,
                task: None,
            },
            extensions: Default::default(),
        });
        let options = PeerRequestOptions {
            timeout: Some(timeout),
            meta: None,
        };
        let handle = peer
            .send_cancellable_request(request, options)
            .await
            .map_err(|e| map_error(e, timeout))?;
        let (id, canceller) = (handle.id.clone(), handle.peer.clone());
        let response = tokio::select! {
            response = handle.await_response() => response,
            () = cancel.cancelled() => {
                let notification = rmcp::model::CancelledNotification {
                    params: rmcp::model::CancelledNotificationParam {
                        request_id: id,
                        reason: Some("the user interrupted the turn".into()),
                    },
                    method: rmcp::model::CancelledNotificationMethod,
                    extensions: Default::default(),
                };
                let _ = canceller.send_notification(notification.into()).await;
                return Err(CallError::Interrupted);
            }
        };
        match response.map_err(|e| map_error(e, timeout))? {
            ServerResult::CallToolResult(result) => Ok(McpToolCallResult {
                content: result
                    .content
                    .iter()
                    .filter_map(|c| serde_json::to_value(c).ok())
                    .collect(),
                structured_content: result.structured_content,
                is_error: result.is_error.unwrap_or(false),
            }),
            _ => Err(CallError::Server(
                "the answer to tools/call was not a tool result".into(),
            )),
        }
    }

    /// Fires when the connection ends on its own (a stdio server's process exited).
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// The process group of a stdio server.
    pub fn process(&self) -> Option<Arc<ProcessGroup>> {
        self.process.clone()
    }

    /// Ends the connection: the client stops, a stdio server's whole process group is killed.
    pub async fn close(mut self) {
        if let Some(process) = &self.process {
            process.kill();
        }
        let _ = self
            .service
            .close_with_timeout(Duration::from_millis(200))
            .await;
        if let Some(process) = self.process.take()
            && !process.wait_gone(REAP_GRACE).await
        {
            tracing::warn!(
                pgid = ?process.id(),
                "processes of a killed MCP server are still not reaped"
            );
        }
    }
}

fn client_info() -> ClientInfo {
    ClientInfo {
        meta: None,
        protocol_version: Default::default(),
        capabilities: ClientCapabilities::default(),
        client_info: Implementation {
            name: "agent-server".into(),
            title: None,
            version: env!("CARGO_PKG_VERSION").into(),
            description: None,
            icons: None,
            website_url: None,
        },
    }
}

fn map_error(err: ServiceError, timeout: Duration) -> CallError {
    match err {
        ServiceError::Timeout { .. } => CallError::Timeout(timeout),
        ServiceError::TransportClosed | ServiceError::TransportSend(_) => CallError::Closed,
        ServiceError::Cancelled { .. } => CallError::Interrupted,
        other => CallError::Server(describe(&other)),
    }
}

fn describe(err: &ServiceError) -> String {
    match err {
        ServiceError::McpError(data) => format!("{} (code {})", data.message, data.code.0),
        other => other.to_string(),
    }
}

async fn connect_stdio(
    server: &str,
    command: &str,
    args: &[String],
    env: &std::collections::BTreeMap<String, String>,
    cwd: Option<&std::path::Path>,
) -> Result<Connection, String> {
    let mut cmd = Command::new(command);
    cmd.args(args)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that the server and everything it starts can be killed
        // together.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| {
        format!("cannot start `{command}`: {e}; check `command` (and `cwd`) of this MCP server")
    })?;
    let process = Arc::new(ProcessGroup::new(child.id()));
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("the MCP server's pipes could not be opened".into());
    };
    tokio::spawn(log_stderr(server.to_string(), stderr));
    let (filtered, client_end) = tokio::io::duplex(FILTER_BUFFER_BYTES);
    tokio::spawn(filter_stdout(server.to_string(), stdout, filtered));
    let closed = CancellationToken::new();
    let watch = closed.clone();
    let name = server.to_string();
    tokio::spawn(async move {
        let status = child.wait().await;
        tracing::info!(server = %name, ?status, "the MCP server process exited");
        watch.cancel();
    });
    let service = tokio::select! {
        service = client_info().serve((client_end, stdin)) => service,
        () = closed.cancelled() => {
            process.kill();
            return Err("the MCP server exited before it answered initialize".into());
        }
    };
    let service = service.map_err(|e| {
        process.kill();
        format!("initialize failed: {e}")
    })?;
    Ok(Connection {
        service,
        process: Some(process),
        closed,
    })
}

/// Even when this process is killed outright (SIGKILL, no chance to clean up), the server's
/// process gets SIGKILL from the kernel: what it started itself may outlive it, but it does not.
#[cfg(target_os = "linux")]
#[allow(
    unsafe_code,
    reason = "pre_exec, prctl(2) and getppid(2) have no safe wrappers; the closure calls only those"
)]
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and calls only the async-signal-safe
    // prctl(2) and getppid(2), touching no memory of the parent and allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The server may have exited between the fork and the prctl (stdin closed right
            // after `initialize` while a server was starting): the death signal will then never
            // come, so do not become an orphan that outlives it.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

async fn connect_http(
    url: &str,
    bearer_token_env_var: Option<&str>,
    headers: &std::collections::BTreeMap<String, String>,
    http: &reqwest::Client,
) -> Result<Connection, String> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(var) = bearer_token_env_var {
        let token = std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
            format!("the environment variable {var} (bearer_token_env_var) is not set; set it to the server's token")
        })?;
        config = config.auth_header(token);
    }
    let client = if headers.is_empty() {
        http.clone()
    } else {
        with_headers(headers)?
    };
    let transport = StreamableHttpClientTransport::with_client(client, config);
    let service = client_info()
        .serve(transport)
        .await
        .map_err(|e| format!("initialize failed: {e}"))?;
    Ok(Connection {
        service,
        process: None,
        closed: CancellationToken::new(),
    })
}

/// A client that sends `headers` with every request (the shared one cannot carry them).
fn with_headers(
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<reqwest::Client, String> {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("header name `{name}` cannot be sent: {e}"))?;
        let value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|e| format!("the value of header `{name}` cannot be sent: {e}"))?;
        map.insert(name, value);
    }
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .default_headers(map)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Logs the server's stderr, line by line.
async fn log_stderr(server: String, stderr: ChildStderr) {
    let mut lines = FramedRead::new(stderr, LinesCodec::new_with_max_length(MAX_LINE_BYTES));
    while let Some(line) = lines.next().await {
        match line {
            Ok(line) => tracing::info!(server = %server, "mcp server stderr: {line}"),
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                tracing::warn!(server = %server, "mcp server stderr: an over-long line dropped");
            }
            Err(LinesCodecError::Io(_)) => break,
        }
    }
}

/// Passes on the lines of the server's stdout that are JSON, and logs and drops the others: a
/// server that prints a banner or a stray log line to stdout keeps working.
async fn filter_stdout(server: String, stdout: ChildStdout, mut out: tokio::io::DuplexStream) {
    let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE_BYTES));
    while let Some(line) = lines.next().await {
        let line = match line {
            Ok(line) => line,
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                tracing::warn!(server = %server, "mcp server stdout: an over-long line dropped");
                continue;
            }
            Err(LinesCodecError::Io(err)) => {
                tracing::warn!(server = %server, %err, "mcp server stdout unreadable");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(&line).is_err() {
            let shown: String = line.chars().take(200).collect();
            tracing::warn!(server = %server, "mcp server stdout: ignoring a line that is not JSON-RPC: {shown}");
            continue;
        }
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        if out.write_all(&bytes).await.is_err() {
            break;
        }
    }
}
