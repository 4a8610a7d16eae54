//! The model client: providers, auth-aware routing, SSE streaming, retries.
//!
//! [`ModelClient::stream`] runs one model call against a [`Provider`] (see
//! [`resolve_provider`]) and yields [`ResponseEvent`]s; credentials come through the
//! [`auth::UpstreamAuth`] trait, which the auth domain implements.

pub mod auth;
mod call;
pub mod catalog;
mod chat_request;
pub mod chat_stream;
mod client;
mod connect;
mod error;
mod event;
mod failure;
pub mod fixture;
pub mod item;
mod provider;
pub mod rate_limits;
pub mod remote_models;
mod request;
mod retry;
pub mod sse;
pub mod sse_decode;

pub use catalog::{ModelCatalog, ToolShapes, UnknownModel, context_window};
pub use client::{ClientSettings, DEFAULT_BACKOFF_BASE, ModelClient};
pub use error::ModelError;
pub use event::{ResponseEvent, TokenUsage};
pub use failure::Failure;
pub use item::{CallKind, ContentItem, ResponseItem, Role};
pub use provider::{
    DEFAULT_REQUEST_MAX_RETRIES, DEFAULT_STREAM_IDLE_TIMEOUT, DEFAULT_STREAM_MAX_RETRIES,
    OPENAI_PROVIDER_ID, Provider, default_provider_needs_openai_auth, resolve_provider,
    resolve_provider_with_env,
};
pub use rate_limits::RateLimitTracker;
pub use request::ModelRequest;

#[cfg(test)]
mod testkit;
