//! agent-server: a headless AI coding agent served over JSON-RPC 2.0 on stdin/stdout.
//!
//! Data flows one way through the modules, top to bottom; no module imports one above it:
//!
//! ```text
//! api/               the method table: params in, domain calls, results out
//! session/ auth/     the domain: sessions and turns; credentials, refresh, login
//! store/             durable sessions (SQLite): the only module that knows there is a database
//! model/ tools/      the Responses client; shell, patch, plan, approvals, sandbox
//! rpc/               generic JSON-RPC 2.0 (knows no method names)
//! transport/ config  framing and stdio; configuration
//! ```
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod api;
pub mod auth;
pub mod config;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub(crate) mod gate;
pub mod mcp;
pub mod model;
pub(crate) mod process_group;
pub mod rpc;
pub mod secret;
pub(crate) mod session;
pub(crate) mod store;
pub(crate) mod tools;
pub mod transport;

pub use tools::prepare_process;
