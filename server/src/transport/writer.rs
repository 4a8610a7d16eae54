//! The one owner of the output stream: a thread that drains a bounded channel of messages.
//!
//! There is one write loop. It runs on a dedicated thread with blocking writes, because the
//! process's stdout is a blocking file: tokio's async stdout hands every flush to its blocking
//! pool, which costs a thread wake-up per burst. Tests run the same loop over a real OS pipe.
//! The loop writes everything already queued, then flushes once; during a long burst it also
//! flushes every [`FLUSH_EVERY_BYTES`], so the reader sees output while the burst goes on.

use std::io::Write;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Framing;

/// Messages waiting to be written. 4096 absorbs a burst of events (each a few hundred bytes)
/// while the client is slow to read; beyond it, senders wait, which slows the work producing
/// them instead of growing memory without bound.
const OUTBOX_CAPACITY: usize = 4096;

/// Bytes written before a flush is forced even while more messages are waiting; keeps latency
/// bounded during a long burst.
const FLUSH_EVERY_BYTES: usize = 256 * 1024;

/// Size of the write buffer: a burst of small messages becomes few `write` calls.
const BUFFER_BYTES: usize = 64 * 1024;

/// A cheap, cloneable handle to the writer.
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
    /// Flush, then say so: everything queued before this is on the output.
    Flushed(oneshot::Sender<()>),
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

    /// Waits until everything queued so far has been written and flushed to the output.
    /// Returns false when the writer stopped first (the output is closed).
    pub async fn flushed(&self) -> bool {
        let (done, flushed) = oneshot::channel();
        if self.tx.send(Outgoing::Flushed(done)).await.is_err() {
            return false;
        }
        flushed.await.is_ok()
    }

    /// Whether the writer has stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Asks the writer to stop once everything queued so far is written and flushed.
    pub async fn finish(&self) {
        // An error means the writer stopped already, which is what was asked.
        let _ = self.tx.send(Outgoing::Finish).await;
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
}

/// Creates the outbox: handles to queue messages, and the end the writer drains. The writer
/// starts later, once the first incoming byte decided the framing.
pub fn outbox() -> (WriterHandle, Outbox) {
    let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
    (WriterHandle { tx }, Outbox { rx })
}

impl Outbox {
    /// Starts the writer thread on `output`. It ends after writing everything queued and
    /// flushing, when a handle calls [`WriterHandle::finish`] or every handle is dropped; it
    /// also ends when the output fails (the reader went away).
    pub fn start(self, output: Box<dyn Write + Send>, framing: Framing) -> JoinHandle<()> {
        tokio::task::spawn_blocking(move || write_loop(output, framing, self.rx))
    }
}

/// The write loop: blocking writes, a flush whenever the queue runs empty or a burst passes
/// [`FLUSH_EVERY_BYTES`].
fn write_loop(output: Box<dyn Write + Send>, framing: Framing, mut rx: mpsc::Receiver<Outgoing>) {
    let mut out = std::io::BufWriter::with_capacity(BUFFER_BYTES, output);
    let mut unflushed = 0;
    let mut next = rx.blocking_recv();
    while let Some(outgoing) = next.take() {
        let result = match outgoing {
            Outgoing::One(message) => write_framed(&mut out, framing, &message),
            Outgoing::Many(messages) => messages.iter().try_fold(0, |n, message| {
                write_framed(&mut out, framing, message).map(|m| n + m)
            }),
            Outgoing::Flushed(done) => out.flush().map(|()| {
                unflushed = 0;
                let _ = done.send(());
                0
            }),
            Outgoing::Finish => break,
        };
        match result {
            Ok(n) => unflushed += n,
            Err(err) => return closed(&err),
        }
        let queued = if unflushed < FLUSH_EVERY_BYTES {
            rx.try_recv().ok()
        } else {
            None
        };
        next = match queued {
            Some(outgoing) => Some(outgoing),
            None => {
                if let Err(err) = out.flush() {
                    return closed(&err);
                }
                unflushed = 0;
                rx.blocking_recv()
            }
        };
    }
    if let Err(err) = out.flush() {
        closed(&err);
    }
}

fn closed(err: &std::io::Error) {
    tracing::debug!(%err, "output closed; the writer stops");
}

