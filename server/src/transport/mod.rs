//! Framing and stdio: reads whole messages with a size cap, writes framed messages.
//!
//! Two framings exist: newline-delimited JSON (the default) and LSP-style `Content-Length:`
//! headers. With `auto`, the first non-whitespace byte of the stream decides (`C`/`c` means
//! Content-Length) and the same framing is used for replies.

mod reader;
mod writer;

pub use reader::{Inbound, MessageReader};
pub use writer::{Outbox, WriterHandle, outbox};

pub use agent_server_schema::lifecycle::Framing;

/// How the framing is chosen (`--framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FramingChoice {
    /// Detect from the first non-whitespace byte.
    #[default]
    Auto,
    /// Newline-delimited JSON.
    Ndjson,
    /// `Content-Length:` headers.
    ContentLength,
}
