//! The one owner of the output stream: a task that drains a bounded channel of messages.

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Framing;

/// Messages waiting to be written. 4096 absorbs a burst of events (each a few hundred bytes)
/// while the client is slow to read; beyond it, senders wait, which slows the work producing
/// them instead of growing memory without bound.
const OUTBOX_CAPACITY: usize = 4096;

/// Bytes written before a flush is forced even while more messages are waiting; keeps latency
/// bounded during a long burst.
const FLUSH_EVERY_BYTES: usize = 256 * 1024;

/// A cheap, cloneable handle to the writer task.
#[derive(Clone, Debug)]
pub struct WriterHandle {
    tx: mpsc::Sender<Outgoing>,
}

/// What goes through the outbox: one message, or several written back to back (one channel
/// operation and one wake-up for a burst of events).
#[derive(Debug)]
enum Outgoing {
    One(String),
    Many(Vec<String>),
    /// Everything before this was queued: flush and stop.
    Finish,
}

impl WriterHandle {
    /// Queues one serialized message (no framing), waiting while the outbox is full.
    /// Returns false when the writer has stopped (the output is closed).
    pub async fn send(&self, message: String) -> bool {
        self.tx.send(Outgoing::One(message)).await.is_ok()
    }

    /// Queues several messages, written in this order with nothing between them.
    pub async fn send_many(&self, messages: Vec<String>) -> bool {
        if messages.is_empty() {
            return !self.tx.is_closed();
        }
        self.tx.send(Outgoing::Many(messages)).await.is_ok()
    }

    /// Whether the writer has stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// What goes before and after a message in `framing`: the framing rule, in one place.
fn frame(framing: Framing, message: &str) -> (Option<String>, &'static [u8]) {
    match framing {
        Framing::Ndjson => (None, b"\n"),
        Framing::ContentLength => (
            Some(format!("Content-Length: {}\r\n\r\n", message.len())),
            b"",
        ),
    }
}

/// The receiving end of the outbox, waiting for the framing to be known.
#[derive(Debug)]
pub struct Outbox {
    rx: mpsc::Receiver<Outgoing>,
    tx: mpsc::Sender<Outgoing>,
}

/// Where the writer writes.
pub enum Output<W> {
    /// An async stream, written by a task (tests use `tokio::io::duplex`).
    Async(W),
    /// A blocking stream such as the process's stdout, written by a dedicated thread: tokio's
    /// own stdout hands every flush to its blocking pool, which costs a thread wake-up per burst.
    Blocking(Box<dyn std::io::Write + Send>),
}

/// Creates the outbox: handles to queue messages, and the end the writer task drains. The
/// writer starts later, once the first incoming byte decided the framing.
pub fn outbox() -> (WriterHandle, Outbox) {
    let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
    (WriterHandle { tx: tx.clone() }, Outbox { rx, tx })
}

impl Outbox {
    /// Starts the writer on `output`; it ends, after writing everything queued and flushing,
    /// when `finish` fires (or the output fails).
    pub fn start<W>(
        self,
        output: Output<W>,
        framing: Framing,
        finish: CancellationToken,
    ) -> JoinHandle<()>
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        match output {
            Output::Async(output) => self.spawn(output, framing, finish),
            Output::Blocking(output) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    finish.cancelled().await;
                    let _ = tx.send(Outgoing::Finish).await;
                });
                let rx = self.rx;
                tokio::task::spawn_blocking(move || blocking_write_loop(output, framing, rx))
            }
        }
    }

    /// Starts the writer task. It ends, after writing everything queued and flushing, when
    /// `finish` fires or every handle is dropped; it also ends when the output fails.
    fn spawn<W>(self, output: W, framing: Framing, finish: CancellationToken) -> JoinHandle<()>
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        tokio::spawn(write_loop(output, framing, self.rx, finish))
    }
}

