//! Test harness for the end-to-end tests: the real `agent-server` binary on real pipes.
//!
//! - [`TestServer`] spawns the binary (built beforehand: `cargo build -p agent-server`, or
//!   `$AGENT_SERVER_BIN`) in a temp home with a scrubbed environment, sends typed or raw
//!   messages in either framing, buffers what comes back, answers server requests, and bounds
//!   every wait with a timeout that panics with the recent traffic and stderr.
//! - [`run_to_end`] runs the binary once with a fixed stdin and returns its raw output.
//! - [`replies`] builds expected reply objects for whole-object comparisons.
//! - [`upstream`] mocks the Responses API with wiremock; [`fixture`] loads recorded streams.
//! - [`auth`] makes JWTs and `auth.json` files.
//!
//! ```no_run
//! # async fn demo() {
//! use agent_server_tests::TestServer;
//! use agent_server_tests::schema::methods::ListSessions;
//! let mut server = TestServer::start().await;
//! let sessions = server.request::<ListSessions>(Default::default()).await;
//! # }
//! ```

pub mod auth;
mod binary;
mod fixtures;
mod framing;
pub mod mcp;
pub mod replies;
pub mod scripted;
mod server;
pub mod turns;
pub mod upstream;

use std::time::Duration;

pub use agent_server_schema as schema;
pub use binary::{RunOutput, run_to_end, scrubbed_command, server_bin};
pub use fixtures::{fixture, fixtures_dir, outside_temp_dir};
pub use framing::Framing;
pub use libc::{SIGINT, SIGKILL, SIGTERM};
pub use server::{Message, ServerRequestHandler, TestServer, TestServerBuilder, decode_reply};

/// The default bound on every wait for the server (a reply, a notification, the exit).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The workspace version, which is the server's version too.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
