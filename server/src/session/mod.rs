//! Sessions and turns: the per-session queue, the agent loop, and the event stream.
//!
//! The domain reaches the client only through [`ClientLink`] (events, approvals), which the
//! api layer implements with the rpc peer, and the model only through [`ModelLink`], which
//! [`ModelClient`] implements. Tests drive whole turns through in-memory implementations of
//! both (`testing`), without a process, a pipe or an HTTP server.
//!
//! # The turn engine and its seams
//!
//! A turn ([`turn`]) loops: assemble the request, stream the model's answer, run the tool calls
//! it asked for, and go again until the model answers without calls. The places to extend:
//!
//! - **Model-facing history**: `History` (`history.rs`) holds every item the model has seen
//!   as typed [`crate::model::ResponseItem`]s, serde both ways so it can be stored and loaded
//!   whole. It changes only through `push_own` (user input, tool outputs) and
//!   `record_response` (a completed response's items).
//! - **Next request's input**: `turn::next_request` builds every [`ModelRequest`]; what it sends
//!   comes from `History::next_input` (whole history, or what is new since the stored
//!   previous response).
//! - **Stream bookkeeping**: `items::ItemTracker` turns a response's item events into client
//!   events and collects the response's items and tool calls; it is pure and unit-tested.
//! - **Completed items**: every `itemCompleted` of a turn, from the model stream or from a
//!   tool, goes out through `turn::Reporter::completed`; that is where a completed item can be
//!   recorded (persisted) before the client hears of it.
//! - **Tool dispatch**: `turn::Turn::run_tools` hands each call, with its kind (function or
//!   custom), to [`crate::tools::dispatch`], which picks the tool by name; the call's output
//!   item is made to match its kind (`PendingCall::output`).

mod compact;
pub mod context;
mod durable;
mod events;
mod history;
mod input;
mod instructions;
mod items;
mod manager;
mod record;
mod recovery;
mod settings;
#[cfg(test)]
pub(crate) mod testing;
mod turn;
#[cfg(test)]
mod turn_tests;
mod worker;

use agent_server_schema::session::{RequestApprovalParams, SessionEventNotification};
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

use crate::model::{ModelClient, ModelError, ModelRequest, ResponseEvent};

pub use crate::tools::ApprovalReply;
pub use manager::{SessionError, Sessions, info};
pub use worker::SteerError;

/// How sessions reach the client.
#[async_trait::async_trait]
pub trait ClientLink: Send + Sync {
    /// Sends events, in order. Called in `seq` order for each session; returns false when the
    /// client is gone.
    async fn send_events(&self, events: &[SessionEventNotification]) -> bool;

    /// Asks the client to approve. [`ApprovalReply::Withdrawn`] when `cancel` fired while
    /// waiting (the request is withdrawn on the wire); [`ApprovalReply::Unavailable`] when the
    /// client cannot answer: it declared no `capabilities.approvals`, it is gone, or it
    /// answered with an error. The tools then decline by policy, per the contract.
    async fn request_approval(
        &self,
        params: RequestApprovalParams,
        cancel: &CancellationToken,
    ) -> ApprovalReply;

    /// Whether the client declared it answers approval requests.
    fn can_approve(&self) -> bool;

    /// The `User-Agent` to send upstream (it names the client once `initialize` told us).
    fn user_agent(&self) -> String;
}

/// The events of one model call: see [`ModelClient::stream`] for their order.
pub type ModelStream = BoxStream<'static, Result<ResponseEvent, ModelError>>;

/// How sessions reach the model.
#[async_trait::async_trait]
pub trait ModelLink: Send + Sync {
    /// Whether requests are stored upstream, so that a request may send only what is new
    /// since the previous response.
    async fn store_enabled(&self) -> bool;

    /// Runs one model call with its retries; the stream ends after `Completed`, `Incomplete`
    /// or one error, and `Retrying` voids what the failed attempt sent.
    fn stream(&self, request: ModelRequest, cancel: CancellationToken) -> ModelStream;
}

#[async_trait::async_trait]
impl ModelLink for ModelClient {
    async fn store_enabled(&self) -> bool {
        ModelClient::store_enabled(self).await
    }

    fn stream(&self, request: ModelRequest, cancel: CancellationToken) -> ModelStream {
        ModelClient::stream(self, request, cancel)
    }
}
