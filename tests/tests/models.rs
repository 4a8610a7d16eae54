//! Section 9's model catalog and tool shapes end to end: `model/list` merging its three sources
//! (and answering when a provider's `/models` hangs), the tools each model family is offered
//! (checked in the request bodies), and replayed freeform `apply_patch` and `shell_command`
//! calls producing the same client items as the function forms.

use std::path::Path;
use std::time::Duration;

use agent_server_tests::schema::lifecycle::EmptyParams;
use agent_server_tests::schema::methods::ListModels;
use agent_server_tests::turns::{
    api_key_builder, initialize, just_events, new_session, normalize_ids, submit, turn_events,
};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_function_call, mount_answer, mount_sse_once, responses_requests,
    responses_usage, sse,
};
use agent_server_tests::{TestServer, fixture};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// `(type, name)` of every tool in a Responses request body.
fn tool_shapes(body: &Value) -> Vec<(String, String)> {
    body["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|t| {
                    (
                        t["type"].as_str().unwrap_or_default().to_owned(),
                        t["name"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn model_list_merges_the_catalog_the_tables_and_provider_lists_and_survives_a_hang() {
    let local = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"object": "list", "data": [{"id": "house", "object": "model"}, {"id": "llama3", "object": "model"}]}),
        ))
        .expect(1)
        .mount(&local)
        .await;
    let slow = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": [{"id": "never-seen"}]}))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&slow)
        .await;
    let config = format!(
        "[models.house]\ndisplay_name = \"House model\"\ncontext_window = 32000\n\
         reasoning_efforts = [\"low\", \"high\"]\ndefault_reasoning_effort = \"high\"\n\
         input_modalities = [\"text\"]\n\
         [models.gpt-5]\ncontext_window = 1000\n\
         [model_providers.local]\nbase_url = \"{}/v1\"\nwire_api = \"chat\"\n\
         [model_providers.slow]\nbase_url = \"{}/v1\"\nlist_models = true\n",
        local.uri(),
        slow.uri()
    );
    let mut server = TestServer::builder()
        .home_file("config.toml", config)
        .spawn()
        .await;
    // The slow provider answers after 5 s, inside the harness's 10 s bound: its model showing
    // up would mean the 2 s timeout did not cut the wait.
    let listed = server
        .request::<ListModels>(EmptyParams {})
        .await
        .unwrap_or_else(|e| panic!("model/list failed: {e:?}"));
    let models: Vec<Value> = listed.models.iter().map(|m| json!(m)).collect();
    let find = |id: &str| models.iter().find(|m| m["id"] == id).cloned();
    assert_eq!(
        find("house"),
        Some(json!({
            "id": "house", "displayName": "House model", "description": "", "provider": "local",
            "contextWindow": 32000, "defaultReasoningEffort": "high",
            "reasoningEfforts": ["low", "high"], "inputModalities": ["text"], "isDefault": false,
        }))
    );
    assert_eq!(
        find("llama3"),
        Some(json!({
            "id": "llama3", "displayName": "llama3", "description": "", "provider": "local",
            "contextWindow": null, "defaultReasoningEffort": "medium", "reasoningEfforts": [],
            "inputModalities": ["text"], "isDefault": false,
        }))
    );
    let codex = find("gpt-5-codex").unwrap();
    assert_eq!(
        (
            &codex["provider"],
            &codex["contextWindow"],
            &codex["isDefault"],
            &codex["reasoningEfforts"]
        ),
        (
            &json!("openai"),
            &json!(272000),
            &json!(true),
            &json!(["low", "medium", "high"])
        )
    );
    assert_eq!(find("gpt-5").unwrap()["contextWindow"], 1000);
    assert_eq!(find("never-seen"), None);
    assert!(
        server.stderr_text().contains("model list could not be had"),
        "the log does not say why: {}",
        server.stderr_text()
    );
    // The list is kept: a second call does not ask the provider again (`expect(1)`).
    let again = server.request::<ListModels>(EmptyParams {}).await;
    assert_eq!(again, Ok(listed));
    drop(server);
    local.verify().await;
}

/// Runs one text turn in a session with `params` and returns the request body it sent.
async fn first_body(params: Value) -> Value {
    let upstream = MockServer::start().await;
    mount_answer(&upstream).await;
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, params).await;
    let turn = submit(&mut server, &session, "hi").await;
    turn_events(&mut server, &turn).await;
    responses_requests(&upstream).await.remove(0)
}

