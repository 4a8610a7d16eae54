//! Classifies upstream errors (HTTP answers, `response.failed`, `error` events) into "retry"
//! or "give up with this error", per the contract's failure policy.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::error::ModelError;
use super::retry::delay_from_message;

/// One failed attempt and what to do about it.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Worth another attempt.
    Retry {
        /// What went wrong, for the `retrying` event.
        message: String,
        /// The wait the upstream asked for, if any; else backoff applies.
        delay: Option<Duration>,
        /// The error to report when the retry budget is spent.
        exhausted: ModelError,
    },
    /// Not worth retrying.
    Fatal(ModelError),
}

impl Failure {
    /// A failure without an HTTP answer (connection, stream cut short) that is retried with
    /// backoff and reports `upstream` without a status once the budget is spent.
    pub(crate) fn retryable(message: &str) -> Self {
        Failure::Retry {
            message: message.to_string(),
            delay: None,
            exhausted: ModelError::Upstream {
                message: format!("{message}; retries exhausted"),
                http_status: None,
            },
        }
    }
}

/// Where an error came from; decides which unknown errors are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// An HTTP answer with this status.
    Http(u16),
    /// An event inside an SSE stream.
    Stream,
}

/// The fields of an upstream error object that matter here.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ErrorDetails {
    code: Option<String>,
    kind: Option<String>,
    message: Option<String>,
    plan_type: Option<String>,
    resets_at: Option<DateTime<Utc>>,
}

impl ErrorDetails {
    /// Reads an error object: `{"code","type","message",…}`, or a wrapper `{"error":{…}}`.
    pub(crate) fn from_value(value: &Value, now: DateTime<Utc>) -> Self {
        let obj = match value.get("error") {
            Some(inner) if inner.is_object() => inner,
            _ => value,
        };
        let text = |key: &str| match obj.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let resets_at = obj
            .get("resets_at")
            .and_then(Value::as_i64)
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .or_else(|| {
                let secs = obj.get("resets_in_seconds").and_then(Value::as_i64)?;
                Some(now + chrono::Duration::seconds(secs))
            });
        Self {
            code: text("code"),
            kind: text("type"),
            message: text("message"),
            plan_type: text("plan_type"),
            resets_at,
        }
    }

    /// Reads an HTTP error body; a body that is not JSON becomes the message as it is.
    pub(crate) fn from_body(body: &str, now: DateTime<Utc>) -> Self {
        match serde_json::from_str::<Value>(body) {
            Ok(value) if value.is_object() => Self::from_value(&value, now),
            _ => Self {
                message: Some(body.trim().chars().take(2000).collect())
                    .filter(|m: &String| !m.is_empty()),
                ..Self::default()
            },
        }
    }

    /// The upstream's own message, if it gave one.
    pub(crate) fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    fn is(&self, name: &str) -> bool {
        self.code.as_deref() == Some(name) || self.kind.as_deref() == Some(name)
    }
}

