//! Section 2 of the contract (`initialize`) and the process lifecycle of section 1: how the
//! server ends (`shutdown`, `exit`, stdin EOF, SIGTERM/SIGINT), what happens to running turns
//! and tool processes then, one-shot piping, start-up failures (exit status 2), `--version`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use agent_server_tests::replies::{error_reply, kind_error, ok_reply, redact};
use agent_server_tests::schema::auth::AuthStatus;
use agent_server_tests::schema::lifecycle::{
    ClientCapabilities, ClientInfo, EmptyParams, Framing, InitializeParams, InitializeResult,
    ServerCapabilities, ServerInfo,
};
use agent_server_tests::schema::methods::{Initialize, Shutdown, Submit};
use agent_server_tests::schema::session::SubmitParams;
use agent_server_tests::turns::{new_session, submit};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_function_call, ev_message_done, function_call_output,
    mount_sse_once, responses_requests, responses_usage, sse, sse_response,
};
use agent_server_tests::{DEFAULT_TIMEOUT, SIGINT, SIGTERM, TestServer, VERSION, run_to_end};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer};

fn os_and_arch() -> String {
    format!("{}; {}", std::env::consts::OS, std::env::consts::ARCH)
}

fn logged_out() -> Value {
    json!({
        "authMode": null, "source": null, "email": null, "planType": null,
        "accountId": null, "lastRefresh": null, "requiresOpenaiAuth": true, "error": null,
    })
}

/// The `initialize` result the contract describes for a fresh home.
fn initialize_result(home: &Path, approvals: bool, client: Option<&str>) -> Value {
    let mut user_agent = format!("agent-server/{VERSION} ({})", os_and_arch());
    if let Some(client) = client {
        user_agent = format!("{user_agent} {client}");
    }
    json!({
        "protocolVersion": 1,
        "serverInfo": {"name": "agent-server", "version": VERSION},
        "capabilities": {"approvals": approvals, "framing": "ndjson"},
        "userAgent": user_agent,
        "home": home.to_string_lossy(),
        "auth": logged_out(),
    })
}

fn contract_initialize(id: i64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": 1,
        "clientInfo": {"name": "my-ide", "version": "1.2.0"},
        "capabilities": {"approvals": true},
    }})
}

// ---- initialize ----

#[tokio::test]
async fn initialize_answers_with_the_contract_shape() {
    let mut server = TestServer::start().await;
    server.send_json(contract_initialize(0)).await;
    let expected = initialize_result(server.home(), true, Some("my-ide/1.2.0"));
    assert_eq!(server.read_message().await, ok_reply(0, expected));
}

#[tokio::test]
async fn initialize_through_the_typed_api() {
    let mut server = TestServer::start().await;
    let result = server
        .request::<Initialize>(InitializeParams {
            protocol_version: Some(1),
            client_info: Some(ClientInfo {
                name: "my-ide".into(),
                version: Some("1.2.0".into()),
            }),
            capabilities: ClientCapabilities { approvals: false },
        })
        .await
        .unwrap_or_else(|e| panic!("initialize failed: {e:?}"));
    assert_eq!(
        result,
        InitializeResult {
            protocol_version: 1,
            server_info: ServerInfo {
                name: "agent-server".into(),
                version: VERSION.into()
            },
            capabilities: ServerCapabilities {
                approvals: false,
                framing: Framing::Ndjson
            },
            user_agent: format!("agent-server/{VERSION} ({}) my-ide/1.2.0", os_and_arch()),
            home: server.home().to_str().unwrap().into(),
            auth: AuthStatus {
                requires_openai_auth: true,
                ..AuthStatus::default()
            },
        }
    );
}

#[tokio::test]
async fn initialize_with_empty_params_uses_the_defaults() {
    let mut server = TestServer::start().await;
    let reply = server.request_raw("initialize", Some(json!({}))).await;
    let expected = initialize_result(server.home(), false, None);
    assert_eq!(reply, ok_reply(reply["id"].clone(), expected));
}

#[tokio::test]
async fn initialize_with_a_nameless_version_client_info() {
    let mut server = TestServer::start().await;
    let reply = server
        .request::<Initialize>(InitializeParams {
            client_info: Some(ClientInfo {
                name: "script".into(),
                version: None,
            }),
            ..InitializeParams::default()
        })
        .await;
    assert_eq!(
        reply.map(|r| r.user_agent),
        Ok(format!("agent-server/{VERSION} ({}) script", os_and_arch()))
    );
}

