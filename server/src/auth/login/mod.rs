//! ChatGPT browser login: OAuth 2.0 authorization code with PKCE, through a loopback server.
//!
//! [`prepare`] binds the port and builds the authorize URL (so the caller can answer at
//! once); [`Flow::run`] then waits for the browser, exchanges the code, has the caller save
//! the tokens, and shuts the server down, however the login ends.

mod exchange;
mod pages;
mod pkce;
mod server;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::StatusCode;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::AuthError;
use super::claims::Claims;
use crate::secret::Secret;
use exchange::{CodeTokens, Exchange};
use pkce::{AuthorizeRequest, Pkce};
use server::{CallbackServer, Event};

/// How long the server waits for the browser to fetch `/success` after a good callback.
const SUCCESS_LINGER: Duration = Duration::from_secs(5);
/// Callbacks waiting for the flow; a handful is plenty for one browser.
const EVENT_QUEUE: usize = 8;

/// What a login needs from the settings.
#[derive(Debug, Clone)]
pub(crate) struct LoginOptions {
    /// The HTTP client for the token requests.
    pub http: reqwest::Client,
    /// The OAuth issuer.
    pub issuer: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The `originator` parameter.
    pub originator: String,
    /// The configured callback port, if any.
    pub port: Option<u16>,
    /// How long the login may stay pending.
    pub timeout: Duration,
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

/// A login whose server is listening, before anyone waits for it.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The URL to open in a browser.
    pub auth_url: String,
    /// The callback URL.
    pub redirect_uri: String,
    options: LoginOptions,
    pkce: Pkce,
    server: CallbackServer,
    events: mpsc::Receiver<Event>,
}

/// Binds the callback server and builds the authorize URL.
pub(crate) async fn prepare(options: &LoginOptions) -> Result<Prepared, AuthError> {
    let listener = server::bind(options.port).await?;
    let port = listener
        .local_addr()
        .map_err(AuthError::LoginServer)?
        .port();
    let redirect_uri = format!("http://localhost:{port}/auth/callback");
    let pkce = Pkce::generate();
    let state = pkce::new_state();
    let auth_url = AuthorizeRequest {
        issuer: &options.issuer,
        client_id: &options.client_id,
        redirect_uri: &redirect_uri,
        challenge: &pkce.challenge,
        state: &state,
        originator: &options.originator,
    }
    .url();
    let (sender, events) = mpsc::channel(EVENT_QUEUE);
    let server = CallbackServer::start(listener, state, sender);
    Ok(Prepared {
        auth_url,
        redirect_uri,
        options: options.clone(),
        pkce,
        server,
        events,
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
            deadline: Instant::now() + self.options.timeout,
            prepared: self,
            cancel,
            reason,
        }
    }
}

/// A pending login, waiting for the browser.
#[derive(Debug)]
pub(crate) struct Flow {
    prepared: Prepared,
    cancel: CancellationToken,
    reason: Arc<OnceLock<String>>,
    deadline: Instant,
}

/// Why the wait for a callback ended early.
enum Interrupted {
    Cancelled,
    TimedOut,
}

impl Flow {
    /// Waits for the browser, saves the login with `save`, and stops the server. Returns the
    /// error shown to the client when the login did not succeed.
    pub(crate) async fn run<S, F>(mut self, save: S) -> Result<(), String>
    where
        S: FnOnce(NewLogin) -> F,
        F: Future<Output = Result<(), String>>,
    {
        let result = self.wait_for_callback(save).await;
        if result.is_ok() {
            self.linger().await;
        }
        self.prepared.server.shutdown().await;
        result
    }

    async fn wait_for_callback<S, F>(&mut self, save: S) -> Result<(), String>
    where
        S: FnOnce(NewLogin) -> F,
        F: Future<Output = Result<(), String>>,
    {
        loop {
            let event = tokio::select! {
                () = self.cancel.cancelled() => return Err(self.message(Interrupted::Cancelled)),
                () = tokio::time::sleep_until(self.deadline) => return Err(self.message(Interrupted::TimedOut)),
                event = self.prepared.events.recv() => event,
            };
            match event {
                None => {
                    return Err(
                        "the login callback server stopped unexpectedly: start the login again"
                            .to_owned(),
                    );
                }
                // A stale tab may ask for the page before any callback; it changes nothing.
                Some(Event::SuccessServed) => {}
                Some(Event::Denied {
                    error,
                    description,
                    reply,
                }) => {
                    let message = match description {
                        Some(d) if !d.is_empty() => {
                            format!("the sign-in was not completed: {error}: {d}")
                        }
                        _ => format!("the sign-in was not completed: {error}"),
                    };
                    let _ = reply.send(server::page(
                        StatusCode::BAD_REQUEST,
                        pages::failure(&message),
                    ));
                    return Err(message);
                }
                Some(Event::Code { code, reply }) => {
                    // Only the network part may be interrupted: once saving starts it finishes,
                    // so a cancelled login never leaves a half-reported write behind.
                    let exchanged = tokio::select! {
                        result = self.exchange(&code) => result,
                        () = self.cancel.cancelled() => Err(self.message(Interrupted::Cancelled)),
                        () = tokio::time::sleep_until(self.deadline) => Err(self.message(Interrupted::TimedOut)),
                    };
                    let result = match exchanged {
                        Ok(new_login) => save(new_login).await,
                        Err(e) => Err(e),
                    };
                    let response = match &result {
                        Ok(()) => server::redirect_to_success(),
                        Err(message) => {
                            server::page(StatusCode::BAD_GATEWAY, pages::failure(message))
                        }
                    };
                    let _ = reply.send(response);
                    return result;
                }
            }
        }
    }

    /// After a success, keeps serving until the browser has fetched `/success` (or briefly).
    async fn linger(&mut self) {
        let until = Instant::now() + SUCCESS_LINGER;
        loop {
            let event = tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep_until(until) => return,
                event = self.prepared.events.recv() => event,
            };
            match event {
                None | Some(Event::SuccessServed) => return,
                // A second callback (a reload) gets the success page too: the login is done.
                Some(Event::Code { reply, .. } | Event::Denied { reply, .. }) => {
                    let _ = reply.send(server::redirect_to_success());
                }
            }
        }
    }

    /// Exchanges the code for tokens and, when the account allows it, the id token for an
    /// API key.
    async fn exchange(&self, code: &Secret) -> Result<NewLogin, String> {
        let options = &self.prepared.options;
        let exchange = Exchange {
            http: &options.http,
            issuer: &options.issuer,
            client_id: &options.client_id,
        };
        let tokens = exchange
            .code(
                code,
                &self.prepared.redirect_uri,
                &self.prepared.pkce.verifier,
            )
            .await?;
        let claims = Claims::decode(tokens.id_token.expose()).map_err(|e| {
            format!(
                "the id_token the issuer returned could not be read ({e}): try logging in again"
            )
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

    fn message(&self, why: Interrupted) -> String {
        match why {
            Interrupted::Cancelled => self
                .reason
                .get()
                .cloned()
                .unwrap_or_else(|| "the login was cancelled".to_owned()),
            Interrupted::TimedOut => format!(
                "the login timed out after {} seconds without a sign-in: start it again",
                self.prepared.options.timeout.as_secs()
            ),
        }
    }
}
