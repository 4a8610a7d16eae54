//! One attempt: credentials, URL, headers and body, the HTTP exchange (or a replayed
//! transcript), and the answer turned into an event stream or a classified failure.

use std::fmt::Display;
use std::path::PathBuf;

use chrono::Utc;
use futures::{Stream, StreamExt};

use crate::config::WireApi;

use super::auth::{CredentialError, CredentialMode, UpstreamCredentials};
use super::chat_request::chat_body;
use super::chat_stream::chat_events;
use super::client::Shared;
use super::error::ModelError;
use super::event::ResponseEvent;
use super::failure::{ErrorDetails, Failure, Origin, classify};
use super::fixture::read_transcript;
use super::request::{HeaderInputs, ModelRequest, auth_parts, endpoint, headers, responses_body};
use super::retry::delay_from_headers;
use super::sse::{AttemptStream, responses_events};

/// How an attempt to open the stream went.
pub(crate) enum Attempt {
    /// The upstream answered 2xx; its events follow.
    Open(AttemptStream),
    /// It failed; retry or give up as the failure says.
    Failed(Failure),
    /// The upstream answered 401 to these credentials (`None`: not OpenAI credentials).
    Unauthorized {
        /// The credentials that were refused.
        rejected: Option<UpstreamCredentials>,
        /// What the upstream said.
        message: String,
    },
}

/// Runs one attempt. `recovered` replaces the credentials auth would give (after a 401).
pub(crate) async fn open(
    shared: &Shared,
    request: &ModelRequest,
    fixture: Option<&PathBuf>,
    recovered: Option<UpstreamCredentials>,
) -> Attempt {
    let provider = &shared.provider;
    if let Some(path) = fixture {
        return match read_transcript(path).await {
            Ok(bytes) => Attempt::Open(parse(provider.wire_api, bytes)),
            Err(error) => Attempt::Failed(Failure::Fatal(error)),
        };
    }
    let creds = match credentials(shared, recovered).await {
        Ok(creds) => creds,
        Err(failure) => return Attempt::Failed(failure),
    };
    let response = match send(shared, request, creds.as_ref()).await {
        Ok(response) => response,
        Err(failure) => return Attempt::Failed(failure),
    };
    let limits = super::rate_limits::from_headers(response.headers());
    if response.status().is_success() {
        let events = parse(provider.wire_api, response.bytes_stream());
        return Attempt::Open(match limits {
            // Announced first, so a turn shows them even if the stream then fails.
            Some(limits) => {
                futures::stream::once(async { Ok(ResponseEvent::RateLimits(Box::new(limits))) })
                    .chain(events)
                    .boxed()
            }
            None => events,
        });
    }
    if let Some(limits) = &limits {
        // A failed answer's limits matter most (a usage limit): keep them for the error.
        shared.settings.rate_limits.record(limits);
    }
    refused(shared, response, creds).await
}

/// Sends the request (URL, headers and body for the provider and the credentials) and waits
/// for the response head.
async fn send(
    shared: &Shared,
    request: &ModelRequest,
    creds: Option<&UpstreamCredentials>,
) -> Result<reqwest::Response, Failure> {
    let provider = &shared.provider;
    let mode = creds.map(|c| c.mode);
    let url =
        endpoint(provider, mode, &shared.settings.chatgpt_base_url).map_err(Failure::Fatal)?;
    let (bearer, account_id) = auth_parts(provider, creds);
    let headers = headers(
        provider,
        &HeaderInputs {
            bearer,
            account_id,
            originator: &shared.settings.originator,
            user_agent: &request.user_agent,
            session_id: &request.session_id,
        },
    );
    tracing::debug!(url = %url, provider = %provider.id, "model request");
    let post = shared.http.post(url).headers(headers);
    let post = match provider.wire_api {
        WireApi::Responses => {
            let store = shared.settings.store && mode != Some(CredentialMode::ChatGpt);
            post.json(&responses_body(request, store))
        }
        WireApi::Chat => post.json(&chat_body(request)),
    };

    // The idle timeout also bounds the wait for the response head: a server that accepts
    // the connection and never answers is as stuck as one that stops streaming.
    let idle = provider.stream_idle_timeout;
    let send = post.send();
    match tokio::time::timeout(idle, send).await {
        Err(_elapsed) => Err(Failure::retryable(&format!(
            "the model endpoint did not answer within {} ms",
            idle.as_millis()
        ))),
        Ok(Err(err)) => Err(Failure::retryable(&format!(
            "could not reach the model endpoint: {}",
            error_chain(&err.without_url())
        ))),
        Ok(Ok(response)) => Ok(response),
    }
}

/// What a non-2xx answer means: a 401 to these credentials, or a classified failure (from the
/// error body, the status and a retry delay the headers suggest).
async fn refused(
    shared: &Shared,
    response: reqwest::Response,
    creds: Option<UpstreamCredentials>,
) -> Attempt {
    let status = response.status();
    let hint = delay_from_headers(response.headers(), Utc::now());
    let idle = shared.provider.stream_idle_timeout;
    let text = match tokio::time::timeout(idle, response.text()).await {
        Ok(Ok(text)) => text,
        _ => String::new(),
    };
    let details = ErrorDetails::from_body(&text, Utc::now());
    if status.as_u16() == 401 {
        return Attempt::Unauthorized {
            rejected: creds.filter(|_| shared.provider.bearer.is_none()),
            message: details.message().unwrap_or("no error message").to_string(),
        };
    }
    Attempt::Failed(classify(details, Origin::Http(status.as_u16()), hint))
}

/// The OpenAI credentials for this attempt; `None` when the provider needs none or brings
/// its own key.
async fn credentials(
    shared: &Shared,
    recovered: Option<UpstreamCredentials>,
) -> Result<Option<UpstreamCredentials>, Failure> {
    let provider = &shared.provider;
    if !provider.needs_openai_auth() {
        return Ok(None);
    }
    if let Some(creds) = recovered {
        return Ok(Some(creds));
    }
    let Some(auth) = &shared.auth else {
        return Err(Failure::Fatal(ModelError::AuthRequired(format!(
            "model provider `{}` needs an OpenAI login: run `agent-server login` or call auth/loginApiKey",
            provider.id
        ))));
    };
    auth.credentials()
        .await
        .map(Some)
        .map_err(credential_failure)
}

/// What a credentials error means for the call.
pub(crate) fn credential_failure(error: CredentialError) -> Failure {
    match error {
        CredentialError::NotLoggedIn => Failure::Fatal(ModelError::AuthRequired(error.to_string())),
        CredentialError::Unusable(message) => Failure::Fatal(ModelError::AuthRequired(message)),
        CredentialError::LoginRequired(message) => {
            Failure::Fatal(ModelError::LoginRequired(message))
        }
        CredentialError::Transient(message) => {
            Failure::retryable(&format!("could not refresh the login: {message}"))
        }
    }
}

/// The parser for the provider's wire API.
fn parse<S, B, E>(wire_api: WireApi, bytes: S) -> AttemptStream
where
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]> + Send + 'static,
    E: Display + Send + 'static,
{
    match wire_api {
        WireApi::Responses => responses_events(bytes),
        WireApi::Chat => chat_events(bytes),
    }
}

/// An error with its causes (`error sending request: connection refused`), since reqwest's
/// own message alone rarely says what went wrong.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
