//! `session/new`, `session/close`, `session/set_mode` and `session/set_config_option`.

use agent_client_protocol::v1::schema::{
    CloseSessionRequest, CloseSessionResponse, McpServer, NewSessionRequest, NewSessionResponse,
    SessionConfigOption, SessionConfigOptionValue, SessionModeState, SetSessionConfigOptionRequest,
    SetSessionConfigOptionResponse, SetSessionModeRequest, SetSessionModeResponse,
};
use agent_server_schema::mcp::{McpHttpServerSpec, McpServerSpec, McpStdioServerSpec};
use agent_server_schema::rpc::ErrorKind;
use agent_server_schema::session::NewSessionParams;

use super::settings::{
    self, Choices, MODEL, Mode, ModelChoice, REASONING_EFFORT, Settings, effort_from_id,
};
use super::{Agent, lock, session_error};

fn invalid(field: &str, expected: &str, message: String) -> agent_client_protocol::Error {
    agent_client_protocol::Error::new(ErrorKind::InvalidParams.code(), message).data(
        serde_json::json!({"kind": ErrorKind::InvalidParams, "field": field, "expected": expected}),
    )
}

impl Agent {
    /// The models a session may switch to: the model catalog (`model/list`).
    async fn choices(&self) -> Choices {
        let models = self
            .sessions
            .list_models()
            .await
            .into_iter()
            .map(|m| ModelChoice {
                id: m.id,
                name: m.display_name,
                description: Some(m.description).filter(|d| !d.is_empty()),
                efforts: m.reasoning_efforts,
                context_window: m.context_window,
            })
            .collect();
        Choices { models }
    }

    /// Creates a session in `request.cwd`, in the mode the configuration matches.
    pub(crate) async fn new_session(
        &self,
        request: NewSessionRequest,
    ) -> Result<NewSessionResponse, agent_client_protocol::Error> {
        let mcp_servers = mcp_specs(&request.mcp_servers)?;
        let mode = Mode::from_policy(self.config.approval_policy, self.config.sandbox);
        let (approval_policy, sandbox) = mode.policy();
        let session = self
            .sessions
            .create(NewSessionParams {
                cwd: Some(request.cwd.display().to_string()),
                approval_policy: Some(approval_policy),
                sandbox: Some(sandbox),
                mcp_servers: Some(mcp_servers),
                ..NewSessionParams::default()
            })
            .await
            .map_err(session_error)?;
        let current = session.settings();
        let settings = Settings {
            mode,
            model: current.model.clone(),
            effort: current.reasoning_effort,
        };
        lock(&self.settings).insert(session.id.clone(), settings.clone());
        let (modes, options) = self.offer(&session.id, &settings).await;
        Ok(NewSessionResponse::new(session.id.clone())
            .modes(modes)
            .config_options(options))
    }

    /// The modes and config options a session result offers for `settings`; the session's
    /// `usage_update`s report its model's context window from now on.
    pub(crate) async fn offer(
        &self,
        session_id: &str,
        settings: &Settings,
    ) -> (SessionModeState, Vec<SessionConfigOption>) {
        let choices = self.choices().await;
        self.link
            .set_context_window(session_id, choices.context_window(&settings.model));
        (settings.mode.state(), settings.options(&choices))
    }

    /// Closes a session (a running turn ends `cancelled` first).
    pub(crate) async fn close_session(
        &self,
        request: CloseSessionRequest,
    ) -> Result<CloseSessionResponse, agent_client_protocol::Error> {
        let id = request.session_id.0.to_string();
        self.sessions.close(&id).await.map_err(session_error)?;
        lock(&self.settings).remove(&id);
        self.link.forget(&id);
        Ok(CloseSessionResponse::new())
    }

