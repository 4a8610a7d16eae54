//! `initialize` and `shutdown`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use agent_server_schema::PROTOCOL_VERSION;
use agent_server_schema::auth::AuthStatus;
use agent_server_schema::lifecycle::{
    Framing, InitializeParams, InitializeResult, ServerCapabilities, ServerInfo,
};
use agent_server_schema::methods::{Initialize, Method, Shutdown};
use agent_server_schema::rpc::ErrorKind;

use tokio_util::sync::CancellationToken;

use super::App;
use crate::rpc::{MethodTable, RpcError, SHUTDOWN_GRACE};

/// The server's version, from Cargo.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Handshake state of the connection.
#[derive(Debug, Default)]
pub struct Lifecycle {
    other_request_seen: AtomicBool,
    initialized: AtomicBool,
    client_can_approve: AtomicBool,
    user_agent_suffix: Mutex<Option<String>>,
    /// Fires once the client's first request has been answered (or, when it is not
    /// `initialize`, admitted): notifications the server starts on its own wait for it.
    greeted: CancellationToken,
    /// Fires when the client's first request arrives (whatever it is).
    requested: CancellationToken,
}

impl Lifecycle {
    /// The `initialize`-first rule, applied in arrival order.
    pub fn admit(&self, method: &str) -> Result<(), RpcError> {
        self.requested.cancel();
        if method != Initialize::NAME {
            self.other_request_seen.store(true, Ordering::Release);
            self.greeted.cancel();
            return Ok(());
        }
        if self.initialized.load(Ordering::Acquire) {
            return Err(already_initialized());
        }
        if self.other_request_seen.load(Ordering::Acquire) {
            return Err(RpcError::new(
                ErrorKind::InitializeNotFirst,
                "initialize must be the first request; it is optional, so carry on without it or start a new server",
            ));
        }
        Ok(())
    }

    /// Fires once the client's first request has been answered (see the field).
    pub fn greeted(&self) -> CancellationToken {
        self.greeted.clone()
    }

    /// Fires when the client's first request arrives.
    pub fn requested(&self) -> CancellationToken {
        self.requested.clone()
    }

    /// Whether the client declared it answers approval requests.
    pub fn client_can_approve(&self) -> bool {
        self.client_can_approve.load(Ordering::Acquire)
    }

    /// The `User-Agent` of upstream requests.
    pub fn user_agent(&self) -> String {
        let base = format!(
            "agent-server/{VERSION} ({}; {})",
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        match &*self
            .user_agent_suffix
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(suffix) => format!("{base} {suffix}"),
            None => base,
        }
    }
}

fn already_initialized() -> RpcError {
    RpcError::new(
        ErrorKind::AlreadyInitialized,
        "the server is already initialized; send initialize only once",
    )
}

/// Registers the lifecycle methods.
pub fn register(table: &mut MethodTable<App>) {
    table.add::<Initialize, _, _>(
        |app: Arc<App>, params: InitializeParams, request| async move {
            let greeted = app.lifecycle.greeted();
            let reply_gate = request.reply_gate.clone();
            tokio::spawn(async move {
                reply_gate.opened().await;
                greeted.cancel();
            });
            initialize(&app, params).await
        },
    );
    table.add::<Shutdown, _, _>(|app: Arc<App>, _params, request| async move {
        tracing::info!("shutdown requested");
        // Running turns end first, each with its `turnCompleted`; then the reply; then exit.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, app.sessions.interrupt_all()).await;
        // The process stops once this reply is written.
        let stop = app.stop.clone();
        tokio::spawn(async move {
            request.reply_gate.opened().await;
            stop.cancel();
        });
        Ok(())
    });
}

async fn initialize(app: &App, params: InitializeParams) -> Result<InitializeResult, RpcError> {
    let version = params.protocol_version.unwrap_or(PROTOCOL_VERSION);
    if version != PROTOCOL_VERSION {
        let mut err = RpcError::new(
            ErrorKind::UnsupportedProtocolVersion,
            format!(
                "protocol version {version} is not supported; this server speaks version {PROTOCOL_VERSION}"
            ),
        );
        err.data.supported = Some(vec![PROTOCOL_VERSION]);
        return Err(err);
    }
    let lifecycle = &app.lifecycle;
    if lifecycle.initialized.swap(true, Ordering::AcqRel) {
        return Err(already_initialized());
    }
    lifecycle
        .client_can_approve
        .store(params.capabilities.approvals, Ordering::Release);
    if let Some(info) = params.client_info {
        let suffix = match info.version {
            Some(v) => format!("{}/{}", info.name, v),
            None => info.name,
        };
        *lifecycle
            .user_agent_suffix
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(suffix);
    }
    Ok(InitializeResult {
        protocol_version: PROTOCOL_VERSION,
        server_info: ServerInfo {
            name: "agent-server".into(),
            version: VERSION.into(),
        },
        capabilities: ServerCapabilities {
            approvals: params.capabilities.approvals,
            framing: app.peer.framing().unwrap_or(Framing::Ndjson),
        },
        user_agent: lifecycle.user_agent(),
        home: app.config.home.display().to_string(),
        auth: app
            .auth
            .status(false, false)
            .await
            .unwrap_or_else(|err| AuthStatus {
                error: Some(err.to_string()),
                ..AuthStatus::default()
            }),
    })
}