#[tokio::test]
async fn initialize_is_optional_but_must_come_first() {
    let mut server = TestServer::start().await;
    let reply = server.request_raw("session/list", None).await;
    assert_eq!(
        reply,
        ok_reply(
            reply["id"].clone(),
            json!({"sessions": [], "nextCursor": null})
        )
    );
    server.send_json(contract_initialize(9)).await;
    assert_eq!(
        redact(server.wait_for_response(9).await),
        kind_error(9, -32600, "initializeNotFirst")
    );
}

#[tokio::test]
async fn notifications_before_initialize_do_not_count_as_requests() {
    let mut server = TestServer::start().await;
    server
        .send_notification("some/notification", Some(json!({})))
        .await;
    server
        .send_notification("$/cancelRequest", Some(json!({"id": 1})))
        .await;
    server.send_json(contract_initialize(0)).await;
    let expected = initialize_result(server.home(), true, Some("my-ide/1.2.0"));
    assert_eq!(server.read_message().await, ok_reply(0, expected));
}

#[tokio::test]
async fn an_unsupported_protocol_version_is_refused_and_may_be_retried() {
    let mut server = TestServer::start().await;
    let reply = server
        .request_raw("initialize", Some(json!({"protocolVersion": 2})))
        .await;
    assert_eq!(
        redact(reply.clone()),
        error_reply(
            reply["id"].clone(),
            -32602,
            json!({"kind": "unsupportedProtocolVersion", "supported": [1]})
        )
    );
    server.send_json(contract_initialize(5)).await;
    let expected = initialize_result(server.home(), true, Some("my-ide/1.2.0"));
    assert_eq!(server.wait_for_response(5).await, ok_reply(5, expected));
}

#[tokio::test]
async fn a_second_initialize_is_refused() {
    let mut server = TestServer::start().await;
    server.send_json(contract_initialize(0)).await;
    assert!(server.read_message().await.get("result").is_some());
    server.send_json(contract_initialize(1)).await;
    assert_eq!(
        redact(server.read_message().await),
        kind_error(1, -32600, "alreadyInitialized")
    );
}

// ---- what initialize changes later ----

/// An upstream whose first call asks to run `touch made-by-tool` (not read-only, so
/// `untrusted` needs approval) and whose second call answers with text.
async fn upstream_asking_to_touch() -> MockServer {
    let upstream = MockServer::start().await;
    let arguments = json!({"command": ["touch", "made-by-tool"]}).to_string();
    mount_sse_once(
        &upstream,
        sse([
            ev_created("resp_1"),
            ev_function_call("call_1", "shell", &arguments),
            ev_completed("resp_1", responses_usage(10, 0, 5, 0)),
        ]),
    )
    .await;
    mount_sse_once(
        &upstream,
        sse([
            ev_created("resp_2"),
            ev_message_done("msg_1", "fine"),
            ev_completed("resp_2", responses_usage(20, 0, 2, 0)),
        ]),
    )
    .await;
    upstream
}

/// Opens an `untrusted` session in `cwd` and submits one turn.
async fn submit_untrusted(server: &mut TestServer, cwd: &Path) {
    let session = new_session(
        server,
        json!({"cwd": cwd, "approvalPolicy": "untrusted", "sandbox": "workspaceWrite"}),
    )
    .await;
    submit(server, &session, "touch it").await;
}

