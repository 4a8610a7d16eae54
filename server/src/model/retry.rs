//! How long to wait before a retry: server hints first, else exponential backoff with jitter.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::header::HeaderMap;

/// Longest wait a server hint may impose; a longer hint is cut to this, so a turn never sits
/// for an hour on one `Retry-After` (the user can still interrupt any wait).
pub(crate) const MAX_HINTED_DELAY: Duration = Duration::from_secs(120);
/// Longest computed backoff; with the default budgets (4 and 5 retries) it is never reached.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// `base · 2^(attempt-1)`, ±10 % jitter, capped at [`MAX_BACKOFF`]; `attempt` is 1-based.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    let jitter = rand::rng().random_range(0.9..=1.1);
    base.saturating_mul(1u32 << exp)
        .mul_f64(jitter)
        .min(MAX_BACKOFF)
}

/// The wait a response's headers ask for: `retry-after-ms`, else `Retry-After` in seconds or
/// as an HTTP date.
pub(crate) fn delay_from_headers(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(clamp_hint(ms / 1000.0));
    }
    let value = text("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return Some(clamp_hint(secs));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?;
    let secs = (date.with_timezone(&Utc) - now).num_milliseconds() as f64 / 1000.0;
    Some(clamp_hint(secs))
}

/// The wait named in an upstream message such as "Please try again in 1.5s" or "in 20ms".
pub(crate) fn delay_from_message(message: &str) -> Option<Duration> {
    const NEEDLE: &str = "try again in ";
    let lower = message.to_ascii_lowercase();
    let start = lower.find(NEEDLE)? + NEEDLE.len();
    let rest = &lower[start..];
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let number: f64 = rest[..number_len].parse().ok()?;
    let unit = rest[number_len..].trim_start();
    let secs = if unit.starts_with("ms") || unit.starts_with("millisecond") {
        number / 1000.0
    } else if unit.starts_with('s') {
        number
    } else if unit.starts_with("min") || unit.starts_with('m') {
        number * 60.0
    } else {
        return None;
    };
    Some(clamp_hint(secs))
}

fn clamp_hint(secs: f64) -> Duration {
    if !secs.is_finite() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs)
        .unwrap_or(MAX_HINTED_DELAY)
        .min(MAX_HINTED_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn backoff_doubles_within_ten_percent_and_is_capped() {
        let base = Duration::from_millis(200);
        for (attempt, plain_ms) in [(1u32, 200u64), (2, 400), (3, 800), (4, 1600)] {
            let d = backoff(base, attempt).as_millis() as u64;
            assert!(
                (plain_ms * 9 / 10..=plain_ms * 11 / 10).contains(&d),
                "attempt {attempt}: {d}ms"
            );
        }
        assert_eq!(backoff(base, 40), MAX_BACKOFF);
    }

    #[test]
    fn header_hints() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let cases = [
            (headers(&[("retry-after-ms", "1500")]), Some(1500u32)),
            (
                headers(&[("retry-after-ms", "5"), ("retry-after", "9")]),
                Some(5),
            ),
            (headers(&[("retry-after", "2")]), Some(2000)),
            (
                headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
                Some(60_000),
            ),
            (headers(&[("retry-after", "86400")]), Some(120_000)),
            (headers(&[("retry-after", "soon")]), None),
            (headers(&[]), None),
        ];
        let got: Vec<Option<u128>> = cases
            .iter()
            .map(|(h, _)| delay_from_headers(h, now).map(|d| d.as_millis()))
            .collect();
        let want: Vec<Option<u128>> = cases.iter().map(|(_, w)| w.map(u128::from)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn message_hints() {
        let got: Vec<Option<u128>> = [
            "Rate limit reached for gpt-5. Please try again in 1.898s. Visit ...",
            "Please try again in 20ms.",
            "Try again in 3 seconds",
            "try again in 2m",
            "try again in a while",
            "no hint here",
        ]
        .iter()
        .map(|m| delay_from_message(m).map(|d| d.as_millis()))
        .collect();
        assert_eq!(
            got,
            vec![Some(1898), Some(20), Some(3000), Some(120_000), None, None]
        );
    }
}
