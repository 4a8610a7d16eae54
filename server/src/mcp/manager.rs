//! The MCP servers of the process: started in the background, their status tracked and
//! reported, waited for at a turn's first model request, restarted after a crash, stopped with
//! their session or the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use agent_server_schema::mcp::{
    McpServerInfo, McpServerStatus, McpServerStatusNotification, McpToolCallResult,
    McpTransportKind,
};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::client::{CallError, Connection, ListedTool};
use super::naming::qualified_names;
use crate::config::{McpServerConfig, McpTransportConfig};

/// How a server's status changes reach the client; the api layer implements it.
pub trait McpObserver: Send + Sync {
    /// A server's status changed (`mcp/serverStatus`).
    fn status_changed(&self, change: McpServerStatusNotification);
}

/// An observer that only logs, for the CLI.
pub struct LogObserver;

impl McpObserver for LogObserver {
    fn status_changed(&self, change: McpServerStatusNotification) {
        tracing::info!(server = %change.name, status = ?change.status, error = ?change.error, "mcp server status");
    }
}

/// Extra time given to a start beyond its own timeout before a waiting turn gives up on it, so
/// the start's own timeout is what normally ends the wait (with its clearer error).
const WAIT_MARGIN: Duration = Duration::from_millis(500);

struct State {
    status: McpServerStatus,
    error: Option<String>,
    tools: Vec<ListedTool>,
    connection: Option<Arc<Connection>>,
    /// The server was ready and its process died: start it again when a turn needs it.
    crashed: bool,
    /// Bumped by every start, so that a late end of an old start or connection is ignored.
    generation: u64,
}

/// One MCP server, configured or of one session.
pub struct Server {
    name: String,
    session_id: Option<String>,
    config: McpServerConfig,
    state: Mutex<State>,
    settled: watch::Sender<bool>,
}