fn command_item_status(message: &Value) -> Option<String> {
    let event = &message["params"]["event"];
    (event["type"] == "itemCompleted" && event["item"]["type"] == "commandExecution").then(|| {
        event["item"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    })
}

#[tokio::test]
async fn the_user_agent_is_sent_upstream() {
    let upstream = upstream_answering_after(Duration::ZERO).await;
    let mut server = server_with_upstream(&upstream).await;
    server.send_json(contract_initialize(0)).await;
    let user_agent = server.read_message().await["result"]["userAgent"].clone();
    assert_eq!(
        user_agent,
        json!(format!(
            "agent-server/{VERSION} ({}) my-ide/1.2.0",
            os_and_arch()
        ))
    );
    start_turn(&mut server).await;
    server
        .wait_for_notification("session/event", |p| p["event"]["type"] == "turnCompleted")
        .await;
    let requests = upstream.received_requests().await.unwrap_or_default();
    let sent: Vec<Option<&str>> = requests
        .iter()
        .map(|r| r.headers.get("user-agent").and_then(|v| v.to_str().ok()))
        .collect();
    assert_eq!(sent, vec![user_agent.as_str()]);
}

#[tokio::test]
async fn without_the_approvals_capability_actions_needing_approval_are_declined() {
    let upstream = upstream_asking_to_touch().await;
    let workdir = tempfile::tempdir().unwrap();
    let mut server = server_with_upstream(&upstream).await;
    let reply = server
        .request::<Initialize>(InitializeParams {
            client_info: Some(ClientInfo {
                name: "script".into(),
                version: None,
            }),
            capabilities: ClientCapabilities { approvals: false },
            ..InitializeParams::default()
        })
        .await;
    assert_eq!(reply.map(|r| r.capabilities.approvals), Ok(false));
    submit_untrusted(&mut server, workdir.path()).await;
    let done = server
        .wait_for_notification("session/event", |p| p["event"]["type"] == "turnCompleted")
        .await;
    assert_eq!(
        done["params"]["event"]["status"],
        json!("completed"),
        "{done}"
    );
    server.close_stdin().await;
    let rest = server.read_to_end().await;
    let asked: Vec<&Value> = rest
        .iter()
        .filter(|m| m.get("id").is_some() && m.get("method").is_some())
        .collect();
    assert!(asked.is_empty(), "no approval may be asked: {asked:#?}");
    let statuses: Vec<String> = rest.iter().filter_map(command_item_status).collect();
    assert_eq!(statuses, vec!["declined".to_owned()]);
    assert!(!workdir.path().join("made-by-tool").exists());
    let requests = responses_requests(&upstream).await;
    let told = requests
        .last()
        .and_then(|r| function_call_output(r, "call_1"))
        .unwrap_or_default();
    assert!(
        told.contains("declined"),
        "the model must be told: {told:?}"
    );
}

#[tokio::test]
async fn with_the_approvals_capability_the_client_is_asked() {
    let upstream = upstream_asking_to_touch().await;
    let workdir = tempfile::tempdir().unwrap();
    let mut server = server_with_upstream(&upstream).await;
    server.send_json(contract_initialize(0)).await;
    let reply = server.read_message().await;
    assert_eq!(reply["result"]["capabilities"]["approvals"], json!(true));
    submit_untrusted(&mut server, workdir.path()).await;
    let started = server
        .wait_for_notification("session/event", |p| {
            p["event"]["type"] == "itemStarted" && p["event"]["item"]["type"] == "commandExecution"
        })
        .await;
    let ask = server.next_server_request().await;
    assert_eq!(ask["method"], json!("session/requestApproval"), "{ask}");
    assert_eq!(
        (
            &ask["params"]["kind"],
            &ask["params"]["command"],
            &ask["params"]["itemId"]
        ),
        (
            &json!("commandExecution"),
            &json!(["touch", "made-by-tool"]),
            &started["params"]["event"]["item"]["id"]
        )
    );
    server
        .respond(ask["id"].clone(), json!({"decision": "deny"}))
        .await;
    let done = server
        .wait_for_notification("session/event", |p| p["event"]["type"] == "turnCompleted")
        .await;
    assert_eq!(
        done["params"]["event"]["status"],
        json!("completed"),
        "{done}"
    );
    assert!(!workdir.path().join("made-by-tool").exists());
}

// ---- how the process ends ----

#[tokio::test]
async fn shutdown_replies_null_then_the_process_exits_0() {
    let mut server = TestServer::start().await;
    server
        .send_json(json!({"jsonrpc": "2.0", "id": 1, "method": "shutdown"}))
        .await;
    let reply = server.read_message_raw().await;
    // `result` is present and null, not left out.
    assert_eq!(
        reply.value,
        json!({"jsonrpc": "2.0", "id": 1, "result": null})
    );
    assert!(reply.raw.contains("\"result\":null"), "{}", reply.raw);
    assert_eq!(server.wait_exit().await.code(), Some(0));
    assert_eq!(server.read_to_end().await, Vec::<Value>::new());
}

#[tokio::test]
async fn shutdown_through_the_typed_api() {
    let mut server = TestServer::start().await;
    let result: Result<(), _> = server
        .request::<agent_server_tests::schema::methods::Shutdown>(Default::default())
        .await;
    assert_eq!(result, Ok(()));
    assert_eq!(server.wait_exit().await.code(), Some(0));
}

#[tokio::test]
async fn the_exit_notification_ends_the_process_with_0() {
    let mut server = TestServer::start().await;
    // LSP clients send `exit` without params.
    server
        .send_json(json!({"jsonrpc": "2.0", "method": "exit"}))
        .await;
    assert_eq!(server.wait_exit().await.code(), Some(0));
    assert_eq!(server.read_to_end().await, Vec::<Value>::new());
}

#[tokio::test]
async fn stdin_eof_ends_the_process_with_0() {
    let mut server = TestServer::start().await;
    server.close_stdin().await;
    assert_eq!(server.wait_exit().await.code(), Some(0));
}

/// Makes sure the server is up and serving (so its signal handlers are installed) before a
/// signal is sent: an `initialize` round trip.
async fn wait_until_serving(server: &mut TestServer) {
    let reply = server
        .request::<Initialize>(InitializeParams::default())
        .await;
    assert!(reply.is_ok(), "{reply:?}");
}

#[tokio::test]
async fn sigterm_ends_the_process_with_0() {
    let mut server = TestServer::start().await;
    wait_until_serving(&mut server).await;
    server.kill_signal(SIGTERM);
    assert_eq!(server.wait_exit().await.code(), Some(0));
}

#[tokio::test]
async fn sigint_ends_the_process_with_0() {
    let mut server = TestServer::start().await;
    wait_until_serving(&mut server).await;
    server.kill_signal(SIGINT);
    assert_eq!(server.wait_exit().await.code(), Some(0));
}

// ---- running turns at the end ----

/// A Responses upstream that answers every call after `delay` with a short text answer.
async fn upstream_answering_after(delay: Duration) -> MockServer {
    let upstream = MockServer::start().await;
    let body = sse([
        ev_created("resp_1"),
        ev_message_done("msg_1", "done"),
        ev_completed("resp_1", responses_usage(10, 0, 2, 0)),
    ]);
    Mock::given(method("POST"))
        .and(path_regex("/responses$"))
        .respond_with(sse_response(body).set_delay(delay))
        .mount(&upstream)
        .await;
    upstream
}

async fn server_with_upstream(upstream: &MockServer) -> TestServer {
    TestServer::builder()
        .env("OPENAI_API_KEY", "sk-test")
        .env("OPENAI_BASE_URL", upstream.uri())
        .spawn()
        .await
}

/// Submits a turn and waits for its `turnStarted`.
async fn start_turn(server: &mut TestServer) {
    let reply = server
        .request::<Submit>(SubmitParams {
            text: Some("hello".into()),
            ..SubmitParams::default()
        })
        .await;
    assert!(reply.is_ok(), "{reply:?}");
    server
        .wait_for_notification("session/event", |p| p["event"]["type"] == "turnStarted")
        .await;
}

fn turn_completed_status(message: &Value) -> Option<&str> {
    (message["method"] == "session/event" && message["params"]["event"]["type"] == "turnCompleted")
        .then(|| message["params"]["event"]["status"].as_str())
        .flatten()
}

#[tokio::test]
async fn shutdown_interrupts_running_turns_before_it_replies() {
    let upstream = upstream_answering_after(Duration::from_secs(30)).await;
    let mut server = server_with_upstream(&upstream).await;
    start_turn(&mut server).await;
    let shutdown = server.send_request("shutdown", None).await;
    let mut statuses = Vec::new();
    loop {
        let message = server.read_message().await;
        if message.get("id") == Some(&shutdown) && message.get("method").is_none() {
            assert_eq!(message, ok_reply(shutdown.clone(), Value::Null));
            break;
        }
        statuses.extend(turn_completed_status(&message).map(str::to_owned));
    }
    assert_eq!(statuses, vec!["interrupted".to_owned()]);
    assert_eq!(server.wait_exit().await.code(), Some(0));
}

#[tokio::test]
async fn sigterm_interrupts_running_turns_and_exits_0() {
    let upstream = upstream_answering_after(Duration::from_secs(30)).await;
    let mut server = server_with_upstream(&upstream).await;
    start_turn(&mut server).await;
    server.kill_signal(SIGTERM);
    let rest = server.read_to_end().await;
    let statuses: Vec<&str> = rest.iter().filter_map(turn_completed_status).collect();
    assert_eq!(statuses, vec!["interrupted"], "{rest:#?}");
    assert_eq!(server.wait_exit().await.code(), Some(0));
}

#[tokio::test]
async fn stdin_eof_lets_running_turns_finish() {
    let upstream = upstream_answering_after(Duration::from_millis(300)).await;
    let mut server = server_with_upstream(&upstream).await;
    start_turn(&mut server).await;
    server.close_stdin().await;
    let rest = server.read_to_end().await;
    let statuses: Vec<&str> = rest.iter().filter_map(turn_completed_status).collect();
    assert_eq!(statuses, vec!["completed"], "{rest:#?}");
    assert_eq!(server.wait_exit().await.code(), Some(0));
}

#[tokio::test]
async fn exit_ends_the_process_at_once_even_with_a_running_turn() {
    let upstream = upstream_answering_after(Duration::from_secs(30)).await;
    let mut server = server_with_upstream(&upstream).await;
    start_turn(&mut server).await;
    server
        .send_json(json!({"jsonrpc": "2.0", "method": "exit"}))
        .await;
    assert_eq!(server.wait_exit().await.code(), Some(0));
}

/// Whether a live (not zombie) process has `marker` in its argv. Commands run in their own PID
/// namespace, so the pids they see mean nothing here: processes are found by argv.
fn marked_process_exists(marker: &str) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // A zombie waiting for a reaper has been killed already.
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'));
            !zombie && String::from_utf8_lossy(&cmdline).contains(marker)
        })
}

