//! One client connection from start to end: the serve loop, its writer, and both ways it ends.
//!
//! [`Connection::run`] serves until the input ends or the stop token fires, then
//! [`Connection::shutdown`] takes the path that fits:
//!
//! ```text
//! input ends (stdin EOF)                    stop (`shutdown` replied, `exit`, SIGTERM/SIGINT)
//! ---------------------------------------   -----------------------------------------------
//! reader stops                              reader stops at once
//! peer closed: pending approval requests    Hooks::stopping: running work is interrupted,
//!   end as "client unavailable" (the          each turn still sends its `turnCompleted`
//!   policy declines them)                     (at most SHUTDOWN_GRACE)
//! requests in flight finish and are         requests still running are cancelled, each
//!   answered (drain)                          answered `-32800` (at most REQUEST_GRACE)
//! Hooks::input_closed: running work         -
//!   finishes (turns run to their end)
//! writer writes what is queued, flushes     writer writes what is queued, flushes
//!   and stops (at most WRITER_GRACE)          and stops (at most WRITER_GRACE)
//! exit 0                                    exit 0
//! ```
//!
//! The process's own part (signals, exit status) stays in `main.rs`.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::Methods;
use tokio::io::AsyncRead;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::peer::Peer;
use super::serve::{Ended, Hooks, ServeConfig, Server};
use crate::transport::{Outbox, outbox};

/// How long a stop waits for interrupted work to wind down (each turn's `turnCompleted`): the
/// contract gives the whole stop 2 s, and interrupted turns end in milliseconds.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// How long a stop waits for cancelled requests to be answered.
const REQUEST_GRACE: Duration = Duration::from_millis(200);

/// How long the writer gets to write and flush what is queued once the connection ends; a
/// client that stopped reading cannot hold the process up longer.
const WRITER_GRACE: Duration = Duration::from_millis(400);

/// One connection: its peer and stop token exist before the method table, which needs them.
pub struct Connection {
    peer: Arc<Peer>,
    outbox: Outbox,
    stop: CancellationToken,
    config: ServeConfig,
}

impl Connection {
    /// A connection that will serve with `config`.
    pub fn new(config: ServeConfig) -> Self {
        let (writer, outbox) = outbox();
        Self {
            peer: Peer::new(writer),
            outbox,
            stop: CancellationToken::new(),
            config,
        }
    }

    /// The peer: notifications and server → client requests.
    pub fn peer(&self) -> Arc<Peer> {
        Arc::clone(&self.peer)
    }

    /// The token that stops the connection when it fires.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Serves `input`/`output` with `methods` until the input ends or the stop token fires,
    /// then shuts down; returns how serving ended.
    pub async fn run<R: AsyncRead + Unpin>(
        self,
        methods: Methods,
        hooks: Arc<dyn Hooks>,
        input: R,
        output: Box<dyn Write + Send>,
    ) -> Ended {
        let server = Server::new(methods, Arc::clone(&hooks), Arc::clone(&self.peer));
        let (ended, writer) = server
            .serve(input, output, self.outbox, self.config, self.stop.clone())
            .await;
        shutdown(&server, &self.peer, hooks.as_ref(), ended, writer).await;
        ended
    }
}

/// Ends the connection the way `ended` asks (see the module doc for both timelines).
pub async fn shutdown(
    server: &Server,
    peer: &Peer,
    hooks: &dyn Hooks,
    ended: Ended,
    writer: Option<JoinHandle<()>>,
) {
    match ended {
        Ended::InputClosed => {
            tracing::info!("input closed: finishing running work");
            peer.close();
            server.drain().await;
            hooks.input_closed().await;
        }
        Ended::Stopped => {
            tracing::info!("stopping");
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, hooks.stopping()).await;
            server.cancel_all();
            let _ = tokio::time::timeout(REQUEST_GRACE, server.drain()).await;
        }
    }
    let flushed = async {
        peer.finish_writing().await;
        if let Some(writer) = writer {
            let _ = writer.await;
        }
    };
    if tokio::time::timeout(WRITER_GRACE, flushed).await.is_err() {
        tracing::warn!("the client did not read the last output in time; exiting without it");
    }
}
