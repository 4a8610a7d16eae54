//! `agent-server sessions list|show|export|delete`: the home's stored sessions from the
//! command line, through the same session layer the protocol uses.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Config;
use crate::mcp::{LogObserver, McpManager};
use crate::session::{ApprovalReply, ClientLink, SessionError, Sessions};
use agent_server_schema::session::{
    InputItem, Item, ListSessionsParams, RequestApprovalParams, Session as SessionInfo,
    SessionEventNotification, SessionWithTurns,
};
use tokio_util::sync::CancellationToken;

/// What `sessions` does.
#[derive(clap::Subcommand, Debug)]
pub enum SessionsCommand {
    /// List stored sessions, newest first.
    List {
        /// One JSON `Session` per line.
        #[arg(long)]
        json: bool,
        /// Include archived sessions.
        #[arg(long)]
        all: bool,
    },
    /// Print a session's conversation.
    Show {
        /// The session id.
        id: String,
    },
    /// Print a session as JSON lines: the session, then one line per turn.
    Export {
        /// The session id.
        id: String,
    },
    /// Delete a session from the store for good.
    Delete {
        /// The session id.
        id: String,
    },
}

/// The CLI drives no turns: nothing is ever sent through this link.
struct NoClient;

#[async_trait::async_trait]
impl ClientLink for NoClient {
    async fn send_events(&self, _events: &[SessionEventNotification]) -> bool {
        false
    }
    async fn request_approval(
        &self,
        _params: RequestApprovalParams,
        _cancel: &CancellationToken,
    ) -> ApprovalReply {
        ApprovalReply::Unavailable
    }
    fn can_approve(&self) -> bool {
        false
    }
    fn user_agent(&self) -> String {
        String::new()
    }
}

/// Runs the command; status 1 when the session is unknown or the store unusable.
pub fn run(command: SessionsCommand, config: Config) -> ExitCode {
    let http = reqwest::Client::new();
    // Reading and deleting stored sessions starts no MCP server: the manager has none.
    let mcp = McpManager::new(&Default::default(), http.clone(), Arc::new(LogObserver));
    let sessions = Sessions::new(config, None, http, Arc::new(NoClient), mcp);
    let mut out = std::io::stdout().lock();
    let result = match command {
        SessionsCommand::List { json, all } => list(&sessions, json, all, &mut out),
        SessionsCommand::Show { id } => sessions
            .read(&id, true)
            .map_err(cli_error)
            .and_then(|s| show(&s, &mut out).map_err(|e| e.to_string())),
        SessionsCommand::Export { id } => sessions
            .read(&id, true)
            .map_err(cli_error)
            .and_then(|s| export(&s, &mut out).map_err(|e| e.to_string())),
        SessionsCommand::Delete { id } => delete(&sessions, &id),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.contains("Broken pipe") => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "agent-server sessions: {err}");
            ExitCode::FAILURE
        }
    }
}

fn delete(sessions: &Sessions, id: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(sessions.delete(id)).map_err(cli_error)
}

/// A session error in the words of the command line (the protocol's words name methods).
fn cli_error(err: SessionError) -> String {
    match err {
        SessionError::NotFound(id) => format!(
            "no stored session `{id}`; `agent-server sessions list --all` shows the stored sessions"
        ),
        other => other.to_string(),
    }
}

fn list(sessions: &Sessions, json: bool, all: bool, out: &mut dyn Write) -> Result<(), String> {
    let archived: &[bool] = if all { &[false, true] } else { &[false] };
    for &archived in archived {
        let mut params = ListSessionsParams {
            stored: Some(true),
            limit: Some(500),
            archived: Some(archived),
            ..ListSessionsParams::default()
        };
        loop {
            let (page, next) = sessions.list_page(&params).map_err(|e| e.to_string())?;
            for session in &page {
                print_row(session, json, out).map_err(|e| e.to_string())?;
            }
            match next {
                Some(cursor) => params.cursor = Some(cursor),
                None => break,
            }
        }
    }
    Ok(())
}

fn print_row(session: &SessionInfo, json: bool, out: &mut dyn Write) -> std::io::Result<()> {
    if json {
        let line = serde_json::to_string(session).map_err(std::io::Error::other)?;
        return writeln!(out, "{line}");
    }
    writeln!(
        out,
        "{}  {}  {:>4} turns  {}{}  ({})",
        session.session_id,
        session.updated_at,
        session.turn_count,
        session.title.as_deref().unwrap_or("(untitled)"),
        if session.archived { "  [archived]" } else { "" },
        session.cwd
    )
}

fn export(session: &SessionWithTurns, out: &mut dyn Write) -> std::io::Result<()> {
    let line = serde_json::to_string(&session.session).map_err(std::io::Error::other)?;
    writeln!(out, "{line}")?;
    for turn in &session.turns {
        let line = serde_json::to_string(turn).map_err(std::io::Error::other)?;
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn show(session: &SessionWithTurns, out: &mut dyn Write) -> std::io::Result<()> {
    let info = &session.session;
    writeln!(
        out,
        "session {}: {}",
        info.session_id,
        info.title.as_deref().unwrap_or("(untitled)")
    )?;
    writeln!(
        out,
        "cwd {}, model {}, updated {}",
        info.cwd, info.model, info.updated_at
    )?;
    for turn in &session.turns {
        writeln!(out, "── turn {} ({:?})", turn.turn_id, turn.status)?;
        for input in &turn.input {
            match input {
                InputItem::Text { text } => writeln!(out, "user: {text}")?,
                InputItem::Image { url } => writeln!(out, "user: [image {url}]")?,
                InputItem::LocalImage { path } => writeln!(out, "user: [image {path}]")?,
            }
        }
        for item in &turn.items {
            show_item(item, out)?;
        }
        if let Some(error) = &turn.error {
            writeln!(out, "error ({:?}): {}", error.kind, error.message)?;
        }
    }
    Ok(())
}

fn show_item(item: &Item, out: &mut dyn Write) -> std::io::Result<()> {
    match item {
        Item::AgentMessage { text, .. } => writeln!(out, "assistant: {text}"),
        Item::Reasoning { summary, .. } if !summary.is_empty() => {
            writeln!(out, "thinking: {}", summary.join(" "))
        }
        Item::Reasoning { .. } => Ok(()),
        Item::CommandExecution {
            command,
            exit_code,
            status,
            ..
        } => match exit_code {
            Some(code) => writeln!(out, "$ {}  (exit code {code})", command.join(" ")),
            None => writeln!(out, "$ {}  ({status:?})", command.join(" ")),
        },
        Item::FileChange {
            changes, status, ..
        } => {
            for change in changes {
                writeln!(out, "patch {:?}: {} ({status:?})", change.kind, change.path)?;
            }
            Ok(())
        }
        Item::ToolCall { name, status, .. } => writeln!(out, "tool {name} ({status:?})"),
        Item::ContextSummary { text, .. } => writeln!(out, "(earlier work summarised: {text})"),
        Item::McpToolCall {
            server,
            tool,
            status,
            ..
        } => writeln!(out, "mcp {server}/{tool} ({status:?})"),
    }
}
