//! How sessions reach an ACP client: events become `session/update`s, approvals become
//! `session/request_permission`, and the end of each turn is handed to the `session/prompt`
//! waiting for it.
//!
//! `session/update`s are the hot path (one per streamed delta), so they do not take the SDK's
//! outgoing path, which turns each notification into a `serde_json::Value`, clones it to
//! serialize it and hands every line over on its own: they are serialized once, straight from
//! the crate's typed `SessionNotification`, and handed to the stdout writer in batches, as the
//! native protocol's events are. Everything else (replies, permission requests) goes through the
//! SDK. Order holds where it matters: a turn's updates are queued before its `TurnCompleted`
//! lets the `session/prompt` answer, and a replay before the `session/load` answer.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, OnceLock};

use agent_client_protocol::Client;
use agent_client_protocol::v1::ConnectionTo;
use agent_client_protocol::v1::schema::{
    PermissionOption, PermissionOptionKind, RequestPermissionOutcome, RequestPermissionRequest,
    SessionNotification, SessionUpdate, ToolCallUpdate, ToolCallUpdateFields, ToolKind,
};
use agent_server_schema::session::{
    ApprovalDecision, ApprovalKind, Event, RequestApprovalParams, SessionEventNotification,
    TurnError, TurnStatus,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::SESSION_UPDATE;
use super::updates::{Translator, command_title, mcp_title};
use crate::session::{ApprovalReply, ClientLink};
use crate::transport::WriterHandle;

/// How a turn ended, for the `session/prompt` that started it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TurnEnd {
    pub(crate) status: TurnStatus,
    pub(crate) error: Option<TurnError>,
}

/// The permission options offered for every approval, with the decision each one means.
pub(crate) const OPTIONS: [(&str, &str, PermissionOptionKind, ApprovalDecision); 4] = [
    (
        "allow_once",
        "Allow once",
        PermissionOptionKind::AllowOnce,
        ApprovalDecision::Approve,
    ),
    (
        "allow_always",
        "Allow for this session",
        PermissionOptionKind::AllowAlways,
        ApprovalDecision::ApproveForSession,
    ),
    (
        "reject_once",
        "Reject",
        PermissionOptionKind::RejectOnce,
        ApprovalDecision::Deny,
    ),
    (
        "reject_always",
        "Reject for this session",
        PermissionOptionKind::RejectAlways,
        ApprovalDecision::Deny,
    ),
];

/// Updates handed to the writer at once: the native event forwarder's batch size, so the
/// writer's bounded queue bounds what waits in memory the same way.
const UPDATES_PER_WRITE: usize = 64;

/// A `session/update` notification as written (the crate's notification type as its params).
#[derive(serde::Serialize)]
struct UpdateMessage<'a> {
    jsonrpc: &'static str,
    method: &'static str,
    params: &'a SessionNotification,
}

/// One `session/update` line, or none when it cannot be serialized (logged).
fn update_line(session_id: &str, update: SessionUpdate) -> Option<String> {
    let params = SessionNotification::new(session_id.to_string(), update);
    let message = UpdateMessage {
        jsonrpc: "2.0",
        method: SESSION_UPDATE,
        params: &params,
    };
    serde_json::to_string(&message)
        .map_err(|err| tracing::error!(%err, "could not serialize a session/update"))
        .ok()
}

