//! The method table: one small file per area turning params into domain calls and results
//! back. This is the only place that knows method names.

mod lifecycle;

use std::sync::Arc;

use jsonrpsee::Methods;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::rpc::{Hooks, MethodTable, Peer, RpcError};

pub use lifecycle::Lifecycle;

/// Everything the handlers share.
pub struct App {
    /// The merged configuration.
    pub config: Config,
    /// The connection to the client.
    pub peer: Arc<Peer>,
    /// Handshake state.
    pub lifecycle: Lifecycle,
    /// Fires when the process should stop serving (`shutdown` answered, or `exit`).
    pub stop: CancellationToken,
}

impl App {
    /// The shared state of one connection.
    pub fn new(config: Config, peer: Arc<Peer>, stop: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            config,
            peer,
            lifecycle: Lifecycle::default(),
            stop,
        })
    }
}

/// Builds the method table.
pub fn methods(app: Arc<App>) -> Methods {
    let mut table = MethodTable::new(app);
    lifecycle::register(&mut table);
    table.into_methods()
}

/// The hooks the generic loop calls: admission (the `initialize`-first rule) and notifications.
pub struct AppHooks(pub Arc<App>);

impl Hooks for AppHooks {
    fn admit(&self, method: &str) -> Result<(), RpcError> {
        self.0.lifecycle.admit(method)
    }

    fn notification(&self, method: &str, _params: Option<&RawValue>) {
        match method {
            "exit" => {
                tracing::info!("exit notification: stopping");
                self.0.lifecycle.exit_now();
                self.0.stop.cancel();
            }
            other => tracing::debug!(method = other, "ignoring an unknown notification"),
        }
    }
}
