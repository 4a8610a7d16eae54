//! `initialize` and `authenticate`.

use std::io::Write;
use std::sync::Arc;

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::schema::{
    AgentCapabilities, AuthMethod, AuthMethodAgent, AuthenticateRequest, AuthenticateResponse,
    Implementation, InitializeRequest, InitializeResponse, McpCapabilities, PromptCapabilities,
    SessionCapabilities, SessionCloseCapabilities, SessionListCapabilities,
    SessionResumeCapabilities,
};
use agent_server_schema::auth::{AuthMode, LoginFlow};
use agent_server_schema::rpc::ErrorKind;

use super::{Agent, error};

/// Auth method ids offered in `initialize`.
pub(crate) const CHATGPT: &str = "chatgpt";
pub(crate) const API_KEY: &str = "openai-api-key";

/// Answers `initialize`: what this agent can do and how to log in.
pub(crate) fn initialize(agent: &Agent, request: &InitializeRequest) -> InitializeResponse {
    if let Some(info) = &request.client_info {
        agent
            .link
            .set_client(format!("{}/{}", info.name, info.version));
    }
    let capabilities = AgentCapabilities::new()
        .load_session(true)
        .prompt_capabilities(PromptCapabilities::new().image(true).embedded_context(true))
        .mcp_capabilities(McpCapabilities::new().http(true))
        .session_capabilities(
            SessionCapabilities::new()
                .list(SessionListCapabilities::new())
                .resume(SessionResumeCapabilities::new())
                .close(SessionCloseCapabilities::new()),
        );
    InitializeResponse::new(ProtocolVersion::V1)
        .agent_capabilities(capabilities)
        .auth_methods(vec![
            AuthMethod::Agent(
                AuthMethodAgent::new(CHATGPT, "Log in with ChatGPT").description(
                    "Opens a browser to sign in with your ChatGPT account (Plus, Pro, Team, Enterprise)"
                        .to_string(),
                ),
            ),
            AuthMethod::Agent(
                AuthMethodAgent::new(API_KEY, "Use OPENAI_API_KEY").description(
                    "Uses the OPENAI_API_KEY environment variable of the agent process".to_string(),
                ),
            ),
        ])
        .agent_info(Implementation::new("agent-server", env!("CARGO_PKG_VERSION")))
}

/// Runs the login `request` names to its end.
pub(crate) async fn authenticate(
    agent: Arc<Agent>,
    request: AuthenticateRequest,
) -> Result<AuthenticateResponse, agent_client_protocol::Error> {
    let status = agent
        .auth
        .status(false, false)
        .await
        .map_err(|e| error(ErrorKind::Internal, e.to_string()))?;
    match &*request.method_id.0 {
        API_KEY => {
            if status.auth_mode == Some(AuthMode::ApiKey) {
                return Ok(AuthenticateResponse::new());
            }
            Err(error(
                ErrorKind::AuthRequired,
                "OPENAI_API_KEY is not set for the agent: set it in the environment the editor starts `agent-server acp` with (e.g. `env` in Zed's agent_servers entry), or choose the ChatGPT login",
            ))
        }
        CHATGPT => {
            if status.auth_mode == Some(AuthMode::Chatgpt) && status.error.is_none() {
                return Ok(AuthenticateResponse::new());
            }
            chatgpt_login(&agent).await?;
            Ok(AuthenticateResponse::new())
        }
        other => Err(agent_client_protocol::Error::new(
            ErrorKind::InvalidParams.code(),
            format!("unknown auth method `{other}`; use `{CHATGPT}` or `{API_KEY}`"),
        )
        .data(
            serde_json::json!({"kind": ErrorKind::InvalidParams, "field": "methodId",
            "expected": format!("`{CHATGPT}` or `{API_KEY}`")}),
        )),
    }
}

/// The browser login: opens the system browser, prints the URL on stderr for when it cannot,
/// and waits for the callback (or the login's timeout).
async fn chatgpt_login(agent: &Agent) -> Result<(), agent_client_protocol::Error> {
    let started = agent
        .auth
        .start_login(LoginFlow::Browser)
        .await
        .map_err(|e| {
            error(
                e.error_kind(),
                format!("the ChatGPT login could not start: {e}"),
            )
        })?;
    let done = agent.logins.wait(&started.login_id);
    let Some(url) = started.auth_url().map(str::to_string) else {
        agent.auth.cancel_login(&started.login_id).await;
        return Err(error(
            ErrorKind::Internal,
            "the browser login started without a URL to open; try again",
        ));
    };
    let _ = writeln!(
        std::io::stderr(),
        "agent-server: to log in with ChatGPT, open this URL in a browser: {url}"
    );
    tokio::task::spawn_blocking(move || {
        if let Err(err) = webbrowser::open(&url) {
            tracing::warn!(%err, "could not open a browser; open the logged URL by hand");
        }
    });
    let failed = |reason: String| {
        error(
            ErrorKind::AuthRequired,
            format!("the ChatGPT login failed: {reason}; try again"),
        )
    };
    // The auth layer times the login out itself and reports it; the extra second only guards
    // against a report that never comes.
    let limit = agent.auth.settings().login_timeout + std::time::Duration::from_secs(1);
    match tokio::time::timeout(limit, done).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(reason))) => Err(failed(reason)),
        Ok(Err(_)) => Err(failed("the login was abandoned".into())),
        Err(_) => {
            agent.auth.cancel_login(&started.login_id).await;
            Err(failed("it timed out".into()))
        }
    }
}
