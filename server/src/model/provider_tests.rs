//! Tests of provider resolution.

use pretty_assertions::assert_eq;

use super::*;
use crate::model::testkit::{config, env_of};

fn openai_default() -> Provider {
    Provider {
        id: "openai".into(),
        name: "OpenAI".into(),
        base_url: None,
        env_key: None,
        bearer: None,
        wire_api: WireApi::Responses,
        query_params: BTreeMap::new(),
        headers: BTreeMap::new(),
        request_max_retries: 4,
        stream_max_retries: 5,
        stream_idle_timeout: Duration::from_millis(300_000),
        requires_auth: true,
    }
}

#[test]
fn builtin_openai_with_org_and_project_from_env() {
    let env = env_of(&[("OPENAI_ORGANIZATION", "org-1"), ("OPENAI_PROJECT", "")]);
    assert_eq!(
        resolve_provider_with_env(&config(), "openai", &env),
        Ok(Provider {
            headers: BTreeMap::from([("OpenAI-Organization".into(), "org-1".into())]),
            ..openai_default()
        })
    );
}

#[test]
fn openai_overrides_and_env_base_url() {
    let mut cfg = config();
    cfg.model_providers.insert(
        "openai".into(),
        ProviderConfig {
            base_url: Some("http://config.example/v1/".into()),
            request_max_retries: Some(1),
            http_headers: Some(BTreeMap::from([("X-Extra".into(), "1".into())])),
            ..ProviderConfig::default()
        },
    );
    let from_config = resolve_provider_with_env(&cfg, "openai", &env_of(&[]));
    cfg.env_openai_base_url = Some("http://env.example/v1".into());
    let from_env = resolve_provider_with_env(&cfg, "openai", &env_of(&[]));
    let expected = Provider {
        base_url: Some("http://config.example/v1".into()),
        request_max_retries: 1,
        headers: BTreeMap::from([("X-Extra".into(), "1".into())]),
        ..openai_default()
    };
    assert_eq!(
        (from_config, from_env),
        (
            Ok(expected.clone()),
            Ok(Provider {
                base_url: Some("http://env.example/v1".into()),
                ..expected
            })
        )
    );
}

fn local_config(env_key: Option<&str>) -> Config {
    let mut cfg = config();
    cfg.model_providers.insert(
        "local".into(),
        ProviderConfig {
            name: Some("Local".into()),
            base_url: Some("http://127.0.0.1:9/v1".into()),
            env_key: env_key.map(str::to_string),
            wire_api: Some(WireApi::Chat),
            query_params: Some(BTreeMap::from([("api-version".into(), "1".into())])),
            http_headers: None,
            env_http_headers: Some(BTreeMap::from([("X-Team".into(), "TEAM".into())])),
            request_max_retries: Some(2),
            stream_max_retries: Some(3),
            stream_idle_timeout_ms: Some(1000),
            requires_auth: Some(false),
            list_models: None,
        },
    );
    cfg
}

#[test]
fn custom_provider_every_field() {
    let env = env_of(&[("LOCAL_KEY", "sk-local"), ("TEAM", "blue")]);
    assert_eq!(
        resolve_provider_with_env(&local_config(Some("LOCAL_KEY")), "local", &env),
        Ok(Provider {
            id: "local".into(),
            name: "Local".into(),
            base_url: Some("http://127.0.0.1:9/v1".into()),
            env_key: Some("LOCAL_KEY".into()),
            bearer: Some(Secret::new("sk-local")),
            wire_api: WireApi::Chat,
            query_params: BTreeMap::from([("api-version".into(), "1".into())]),
            headers: BTreeMap::from([("X-Team".into(), "blue".into())]),
            request_max_retries: 2,
            stream_max_retries: 3,
            stream_idle_timeout: Duration::from_millis(1000),
            requires_auth: false,
        })
    );
}

#[test]
fn custom_provider_errors() {
    let missing_key =
        resolve_provider_with_env(&local_config(Some("LOCAL_KEY")), "local", &env_of(&[]));
    let unknown = resolve_provider_with_env(&config(), "nope", &env_of(&[]));
    let mut bad = local_config(None);
    if let Some(p) = bad.model_providers.get_mut("local") {
        p.http_headers = Some(BTreeMap::from([("Bad Header".into(), "x".into())]));
    }
    let bad_header = resolve_provider_with_env(&bad, "local", &env_of(&[]));
    assert_eq!(
        [missing_key, unknown, bad_header],
        [
            Err(ModelError::AuthRequired(
                "model provider `local` reads its API key from the environment variable \
                 LOCAL_KEY, which is not set: set it and start again"
                    .to_string()
            )),
            Err(ModelError::UnknownProvider("nope".into())),
            Err(ModelError::InvalidProvider(
                "model_providers.local: header `Bad Header` has an invalid name or value: fix it in config.toml"
                    .to_string()
            )),
        ]
    );
    assert_eq!(
        ModelError::UnknownProvider("nope".into()).to_string(),
        "unknown model provider `nope`: use `openai` or add [model_providers.nope] to config.toml"
    );
}

#[test]
fn custom_provider_without_key_needs_no_auth() {
    let provider = resolve_provider_with_env(&local_config(None), "local", &env_of(&[]));
    assert_eq!(
        provider.map(|p| (p.bearer, p.requires_auth, p.headers)),
        Ok((None, false, BTreeMap::new()))
    );
}
