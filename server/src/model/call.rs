//! One model call as a state machine: connect, stream, and retry or give up, per the
//! contract's failure policy. Every wait races the cancellation token.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::auth::UpstreamCredentials;
use super::client::Shared;
use super::connect::{Attempt, credential_failure, open};
use super::error::ModelError;
use super::event::ResponseEvent;
use super::failure::Failure;
use super::request::ModelRequest;
use super::retry::backoff;
use super::sse::AttemptStream;

/// Where the call stands.
enum Phase {
    /// About to open a connection (or the transcript).
    Connect,
    /// Waiting before the next attempt.
    Wait(Duration),
    /// Reading the events of an open attempt.
    Streaming(AttemptStream),
    /// Finished: the stream ends once the queue is drained.
    Done,
}

/// Which retry budget a failure counts against.
#[derive(Clone, Copy)]
enum Budget {
    Http,
    Stream,
}

/// The state of one model call.
pub(crate) struct Call {
    shared: Arc<Shared>,
    request: ModelRequest,
    cancel: CancellationToken,
    fixture: Option<PathBuf>,
    phase: Phase,
    /// Items to yield before doing anything else (a `Retrying`, a final error).
    queue: VecDeque<Result<ResponseEvent, ModelError>>,
    /// HTTP retries spent on the current stream attempt.
    http_retries: u32,
    /// Stream retries spent on this call.
    stream_retries: u32,
    /// Whether the one 401 recovery of this call was used.
    recovered: bool,
    /// Credentials for the next attempt instead of asking auth (set by a recovery).
    next_creds: Option<UpstreamCredentials>,
}

impl Call {
    pub(crate) fn new(
        shared: Arc<Shared>,
        request: ModelRequest,
        cancel: CancellationToken,
        fixture: Option<PathBuf>,
    ) -> Self {
        Self {
            shared,
            request,
            cancel,
            fixture,
            phase: Phase::Connect,
            queue: VecDeque::new(),
            http_retries: 0,
            stream_retries: 0,
            recovered: false,
            next_creds: None,
        }
    }

    /// The next item of the call's stream, or `None` when it is over.
    pub(crate) async fn next(&mut self) -> Option<Result<ResponseEvent, ModelError>> {
        let cancel = self.cancel.clone();
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(item);
            }
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => return None,
                Phase::Wait(delay) => {
                    // Rare waits are boxed so the future of this method, made anew for every
                    // streamed event, stays small (see `ModelClient::stream`).
                    let sleep = Box::pin(tokio::time::sleep(delay));
                    let slept = cancel.run_until_cancelled(sleep).await;
                    match slept {
                        Some(()) => self.phase = Phase::Connect,
                        None => self.fail(ModelError::Interrupted),
                    }
                }
                Phase::Connect => {
                    let creds = self.next_creds.take();
                    let attempt = Box::pin(open(
                        &self.shared,
                        &self.request,
                        self.fixture.as_ref(),
                        creds,
                    ));
                    match cancel.run_until_cancelled(attempt).await {
                        None => self.fail(ModelError::Interrupted),
                        Some(Attempt::Open(events)) => self.phase = Phase::Streaming(events),
                        Some(Attempt::Failed(failure)) => self.on_failure(failure, Budget::Http),
                        Some(Attempt::Unauthorized { rejected, message }) => {
                            Box::pin(self.on_unauthorized(rejected, message)).await;
                        }
                    }
                }
                Phase::Streaming(mut events) => {
                    let idle = self.shared.provider.stream_idle_timeout;
                    let next = tokio::time::timeout(idle, events.next());
                    match cancel.run_until_cancelled(next).await {
                        None => self.fail(ModelError::Interrupted),
                        Some(Ok(Some(Ok(event)))) => {
                            let event = match event {
                                ResponseEvent::RateLimits(seen) => ResponseEvent::RateLimits(
                                    Box::new(self.shared.settings.rate_limits.record(&seen)),
                                ),
                                other => other,
                            };
                            if !event.is_terminal() {
                                self.phase = Phase::Streaming(events);
                            }
                            return Some(Ok(event));
                        }
                        Some(Ok(Some(Err(failure)))) => self.on_failure(failure, Budget::Stream),
                        Some(Ok(None)) => self.on_failure(
                            Failure::retryable("the model stream closed before response.completed"),
                            Budget::Stream,
                        ),
                        Some(Err(_elapsed)) => self.on_failure(
                            Failure::retryable(&format!(
                                "the model stream sent nothing for {} ms",
                                idle.as_millis()
                            )),
                            Budget::Stream,
                        ),
                    }
                }
            }
        }
    }

    /// Ends the call with `error`; a usage limit carries the rate limits known now.
    fn fail(&mut self, mut error: ModelError) {
        if let ModelError::UsageLimitReached { rate_limits, .. } = &mut error {
            *rate_limits = self.shared.settings.rate_limits.latest().map(Box::new);
        }
        self.queue.push_back(Err(error));
        self.phase = Phase::Done;
    }

    /// Retries within `budget` (announcing it first) or gives up.
    fn on_failure(&mut self, failure: Failure, budget: Budget) {
        let (message, hint, exhausted) = match failure {
            Failure::Fatal(error) => return self.fail(error),
            Failure::Retry {
                message,
                delay,
                exhausted,
            } => (message, delay, exhausted),
        };
        let provider = &self.shared.provider;
        let (spent, max) = match budget {
            Budget::Http => (&mut self.http_retries, provider.request_max_retries),
            Budget::Stream => (&mut self.stream_retries, provider.stream_max_retries),
        };
        if *spent >= max {
            return self.fail(exhausted);
        }
        *spent += 1;
        let attempt = *spent;
        if let Budget::Stream = budget {
            // A new stream attempt gets the whole HTTP budget again.
            self.http_retries = 0;
        }
        let delay = hint.unwrap_or_else(|| backoff(self.shared.settings.backoff_base, attempt));
        tracing::warn!(attempt, max, delay_ms = delay.as_millis() as u64, %message, "model call retrying");
        self.queue.push_back(Ok(ResponseEvent::Retrying {
            attempt,
            max_attempts: max,
            delay,
            message,
        }));
        self.phase = Phase::Wait(delay);
    }

    /// A 401: recover the credentials once and retry at once; a second 401 is final.
    async fn on_unauthorized(&mut self, rejected: Option<UpstreamCredentials>, message: String) {
        let (Some(rejected), Some(auth), false) =
            (rejected, self.shared.auth.clone(), self.recovered)
        else {
            let provider = &self.shared.provider;
            let hint = match &provider.env_key {
                Some(var) if provider.bearer.is_some() => format!("check the API key in {var}"),
                _ if provider.requires_auth => "log in again".to_string(),
                _ => format!(
                    "set env_key for model_providers.{} in config.toml to send a key",
                    provider.id
                ),
            };
            return self.fail(ModelError::Unauthorized(format!(
                "the model endpoint rejected the credentials (HTTP 401): {message}; {hint}"
            )));
        };
        self.recovered = true;
        let recovered = self
            .cancel
            .run_until_cancelled(auth.recover_unauthorized(&rejected))
            .await;
        match recovered {
            None => self.fail(ModelError::Interrupted),
            Some(Ok(creds)) => {
                self.next_creds = Some(creds);
                self.phase = Phase::Connect;
            }
            Some(Err(err)) => self.on_failure(credential_failure(err), Budget::Http),
        }
    }
}
