//! The serve loop: read, classify, dispatch, answer. It knows no method names.
//!
//! Design (measured before choosing it): jsonrpsee provides the method table (`Methods`) and
//! typed callbacks, but has no stdio transport and wraps notifications in its subscription
//! envelope, so this module does the rest: one reader (this loop), one task per request,
//! replies rendered with the id exactly as it arrived (raw JSON text, so `"1"` ≠ `1` and large
//! integers survive), batches, cancellation, and back-pressure by pausing the reading of input.
//! Calling the registered callbacks directly (rather than jsonrpsee's `raw_json_request`) lets
//! each request carry its own context: its cancellation token, and the "reply sent" signal that
//! keeps a turn's first event behind the `session/submit` reply. jsonrpsee renders each reply
//! with `id: null`; the id as it arrived replaces that null in place (see `with_request_id`), so
//! no reply is parsed again. Measured with
//! `bench/run.py pipeline` (docs/PERFORMANCE.md): 10,000 `auth/status` requests written at once
//! are all answered, at 57,000–83,000 requests/s on 2 cores.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_server_schema::rpc::ErrorKind;
use futures::future::join_all;
use jsonrpsee::{ConnectionId, Extensions, MethodCallback, Methods};
use jsonrpsee_types::{Id, Params};
use serde_json::value::RawValue;
use tokio::io::AsyncRead;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::message::{Incoming, classify};
use super::peer::Peer;
use super::{RequestContext, RpcError};
use crate::gate::ReplyGate;
use crate::transport::{FramingChoice, Inbound, MessageReader, Outbox};

/// Requests that may run at once. Each is a small task; 1024 keeps a pipelined burst flowing
/// while bounding memory. When all are busy the reader stops reading (back-pressure).
const MAX_IN_FLIGHT: usize = 1024;

/// How long the reader waits for a free slot before answering `-32001 overloaded`: long enough
/// that a burst is absorbed by pausing, short enough that a stuck server says so.
const OVERLOAD_GRACE: Duration = Duration::from_secs(2);

/// What the application plugs into the generic loop.
#[async_trait::async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// Called for each request in arrival order, before it runs; an error is the reply.
    fn admit(&self, _method: &str) -> Result<(), RpcError> {
        Ok(())
    }

    /// A notification other than the cancellation ones, which the loop handles itself.
    fn notification(&self, _method: &str, _params: Option<&RawValue>) {}

    /// The input ended: let running work finish (the peer is closed already, so nothing can
    /// be asked of the client any more).
    async fn input_closed(&self) {}

    /// The connection is stopping: interrupt running work; it still reports its end.
    async fn stopping(&self) {}
}

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// How the framing is chosen.
    pub framing: FramingChoice,
    /// Cap on one incoming message.
    pub max_message_bytes: usize,
}

/// Why the loop returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The input reached its end (or failed).
    InputClosed,
    /// `stop` fired.
    Stopped,
}

/// The generic JSON-RPC server over one connection.
pub struct Server {
    methods: Methods,
    hooks: Arc<dyn Hooks>,
    peer: Arc<Peer>,
    in_flight: Arc<Mutex<HashMap<String, (u64, CancellationToken)>>>,
    permits: Arc<Semaphore>,
    tasks: TaskTracker,
    next_generation: std::sync::atomic::AtomicU64,
    overload_grace: Duration,
}

impl Server {
    /// A server answering with `methods`, writing through `peer`.
    pub fn new(methods: Methods, hooks: Arc<dyn Hooks>, peer: Arc<Peer>) -> Self {
        Self {
            methods,
            hooks,
            peer,
            in_flight: Arc::default(),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            tasks: TaskTracker::new(),
            next_generation: std::sync::atomic::AtomicU64::new(0),
            overload_grace: OVERLOAD_GRACE,
        }
    }

    /// Other limits than the defaults: requests running at once, and how long the reader
    /// waits for a free slot before answering `-32001 overloaded`.
    pub fn with_limits(mut self, max_in_flight: usize, overload_grace: Duration) -> Self {
        self.permits = Arc::new(Semaphore::new(max_in_flight));
        self.overload_grace = overload_grace;
        self
    }