impl Server {
    fn new(name: String, session_id: Option<String>, config: McpServerConfig) -> Arc<Self> {
        Arc::new(Self {
            name,
            session_id,
            config,
            state: Mutex::new(State {
                status: McpServerStatus::Starting,
                error: None,
                tools: Vec::new(),
                connection: None,
                crashed: false,
                generation: 0,
            }),
            settled: watch::channel(false).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn transport_kind(&self) -> McpTransportKind {
        match self.config.transport {
            McpTransportConfig::Stdio { .. } => McpTransportKind::Stdio,
            McpTransportConfig::Http { .. } => McpTransportKind::Http,
        }
    }

    fn offers(&self, tool: &str) -> bool {
        let allowed = self
            .config
            .enabled_tools
            .as_ref()
            .is_none_or(|list| list.iter().any(|t| t == tool));
        allowed && !self.config.disabled_tools.iter().any(|t| t == tool)
    }

    fn notification(&self, state: &State) -> McpServerStatusNotification {
        McpServerStatusNotification {
            name: self.name.clone(),
            session_id: self.session_id.clone(),
            status: state.status,
            error: state.error.clone(),
            tool_count: (state.status == McpServerStatus::Ready)
                .then(|| u32::try_from(state.tools.len()).unwrap_or(u32::MAX)),
        }
    }

    /// Waits until the server is no longer starting, at most `limit`.
    async fn wait_settled(&self, limit: Duration) {
        let mut rx = self.settled.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|settled| *settled)).await;
    }

    fn info(&self) -> McpServerInfo {
        let state = self.lock();
        McpServerInfo {
            name: self.name.clone(),
            transport: self.transport_kind(),
            status: state.status,
            error: state.error.clone(),
            tools: state.tools.iter().map(|t| t.info.clone()).collect(),
        }
    }
}

/// A tool offered to the model in one turn.
#[derive(Clone)]
pub struct OfferedTool {
    /// The server that has it.
    pub server: Arc<Server>,
    /// The tool's own name on that server.
    pub tool: String,
    /// Annotated `readOnlyHint: true`.
    pub read_only: bool,
    /// How long a call may take.
    pub timeout: Duration,
}

/// The MCP tools of one turn: their function-tool specs and what each name calls.
#[derive(Clone, Default)]
pub struct TurnTools {
    /// Function-tool specs for the Responses `tools` array.
    pub specs: Vec<Value>,
    /// Qualified name → tool.
    pub by_name: HashMap<String, OfferedTool>,
}

/// Every MCP server of the process.
pub struct McpManager {
    http: reqwest::Client,
    observer: Arc<dyn McpObserver>,
    configured: Vec<Arc<Server>>,
    sessions: Mutex<HashMap<String, Vec<Arc<Server>>>>,
    stopping: CancellationToken,
}

impl McpManager {
    /// A manager of the enabled servers of `configured`; nothing starts until
    /// [`McpManager::start_configured`].
    pub fn new(
        configured: &BTreeMap<String, McpServerConfig>,
        http: reqwest::Client,
        observer: Arc<dyn McpObserver>,
    ) -> Arc<Self> {
        let configured = configured
            .iter()
            .filter(|(_, config)| config.enabled)
            .map(|(name, config)| Server::new(name.clone(), None, config.clone()))
            .collect();
        Arc::new(Self {
            http,
            observer,
            configured,
            sessions: Mutex::new(HashMap::new()),
            stopping: CancellationToken::new(),
        })
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Vec<Arc<Server>>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts every configured server in the background; returns at once.
    pub fn start_configured(self: &Arc<Self>) {
        for server in &self.configured {
            self.start(server);
        }
    }

    /// Starts every configured server in the background once `when` completes, unless the
    /// manager is shut down first; returns at once. Until then they show as `starting`.
    pub fn start_configured_when(
        self: &Arc<Self>,
        when: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        if self.configured.is_empty() {
            return;
        }
        let manager = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                () = when => manager.start_configured(),
                () = manager.stopping.cancelled() => {}
            }
        });
    }

    /// Starts a session's own servers in the background; returns at once.
    pub fn start_session(
        self: &Arc<Self>,
        session_id: &str,
        servers: Vec<(String, McpServerConfig)>,
    ) {
        let servers: Vec<Arc<Server>> = servers
            .into_iter()
            .filter(|(_, config)| config.enabled)
            .map(|(name, config)| Server::new(name, Some(session_id.to_string()), config))
            .collect();
        for server in &servers {
            self.start(server);
        }
        if !servers.is_empty() {
            self.sessions().insert(session_id.to_string(), servers);
        }
    }

    /// The servers a session uses: the configured ones, except those its own replace, then its own.
    fn servers_of(&self, session_id: Option<&str>) -> Vec<Arc<Server>> {
        let own = session_id
            .and_then(|id| self.sessions().get(id).cloned())
            .unwrap_or_default();
        let mut all: Vec<Arc<Server>> = self
            .configured
            .iter()
            .filter(|c| !own.iter().any(|o| o.name == c.name))
            .cloned()
            .collect();
        all.extend(own);
        all
    }

    /// `mcp/list`: the servers of a session (or the configured ones), with their tools.
    pub fn list(&self, session_id: Option<&str>) -> Vec<McpServerInfo> {
        self.servers_of(session_id)
            .iter()
            .map(|s| s.info())
            .collect()
    }

    /// Waits until no server of the session (or no configured one) is starting; each is waited
    /// for at most its own startup timeout.
    pub async fn wait_started(&self, session_id: Option<&str>) {
        let servers = self.servers_of(session_id);
        futures::future::join_all(
            servers
                .iter()
                .map(|s| s.wait_settled(s.config.startup_timeout + WAIT_MARGIN)),
        )
        .await;
    }

    /// The tools of a turn's first model request: restarts crashed stdio servers, waits for
    /// those still starting (each at most its startup timeout), and offers the tools of the
    /// ready ones. Failed servers are left out (their status says why).
    pub async fn turn_tools(self: &Arc<Self>, session_id: &str) -> TurnTools {
        let servers = self.servers_of(Some(session_id));
        for server in &servers {
            let restart = {
                let state = server.lock();
                state.crashed && state.status == McpServerStatus::Failed
            };
            if restart {
                tracing::info!(server = %server.name, "restarting a crashed MCP server");
                self.start(server);
            }
        }
        self.wait_started(Some(session_id)).await;
        let mut offered: Vec<(Arc<Server>, ListedTool)> = Vec::new();
        for server in &servers {
            let state = server.lock();
            if state.status == McpServerStatus::Ready {
                offered.extend(state.tools.iter().map(|t| (Arc::clone(server), t.clone())));
            } else {
                tracing::warn!(server = %server.name, status = ?state.status, error = ?state.error, "MCP server left out of this turn");
            }
        }
        let pairs: Vec<(&str, &str)> = offered
            .iter()
            .map(|(s, t)| (s.name.as_str(), t.info.name.as_str()))
            .collect();
        let names = qualified_names(&pairs);
        let mut tools = TurnTools::default();
        for (name, (server, tool)) in names.into_iter().zip(offered) {
            tools.specs.push(function_spec(&name, &server.name, &tool));
            tools.by_name.insert(
                name,
                OfferedTool {
                    timeout: server.config.tool_timeout,
                    server,
                    tool: tool.info.name,
                    read_only: tool.read_only,
                },
            );
        }
        tools
    }

    /// Calls a tool. A closed connection marks the server crashed (restarted at the next turn).
    pub async fn call(
        &self,
        offered: &OfferedTool,
        arguments: Option<serde_json::Map<String, Value>>,
        cancel: &CancellationToken,
    ) -> Result<McpToolCallResult, String> {
        let server = &offered.server;
        let (connection, generation) = {
            let state = server.lock();
            match (&state.connection, state.status) {
                (Some(c), McpServerStatus::Ready) => (Arc::clone(c), state.generation),
                _ => {
                    return Err(format!(
                        "the MCP server `{}` is not running ({}){}",
                        server.name,
                        status_word(state.status),
                        state
                            .error
                            .as_ref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ));
                }
            }
        };
        let result = connection
            .call(&offered.tool, arguments, offered.timeout, cancel)
            .await;
        match result {
            Ok(result) => Ok(result),
            Err(CallError::Closed) => {
                self.crashed(
                    server,
                    generation,
                    "the server's connection closed during a call",
                );
                Err(CallError::Closed.to_string())
            }
            Err(err) => Err(err.to_string()),
        }
    }

    /// Stops and forgets a session's own servers.
    pub async fn stop_session(&self, session_id: &str) {
        let servers = self.sessions().remove(session_id).unwrap_or_default();
        futures::future::join_all(servers.iter().map(|s| self.stop(s))).await;
    }

    /// Stops every server and kills every stdio server's process group; later starts are refused.
    pub async fn shutdown(&self) {
        self.stopping.cancel();
        let mut all = self.configured.clone();
        all.extend(self.sessions().drain().flat_map(|(_, servers)| servers));
        futures::future::join_all(all.iter().map(|s| self.stop(s))).await;
    }

    async fn stop(&self, server: &Arc<Server>) {
        let connection = {
            let mut state = server.lock();
            state.generation += 1;
            state.crashed = false;
            let connection = state.connection.take();
            if state.status != McpServerStatus::Stopped {
                state.status = McpServerStatus::Stopped;
                state.error = None;
                state.tools.clear();
                self.observer.status_changed(server.notification(&state));
            }
            connection
        };
        server.settled.send_replace(true);
        if let Some(connection) = connection {
            close(connection).await;
        }
    }

    /// Applies `change` if `generation` is still current and `change` says it changed
    /// something; then reports the new status.
    fn set(
        &self,
        server: &Server,
        generation: u64,
        change: impl FnOnce(&mut State) -> bool,
    ) -> bool {
        let mut state = server.lock();
        if state.generation != generation || !change(&mut state) {
            return false;
        }
        self.observer.status_changed(server.notification(&state));
        drop(state);
        server.settled.send_replace(true);
        true
    }

    /// Marks a ready server crashed (if `generation` is still current) and drops its connection.
    fn crashed(&self, server: &Server, generation: u64, why: &str) {
        let mut dropped = None;
        let is_stdio = server.transport_kind() == McpTransportKind::Stdio;
        self.set(server, generation, |state| {
            if state.status != McpServerStatus::Ready {
                return false;
            }
            dropped = state.connection.take();
            state.status = McpServerStatus::Failed;
            state.error = Some(if is_stdio {
                format!("{why}; it is restarted at the next turn that needs it")
            } else {
                why.to_string()
            });
            state.crashed = is_stdio;
            state.tools.clear();
            true
        });
        if let Some(connection) = dropped {
            tokio::spawn(close(connection));
        }
    }

    fn start(self: &Arc<Self>, server: &Arc<Server>) {
        if self.stopping.is_cancelled() {
            return;
        }
        let generation = {
            let mut state = server.lock();
            state.generation += 1;
            state.status = McpServerStatus::Starting;
            state.error = None;
            state.crashed = false;
            state.tools.clear();
            self.observer.status_changed(server.notification(&state));
            state.generation
        };
        server.settled.send_replace(false);
        tokio::spawn(Arc::clone(self).run_start(Arc::clone(server), generation));
    }

    async fn run_start(self: Arc<Self>, server: Arc<Server>, generation: u64) {
        let timeout = server.config.startup_timeout;
        let attempt = async {
            let connection =
                Connection::connect(&server.name, &server.config.transport, &self.http).await?;
            let tools = connection.list_tools().await?;
            Ok::<_, String>((connection, tools))
        };
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(timeout, attempt) => outcome,
            () = self.stopping.cancelled() => return,
        };
        let (connection, tools) = match outcome {
            Ok(Ok(ready)) => ready,
            Ok(Err(error)) => return self.start_failed(&server, generation, error),
            Err(_) => {
                let error = format!(
                    "it did not finish initialize and tools/list within {}s \
                     (startup_timeout_sec); it was stopped",
                    timeout.as_secs_f64()
                );
                return self.start_failed(&server, generation, error);
            }
        };
        let tools: Vec<ListedTool> = tools
            .into_iter()
            .filter(|t| server.offers(&t.info.name))
            .collect();
        let connection = Arc::new(connection);
        let closed = connection.closed();
        let ready = Arc::clone(&connection);
        if !self.set(&server, generation, move |state| {
            state.status = McpServerStatus::Ready;
            state.tools = tools;
            state.connection = Some(ready);
            true
        }) {
            close(connection).await;
            return;
        }
        tracing::info!(server = %server.name, "MCP server ready");
        tokio::select! {
            () = closed.cancelled() => {
                self.crashed(&server, generation, "the server process exited");
            }
            () = self.stopping.cancelled() => {}
        }
    }

    fn start_failed(&self, server: &Server, generation: u64, error: String) {
        tracing::warn!(server = %server.name, %error, "MCP server failed to start");
        self.set(server, generation, |state| {
            state.status = McpServerStatus::Failed;
            state.error = Some(error);
            true
        });
    }
}

