//! Stored sessions: resume, fork, read, list the store, archive, delete, retitle. These are
//! session-layer functions, so every front door (the native api, ACP) loads and lists the same way.

use std::sync::Arc;

use agent_server_schema::session::{
    ApprovalPolicy, ListSessionsParams, ReasoningEffort, SandboxMode, Session as SessionInfo,
    SessionOverrides, SessionStatus, SessionWithTurns, Turn, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::events::EventSink;
use super::instructions::BASE_INSTRUCTIONS;
use super::manager::{SessionError, Sessions, info, resolve_cwd};
use super::record::Recorder;
use super::recovery;
use super::turn::Conversation;
use super::worker::{Meta, Session, SessionParts};
use crate::model::{ClientSettings, ModelClient, resolve_provider};
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

    fn with(mut self, overrides: &SessionOverrides) -> Self {
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
        if let Some(extra) = &overrides.instructions {
            self.instructions = Some(extra.clone()).filter(|i| !i.trim().is_empty());
        }
        self
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
    fn disk(&self, id: &str) -> Result<Store, SessionError> {
        self.store.get().map_err(|e| SessionError::store(id, e))
    }

    /// Makes a loaded session from its stored row, settings and history.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site per way of loading a session"
    )]
    pub(crate) fn build(
        &self,
        row: &SessionRow,
        settings: Settings,
        store: Store,
        lease: Option<Lease>,
        meta: Meta,
        history: Vec<Value>,
        total: Usage,
    ) -> Result<Arc<Session>, SessionError> {
        let provider = resolve_provider(self.config(), &settings.model_provider).map_err(|e| {
            SessionError::InvalidParams(
                "modelProvider".into(),
                "a configured provider id".into(),
                e.to_string(),
            )
        })?;
        let client = ModelClient::new(
            ClientSettings::from_config(self.config()),
            provider,
            self.auth(),
            self.http().clone(),
        );
        let instructions = match &settings.instructions {
            Some(extra) => format!("{BASE_INSTRUCTIONS}\n\n{extra}"),
            None => BASE_INSTRUCTIONS.to_string(),
        };
        let ephemeral = !store.is_durable();
        let recorder = Arc::new(Recorder::new(store, row.id.clone(), row.last_seq));
        let conversation = Conversation::restored(history, total, Arc::clone(&recorder));
        let sink = EventSink::spawn(
            row.id.clone(),
            self.link(),
            row.last_seq,
            Some(Arc::clone(&recorder)),
        );
        Ok(Session::new(SessionParts {
            id: row.id.clone(),
            cwd: row.cwd.clone().into(),
            model: settings.model,
            provider_id: settings.model_provider,
            approval_policy: settings.approval_policy,
            sandbox: settings.sandbox,
            reasoning_effort: settings.reasoning_effort,
            instructions,
            shell_timeout: std::time::Duration::from_millis(self.config().shell_timeout_ms),
            created_at: row.created_at.clone(),
            ephemeral,
            extra_instructions: settings.instructions,
            recorder,
            lease,
            meta,
            conversation,
            client,
            sink,
            link: self.link(),
        }))
    }

    /// Loads a stored session into this process (`session/resume`).
    pub async fn resume(
        &self,
        id: &str,
        overrides: &SessionOverrides,
    ) -> Result<SessionWithTurns, SessionError> {
        check_id(id)?;
        if let Some(session) = self.find(id) {
            let turns = session
                .recorder
                .store()
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
            Some(cwd) => resolve_cwd(Some(cwd))?.display().to_string(),
            None => row.cwd.clone(),
        };
        let settings = Settings::from_row(&row)?.with(overrides);
        store
            .update_settings(id, &cwd, &settings.to_value())
            .map_err(err)?;
        self.load(store, lease, id).await
    }

    /// Loads a stored session whose lease is held: repairs a turn a dead process left running,
    /// then builds the session from its turns and history.
    async fn load(
        &self,
        store: Store,
        lease: Option<Lease>,
        id: &str,
    ) -> Result<SessionWithTurns, SessionError> {
        let err = |e| SessionError::store(id, e);
        let row = store
            .get(id)
            .map_err(err)?
            .ok_or_else(|| SessionError::NotFound(id.to_string()))?;
        let mut turns = store.turns(id).map_err(err)?;
        let mut history = store.history(id).map_err(err)?;
        recovery::repair(&store, id, &mut turns, &mut history).map_err(err)?;
        let settings = Settings::from_row(&row)?;
        let meta = Meta {
            title: row.title.clone(),
            updated_at: row.updated_at.clone(),
            turn_count: row.turn_count,
            forked_from: row.forked_from.clone(),
        };
        let total = turn_usage(&turns);
        let session = self.build(&row, settings, store, lease, meta, history, total)?;
        tracing::info!(session_id = %id, turns = turns.len(), "session loaded");
        self.insert(Arc::clone(&session));
        Ok(SessionWithTurns {
            session: info(&session),
            turns,
        })
    }

    /// Creates and loads a stored copy of a session's turns up to `turn_id` (`session/fork`).
    pub async fn fork(
        &self,
        source: &str,
        turn_id: Option<&str>,
        overrides: &SessionOverrides,
    ) -> Result<SessionWithTurns, SessionError> {
        check_id(source)?;
        let store = self.disk(source)?;
        let err = |e| SessionError::store(source, e);
        let Some(src) = store.get(source).map_err(err)? else {
            return Err(SessionError::NotFound(source.to_string()));
        };
        let id = uuid::Uuid::new_v4().to_string();
        let lease = store.lease(&id).map_err(err)?;
        let cwd = match &overrides.cwd {
            Some(cwd) => resolve_cwd(Some(cwd))?.display().to_string(),
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
        self.load(store, lease, &id).await
    }

    /// A session and (with `with_turns`) its turns, loaded anywhere or nowhere; loads nothing.
    pub fn read(&self, id: &str, with_turns: bool) -> Result<SessionWithTurns, SessionError> {
        check_id(id)?;
        let err = |e| SessionError::store(id, e);
        let (session, store, live) = match self.find(id) {
            Some(loaded) => (info(&loaded), loaded.recorder.store().clone(), true),
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
        Ok(SessionWithTurns { session, turns })
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
            return Err(SessionError::InvalidParams(
                "limit".into(),
                format!("a number from 1 to {MAX_PAGE}"),
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
            return Err(SessionError::InvalidParams(
                "title".into(),
                "a non-empty title".into(),
                "the title is empty; send some text".into(),
            ));
        }
        let loaded = self.find(id);
        let store = match &loaded {
            Some(session) => session.recorder.store().clone(),
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
    })
}
