//! Helpers for tests that run turns: a server wired to a mock upstream, sessions, submits, the
//! events of one turn, and id normalisation for whole-sequence comparisons.

use std::collections::HashMap;

use serde_json::{Value, json};
use wiremock::MockServer;

use crate::schema::lifecycle::{ClientCapabilities, ClientInfo, InitializeParams};
use crate::schema::methods::{Initialize, Submit};
use crate::schema::session::SubmitParams;
use crate::{TestServer, TestServerBuilder};

/// A builder for a server in API-key mode whose `openai` provider points at `upstream`.
pub fn api_key_builder(upstream: &MockServer) -> TestServerBuilder {
    TestServer::builder()
        .env("OPENAI_API_KEY", "test")
        .env("OPENAI_BASE_URL", format!("{}/v1", upstream.uri()))
}

/// Sends `initialize` with `capabilities.approvals` as given and checks it succeeded.
pub async fn initialize(server: &mut TestServer, approvals: bool) {
    let reply = server
        .request::<Initialize>(InitializeParams {
            client_info: Some(ClientInfo {
                name: "tests".into(),
                version: None,
            }),
            capabilities: ClientCapabilities { approvals },
            ..InitializeParams::default()
        })
        .await;
    assert!(reply.is_ok(), "initialize failed: {reply:?}");
}

/// A server in API-key mode wired to `upstream`, initialized (with `capabilities.approvals`
/// as given), and a session in `cwd` under approval policy `policy` and sandbox mode
/// `sandbox`; returns the server and the session id.
pub async fn session_in(
    upstream: &MockServer,
    cwd: &std::path::Path,
    approvals: bool,
    policy: &str,
    sandbox: &str,
) -> (TestServer, String) {
    let mut server = api_key_builder(upstream).spawn().await;
    initialize(&mut server, approvals).await;
    let session = new_session(
        &mut server,
        json!({"cwd": cwd, "approvalPolicy": policy, "sandbox": sandbox}),
    )
    .await;
    (server, session)
}

/// `session/new` with `params`; returns the session id (panics on an error reply). The params
/// are JSON, not `NewSessionParams`, so that a test sends exactly the object it writes.
pub async fn new_session(server: &mut TestServer, params: Value) -> String {
    let reply = server.request_raw("session/new", Some(params)).await;
    reply["result"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("session/new failed: {reply}"))
        .to_owned()
}

/// `session/submit` of `text` to `session_id`; returns the turn id.
pub async fn submit(server: &mut TestServer, session_id: &str, text: &str) -> String {
    let reply = server
        .request::<Submit>(SubmitParams {
            session_id: Some(session_id.to_owned()),
            text: Some(text.to_owned()),
            ..SubmitParams::default()
        })
        .await;
    match reply {
        Ok(submitted) => submitted.turn_id,
        Err(error) => panic!("session/submit failed: {error:?}"),
    }
}

/// `session/submit` with these params (per-turn settings and all), typed; returns the turn id
/// (panics on an error reply).
pub async fn submit_params(server: &mut TestServer, params: SubmitParams) -> String {
    match server.request::<Submit>(params).await {
        Ok(result) => result.turn_id,
        Err(err) => panic!("session/submit failed: {err:?}"),
    }
}

/// The `session/event` params of turn `turn_id`, in arrival order, up to and including its
/// `turnCompleted`.
pub async fn turn_events(server: &mut TestServer, turn_id: &str) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let message = server
            .wait_for_notification("session/event", |p| p["turnId"] == turn_id)
            .await;
        let params = message["params"].clone();
        let done = params["event"]["type"] == "turnCompleted";
        events.push(params);
        if done {
            return events;
        }
    }
}

/// The `turnStarted` event of a turn with the default settings (`gpt-5-codex`, `medium`,
/// `untrusted`, `workspaceWrite`) in `cwd`.
pub fn default_turn_started(cwd: &std::path::Path) -> Value {
    json!({"type": "turnStarted", "model": "gpt-5-codex", "reasoningEffort": "medium",
           "approvalPolicy": "untrusted", "sandbox": "workspaceWrite", "cwd": cwd})
}

/// The server's own working directory (the tests'), the cwd of sessions made without one.
pub fn server_cwd() -> std::path::PathBuf {
    std::env::current_dir().unwrap_or_else(|e| panic!("no current dir: {e}"))
}

/// Just the `event` members of `events` (see [`turn_events`]).
pub fn just_events(events: &[Value]) -> Vec<Value> {
    events.iter().map(|p| p["event"].clone()).collect()
}

/// The `turnCompleted` event of a turn's events.
pub fn completion(events: &[Value]) -> Value {
    let last = events
        .last()
        .unwrap_or_else(|| panic!("a turn without events"));
    assert_eq!(last["event"]["type"], "turnCompleted", "{last}");
    last["event"].clone()
}

/// Replaces random ids with stable names: every distinct string under an `id` or `itemId` key
/// becomes `id1`, `id2`, … in order of first appearance, wherever it appears.
pub fn normalize_ids(value: &Value) -> Value {
    let mut names = HashMap::new();
    collect_ids(value, &mut names);
    rename(value, &names)
}

fn collect_ids(value: &Value, names: &mut HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, member) in map {
                if (key == "id" || key == "itemId")
                    && let Value::String(id) = member
                    && !names.contains_key(id)
                {
                    let name = format!("id{}", names.len() + 1);
                    names.insert(id.clone(), name);
                }
                collect_ids(member, names);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_ids(v, names)),
        _ => {}
    }
}

fn rename(value: &Value, names: &HashMap<String, String>) -> Value {
    match value {
        Value::String(s) => names
            .get(s)
            .map_or_else(|| value.clone(), |n| Value::String(n.clone())),
        Value::Array(items) => Value::Array(items.iter().map(|v| rename(v, names)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), rename(v, names)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether a Responses input item is one of the server's own context messages (project
/// instructions, environment context, a compaction summary) rather than conversation.
pub fn is_context_message(item: &Value) -> bool {
    let text = item["content"][0]["text"].as_str().unwrap_or_default();
    item["role"] == "user"
        && (text.starts_with("# AGENTS.md instructions for ")
            || text.starts_with("<environment_context>")
            || text.starts_with("This is a summary of the earlier part of this conversation"))
}

/// A request's `input` without the server's context messages: the conversation proper.
pub fn conversation_input(request: &Value) -> Value {
    Value::Array(
        request["input"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|item| !is_context_message(item))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// The text of a user message holding one `input_text`, as the server sends it.
pub fn user_text_message(text: &str) -> Value {
    json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
}

/// The environment context message for these settings (wire spellings) with the shell the
/// test server sees (`SHELL` is scrubbed, so `bash`).
pub fn environment_message(cwd: &std::path::Path, policy: &str, sandbox: &str) -> Value {
    let network = if sandbox == "dangerFullAccess" {
        "enabled"
    } else {
        "restricted"
    };
    user_text_message(&format!(
        "<environment_context>\n  <cwd>{}</cwd>\n  <approval_policy>{policy}</approval_policy>\n  <sandbox_mode>{sandbox}</sandbox_mode>\n  <network_access>{network}</network_access>\n  <shell>bash</shell>\n</environment_context>",
        cwd.display()
    ))
}
