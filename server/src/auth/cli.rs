//! The `login`, `logout` and `status` commands for people at a terminal.
//!
//! Output goes to the writer given (never straight to stdout, which is the protocol's when
//! the server runs); `main.rs` maps its subcommands onto [`AuthCommand`].

use std::io::{self, Read, Write};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{AuthError, AuthManager, AuthMode, AuthObserver, AuthSettings, AuthSource, AuthStatus};
use crate::secret::Secret;

/// One auth command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthCommand {
    /// `login --api-key`: read a key from the input and store it.
    LoginApiKey,
    /// `login`: the ChatGPT browser login.
    LoginChatGpt {
        /// Open the authorize URL in the default browser (false with `--no-browser`).
        open_browser: bool,
    },
    /// `logout`: delete `auth.json`.
    Logout,
    /// `status`: show the credentials in use.
    Status {
        /// Print the `AuthStatus` JSON instead of text.
        json: bool,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The auth domain refused or failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Reading the key or writing the output failed.
    #[error("could not read the input or write the output: {0}")]
    Io(#[from] io::Error),
    /// The browser login ended without success.
    #[error("login failed: {0}")]
    LoginFailed(String),
}

/// Runs `command` against the home in `settings`; `input` supplies the API key.
pub async fn run(
    command: AuthCommand,
    settings: AuthSettings,
    http: reqwest::Client,
    input: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (observer, mut completions) = CompletionObserver::new();
    let manager = AuthManager::new(settings, http, observer);
    match command {
        AuthCommand::LoginApiKey => login_api_key(&manager, input, out).await,
        AuthCommand::LoginChatGpt { open_browser } => {
            login_chatgpt(&manager, &mut completions, open_browser, out).await
        }
        AuthCommand::Logout => logout(&manager, out).await,
        AuthCommand::Status { json } => status(&manager, json, out).await,
    }
}

async fn login_api_key(
    manager: &AuthManager,
    input: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut key = String::new();
    input.read_to_string(&mut key)?;
    manager.login_api_key(Secret::new(key.trim())).await?;
    writeln!(
        out,
        "Logged in with an API key (saved to {}).",
        manager.store.path().display()
    )?;
    if manager.env_key().is_some() {
        writeln!(
            out,
            "Note: OPENAI_API_KEY is set in the environment and takes precedence."
        )?;
    }
    Ok(())
}

async fn login_chatgpt(
    manager: &Arc<AuthManager>,
    completions: &mut mpsc::UnboundedReceiver<Completion>,
    open_browser: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let started = manager.start_chatgpt_login().await?;
    writeln!(
        out,
        "To log in with ChatGPT, open this URL in a browser:\n\n  {}\n",
        started.auth_url
    )?;
    if open_browser && let Err(e) = webbrowser::open(&started.auth_url) {
        writeln!(
            out,
            "(Could not open a browser: {e}; open the URL yourself.)"
        )?;
    }
    writeln!(
        out,
        "Waiting for the sign-in to finish (press Ctrl-C to cancel)..."
    )?;
    out.flush()?;
    let completion = loop {
        match completions.recv().await {
            Some(c) if c.login_id == started.login_id => break c,
            Some(_) => {}
            None => {
                return Err(CliError::LoginFailed(
                    "the login ended without a result".to_owned(),
                ));
            }
        }
    };
    if !completion.success {
        return Err(CliError::LoginFailed(
            completion
                .error
                .unwrap_or_else(|| "the login did not succeed".to_owned()),
        ));
    }
    let status = manager.status(false, false).await?;
    writeln!(
        out,
        "Logged in as {} ({} plan).",
        status.email.as_deref().unwrap_or("an unknown email"),
        status.plan_type.as_deref().unwrap_or("unknown")
    )?;
    Ok(())
}

async fn logout(manager: &AuthManager, out: &mut dyn Write) -> Result<(), CliError> {
    manager.logout().await?;
    writeln!(
        out,
        "Logged out ({} removed).",
        manager.store.path().display()
    )?;
    if manager.env_key().is_some() {
        writeln!(
            out,
            "OPENAI_API_KEY is still set in the environment and stays in use."
        )?;
    }
    Ok(())
}

async fn status(manager: &AuthManager, json: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let status = manager.status(false, false).await?;
    if json {
        let text = serde_json::to_string_pretty(&status).map_err(io::Error::other)?;
        writeln!(out, "{text}")?;
    } else {
        write_human(&status, &manager.store.path().display().to_string(), out)?;
    }
    Ok(())
}

/// The status as a few lines of text.
fn write_human(status: &AuthStatus, path: &str, out: &mut dyn Write) -> io::Result<()> {
    let source = match status.source {
        Some(AuthSource::Env) => "the OPENAI_API_KEY environment variable".to_owned(),
        Some(AuthSource::AuthFile) | None => path.to_owned(),
    };
    match status.auth_mode {
        Some(AuthMode::ApiKey) => writeln!(out, "Logged in with an API key from {source}.")?,
        Some(AuthMode::Chatgpt) => {
            writeln!(out, "Logged in with ChatGPT ({source}).")?;
            let fields = [
                ("Email", &status.email),
                ("Plan", &status.plan_type),
                ("Account", &status.account_id),
                ("Last refresh", &status.last_refresh),
            ];
            for (label, value) in fields {
                if let Some(value) = value {
                    writeln!(out, "  {label}: {value}")?;
                }
            }
        }
        None => writeln!(
            out,
            "Not logged in: run `agent-server login` or set OPENAI_API_KEY."
        )?,
    }
    if let Some(error) = &status.error {
        writeln!(out, "Problem: {error}")?;
    }
    if !status.requires_openai_auth {
        writeln!(out, "The active model provider does not need OpenAI auth.")?;
    }
    Ok(())
}

/// A login completion, as the CLI waits for it.
#[derive(Debug)]
struct Completion {
    login_id: String,
    success: bool,
    error: Option<String>,
}

/// Forwards login completions to the waiting command; status changes are not shown.
#[derive(Debug)]
struct CompletionObserver {
    sender: mpsc::UnboundedSender<Completion>,
}

impl CompletionObserver {
    fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<Completion>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Arc::new(Self { sender }), receiver)
    }
}

impl AuthObserver for CompletionObserver {
    fn status_changed(&self, _status: AuthStatus) {}

    fn login_completed(&self, login_id: &str, success: bool, error: Option<String>) {
        // The receiver lives as long as the command; a send can only fail after it returned.
        let _ = self.sender.send(Completion {
            login_id: login_id.to_owned(),
            success,
            error,
        });
    }
}