    /// Switches a session's approval preset for its next prompts.
    pub(crate) fn set_mode(
        &self,
        request: &SetSessionModeRequest,
    ) -> Result<SetSessionModeResponse, agent_client_protocol::Error> {
        let id = &*request.session_id.0;
        let Some(mode) = Mode::from_id(&request.mode_id.0) else {
            return Err(invalid(
                "modeId",
                "read-only, auto or full-access",
                format!(
                    "unknown mode `{}`; use read-only, auto or full-access",
                    request.mode_id.0
                ),
            ));
        };
        let mut all = lock(&self.settings);
        let settings = all
            .get_mut(id)
            .ok_or_else(|| session_error(crate::session::SessionError::NotFound(id.into())))?;
        settings.mode = mode;
        Ok(SetSessionModeResponse::new())
    }

    /// Sets the model or reasoning effort of a session's next prompts.
    pub(crate) async fn set_config_option(
        &self,
        request: &SetSessionConfigOptionRequest,
    ) -> Result<SetSessionConfigOptionResponse, agent_client_protocol::Error> {
        let id = &*request.session_id.0;
        let mut settings = self.settings(id)?;
        let choices = self.choices().await;
        let value = match &request.value {
            SessionConfigOptionValue::ValueId { value } => value.0.to_string(),
            _ => {
                return Err(invalid(
                    "value",
                    "a value id",
                    "both config options are selects: send a value id".into(),
                ));
            }
        };
        match &*request.config_id.0 {
            MODEL => {
                if !choices.models.iter().any(|m| m.id == value) {
                    let ids: Vec<&str> = choices.models.iter().map(|m| m.id.as_str()).collect();
                    return Err(invalid(
                        "value",
                        "a model id from the option's list",
                        format!("unknown model `{value}`; choose one of {}", ids.join(", ")),
                    ));
                }
                settings.model = value;
            }
            REASONING_EFFORT => match effort_from_id(&value) {
                Some(effort) if choices.efforts(&settings.model).contains(&effort) => {
                    settings.effort = effort;
                }
                _ => {
                    return Err(invalid(
                        "value",
                        "a reasoning effort from the option's list",
                        format!(
                            "unknown reasoning effort `{value}`; choose one of {}",
                            choices
                                .efforts(&settings.model)
                                .iter()
                                .map(|e| settings::effort_id(*e))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            },
            other => {
                return Err(invalid(
                    "configId",
                    "model or reasoning_effort",
                    format!(
                        "unknown config option `{other}`; use `{MODEL}` or `{REASONING_EFFORT}`"
                    ),
                ));
            }
        }
        self.link
            .set_context_window(id, choices.context_window(&settings.model));
        let options = settings.options(&choices);
        lock(&self.settings).insert(id.to_string(), settings);
        Ok(SetSessionConfigOptionResponse::new(options))
    }
}

/// The client's MCP servers as the session layer's specs (section 11): stdio and Streamable
/// HTTP; SSE servers are refused (`mcpCapabilities.sse` is false).
pub(crate) fn mcp_specs(
    servers: &[McpServer],
) -> Result<Vec<McpServerSpec>, agent_client_protocol::Error> {
    servers
        .iter()
        .map(|server| match server {
            McpServer::Stdio(stdio) => Ok(McpServerSpec::Stdio(McpStdioServerSpec {
                name: stdio.name.clone(),
                command: stdio.command.display().to_string(),
                args: stdio.args.clone(),
                env: stdio
                    .env
                    .iter()
                    .map(|v| (v.name.clone(), v.value.clone()))
                    .collect(),
                cwd: None,
            })),
            McpServer::Http(http) => Ok(McpServerSpec::Http(McpHttpServerSpec {
                name: http.name.clone(),
                url: http.url.clone(),
                headers: http
                    .headers
                    .iter()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            })),
            _ => Err(invalid(
                "mcpServers",
                "stdio or http MCP servers",
                "this agent connects to stdio and Streamable HTTP MCP servers only; pass the server with `type: \"http\"` or as a command".into(),
            )),
        })
        .collect()
}
