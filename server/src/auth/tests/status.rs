//! `status` for every source and mode, API-key login, logout, malformed files.

use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::auth::{AuthMode, AuthSource, AuthStatus};
use crate::model::auth::{CredentialError, CredentialMode, UpstreamAuth};
use crate::secret::Secret;

fn not_logged_in() -> AuthStatus {
    AuthStatus {
        requires_openai_auth: true,
        ..AuthStatus::default()
    }
}

fn api_key_status(source: AuthSource, token: Option<&str>) -> AuthStatus {
    AuthStatus {
        auth_mode: Some(AuthMode::ApiKey),
        source: Some(source),
        auth_token: token.map(str::to_owned),
        ..not_logged_in()
    }
}

#[tokio::test]
async fn nothing_configured_is_not_logged_in() {
    let h = Harness::with(|s| s.requires_openai_auth = false).await;
    assert_eq!(
        h.manager.status(true, false).await.unwrap(),
        AuthStatus {
            requires_openai_auth: false,
            ..AuthStatus::default()
        }
    );
    assert!(!h.manager.has_credentials());
    assert!(matches!(
        h.manager.credentials().await,
        Err(CredentialError::NotLoggedIn)
    ));
}

#[tokio::test]
async fn the_env_key_wins_over_auth_json() {
    let h = Harness::with(|s| s.env_api_key = Some(Secret::new("sk-env"))).await;
    h.write_auth(&chatgpt_file(
        "a.b.c",
        "x.y.z",
        "rt",
        "2026-01-01T00:00:00Z",
    ));
    assert_eq!(
        h.manager.status(false, false).await.unwrap(),
        api_key_status(AuthSource::Env, None)
    );
    assert_eq!(
        h.manager.status(true, false).await.unwrap(),
        api_key_status(AuthSource::Env, Some("sk-env"))
    );
    let creds = h.manager.credentials().await.unwrap();
    assert_eq!(
        (creds.mode, creds.bearer.expose(), creds.account_id),
        (CredentialMode::ApiKey, "sk-env", None)
    );
}

#[tokio::test]
async fn an_api_key_in_auth_json_by_mode_or_by_presence() {
    let h = Harness::new().await;
    h.write_auth(&json!({"auth_mode": "ApiKey", "OPENAI_API_KEY": "sk-file", "tokens": null}));
    assert_eq!(
        h.manager.status(true, false).await.unwrap(),
        api_key_status(AuthSource::AuthFile, Some("sk-file"))
    );
    h.write_auth(&json!({"OPENAI_API_KEY": "sk-old-style"}));
    assert_eq!(
        h.manager.status(true, false).await.unwrap(),
        api_key_status(AuthSource::AuthFile, Some("sk-old-style"))
    );
    assert!(h.manager.has_credentials());
}

#[tokio::test]
async fn a_chatgpt_login_shows_its_claims_and_token() {
    let h = Harness::new().await;
    let access = access_token("a1", 3600);
    let mut file = chatgpt_file(
        &id_token("a@b.c", "plus", "acc-1"),
        &access,
        "rt-1",
        "2026-11-23T10:00:00Z",
    );
    // Without auth_mode, tokens alone mean a ChatGPT login.
    file.as_object_mut().unwrap().remove("auth_mode");
    h.write_auth(&file);
    let expected = AuthStatus {
        auth_mode: Some(AuthMode::Chatgpt),
        source: Some(AuthSource::AuthFile),
        email: Some("a@b.c".into()),
        plan_type: Some("plus".into()),
        account_id: Some("acc-1".into()),
        last_refresh: Some("2026-11-23T10:00:00Z".into()),
        ..not_logged_in()
    };
    assert_eq!(h.manager.status(false, false).await.unwrap(), expected);
    assert_eq!(
        h.manager.status(true, false).await.unwrap(),
        AuthStatus {
            auth_token: Some(access.clone()),
            ..expected
        }
    );
    let creds = h.manager.credentials().await.unwrap();
    assert_eq!(
        (
            creds.mode,
            creds.bearer.expose(),
            creds.account_id.as_deref()
        ),
        (CredentialMode::ChatGpt, access.as_str(), Some("acc-1"))
    );
}

#[tokio::test]
async fn an_unreadable_id_token_is_reported_not_fatal() {
    let h = Harness::new().await;
    let access = access_token("a1", 3600);
    h.write_auth(&chatgpt_file(
        "not-a-jwt",
        &access,
        "rt-1",
        "2026-11-23T10:00:00Z",
    ));
    let status = h.manager.status(false, false).await.unwrap();
    assert_eq!(
        status.error,
        Some(format!(
            "the id_token in {} could not be read (the token is not a JWT (expected three dot-separated parts)): log in again",
            h.auth_path().display()
        ))
    );
    assert_eq!(
        h.manager.credentials().await.unwrap().bearer.expose(),
        access
    );
}