/// The ACP client as the session layer sees it.
pub(crate) struct AcpLink {
    connection: OnceLock<ConnectionTo<Client>>,
    user_agent: OnceLock<String>,
    translators: Mutex<HashMap<String, Translator>>,
    waiters: Mutex<HashMap<String, oneshot::Sender<TurnEnd>>>,
    context_windows: Mutex<HashMap<String, u64>>,
    /// What `reject_always` refused, per session: declined again without asking.
    rejected: Mutex<HashSet<(String, String)>>,
    /// The stdout writer, which `session/update`s go to directly.
    writer: WriterHandle,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AcpLink {
    pub(crate) fn new(writer: WriterHandle) -> Self {
        Self {
            connection: OnceLock::new(),
            user_agent: OnceLock::new(),
            translators: Mutex::default(),
            waiters: Mutex::default(),
            context_windows: Mutex::default(),
            rejected: Mutex::default(),
            writer,
        }
    }

    /// Remembers the connection (every handler offers it; the first one is kept).
    pub(crate) fn attach(&self, connection: &ConnectionTo<Client>) {
        let _ = self.connection.get_or_init(|| connection.clone());
    }

    /// The `User-Agent` suffix from `initialize`'s `clientInfo`.
    pub(crate) fn set_client(&self, suffix: String) {
        let _ = self.user_agent.set(suffix);
    }

    /// The context window the `usage_update`s of a session report (none: no usage updates).
    pub(crate) fn set_context_window(&self, session_id: &str, size: Option<u64>) {
        let mut windows = lock(&self.context_windows);
        match size {
            Some(size) => windows.insert(session_id.to_string(), size),
            None => windows.remove(session_id),
        };
    }

    /// Registers the wait for a turn's end; call before the turn may start.
    pub(crate) fn wait_turn(&self, turn_id: &str) -> oneshot::Receiver<TurnEnd> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).insert(turn_id.to_string(), tx);
        rx
    }

    /// The `session/update` lines of events, translated as a live turn's.
    fn lines(&self, events: &[SessionEventNotification]) -> Vec<String> {
        let windows = lock(&self.context_windows);
        let mut translators = lock(&self.translators);
        let mut lines = Vec::with_capacity(events.len());
        for event in events {
            let id = event.session_id.as_str();
            let window = windows.get(id).copied();
            let translator = match translators.get_mut(id) {
                Some(translator) => translator,
                None => translators.entry(id.to_string()).or_default(),
            };
            for update in translator.translate(&event.event, window) {
                lines.extend(update_line(id, update));
            }
        }
        lines
    }

    /// Sends updates that are not events of a running turn (a `session/load` replay), through
    /// the writer's bounded queue; false when the client is gone.
    pub(crate) async fn send_updates(&self, session_id: &str, updates: Vec<SessionUpdate>) -> bool {
        let mut lines = Vec::with_capacity(UPDATES_PER_WRITE);
        for update in updates {
            lines.extend(update_line(session_id, update));
            if lines.len() == UPDATES_PER_WRITE
                && !self.writer.send_many(std::mem::take(&mut lines)).await
            {
                return false;
            }
        }
        self.writer.send_many(lines).await
    }

    /// Forgets a closed session's state.
    pub(crate) fn forget(&self, session_id: &str) {
        lock(&self.translators).remove(session_id);
        lock(&self.context_windows).remove(session_id);
        lock(&self.rejected).retain(|(session, _)| session != session_id);
    }

    fn finish_turn(&self, turn_id: &str, status: TurnStatus, error: Option<TurnError>) {
        if let Some(tx) = lock(&self.waiters).remove(turn_id) {
            let _ = tx.send(TurnEnd { status, error });
        }
    }
}

#[async_trait::async_trait]
impl ClientLink for AcpLink {
    async fn send_events(&self, events: &[SessionEventNotification]) -> bool {
        let mut alive = true;
        let mut rest = events;
        // Up to each turn's end: its updates are queued for writing before the prompt that
        // waits for the end can answer.
        while let Some(end) = rest
            .iter()
            .position(|e| matches!(e.event, Event::TurnCompleted { .. }))
        {
            alive &= self.writer.send_many(self.lines(&rest[..end])).await;
            let completed = &rest[end];
            if let Event::TurnCompleted { status, error, .. } = &completed.event {
                self.finish_turn(&completed.turn_id, *status, error.as_deref().cloned());
            }
            rest = &rest[end + 1..];
        }
        alive && self.writer.send_many(self.lines(rest)).await
    }

