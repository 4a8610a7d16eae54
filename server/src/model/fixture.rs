//! Replay of SSE transcripts instead of network calls (`AGENT_SERVER_SSE_FIXTURE`).
//!
//! The setting is one path or several separated by `:`. Each model call made through one
//! client (and its clones) replays the next file; once the list runs out, the last file is
//! replayed for every further call. So `a.sse:b.sse` answers the first call with `a.sse` (for
//! example a tool call) and every later one with `b.sse` (the final answer). A retried attempt
//! replays the same file as the attempt it replaces.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::stream::{self, Stream};

use super::error::ModelError;

/// Bytes handed to the SSE decoder at a time, like reads from a socket, so a replay exercises
/// the same incremental decoding as a network stream.
pub const REPLAY_CHUNK_BYTES: usize = 8 * 1024;

/// The list of transcripts and how many calls have been answered.
#[derive(Debug)]
pub(crate) struct Replay {
    paths: Vec<PathBuf>,
    calls: AtomicUsize,
}

impl Replay {
    /// Parses the setting; `None` when it names no file.
    pub(crate) fn new(spec: &str) -> Option<Self> {
        let paths: Vec<PathBuf> = spec
            .split(':')
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from)
            .collect();
        (!paths.is_empty()).then_some(Self {
            paths,
            calls: AtomicUsize::new(0),
        })
    }

    /// The file for the next call.
    pub(crate) fn next_path(&self) -> PathBuf {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let last = self.paths.len().saturating_sub(1);
        self.paths[n.min(last)].clone()
    }
}

/// Reads a transcript and streams it in network-sized pieces.
pub(crate) async fn read_transcript(
    path: &PathBuf,
) -> Result<impl Stream<Item = Result<Vec<u8>, Infallible>> + Send + 'static, ModelError> {
    let bytes = tokio::fs::read(path).await.map_err(|err| {
        ModelError::Internal(format!(
            "cannot read the SSE transcript {}: {err}; check AGENT_SERVER_SSE_FIXTURE",
            path.display()
        ))
    })?;
    Ok(chunked(bytes, REPLAY_CHUNK_BYTES))
}

/// `bytes` as a stream of pieces of at most `size` bytes.
pub fn chunked(
    bytes: Vec<u8>,
    size: usize,
) -> impl Stream<Item = Result<Vec<u8>, Infallible>> + Send + 'static {
    let pieces: Vec<Result<Vec<u8>, Infallible>> = bytes
        .chunks(size.max(1))
        .map(|piece| Ok(piece.to_vec()))
        .collect();
    stream::iter(pieces)
}
