//! Credentials a test can put into a home: unsigned JWTs and `auth.json` files.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// An unsigned JWT (`alg: none`) carrying `claims`; the server only reads the claims.
pub fn fake_jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature = URL_SAFE_NO_PAD.encode(b"signature");
    format!("{header}.{payload}.{signature}")
}

/// A ChatGPT account as the id_token describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatGptAccount {
    /// The `email` claim.
    pub email: String,
    /// `chatgpt_plan_type`.
    pub plan_type: String,
    /// `chatgpt_account_id`.
    pub account_id: String,
}

impl Default for ChatGptAccount {
    fn default() -> Self {
        Self {
            email: "user@example.com".into(),
            plan_type: "plus".into(),
            account_id: "acc-123".into(),
        }
    }
}

impl ChatGptAccount {
    /// The id_token of this account.
    pub fn id_token(&self) -> String {
        fake_jwt(&json!({
            "email": self.email,
            "https://api.openai.com/auth": {
                "chatgpt_account_id": self.account_id,
                "chatgpt_plan_type": self.plan_type,
            },
        }))
    }

    /// An access token expiring at `exp` (unix seconds).
    pub fn access_token(&self, exp: i64) -> String {
        fake_jwt(&json!({
            "exp": exp,
            "https://api.openai.com/auth": {"chatgpt_account_id": self.account_id},
        }))
    }

    /// A ChatGPT-mode `auth.json` whose access token expires at `exp` (unix seconds).
    pub fn auth_json(&self, exp: i64, last_refresh: &str) -> String {
        json!({
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": null,
            "tokens": {
                "id_token": self.id_token(),
                "access_token": self.access_token(exp),
                "refresh_token": "refresh-token-1",
                "account_id": self.account_id,
            },
            "last_refresh": last_refresh,
        })
        .to_string()
    }

    /// A ChatGPT-mode `auth.json` refreshed now, whose access token is good for an hour.
    pub fn fresh_auth_json(&self) -> String {
        let now = chrono::Utc::now();
        self.auth_json(
            now.timestamp() + 3600,
            &now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
    }
}

/// An API-key-mode `auth.json`.
pub fn api_key_auth_json(key: &str) -> String {
    json!({"auth_mode": "apikey", "OPENAI_API_KEY": key, "tokens": null, "last_refresh": null})
        .to_string()
}
