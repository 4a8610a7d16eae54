//! `session/*` methods, and the client link sessions use to send events and ask approvals.

use std::sync::Arc;

use agent_server_schema::lifecycle::EmptyResult;
use agent_server_schema::methods::{
    ArchiveSession, CloseSession, Compact, DeleteSession, ForkSession, Interrupt, ListSessions,
    NewSession, Notification as _, ReadSession, RequestApproval, ResumeSession, SessionEvent,
    SetSessionTitle, Steer, Submit, UnarchiveSession,
};
use agent_server_schema::rpc::ErrorKind;
use agent_server_schema::session::{
    CloseSessionParams, CompactParams, CompactResult, ForkSessionParams, InterruptParams,
    ListSessionsParams, ListSessionsResult, NewSessionParams, ReadSessionParams,
    RequestApprovalParams, ResumeSessionParams, SessionEventNotification, SessionIdParams,
    SetTitleParams, SteerParams, SteerResult, SubmitParams, SubmitResult,
};
use tokio_util::sync::CancellationToken;

use super::{App, Lifecycle};
use crate::rpc::{MethodTable, Peer, PeerError, RpcError, encode_notification};
use crate::session::{ApprovalReply, ClientLink, SessionError, SteerError, info};

impl From<SessionError> for RpcError {
    fn from(err: SessionError) -> Self {
        let message = err.to_string();
        match err {
            SessionError::NotFound(_) | SessionError::NotLoaded(_) => {
                RpcError::new(ErrorKind::SessionNotFound, message)
            }
            SessionError::InUse { pid, .. } => {
                let mut err = RpcError::new(ErrorKind::SessionInUse, message);
                err.data.pid = pid;
                err
            }
            SessionError::Store(_) => RpcError::new(ErrorKind::StoreUnavailable, message),
            SessionError::TurnNotFound(_) => RpcError::new(ErrorKind::TurnNotFound, message),
            SessionError::AuthRequired(_) => RpcError::new(ErrorKind::AuthRequired, message),
            SessionError::Steer(SteerError::NoRunningTurn) => {
                RpcError::new(ErrorKind::NoRunningTurn, message)
            }
            SessionError::Steer(SteerError::TurnMismatch { .. }) => {
                RpcError::new(ErrorKind::TurnMismatch, message)
            }
            SessionError::InvalidParams {
                field, expected, ..
            } => RpcError::invalid_params(field, expected, message),
        }
    }
}

/// Registers the session methods.
pub fn register(table: &mut MethodTable<App>) {
    table.add::<NewSession, _, _>(|app: Arc<App>, params: NewSessionParams, _| async move {
        let session = app.sessions.create(params).await?;
        Ok(info(&session))
    });
    table.add::<Submit, _, _>(|app: Arc<App>, params: SubmitParams, request| async move {
        let (session_id, turn_id) = app
            .sessions
            .submit(params, request.reply_gate.clone())
            .await?;
        Ok(SubmitResult {
            session_id,
            turn_id,
        })
    });
    table.add::<Steer, _, _>(|app: Arc<App>, params: SteerParams, _| async move {
        let turn_id = app.sessions.steer(params)?;
        Ok(SteerResult { turn_id })
    });
    table.add::<Interrupt, _, _>(|app: Arc<App>, params: InterruptParams, _| async move {
        app.sessions
            .interrupt(&params.session_id, params.turn_id.as_deref())?;
        Ok(EmptyResult {})
    });
    table.add::<ListSessions, _, _>(|app: Arc<App>, params: ListSessionsParams, _| async move {
        let (sessions, next_cursor) = app.sessions.list_page(&params)?;
        Ok(ListSessionsResult {
            sessions,
            next_cursor,
        })
    });
    table.add::<Compact, _, _>(|app: Arc<App>, params: CompactParams, request| async move {
        let turn_id = app
            .sessions
            .compact(&params.session_id, request.reply_gate.clone())?;
        Ok(CompactResult { turn_id })
    });
    table.add::<CloseSession, _, _>(|app: Arc<App>, params: CloseSessionParams, _| async move {
        app.sessions.close(&params.session_id).await?;
        Ok(EmptyResult {})
    });
    register_stored(table);
}

