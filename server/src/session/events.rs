//! Numbering and sending a session's events in order.
//!
//! Every event of a session, from the turn loop or from a running tool, goes through one FIFO
//! queue to one forwarder task that assigns `seq` (from 1, no gaps) and hands it to the client
//! link. So wire order is `seq` order whoever produced the event. Producers that can wait
//! ([`EventSink::send`]) are held back while many events are queued, which slows a fast
//! model stream down to the client's reading speed instead of growing memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agent_server_schema::session::{Event, SessionEventNotification};
use tokio::sync::{Notify, mpsc};

use super::ClientLink;
use super::record::Recorder;

/// Queued events above which [`EventSink::send`] waits. 512 events are a few hundred KiB at
/// most, and enough to keep the writer busy while the producer is paused.
const HIGH_WATER: usize = 512;

struct Shared {
    pending: AtomicUsize,
    drained: Notify,
}

/// The sending side of a session's event queue.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<(String, Event)>,
    shared: Arc<Shared>,
}

impl EventSink {
    /// Starts the forwarder of one session's events; its first event gets `seq` `last_seq + 1`,
    /// and `recorder` stores what each batch completes before the batch is sent.
    pub(crate) fn spawn(
        session_id: String,
        link: Arc<dyn ClientLink>,
        last_seq: u64,
        recorder: Option<Arc<Recorder>>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pending: AtomicUsize::new(0),
            drained: Notify::new(),
        });
        let forwarder = Forwarder {
            session_id,
            link,
            recorder,
            seq: last_seq,
        };
        tokio::spawn(forward(forwarder, rx, Arc::clone(&shared)));
        Self { tx, shared }
    }

    /// Queues an event without waiting (for synchronous callers such as tools).
    pub fn emit(&self, turn_id: &str, event: Event) {
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        if self.tx.send((turn_id.to_string(), event)).is_err() {
            self.shared.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Queues an event, first waiting while the queue is above its high-water mark.
    pub async fn send(&self, turn_id: &str, event: Event) {
        while self.shared.pending.load(Ordering::Acquire) >= HIGH_WATER {
            let notified = self.shared.drained.notified();
            if self.shared.pending.load(Ordering::Acquire) < HIGH_WATER {
                break;
            }
            notified.await;
        }
        self.emit(turn_id, event);
    }

    /// Waits until every queued event has been handed to the client link.
    pub async fn flushed(&self) {
        loop {
            let notified = self.shared.drained.notified();
            if self.shared.pending.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Events handed to the client link in one call at most; bounds the batch a slow client
/// makes the forwarder build while keeping per-call overhead small during a burst.
const MAX_BATCH: usize = 64;

struct Forwarder {
    session_id: String,
    link: Arc<dyn ClientLink>,
    recorder: Option<Arc<Recorder>>,
    /// The last `seq` assigned.
    seq: u64,
}

async fn forward(
    forwarder: Forwarder,
    mut rx: mpsc::UnboundedReceiver<(String, Event)>,
    shared: Arc<Shared>,
) {
    let Forwarder {
        session_id,
        link,
        recorder,
        mut seq,
    } = forwarder;
    // Grown on the first batch and reused after that: an idle session holds no buffer (64
    // preallocated notifications would be 9 KiB per session).
    let mut batch: Vec<SessionEventNotification> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some((turn_id, event)) = next.take() {
            seq += 1;
            batch.push(SessionEventNotification {
                session_id: session_id.clone(),
                turn_id,
                seq,
                event,
            });
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let sent = batch.len();
        if let Some(recorder) = &recorder {
            recorder.before_send(&mut batch);
        }
        if !link.send_events(&batch).await {
            tracing::debug!(%session_id, "events not delivered: the client is gone");
        }
        batch.clear();
        let before = shared.pending.fetch_sub(sent, Ordering::AcqRel);
        let after = before - sent;
        // Wake producers when the queue drops below the high-water mark, and `flushed`
        // waiters when it is empty; not on every batch.
        if (before >= HIGH_WATER && after < HIGH_WATER) || after == 0 {
            shared.drained.notify_waiters();
        }
    }
}
