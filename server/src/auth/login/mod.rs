//! ChatGPT login: one state machine with two ways to get the authorization code.
//!
//! [`prepare`] does what must happen before the client can be answered: for the browser flow
//! it binds the loopback callback server and builds the authorize URL ([`browser`]); for the
//! device-code flow it asks the issuer for a user code ([`device`]). [`Flow::run`] is then the
//! same for both: wait for a code (a browser callback, or a successful poll) until cancelled
//! or timed out, exchange it at `<issuer>/oauth/token`, have the caller save the tokens, and
//! let the code source clean up (answer the browser, stop the server).

mod browser;
mod device;
mod exchange;
mod pages;
mod pkce;
mod server;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use agent_server_schema::auth::LoginFlow;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::AuthError;
use super::claims::Claims;
use crate::secret::Secret;
use exchange::{CodeTokens, Exchange};

/// What a login needs from the settings.
#[derive(Debug, Clone)]
pub(crate) struct LoginOptions {
    /// The HTTP client for the issuer's endpoints.
    pub http: reqwest::Client,
    /// The OAuth issuer.
    pub issuer: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The `originator` parameter of the authorize URL.
    pub originator: String,
    /// The configured callback port of the browser flow, if any.
    pub port: Option<u16>,
    /// How long a browser login may stay pending.
    pub browser_timeout: Duration,
    /// How long a device-code login may stay pending.
    pub device_timeout: Duration,
}

/// A successful code exchange, for the caller to save.
#[derive(Debug)]
pub(crate) struct NewLogin {
    /// The tokens the issuer returned.
    pub tokens: CodeTokens,
    /// The claims of the id token.
    pub claims: Claims,
    /// An API key obtained with the id token, when the account allows it.
    pub api_key: Option<Secret>,
}

/// An authorization code and what its exchange needs besides the client id.
#[derive(Debug)]
pub(crate) struct Grant {
    /// The authorization code.
    pub code: Secret,
    /// The PKCE verifier that goes with it.
    pub verifier: Secret,
    /// The `redirect_uri` the code was issued for.
    pub redirect_uri: String,
}

/// What the user is shown to sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginPrompt {
    /// Open `auth_url` in a browser on this machine.
    Browser {
        /// The authorize URL.
        auth_url: String,
        /// The loopback callback URL, `http://localhost:<port>/auth/callback`.
        redirect_uri: String,
    },
    /// Open `verification_url` on any device and type `user_code`.
    DeviceCode {
        /// `<issuer>/codex/device`.
        verification_url: String,
        /// The code to type.
        user_code: String,
    },
}

/// Where the authorization code comes from.
#[derive(Debug)]
enum Source {
    Browser(browser::Browser),
    Device(device::Device),
}

impl Source {
    /// Waits for the next authorization code; an `Err` ends the login with that message.
    async fn next_grant(&mut self) -> Result<Grant, String> {
        match self {
            Source::Browser(browser) => browser.next_grant().await,
            Source::Device(device) => device.next_grant().await,
        }
    }

    /// Cleans up once the login has ended with `result`.
    async fn finish(self, result: &Result<(), String>, cancel: &CancellationToken) {
        match self {
            Source::Browser(browser) => browser.finish(result, cancel).await,
            Source::Device(_) => {}
        }
    }
}

/// A login ready to run, before anyone waits for it.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// What to show the user.
    pub prompt: LoginPrompt,
    /// How long the login may stay pending.
    pub timeout: Duration,
    source: Source,
    options: LoginOptions,
}

/// Starts a login of `flow`: binds the callback server, or obtains a device code.
pub(crate) async fn prepare(
    options: &LoginOptions,
    flow: LoginFlow,
) -> Result<Prepared, AuthError> {
    let (prompt, source, timeout) = match flow {
        LoginFlow::Browser => {
            let (prompt, browser) = browser::prepare(options).await?;
            (prompt, Source::Browser(browser), options.browser_timeout)
        }
        LoginFlow::DeviceCode => {
            let (prompt, device) = device::prepare(options).await?;
            (prompt, Source::Device(device), options.device_timeout)
        }
    };
    Ok(Prepared {
        prompt,
        timeout,
        source,
        options: options.clone(),
    })
}

