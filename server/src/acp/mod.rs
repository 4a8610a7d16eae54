//! The ACP profile, `agent-server acp`: the same agent served over the Agent Client Protocol.
//!
//! A second front door beside `api/`: the official SDK (`agent-client-protocol`, its v1 agent
//! side) owns the connection; the handlers here translate ACP requests into calls on the same
//! session and auth layers the native protocol uses, and [`link::AcpLink`] turns session events
//! into `session/update`s. Nothing here runs a turn: turns are the session layer's.

mod handlers;
mod lifecycle;
mod link;
mod prompt;
mod session;
mod settings;
mod stored;
mod updates;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agent_server_schema::auth::AuthStatus;
use agent_server_schema::rpc::ErrorKind;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthManager, AuthObserver, AuthSettings};
use crate::config::Config;
use crate::mcp::{LogObserver, McpManager};
use crate::model::auth::UpstreamAuth;
use crate::session::{SessionError, Sessions, SteerError};
use crate::transport::{self, Framing};

use link::AcpLink;
use settings::Settings;

/// The ACP method name of session updates (the hot notification).
const SESSION_UPDATE: &str = "session/update";

/// How long a signal's stop waits for interrupted turns to end; the native protocol's figure.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// Everything the ACP handlers share.
pub(crate) struct Agent {
    config: Config,
    auth: Arc<AuthManager>,
    sessions: Arc<Sessions>,
    link: Arc<AcpLink>,
    logins: Arc<LoginWaiters>,
    /// The MCP servers of the configuration and of each session.
    mcp: Arc<McpManager>,
    /// The settings each open session applies to its next prompt.
    settings: Mutex<HashMap<String, Settings>>,
    /// Requests answered from their own task (prompts, logins), awaited before exiting.
    tasks: TaskTracker,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Agent {
    fn new(config: Config, http: reqwest::Client, writer: transport::WriterHandle) -> Arc<Self> {
        let requires_openai_auth = crate::model::resolve_provider(&config, &config.model_provider)
            .map(|p| p.requires_auth && p.bearer.is_none())
            .unwrap_or(true);
        let logins = Arc::new(LoginWaiters::default());
        let auth = AuthManager::new(
            AuthSettings::from_config(&config, requires_openai_auth),
            http.clone(),
            Arc::clone(&logins) as Arc<dyn AuthObserver>,
        );
        let link = Arc::new(AcpLink::new(writer));
        let upstream: Arc<dyn UpstreamAuth> = auth.clone();
        // ACP has no MCP status notification: server status changes are logged.
        let mcp = McpManager::new(&config.mcp_servers, http.clone(), Arc::new(LogObserver));
        let sessions = Arc::new(Sessions::new(
            config.clone(),
            Some(upstream),
            http,
            Arc::clone(&link) as Arc<dyn crate::session::ClientLink>,
            Arc::clone(&mcp),
        ));
        Arc::new(Self {
            config,
            auth,
            sessions,
            link,
            logins,
            mcp,
            settings: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
        })
    }

    fn settings(&self, session_id: &str) -> Result<Settings, agent_client_protocol::Error> {
        lock(&self.settings)
            .get(session_id)
            .cloned()
            .ok_or_else(|| session_error(SessionError::NotFound(session_id.to_string())))
    }
}

/// Waits for the end of browser logins (the auth layer reports them to its observer).
#[derive(Default)]
struct LoginWaiters {
    waiting: Mutex<HashMap<String, oneshot::Sender<Result<(), String>>>>,
}

impl LoginWaiters {
    fn wait(&self, login_id: &str) -> oneshot::Receiver<Result<(), String>> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(login_id.to_string(), tx);
        rx
    }
}

impl AuthObserver for LoginWaiters {
    fn status_changed(&self, _status: AuthStatus) {}