/// Writes one framed message without copying it; returns the bytes written.
fn write_framed(out: &mut impl Write, framing: Framing, message: &str) -> std::io::Result<usize> {
    let (header, trailer) = frame(framing, message);
    if let Some(header) = &header {
        out.write_all(header.as_bytes())?;
    }
    out.write_all(message.as_bytes())?;
    out.write_all(trailer)?;
    Ok(header.map_or(0, |h| h.len()) + message.len() + trailer.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Runs the writer over a real OS pipe and returns every byte the reading end saw.
    async fn through_a_pipe(
        framing: Framing,
        feed: impl AsyncFnOnce(&WriterHandle),
    ) -> (Vec<u8>, bool) {
        let (mut reader, writer) = std::io::pipe().unwrap();
        let (handle, outbox) = outbox();
        let task = outbox.start(Box::new(writer), framing);
        let read = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).map(|_| bytes)
        });
        feed(&handle).await;
        handle.finish().await;
        task.await.unwrap();
        let closed = handle.is_closed();
        (read.join().unwrap().unwrap(), closed)
    }

    #[tokio::test]
    async fn writes_exact_bytes_in_both_framings_and_stops_on_finish() {
        for (framing, expected) in [
            (Framing::Ndjson, "{\"a\":1}\n[]\n{}\n".to_string()),
            (
                Framing::ContentLength,
                "Content-Length: 7\r\n\r\n{\"a\":1}Content-Length: 2\r\n\r\n[]Content-Length: 2\r\n\r\n{}"
                    .to_string(),
            ),
        ] {
            let (bytes, closed) = through_a_pipe(framing, async |handle| {
                assert!(handle.send("{\"a\":1}".into()).await);
                assert!(handle.send_many(vec!["[]".into(), "{}".into()]).await);
            })
            .await;
            assert_eq!(String::from_utf8(bytes).unwrap(), expected);
            assert!(closed, "the writer still runs after finish");
        }
    }

    #[tokio::test]
    async fn a_burst_larger_than_the_pipe_arrives_whole_and_in_order() {
        // Far more than a pipe buffers (64 KiB) and than one flush interval: the writer has to
        // flush during the burst and block while the reader catches up.
        let messages: Vec<String> = (0..20_000)
            .map(|n| format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(40)))
            .collect();
        let expected: String = messages.iter().map(|m| format!("{m}\n")).collect();
        let (bytes, _) = through_a_pipe(Framing::Ndjson, async |handle| {
            for chunk in messages.chunks(64) {
                assert!(handle.send_many(chunk.to_vec()).await);
            }
        })
        .await;
        assert!(expected.len() > 4 * FLUSH_EVERY_BYTES);
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    /// An output that is slow to write and records what reached it and when it was flushed.
    #[derive(Clone, Default)]
    struct SlowRecorder(std::sync::Arc<std::sync::Mutex<(Vec<u8>, usize)>>);

    impl Write for SlowRecorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(std::time::Duration::from_millis(50));
            self.0.lock().unwrap().0.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            let mut state = self.0.lock().unwrap();
            state.1 = state.0.len();
            Ok(())
        }
    }

    #[tokio::test]
    async fn flushed_returns_once_what_was_queued_before_is_on_the_output() {
        let output = SlowRecorder::default();
        let (handle, outbox) = outbox();
        let task = outbox.start(Box::new(output.clone()), Framing::Ndjson);
        assert!(handle.send("{\"id\":1}".into()).await);
        assert!(handle.flushed().await);
        let (bytes, flushed) = output.0.lock().unwrap().clone();
        assert_eq!((bytes.as_slice(), flushed), (&b"{\"id\":1}\n"[..], 9));
        handle.finish().await;
        task.await.unwrap();
        assert!(!handle.flushed().await, "flushed after the writer stopped");
    }

    #[tokio::test]
    async fn the_writer_stops_when_the_reader_goes_away() {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let (handle, outbox) = outbox();
        let task = outbox.start(Box::new(writer), Framing::Ndjson);
        // The write fails (EPIPE; the test harness ignores SIGPIPE as Rust programs do), the
        // writer ends, and senders learn it.
        let _ = handle.send("{}".into()).await;
        task.await.unwrap();
        assert!(!handle.send("{}".into()).await);
        assert!(handle.is_closed());
    }
}
