//! The Responses API client: providers, auth-aware routing, SSE streaming, retries.

pub mod auth;
