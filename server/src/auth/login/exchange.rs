//! The two token requests of a ChatGPT login (either flow): the authorization code for tokens, and
//! (best effort) the id token for an API key.

use std::time::Duration;

use serde::Deserialize;

use crate::auth::refresh::{describe, error_code};
use crate::secret::Secret;

/// How long one token request may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The tokens a code exchange returns.
#[derive(Debug, Deserialize)]
pub(crate) struct CodeTokens {
    /// The OpenID id token.
    pub id_token: Secret,
    /// The access token.
    pub access_token: Secret,
    /// The refresh token.
    pub refresh_token: Secret,
}

/// What a code exchange needs besides the code.
#[derive(Debug)]
pub(crate) struct Exchange<'a> {
    /// The HTTP client.
    pub http: &'a reqwest::Client,
    /// The issuer's base URL.
    pub issuer: &'a str,
    /// The OAuth client id.
    pub client_id: &'a str,
}

impl Exchange<'_> {
    fn token_url(&self) -> String {
        format!("{}/oauth/token", self.issuer.trim_end_matches('/'))
    }

    /// Exchanges an authorization code (form-encoded, with the PKCE verifier).
    pub(crate) async fn code(
        &self,
        code: &Secret,
        redirect_uri: &str,
        verifier: &Secret,
    ) -> Result<CodeTokens, String> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.expose()),
            ("redirect_uri", redirect_uri),
            ("client_id", self.client_id),
            ("code_verifier", verifier.expose()),
        ];
        let body = self.post(&form, "exchange the authorization code").await?;
        serde_json::from_slice(&body).map_err(|_| {
            format!(
                "{} answered the code exchange without the expected tokens: try logging in again",
                self.token_url()
            )
        })
    }

    /// Exchanges the id token for an OpenAI API key (RFC 8693 token exchange).
    pub(crate) async fn api_key(&self, id_token: &Secret) -> Result<Secret, String> {
        #[derive(Deserialize)]
        struct KeyResponse {
            access_token: Secret,
        }
        let form = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("client_id", self.client_id),
            ("requested_token", "openai-api-key"),
            ("subject_token", id_token.expose()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            ),
        ];
        let body = self.post(&form, "obtain an API key").await?;
        let key: KeyResponse = serde_json::from_slice(&body)
            .map_err(|_| "the API-key exchange answered without a key".to_owned())?;
        Ok(key.access_token)
    }

    async fn post(&self, form: &[(&str, &str)], what: &str) -> Result<Vec<u8>, String> {
        let url = self.token_url();
        let response = self
            .http
            .post(&url)
            .form(form)
            .timeout(EXCHANGE_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("could not reach {url} to {what} ({})", describe(e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("could not read the answer of {url} ({})", describe(e)))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        Err(format!(
            "the issuer refused to {what} (HTTP {status}{})",
            issuer_error(&body)
        ))
    }
}

/// `, <error>: <error_description>` from an OAuth error body, or nothing.
pub(crate) fn issuer_error(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let Some(code) = error_code(&text) else {
        return String::new();
    };
    let description = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("error_description")
                .or_else(|| v.get("error").and_then(|e| e.get("message")))
                .and_then(|d| d.as_str())
                .map(|d| d.chars().take(300).collect::<String>())
        });
    match description {
        Some(d) => format!(", {code}: {d}"),
        None => format!(", {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn issuer_errors_are_summarised() {
        assert_eq!(
            issuer_error(br#"{"error":"invalid_grant","error_description":"code expired"}"#),
            ", invalid_grant: code expired"
        );
        assert_eq!(
            issuer_error(br#"{"error":{"code":"bad","message":"nope"}}"#),
            ", bad: nope"
        );
        assert_eq!(issuer_error(b"<html>"), "");
    }
}
