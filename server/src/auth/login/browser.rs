//! The browser way to get the code: OAuth 2.0 authorization code with PKCE, delivered to a
//! loopback callback server.

use std::time::Duration;

use hyper::StatusCode;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pkce::{self, AuthorizeRequest, Pkce};
use super::server::{self, CallbackServer, Event, Reply};
use super::{Grant, LoginOptions, LoginPrompt, pages};
use crate::auth::AuthError;

/// How long the server waits for the browser to fetch `/success` after a good callback.
const SUCCESS_LINGER: Duration = Duration::from_secs(5);
/// Callbacks waiting for the flow; a handful is plenty for one browser.
const EVENT_QUEUE: usize = 8;

/// A listening callback server and the PKCE pair of its login.
#[derive(Debug)]
pub(super) struct Browser {
    redirect_uri: String,
    pkce: Pkce,
    server: CallbackServer,
    events: mpsc::Receiver<Event>,
    /// The browser waiting for the outcome of the code it delivered.
    waiting: Option<oneshot::Sender<Reply>>,
}

/// Binds the callback server and builds the authorize URL.
pub(super) async fn prepare(options: &LoginOptions) -> Result<(LoginPrompt, Browser), AuthError> {
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
    let prompt = LoginPrompt::Browser {
        auth_url,
        redirect_uri: redirect_uri.clone(),
    };
    Ok((
        prompt,
        Browser {
            redirect_uri,
            pkce,
            server,
            events,
            waiting: None,
        },
    ))
}

impl Browser {
    /// Waits for a callback with the right `state`: a code, or the issuer's error.
    pub(super) async fn next_grant(&mut self) -> Result<Grant, String> {
        loop {
            match self.events.recv().await {
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
                    self.waiting = Some(reply);
                    return Ok(Grant {
                        code,
                        verifier: self.pkce.verifier.clone(),
                        redirect_uri: self.redirect_uri.clone(),
                    });
                }
            }
        }
    }

    /// Answers the waiting browser, lingers for its `/success` request after a success, and
    /// stops the server (its port is free when this returns).
    pub(super) async fn finish(mut self, result: &Result<(), String>, cancel: &CancellationToken) {
        if let Some(reply) = self.waiting.take() {
            let response = match result {
                Ok(()) => server::redirect_to_success(),
                Err(message) => server::page(StatusCode::BAD_GATEWAY, pages::failure(message)),
            };
            let _ = reply.send(response);
        }
        if result.is_ok() {
            self.linger(cancel).await;
        }
        self.server.shutdown().await;
    }

    /// After a success, keeps serving until the browser has fetched `/success` (or briefly).
    async fn linger(&mut self, cancel: &CancellationToken) {
        let until = Instant::now() + SUCCESS_LINGER;
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep_until(until) => return,
                event = self.events.recv() => event,
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
}
