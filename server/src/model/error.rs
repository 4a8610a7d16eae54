//! Errors of a model call, each mapped to one contract turn error kind.

use agent_server_schema::auth::RateLimits;
use agent_server_schema::session::{TurnError, TurnErrorKind};
use chrono::{DateTime, Utc};

/// Why a model call (or resolving its provider) failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The provider needs OpenAI auth (or an API key variable) and none is available.
    #[error("{0}")]
    AuthRequired(String),
    /// The stored ChatGPT login can no longer be refreshed; the user must log in again.
    #[error("{0}")]
    LoginRequired(String),
    /// The model endpoint answered 401 again after the credentials were recovered.
    #[error("{0}")]
    Unauthorized(String),
    /// The ChatGPT plan's usage limit is reached until `resets_at`.
    #[error("{message}")]
    UsageLimitReached {
        /// What the upstream said, or a default explanation.
        message: String,
        /// When the limit resets, when the upstream said so.
        resets_at: Option<DateTime<Utc>>,
        /// The ChatGPT plan, when the upstream named it.
        plan_type: Option<String>,
        /// The HTTP status, when the error came as an HTTP answer.
        http_status: Option<u16>,
        /// The rate limits known when it happened (boxed: they would make every error large).
        rate_limits: Option<Box<RateLimits>>,
    },
    /// The API account has no quota (credit) left.
    #[error("{message}")]
    QuotaExceeded {
        /// What the upstream said.
        message: String,
        /// The HTTP status, when the error came as an HTTP answer.
        http_status: Option<u16>,
    },
    /// The conversation no longer fits the model's context window.
    #[error("{message}")]
    ContextWindowExceeded {
        /// What the upstream said.
        message: String,
        /// The HTTP status, when the error came as an HTTP answer.
        http_status: Option<u16>,
    },
    /// The upstream kept answering "rate limited" until the retries ran out.
    #[error("{message}")]
    RateLimited {
        /// What the upstream said last.
        message: String,
        /// The HTTP status, when the error came as an HTTP answer.
        http_status: Option<u16>,
    },
    /// Any other HTTP, connection or stream failure (including retries exhausted).
    #[error("{message}")]
    Upstream {
        /// What happened, with the upstream's own message when there was one.
        message: String,
        /// The HTTP status, when there was an HTTP answer.
        http_status: Option<u16>,
    },
    /// The call was cancelled.
    #[error("the model call was interrupted")]
    Interrupted,
    /// A bug or a local failure that is not the upstream's fault.
    #[error("{0}")]
    Internal(String),
    /// The session asked for a provider id that is neither built in nor configured.
    #[error(
        "unknown model provider `{0}`: use `openai` or add [model_providers.{0}] to config.toml"
    )]
    UnknownProvider(String),
    /// A configured provider cannot be used as written (a bad header, for example).
    #[error("{0}")]
    InvalidProvider(String),
}

impl ModelError {
    /// The `error.kind` of a turn this error ends. Every variant is named: a new variant has
    /// to choose its kind here.
    pub fn turn_error_kind(&self) -> TurnErrorKind {
        match self {
            Self::AuthRequired(_) => TurnErrorKind::AuthRequired,
            Self::LoginRequired(_) => TurnErrorKind::LoginRequired,
            Self::Unauthorized(_) => TurnErrorKind::Unauthorized,
            Self::UsageLimitReached { .. } => TurnErrorKind::UsageLimitReached,
            Self::QuotaExceeded { .. } => TurnErrorKind::QuotaExceeded,
            Self::ContextWindowExceeded { .. } => TurnErrorKind::ContextWindowExceeded,
            Self::RateLimited { .. } => TurnErrorKind::RateLimited,
            Self::Upstream { .. } => TurnErrorKind::Upstream,
            Self::Interrupted => TurnErrorKind::Interrupted,
            Self::Internal(_) => TurnErrorKind::Internal,
            // A provider that cannot be used (a `base_url` that is no URL) means the model
            // cannot be reached: the contract's "connection failure", not a bug of the server.
            // The message names the setting to fix.
            Self::UnknownProvider(_) | Self::InvalidProvider(_) => TurnErrorKind::Upstream,
        }
    }

    /// The error of a turn this error ends, with the details the contract reports.
    pub fn to_turn_error(&self) -> TurnError {
        TurnError {
            kind: self.turn_error_kind(),
            message: self.to_string(),
            http_status: self.http_status(),
            resets_at: self
                .resets_at()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            plan_type: self.plan_type(),
            rate_limits: self.rate_limits().map(Box::new),
        }
    }

    /// The upstream HTTP status, when the failure came with one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized(_) => Some(401),
            Self::UsageLimitReached { http_status, .. }
            | Self::QuotaExceeded { http_status, .. }
            | Self::ContextWindowExceeded { http_status, .. }
            | Self::RateLimited { http_status, .. }
            | Self::Upstream { http_status, .. } => *http_status,
            _ => None,
        }
    }

    /// When a usage limit resets.
    pub fn resets_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::UsageLimitReached { resets_at, .. } => *resets_at,
            _ => None,
        }
    }

    /// The rate limits known when a usage limit was reached.
    pub fn rate_limits(&self) -> Option<RateLimits> {
        match self {
            Self::UsageLimitReached { rate_limits, .. } => rate_limits.as_deref().cloned(),
            _ => None,
        }
    }

    /// The ChatGPT plan named by a usage-limit error.
    pub fn plan_type(&self) -> Option<String> {
        match self {
            Self::UsageLimitReached { plan_type, .. } => plan_type.clone(),
            _ => None,
        }
    }
}
