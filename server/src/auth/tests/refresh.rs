//! Proactive and reactive refresh, one refresh per process and across processes, failures.

use pretty_assertions::assert_eq;
use serde_json::json;
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, ResponseTemplate};

use super::*;
use crate::auth::{AuthMode, AuthSource, AuthStatus};
use crate::model::auth::{CredentialError, CredentialMode, UpstreamAuth, UpstreamCredentials};
use crate::secret::Secret;

/// The refresh request the contract prescribes for `refresh_token`.
fn refresh_body(refresh_token: &str) -> serde_json::Value {
    json!({
        "client_id": "app_test",
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "scope": "openid profile email"
    })
}

/// Mounts a refresh endpoint expecting `refresh_token` exactly `times` times.
async fn expect_refresh(h: &Harness, refresh_token: &str, answer: serde_json::Value, times: u64) {
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_json(refresh_body(refresh_token)))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .expect(times)
        .mount(&h.issuer)
        .await;
}

/// `auth.json` without `last_refresh` (which a refresh sets to about now), and that value.
fn without_last_refresh(mut value: serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    let at = value
        .as_object_mut()
        .unwrap()
        .remove("last_refresh")
        .unwrap();
    (value, at)
}

#[tokio::test]
async fn a_stale_login_without_exp_is_refreshed_once_and_saved() {
    let h = Harness::new().await;
    let id = id_token("a@b.c", "plus", "acc-1");
    h.write_auth(&chatgpt_file(
        &id,
        "opaque-access",
        "rt-1",
        "2020-01-01T00:00:00Z",
    ));
    let new_access = access_token("a2", 3600);
    expect_refresh(
        &h,
        "rt-1",
        json!({"id_token": id, "access_token": new_access, "refresh_token": "rt-2"}),
        1,
    )
    .await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let creds = h.manager.credentials().await.unwrap();
    assert_eq!(
        (
            creds.mode,
            creds.bearer.expose(),
            creds.account_id.as_deref()
        ),
        (CredentialMode::ChatGpt, new_access.as_str(), Some("acc-1"))
    );
    let (file, last_refresh) = without_last_refresh(h.read_auth());
    let (expected, _) = without_last_refresh(chatgpt_file(&id, &new_access, "rt-2", ""));
    assert_eq!(file, expected);
    let last_refresh: chrono::DateTime<chrono::Utc> =
        last_refresh.as_str().unwrap().parse().unwrap();
    assert!(
        last_refresh >= before,
        "last_refresh {last_refresh} was not updated"
    );
    // Fresh now: no second refresh.
    h.manager.credentials().await.unwrap();
}

#[tokio::test]
async fn an_expiring_access_token_is_refreshed_keeping_what_the_issuer_left_out() {
    let h = Harness::new().await;
    let id = id_token("a@b.c", "plus", "acc-1");
    h.write_auth(&chatgpt_file(
        &id,
        &access_token("a1", 60),
        "rt-1",
        "2026-11-23T10:00:00Z",
    ));
    let new_access = access_token("a2", 3600);
    expect_refresh(&h, "rt-1", json!({"access_token": new_access}), 1).await;
    assert_eq!(
        h.manager.credentials().await.unwrap().bearer.expose(),
        new_access
    );
    let (file, _) = without_last_refresh(h.read_auth());
    let (expected, _) = without_last_refresh(chatgpt_file(&id, &new_access, "rt-1", ""));
    assert_eq!(file, expected);
    assert_eq!(mode_of(&h.auth_path()), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_one_refresh() {
    let h = Harness::new().await;
    let id = id_token("a@b.c", "plus", "acc-1");
    h.write_auth(&chatgpt_file(
        &id,
        &access_token("a1", -10),
        "rt-1",
        "2026-11-23T10:00:00Z",
    ));
    let new_access = access_token("a2", 3600);
    expect_refresh(
        &h,
        "rt-1",
        json!({"access_token": new_access, "refresh_token": "rt-2"}),
        1,
    )
    .await;
    let (a, b) = tokio::join!(h.manager.credentials(), h.manager.credentials());
    assert_eq!(
        (a.unwrap().bearer.expose(), b.unwrap().bearer.expose()),
        (new_access.as_str(), new_access.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_managers_on_one_home_refresh_once_between_them() {
    let h = Harness::new().await;
    let other = h.other_manager();
    let id = id_token("a@b.c", "plus", "acc-1");
    h.write_auth(&chatgpt_file(
        &id,
        &access_token("a1", -10),
        "rt-1",
        "2026-11-23T10:00:00Z",
    ));
    let new_access = access_token("a2", 3600);
    // The refresh token rotates: a second refresh with rt-1 would match no mock and fail.
    expect_refresh(
        &h,
        "rt-1",
        json!({"access_token": new_access, "refresh_token": "rt-2"}),
        1,
    )
    .await;
    let (a, b) = tokio::join!(h.manager.credentials(), other.credentials());
    assert_eq!(
        (a.unwrap().bearer.expose(), b.unwrap().bearer.expose()),
        (new_access.as_str(), new_access.as_str())
    );
    assert_eq!(h.read_auth()["tokens"]["refresh_token"], "rt-2");
}

#[tokio::test]
async fn a_refused_refresh_requires_a_new_login_and_is_not_retried() {
    let h = Harness::new().await;
    let original = chatgpt_file(
        &id_token("a@b.c", "plus", "acc-1"),
        &access_token("a1", -10),
        "rt-1",
        "2026-11-23T10:00:00Z",
    );
    h.write_auth(&original);
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"code": "refresh_token_expired"}})),
        )
        .expect(1)
        .mount(&h.issuer)
        .await;
    let message = "the ChatGPT login has expired or was revoked (HTTP 401 Unauthorized, refresh_token_expired): log in again with `agent-server login` or auth/loginChatGPT";
    for _ in 0..2 {
        match h.manager.credentials().await {
            Err(CredentialError::LoginRequired(m)) => assert_eq!(m, message),
            other => panic!("expected LoginRequired, got {other:?}"),
        }
    }
    let err = h.manager.status(false, true).await.unwrap_err();
    assert_eq!(
        (err.error_kind(), err.to_string()),
        (
            agent_server_schema::rpc::ErrorKind::LoginRequired,
            message.to_owned()
        )
    );
    assert_eq!(h.read_auth(), original);
}

