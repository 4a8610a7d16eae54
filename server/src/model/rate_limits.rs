//! Rate limits of ChatGPT plans: read from the `x-codex-*` headers of every model response and
//! from `codex.rate_limits` stream events, remembered for the process in a
//! [`RateLimitTracker`], and read on demand from the usage endpoint ([`read_usage`]).
//!
//! The upstream is untrusted: a value that is not what it should be (a percentage that is not
//! a finite number ≥ 0, a time that is not a plausible unix time) is dropped, never an error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_server_schema::auth::{RateLimitCredits, RateLimitWindow, RateLimits};
use chrono::{DateTime, SecondsFormat};
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::auth::{CredentialMode, UpstreamAuth};

/// How long `auth/rateLimits` may wait for the usage endpoint (credentials included).
pub const USAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// The latest rate limits this process has seen; clones share one value.
#[derive(Debug, Clone, Default)]
pub struct RateLimitTracker(Arc<Mutex<Option<RateLimits>>>);

impl PartialEq for RateLimitTracker {
    /// Two handles are equal when they share one value.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl RateLimitTracker {
    /// Records what a response or the usage endpoint said and returns the merged view: a
    /// part `seen` leaves out (the headers never name the plan) keeps its last known value.
    pub fn record(&self, seen: &RateLimits) -> RateLimits {
        let mut latest = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let merged = match latest.take() {
            None => seen.clone(),
            Some(old) => RateLimits {
                primary: seen.primary.clone().or(old.primary),
                secondary: seen.secondary.clone().or(old.secondary),
                credits: seen.credits.clone().or(old.credits),
                plan_type: seen.plan_type.clone().or(old.plan_type),
            },
        };
        *latest = Some(merged.clone());
        merged
    }

    /// The latest merged view, if anything was seen.
    pub fn latest(&self) -> Option<RateLimits> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

fn is_empty(limits: &RateLimits) -> bool {
    limits.primary.is_none()
        && limits.secondary.is_none()
        && limits.credits.is_none()
        && limits.plan_type.is_none()
}

/// A used percentage: a finite number, at least 0.
fn percent(value: f64) -> Option<f64> {
    (value.is_finite() && value >= 0.0).then_some(value)
}

/// A unix time in seconds as RFC 3339; nothing for negative or absurd values.
fn unix_time(secs: i64) -> Option<String> {
    if secs <= 0 {
        return None;
    }
    DateTime::from_timestamp(secs, 0).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// A non-negative whole number of minutes.
fn minutes(value: i64) -> Option<i64> {
    (value >= 0).then_some(value)
}

// ---- headers ----

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn header_window(headers: &HeaderMap, which: &str) -> Option<RateLimitWindow> {
    let used = header(headers, &format!("x-codex-{which}-used-percent"))?;
    let used_percent = percent(used.parse().ok()?)?;
    Some(RateLimitWindow {
        used_percent,
        window_minutes: header(headers, &format!("x-codex-{which}-window-minutes"))
            .and_then(|v| v.parse().ok())
            .and_then(minutes),
        resets_at: header(headers, &format!("x-codex-{which}-reset-at"))
            .and_then(|v| v.parse().ok())
            .and_then(unix_time),
    })
}

fn flag(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// A balance: kept as the upstream wrote it when it is a finite number.
fn balance(text: &str) -> Option<String> {
    text.parse::<f64>()
        .ok()
        .filter(|b| b.is_finite())
        .map(|_| text.to_owned())
}

fn header_credits(headers: &HeaderMap) -> Option<RateLimitCredits> {
    let has_credits = flag(header(headers, "x-codex-credits-has-credits")?)?;
    Some(RateLimitCredits {
        has_credits,
        unlimited: header(headers, "x-codex-credits-unlimited")
            .and_then(flag)
            .unwrap_or(false),
        balance: header(headers, "x-codex-credits-balance").and_then(balance),
    })
}

/// The rate limits in a model response's headers, or `None` when it carries none (or only
/// nonsense).
pub fn from_headers(headers: &HeaderMap) -> Option<RateLimits> {
    let limits = RateLimits {
        primary: header_window(headers, "primary"),
        secondary: header_window(headers, "secondary"),
        credits: header_credits(headers),
        plan_type: None,
    };
    (!is_empty(&limits)).then_some(limits)
}

// ---- JSON: the stream event and the usage endpoint ----

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    number(value)
        .filter(|n| n.is_finite() && n.fract() == 0.0 && n.abs() < 1e15)
        .map(|n| n as i64)
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn json_flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => flag(s.trim()),
        _ => None,
    }
}

/// A window object; `minutes_of` reads its length (minutes in the stream event, seconds at
/// the usage endpoint).
fn json_window(value: &Value, minutes_of: fn(&Value) -> Option<i64>) -> Option<RateLimitWindow> {
    let used_percent = percent(number(value.get("used_percent")?)?)?;
    Some(RateLimitWindow {
        used_percent,
        window_minutes: minutes_of(value).and_then(minutes),
        resets_at: value.get("reset_at").and_then(integer).and_then(unix_time),
    })
}

fn json_credits(value: &Value) -> Option<RateLimitCredits> {
    Some(RateLimitCredits {
        has_credits: json_flag(value.get("has_credits")?)?,
        unlimited: value.get("unlimited").and_then(json_flag).unwrap_or(false),
        balance: value
            .get("balance")
            .and_then(text)
            .and_then(|b| balance(&b)),
    })
}

/// The rate limits of a `codex.rate_limits` stream event, or `None` when it holds none.
pub fn from_event(data: &Value) -> Option<RateLimits> {
    let windows = data.get("rate_limits");
    let window = |name: &str| {
        windows
            .and_then(|w| w.get(name))
            .and_then(|w| json_window(w, |w| w.get("window_minutes").and_then(integer)))
    };
    let limits = RateLimits {
        primary: window("primary"),
        secondary: window("secondary"),
        credits: data.get("credits").and_then(json_credits),
        plan_type: data.get("plan_type").and_then(text),
    };
    (!is_empty(&limits)).then_some(limits)
}

/// The answer of `GET …/wham/usage`.
fn from_usage(data: &Value) -> RateLimits {
    let windows = data.get("rate_limit");
    let window = |name: &str| {
        windows.and_then(|w| w.get(name)).and_then(|w| {
            json_window(w, |w| {
                // Whole minutes, rounded up: a 90-second window is not a 1-minute one.
                let secs = w.get("limit_window_seconds").and_then(integer)?;
                (secs >= 0).then(|| (secs + 59) / 60)
            })
        })
    };
    RateLimits {
        primary: window("primary_window"),
        secondary: window("secondary_window"),
        credits: data.get("credits").and_then(json_credits),
        plan_type: data.get("plan_type").and_then(text),
    }
}

/// `<chatgpt_base_url minus /codex>/wham/usage`.
fn usage_url(chatgpt_base_url: &str) -> String {
    let base = chatgpt_base_url.trim_end_matches('/');
    let base = base.strip_suffix("/codex").unwrap_or(base);
    format!("{base}/wham/usage")
}

/// Where and how to ask the usage endpoint.
#[derive(Clone)]
pub struct UsageEndpoint {
    /// The process's HTTP client.
    pub http: reqwest::Client,
    /// The credentials; the endpoint is asked only in ChatGPT mode.
    pub auth: Arc<dyn UpstreamAuth>,
    /// `chatgpt_base_url` from the configuration.
    pub chatgpt_base_url: String,
    /// The `originator` header.
    pub originator: String,
}

/// What [`read_usage`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Usage {
    /// Not in ChatGPT mode: nothing was asked.
    NotChatGpt,
    /// The endpoint answered.
    Read(RateLimits),
    /// The endpoint could not be read; the message says why and what to do.
    Failed(String),
}