    /// Reads and dispatches until the input ends or `stop` fires. The writer is started once
    /// the framing is known and returned, so the caller can wait for the final flush (it ends
    /// when the peer finishes writing).
    pub async fn serve<R>(
        &self,
        input: R,
        output: Box<dyn std::io::Write + Send>,
        outbox: Outbox,
        config: ServeConfig,
        stop: CancellationToken,
    ) -> (Ended, Option<JoinHandle<()>>)
    where
        R: AsyncRead + Unpin,
    {
        let mut reader = MessageReader::new(input, config.framing, config.max_message_bytes);
        let framing = tokio::select! {
            biased;
            () = stop.cancelled() => return (Ended::Stopped, None),
            framing = reader.framing() => framing,
        };
        let framing = match framing {
            Ok(Some(framing)) => framing,
            Ok(None) => return (Ended::InputClosed, None),
            Err(err) => {
                tracing::warn!(%err, "reading input failed");
                return (Ended::InputClosed, None);
            }
        };
        self.peer.set_framing(framing);
        let writer = outbox.start(output, framing);
        loop {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => return (Ended::Stopped, Some(writer)),
                next = reader.next() => next,
            };
            match next {
                Ok(Inbound::Message(bytes)) => self.handle_bytes(bytes).await,
                Ok(Inbound::TooLarge) => {
                    let err = RpcError::new(
                        ErrorKind::MessageTooLarge,
                        format!(
                            "message larger than max_message_bytes ({}) was discarded; send smaller messages or raise max_message_bytes",
                            config.max_message_bytes
                        ),
                    );
                    self.send(render_error("null", &err)).await;
                }
                Ok(Inbound::BadHeader(reason)) => {
                    let err = RpcError::new(
                        ErrorKind::InvalidRequest,
                        format!(
                            "bad Content-Length header block: {reason}; send `Content-Length: N` then a blank line"
                        ),
                    );
                    self.send(render_error("null", &err)).await;
                }
                Ok(Inbound::Eof) => return (Ended::InputClosed, Some(writer)),
                Err(err) => {
                    tracing::warn!(%err, "reading input failed");
                    return (Ended::InputClosed, Some(writer));
                }
            }
        }
    }

    /// Waits until every request task has finished.
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Cancels every running request (each still gets its one reply: `-32800`).
    pub fn cancel_all(&self) {
        for (_, token) in self.lock_in_flight().values() {
            token.cancel();
        }
    }

    async fn send(&self, message: String) {
        self.peer.send_raw(message).await;
    }

    fn lock_in_flight(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (u64, CancellationToken)>> {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn handle_bytes(&self, bytes: Vec<u8>) {
        let Ok(text) = String::from_utf8(bytes) else {
            let err = RpcError::new(
                ErrorKind::ParseError,
                "message is not valid UTF-8; send UTF-8 JSON",
            );
            return self.send(render_error("null", &err)).await;
        };
        let value: Box<RawValue> = match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(e) => {
                let err = RpcError::new(
                    ErrorKind::ParseError,
                    format!("invalid JSON: {e}; send one JSON-RPC message per line"),
                );
                return self.send(render_error("null", &err)).await;
            }
        };
        if value.get().starts_with('[') {
            return self.handle_batch(&value).await;
        }
        match classify(&value) {
            Incoming::Request { id, method, params } => {
                let Some(permit) = self.acquire().await else {
                    return self.send(render_error(id.get(), &overloaded())).await;
                };
                let call = self.prepare(id.get(), &method, params);
                let peer = Arc::clone(&self.peer);
                self.tasks.spawn(async move {
                    let (reply, gate) = call.run().await;
                    peer.send_raw(reply).await;
                    gate.open();
                    drop(permit);
                });
            }
            other => {
                if let Some(reply) = self.handle_non_request(other) {
                    self.send(reply).await;
                }
            }
        }
    }

    async fn handle_batch(&self, value: &RawValue) {
        let items: Vec<&RawValue> = match serde_json::from_str(value.get()) {
            Ok(items) => items,
            Err(e) => {
                let err = RpcError::new(ErrorKind::ParseError, format!("invalid JSON: {e}"));
                return self.send(render_error("null", &err)).await;
            }
        };
        if items.is_empty() {
            let err = RpcError::new(
                ErrorKind::InvalidRequest,
                "an empty batch is not a request; send at least one message",
            );
            return self.send(render_error("null", &err)).await;
        }
        let Some(permit) = self.acquire().await else {
            return self.send(render_error("null", &overloaded())).await;
        };
        // Admission and notifications happen now, in order; requests then run concurrently.
        let mut slots: Vec<BatchSlot> = Vec::with_capacity(items.len());
        for item in items {
            match classify(item) {
                Incoming::Request { id, method, params } => {
                    slots.push(BatchSlot::Call(self.prepare(id.get(), &method, params)))
                }
                other => {
                    if let Some(reply) = self.handle_non_request(other) {
                        slots.push(BatchSlot::Ready(reply));
                    }
                }
            }
        }
        if slots.is_empty() {
            return;
        }
        let peer = Arc::clone(&self.peer);
        self.tasks.spawn(async move {
            let mut gates = Vec::new();
            let replies = join_all(slots.into_iter().map(|slot| async move {
                match slot {
                    BatchSlot::Ready(reply) => (reply, None),
                    BatchSlot::Call(call) => {
                        let (reply, gate) = call.run().await;
                        (reply, Some(gate))
                    }
                }
            }))
            .await;
            let mut out = String::from("[");
            for (i, (reply, gate)) in replies.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&reply);
                gates.extend(gate);
            }
            out.push(']');
            peer.send_raw(out).await;
            for gate in gates {
                gate.open();
            }
            drop(permit);
        });
    }

    async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        let permits = Arc::clone(&self.permits);
        match tokio::time::timeout(self.overload_grace, permits.acquire_owned()).await {
            Ok(Ok(permit)) => Some(permit),
            _ => None,
        }
    }

    /// Notifications, responses and invalid messages; returns the reply, if one is due.
    fn handle_non_request(&self, incoming: Incoming<'_>) -> Option<String> {
        match incoming {
            Incoming::Notification { method, params } => {
                match method.as_str() {
                    "$/cancelRequest" => self.cancel_by_param(params, "id"),
                    "notifications/cancelled" => self.cancel_by_param(params, "requestId"),
                    _ => self.hooks.notification(&method, params),
                }
                None
            }
            Incoming::Response { id, outcome } => {
                if let Ok(id) = serde_json::from_str::<String>(id.get()) {
                    let outcome = match outcome {
                        Ok(result) => {
                            serde_json::from_str(result.get()).map_err(|_| serde_json::Value::Null)
                        }
                        Err(error) => Err(serde_json::from_str(error.get()).unwrap_or_default()),
                    };
                    self.peer.resolve(&id, outcome);
                }
                None
            }
            Incoming::Invalid { id, reason } => {
                let err = RpcError::new(
                    ErrorKind::InvalidRequest,
                    format!("invalid request: {reason}"),
                );
                Some(render_error(id.map_or("null", RawValue::get), &err))
            }
            Incoming::Request { .. } => None,
        }
    }

    fn cancel_by_param(&self, params: Option<&RawValue>, field: &str) {
        let Some(params) = params else { return };
        let Ok(map) = serde_json::from_str::<HashMap<String, serde_json::Value>>(params.get())
        else {
            return;
        };
        let Some(id) = map.get(field) else { return };
        let key = id_key(&id.to_string());
        if let Some((_, token)) = self.lock_in_flight().get(&key) {
            tracing::debug!(id = %key, "request cancelled by the client");
            token.cancel();
        }
    }

    /// Admits a request and builds the future that answers it.
    fn prepare(&self, id: &str, method: &str, params: Option<&RawValue>) -> PreparedCall {
        let key = id_key(id);
        let context = RequestContext::new();
        let admitted = self.hooks.admit(method);
        let callback = self.methods.method(method).cloned();
        let outcome = match (admitted, callback) {
            (Err(err), _) => Err(err),
            (Ok(()), None) => Err(RpcError::new(
                ErrorKind::MethodNotFound,
                format!(
                    "unknown method `{method}`; see the protocol documentation for the method list"
                ),
            )),
            (Ok(()), Some(callback)) => Ok(callback),
        };
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if outcome.is_ok() {
            self.lock_in_flight()
                .insert(key.clone(), (generation, context.cancel.clone()));
        }
        PreparedCall {
            id: id.to_string(),
            key,
            generation,
            params: params.map(|p| p.get().to_string()),
            callback: outcome,
            context,
            in_flight: Arc::clone(&self.in_flight),
        }
    }
}

