//! The refresh-token grant against `<issuer>/oauth/token`, and when a token is due.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::claims::Claims;
use super::store::Tokens;
use crate::secret::Secret;

/// How long a refresh request may take.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(60);
/// Refresh when the access token expires sooner than this, so a model call never starts with
/// a token that lapses mid-stream.
const EXPIRY_MARGIN_SECS: i64 = 5 * 60;
/// Refresh a token without `exp` once `last_refresh` is this old.
const MAX_AGE_DAYS: i64 = 28;
/// Error codes the issuer uses for a refresh token that can never work again.
const PERMANENT_CODES: [&str; 3] = [
    "refresh_token_expired",
    "refresh_token_reused",
    "refresh_token_invalidated",
];

/// Whether an access token should be refreshed before use.
pub(crate) fn is_due(
    access_token: &Secret,
    last_refresh: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    match Claims::decode(access_token.expose())
        .ok()
        .and_then(|c| c.exp)
    {
        Some(exp) => exp - now.timestamp() < EXPIRY_MARGIN_SECS,
        // Without an expiry only the age of the login says anything; a login of unknown age
        // is refreshed, which is cheap and settles it.
        None => last_refresh.is_none_or(|at| now - at > chrono::Duration::days(MAX_AGE_DAYS)),
    }
}

/// Whether an access token is known not to have expired yet (it has an `exp` in the future).
pub(crate) fn still_valid(access_token: &Secret, now: DateTime<Utc>) -> bool {
    Claims::decode(access_token.expose())
        .ok()
        .and_then(|c| c.exp)
        .is_some_and(|exp| exp > now.timestamp())
}

/// The tokens a refresh returned; the issuer may leave any of them out.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Refreshed {
    /// A new id token.
    pub id_token: Option<Secret>,
    /// A new access token.
    pub access_token: Option<Secret>,
    /// A new refresh token (the old one stops working when one is returned).
    pub refresh_token: Option<Secret>,
}

impl Refreshed {
    /// `tokens` with whatever the issuer returned in place of the old values; the account id
    /// follows a new id token.
    pub(crate) fn apply_to(self, mut tokens: Tokens) -> Tokens {
        if let Some(id_token) = self.id_token {
            if let Some(account_id) = Claims::decode(id_token.expose())
                .ok()
                .and_then(|c| c.account_id)
            {
                tokens.account_id = Some(account_id);
            }
            tokens.id_token = id_token;
        }
        if let Some(access_token) = self.access_token {
            tokens.access_token = access_token;
        }
        if let Some(refresh_token) = self.refresh_token {
            tokens.refresh_token = refresh_token;
        }
        tokens
    }
}

/// Why a refresh failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RefreshError {
    /// The refresh token can never work again; the user has to log in again.
    #[error("{0}")]
    Permanent(String),
    /// The issuer could not be reached or failed; a later attempt may work.
    #[error("{0}")]
    Transient(String),
}

/// Asks the issuer for fresh tokens.
pub(crate) async fn refresh(
    http: &reqwest::Client,
    issuer: &str,
    client_id: &str,
    refresh_token: &Secret,
) -> Result<Refreshed, RefreshError> {
    let url = format!("{}/oauth/token", issuer.trim_end_matches('/'));
    let body = serde_json::json!({
        "client_id": client_id,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token.expose(),
        "scope": "openid profile email",
    });
    let response = http
        .post(&url)
        .json(&body)
        .timeout(REFRESH_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            RefreshError::Transient(format!(
                "could not reach {url} to refresh the ChatGPT login ({}): check the network and try again",
                describe(e)
            ))
        })?;
    let status = response.status();
    if status.is_success() {
        return response.json::<Refreshed>().await.map_err(|_| {
            RefreshError::Transient(format!(
                "{url} answered the token refresh with an unreadable body: try again later"
            ))
        });
    }
    let body = response.text().await.unwrap_or_default();
    Err(classify_failure(status, &body))
}

/// Sorts a failed refresh into permanent (log in again) or transient (try again).
fn classify_failure(status: reqwest::StatusCode, body: &str) -> RefreshError {
    let code = error_code(body);
    let permanent_code = code
        .as_deref()
        .is_some_and(|c| PERMANENT_CODES.contains(&c));
    let detail = code.map_or_else(
        || format!("HTTP {status}"),
        |c| format!("HTTP {status}, {c}"),
    );
    if permanent_code || status.as_u16() == 400 || status.as_u16() == 401 {
        RefreshError::Permanent(format!(
            "the ChatGPT login has expired or was revoked ({detail}): log in again with `agent-server login` or auth/loginChatGPT"
        ))
    } else {
        RefreshError::Transient(format!(
            "the token refresh failed ({detail}): try again later"
        ))
    }
}

/// The error code of an OAuth error body: `{"error":"code"}` or `{"error":{"code":"…"}}`.
/// Only the code is kept: it is a fixed identifier, never a secret.
pub(crate) fn error_code(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let error = value.get("error")?;
    let code = error
        .as_str()
        .or_else(|| error.get("code").and_then(|c| c.as_str()))
        .or_else(|| value.get("code").and_then(|c| c.as_str()))?;
    // A code is a short identifier; anything else is not shown in case it echoes input.
    let looks_like_code = code.len() <= 64
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    looks_like_code.then(|| code.to_owned())
}

/// A reqwest error's text without the URL, which the caller's message already names.
pub(crate) fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        e.without_url().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::jwt;
    use pretty_assertions::assert_eq;
    use reqwest::StatusCode;
    use serde_json::json;

    #[test]
    fn due_by_expiry_or_by_age() {
        let now: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let exp_in = |secs: i64| Secret::new(jwt(json!({"exp": now.timestamp() + secs})));
        let long_ago = Some(now - chrono::Duration::days(29));
        assert!(is_due(&exp_in(60), None, now));
        assert!(!is_due(&exp_in(600), long_ago, now));
        let opaque = Secret::new("opaque-token");
        assert!(is_due(&opaque, long_ago, now));
        assert!(is_due(&opaque, None, now));
        assert!(!is_due(
            &opaque,
            Some(now - chrono::Duration::days(27)),
            now
        ));
    }

    #[test]
    fn failures_are_sorted_into_permanent_and_transient() {
        let login_again = |detail: &str| {
            RefreshError::Permanent(format!(
                "the ChatGPT login has expired or was revoked ({detail}): log in again with `agent-server login` or auth/loginChatGPT"
            ))
        };
        assert_eq!(
            classify_failure(
                StatusCode::UNAUTHORIZED,
                r#"{"error":{"code":"refresh_token_expired","message":"x"}}"#
            ),
            login_again("HTTP 401 Unauthorized, refresh_token_expired")
        );
        assert_eq!(
            classify_failure(StatusCode::BAD_REQUEST, r#"{"error":"invalid_grant"}"#),
            login_again("HTTP 400 Bad Request, invalid_grant")
        );
        assert_eq!(
            classify_failure(
                StatusCode::FORBIDDEN,
                r#"{"error":{"code":"refresh_token_reused"}}"#
            ),
            login_again("HTTP 403 Forbidden, refresh_token_reused")
        );
        assert_eq!(
            classify_failure(StatusCode::BAD_GATEWAY, "<html>"),
            RefreshError::Transient(
                "the token refresh failed (HTTP 502 Bad Gateway): try again later".into()
            )
        );
        assert_eq!(
            error_code(r#"{"error":"has spaces and secrets sk-1"}"#),
            None
        );
    }
}