    async fn request_approval(
        &self,
        params: RequestApprovalParams,
        cancel: &CancellationToken,
    ) -> ApprovalReply {
        let Some(connection) = self.connection.get() else {
            return ApprovalReply::Unavailable;
        };
        let remembered = (params.session_id.clone(), rejection_key(&params));
        if lock(&self.rejected).contains(&remembered) {
            return ApprovalReply::Decided(ApprovalDecision::Deny);
        }
        let request = permission_request(&params);
        let answer = tokio::select! {
            answer = connection.send_request(request).block_task() => answer,
            // Dropping the request's future withdraws it with `$/cancel_request`.
            () = cancel.cancelled() => return ApprovalReply::Withdrawn,
        };
        match answer {
            Ok(response) => {
                if let RequestPermissionOutcome::Selected(selected) = &response.outcome
                    && &*selected.option_id.0 == "reject_always"
                {
                    lock(&self.rejected).insert(remembered);
                }
                ApprovalReply::Decided(decision(&response.outcome))
            }
            Err(err) => {
                // The client cannot answer any more (stdin closed) or answered an error: decline.
                tracing::warn!(%err, item_id = %params.item_id, "permission request failed; declining");
                ApprovalReply::Unavailable
            }
        }
    }

    fn can_approve(&self) -> bool {
        true
    }

    fn user_agent(&self) -> String {
        let base = format!(
            "agent-server/{} ({}; {})",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        match self.user_agent.get() {
            Some(suffix) => format!("{base} {suffix}"),
            None => base,
        }
    }
}

/// What a `reject_always` covers: that exact command, or every later file change.
fn rejection_key(params: &RequestApprovalParams) -> String {
    match params.kind {
        ApprovalKind::CommandExecution => {
            format!(
                "command:{}",
                params.command.clone().unwrap_or_default().join("\0")
            )
        }
        ApprovalKind::FileChange => "fileChange".to_string(),
        ApprovalKind::McpToolCall => format!(
            "mcp:{}/{}",
            params.server.clone().unwrap_or_default(),
            params.tool.clone().unwrap_or_default()
        ),
    }
}

/// The decision an outcome means; `cancelled` (the client cancelled the prompt) aborts the turn.
fn decision(outcome: &RequestPermissionOutcome) -> ApprovalDecision {
    match outcome {
        RequestPermissionOutcome::Selected(selected) => OPTIONS
            .iter()
            .find(|(id, ..)| *id == &*selected.option_id.0)
            .map_or(ApprovalDecision::Deny, |(.., decision)| *decision),
        _ => ApprovalDecision::Abort,
    }
}

/// The question about the tool call the approval is for (its `toolCallId` is the item id, so
/// the client can show it next to the `tool_call` it already has).
fn permission_request(params: &RequestApprovalParams) -> RequestPermissionRequest {
    let mut fields = ToolCallUpdateFields::new();
    match params.kind {
        ApprovalKind::CommandExecution => {
            if let Some(command) = &params.command {
                fields = fields.title(command_title(command)).kind(ToolKind::Execute);
            }
        }
        ApprovalKind::FileChange => fields = fields.kind(ToolKind::Edit),
        ApprovalKind::McpToolCall => {
            fields = fields.kind(ToolKind::Other);
            if let (Some(server), Some(tool)) = (&params.server, &params.tool) {
                fields = fields.title(mcp_title(server, tool));
            }
            if let Some(arguments) = &params.arguments {
                fields = fields.raw_input(arguments.clone());
            }
        }
    }
    if let Some(reason) = &params.reason {
        fields = fields.raw_input(serde_json::json!({"reason": reason}));
    }
    let options = OPTIONS
        .iter()
        .map(|(id, name, kind, _)| PermissionOption::new(*id, *name, *kind))
        .collect();
    RequestPermissionRequest::new(
        params.session_id.clone(),
        ToolCallUpdate::new(params.item_id.clone(), fields),
        options,
    )
}
