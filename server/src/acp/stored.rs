//! `session/load`, `session/resume` and `session/list`: the stored sessions, through the same
//! session-layer calls the native `session/resume` and `session/list {stored}` use.

use std::path::Path;

use agent_client_protocol::v1::schema::{
    ListSessionsRequest, ListSessionsResponse, LoadSessionRequest, LoadSessionResponse, McpServer,
    ResumeSessionRequest, ResumeSessionResponse, SessionConfigOption, SessionInfo,
    SessionModeState,
};
use agent_server_schema::rpc::ErrorKind;
use agent_server_schema::session::{ListSessionsParams, SessionOverrides, SessionStatus, Turn};

use super::session::mcp_specs;
use super::settings::{Mode, Settings};
use super::updates::{self, replay};
use super::{Agent, lock, session_error};

type Reply<T> = Result<T, agent_client_protocol::Error>;

/// A stored session loaded here, with what its result offers.
struct Opened {
    turns: Vec<Turn>,
    modes: SessionModeState,
    options: Vec<SessionConfigOption>,
}

impl Agent {
    /// `session/load`: loads the session, replays its stored turns as `session/update`s, then
    /// answers with its modes and config options.
    pub(crate) async fn load_session(
        &self,
        request: LoadSessionRequest,
    ) -> Reply<LoadSessionResponse> {
        let id = request.session_id.0.to_string();
        let opened = self
            .open_stored(&id, &request.cwd, &request.mcp_servers)
            .await?;
        let plan = self.sessions.last_plan(&id).await.map_err(session_error)?;
        // The plan as it stands, after the turns (the store keeps no plan history per turn).
        let last = plan.map(|steps| vec![updates::plan(&steps)]);
        for updates in opened.turns.iter().map(replay).chain(last) {
            if !self.link.send_updates(&id, updates).await {
                tracing::debug!(session_id = %id, "the client left during a session/load replay");
                break;
            }
        }
        Ok(LoadSessionResponse::new()
            .modes(opened.modes)
            .config_options(opened.options))
    }

    /// `session/resume`: loads the session without replaying it.
    pub(crate) async fn resume_session(
        &self,
        request: ResumeSessionRequest,
    ) -> Reply<ResumeSessionResponse> {
        let id = request.session_id.0.to_string();
        let opened = self
            .open_stored(&id, &request.cwd, &request.mcp_servers)
            .await?;
        Ok(ResumeSessionResponse::new()
            .modes(opened.modes)
            .config_options(opened.options))
    }

    /// `session/list`: a page of the store (every process's sessions, newest first), filtered
    /// by exact `cwd`; `nextCursor` pages on.
    pub(crate) fn list_sessions(
        &self,
        request: &ListSessionsRequest,
    ) -> Reply<ListSessionsResponse> {
        let params = ListSessionsParams {
            stored: Some(true),
            cursor: request.cursor.clone(),
            cwd: request.cwd.as_ref().map(|cwd| cwd.display().to_string()),
            ..ListSessionsParams::default()
        };
        let (sessions, next_cursor) = self.sessions.list_page(&params).map_err(session_error)?;
        let sessions = sessions
            .into_iter()
            .map(|s| {
                SessionInfo::new(s.session_id, s.cwd)
                    .title(s.title)
                    .updated_at(Some(s.updated_at).filter(|at| !at.is_empty()))
            })
            .collect();
        Ok(ListSessionsResponse::new(sessions).next_cursor(next_cursor))
    }

    /// Loads a stored session here (in `cwd`, with the client's MCP servers) through the session
    /// layer's resume; one already loaded here is taken as it is, unless a turn is running in
    /// it. Its settings become the ACP settings of its next prompts.
    async fn open_stored(&self, id: &str, cwd: &Path, mcp: &[McpServer]) -> Reply<Opened> {
        let servers = mcp_specs(mcp)?;
        if let Ok(session) = self.sessions.get(id)
            && session.status() == SessionStatus::Running
        {
            return Err(busy(id));
        }
        let overrides = SessionOverrides {
            cwd: Some(cwd.display().to_string()),
            ..SessionOverrides::default()
        };
        // Checks the MCP servers before it loads anything, and starts them with the session.
        let resumed = self
            .sessions
            .resume(id, &overrides, servers)
            .await
            .map_err(session_error)?;
        let session = self.sessions.get(id).map_err(session_error)?;
        let current = session.settings();
        let settings = lock(&self.settings)
            .entry(id.to_string())
            .or_insert_with(|| Settings {
                mode: Mode::from_policy(current.approval_policy, current.sandbox),
                model: current.model.clone(),
                effort: current.reasoning_effort,
            })
            .clone();
        let (modes, options) = self.offer(id, &settings).await;
        Ok(Opened {
            turns: resumed.turns,
            modes,
            options,
        })
    }
}

/// A load or resume of a session whose turn is running in this process.
fn busy(id: &str) -> agent_client_protocol::Error {
    agent_client_protocol::Error::new(
        ErrorKind::SessionInUse.code(),
        format!(
            "session `{id}` is open in this agent and a prompt is running in it; wait for the prompt's answer (or send session/cancel), then load it again"
        ),
    )
    .data(serde_json::json!({"kind": ErrorKind::SessionInUse, "pid": std::process::id()}))
}