#[tokio::test]
async fn a_failing_issuer_is_transient() {
    let h = Harness::new().await;
    h.write_auth(&chatgpt_file(
        &id_token("a@b.c", "plus", "acc-1"),
        &access_token("a1", -10),
        "rt-1",
        "2026-11-23T10:00:00Z",
    ));
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&h.issuer)
        .await;
    let message = "the token refresh failed (HTTP 503 Service Unavailable): try again later";
    assert!(
        matches!(h.manager.credentials().await, Err(CredentialError::Transient(m)) if m == message)
    );
    let status = h.manager.status(true, false).await.unwrap();
    assert_eq!(status.error.as_deref(), Some(message));
}

#[tokio::test]
async fn a_token_that_still_works_is_used_when_an_early_refresh_fails() {
    let h = Harness::new().await;
    let access = access_token("a1", 60);
    h.write_auth(&chatgpt_file(
        &id_token("a@b.c", "plus", "acc-1"),
        &access,
        "rt-1",
        "2026-11-23T10:00:00Z",
    ));
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&h.issuer)
        .await;
    assert_eq!(
        h.manager.credentials().await.unwrap().bearer.expose(),
        access
    );
}

#[tokio::test]
async fn a_401_uses_tokens_another_process_saved_or_refreshes() {
    let h = Harness::new().await;
    let id = id_token("a@b.c", "plus", "acc-1");
    let current = access_token("current", 3600);
    h.write_auth(&chatgpt_file(&id, &current, "rt-1", "2026-11-23T10:00:00Z"));
    let rejected = |bearer: &str| UpstreamCredentials {
        mode: CredentialMode::ChatGpt,
        bearer: Secret::new(bearer),
        account_id: Some("acc-1".into()),
    };
    // Someone else already replaced the rejected token: no refresh (no mock is mounted yet).
    let creds = h
        .manager
        .recover_unauthorized(&rejected("older"))
        .await
        .unwrap();
    assert_eq!(creds.bearer.expose(), current);

    let new_access = access_token("new", 3600);
    expect_refresh(
        &h,
        "rt-1",
        json!({"access_token": new_access, "refresh_token": "rt-2"}),
        1,
    )
    .await;
    let creds = h
        .manager
        .recover_unauthorized(&rejected(&current))
        .await
        .unwrap();
    assert_eq!(creds.bearer.expose(), new_access);
    assert_eq!(h.read_auth()["tokens"]["access_token"], new_access.as_str());
}

#[tokio::test]
async fn a_401_on_an_api_key_retries_with_the_current_key() {
    let h = Harness::new().await;
    h.write_auth(&json!({"OPENAI_API_KEY": "sk-new"}));
    let rejected = |bearer: &str| UpstreamCredentials {
        mode: CredentialMode::ApiKey,
        bearer: Secret::new(bearer),
        account_id: None,
    };
    assert_eq!(
        h.manager
            .recover_unauthorized(&rejected("sk-old"))
            .await
            .unwrap()
            .bearer
            .expose(),
        "sk-new"
    );
    // Unchanged: the same key again, whose second 401 the model client reports.
    assert_eq!(
        h.manager
            .recover_unauthorized(&rejected("sk-new"))
            .await
            .unwrap()
            .bearer
            .expose(),
        "sk-new"
    );
}

#[tokio::test]
async fn a_forced_refresh_that_changes_the_plan_is_announced() {
    let mut h = Harness::new().await;
    h.write_auth(&chatgpt_file(
        &id_token("a@b.c", "plus", "acc-1"),
        &access_token("a1", 3600),
        "rt-1",
        "2026-11-23T10:00:00Z",
    ));
    let pro = id_token("a@b.c", "pro", "acc-1");
    expect_refresh(
        &h,
        "rt-1",
        json!({"id_token": pro, "refresh_token": "rt-2"}),
        1,
    )
    .await;
    let status = h.manager.status(false, true).await.unwrap();
    let expected = AuthStatus {
        auth_mode: Some(AuthMode::Chatgpt),
        source: Some(AuthSource::AuthFile),
        email: Some("a@b.c".into()),
        plan_type: Some("pro".into()),
        account_id: Some("acc-1".into()),
        last_refresh: status.last_refresh.clone(),
        requires_openai_auth: true,
        ..AuthStatus::default()
    };
    assert_eq!(status, expected);
    assert_eq!(h.next_event().await, Seen::Status(expected));

    // Same account and plan: refreshed quietly.
    expect_refresh(&h, "rt-2", json!({"refresh_token": "rt-3"}), 1).await;
    h.manager.status(false, true).await.unwrap();
    assert_eq!(h.pending_events(), vec![]);
}
