//! Generic JSON-RPC 2.0 over one connection: the serve loop, errors, typed method
//! registration, and the peer that sends notifications and server → client requests.
//! It knows no method names: the application supplies the table and a few hooks.

mod connection;
mod error;
mod message;
mod peer;
mod serve;
mod table;

pub use connection::{Connection, SHUTDOWN_GRACE, shutdown};
pub use error::RpcError;
pub use peer::{Peer, PeerError, encode_notification};
pub use serve::{Ended, Hooks, ServeConfig, Server, render_error};
pub use table::{MethodTable, RequestContext, parse_params};
