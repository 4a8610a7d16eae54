//! `mcp/list`, and the observer that turns MCP server status changes into `mcp/serverStatus`.

use std::sync::Arc;
use std::time::Duration;

use agent_server_schema::mcp::{McpListParams, McpListResult, McpServerStatusNotification};
use agent_server_schema::methods::{McpList, McpServerStatusChanged};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::App;
use crate::mcp::McpObserver;
use crate::rpc::{MethodTable, Peer};

/// Registers the MCP methods.
pub fn register(table: &mut MethodTable<App>) {
    table.add::<McpList, _, _>(|app: Arc<App>, params: McpListParams, _| async move {
        if let Some(id) = &params.session_id {
            app.sessions.get(id)?;
        }
        Ok(McpListResult {
            servers: app.mcp.list(params.session_id.as_deref()),
        })
    });
}

/// How long after the reply to the client's first request is flushed the configured servers
/// start: time for the client to read it before their processes compete for the CPU.
pub const START_AFTER_FIRST_REPLY: Duration = Duration::from_millis(20);

/// When the configured servers start if no request has arrived by then.
pub const START_WITHOUT_REQUEST: Duration = Duration::from_millis(100);

/// Starts the configured MCP servers [`START_AFTER_FIRST_REPLY`] after the reply to the
/// client's first request is written and flushed (so `initialize` is answered and read before
/// their processes compete for the CPU), or [`START_WITHOUT_REQUEST`] after the connection
/// starts when no request has arrived by then.
pub fn start_configured(app: &App) {
    let greeted = app.lifecycle.greeted();
    let requested = app.lifecycle.requested();
    let peer = Arc::clone(&app.peer);
    app.mcp.start_configured_when(async move {
        let answered = async {
            greeted.cancelled().await;
            peer.flushed().await;
            tokio::time::sleep(START_AFTER_FIRST_REPLY).await;
        };
        let silent = async {
            tokio::time::sleep(START_WITHOUT_REQUEST).await;
            if requested.is_cancelled() {
                // A request is being answered: its reply comes first.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = answered => {}
            () = silent => {}
        }
    });
}

/// Sends `mcp/serverStatus` notifications in the order of the changes, none before the
/// client's first request has been answered (a server may start before `initialize` arrives,
/// when the client is slow to send it, and its reply comes first).
pub struct PeerMcpObserver {
    tx: mpsc::UnboundedSender<McpServerStatusNotification>,
}

impl PeerMcpObserver {
    /// Starts the forwarding task; it holds notifications until `greeted` fires.
    pub fn spawn(peer: Arc<Peer>, greeted: CancellationToken) -> Arc<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel::<McpServerStatusNotification>();
        tokio::spawn(async move {
            greeted.cancelled().await;
            while let Some(change) = rx.recv().await {
                peer.notify::<McpServerStatusChanged>(&change).await;
            }
        });
        Arc::new(Self { tx })
    }
}

impl McpObserver for PeerMcpObserver {
    fn status_changed(&self, change: McpServerStatusNotification) {
        let _ = self.tx.send(change);
    }
}
