//! PKCE (RFC 7636, S256), the `state` value, and the authorize URL.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::secret::Secret;

/// A PKCE verifier and its S256 challenge.
#[derive(Debug, Clone)]
pub(crate) struct Pkce {
    /// The verifier, sent only with the code exchange.
    pub verifier: Secret,
    /// `BASE64URL(SHA256(verifier))`, sent in the authorize URL.
    pub challenge: String,
}

impl Pkce {
    /// A fresh verifier from 64 random bytes (86 characters, inside RFC 7636's 43..=128).
    pub(crate) fn generate() -> Self {
        Self::from_verifier(random_base64url::<64>())
    }

    /// The challenge of a given verifier.
    pub(crate) fn from_verifier(verifier: String) -> Self {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self {
            verifier: Secret::new(verifier),
            challenge,
        }
    }
}

/// A fresh `state` value: 32 random bytes, base64url.
pub(crate) fn new_state() -> String {
    random_base64url::<32>()
}

fn random_base64url<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What goes into the authorize URL.
#[derive(Debug)]
pub(crate) struct AuthorizeRequest<'a> {
    /// The issuer's base URL.
    pub issuer: &'a str,
    /// The OAuth client id.
    pub client_id: &'a str,
    /// The loopback callback URL.
    pub redirect_uri: &'a str,
    /// The S256 challenge.
    pub challenge: &'a str,
    /// The `state` value checked on the callback.
    pub state: &'a str,
    /// The `originator` parameter.
    pub originator: &'a str,
}

impl AuthorizeRequest<'_> {
    /// `<issuer>/oauth/authorize?…` with the contract's parameters, in its order.
    pub(crate) fn url(&self) -> String {
        let params = [
            ("response_type", "code"),
            ("client_id", self.client_id),
            ("redirect_uri", self.redirect_uri),
            ("scope", "openid profile email offline_access"),
            ("code_challenge", self.challenge),
            ("code_challenge_method", "S256"),
            ("id_token_add_organizations", "true"),
            ("state", self.state),
            ("originator", self.originator),
        ];
        let query = params
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencoding::encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        format!(
            "{}/oauth/authorize?{query}",
            self.issuer.trim_end_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn s256_challenge_matches_rfc_7636_appendix_b() {
        let pkce = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(
            pkce.challenge,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_values_have_the_right_length_and_alphabet() {
        let pkce = Pkce::generate();
        let state = new_state();
        let urlsafe = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        assert_eq!(
            (
                pkce.verifier.expose().len(),
                pkce.challenge.len(),
                state.len()
            ),
            (86, 43, 43)
        );
        assert!(urlsafe(pkce.verifier.expose()) && urlsafe(&state));
        assert_ne!(new_state(), state);
    }

    #[test]
    fn authorize_url_carries_every_parameter() {
        let url = AuthorizeRequest {
            issuer: "https://auth.example/",
            client_id: "app_1",
            redirect_uri: "http://localhost:1455/auth/callback",
            challenge: "ch",
            state: "st",
            originator: "agent-server",
        }
        .url();
        assert_eq!(
            url,
            "https://auth.example/oauth/authorize?response_type=code&client_id=app_1&redirect_uri=http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback&scope=openid%20profile%20email%20offline_access&code_challenge=ch&code_challenge_method=S256&id_token_add_organizations=true&state=st&originator=agent-server"
        );
    }
}
