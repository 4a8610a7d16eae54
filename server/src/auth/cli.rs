//! The `login`, `logout` and `status` commands for people at a terminal.
//!
//! Output goes to the writer given (never straight to stdout, which is the protocol's when
//! the server runs); `main.rs` maps its subcommands onto [`AuthCommand`].

use std::io::{self, Read, Write};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{
    AuthError, AuthManager, AuthMode, AuthObserver, AuthSettings, AuthSource, AuthStatus,
    LoginFlow, LoginPrompt, LoginStarted,
};
use crate::model::rate_limits::{Usage, UsageEndpoint, read_usage};
use crate::secret::Secret;
use agent_server_schema::auth::RateLimits;

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
    /// `login --device-code`: the ChatGPT device-code login, for machines no browser can reach.
    LoginDeviceCode,
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
    /// The ChatGPT login ended without success (failed, cancelled or timed out).
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
    let manager = AuthManager::new(settings, http.clone(), observer);
    match command {
        AuthCommand::LoginApiKey => login_api_key(&manager, input, out).await,
        AuthCommand::LoginChatGpt { open_browser } => {
            let started = manager.start_login(LoginFlow::Browser).await?;
            show_browser_prompt(&started, open_browser, out)?;
            wait_for_login(&manager, &mut completions, &started, out).await
        }
        AuthCommand::LoginDeviceCode => {
            let started = manager.start_login(LoginFlow::DeviceCode).await?;
            show_device_prompt(&started, out)?;
            wait_for_login(&manager, &mut completions, &started, out).await
        }
        AuthCommand::Logout => logout(&manager, out).await,
        AuthCommand::Status { json } => status(&manager, http, json, out).await,
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

/// Shows the authorize URL and opens it in a browser when asked to.
fn show_browser_prompt(
    started: &LoginStarted,
    open_browser: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let auth_url = started.auth_url().unwrap_or_default();
    writeln!(
        out,
        "To log in with ChatGPT, open this URL in a browser:\n\n  {auth_url}\n"
    )?;
    if open_browser && let Err(e) = webbrowser::open(auth_url) {
        writeln!(
            out,
            "(Could not open a browser: {e}; open the URL yourself.)"
        )?;
    }
    Ok(())
}

/// Shows where to go and which code to type.
fn show_device_prompt(started: &LoginStarted, out: &mut dyn Write) -> Result<(), CliError> {
    if let LoginPrompt::DeviceCode {
        verification_url,
        user_code,
    } = &started.prompt
    {
        let seconds = (started.expires_at - chrono::Utc::now())
            .num_seconds()
            .max(0);
        let minutes = (seconds + 59) / 60;
        writeln!(
            out,
            "To log in with ChatGPT, open this URL in a browser on any device:\n\n  {verification_url}\n\nand enter this one-time code (it expires in {minutes} minutes):\n\n  {user_code}\n\nNever share this code with anyone."
        )?;
    }
    Ok(())
}

/// Waits for the login to end and reports the account on success.
async fn wait_for_login(
    manager: &Arc<AuthManager>,
    completions: &mut mpsc::UnboundedReceiver<Completion>,
    started: &LoginStarted,
    out: &mut dyn Write,
) -> Result<(), CliError> {
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

async fn status(
    manager: &Arc<AuthManager>,
    http: reqwest::Client,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let status = manager.status(false, false).await?;
    if json {
        let text = serde_json::to_string_pretty(&status).map_err(io::Error::other)?;
        writeln!(out, "{text}")?;
    } else {
        write_human(&status, &manager.store.path().display().to_string(), out)?;
        if status.auth_mode == Some(AuthMode::Chatgpt) {
            let endpoint = UsageEndpoint {
                http,
                auth: manager.clone(),
                chatgpt_base_url: manager.settings.chatgpt_base_url.clone(),
                originator: manager.settings.originator.clone(),
            };
            // Shown when known; a usage endpoint that cannot be read leaves the status as it is.
            match read_usage(&endpoint).await {
                Usage::Read(limits) => write_rate_limits(&limits, out)?,
                Usage::Failed(message) => tracing::debug!(%message, "no usage to show"),
                Usage::NotChatGpt => {}
            }
        }
    }
    Ok(())
}

/// The plan's limits as a few lines of text.
fn write_rate_limits(limits: &RateLimits, out: &mut dyn Write) -> io::Result<()> {
    let windows = [
        (&limits.primary, "Primary"),
        (&limits.secondary, "Secondary"),
    ];
    for (window, fallback) in windows {
        let Some(window) = window else { continue };
        let name = window_name(window.window_minutes).unwrap_or_else(|| fallback.to_owned());
        write!(out, "  {name} limit: {:.0}% used", window.used_percent)?;
        match &window.resets_at {
            Some(at) => writeln!(out, ", resets at {at}")?,
            None => writeln!(out)?,
        }
    }
    if let Some(credits) = &limits.credits {
        let balance = match (credits.unlimited, &credits.balance) {
            (true, _) => "unlimited".to_owned(),
            (false, Some(balance)) => balance.clone(),
            (false, None) if credits.has_credits => "available".to_owned(),
            (false, None) => "none".to_owned(),
        };
        writeln!(out, "  Credits: {balance}")?;
    }
    Ok(())
}

/// "5-hour", "Weekly", "30-minute" for a window length.
fn window_name(minutes: Option<i64>) -> Option<String> {
    let m = minutes.filter(|m| *m > 0)?;
    Some(match m {
        10080 => "Weekly".to_owned(),
        m if m % 1440 == 0 => format!("{}-day", m / 1440),
        m if m % 60 == 0 => format!("{}-hour", m / 60),
        m => format!("{m}-minute"),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::{jwt, settings};
    use pretty_assertions::assert_eq;
    use serde_json::json;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    async fn run_to_string(
        command: AuthCommand,
        settings: AuthSettings,
        input: &str,
    ) -> (Result<(), CliError>, String) {
        let mut out = Vec::new();
        let result = run(
            command,
            settings,
            reqwest::Client::new(),
            &mut input.as_bytes(),
            &mut out,
        )
        .await;
        (result, String::from_utf8(out).unwrap())
    }

    #[tokio::test]
    async fn api_key_login_status_and_logout() {
        let home = tempfile::tempdir().unwrap();
        let s = settings(home.path(), "http://127.0.0.1:9");
        let path = home.path().join("auth.json").display().to_string();

        let (result, out) = run_to_string(AuthCommand::Status { json: false }, s.clone(), "").await;
        assert!(result.is_ok());
        assert_eq!(
            out,
            "Not logged in: run `agent-server login` or set OPENAI_API_KEY.\n"
        );

        let (result, out) = run_to_string(AuthCommand::LoginApiKey, s.clone(), "").await;
        assert_eq!(
            result.unwrap_err().to_string(),
            AuthError::InvalidApiKey.to_string()
        );
        assert_eq!(out, "");

        let (result, out) = run_to_string(AuthCommand::LoginApiKey, s.clone(), "sk-cli\n").await;
        assert!(result.is_ok());
        assert_eq!(
            out,
            format!("Logged in with an API key (saved to {path}).\n")
        );

        let (_, out) = run_to_string(AuthCommand::Status { json: false }, s.clone(), "").await;
        assert_eq!(out, format!("Logged in with an API key from {path}.\n"));
        let (_, out) = run_to_string(AuthCommand::Status { json: true }, s.clone(), "").await;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&out).unwrap(),
            json!({"authMode": "apiKey", "source": "authFile", "email": null, "planType": null,
                   "accountId": null, "lastRefresh": null, "requiresOpenaiAuth": true, "error": null})
        );

        let (result, out) = run_to_string(AuthCommand::Logout, s, "").await;
        assert!(result.is_ok());
        assert_eq!(out, format!("Logged out ({path} removed).\n"));
        assert!(!home.path().join("auth.json").exists());
    }

    #[tokio::test]
    async fn chatgpt_status_in_words() {
        let home = tempfile::tempdir().unwrap();
        let id = jwt(
            json!({"email": "a@b.c", "https://api.openai.com/auth": {"chatgpt_plan_type": "plus"}}),
        );
        let access = jwt(json!({"exp": chrono::Utc::now().timestamp() + 3600}));
        std::fs::write(
            home.path().join("auth.json"),
            json!({"tokens": {"id_token": id, "access_token": access, "refresh_token": "r", "account_id": "acc-1"},
                   "last_refresh": "2026-11-23T10:00:00Z"})
            .to_string(),
        )
        .unwrap();
        let (_, out) = run_to_string(
            AuthCommand::Status { json: false },
            settings(home.path(), "http://127.0.0.1:9"),
            "",
        )
        .await;
        assert_eq!(
            out,
            format!(
                "Logged in with ChatGPT ({}).\n  Email: a@b.c\n  Plan: plus\n  Account: acc-1\n  Last refresh: 2026-11-23T10:00:00Z\n",
                home.path().join("auth.json").display()
            )
        );
    }

    /// Output that the test can read while the command is still running.
    struct ChannelWriter(mpsc::UnboundedSender<Vec<u8>>);

    impl Write for ChannelWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.0.send(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn browser_login_prints_the_url_waits_and_reports_the_account() {
        let home = tempfile::tempdir().unwrap();
        let issuer = MockServer::start().await;
        let id = jwt(
            json!({"email": "a@b.c", "https://api.openai.com/auth": {"chatgpt_plan_type": "plus"}}),
        );
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id_token": id, "access_token": "access", "refresh_token": "refresh"
            })))
            .expect(1)
            .mount(&issuer)
            .await;
        let (sender, mut chunks) = mpsc::unbounded_channel();
        let mut out = ChannelWriter(sender);
        let mut input = io::empty();
        let command = run(
            AuthCommand::LoginChatGpt {
                open_browser: false,
            },
            settings(home.path(), &issuer.uri()),
            reqwest::Client::new(),
            &mut input,
            &mut out,
        );
        let browser = async {
            let mut text = String::new();
            let url = loop {
                text.push_str(&String::from_utf8(chunks.recv().await.unwrap()).unwrap());
                if let Some(line) = text.lines().find(|l| l.contains("/oauth/authorize?")) {
                    break url::Url::parse(line.trim()).unwrap();
                }
            };
            let params: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
            let mut callback = url::Url::parse(&params["redirect_uri"]).unwrap();
            callback
                .query_pairs_mut()
                .extend_pairs([("code", "c"), ("state", params["state"].as_str())]);
            let status = reqwest::Client::new()
                .get(callback)
                .send()
                .await
                .unwrap()
                .status();
            (text, url, status)
        };
        let (result, (mut text, url, status)) = tokio::join!(command, browser);
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(status, 200);
        drop(out);
        while let Some(chunk) = chunks.recv().await {
            text.push_str(&String::from_utf8(chunk).unwrap());
        }
        assert_eq!(
            text,
            format!(
                "To log in with ChatGPT, open this URL in a browser:\n\n  {url}\n\nWaiting for the sign-in to finish (press Ctrl-C to cancel)...\nLogged in as a@b.c (plus plan).\n"
            )
        );
    }
}
