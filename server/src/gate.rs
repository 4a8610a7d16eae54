//! The reply-before-events rule as a type: a gate that opens once a request's reply is queued.
//!
//! The rpc layer makes one [`ReplyGate`] per request and opens it right after queueing the
//! reply; work a handler starts in the background (a turn's events, the process stop after
//! `shutdown`) waits for [`ReplyGate::opened`] first, so the client always reads the reply
//! before anything the request caused. It lives apart from `rpc/` and `session/` because both
//! use it and neither may import the other.

use tokio_util::sync::CancellationToken;

/// Opens once; every clone sees the same state.
#[derive(Debug, Clone, Default)]
pub struct ReplyGate {
    token: CancellationToken,
}

impl ReplyGate {
    /// A closed gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// A gate that is open already, for work no reply has to precede.
    pub fn opened_now() -> Self {
        let gate = Self::new();
        gate.open();
        gate
    }

    /// Opens the gate: the reply is queued.
    pub fn open(&self) {
        self.token.cancel();
    }

    /// Whether the gate is open.
    pub fn is_open(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Waits until the gate is open.
    pub async fn opened(&self) {
        self.token.cancelled().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clones_open_together_and_waiters_wake() {
        let gate = ReplyGate::new();
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.opened().await }
        });
        assert!(!gate.is_open());
        gate.clone().open();
        waiter.await.unwrap();
        assert!(gate.is_open());
        assert!(ReplyGate::opened_now().is_open());
    }
}