/// The methods of stored sessions (contract section 8).
fn register_stored(table: &mut MethodTable<App>) {
    table.add::<ReadSession, _, _>(|app: Arc<App>, params: ReadSessionParams, _| async move {
        Ok(app
            .sessions
            .read(&params.session_id, params.turns.unwrap_or(true))?)
    });
    table.add::<ResumeSession, _, _>(|app: Arc<App>, params: ResumeSessionParams, _| async move {
        Ok(app
            .sessions
            .resume(
                &params.session_id,
                &params.overrides,
                params.mcp_servers.unwrap_or_default(),
            )
            .await?)
    });
    table.add::<ForkSession, _, _>(|app: Arc<App>, params: ForkSessionParams, _| async move {
        Ok(app
            .sessions
            .fork(
                &params.session_id,
                params.turn_id.as_deref(),
                &params.overrides,
                params.mcp_servers.unwrap_or_default(),
            )
            .await?)
    });
    table.add::<ArchiveSession, _, _>(|app: Arc<App>, params: SessionIdParams, _| async move {
        app.sessions.set_archived(&params.session_id, true).await?;
        Ok(EmptyResult {})
    });
    table.add::<UnarchiveSession, _, _>(|app: Arc<App>, params: SessionIdParams, _| async move {
        app.sessions.set_archived(&params.session_id, false).await?;
        Ok(EmptyResult {})
    });
    table.add::<DeleteSession, _, _>(|app: Arc<App>, params: SessionIdParams, _| async move {
        app.sessions.delete(&params.session_id).await?;
        Ok(EmptyResult {})
    });
    table.add::<SetSessionTitle, _, _>(|app: Arc<App>, params: SetTitleParams, _| async move {
        app.sessions.set_title(&params.session_id, &params.title)?;
        Ok(EmptyResult {})
    });
}

/// Serializes one `session/event` notification into a buffer sized for it (a delta event is
/// about 300 bytes plus its text), so the hot path of streaming deltas allocates once per event.
fn encode_event(event: &SessionEventNotification) -> serde_json::Result<String> {
    encode_notification(SessionEvent::NAME, event, 320 + delta_len(&event.event))
}

/// The length of the text an event carries beyond its fixed fields.
fn delta_len(event: &agent_server_schema::session::Event) -> usize {
    use agent_server_schema::session::Event;
    match event {
        Event::AgentMessageDelta { delta, .. }
        | Event::ReasoningDelta { delta, .. }
        | Event::CommandOutputDelta { delta, .. } => delta.len(),
        _ => 0,
    }
}

/// Sessions reach the client through the rpc peer.
pub struct PeerLink {
    /// The connection.
    pub peer: Arc<Peer>,
    /// What `initialize` said about the client.
    pub lifecycle: Arc<Lifecycle>,
}

#[async_trait::async_trait]
impl ClientLink for PeerLink {
    async fn send_events(&self, events: &[SessionEventNotification]) -> bool {
        let mut messages = Vec::with_capacity(events.len());
        for event in events {
            match encode_event(event) {
                Ok(text) => messages.push(text),
                Err(err) => tracing::error!(%err, "could not serialize an event"),
            }
        }
        self.peer.send_many(messages).await
    }

    async fn request_approval(
        &self,
        params: RequestApprovalParams,
        cancel: &CancellationToken,
    ) -> ApprovalReply {
        if !self.lifecycle.client_can_approve() {
            return ApprovalReply::Unavailable;
        }
        match self
            .peer
            .request::<RequestApproval>(&params, cancel, None)
            .await
        {
            Ok(result) => ApprovalReply::Decided(result.decision),
            Err(PeerError::Withdrawn) => ApprovalReply::Withdrawn,
            Err(
                err @ (PeerError::Closed
                | PeerError::TimedOut
                | PeerError::Rejected(_)
                | PeerError::BadResult(_)),
            ) => {
                // The client cannot answer any more (stdin closed) or answered with an error:
                // no user decided, so the policy declines.
                tracing::warn!(%err, item_id = %params.item_id, "approval request failed; declined by policy");
                ApprovalReply::Unavailable
            }
        }
    }

    fn can_approve(&self) -> bool {
        self.lifecycle.client_can_approve()
    }

    fn user_agent(&self) -> String {
        self.lifecycle.user_agent()
    }
}
