//! Stored sessions: resume, fork, read, list the store, archive, delete, retitle. These are
//! session-layer functions, so every front door (the native api, ACP) loads and lists the same way.

use std::sync::Arc;

use agent_server_schema::mcp::McpServerSpec;
use agent_server_schema::session::{
    ApprovalPolicy, ListSessionsParams, PlanStep, ReasoningEffort, SandboxMode,
    Session as SessionInfo, SessionOverrides, SessionStatus, SessionWithTurns, Turn, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::context::ContextState;
use super::context::agents_md::DocSettings;
use super::context::environment::login_shell_name;
use super::history::History;
use super::instructions::BASE_INSTRUCTIONS;
use super::manager::{SessionError, Sessions, info, mcp_servers as check_mcp_servers, session_cwd};
use super::record::Recorder;
use super::recovery;
use super::settings::{SessionSettings, TurnOverrides};
use super::worker::{Loaded, Meta, Session};
use crate::mcp::McpServerConfig;
use crate::model::{ClientSettings, ModelClient, ResponseItem, resolve_provider};
use crate::store::{Forked, Lease, ListQuery, SessionRow, Store};

/// Page size of `session/list {stored}` when none is asked for.
const DEFAULT_PAGE: u32 = 50;
/// The largest page `session/list {stored}` answers.
const MAX_PAGE: u32 = 500;

/// A session's settings as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Settings {
    pub(crate) model: String,
    pub(crate) model_provider: String,
    pub(crate) approval_policy: ApprovalPolicy,
    pub(crate) sandbox: SandboxMode,
    pub(crate) reasoning_effort: ReasoningEffort,
    /// The session's own instructions, appended to the base ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) instructions: Option<String>,
}

impl Settings {
    pub(crate) fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn from_row(row: &SessionRow) -> Result<Self, SessionError> {
        serde_json::from_value(row.settings.clone()).map_err(|e| {
            SessionError::Store(crate::store::StoreError::BadValue {
                path: "sessions.db".into(),
                reason: format!("the settings of session `{}`: {e}", row.id),
            })
        })
    }

    /// These settings with a submit's per-turn settings applied.
    fn with_turn(mut self, overrides: &TurnOverrides) -> Self {
        if let Some(model) = &overrides.model {
            self.model = model.clone();
        }
        if let Some(policy) = overrides.approval_policy {
            self.approval_policy = policy;
        }
        if let Some(sandbox) = overrides.sandbox {
            self.sandbox = sandbox;
        }
        if let Some(effort) = overrides.reasoning_effort {
            self.reasoning_effort = effort;
        }
        self
    }

    /// These settings with the overrides of a resume or fork applied (the cwd is the row's).
    fn with(self, overrides: &SessionOverrides) -> Self {
        let mut next = self.with_turn(&TurnOverrides {
            model: overrides.model.clone(),
            reasoning_effort: overrides.reasoning_effort,
            approval_policy: overrides.approval_policy,
            sandbox: overrides.sandbox,
            cwd: None,
        });
        if let Some(extra) = &overrides.instructions {
            next.instructions = Some(extra.clone()).filter(|i| !i.trim().is_empty());
        }
        next
    }
}

/// Session ids are UUIDs; anything else names no session, and is never used in a file name.
pub(crate) fn check_id(id: &str) -> Result<(), SessionError> {
    match uuid::Uuid::try_parse(id) {
        Ok(uuid) if uuid.hyphenated().to_string() == id => Ok(()),
        _ => Err(SessionError::NotFound(id.to_string())),
    }
}

fn turn_usage(turns: &[Turn]) -> Usage {
    let mut total = Usage::default();
    for turn in turns {
        total.add(&turn.usage);
    }
    total
}

impl Sessions {
    fn store_of(&self, session: &Session) -> Result<Store, SessionError> {
        match session.store() {
            Some(store) => Ok(store.clone()),
            None => self.disk(&session.id),
        }
    }

    fn disk(&self, id: &str) -> Result<Store, SessionError> {
        self.store.get().map_err(|e| SessionError::store(id, e))
    }

    /// Stores a submit's per-turn settings as the session's settings (they stay for the turns
    /// after it, and for a resume).
    pub(crate) fn store_overrides(
        &self,
        session: &Session,
        overrides: &TurnOverrides,
    ) -> Result<(), SessionError> {
        let Some(store) = session.store() else {
            return Ok(());
        };
        let id = session.id.as_str();
        let err = |e| SessionError::store(id, e);
        let Some(row) = store.get(id).map_err(err)? else {
            return Ok(());
        };
        let stored = Settings::from_row(&row)?.with_turn(overrides);
        let cwd = overrides
            .cwd
            .as_ref()
            .map_or_else(|| row.cwd.clone(), |cwd| cwd.display().to_string());
        store
            .update_settings(id, &cwd, &stored.to_value())
            .map_err(err)?;
        Ok(())
    }

