//! The set of sessions loaded in this process: create, submit, interrupt, list, close, shut
//! down. Stored sessions (resume, fork, read, archive, delete) are in `durable.rs`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::ClientLink;
use super::context::ContextState;
use super::durable::{Settings, check_id};
use super::history::History;
use super::input::{InputError, to_user_message};
use super::settings::{SessionSettings, TurnOverrides};
use super::worker::{Meta, Session, SteerError, Steered, TurnInput};
use crate::config::{Config, check_http_url, check_mcp_server_name};
use crate::gate::ReplyGate;
use crate::mcp::{McpManager, McpServerConfig, McpTransportConfig};
use crate::model::auth::UpstreamAuth;
use crate::model::{ModelCatalog, RateLimitTracker, resolve_provider};
use crate::store::{LazyStore, SessionRow, StoreError};
use agent_server_schema::mcp::{McpHttpServerSpec, McpServerSpec, McpStdioServerSpec};
use agent_server_schema::session::{
    InputItem, NewSessionParams, Session as SessionInfo, SteerParams, SubmitParams,
};

/// Why a session call failed; the api layer maps each to its contract error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// No session has that id.
    #[error("no session `{0}`; create one with session/new or list them with session/list")]
    NotFound(String),
    /// No running or queued turn has that id.
    #[error("no running or queued turn `{0}` in this session")]
    TurnNotFound(String),
    /// The provider needs OpenAI auth and none is available.
    #[error("{0}")]
    AuthRequired(String),
    /// `session/steer` could not add the input.
    #[error("{0}")]
    Steer(#[from] SteerError),
    /// A param is wrong.
    #[error("{message}")]
    InvalidParams {
        /// The params field at fault (`cwd`, `input[].path`).
        field: String,
        /// What the field should hold.
        expected: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The session is stored but not loaded in this process.
    #[error("session `{0}` is not loaded in this process; load it with session/resume first")]
    NotLoaded(String),
    /// Another live process has the session loaded.
    #[error(
        "session `{id}` is loaded by another agent-server process{}; close it there (or wait for that process to end), or fork it with session/fork",
        .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse {
        /// The session.
        id: String,
        /// The other process, when known.
        pid: Option<u32>,
    },
    /// The store cannot be opened, read or written.
    #[error("{0}; sessions with ephemeral:true (or --ephemeral) work without the store")]
    Store(StoreError),
}

impl SessionError {
    pub(crate) fn invalid_params(field: &str, expected: &str, message: String) -> Self {
        Self::InvalidParams {
            field: field.to_string(),
            expected: expected.to_string(),
            message,
        }
    }

    /// The error of a store call about session `id`.
    pub(crate) fn store(id: &str, err: StoreError) -> Self {
        match err {
            StoreError::InUse(pid) => SessionError::InUse {
                id: id.to_string(),
                pid,
            },
            StoreError::BadCursor => Self::invalid_params(
                "cursor",
                "a nextCursor returned by session/list",
                err.to_string(),
            ),
            err => SessionError::Store(err),
        }
    }
}

/// The open sessions of the server.
pub struct Sessions {
    config: Config,
    auth: Option<Arc<dyn UpstreamAuth>>,
    http: reqwest::Client,
    link: Arc<dyn ClientLink>,
    mcp: Arc<McpManager>,
    open: Mutex<Vec<Arc<Session>>>,
    /// The rate limits every session's model calls record (one view per process).
    rate_limits: RateLimitTracker,
    /// The home's store, opened on first use.
    pub(crate) store: LazyStore,
    /// Where ephemeral sessions keep their turns while loaded.
    pub(crate) memory: LazyStore,
    catalog: ModelCatalog,
    /// `config.models`, shared by every session.
    model_tables: Arc<std::collections::BTreeMap<String, crate::config::ModelConfig>>,
}

impl Sessions {
    /// An empty set of sessions over the home's store.
    pub fn new(
        config: Config,
        auth: Option<Arc<dyn UpstreamAuth>>,
        http: reqwest::Client,
        link: Arc<dyn ClientLink>,
        mcp: Arc<McpManager>,
    ) -> Self {
        let store = LazyStore::new(config.home.clone());
        Self::with_store(config, auth, http, link, mcp, store)
    }

    /// An empty set of sessions over `store` (tests pass an in-memory one).
    pub fn with_store(
        config: Config,
        auth: Option<Arc<dyn UpstreamAuth>>,
        http: reqwest::Client,
        link: Arc<dyn ClientLink>,
        mcp: Arc<McpManager>,
        store: LazyStore,
    ) -> Self {
        Self {
            catalog: ModelCatalog::new(http.clone()),
            model_tables: Arc::new(config.models.clone()),
            config,
            auth,
            http,
            link,
            mcp,
            open: Mutex::new(Vec::new()),
            rate_limits: RateLimitTracker::default(),
            store,
            memory: LazyStore::memory(),
        }
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn mcp(&self) -> Arc<McpManager> {
        Arc::clone(&self.mcp)
    }

    pub(crate) fn model_tables(
        &self,
    ) -> Arc<std::collections::BTreeMap<String, crate::config::ModelConfig>> {
        Arc::clone(&self.model_tables)
    }

    pub(crate) fn auth(&self) -> Option<Arc<dyn UpstreamAuth>> {
        self.auth.clone()
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) fn link(&self) -> Arc<dyn ClientLink> {
        Arc::clone(&self.link)
    }

    /// The session loaded here with this id, if any.
    pub(crate) fn find(&self, id: &str) -> Option<Arc<Session>> {
        self.lock().iter().find(|s| s.id == id).cloned()
    }

    /// Adds a loaded session.
    pub(crate) fn insert(&self, session: Arc<Session>) {
        self.lock().push(session);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Session>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The latest rate limits any session's model calls saw.
    pub fn rate_limits(&self) -> &RateLimitTracker {
        &self.rate_limits
    }

    /// Finds a loaded session; a stored one that is not loaded here says to resume it.
    pub fn get(&self, id: &str) -> Result<Arc<Session>, SessionError> {
        if let Some(session) = self.find(id) {
            return Ok(session);
        }
        let stored = check_id(id).is_ok()
            && self
                .store
                .get()
                .ok()
                .and_then(|store| store.get(id).ok().flatten())
                .is_some();
        if stored {
            Err(SessionError::NotLoaded(id.to_string()))
        } else {
            Err(SessionError::NotFound(id.to_string()))
        }
    }

    /// Creates a session; fails with `AuthRequired` when its provider needs OpenAI auth and none is available.
    pub async fn create(&self, params: NewSessionParams) -> Result<Arc<Session>, SessionError> {
        let config = &self.config;
        let cwd = session_cwd(params.cwd)?;
        let mcp_servers = mcp_servers(params.mcp_servers.unwrap_or_default())?;
        let provider_id = params
            .model_provider
            .unwrap_or_else(|| config.model_provider.clone());
        let provider = resolve_provider(config, &provider_id).map_err(|e| {
            SessionError::invalid_params("modelProvider", "a configured provider id", e.to_string())
        })?;
        if provider.needs_openai_auth() && config.sse_fixture.is_none() {
            self.check_auth().await?;
        }
        let stored = Settings {
            model: params.model.unwrap_or_else(|| config.model.clone()),
            model_provider: provider_id,
            approval_policy: params.approval_policy.unwrap_or(config.approval_policy),
            sandbox: params.sandbox.unwrap_or(config.sandbox),
            reasoning_effort: params.reasoning_effort.unwrap_or(config.reasoning_effort),
            instructions: params.instructions.filter(|i| !i.trim().is_empty()),
        };
        let ephemeral = params.ephemeral.unwrap_or(config.ephemeral);
        let lazy = if ephemeral { &self.memory } else { &self.store };
        let id = uuid::Uuid::new_v4().to_string();
        let store = lazy.get().map_err(|e| SessionError::store(&id, e))?;
        let lease = store.lease(&id).map_err(|e| SessionError::store(&id, e))?;
        let row = SessionRow {
            id: id.clone(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            updated_at: String::new(),
            cwd: cwd.display().to_string(),
            title: None,
            archived: false,
            settings: stored.to_value(),
            forked_from: None,
            turn_count: 0,
            running: false,
            last_seq: 0,
            context: None,
        };
        let row = store
            .create(&row)
            .map_err(|e| SessionError::store(&id, e))?;
        let meta = Meta {
            updated_at: row.updated_at.clone(),
            ..Meta::default()
        };
        let session = self.build(
            &row,
            stored,
            store,
            lease,
            meta,
            History::default(),
            ContextState::default(),
        )?;
        tracing::info!(session_id = %session.id, cwd = %session.settings().cwd.display(), ephemeral, "session created");
        self.mcp.start_session(&session.id, mcp_servers);
        self.insert(Arc::clone(&session));
        Ok(session)
    }

    /// Whether a login or key exists; a due refresh is left to the first model call, so that
    /// its failure ends that turn (`loginRequired`) rather than the session's creation.
    async fn check_auth(&self) -> Result<(), SessionError> {
        let Some(auth) = &self.auth else {
            return Err(SessionError::AuthRequired(not_logged_in()));
        };
        match auth.mode().await {
            Some(_) => Ok(()),
            None => Err(SessionError::AuthRequired(not_logged_in())),
        }
    }

    /// Queues a turn (creating a session with defaults when no id is given). The turn's events
    /// wait for `gate`, which opens when the reply has been written.
    pub async fn submit(
        &self,
        params: SubmitParams,
        gate: ReplyGate,
    ) -> Result<(String, String), SessionError> {
        let items = input_items(params.input.clone(), params.text.clone())?;
        let output_schema = match params.output_schema.clone() {
            None => None,
            Some(schema @ serde_json::Value::Object(_)) => Some(schema),
            Some(_) => {
                return Err(SessionError::invalid_params(
                    "outputSchema",
                    "a JSON Schema object",
                    "outputSchema must be a JSON object (a JSON Schema such as {\"type\":\"object\",…}); \
                     send an object or leave it out"
                        .to_string(),
                ));
            }
        };
        // Checked before a session is created or anything is queued.
        let existing = params
            .session_id
            .as_deref()
            .map(|id| self.get(id))
            .transpose()?;
        let base = existing.as_ref().map(|s| s.settings());
        let overrides = self.check_overrides(&params, base.as_deref()).await?;
        let session = match existing {
            Some(session) => session,
            None => self.create(NewSessionParams::default()).await?,
        };
        let settings = if overrides.is_empty() {
            None
        } else {
            // Per-turn settings become the session's own, so they are stored before the turn
            // is queued (a resumed session goes on with them).
            self.store_overrides(&session, &overrides)?;
            Some(session.settings().with(overrides))
        };
        let cwd = settings
            .as_ref()
            .map_or_else(|| session.settings().cwd.clone(), |s| s.cwd.clone());
        let message = to_user_message(&items, &cwd).map_err(|err| {
            SessionError::invalid_params(
                err.field(),
                "a readable image file or a data:/https: URL",
                err.to_string(),
            )
        })?;
        let turn_id = session.submit(
            TurnInput::User(message),
            items,
            gate,
            settings,
            output_schema,
        );
        Ok((session.id.clone(), turn_id))
    }

    /// Checks the per-turn settings of a submit against the session's settings (`base`; `None`
    /// for a session about to be made with the defaults): a relative `cwd` is taken from the
    /// session's, and a `model` must be on the provider's list when it has one.
    async fn check_overrides(
        &self,
        params: &SubmitParams,
        base: Option<&SessionSettings>,
    ) -> Result<TurnOverrides, SessionError> {
        let cwd = match &params.cwd {
            Some(cwd) => {
                let relative_to = base.map(|b| b.cwd.clone());
                Some(turn_cwd(cwd, relative_to)?)
            }
            None => None,
        };
        if let Some(model) = &params.model {
            let provider_id = base.map_or(self.config.model_provider.as_str(), |b| &b.provider_id);
            self.check_model(provider_id, model).await?;
        }
        Ok(TurnOverrides {
            model: params.model.clone(),
            reasoning_effort: params.reasoning_effort,
            approval_policy: params.approval_policy,
            sandbox: params.sandbox,
            cwd,
        })
    }

    /// A model asked for per turn: not empty, and on the provider's list when it has one.
    async fn check_model(&self, provider_id: &str, model: &str) -> Result<(), SessionError> {
        if model.trim().is_empty() {
            return Err(SessionError::invalid_params(
                "model",
                "a model id",
                "model is empty; pass a model id from model/list or leave it out".to_string(),
            ));
        }
        let provider = resolve_provider(&self.config, provider_id).map_err(|e| {
            SessionError::invalid_params("model", "a model of a usable provider", e.to_string())
        })?;
        self.catalog
            .check(&self.config, &provider, model)
            .await
            .map_err(|e| {
                SessionError::invalid_params("model", "a model the provider lists", e.to_string())
            })
    }

    /// Adds input to a session's running turn (`session/steer`); returns that turn's id.
    pub fn steer(&self, params: SteerParams) -> Result<String, SessionError> {
        if params.text.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(SessionError::invalid_params(
                "text",
                "non-empty text",
                "text is empty; steer with the words to add, or send nothing".to_string(),
            ));
        }
        let items = input_items(params.input, params.text)?;
        let session = self.get(&params.session_id)?;
        let message = to_user_message(&items, &session.settings().cwd).map_err(|err| {
            SessionError::invalid_params(
                err.field(),
                "a readable image file or a data:/https: URL",
                err.to_string(),
            )
        })?;
        let steered = Steered { message, items };
        Ok(session.steer(params.expected_turn_id.as_deref(), steered)?)
    }

    /// Queues a compaction of a session's conversation as a turn of its own; returns its id.
    pub fn compact(&self, session_id: &str, gate: ReplyGate) -> Result<String, SessionError> {
        let session = self.get(session_id)?;
        Ok(session.submit(TurnInput::Compact, Vec::new(), gate, None, None))
    }

    /// Interrupts a session's running turn and, without `turn_id`, every queued one.
    pub fn interrupt(&self, id: &str, turn_id: Option<&str>) -> Result<(), SessionError> {
        let session = self.get(id)?;
        if session.interrupt(turn_id) {
            Ok(())
        } else {
            Err(SessionError::TurnNotFound(
                turn_id.unwrap_or_default().to_string(),
            ))
        }
    }

    /// Every model a client may pick (`model/list`).
    pub async fn list_models(&self) -> Vec<agent_server_schema::models::Model> {
        self.catalog.list(&self.config).await
    }

    /// Every open session, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        self.lock().iter().map(|s| info(s)).collect()
    }

    /// Interrupts and unloads a session (it stays stored; an ephemeral one is forgotten);
    /// returns once its last `turnCompleted` is sent and stored.
    pub async fn close(&self, id: &str) -> Result<(), SessionError> {
        let session = {
            let mut open = self.lock();
            let index = open
                .iter()
                .position(|s| s.id == id)
                .ok_or_else(|| SessionError::NotFound(id.to_string()))?;
            open.remove(index)
        };
        session.interrupt(None);
        session.wait_idle().await;
        session.unload();
        self.mcp.stop_session(id).await;
        Ok(())
    }

    /// Interrupts every turn and waits until each has sent its `turnCompleted`.
    pub async fn interrupt_all(&self) {
        let sessions: Vec<_> = self.lock().clone();
        for session in &sessions {
            session.interrupt(None);
        }
        futures::future::join_all(sessions.iter().map(|s| s.wait_idle())).await;
    }

    /// Leaves the store's file whole for the next process (a checkpoint of its WAL), once every
    /// turn has ended.
    pub fn flush_store(&self) {
        if let Some(store) = self.store.opened() {
            store.checkpoint();
        }
    }

    /// Waits until every session is idle with its events sent (turns run to their end).
    pub async fn wait_all_idle(&self) {
        let sessions: Vec<_> = self.lock().clone();
        futures::future::join_all(sessions.iter().map(|s| s.wait_idle())).await;
    }
}

/// Checks the `mcpServers` of `session/new`, `session/resume` and `session/fork` and turns
/// them into server configs (default timeouts, no filters).
pub fn mcp_servers(
    specs: Vec<McpServerSpec>,
) -> Result<Vec<(String, McpServerConfig)>, SessionError> {
    let invalid = |message: String| {
        SessionError::invalid_params(
            "mcpServers",
            "a list of {name, command, args?, env?, cwd?} or {name, url, headers?}",
            message,
        )
    };
    let mut servers: Vec<(String, McpServerConfig)> = Vec::with_capacity(specs.len());
    for spec in specs {
        let name = spec.name().to_string();
        check_mcp_server_name(&name).map_err(invalid)?;
        if servers.iter().any(|(n, _)| *n == name) {
            return Err(invalid(format!(
                "two MCP servers are named `{name}`; give each a distinct name"
            )));
        }
        let transport = match spec {
            McpServerSpec::Stdio(McpStdioServerSpec {
                command,
                args,
                env,
                cwd,
                ..
            }) => {
                if command.trim().is_empty() {
                    return Err(invalid(format!(
                        "the MCP server `{name}` has an empty `command`; name the program to run"
                    )));
                }
                McpTransportConfig::Stdio {
                    command,
                    args,
                    env,
                    cwd: cwd.map(PathBuf::from),
                }
            }
            McpServerSpec::Http(McpHttpServerSpec { url, headers, .. }) => {
                check_http_url(&url).map_err(|e| invalid(format!("MCP server `{name}`: {e}")))?;
                McpTransportConfig::Http {
                    url,
                    bearer_token_env_var: None,
                    headers,
                }
            }
        };
        servers.push((name, McpServerConfig::new(transport)));
    }
    Ok(servers)
}

fn not_logged_in() -> String {
    "this provider needs OpenAI auth and none is available: set OPENAI_API_KEY, call auth/loginApiKey or auth/loginChatGPT, or run `agent-server login`".into()
}

/// The session's working directory: `cwd` (relative to the process's) when given, which must
/// be an existing directory, else the process's.
/// The input of a submit or steer: exactly one of a non-empty `input` and `text`.
fn input_items(
    input: Option<Vec<InputItem>>,
    text: Option<String>,
) -> Result<Vec<InputItem>, SessionError> {
    match (input, text) {
        (Some(items), None) if !items.is_empty() => Ok(items),
        (None, Some(text)) => Ok(vec![InputItem::Text { text }]),
        _ => Err(SessionError::invalid_params(
            "input",
            "either `text` or a non-empty `input`",
            InputError::Empty.to_string(),
        )),
    }
}

/// A per-turn `cwd`: an existing directory; a relative one is taken from `relative_to` (the
/// session's cwd), else from the server's.
fn turn_cwd(cwd: &str, relative_to: Option<PathBuf>) -> Result<PathBuf, SessionError> {
    let path = PathBuf::from(cwd);
    if path.is_absolute() {
        return session_cwd(Some(cwd.to_string()));
    }
    match relative_to {
        Some(base) => session_cwd(Some(base.join(path).display().to_string())).map_err(|_| {
            SessionError::invalid_params(
                "cwd",
                "an existing directory",
                format!("cwd `{cwd}` is not an existing directory under the session's cwd; pass a directory that exists"),
            )
        }),
        None => session_cwd(Some(cwd.to_string())),
    }
}

pub(crate) fn session_cwd(cwd: Option<String>) -> Result<PathBuf, SessionError> {
    let Some(cwd) = cwd else {
        return Ok(std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")));
    };
    let path = PathBuf::from(&cwd);
    let path = if path.is_absolute() {
        path
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    if !path.is_dir() {
        return Err(SessionError::invalid_params(
            "cwd",
            "an existing directory",
            format!("cwd `{cwd}` is not an existing directory; pass a directory that exists"),
        ));
    }
    Ok(path)
}

/// The wire view of a loaded session.
pub fn info(session: &Session) -> SessionInfo {
    let settings = session.settings();
    let meta = session.meta();
    SessionInfo {
        session_id: session.id.clone(),
        cwd: settings.cwd.display().to_string(),
        model: settings.model.clone(),
        model_provider: settings.provider_id.clone(),
        approval_policy: settings.approval_policy,
        sandbox: settings.sandbox,
        created_at: session.created_at.clone(),
        status: session.status(),
        title: meta.title,
        updated_at: meta.updated_at,
        ephemeral: session.ephemeral,
        archived: false,
        loaded: true,
        forked_from: meta.forked_from,
        turn_count: meta.turn_count,
        instruction_sources: session.instruction_sources(),
    }
}