/// Closes a connection once no call holds it any more (calls hold their own `Arc`).
async fn close(connection: Arc<Connection>) {
    if let Some(process) = connection.process() {
        process.kill();
    }
    if let Ok(connection) = Arc::try_unwrap(connection) {
        connection.close().await;
    }
}

fn status_word(status: McpServerStatus) -> &'static str {
    match status {
        McpServerStatus::Starting => "still starting",
        McpServerStatus::Ready => "ready",
        McpServerStatus::Failed => "failed",
        McpServerStatus::Stopped => "stopped",
    }
}

/// The Responses function-tool spec of an MCP tool.
fn function_spec(name: &str, server: &str, tool: &ListedTool) -> Value {
    let description = tool.info.description.clone().unwrap_or_else(|| {
        format!(
            "The `{}` tool of the MCP server `{server}`.",
            tool.info.name
        )
    });
    let mut parameters = tool.info.input_schema.clone();
    if let Some(object) = parameters.as_object_mut() {
        // The Responses API wants an object schema with `properties`, even an empty one.
        object
            .entry("type")
            .or_insert_with(|| Value::String("object".into()));
        object
            .entry("properties")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    serde_json::json!({
        "type": "function",
        "name": name,
        "description": description,
        "strict": false,
        "parameters": parameters,
    })
}