#[tokio::test]
async fn each_model_family_is_offered_the_tool_shapes_it_was_trained_with() {
    let codex = pairs(&[
        ("function", "shell_command"),
        ("custom", "apply_patch"),
        ("function", "update_plan"),
    ]);
    let functions = pairs(&[
        ("function", "shell"),
        ("function", "apply_patch"),
        ("function", "update_plan"),
    ]);
    for (model, expected) in [
        ("gpt-5-codex", &codex),
        ("gpt-5.1-codex-max", &codex),
        ("gpt-5.2", &codex),
        ("gpt-5", &functions),
        ("some-other-model", &functions),
    ] {
        let body = first_body(json!({"model": model})).await;
        assert_eq!(&tool_shapes(&body), expected, "{model}");
    }
    let body = first_body(json!({})).await;
    let patch_tool = &body["tools"][1];
    assert_eq!(
        (
            &patch_tool["format"]["type"],
            &patch_tool["format"]["syntax"]
        ),
        (&json!("grammar"), &json!("lark"))
    );
    let grammar = patch_tool["format"]["definition"].as_str().unwrap();
    assert!(grammar.contains("\"*** Begin Patch\""), "{grammar}");
}

#[tokio::test]
async fn tables_override_the_shapes_and_chat_providers_always_get_functions() {
    let upstream = MockServer::start().await;
    mount_answer(&upstream).await;
    Mock::given(method("POST"))
        .and(path("/chat/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(400).set_body_string("no"))
        .mount(&upstream)
        .await;
    let config = format!(
        "[models.gpt-5]\napply_patch_tool = \"custom\"\n\
         [models.gpt-5-codex]\nshell_tool = \"shell\"\n\
         [model_providers.chat]\nbase_url = \"{}/chat/v1\"\nwire_api = \"chat\"\nrequest_max_retries = 0\n",
        upstream.uri()
    );
    let mut server = api_key_builder(&upstream)
        .home_file("config.toml", config)
        .spawn()
        .await;
    for params in [
        json!({"model": "gpt-5"}),
        json!({"model": "gpt-5-codex"}),
        json!({"model": "gpt-5-codex", "modelProvider": "chat"}),
    ] {
        let session = new_session(&mut server, params).await;
        let turn = submit(&mut server, &session, "hi").await;
        turn_events(&mut server, &turn).await;
    }
    let bodies = responses_requests(&upstream).await;
    assert_eq!(
        bodies.iter().map(tool_shapes).collect::<Vec<_>>(),
        vec![
            pairs(&[
                ("function", "shell"),
                ("custom", "apply_patch"),
                ("function", "update_plan")
            ]),
            pairs(&[
                ("function", "shell"),
                ("custom", "apply_patch"),
                ("function", "update_plan")
            ]),
        ]
    );
    let chat: Vec<Value> = upstream
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/chat/completions"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let chat_tools: Vec<(Value, Value)> = chat[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["type"].clone(), t["function"]["name"].clone()))
        .collect();
    assert_eq!(
        chat_tools,
        vec![
            (json!("function"), json!("shell")),
            (json!("function"), json!("apply_patch")),
            (json!("function"), json!("update_plan")),
        ]
    );
}

/// Runs one turn whose first response is `first` in a fresh workspace with the `never` policy;
/// returns the turn's events (ids kept), the request bodies and the workspace.
async fn run_replayed(
    first: String,
    env_shell: &str,
) -> (Vec<Value>, Vec<Value>, tempfile::TempDir) {
    let upstream = MockServer::start().await;
    mount_sse_once(&upstream, first).await;
    mount_answer(&upstream).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
    let mut server = api_key_builder(&upstream)
        .env("SHELL", env_shell)
        .spawn()
        .await;
    initialize(&mut server, false).await;
    let session = new_session(
        &mut server,
        json!({"cwd": dir.path(), "approvalPolicy": "never", "sandbox": "workspaceWrite"}),
    )
    .await;
    let turn = submit(&mut server, &session, "go").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    (events, responses_requests(&upstream).await, dir)
}

/// The `itemStarted`/`itemCompleted` events of items other than the final message.
fn tool_items(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| {
            (e["type"] == "itemStarted" || e["type"] == "itemCompleted")
                && e["item"]["type"] != "agentMessage"
                && e["item"]["type"] != "reasoning"
        })
        .cloned()
        .collect()
}

/// `items` with the workspace path written as `<cwd>`.
fn in_workspace(items: &[Value], dir: &Path) -> Value {
    let text = json!(items)
        .to_string()
        .replace(&dir.display().to_string(), "<cwd>");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON after the rename: {e}"))
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

#[tokio::test]
async fn a_replayed_custom_apply_patch_call_gives_the_same_file_change_as_the_function_form() {
    let (custom_events, custom_bodies, custom_dir) =
        run_replayed(fixture("custom_apply_patch_call.sse"), "/bin/sh").await;
    let patch =
        "*** Begin Patch\n*** Add File: hello.txt\n+hello from a custom tool\n*** End Patch";
    let function = sse([
        ev_created("resp_F1"),
        ev_function_call(
            "call_P1",
            "apply_patch",
            &json!({"input": patch}).to_string(),
        ),
        ev_completed("resp_F1", responses_usage(1, 0, 1, 0)),
    ]);
    let (function_events, _, function_dir) = run_replayed(function, "/bin/sh").await;
    let items = in_workspace(&tool_items(&custom_events), custom_dir.path());
    assert_eq!(
        items,
        in_workspace(&tool_items(&function_events), function_dir.path())
    );
    let change = json!([{"path": "<cwd>/hello.txt", "kind": "add",
        "diff": "--- /dev/null\n+++ b/hello.txt\n@@ -0,0 +1 @@\n+hello from a custom tool\n"}]);
    assert_eq!(
        normalize_ids(&items),
        json!([
            {"type": "itemStarted", "item": {"id": "id1", "type": "fileChange", "status": "inProgress", "changes": change}},
            {"type": "itemCompleted", "item": {"id": "id1", "type": "fileChange", "status": "completed", "changes": change}},
        ])
    );
    assert_eq!(
        read(custom_dir.path(), "hello.txt"),
        "hello from a custom tool\n"
    );
    assert_eq!(
        read(function_dir.path(), "hello.txt"),
        "hello from a custom tool\n"
    );
    // The call goes back in the history as it came, answered with a custom_tool_call_output.
    let input = custom_bodies[1]["input"].as_array().unwrap();
    let call = input
        .iter()
        .find(|i| i["type"] == "custom_tool_call")
        .unwrap();
    assert_eq!(
        (&call["call_id"], &call["name"], &call["input"]),
        (&json!("call_P1"), &json!("apply_patch"), &json!(patch))
    );
    let output = input
        .iter()
        .find(|i| i["type"] == "custom_tool_call_output")
        .unwrap();
    assert_eq!(output["call_id"], "call_P1");
    assert!(
        output["output"].as_str().unwrap().contains("hello.txt"),
        "{output}"
    );
    assert!(!input.iter().any(|i| i["type"] == "function_call_output"));
}

#[tokio::test]
async fn a_replayed_shell_command_runs_the_string_in_the_login_shell() {
    let (events, bodies, dir) = run_replayed(fixture("shell_command_call.sse"), "/bin/sh").await;
    let script = "echo shell-command-ran > marker.txt && cat marker.txt";
    let items = tool_items(&events);
    assert_eq!(
        items
            .iter()
            .map(|e| (
                e["type"].clone(),
                e["item"]["command"].clone(),
                e["item"]["status"].clone()
            ))
            .collect::<Vec<_>>(),
        vec![
            (
                json!("itemStarted"),
                json!(["/bin/sh", "-lc", script]),
                json!("inProgress")
            ),
            (
                json!("itemCompleted"),
                json!(["/bin/sh", "-lc", script]),
                json!("completed")
            ),
        ]
    );
    assert_eq!(items[1]["item"]["output"], "shell-command-ran\n");
    assert_eq!(read(dir.path(), "marker.txt"), "shell-command-ran\n");
    let input = bodies[1]["input"].as_array().unwrap();
    let output = input
        .iter()
        .find(|i| i["type"] == "function_call_output" && i["call_id"] == "call_S1")
        .unwrap();
    assert!(
        output["output"]
            .as_str()
            .unwrap()
            .starts_with("Exit code: 0\n"),
        "{output}"
    );
}

#[tokio::test]
async fn shell_command_strings_are_classified_like_bash_lc_scripts() {
    let upstream = MockServer::start().await;
    for (id, command) in [("call_ro", "ls"), ("call_rw", "ls > listing.txt")] {
        mount_sse_once(
            &upstream,
            sse([
                ev_created(&format!("resp_{id}")),
                ev_function_call(
                    id,
                    "shell_command",
                    &json!({"command": command}).to_string(),
                ),
                ev_completed(&format!("resp_{id}"), responses_usage(1, 0, 1, 0)),
            ]),
        )
        .await;
    }
    mount_answer(&upstream).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = api_key_builder(&upstream)
        .env("SHELL", "/bin/sh")
        .auto_approve(agent_server_tests::schema::session::ApprovalDecision::Deny)
        .spawn()
        .await;
    initialize(&mut server, true).await;
    let session = new_session(
        &mut server,
        json!({"cwd": dir.path(), "approvalPolicy": "untrusted"}),
    )
    .await;
    let turn = submit(&mut server, &session, "go").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let completed: Vec<(Value, Value)> = events
        .iter()
        .filter(|e| e["type"] == "itemCompleted" && e["item"]["type"] == "commandExecution")
        .map(|e| (e["item"]["id"].clone(), e["item"]["status"].clone()))
        .collect();
    // `ls` is known read-only and runs unasked; the redirection asks, and the deny declines it.
    assert_eq!(
        completed,
        vec![
            (json!("call_ro"), json!("completed")),
            (json!("call_rw"), json!("declined")),
        ]
    );
    assert!(!dir.path().join("listing.txt").exists());
}
