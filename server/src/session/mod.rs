//! Sessions and turns: the per-session queue, the agent loop, and the event stream.
//!
//! The domain reaches the client only through [`ClientLink`], which the api layer implements
//! with the rpc peer; tests can drive sessions with an in-memory implementation.

pub mod context;
mod events;
mod input;
mod instructions;
mod manager;
mod turn;
mod worker;

use agent_server_schema::session::{
    ApprovalDecision, RequestApprovalParams, SessionEventNotification,
};
use tokio_util::sync::CancellationToken;

pub use events::EventSink;
pub use input::{InputError, to_user_message};
pub use instructions::BASE_INSTRUCTIONS;
pub use manager::{SessionError, Sessions, info};
pub use worker::Session;

/// How sessions reach the client.
#[async_trait::async_trait]
pub trait ClientLink: Send + Sync {
    /// Sends events, in order. Called in `seq` order for each session; returns false when the
    /// client is gone.
    async fn send_events(&self, events: &[SessionEventNotification]) -> bool;

    /// Asks the client to approve; `None` when the client cannot answer (no capability, gone,
    /// or the request was withdrawn because `cancel` fired).
    async fn request_approval(
        &self,
        params: RequestApprovalParams,
        cancel: &CancellationToken,
    ) -> Option<ApprovalDecision>;

    /// Whether the client declared it answers approval requests.
    fn can_approve(&self) -> bool;

    /// The `User-Agent` to send upstream (it names the client once `initialize` told us).
    fn user_agent(&self) -> String;
}
