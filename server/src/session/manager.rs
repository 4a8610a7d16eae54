//! The set of open sessions: create, submit, interrupt, list, close, shut down.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agent_server_schema::session::{
    InputItem, NewSessionParams, Session as SessionInfo, SubmitParams,
};
use tokio_util::sync::CancellationToken;

use super::ClientLink;
use super::context::agents_md::DocSettings;
use super::context::environment::login_shell_name;
use super::events::EventSink;
use super::input::{InputError, to_user_message};
use super::instructions::BASE_INSTRUCTIONS;
use super::worker::{Session, SessionParts};
use crate::config::Config;
use crate::model::auth::UpstreamAuth;
use crate::model::{ClientSettings, ModelClient, resolve_provider};

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
    /// A param is wrong: field, expectation, message.
    #[error("{2}")]
    InvalidParams(String, String, String),
}

/// The open sessions of the server.
pub struct Sessions {
    config: Config,
    auth: Option<Arc<dyn UpstreamAuth>>,
    http: reqwest::Client,
    link: Arc<dyn ClientLink>,
    open: Mutex<Vec<Arc<Session>>>,
}

impl Sessions {
    /// An empty set of sessions.
    pub fn new(
        config: Config,
        auth: Option<Arc<dyn UpstreamAuth>>,
        http: reqwest::Client,
        link: Arc<dyn ClientLink>,
    ) -> Self {
        Self {
            config,
            auth,
            http,
            link,
            open: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Session>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Finds a session.
    pub fn get(&self, id: &str) -> Result<Arc<Session>, SessionError> {
        self.lock()
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .ok_or_else(|| SessionError::NotFound(id.to_string()))
    }

    /// Creates a session; fails with `AuthRequired` when its provider needs OpenAI auth and none is available.
    pub async fn create(&self, params: NewSessionParams) -> Result<Arc<Session>, SessionError> {
        let config = &self.config;
        let cwd = match params.cwd {
            Some(cwd) => {
                let path = PathBuf::from(&cwd);
                let path = if path.is_absolute() {
                    path
                } else {
                    std::env::current_dir().unwrap_or_default().join(path)
                };
                if !path.is_dir() {
                    return Err(SessionError::InvalidParams(
                        "cwd".into(),
                        "an existing directory".into(),
                        format!(
                            "cwd `{cwd}` is not an existing directory; pass a directory that exists"
                        ),
                    ));
                }
                path
            }
            None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        };
        let provider_id = params
            .model_provider
            .unwrap_or_else(|| config.model_provider.clone());
        let provider = resolve_provider(config, &provider_id).map_err(|e| {
            SessionError::InvalidParams(
                "modelProvider".into(),
                "a configured provider id".into(),
                e.to_string(),
            )
        })?;
        if provider.requires_auth && provider.bearer.is_none() && config.sse_fixture.is_none() {
            self.check_auth().await?;
        }
        let approval_policy = params.approval_policy.unwrap_or(config.approval_policy);
        let sandbox = params.sandbox.unwrap_or(config.sandbox);
        let reasoning_effort = params.reasoning_effort.unwrap_or(config.reasoning_effort);
        let instructions = match params.instructions {
            Some(extra) if !extra.trim().is_empty() => format!("{BASE_INSTRUCTIONS}\n\n{extra}"),
            _ => BASE_INSTRUCTIONS.to_string(),
        };
        let id = uuid::Uuid::new_v4().to_string();
        let client = ModelClient::new(
            ClientSettings::from_config(config),
            provider,
            self.auth.clone(),
            self.http.clone(),
        );
        let session = Session::new(SessionParts {
            sink: EventSink::spawn(id.clone(), Arc::clone(&self.link)),
            id,
            cwd,
            model: params.model.unwrap_or_else(|| config.model.clone()),
            provider_id,
            approval_policy,
            sandbox,
            reasoning_effort,
            instructions,
            shell_timeout: std::time::Duration::from_millis(config.shell_timeout_ms),
            client,
            link: Arc::clone(&self.link),
            doc_settings: DocSettings {
                home: config.home.clone(),
                max_bytes: config.project_doc_max_bytes,
                fallback_filenames: config.project_doc_fallback_filenames.clone(),
            },
            shell_name: login_shell_name(std::env::var("SHELL").ok().as_deref()),
        });
        tracing::info!(session_id = %session.id, cwd = %session.cwd.display(), "session created");
        self.lock().push(Arc::clone(&session));
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
    /// wait for `start_after`, which fires when the reply has been written.
    pub async fn submit(
        &self,
        params: SubmitParams,
        start_after: CancellationToken,
    ) -> Result<(String, String), SessionError> {
        let items = match (params.input, params.text) {
            (Some(items), None) if !items.is_empty() => items,
            (None, Some(text)) => vec![InputItem::Text { text }],
            _ => {
                let err = InputError::Empty;
                return Err(SessionError::InvalidParams(
                    "input".into(),
                    "either `text` or a non-empty `input`".into(),
                    err.to_string(),
                ));
            }
        };
        let session = match params.session_id {
            Some(id) => self.get(&id)?,
            None => self.create(NewSessionParams::default()).await?,
        };
        let message = to_user_message(&items, &session.cwd).map_err(|err| {
            SessionError::InvalidParams(
                err.field().into(),
                "a readable image file or a data:/https: URL".into(),
                err.to_string(),
            )
        })?;
        let turn_id = session.submit(message, start_after);
        Ok((session.id.clone(), turn_id))
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

    /// Every open session, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        self.lock().iter().map(|s| info(s)).collect()
    }

    /// Interrupts and forgets a session; returns once its last `turnCompleted` is sent.
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

    /// Waits until every session is idle with its events sent (turns run to their end).
    pub async fn wait_all_idle(&self) {
        let sessions: Vec<_> = self.lock().clone();
        futures::future::join_all(sessions.iter().map(|s| s.wait_idle())).await;
    }
}

fn not_logged_in() -> String {
    "this provider needs OpenAI auth and none is available: set OPENAI_API_KEY, call auth/loginApiKey or auth/loginChatGPT, or run `agent-server login`".into()
}

/// The wire view of a session.
pub fn info(session: &Session) -> SessionInfo {
    SessionInfo {
        session_id: session.id.clone(),
        cwd: session.cwd.display().to_string(),
        model: session.model.clone(),
        model_provider: session.provider_id.clone(),
        approval_policy: session.approval_policy,
        sandbox: session.sandbox,
        created_at: session.created_at.clone(),
        status: session.status(),
        instruction_sources: session.instruction_sources(),
    }
}