#[tokio::test]
async fn api_key_login_and_logout_write_and_remove_the_file() {
    let mut h = Harness::new().await;
    let err = h
        .manager
        .login_api_key(Secret::new("  "))
        .await
        .unwrap_err();
    assert_eq!(
        err.error_kind(),
        agent_server_schema::rpc::ErrorKind::InvalidParams
    );
    assert!(!h.auth_path().exists());

    h.manager
        .login_api_key(Secret::new("sk-new\n"))
        .await
        .unwrap();
    assert_eq!(
        h.read_auth(),
        json!({"auth_mode": "apikey", "OPENAI_API_KEY": "sk-new", "tokens": null, "last_refresh": null})
    );
    assert_eq!(mode_of(&h.auth_path()), 0o600);
    assert_eq!(
        h.next_event().await,
        Seen::Status(api_key_status(AuthSource::AuthFile, None))
    );

    h.manager.logout().await.unwrap();
    assert!(!h.auth_path().exists());
    assert_eq!(h.next_event().await, Seen::Status(not_logged_in()));
    assert_eq!(
        h.manager.status(false, false).await.unwrap(),
        not_logged_in()
    );
    // Logging out twice is fine.
    h.manager.logout().await.unwrap();
}

#[tokio::test]
async fn the_home_is_created_0700_on_first_login() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("new-home");
    let manager = AuthManager::new(
        settings(&home, "http://127.0.0.1:9"),
        http(),
        Recorder::new(),
    );
    manager.login_api_key(Secret::new("sk-1")).await.unwrap();
    assert_eq!(
        (mode_of(&home), mode_of(&home.join("auth.json"))),
        (0o700, 0o600)
    );
}

#[tokio::test]
async fn logout_keeps_an_env_key_in_effect() {
    let mut h = Harness::with(|s| s.env_api_key = Some(Secret::new("sk-env"))).await;
    h.write_auth(&json!({"OPENAI_API_KEY": "sk-file"}));
    h.manager.logout().await.unwrap();
    assert!(!h.auth_path().exists());
    assert_eq!(
        h.next_event().await,
        Seen::Status(api_key_status(AuthSource::Env, None))
    );
}

#[tokio::test]
async fn a_malformed_file_is_reported_and_left_intact_until_an_explicit_login() {
    let h = Harness::new().await;
    let text = "{\n  \"auth_mode\": \"chatgpt\",\n  \"tokens\": {\"id_token\": \"secret-id\"\n";
    std::fs::write(h.auth_path(), text).unwrap();
    let error = format!(
        "{} is not valid JSON (line 4, column 0): log in again to replace it (the old file will be kept as auth.json.corrupt-<time>)",
        h.auth_path().display()
    );
    assert_eq!(
        h.manager.status(true, true).await.unwrap(),
        AuthStatus {
            error: Some(error.clone()),
            ..not_logged_in()
        }
    );
    assert!(
        matches!(h.manager.credentials().await, Err(CredentialError::Unusable(m)) if m == error)
    );
    let rejected = crate::model::auth::UpstreamCredentials {
        mode: CredentialMode::ChatGpt,
        bearer: Secret::new("old"),
        account_id: None,
    };
    assert!(matches!(
        h.manager.recover_unauthorized(&rejected).await,
        Err(CredentialError::Unusable(_))
    ));
    assert!(!h.manager.has_credentials());
    assert_eq!(std::fs::read_to_string(h.auth_path()).unwrap(), text);

    h.manager.login_api_key(Secret::new("sk-1")).await.unwrap();
    let corrupt: Vec<_> = std::fs::read_dir(h.home.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("auth.json.corrupt-")
        })
        .collect();
    assert_eq!(corrupt.len(), 1);
    assert_eq!(std::fs::read_to_string(&corrupt[0]).unwrap(), text);
    assert_eq!(h.read_auth()["OPENAI_API_KEY"], "sk-1");
}

#[tokio::test]
async fn a_malformed_file_with_an_env_key_shows_the_env_mode_and_the_error() {
    let h = Harness::with(|s| s.env_api_key = Some(Secret::new("sk-env"))).await;
    std::fs::write(h.auth_path(), "not json").unwrap();
    let status = h.manager.status(false, false).await.unwrap();
    assert_eq!(
        status,
        AuthStatus {
            error: Some(format!(
                "{} is not valid JSON (line 1, column 2): log in again to replace it (the old file will be kept as auth.json.corrupt-<time>)",
                h.auth_path().display()
            )),
            ..api_key_status(AuthSource::Env, None)
        }
    );
    assert!(h.manager.has_credentials());
}