/// What `auth/rateLimits` answers, as limits and an error: the latest seen by this process
/// unless `refresh` or none yet; else the usage endpoint in ChatGPT mode (nothing is asked in
/// other modes); when that fails, what is known with the reason.
pub async fn current(
    tracker: &RateLimitTracker,
    endpoint: &UsageEndpoint,
    refresh: bool,
) -> (Option<RateLimits>, Option<String>) {
    if !refresh && let Some(latest) = tracker.latest() {
        return (Some(latest), None);
    }
    match read_usage(endpoint).await {
        Usage::NotChatGpt => (tracker.latest(), None),
        Usage::Read(limits) => (Some(tracker.record(&limits)), None),
        Usage::Failed(message) => {
            tracing::warn!(%message, "could not read the ChatGPT usage");
            (tracker.latest(), Some(message))
        }
    }
}

/// Reads the usage endpoint, within [`USAGE_TIMEOUT`] in all (a refresh of the credentials
/// included).
pub async fn read_usage(endpoint: &UsageEndpoint) -> Usage {
    if endpoint.auth.mode().await != Some(CredentialMode::ChatGpt) {
        return Usage::NotChatGpt;
    }
    let url = usage_url(&endpoint.chatgpt_base_url);
    match tokio::time::timeout(USAGE_TIMEOUT, ask(endpoint, &url)).await {
        Ok(Ok(limits)) => Usage::Read(limits),
        Ok(Err(message)) => Usage::Failed(message),
        Err(_elapsed) => Usage::Failed(format!(
            "the usage endpoint {url} did not answer within {} s: try again later",
            USAGE_TIMEOUT.as_secs()
        )),
    }
}

