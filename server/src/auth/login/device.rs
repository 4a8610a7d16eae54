//! The device-code way to get the code, for machines no browser can reach: the issuer hands
//! out a short user code, the user types it on `<issuer>/codex/device` from any device, and
//! the server polls until the issuer releases an authorization code.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::exchange::issuer_error;
use super::{Grant, LoginOptions, LoginPrompt};
use crate::auth::AuthError;
use crate::auth::refresh::describe;
use crate::secret::Secret;

/// How long one request to the device-code endpoints may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The poll interval when the issuer names none (or names one that is not a number).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// The shortest poll interval, whatever the issuer says: faster polling only adds load.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest poll interval, whatever the issuer says: the user should not wait long after
/// typing the code.
const MAX_INTERVAL: Duration = Duration::from_secs(30);

/// A device code the issuer handed out, being polled.
#[derive(Debug)]
pub(super) struct Device {
    http: reqwest::Client,
    token_url: String,
    redirect_uri: String,
    device_auth_id: Secret,
    user_code: String,
    interval: Duration,
}

/// The answer to the user-code request.
#[derive(Deserialize)]
struct UserCode {
    device_auth_id: Secret,
    #[serde(alias = "usercode")]
    user_code: String,
    #[serde(default)]
    interval: Option<Value>,
}

/// The answer to a poll once the user has signed in.
#[derive(Deserialize)]
struct Released {
    authorization_code: Secret,
    code_verifier: Secret,
}

/// What one poll found.
enum Poll {
    /// Not yet (403/404), or a passing failure (5xx, network): poll again.
    Again,
    /// The user signed in.
    Released(Released),
    /// The issuer refused for good; the message says why.
    Failed(String),
}

fn base(issuer: &str) -> &str {
    issuer.trim_end_matches('/')
}

/// Asks the issuer for a user code. A 404 means device-code login is not enabled there.
pub(super) async fn prepare(options: &LoginOptions) -> Result<(LoginPrompt, Device), AuthError> {
    let issuer = base(&options.issuer);
    let url = format!("{issuer}/api/accounts/deviceauth/usercode");
    let unavailable = AuthError::DeviceCodeUnavailable;
    let response = options
        .http
        .post(&url)
        .json(&serde_json::json!({"client_id": options.client_id}))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            unavailable(format!(
                "could not reach {url} to request a device code ({}): check the network and try again, or use the browser login",
                describe(e)
            ))
        })?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| {
        unavailable(format!(
            "could not read the issuer's answer to the device-code request ({}): try again",
            describe(e)
        ))
    })?;
    if status == StatusCode::NOT_FOUND {
        return Err(unavailable(format!(
            "device-code login is not enabled for the issuer {issuer}: use the browser login (auth/loginChatGPT without a flow, or `agent-server login`), or ask the workspace admin to enable device-code login"
        )));
    }
    if !status.is_success() {
        return Err(unavailable(format!(
            "the issuer refused the device-code request (HTTP {status}{}): try again later, or use the browser login",
            issuer_error(&body)
        )));
    }
    let code: UserCode = serde_json::from_slice(&body).map_err(|_| {
        unavailable(format!(
            "the issuer answered the device-code request at {url} without a device code (expected device_auth_id and user_code): try again later, or use the browser login"
        ))
    })?;
    let interval = parse_interval(code.interval.as_ref());
    tracing::debug!(interval_secs = interval.as_secs(), "device code obtained");
    let prompt = LoginPrompt::DeviceCode {
        verification_url: format!("{issuer}/codex/device"),
        user_code: code.user_code.clone(),
    };
    let device = Device {
        http: options.http.clone(),
        token_url: format!("{issuer}/api/accounts/deviceauth/token"),
        redirect_uri: format!("{issuer}/deviceauth/callback"),
        device_auth_id: code.device_auth_id,
        user_code: code.user_code,
        interval,
    };
    Ok((prompt, device))
}

/// The poll interval: seconds as a number or a numeric string, clamped to 1..=30 s; the
/// default when missing or not a number.
pub(super) fn parse_interval(value: Option<&Value>) -> Duration {
    let secs = match value {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match secs.filter(|s| s.is_finite()) {
        Some(secs) => Duration::from_secs_f64(
            secs.clamp(MIN_INTERVAL.as_secs_f64(), MAX_INTERVAL.as_secs_f64()),
        ),
        None => DEFAULT_INTERVAL,
    }
}

impl Device {
    /// Polls every interval until the issuer releases a code or refuses.
    pub(super) async fn next_grant(&mut self) -> Result<Grant, String> {
        loop {
            tokio::time::sleep(self.interval).await;
            match self.poll().await {
                Poll::Again => {}
                Poll::Failed(message) => return Err(message),
                Poll::Released(released) => {
                    return Ok(Grant {
                        code: released.authorization_code,
                        verifier: released.code_verifier,
                        redirect_uri: self.redirect_uri.clone(),
                    });
                }
            }
        }
    }

    async fn poll(&self) -> Poll {
        let body = serde_json::json!({
            "device_auth_id": self.device_auth_id.expose(),
            "user_code": self.user_code,
        });
        let sent = self
            .http
            .post(&self.token_url)
            .json(&body)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(error = %describe(e), "device-code poll failed; polling on");
                return Poll::Again;
            }
        };
        let status = response.status();
        if matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) {
            return Poll::Again;
        }
        if status.is_server_error() {
            tracing::debug!(%status, "device-code poll answered a server error; polling on");
            return Poll::Again;
        }
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) if status.is_success() => {
                tracing::debug!(error = %describe(e), "device-code poll answer was cut; polling on");
                return Poll::Again;
            }
            Err(_) => Default::default(),
        };
        if !status.is_success() {
            return Poll::Failed(format!(
                "the sign-in was not completed: the issuer answered the device-code poll with HTTP {status}{}: start the login again",
                issuer_error(&body)
            ));
        }
        match serde_json::from_slice::<Released>(&body) {
            Ok(released) => Poll::Released(released),
            Err(_) => Poll::Failed(
                "the issuer answered the device-code poll without an authorization code and code verifier: start the login again"
                    .to_owned(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn intervals_are_read_from_numbers_and_strings_and_clamped() {
        let secs = |v: Option<Value>| parse_interval(v.as_ref()).as_secs_f64();
        assert_eq!(
            [
                secs(Some(json!(7))),
                secs(Some(json!("7"))),
                secs(Some(json!(" 2.5 "))),
                secs(Some(json!(0))),
                secs(Some(json!(-3))),
                secs(Some(json!(3600))),
                secs(Some(json!("soon"))),
                secs(Some(json!(null))),
                secs(Some(json!([1]))),
                secs(None),
            ],
            [7.0, 7.0, 2.5, 1.0, 1.0, 30.0, 5.0, 5.0, 5.0, 5.0]
        );
    }

    #[tokio::test]
    async fn a_network_error_while_polling_is_transient() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let device = Device {
            http: reqwest::Client::new(),
            token_url: format!("http://127.0.0.1:{port}/api/accounts/deviceauth/token"),
            redirect_uri: String::new(),
            device_auth_id: Secret::new("id"),
            user_code: "CODE".into(),
            interval: MIN_INTERVAL,
        };
        assert!(matches!(device.poll().await, Poll::Again));
    }
}