impl Prepared {
    /// The flow to run; `cancel` ends it, with `reason` (when set) as its error.
    pub(crate) fn into_flow(
        self,
        cancel: CancellationToken,
        reason: Arc<OnceLock<String>>,
    ) -> Flow {
        Flow {
            limits: Limits {
                deadline: Instant::now() + self.timeout,
                timeout: self.timeout,
                cancel,
                reason,
            },
            source: self.source,
            options: self.options,
        }
    }
}

/// A pending login, waiting for its code.
#[derive(Debug)]
pub(crate) struct Flow {
    source: Source,
    options: LoginOptions,
    limits: Limits,
}

/// What ends a login early: cancellation (with its reason) and the deadline.
#[derive(Debug)]
struct Limits {
    cancel: CancellationToken,
    reason: Arc<OnceLock<String>>,
    deadline: Instant,
    timeout: Duration,
}

impl Limits {
    /// Runs `work` until it ends, the login is cancelled, or its time is up.
    async fn interruptible<T>(
        &self,
        work: impl Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        tokio::select! {
            result = work => result,
            () = self.cancel.cancelled() => Err(self.cancelled()),
            () = tokio::time::sleep_until(self.deadline) => Err(format!(
                "the login timed out after {} seconds without a sign-in: start it again",
                self.timeout.as_secs()
            )),
        }
    }

    fn cancelled(&self) -> String {
        self.reason
            .get()
            .cloned()
            .unwrap_or_else(|| "the login was cancelled".to_owned())
    }
}

impl Flow {
    /// Waits for a code, exchanges it, saves the login with `save`, and lets the code source
    /// clean up. Returns the error shown to the client when the login did not succeed.
    pub(crate) async fn run<S, F>(mut self, save: S) -> Result<(), String>
    where
        S: FnOnce(NewLogin) -> F,
        F: Future<Output = Result<(), String>>,
    {
        let result = self.obtain_and_save(save).await;
        self.source.finish(&result, &self.limits.cancel).await;
        result
    }

    async fn obtain_and_save<S, F>(&mut self, save: S) -> Result<(), String>
    where
        S: FnOnce(NewLogin) -> F,
        F: Future<Output = Result<(), String>>,
    {
        let grant = self.limits.interruptible(self.source.next_grant()).await?;
        // Only the network part may be interrupted: once saving starts it finishes, so a
        // cancelled login never leaves a half-reported write behind.
        let new_login = self
            .limits
            .interruptible(exchange(&self.options, &grant))
            .await?;
        save(new_login).await
    }
}

/// Exchanges the code for tokens and, when the account allows it, the id token for an API
/// key. The same for both flows.
async fn exchange(options: &LoginOptions, grant: &Grant) -> Result<NewLogin, String> {
    let exchange = Exchange {
        http: &options.http,
        issuer: &options.issuer,
        client_id: &options.client_id,
    };
    let tokens = exchange
        .code(&grant.code, &grant.redirect_uri, &grant.verifier)
        .await?;
    let claims = Claims::decode(tokens.id_token.expose()).map_err(|e| {
        format!("the id_token the issuer returned could not be read ({e}): try logging in again")
    })?;
    let api_key = if claims.organization_id.is_some() && claims.project_id.is_some() {
        match exchange.api_key(&tokens.id_token).await {
            Ok(key) => Some(key),
            Err(error) => {
                // The login works without it; model calls use the access token.
                tracing::warn!(%error, "could not obtain an API key for the ChatGPT login");
                None
            }
        }
    } else {
        None
    };
    Ok(NewLogin {
        tokens,
        claims,
        api_key,
    })
}
