//! Reading the claims of ChatGPT JWTs (id token and access token) without checking signatures.
//!
//! The server only needs a few facts the issuer put in the tokens (email, plan, account,
//! expiry); the tokens are verified by the services that receive them, so no signature check
//! happens here.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

/// The claim object OpenAI nests its own claims under.
const OPENAI_AUTH_CLAIM: &str = "https://api.openai.com/auth";

/// base64url that accepts payloads with or without `=` padding: issuers differ.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a token's claims could not be read. The messages never include the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    /// The token does not have the `header.payload.signature` shape of a JWT.
    #[error("the token is not a JWT (expected three dot-separated parts)")]
    NotAJwt,
    /// The payload is not valid base64url.
    #[error("the token payload is not valid base64url")]
    Base64,
    /// The payload is not a JSON object.
    #[error("the token payload is not a JSON object")]
    Json,
}

/// The claims the server uses, from an id token or an access token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    /// `email`.
    pub email: Option<String>,
    /// `exp`, in seconds since the Unix epoch.
    pub exp: Option<i64>,
    /// `chatgpt_account_id` under the OpenAI auth claim.
    pub account_id: Option<String>,
    /// `chatgpt_plan_type` under the OpenAI auth claim.
    pub plan_type: Option<String>,
    /// `organization_id` under the OpenAI auth claim (or at the top level).
    pub organization_id: Option<String>,
    /// `project_id` under the OpenAI auth claim (or at the top level).
    pub project_id: Option<String>,
}

impl Claims {
    /// Decodes the payload of `jwt`.
    pub fn decode(jwt: &str) -> Result<Self, ClaimsError> {
        let mut parts = jwt.trim().split('.');
        let (Some(_header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ClaimsError::NotAJwt);
        };
        let bytes = BASE64URL.decode(payload).map_err(|_| ClaimsError::Base64)?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| ClaimsError::Json)?;
        let Value::Object(top) = value else {
            return Err(ClaimsError::Json);
        };
        let auth = top.get(OPENAI_AUTH_CLAIM).and_then(Value::as_object);
        // OpenAI's own claims live in the nested object; a few issuers also put the
        // organization and project at the top level, so look there second.
        let nested_or_top = |name: &str| {
            auth.and_then(|a| string(a.get(name)))
                .or_else(|| string(top.get(name)))
        };
        Ok(Self {
            email: string(top.get("email")),
            exp: top.get("exp").and_then(seconds),
            account_id: auth.and_then(|a| string(a.get("chatgpt_account_id"))),
            plan_type: auth.and_then(|a| string(a.get("chatgpt_plan_type"))),
            organization_id: nested_or_top("organization_id"),
            project_id: nested_or_top("project_id"),
        })
    }
}

/// A non-empty string value.
fn string(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A NumericDate, which RFC 7519 allows to be fractional.
fn seconds(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f.floor() as i64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::jwt;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn reads_email_expiry_and_openai_claims() {
        let token = jwt(json!({
            "email": "a@b.c",
            "exp": 1_900_000_000,
            "https://api.openai.com/auth": {
                "chatgpt_account_id": "acc-1",
                "chatgpt_plan_type": "plus",
                "organization_id": "org-1",
                "project_id": "proj-1"
            }
        }));
        assert_eq!(
            Claims::decode(&token),
            Ok(Claims {
                email: Some("a@b.c".into()),
                exp: Some(1_900_000_000),
                account_id: Some("acc-1".into()),
                plan_type: Some("plus".into()),
                organization_id: Some("org-1".into()),
                project_id: Some("proj-1".into()),
            })
        );
    }

    #[test]
    fn accepts_padded_payloads_fractional_exp_and_top_level_org() {
        let payload = base64::engine::general_purpose::URL_SAFE.encode(
            json!({"exp": 12.5, "organization_id": "org-top", "project_id": ""}).to_string(),
        );
        assert!(
            payload.ends_with('='),
            "the test needs a padded payload: {payload}"
        );
        assert_eq!(
            Claims::decode(&format!("e30.{payload}.sig")),
            Ok(Claims {
                exp: Some(12),
                organization_id: Some("org-top".into()),
                ..Claims::default()
            })
        );
    }

    #[test]
    fn malformed_tokens_are_errors_not_panics() {
        assert_eq!(Claims::decode("sk-not-a-jwt"), Err(ClaimsError::NotAJwt));
        assert_eq!(Claims::decode("a.b.c.d"), Err(ClaimsError::NotAJwt));
        assert_eq!(Claims::decode("a.!!!.c"), Err(ClaimsError::Base64));
        let not_json = BASE64URL.encode("not json");
        assert_eq!(
            Claims::decode(&format!("a.{not_json}.c")),
            Err(ClaimsError::Json)
        );
        let array = BASE64URL.encode("[1]");
        assert_eq!(
            Claims::decode(&format!("a.{array}.c")),
            Err(ClaimsError::Json)
        );
    }
}