#[tokio::test]
async fn tool_processes_are_killed_with_the_server() {
    let workdir = tempfile::tempdir().unwrap();
    let upstream = MockServer::start().await;
    // A sleep length no other process uses.
    let marker = format!("300.{}", std::process::id());
    let command = json!({"command": ["sh", "-c", format!("exec sleep {marker}")]});
    mount_sse_once(
        &upstream,
        sse([
            ev_created("resp_1"),
            ev_function_call("call_1", "shell", &command.to_string()),
            ev_completed("resp_1", responses_usage(10, 0, 5, 0)),
        ]),
    )
    .await;
    let mut server = server_with_upstream(&upstream).await;
    let session = new_session(
        &mut server,
        json!({
            "cwd": workdir.path(),
            "approvalPolicy": "never",
            "sandbox": "dangerFullAccess",
        }),
    )
    .await;
    submit(&mut server, &session, "sleep").await;
    server
        .wait_for_notification("session/event", |p| {
            p["event"]["type"] == "itemStarted" && p["event"]["item"]["type"] == "commandExecution"
        })
        .await;
    // Poll (bounded) for the tool to run.
    let deadline = tokio::time::Instant::now() + DEFAULT_TIMEOUT;
    while !marked_process_exists(&marker) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tool never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shutdown = server.request::<Shutdown>(EmptyParams {}).await;
    assert_eq!(shutdown, Ok(()));
    assert_eq!(server.wait_exit().await.code(), Some(0));
    let deadline = tokio::time::Instant::now() + DEFAULT_TIMEOUT;
    while marked_process_exists(&marker) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tool process `sleep {marker}` outlived the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- one-shot use from a shell ----

#[tokio::test]
async fn a_piped_one_line_script_gets_exactly_one_line_back() {
    let home = tempfile::tempdir().unwrap();
    let request = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
    let script = format!(
        "printf '%s\\n' '{request}' | '{}'",
        agent_server_tests::server_bin().display()
    );
    let mut command = tokio::process::Command::new("sh");
    command
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(DEFAULT_TIMEOUT, command.output())
        .await
        .expect("the pipeline did not finish")
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 1, "{stdout:?}");
    assert!(lines[0].ends_with('\n'));
    let reply: Value = serde_json::from_str(lines[0]).unwrap();
    let default_home = home.path().join(".agent-server");
    assert_eq!(
        reply,
        ok_reply(1, initialize_result(&default_home, false, None))
    );
}

// ---- start-up failures and flags ----

#[tokio::test]
async fn a_malformed_config_stops_the_server_with_status_2() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.toml");
    let text = "model = \"gpt-5-codex\"\napproval_policy = = \"never\"\n";
    std::fs::write(&config, text).unwrap();
    let out = run_to_end(
        home.path(),
        &["--home", home.path().to_str().unwrap()],
        &[],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains(config.to_str().unwrap()),
        "stderr should name {}: {}",
        config.display(),
        out.stderr
    );
    assert!(
        out.stderr.contains("line 2"),
        "stderr should name line 2: {}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
}

#[tokio::test]
async fn an_unusable_home_stops_the_server_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("home-is-a-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let out = run_to_end(
        dir.path(),
        &["--home", not_a_dir.to_str().unwrap()],
        &[],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains(not_a_dir.to_str().unwrap()),
        "stderr should say which home: {}",
        out.stderr
    );
}

#[tokio::test]
async fn version_prints_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_end(dir.path(), &["--version"], &[], b"").await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.starts_with("agent-server ") && out.stdout.trim_end().ends_with(VERSION),
        "{:?}",
        out.stdout
    );
}
