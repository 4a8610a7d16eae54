//! The method table: one small file per area turning params into domain calls and results
//! back. This is the only place that knows method names.

mod auth;
mod lifecycle;
mod mcp;
mod models;
mod session;
pub mod sessions_cli;

use std::sync::Arc;

use jsonrpsee::Methods;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthManager, AuthSettings};
use crate::config::Config;
use crate::mcp::McpManager;
use crate::model::auth::UpstreamAuth;
use crate::model::rate_limits::UsageEndpoint;
use crate::rpc::{Hooks, MethodTable, Peer, RpcError};
use crate::session::Sessions;

pub use lifecycle::{Lifecycle, VERSION};
pub use mcp::start_configured as start_configured_mcp;

/// Everything the handlers share.
pub struct App {
    /// The merged configuration.
    pub config: Config,
    /// The connection to the client.
    pub peer: Arc<Peer>,
    /// Handshake state.
    pub lifecycle: Arc<Lifecycle>,
    /// Fires when the process should stop serving (`shutdown` answered, or `exit`).
    pub stop: CancellationToken,
    /// Credentials.
    pub auth: Arc<AuthManager>,
    /// The open sessions.
    pub sessions: Arc<Sessions>,
    /// The ChatGPT usage endpoint, for `auth/rateLimits`.
    pub usage: UsageEndpoint,
    /// The MCP servers.
    pub mcp: Arc<McpManager>,
}

/// Builds the one HTTP client of the process (rustls only), shared by model calls, token
/// refresh and login. It has no whole-request timeout, which would cut long streams: the model
/// client times each read instead (`stream_idle_timeout_ms`).
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
}

impl App {
    /// The shared state of one connection.
    pub fn new(
        config: Config,
        peer: Arc<Peer>,
        stop: CancellationToken,
        http: reqwest::Client,
    ) -> Arc<Self> {
        let lifecycle = Arc::new(Lifecycle::default());
        let requires_openai_auth = crate::model::default_provider_needs_openai_auth(&config);
        let observer = auth::PeerAuthObserver::spawn(Arc::clone(&peer));
        let auth = AuthManager::new(
            AuthSettings::from_config(&config, requires_openai_auth),
            http.clone(),
            observer,
        );
        let link = Arc::new(session::PeerLink {
            peer: Arc::clone(&peer),
            lifecycle: Arc::clone(&lifecycle),
        });
        let upstream: Arc<dyn UpstreamAuth> = auth.clone();
        let usage = UsageEndpoint {
            http: http.clone(),
            auth: Arc::clone(&upstream),
            chatgpt_base_url: config.chatgpt_base_url.clone(),
            originator: config.originator.clone(),
        };
        let mcp_observer = mcp::PeerMcpObserver::spawn(Arc::clone(&peer), lifecycle.greeted());
        let mcp = McpManager::new(&config.mcp_servers, http.clone(), mcp_observer);
        let sessions = Arc::new(Sessions::new(
            config.clone(),
            Some(upstream),
            http,
            link,
            Arc::clone(&mcp),
        ));
        Arc::new(Self {
            config,
            peer,
            lifecycle,
            stop,
            auth,
            sessions,
            usage,
            mcp,
        })
    }
}

/// Builds the method table.
pub fn methods(app: Arc<App>) -> Methods {
    let mut table = MethodTable::new(app);
    lifecycle::register(&mut table);
    auth::register(&mut table);
    session::register(&mut table);
    mcp::register(&mut table);
    models::register(&mut table);
    table.into_methods()
}

/// The hooks the generic loop calls: admission (the `initialize`-first rule) and notifications.
pub struct AppHooks(pub Arc<App>);

#[async_trait::async_trait]
impl Hooks for AppHooks {
    fn admit(&self, method: &str) -> Result<(), RpcError> {
        self.0.lifecycle.admit(method)
    }

    fn notification(&self, method: &str, _params: Option<&RawValue>) {
        match method {
            "exit" => {
                tracing::info!("exit notification: stopping");
                self.0.stop.cancel();
            }
            other => tracing::debug!(method = other, "ignoring an unknown notification"),
        }
    }

    async fn input_closed(&self) {
        // Turns run to their end; approvals they ask for now are declined by policy.
        self.0.sessions.wait_all_idle().await;
    }

    async fn stopping(&self) {
        self.0.sessions.interrupt_all().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_server_schema::methods::{Direction, request_names};
    use pretty_assertions::assert_eq;

    struct NoEnv;
    impl crate::config::Env for NoEnv {
        fn var(&self, _name: &str) -> Option<String> {
            None
        }
    }

    #[tokio::test]
    async fn the_table_serves_every_client_request_of_the_schema_once() {
        let home = tempfile::tempdir().unwrap();
        let config = Config::load(home.path().to_path_buf(), &[], &NoEnv).unwrap();
        let (writer, _outbox) = crate::transport::outbox();
        let app = App::new(
            config,
            Peer::new(writer),
            CancellationToken::new(),
            reqwest::Client::new(),
        );
        let table = methods(app);
        let mut served: Vec<&str> = table.method_names().collect();
        served.sort_unstable();
        let mut expected = request_names(Direction::ClientToServer);
        expected.sort_unstable();
        assert_eq!(served, expected);
    }
}
