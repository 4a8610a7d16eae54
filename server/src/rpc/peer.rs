//! The server's side of talking to the client: notifications and server → client requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use agent_server_schema::methods::{CancelRequest, Method, Notification};
use agent_server_schema::rpc::CancelRequestParams;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::transport::{Framing, WriterHandle};

/// Why a server → client request got no usable answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PeerError {
    /// The connection is closed (stdin ended or stdout failed); nobody can answer.
    #[error("the client is gone")]
    Closed,
    /// The caller withdrew the request (e.g. the turn was interrupted).
    #[error("the request was withdrawn")]
    Withdrawn,
    /// No answer came in time.
    #[error("the client did not answer in time")]
    TimedOut,
    /// The client answered with an error object.
    #[error("the client answered with an error: {0}")]
    Rejected(Value),
    /// The client's result did not have the expected shape.
    #[error("the client's answer has the wrong shape: {0}")]
    BadResult(String),
}

type Pending = HashMap<String, oneshot::Sender<Result<Value, Value>>>;

/// Sends notifications and requests to the client through the single writer.
#[derive(Debug)]
pub struct Peer {
    writer: WriterHandle,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    closed: AtomicBool,
    framing: OnceLock<Framing>,
}

impl Peer {
    /// A peer that writes through `writer`.
    pub fn new(writer: WriterHandle) -> Arc<Self> {
        Arc::new(Self {
            writer,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            framing: OnceLock::new(),
        })
    }

    /// The framing in use, once the first message decided it.
    pub fn framing(&self) -> Option<Framing> {
        self.framing.get().copied()
    }

    pub(crate) fn set_framing(&self, framing: Framing) {
        let _ = self.framing.set(framing);
    }

    /// Queues a raw, already serialized message. Returns false when the output is closed.
    pub async fn send_raw(&self, message: String) -> bool {
        self.writer.send(message).await
    }

    /// Queues several raw messages to be written back to back.
    pub async fn send_many(&self, messages: Vec<String>) -> bool {
        self.writer.send_many(messages).await
    }

    /// Waits until everything queued so far (a reply, say) is written and flushed to the
    /// client. Returns false when the output is closed.
    pub async fn flushed(&self) -> bool {
        self.writer.flushed().await
    }

    /// Sends a notification.
    pub async fn notify<N: Notification>(&self, params: &N::Params) -> bool {
        self.notify_raw(N::NAME, params).await
    }

    /// Sends a notification by name; the message is serialized by the caller's task, not the
    /// writer's, so serialization cost spreads across tasks.
    pub async fn notify_raw(&self, method: &str, params: &impl Serialize) -> bool {
        match encode_notification(method, params, 256) {
            Ok(text) => self.writer.send(text).await,
            Err(err) => {
                tracing::error!(%err, method, "could not serialize a notification");
                false
            }
        }
    }

    /// Sends a request to the client and waits for its answer, until `cancel` fires (the
    /// request is then withdrawn with `$/cancelRequest`) or `timeout` passes.
    pub async fn request<M: Method>(
        &self,
        params: &M::Params,
        cancel: &CancellationToken,
        timeout: Option<Duration>,
    ) -> Result<M::Result, PeerError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PeerError::Closed);
        }
        let id = format!("srv-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let text = serde_json::to_string(&RequestOut {
            jsonrpc: "2.0",
            id: &id,
            method: M::NAME,
            params,
        })
        .map_err(|e| PeerError::BadResult(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id.clone(), tx);
        if !self.writer.send(text).await {
            self.lock().remove(&id);
            return Err(PeerError::Closed);
        }
        // If the caller drops this future (e.g. a turn ends while asking), withdraw the request.
        let mut guard = Withdraw {
            peer: self,
            id: Some(id.clone()),
        };
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            answer = rx => answer.map_err(|_| PeerError::Closed),
            () = cancel.cancelled() => Err(PeerError::Withdrawn),
            () = deadline => Err(PeerError::TimedOut),
        };
        // From here the outcome is known; a withdrawal is sent below (awaited, so it is on the
        // wire before anything the caller sends next), not by the drop guard.
        guard.id = None;
        let value = match outcome {
            Ok(Ok(value)) => value,
            Ok(Err(error)) => return Err(PeerError::Rejected(error)),
            Err(err) => {
                // Withdraw it so the client can take down its prompt; a late answer is ignored.
                if self.lock().remove(&id).is_some() && err != PeerError::Closed {
                    self.notify::<CancelRequest>(&CancelRequestParams {
                        id: Value::String(id),
                    })
                    .await;
                }
                return Err(err);
            }
        };
        serde_json::from_value(value).map_err(|e| PeerError::BadResult(e.to_string()))
    }

    /// Delivers the client's answer to a pending request; answers nobody waits for are ignored.
    pub(crate) fn resolve(&self, id: &str, outcome: Result<Value, Value>) {
        match self.lock().remove(id) {
            Some(tx) => {
                let _ = tx.send(outcome);
            }
            None => tracing::debug!(id, "ignoring an answer to no pending request"),
        }
    }

    /// Marks the connection closed: pending requests fail at once and new ones are refused.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.lock().clear();
    }

    /// Asks the writer to stop once everything queued so far is written and flushed.
    pub async fn finish_writing(&self) {
        self.writer.finish().await;
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.writer.is_closed()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave the map inconsistent, so recover it.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Serializes a notification into a buffer of `capacity` bytes to start with, so a caller that
/// knows the usual size (the stream of session events) allocates once per message.
pub fn encode_notification(
    method: &str,
    params: &impl Serialize,
    capacity: usize,
) -> serde_json::Result<String> {
    let mut buffer = Vec::with_capacity(capacity);
    serde_json::to_writer(
        &mut buffer,
        &NotificationOut {
            jsonrpc: "2.0",
            method,
            params,
        },
    )?;
    // serde_json writes only valid UTF-8.
    String::from_utf8(buffer).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

/// Withdraws a pending request whose waiter went away without an answer.
struct Withdraw<'a> {
    peer: &'a Peer,
    id: Option<String>,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        if self.peer.lock().remove(&id).is_none() || self.peer.closed.load(Ordering::Acquire) {
            return;
        }
        let writer = self.peer.writer.clone();
        let params = CancelRequestParams {
            id: Value::String(id),
        };
        let Ok(text) = encode_notification(CancelRequest::NAME, &params, 64) else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                writer.send(text).await;
            });
        }
    }
}

#[derive(Serialize)]
struct NotificationOut<'a, P> {
    jsonrpc: &'static str,
    method: &'a str,
    params: &'a P,
}

#[derive(Serialize)]
struct RequestOut<'a, P> {
    jsonrpc: &'static str,
    id: &'a str,
    method: &'a str,
    params: &'a P,
}