enum BatchSlot {
    Ready(String),
    Call(PreparedCall),
}

/// A request ready to run: its callback (or the error that answers it) and its context.
struct PreparedCall {
    id: String,
    key: String,
    generation: u64,
    params: Option<String>,
    callback: Result<MethodCallback, RpcError>,
    context: RequestContext,
    in_flight: Arc<Mutex<HashMap<String, (u64, CancellationToken)>>>,
}

impl PreparedCall {
    /// Runs the call; returns the reply and the gate to fire once the reply is queued.
    async fn run(self) -> (String, ReplyGate) {
        let gate = self.context.reply_gate.clone();
        let callback = match self.callback {
            Ok(callback) => callback,
            Err(err) => return (render_error(&self.id, &err), gate),
        };
        let cancel = self.context.cancel.clone();
        let mut extensions = Extensions::new();
        extensions.insert(self.context);
        let params = Params::new(self.params.as_deref()).into_owned();
        let response = match callback {
            MethodCallback::Async(f) => {
                let fut = f(Id::Null, params, ConnectionId(0), usize::MAX, extensions);
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => None,
                    response = fut => Some(response),
                }
            }
            MethodCallback::Sync(f) => Some(f(Id::Null, params, usize::MAX, extensions)),
            MethodCallback::Subscription(_) | MethodCallback::Unsubscription(_) => {
                let err = RpcError::internal("subscriptions are not served over this connection");
                return (render_error(&self.id, &err), gate);
            }
        };
        {
            let mut map = self
                .in_flight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // A later request may reuse the id; only remove this request's own entry.
            if map
                .get(&self.key)
                .is_some_and(|(generation, _)| *generation == self.generation)
            {
                map.remove(&self.key);
            }
        }
        let reply = match response {
            None => render_error(
                &self.id,
                &RpcError::new(
                    ErrorKind::Cancelled,
                    "request cancelled by the client; send it again if still needed",
                ),
            ),
            Some(response) => with_request_id(&self.id, response.as_json().get()),
        };
        (reply, gate)
    }
}