    /// Makes a loaded session from its stored row, settings, history and context.
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of a session as new, resume and fork each have them"
    )]
    pub(crate) fn build(
        &self,
        row: &SessionRow,
        stored: Settings,
        store: Store,
        lease: Option<Lease>,
        meta: Meta,
        history: History,
        context: ContextState,
    ) -> Result<Arc<Session>, SessionError> {
        let config = self.config();
        let provider = resolve_provider(config, &stored.model_provider).map_err(|e| {
            SessionError::invalid_params("modelProvider", "a configured provider id", e.to_string())
        })?;
        let wire_api = provider.wire_api;
        let client = ModelClient::new(
            ClientSettings {
                rate_limits: self.rate_limits().clone(),
                ..ClientSettings::from_config(config)
            },
            provider,
            self.auth(),
            self.http().clone(),
        );
        let instructions = match &stored.instructions {
            Some(extra) => format!("{BASE_INSTRUCTIONS}\n\n{extra}").into(),
            None => BASE_INSTRUCTIONS.into(),
        };
        let settings = SessionSettings {
            cwd: row.cwd.clone().into(),
            model: stored.model,
            provider_id: stored.model_provider,
            approval_policy: stored.approval_policy,
            sandbox: stored.sandbox,
            reasoning_effort: stored.reasoning_effort,
            instructions,
            shell_timeout: std::time::Duration::from_millis(config.shell_timeout_ms),
            doc_settings: DocSettings {
                home: config.home.clone(),
                max_bytes: config.project_doc_max_bytes,
                fallback_filenames: config.project_doc_fallback_filenames.clone(),
            },
            shell_name: login_shell_name(std::env::var("SHELL").ok().as_deref()),
            model_tables: self.model_tables(),
            wire_api,
            auto_compact_token_limit: config.model_auto_compact_token_limit,
        };
        let recorder = Recorder::new(store, row.id.clone(), row.last_seq, history.items().len());
        let loaded = Loaded {
            created_at: row.created_at.clone(),
            recorder: Arc::new(recorder),
            lease,
            meta,
            history,
            context,
            last_seq: row.last_seq,
            mcp: self.mcp(),
        };
        Ok(Session::loaded(
            row.id.clone(),
            settings,
            Arc::new(client),
            self.link(),
            loaded,
        ))
    }

    /// Loads a stored session into this process (`session/resume`) and starts `mcp_servers`
    /// for it (checked first, as `session/new` does). A session already loaded here is
    /// returned as it is: its overrides and `mcp_servers` are then ignored.
    pub async fn resume(
        &self,
        id: &str,
        overrides: &SessionOverrides,
        mcp_servers: Vec<McpServerSpec>,
    ) -> Result<SessionWithTurns, SessionError> {
        check_id(id)?;
        let mcp_servers = check_mcp_servers(mcp_servers)?;
        if let Some(session) = self.find(id) {
            if !mcp_servers.is_empty() {
                tracing::info!(session_id = %id, "session/resume of a loaded session: its mcpServers are ignored");
            }
            let turns = self
                .store_of(&session)?
                .turns(id)
                .map_err(|e| SessionError::store(id, e))?;
            return Ok(SessionWithTurns {
                session: info(&session),
                turns,
            });
        }
        let store = self.disk(id)?;
        let err = |e| SessionError::store(id, e);
        if store.get(id).map_err(err)?.is_none() {
            return Err(SessionError::NotFound(id.to_string()));
        }
        let lease = store.lease(id).map_err(err)?;
        // Deleted by another process between the look-up and the lease?
        let row = store
            .get(id)
            .map_err(err)?
            .ok_or_else(|| SessionError::NotFound(id.to_string()))?;
        let cwd = match &overrides.cwd {
            Some(cwd) => session_cwd(Some(cwd.clone()))?.display().to_string(),
            None => row.cwd.clone(),
        };
        let settings = Settings::from_row(&row)?.with(overrides);
        store
            .update_settings(id, &cwd, &settings.to_value())
            .map_err(err)?;
        self.load(store, lease, id, mcp_servers).await
    }

    /// Loads a stored session whose lease is held: repairs a turn a dead process left running,
    /// then builds the session from its turns and history and starts its MCP servers (before
    /// any request can reach it).
    async fn load(
        &self,
        store: Store,
        lease: Option<Lease>,
        id: &str,
        mcp_servers: Vec<(String, McpServerConfig)>,
    ) -> Result<SessionWithTurns, SessionError> {
        let err = |e| SessionError::store(id, e);
        let row = store
            .get(id)
            .map_err(err)?
            .ok_or_else(|| SessionError::NotFound(id.to_string()))?;
        let mut turns = store.turns(id).map_err(err)?;
        let mut history: Vec<ResponseItem> = store.history(id).map_err(err)?;
        recovery::repair(&store, id, &mut turns, &mut history).map_err(err)?;
        let settings = Settings::from_row(&row)?;
        let meta = Meta {
            title: row.title.clone(),
            updated_at: row.updated_at.clone(),
            turn_count: row.turn_count,
            forked_from: row.forked_from.clone(),
        };
        let history = History::restored(history, turn_usage(&turns));
        let context: ContextState = row
            .context
            .clone()
            .and_then(|value| serde_json::from_value(value).ok())
            .unwrap_or_default();
        let session = self.build(&row, settings, store, lease, meta, history, context)?;
        tracing::info!(session_id = %id, turns = turns.len(), "session loaded");
        self.mcp().start_session(id, mcp_servers);
        self.insert(Arc::clone(&session));
        Ok(SessionWithTurns {
            session: info(&session),
            turns,
        })
    }

    /// Creates and loads a stored copy of a session's turns up to `turn_id` (`session/fork`),
    /// with `mcp_servers` (checked first) as its own MCP servers.
    pub async fn fork(
        &self,
        source: &str,
        turn_id: Option<&str>,
        overrides: &SessionOverrides,
        mcp_servers: Vec<McpServerSpec>,
    ) -> Result<SessionWithTurns, SessionError> {
        check_id(source)?;
        let mcp_servers = check_mcp_servers(mcp_servers)?;
        let store = self.disk(source)?;
        let err = |e| SessionError::store(source, e);
        let Some(src) = store.get(source).map_err(err)? else {
            return Err(SessionError::NotFound(source.to_string()));
        };
        let id = uuid::Uuid::new_v4().to_string();
        let lease = store.lease(&id).map_err(err)?;
        let cwd = match &overrides.cwd {
            Some(cwd) => session_cwd(Some(cwd.clone()))?.display().to_string(),
            None => src.cwd.clone(),
        };
        let row = SessionRow {
            id: id.clone(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            cwd,
            title: None,
            archived: false,
            settings: Settings::from_row(&src)?.with(overrides).to_value(),
            forked_from: None,
            turn_count: 0,
            running: false,
            last_seq: 0,
            updated_at: String::new(),
            context: None,
        };
        match store.fork(source, turn_id, &row).map_err(err)? {
            Forked::Done => {}
            Forked::NoSession => return Err(SessionError::NotFound(source.to_string())),
            Forked::NoTurn => {
                return Err(SessionError::TurnNotFound(
                    turn_id.unwrap_or_default().to_string(),
                ));
            }
        }
        self.load(store, lease, &id, mcp_servers).await
    }

    /// A session and (with `with_turns`) its turns, loaded anywhere or nowhere; loads nothing.
    pub fn read(&self, id: &str, with_turns: bool) -> Result<SessionWithTurns, SessionError> {
        check_id(id)?;
        let err = |e| SessionError::store(id, e);
        let loaded = self.find(id);
        let (session, store, live) = match &loaded {
            Some(loaded) => (info(loaded), self.store_of(loaded)?, true),
            None => {
                let store = self.disk(id)?;
                let row = store
                    .get(id)
                    .map_err(err)?
                    .ok_or_else(|| SessionError::NotFound(id.to_string()))?;
                let leased = row.running && store.is_leased(id);
                (row_info(&row, leased)?, store, leased)
            }
        };
        let mut turns = if with_turns {
            store.turns(id).map_err(err)?
        } else {
            Vec::new()
        };
        if !live {
            recovery::present(&mut turns);
        }
        if let Some(recorder) = loaded.as_ref().and_then(|s| s.recorder.as_ref()) {
            recorder.overlay(&mut turns);
        }
        Ok(SessionWithTurns { session, turns })
    }

    /// The plan a loaded session's model last set with `update_plan` (found in its model-facing
    /// history, so a plan from before a compaction is gone), for a client that replays the
    /// session.
    pub async fn last_plan(&self, id: &str) -> Result<Option<Vec<PlanStep>>, SessionError> {
        let session = self.get(id)?;
        let history = session.history.lock().await;
        Ok(history.items().iter().rev().find_map(|item| match item {
            ResponseItem::FunctionCall {
                name, arguments, ..
            } if name == "update_plan" => crate::tools::plan_of(arguments),
            _ => None,
        }))
    }

    /// `session/list`: the loaded sessions, or a page of the store.
    pub fn list_page(
        &self,
        params: &ListSessionsParams,
    ) -> Result<(Vec<SessionInfo>, Option<String>), SessionError> {
        if !params.stored.unwrap_or(false) {
            return Ok((self.list(), None));
        }
        let limit = params.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(SessionError::invalid_params(
                "limit",
                &format!("a number from 1 to {MAX_PAGE}"),
                format!("limit {limit} is out of range; ask for 1 to {MAX_PAGE} sessions a page"),
            ));
        }
        let store = self.disk("")?;
        let query = ListQuery {
            cursor: params.cursor.clone(),
            limit,
            cwd: params.cwd.clone(),
            archived: params.archived.unwrap_or(false),
            search: params.search.clone().filter(|s| !s.is_empty()),
        };
        let page = store.list(&query).map_err(|e| SessionError::store("", e))?;
        let mut sessions = Vec::with_capacity(page.sessions.len());
        for row in &page.sessions {
            sessions.push(match self.find(&row.id) {
                Some(loaded) => info(&loaded),
                None => row_info(row, row.running && store.is_leased(&row.id))?,
            });
        }
        Ok((sessions, page.next_cursor))
    }

    /// Archives or unarchives a stored session; archiving closes it here first and needs its
    /// lease (a session loaded by another process cannot be archived).
    pub async fn set_archived(&self, id: &str, archived: bool) -> Result<(), SessionError> {
        check_id(id)?;
        if archived && let Some(loaded) = self.find(id) {
            self.close(&loaded.id).await?;
            if loaded.ephemeral {
                return Ok(());
            }
        }
        let store = self.disk(id)?;
        let err = |e| SessionError::store(id, e);
        if store.get(id).map_err(err)?.is_none() {
            return Err(SessionError::NotFound(id.to_string()));
        }
        let _lease = if archived {
            store.lease(id).map_err(err)?
        } else {
            None
        };
        if !store.set_archived(id, archived).map_err(err)? {
            return Err(SessionError::NotFound(id.to_string()));
        }
        Ok(())
    }

    /// Removes a session from the store for good, closing it here first.
    pub async fn delete(&self, id: &str) -> Result<(), SessionError> {
        check_id(id)?;
        if let Some(loaded) = self.find(id) {
            self.close(&loaded.id).await?;
            if loaded.ephemeral {
                return Ok(());
            }
        }
        let store = self.disk(id)?;
        let err = |e| SessionError::store(id, e);
        if store.get(id).map_err(err)?.is_none() {
            return Err(SessionError::NotFound(id.to_string()));
        }
        let lease = store.lease(id).map_err(err)?;
        if !store.delete(id, lease.as_ref()).map_err(err)? {
            return Err(SessionError::NotFound(id.to_string()));
        }
        tracing::info!(session_id = %id, "session deleted");
        Ok(())
    }

    /// Sets a session's title (stored, or in memory for an ephemeral one).
    pub fn set_title(&self, id: &str, title: &str) -> Result<(), SessionError> {
        check_id(id)?;
        let title = title.trim();
        if title.is_empty() {
            return Err(SessionError::invalid_params(
                "title",
                "a non-empty title",
                "the title is empty; send some text".into(),
            ));
        }
        let loaded = self.find(id);
        let store = match &loaded {
            Some(session) => self.store_of(session)?,
            None => self.disk(id)?,
        };
        if !store
            .set_title(id, title)
            .map_err(|e| SessionError::store(id, e))?
        {
            return Err(SessionError::NotFound(id.to_string()));
        }
        if let Some(session) = loaded {
            session.set_title(title.to_string());
        }
        Ok(())
    }
}

/// The wire view of a stored session that is not loaded here; `running` when a live process
/// runs a turn in it.
fn row_info(row: &SessionRow, running: bool) -> Result<SessionInfo, SessionError> {
    let settings = Settings::from_row(row)?;
    Ok(SessionInfo {
        session_id: row.id.clone(),
        cwd: row.cwd.clone(),
        model: settings.model,
        model_provider: settings.model_provider,
        approval_policy: settings.approval_policy,
        sandbox: settings.sandbox,
        created_at: row.created_at.clone(),
        status: if running {
            SessionStatus::Running
        } else {
            SessionStatus::Idle
        },
        title: row.title.clone(),
        updated_at: row.updated_at.clone(),
        ephemeral: false,
        archived: row.archived,
        loaded: false,
        forked_from: row.forked_from.clone(),
        turn_count: row.turn_count,
        instruction_sources: row
            .context
            .clone()
            .and_then(|value| serde_json::from_value::<ContextState>(value).ok())
            .map(|context| context.sources().to_vec())
            .unwrap_or_default(),
    })
}