    fn login_completed(&self, login_id: &str, success: bool, error: Option<String>) {
        if let Some(tx) = lock(&self.waiting).remove(login_id) {
            let outcome = if success {
                Ok(())
            } else {
                Err(error.unwrap_or_else(|| "the login did not complete".into()))
            };
            let _ = tx.send(outcome);
        }
    }
}

/// An ACP error with the contract's code and `data.kind` for `kind`.
pub(crate) fn error(kind: ErrorKind, message: impl Into<String>) -> agent_client_protocol::Error {
    agent_client_protocol::Error::new(kind.code(), message.into())
        .data(serde_json::json!({ "kind": kind }))
}

/// A session layer failure as its ACP error (the codes and kinds of section 4).
pub(crate) fn session_error(err: SessionError) -> agent_client_protocol::Error {
    let message = err.to_string();
    match err {
        SessionError::NotFound(_) | SessionError::NotLoaded(_) => {
            error(ErrorKind::SessionNotFound, message)
        }
        SessionError::InUse { pid, .. } => {
            let mut data = serde_json::json!({ "kind": ErrorKind::SessionInUse });
            if let Some(pid) = pid {
                data["pid"] = pid.into();
            }
            agent_client_protocol::Error::new(ErrorKind::SessionInUse.code(), message).data(data)
        }
        SessionError::Store(_) => error(ErrorKind::StoreUnavailable, message),
        SessionError::TurnNotFound(_) => error(ErrorKind::TurnNotFound, message),
        SessionError::AuthRequired(_) => error(ErrorKind::AuthRequired, message),
        // ACP has no steering; kept for completeness of the mapping.
        SessionError::Steer(SteerError::NoRunningTurn) => error(ErrorKind::NoRunningTurn, message),
        SessionError::Steer(SteerError::TurnMismatch { .. }) => {
            error(ErrorKind::TurnMismatch, message)
        }
        SessionError::InvalidParams {
            field, expected, ..
        } => {
            agent_client_protocol::Error::new(ErrorKind::InvalidParams.code(), message).data(
                serde_json::json!({"kind": ErrorKind::InvalidParams, "field": field, "expected": expected}),
            )
        }
    }
}

/// Serves ACP on stdin/stdout until the input ends (running turns finish first) or `stop`
/// fires (running turns are interrupted).
pub async fn serve(config: Config, http: reqwest::Client, stop: CancellationToken) {
    let (writer, outbox) = transport::outbox();
    let writer_task = outbox.start(Box::new(std::io::stdout()), Framing::Ndjson);
    let max_message_bytes = config.max_message_bytes;
    let agent = Agent::new(config, http, writer.clone());
    // In the background: neither `initialize` nor anything else waits for them.
    agent.mcp.start_configured();
    let (sdk_end, our_end) = wire::channel();
    let (from_sdk, to_sdk) = our_end.into_parts();
    let reader = tokio::spawn(wire::read_into(
        tokio::io::stdin(),
        max_message_bytes,
        to_sdk,
        writer.clone(),
    ));
    let forwarder = tokio::spawn(wire::write_from(from_sdk, writer.clone()));
    let result = handlers::builder(Arc::clone(&agent))
        .connect_with(sdk_end, async |connection| {
            agent.link.attach(&connection);
            tokio::select! {
                () = connection.incoming_closed() => {
                    tracing::info!("input closed: finishing running turns");
                    agent.sessions.wait_all_idle().await;
                }
                () = stop.cancelled() => {
                    tracing::info!("stopping");
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, agent.sessions.interrupt_all()).await;
                }
            }
            agent.tasks.close();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, agent.tasks.wait()).await;
            Ok(())
        })
        .await;
    if let Err(err) = result {
        tracing::warn!(%err, "the ACP connection ended with an error");
    }
    reader.abort();
    let _ = tokio::time::timeout(Duration::from_millis(400), forwarder).await;
    writer.finish().await;
    let _ = tokio::time::timeout(Duration::from_millis(400), writer_task).await;
    // Every MCP server (and whatever it started) goes with the agent, however it stopped.
    agent.mcp.shutdown().await;
}