async fn next_message(
    rx: &mut mpsc::Receiver<Outgoing>,
    finish: &CancellationToken,
) -> Option<Outgoing> {
    tokio::select! {
        biased;
        message = rx.recv() => message,
        () = finish.cancelled() => rx.try_recv().ok(),
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    output: W,
    framing: Framing,
    mut rx: mpsc::Receiver<Outgoing>,
    finish: CancellationToken,
) {
    let mut out = BufWriter::with_capacity(64 * 1024, output);
    while let Some(first) = next_message(&mut rx, &finish).await {
        let mut written = 0;
        let mut next = Some(first);
        // Write everything already waiting, then flush once: one syscall for a burst.
        while let Some(outgoing) = next.take() {
            let result = match outgoing {
                Outgoing::One(message) => write_framed(&mut out, framing, &message).await,
                Outgoing::Finish => break,
                Outgoing::Many(messages) => {
                    let mut result = Ok(0);
                    for message in &messages {
                        result = match result {
                            Ok(n) => write_framed(&mut out, framing, message)
                                .await
                                .map(|m| n + m),
                            err => err,
                        };
                    }
                    result
                }
            };
            match result {
                Ok(n) => written += n,
                Err(err) => {
                    tracing::debug!(%err, "output closed; the writer stops");
                    return;
                }
            }
            if written < FLUSH_EVERY_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if let Err(err) = out.flush().await {
            tracing::debug!(%err, "output closed; the writer stops");
            return;
        }
    }
    let _ = out.flush().await;
}

/// The writer thread: blocking writes, one flush whenever the queue runs empty.
fn blocking_write_loop(
    output: Box<dyn std::io::Write + Send>,
    framing: Framing,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, output);
    let mut next = rx.blocking_recv();
    while let Some(outgoing) = next.take() {
        let result = match outgoing {
            Outgoing::One(message) => write_framed_blocking(&mut out, framing, &message),
            Outgoing::Many(messages) => messages
                .iter()
                .try_for_each(|message| write_framed_blocking(&mut out, framing, message)),
            Outgoing::Finish => break,
        };
        if let Err(err) = result {
            tracing::debug!(%err, "output closed; the writer stops");
            return;
        }
        next = match rx.try_recv() {
            Ok(outgoing) => Some(outgoing),
            Err(_) => {
                if let Err(err) = out.flush() {
                    tracing::debug!(%err, "output closed; the writer stops");
                    return;
                }
                rx.blocking_recv()
            }
        };
    }
    let _ = out.flush();
}

fn write_framed_blocking(
    out: &mut impl std::io::Write,
    framing: Framing,
    message: &str,
) -> std::io::Result<()> {
    let (header, trailer) = frame(framing, message);
    if let Some(header) = header {
        out.write_all(header.as_bytes())?;
    }
    out.write_all(message.as_bytes())?;
    out.write_all(trailer)
}

/// Writes one framed message without copying it; returns the bytes written.
async fn write_framed<W: AsyncWrite + Unpin>(
    out: &mut BufWriter<W>,
    framing: Framing,
    message: &str,
) -> std::io::Result<usize> {
    let (header, trailer) = frame(framing, message);
    if let Some(header) = &header {
        out.write_all(header.as_bytes()).await?;
    }
    out.write_all(message.as_bytes()).await?;
    out.write_all(trailer).await?;
    Ok(header.map_or(0, |h| h.len()) + message.len() + trailer.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn writes_exact_bytes_in_both_framings() {
        for (framing, expected) in [
            (Framing::Ndjson, "{\"a\":1}\n[]\n".to_string()),
            (
                Framing::ContentLength,
                "Content-Length: 7\r\n\r\n{\"a\":1}Content-Length: 2\r\n\r\n[]".to_string(),
            ),
        ] {
            let (client, server) = tokio::io::duplex(1024);
            let (handle, outbox) = outbox();
            let task = outbox.spawn(server, framing, CancellationToken::new());
            assert!(handle.send("{\"a\":1}".into()).await);
            assert!(handle.send_many(vec!["[]".into()]).await);
            drop(handle);
            task.await.unwrap();
            let mut got = String::new();
            let mut client = client;
            client.read_to_string(&mut got).await.unwrap();
            assert_eq!(got, expected);
        }
    }
}
