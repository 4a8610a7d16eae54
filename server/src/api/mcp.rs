//! `mcp/list`, and the observer that turns MCP server status changes into `mcp/serverStatus`.

use std::sync::Arc;

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

/// Sends `mcp/serverStatus` notifications in the order of the changes, none before the
/// client's first request has been answered (servers start before `initialize` arrives, and
/// its reply comes first).
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
