//! Wire types of the agent-server JSON-RPC protocol, and the JSON Schema exporter: only the
//! schema, no behaviour and no async runtime. The `server` crate depends on this one, never the
//! reverse. Field names are camelCase on the wire; every field is documented because the docs
//! become the JSON Schema's descriptions and the generated clients' doc comments.

pub mod auth;
pub mod export;
pub mod lifecycle;
pub mod mcp;
pub mod methods;
pub mod models;
pub mod rpc;
pub mod session;

/// The protocol version this crate describes.
pub const PROTOCOL_VERSION: u32 = 1;