async fn ask(endpoint: &UsageEndpoint, url: &str) -> Result<RateLimits, String> {
    let creds = endpoint
        .auth
        .credentials()
        .await
        .map_err(|e| format!("no usable ChatGPT login to read the usage with: {e}"))?;
    let mut request = endpoint
        .http
        .get(url)
        .bearer_auth(creds.bearer.expose())
        .header("originator", &endpoint.originator)
        .header("accept", "application/json");
    if let Some(account) = &creds.account_id {
        request = request.header("chatgpt-account-id", account);
    }
    let response = request.send().await.map_err(|e| {
        let reason = if e.is_connect() {
            "connection failed".to_owned()
        } else {
            e.without_url().to_string()
        };
        format!("could not reach the usage endpoint {url} ({reason}): try again later")
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!(
            "the usage endpoint {url} answered HTTP {status}: try again later"
        ));
    }
    let body: Value = response.json().await.map_err(|_| {
        format!("the usage endpoint {url} answered with something that is not usage JSON")
    })?;
    Ok(from_usage(&body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use reqwest::header::{HeaderName, HeaderValue};
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn window(used: f64, minutes: Option<i64>, resets: Option<&str>) -> RateLimitWindow {
        RateLimitWindow {
            used_percent: used,
            window_minutes: minutes,
            resets_at: resets.map(str::to_owned),
        }
    }

    #[test]
    fn headers_are_read_and_nonsense_is_dropped() {
        let seen = from_headers(&headers(&[
            ("x-codex-primary-used-percent", "72.5"),
            ("x-codex-primary-window-minutes", "300"),
            ("x-codex-primary-reset-at", "1765030000"),
            ("x-codex-secondary-used-percent", "NaN"),
            ("x-codex-secondary-window-minutes", "10080"),
            ("x-codex-credits-has-credits", "true"),
            ("x-codex-credits-unlimited", "maybe"),
            ("x-codex-credits-balance", "12.50"),
        ]));
        assert_eq!(
            seen,
            Some(RateLimits {
                primary: Some(window(72.5, Some(300), Some("2025-12-06T14:06:40Z"))),
                secondary: None,
                credits: Some(RateLimitCredits {
                    has_credits: true,
                    unlimited: false,
                    balance: Some("12.50".into()),
                }),
                plan_type: None,
            })
        );
        let nonsense = headers(&[
            ("x-codex-primary-used-percent", "-3"),
            ("x-codex-secondary-used-percent", "lots"),
            ("x-codex-credits-has-credits", "perhaps"),
        ]);
        assert_eq!(from_headers(&nonsense), None);
        let odd_parts = from_headers(&headers(&[
            ("x-codex-primary-used-percent", "5"),
            ("x-codex-primary-window-minutes", "-60"),
            ("x-codex-primary-reset-at", "99999999999999999999"),
        ]));
        assert_eq!(
            odd_parts.and_then(|l| l.primary),
            Some(window(5.0, None, None))
        );
    }

    #[test]
    fn the_stream_event_and_the_usage_endpoint_are_mapped() {
        let event = json!({"type": "codex.rate_limits", "plan_type": "plus",
            "rate_limits": {"primary": {"used_percent": 10, "window_minutes": 300, "reset_at": 1765030000},
                            "secondary": {"used_percent": "x"}},
            "credits": {"has_credits": false, "unlimited": true, "balance": "0"}});
        assert_eq!(
            from_event(&event),
            Some(RateLimits {
                primary: Some(window(10.0, Some(300), Some("2025-12-06T14:06:40Z"))),
                secondary: None,
                credits: Some(RateLimitCredits {
                    has_credits: false,
                    unlimited: true,
                    balance: Some("0".into()),
                }),
                plan_type: Some("plus".into()),
            })
        );
        assert_eq!(from_event(&json!({"rate_limits": "nope"})), None);
        let usage = json!({"plan_type": "pro", "rate_limit": {
            "primary_window": {"used_percent": 42.0, "limit_window_seconds": 18000, "reset_at": 1765030000},
            "secondary_window": {"used_percent": 3, "limit_window_seconds": 604799, "reset_at": null}},
            "credits": null});
        assert_eq!(
            from_usage(&usage),
            RateLimits {
                primary: Some(window(42.0, Some(300), Some("2025-12-06T14:06:40Z"))),
                secondary: Some(window(3.0, Some(10080), None)),
                credits: None,
                plan_type: Some("pro".into()),
            }
        );
        assert_eq!(
            usage_url("https://chatgpt.com/backend-api/codex/"),
            "https://chatgpt.com/backend-api/wham/usage"
        );
        assert_eq!(
            usage_url("http://127.0.0.1:9/api"),
            "http://127.0.0.1:9/api/wham/usage"
        );
    }

    #[test]
    fn the_tracker_keeps_what_a_later_response_leaves_out() {
        let tracker = RateLimitTracker::default();
        assert_eq!(tracker.latest(), None);
        let from_event = RateLimits {
            primary: Some(window(1.0, Some(300), None)),
            secondary: Some(window(2.0, None, None)),
            credits: None,
            plan_type: Some("plus".into()),
        };
        tracker.record(&from_event);
        let from_headers = RateLimits {
            primary: Some(window(3.0, Some(300), None)),
            secondary: None,
            credits: None,
            plan_type: None,
        };
        let merged = tracker.record(&from_headers);
        assert_eq!(
            merged,
            RateLimits {
                primary: Some(window(3.0, Some(300), None)),
                secondary: Some(window(2.0, None, None)),
                credits: None,
                plan_type: Some("plus".into()),
            }
        );
        assert_eq!(tracker.latest(), Some(merged));
        assert!(tracker.clone() == tracker);
    }
}