fn overloaded() -> RpcError {
    RpcError::new(
        ErrorKind::Overloaded,
        "server overloaded: too much work is piled up; retry later",
    )
}

/// The canonical form of an id for the in-flight map (whitespace-insensitive, type-sensitive).
fn id_key(raw: &str) -> String {
    serde_json::from_str::<serde_json::Value>(raw)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| raw.to_string())
}

/// A reply carrying an error object.
pub fn render_error(id: &str, err: &RpcError) -> String {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{}}}",
        err.to_json()
    )
}

/// How jsonrpsee renders every reply to a request with `id: null`; what follows is `"result":…}`
/// or `"error":…}`.
const NULL_ID_HEAD: &str = "{\"jsonrpc\":\"2.0\",\"id\":null,";

/// The reply to request `id`: jsonrpsee's rendering, whose `null` id is swapped for the id as it
/// arrived (raw text). The callbacks are called with `id: null` because jsonrpsee's `Id` cannot
/// hold every id JSON allows (negative, fractional or very large numbers), and the client must
/// get its id back exactly. A head swap, not a parse: the result is never read again.
fn with_request_id(id: &str, rendered: &str) -> String {
    match rendered.strip_prefix(NULL_ID_HEAD) {
        Some(rest) => {
            let mut reply = String::with_capacity(NULL_ID_HEAD.len() + id.len() + rest.len());
            reply.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
            reply.push_str(id);
            reply.push(',');
            reply.push_str(rest);
            reply
        }
        None => {
            tracing::error!(
                rendered,
                "the method table rendered a reply of an unexpected shape"
            );
            render_error(
                id,
                &RpcError::internal(
                    "the method table rendered a reply of an unexpected shape; this is a bug, please report it",
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::MethodTable;
    use crate::transport::outbox;
    use agent_server_schema::auth::{AuthStatus, AuthStatusParams};
    use agent_server_schema::methods::AuthStatusRequest;
    use pretty_assertions::assert_eq;
    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    struct NoHooks;
    impl Hooks for NoHooks {}

    /// A method that waits until the test lets it finish.
    fn blocking_table(release: Arc<tokio::sync::Semaphore>) -> Methods {
        let mut table = MethodTable::new(release);
        table.add::<AuthStatusRequest, _, _>(
            |release: Arc<tokio::sync::Semaphore>, _: AuthStatusParams, _| async move {
                let _permit = release
                    .acquire()
                    .await
                    .map_err(|e| RpcError::internal(e.to_string()))?;
                Ok(AuthStatus::default())
            },
        );
        table.into_methods()
    }

    #[test]
    fn replies_carry_the_id_exactly_as_it_arrived() {
        for id in [
            "1",
            "-2.5e3",
            "123456789012345678901234567890",
            "\"\\u0041\"",
            "null",
        ] {
            assert_eq!(
                with_request_id(
                    id,
                    "{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":{\"a\":[1]}}"
                ),
                format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"a\":[1]}}}}")
            );
        }
        // A rendering of another shape is reported as a bug, never sent half-right.
        let odd: Value =
            serde_json::from_str(&with_request_id("7", "{\"id\":null,\"jsonrpc\":\"2.0\"}"))
                .unwrap();
        assert_eq!(
            (odd["id"].clone(), odd["error"]["code"].clone()),
            (json!(7), json!(-32603))
        );
    }

    #[tokio::test]
    async fn a_registered_method_answers_through_the_head_swap() {
        let release = Arc::new(tokio::sync::Semaphore::new(1));
        let server = Server::new(
            blocking_table(release),
            Arc::new(NoHooks),
            Peer::new(outbox().0),
        );
        let call = server.prepare("-1.5", "auth/status", None);
        let (reply, gate) = call.run().await;
        assert!(!gate.is_open());
        let parsed: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(parsed["result"]["requiresOpenaiAuth"], json!(false));
        assert!(
            reply.starts_with("{\"jsonrpc\":\"2.0\",\"id\":-1.5,\"result\":"),
            "{reply}"
        );
    }

    #[tokio::test]
    async fn work_that_stays_piled_up_is_answered_overloaded_and_reading_goes_on() {
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let (writer, outbox) = outbox();
        let peer = Peer::new(writer);
        let server = Server::new(
            blocking_table(Arc::clone(&release)),
            Arc::new(NoHooks),
            peer,
        )
        .with_limits(1, Duration::from_millis(50));
        let (mut client_in, server_in) = tokio::io::duplex(64 * 1024);
        // The output is a real pipe, as stdout is.
        let (pipe_out, pipe_in) = std::io::pipe().unwrap();
        let client_out =
            tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(pipe_out))
                .unwrap();
        let config = ServeConfig {
            framing: FramingChoice::Ndjson,
            max_message_bytes: 1 << 20,
        };
        let stop = CancellationToken::new();
        let serving = {
            let stop = stop.clone();
            async move {
                server
                    .serve(server_in, Box::new(pipe_in), outbox, config, stop)
                    .await
            }
        };
        let client = async {
            for id in 1..=3 {
                let line =
                    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"auth/status\"}}\n");
                client_in.write_all(line.as_bytes()).await.unwrap();
            }
            let mut lines = BufReader::new(client_out).lines();
            let mut replies = Vec::new();
            // The second and third requests find the only slot taken for longer than the grace.
            for _ in 0..2 {
                let reply: Value =
                    serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
                replies.push((
                    reply["id"].clone(),
                    reply["error"]["code"].clone(),
                    reply["error"]["data"]["kind"].clone(),
                ));
            }
            release.add_permits(1);
            let first: Value =
                serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            stop.cancel();
            (replies, first)
        };
        let ((replies, first), _) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(client, serving)
        })
        .await
        .unwrap();
        assert_eq!(
            replies,
            vec![
                (json!(2), json!(-32001), json!("overloaded")),
                (json!(3), json!(-32001), json!("overloaded"))
            ]
        );
        assert_eq!(
            (
                first["id"].clone(),
                first["result"]["requiresOpenaiAuth"].clone()
            ),
            (json!(1), json!(false))
        );
    }
}
