//! Writing a session's progress to its store at the contract's write points: a turn's start
//! before `turnStarted`, each item before its `itemCompleted` is sent, a turn's end before its
//! `turnCompleted`, and the model-facing history as it grows.
//!
//! Item and turn-end writes happen in the event forwarder, once per batch of events and before
//! the batch goes to the client, so whatever a client saw completed is stored. A failed write
//! ends the running turn `failed` (`storeUnavailable`); the session stays readable.

use std::sync::Mutex;

use agent_server_schema::session::{
    Event, SessionEventNotification, Turn, TurnError, TurnErrorKind, TurnStatus,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::context::ContextState;
use crate::model::ResponseItem;
use crate::store::{Progress, Store, StoreError, TurnEnd, TurnStart};

/// How far ahead of the events sent the stored `seq` high-water mark is raised, so that it is
/// written once per this many events, not on every one. After a crash a resumed session's
/// `seq` continues above it, never below a `seq` already sent.
const SEQ_BLOCK: u64 = 4096;

#[derive(Default)]
struct State {
    /// The first write failure of the running turn.
    failure: Option<StoreError>,
    /// The running turn and its cancel token.
    turn: Option<(String, CancellationToken)>,
    /// The stored `seq` high-water mark.
    reserved_seq: u64,
    /// How many history items are stored.
    history_len: usize,
    /// The end of a turn that could not be written (as `failed`), written before the next turn.
    unwritten_end: Option<TurnEnd>,
}

/// The store side of one session.
pub(crate) struct Recorder {
    store: Store,
    session_id: String,
    state: Mutex<State>,
}

impl Recorder {
    /// A recorder for session `session_id`, whose stored `seq` mark is `reserved_seq` and which
    /// has `history_len` history items stored.
    pub(crate) fn new(
        store: Store,
        session_id: String,
        reserved_seq: u64,
        history_len: usize,
    ) -> Self {
        Self {
            store,
            session_id,
            state: Mutex::new(State {
                reserved_seq,
                history_len,
                ..State::default()
            }),
        }
    }

    /// The session's store.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a turn's start; the turn is cancelled if a later write fails.
    pub(crate) fn begin_turn(
        &self,
        start: &TurnStart,
        user_text: &str,
        cancel: CancellationToken,
    ) -> Result<String, StoreError> {
        let unwritten = {
            let mut state = self.lock();
            state.failure = None;
            state.turn = Some((start.turn_id.clone(), cancel));
            state.unwritten_end.take()
        };
        if let Some(end) = unwritten {
            // The store failed at the last turn's end; it reads `failed` from now on, not
            // "in progress" (or `interrupted` after this process exits).
            let progress = Progress {
                end: Some(end.clone()),
                ..Progress::default()
            };
            if let Err(err) = self.store.record(&self.session_id, &progress) {
                self.lock().unwritten_end = Some(end);
                return Err(err);
            }
        }
        self.store.begin_turn(&self.session_id, start, user_text)
    }

    /// Stores the model-facing history `items` as it stands: what was added since the last
    /// call is appended; a history that got shorter (a compaction replaced it) is replaced whole.
    pub(crate) fn history(&self, items: &[ResponseItem], turn_id: Option<&str>) {
        let stored = self.lock().history_len;
        let (replace, new) = match items.get(stored..) {
            Some(new) => (false, new),
            None => (true, items),
        };
        if new.is_empty() && !replace {
            return;
        }
        let values: Vec<Value> = new
            .iter()
            .map(|item| serde_json::to_value(item).unwrap_or(Value::Null))
            .collect();
        let written = if replace {
            self.store
                .replace_history(&self.session_id, turn_id, &values)
        } else {
            self.store
                .append_history(&self.session_id, turn_id, &values)
        };
        match written {
            Ok(()) => self.lock().history_len = items.len(),
            Err(err) => self.fail(err),
        }
    }

    /// Stores `items` as the whole model-facing history (a compaction replaced it).
    pub(crate) fn replace_history(&self, items: &[ResponseItem], turn_id: Option<&str>) {
        let values: Vec<Value> = items
            .iter()
            .map(|item| serde_json::to_value(item).unwrap_or(Value::Null))
            .collect();
        match self
            .store
            .replace_history(&self.session_id, turn_id, &values)
        {
            Ok(()) => self.lock().history_len = items.len(),
            Err(err) => self.fail(err),
        }
    }

    /// Stores what the model has been told about its context.
    pub(crate) fn context(&self, context: &ContextState) {
        let value = serde_json::to_value(context).unwrap_or(Value::Null);
        if let Err(err) = self.store.set_context(&self.session_id, &value) {
            self.fail(err);
        }
    }

    /// Shows a turn whose end could not be written as this process ended it.
    pub(crate) fn overlay(&self, turns: &mut [Turn]) {
        let state = self.lock();
        let Some(end) = &state.unwritten_end else {
            return;
        };
        if let Some(turn) = turns.iter_mut().find(|t| t.turn_id == end.turn_id) {
            turn.status = end.status;
            turn.usage = end.usage;
            turn.error = end.error.clone();
        }
    }

    /// The write failure of the turn that just ended, if any.
    pub(crate) fn take_failure(&self) -> Option<StoreError> {
        let mut state = self.lock();
        state.turn = None;
        state.failure.take()
    }

    fn fail(&self, err: StoreError) {
        tracing::error!(session_id = %self.session_id, %err, "a session write failed: ending the turn");
        let mut state = self.lock();
        if let Some((_, cancel)) = &state.turn {
            cancel.cancel();
        }
        state.failure.get_or_insert(err);
    }

    /// Stores what `batch` completes before it is sent. When that fails, a `turnCompleted` in
    /// the batch is turned into a failure saying so, and a running turn is ended.
    pub(crate) fn before_send(&self, batch: &mut [SessionEventNotification]) {
        let Some(last_seq) = batch.last().map(|n| n.seq) else {
            return;
        };
        let mut progress = Progress::default();
        for n in batch.iter() {
            match &n.event {
                Event::ItemCompleted { item } => progress.items.push((n.turn_id.as_str(), item)),
                Event::TurnCompleted {
                    status,
                    usage,
                    error,
                    ..
                } => {
                    progress.end = Some(TurnEnd {
                        turn_id: n.turn_id.clone(),
                        status: (*status).into(),
                        usage: *usage,
                        error: error.as_deref().cloned(),
                        seq: n.seq,
                    })
                }
                _ => {}
            }
        }
        // A turn's end stores its exact `seq` (so a resume after a clean stop goes on from it);
        // events beyond what is stored raise the mark a block ahead.
        let reserved = match &progress.end {
            Some(end) => end.seq,
            None => self.lock().reserved_seq,
        };
        progress.reserve_seq = (last_seq > reserved).then_some(last_seq + SEQ_BLOCK);
        if progress.items.is_empty() && progress.end.is_none() && progress.reserve_seq.is_none() {
            return;
        }
        let ended = progress.end.is_some();
        match self.store.record(&self.session_id, &progress) {
            Ok(()) => {
                self.lock().reserved_seq = progress.reserve_seq.unwrap_or(reserved);
            }
            Err(err) if ended => {
                tracing::error!(session_id = %self.session_id, %err, "a turn's end could not be stored");
                self.lock().unwritten_end = progress.end.take().map(|end| TurnEnd {
                    status: TurnStatus::Failed.into(),
                    error: Some(store_error(&err)),
                    ..end
                });
                for n in batch.iter_mut() {
                    if let Event::TurnCompleted { status, error, .. } = &mut n.event {
                        *status = TurnStatus::Failed;
                        *error = Some(Box::new(store_error(&err)));
                    }
                }
            }
            Err(err) => self.fail(err),
        }
    }
}

impl Drop for Recorder {
    /// A session unloaded after its store came back writes the end it could not write before.
    fn drop(&mut self) {
        let unwritten = self.lock().unwritten_end.take();
        if let Some(end) = unwritten {
            let progress = Progress {
                end: Some(end),
                ..Progress::default()
            };
            if let Err(err) = self.store.record(&self.session_id, &progress) {
                tracing::warn!(session_id = %self.session_id, %err, "a failed turn's end is still not stored");
            }
        }
    }
}

/// The turn error of a failed write.
pub(crate) fn store_error(err: &StoreError) -> TurnError {
    TurnError {
        kind: TurnErrorKind::StoreUnavailable,
        message: format!(
            "{err}; the turn was stopped so that nothing shown is lost; fix the problem and submit again"
        ),
        http_status: None,
        resets_at: None,
        plan_type: None,
        rate_limits: None,
    }
}