/// Decides what an upstream error means; `hint` is a wait from HTTP headers.
pub(crate) fn classify(details: ErrorDetails, origin: Origin, hint: Option<Duration>) -> Failure {
    let http_status = match origin {
        Origin::Http(status) => Some(status),
        Origin::Stream => None,
    };
    let upstream_text = details.message.clone().unwrap_or_else(|| {
        details
            .code
            .clone()
            .or(details.kind.clone())
            .unwrap_or_else(|| "no error message".to_string())
    });
    let message = match origin {
        Origin::Http(status) => {
            format!("the model endpoint answered HTTP {status}: {upstream_text}")
        }
        Origin::Stream => format!("the model stream failed: {upstream_text}"),
    };
    if details.is("usage_limit_reached") {
        return Failure::Fatal(ModelError::UsageLimitReached {
            message: details.message.unwrap_or_else(|| {
                "the ChatGPT usage limit is reached: wait until it resets or upgrade the plan"
                    .to_string()
            }),
            resets_at: details.resets_at,
            plan_type: details.plan_type,
            http_status,
            rate_limits: None,
        });
    }
    if details.is("insufficient_quota") {
        return Failure::Fatal(ModelError::QuotaExceeded {
            message,
            http_status,
        });
    }
    if details.is("context_length_exceeded") {
        return Failure::Fatal(ModelError::ContextWindowExceeded {
            message,
            http_status,
        });
    }
    let rate_limited = details.is("rate_limit_exceeded") || origin == Origin::Http(429);
    if rate_limited {
        let delay = hint.or_else(|| delay_from_message(&upstream_text));
        return Failure::Retry {
            exhausted: ModelError::RateLimited {
                message: format!("{message}; retries exhausted"),
                http_status,
            },
            message,
            delay,
        };
    }
    let server_side = match origin {
        Origin::Http(status) => status >= 500,
        Origin::Stream => details.is("server_error"),
    };
    if server_side {
        Failure::Retry {
            exhausted: ModelError::Upstream {
                message: format!("{message}; retries exhausted"),
                http_status,
            },
            message,
            delay: hint,
        }
    } else {
        Failure::Fatal(ModelError::Upstream {
            message,
            http_status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_760_000_000, 0).unwrap()
    }

    fn run(body: Value, origin: Origin) -> Failure {
        classify(ErrorDetails::from_value(&body, now()), origin, None)
    }

    #[test]
    fn usage_limit_reads_resets_at_or_resets_in_seconds() {
        let body = json!({"error":{"type":"usage_limit_reached","message":"You've hit your usage limit.","plan_type":"plus","resets_at":1760003600}});
        let in_secs = json!({"error":{"type":"usage_limit_reached","plan_type":"pro","resets_in_seconds":60}});
        assert_eq!(
            (run(body, Origin::Http(429)), run(in_secs, Origin::Http(429))),
            (
                Failure::Fatal(ModelError::UsageLimitReached {
                    message: "You've hit your usage limit.".into(),
                    resets_at: DateTime::from_timestamp(1_760_003_600, 0),
                    plan_type: Some("plus".into()),
                    http_status: Some(429),
                    rate_limits: None,
                }),
                Failure::Fatal(ModelError::UsageLimitReached {
                    message: "the ChatGPT usage limit is reached: wait until it resets or upgrade the plan".into(),
                    resets_at: DateTime::from_timestamp(1_760_000_060, 0),
                    plan_type: Some("pro".into()),
                    http_status: Some(429),
                    rate_limits: None,
                })
            )
        );
    }

    #[test]
    fn stream_codes() {
        let got = [
            json!({"code":"rate_limit_exceeded","message":"Slow down. Please try again in 15ms."}),
            json!({"code":"server_error","message":"oops"}),
            json!({"code":"insufficient_quota","message":"no credit"}),
            json!({"code":"invalid_prompt","message":"bad"}),
        ]
        .into_iter()
        .map(|b| run(b, Origin::Stream))
        .collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                Failure::Retry {
                    message: "the model stream failed: Slow down. Please try again in 15ms.".into(),
                    delay: Some(Duration::from_millis(15)),
                    exhausted: ModelError::RateLimited {
                        message: "the model stream failed: Slow down. Please try again in 15ms.; retries exhausted"
                            .into(),
                        http_status: None
                    },
                },
                Failure::Retry {
                    message: "the model stream failed: oops".into(),
                    delay: None,
                    exhausted: ModelError::Upstream {
                        message: "the model stream failed: oops; retries exhausted".into(),
                        http_status: None
                    },
                },
                Failure::Fatal(ModelError::QuotaExceeded {
                    message: "the model stream failed: no credit".into(),
                    http_status: None
                }),
                Failure::Fatal(ModelError::Upstream {
                    message: "the model stream failed: bad".into(),
                    http_status: None
                }),
            ]
        );
    }

    #[test]
    fn non_json_body_is_the_message() {
        assert_eq!(
            classify(
                ErrorDetails::from_body("Bad gateway\n", now()),
                Origin::Http(404),
                None
            ),
            Failure::Fatal(ModelError::Upstream {
                message: "the model endpoint answered HTTP 404: Bad gateway".into(),
                http_status: Some(404)
            })
        );
    }
}
