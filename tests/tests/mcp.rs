//! MCP servers end to end (contract section 11), against real servers: the reference server
//! `@modelcontextprotocol/server-everything` and our own fault server, over stdio and
//! Streamable HTTP. The model is a wiremock upstream.

use std::collections::BTreeMap;
use std::time::Duration;

use agent_server_tests::mcp::{
    HttpFaultServer, everything_table, fault_js, fault_table, node_server_table, processes_with,
    wait_no_processes_with,
};
use agent_server_tests::schema::lifecycle::EmptyParams;
use agent_server_tests::schema::mcp::{McpListParams, McpServerSpec, McpStdioServerSpec};
use agent_server_tests::schema::methods::{
    CloseSession, ForkSession, McpList, ResumeSession, Shutdown,
};
use agent_server_tests::schema::rpc::ErrorKind;
use agent_server_tests::schema::session::{
    CloseSessionParams, ForkSessionParams, ResumeSessionParams, SessionOverrides,
};
use agent_server_tests::turns::{
    api_key_builder, initialize, just_events, new_session, submit, turn_events,
};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_message_done, function_call_output, mount_answer, mount_call,
    mount_sse_once, responses_requests, responses_usage, sse,
};
use agent_server_tests::{SIGTERM, TestServer};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::MockServer;

/// A server with `config` as its `config.toml`, initialized (with approvals), and a session
/// under `policy`.
async fn server_with(upstream: &MockServer, config: &str, policy: &str) -> (TestServer, String) {
    let mut server = api_key_builder(upstream)
        .home_file("config.toml", config)
        .spawn()
        .await;
    initialize(&mut server, true).await;
    let session = new_session(&mut server, json!({"approvalPolicy": policy})).await;
    (server, session)
}

/// The answer to `mcp/list` (of `session`, or of the configured servers without one), as JSON.
async fn mcp_list(server: &mut TestServer, session: Option<&str>) -> Value {
    let params = McpListParams {
        session_id: session.map(str::to_owned),
    };
    match server.request::<McpList>(params).await {
        Ok(listed) => json!(listed),
        Err(error) => panic!("mcp/list failed: {error:?}"),
    }
}

/// The `mcpToolCall` items completed in `events`, with `durationMs` checked and removed.
fn completed_mcp_items(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "itemCompleted" && e["item"]["type"] == "mcpToolCall")
        .map(|e| {
            let mut item = e["item"].clone();
            if let Some(map) = item.as_object_mut()
                && let Some(ms) = map.remove("durationMs")
            {
                assert!(ms.is_u64(), "durationMs is not a count: {ms}");
            }
            item
        })
        .collect()
}

fn status_of(events: &[Value]) -> Value {
    events
        .iter()
        .find(|e| e["type"] == "turnCompleted")
        .map(|e| e["status"].clone())
        .unwrap_or(Value::Null)
}

/// The `output` told to the model for `call_id` in the last upstream request.
async fn told_model(upstream: &MockServer, call_id: &str) -> String {
    let requests = responses_requests(upstream).await;
    requests
        .last()
        .and_then(|r| function_call_output(r, call_id))
        .unwrap_or_else(|| panic!("no function_call_output for {call_id}: {requests:?}"))
}

/// The names of the tools of upstream request `n`.
async fn tool_names(upstream: &MockServer, n: usize) -> Vec<String> {
    let requests = responses_requests(upstream).await;
    requests[n]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {}", requests[n]))
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_reference_servers_tool_result_reaches_the_next_model_request() {
    let upstream = MockServer::start().await;
    mount_call(
        &upstream,
        "call_1",
        "mcp__everything__echo",
        &json!({"message": "hi"}),
    )
    .await;
    mount_answer(&upstream).await;
    let config = everything_table("everything", "enabled_tools = [\"echo\", \"get-sum\"]");
    let (mut server, session) = server_with(&upstream, &config, "untrusted").await;
    let turn = submit(&mut server, &session, "echo hi").await;
    let events = just_events(&turn_events(&mut server, &turn).await);

    // echo is annotated readOnlyHint, so untrusted runs it without asking.
    let started: Vec<Value> = events
        .iter()
        .filter(|e| e["type"] == "itemStarted" && e["item"]["type"] == "mcpToolCall")
        .map(|e| e["item"].clone())
        .collect();
    assert_eq!(
        started,
        vec![
            json!({"id": "call_1", "type": "mcpToolCall", "server": "everything",
            "tool": "echo", "arguments": {"message": "hi"}, "status": "inProgress"})
        ]
    );
    assert_eq!(
        completed_mcp_items(&events),
        vec![
            json!({"id": "call_1", "type": "mcpToolCall", "server": "everything",
            "tool": "echo", "arguments": {"message": "hi"}, "status": "completed",
            "result": {"content": [{"type": "text", "text": "Echo: hi"}], "isError": false}})
        ]
    );
    assert_eq!(status_of(&events), "completed");
    assert_eq!(told_model(&upstream, "call_1").await, "Echo: hi");

    let requests = responses_requests(&upstream).await;
    let echo = requests[0]["tools"]
        .as_array()
        .and_then(|tools| tools.iter().find(|t| t["name"] == "mcp__everything__echo"))
        .cloned()
        .unwrap_or_else(|| panic!("echo not offered: {}", requests[0]["tools"]));
    assert_eq!(echo["type"], "function");
    assert_eq!(echo["description"], "Echoes back the input string");
    assert_eq!(
        echo["parameters"]["properties"]["message"]["type"],
        "string"
    );
    let names = tool_names(&upstream, 0).await;
    assert!(
        names.contains(&"mcp__everything__get-sum".to_owned())
            && !names.iter().any(|n| n.contains("toggle")),
        "enabled_tools not applied: {names:?}"
    );
}

#[tokio::test]
async fn a_tool_without_read_only_hint_is_asked_about_and_a_denial_declines_it() {
    let upstream = MockServer::start().await;
    let arguments = json!({"note": "x"});
    mount_call(&upstream, "call_1", "mcp__fault__write_note", &arguments).await;
    mount_answer(&upstream).await;
    let (mut server, session) =
        server_with(&upstream, &fault_table("fault", "ok", ""), "untrusted").await;
    let turn = submit(&mut server, &session, "write").await;
    let ask = server.next_server_request().await;
    assert_eq!(
        ask,
        json!({"jsonrpc": "2.0", "id": ask["id"], "method": "session/requestApproval", "params": {
            "sessionId": session, "turnId": turn, "itemId": "call_1", "kind": "mcpToolCall",
            "server": "fault", "tool": "write_note", "arguments": arguments,
        }})
    );
    server
        .respond(ask["id"].clone(), json!({"decision": "deny"}))
        .await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let declined = "The MCP tool call was declined by the user. Do not try it again; change \
        your approach or ask the user how to proceed.";
    assert_eq!(
        completed_mcp_items(&events),
        vec![
            json!({"id": "call_1", "type": "mcpToolCall", "server": "fault",
            "tool": "write_note", "arguments": arguments, "status": "declined",
            "error": declined})
        ]
    );
    assert_eq!(told_model(&upstream, "call_1").await, declined);
    assert_eq!(status_of(&events), "completed");
}

#[tokio::test]
async fn approve_for_session_stops_asking_about_that_tool() {
    let upstream = MockServer::start().await;
    mount_call(
        &upstream,
        "call_1",
        "mcp__fault__write_note",
        &json!({"note": "a"}),
    )
    .await;
    mount_call(
        &upstream,
        "call_2",
        "mcp__fault__write_note",
        &json!({"note": "b"}),
    )
    .await;
    mount_answer(&upstream).await;
    let (mut server, session) =
        server_with(&upstream, &fault_table("fault", "ok", ""), "untrusted").await;
    let turn = submit(&mut server, &session, "write twice").await;
    let ask = server.next_server_request().await;
    assert_eq!(ask["params"]["itemId"], "call_1");
    server
        .respond(ask["id"].clone(), json!({"decision": "approveForSession"}))
        .await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let outputs: Vec<Value> = completed_mcp_items(&events)
        .iter()
        .map(|i| json!([i["status"], i["result"]["content"][0]["text"]]))
        .collect();
    assert_eq!(
        outputs,
        vec![
            json!(["completed", "wrote: a"]),
            json!(["completed", "wrote: b"])
        ]
    );
    // Only the first call was asked about.
    server.close_stdin().await;
    let asked: Vec<Value> = server
        .read_to_end()
        .await
        .into_iter()
        .filter(|m| m["method"] == "session/requestApproval")
        .collect();
    assert_eq!(asked, Vec::<Value>::new());
}

#[tokio::test]
async fn a_call_past_the_tool_timeout_fails_its_item_and_the_turn_goes_on() {
    let upstream = MockServer::start().await;
    mount_call(
        &upstream,
        "call_1",
        "mcp__fault__sleep",
        &json!({"ms": 5000}),
    )
    .await;
    mount_answer(&upstream).await;
    let config = fault_table("fault", "ok", "tool_timeout_sec = 0.3");
    let (mut server, session) = server_with(&upstream, &config, "untrusted").await;
    let turn = submit(&mut server, &session, "sleep").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let error = "the MCP server did not answer within 0.3s (tool_timeout_sec)";
    assert_eq!(
        completed_mcp_items(&events),
        vec![
            json!({"id": "call_1", "type": "mcpToolCall", "server": "fault", "tool": "sleep",
            "arguments": {"ms": 5000}, "status": "failed", "error": error})
        ]
    );
    assert_eq!(
        told_model(&upstream, "call_1").await,
        format!("The MCP tool call failed: {error}")
    );
    assert_eq!(status_of(&events), "completed");
}

#[tokio::test]
async fn an_is_error_result_fails_the_item_and_is_told_as_an_error() {
    let upstream = MockServer::start().await;
    mount_call(&upstream, "call_1", "mcp__fault__fail", &json!({})).await;
    mount_answer(&upstream).await;
    let (mut server, session) =
        server_with(&upstream, &fault_table("fault", "ok", ""), "untrusted").await;
    let turn = submit(&mut server, &session, "fail").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    assert_eq!(
        completed_mcp_items(&events),
        vec![
            json!({"id": "call_1", "type": "mcpToolCall", "server": "fault", "tool": "fail",
            "arguments": {}, "status": "failed",
            "result": {"content": [{"type": "text", "text": "it went wrong"}], "isError": true}})
        ]
    );
    assert_eq!(
        told_model(&upstream, "call_1").await,
        "The MCP tool reported an error:\nit went wrong"
    );
}

#[tokio::test]
async fn an_unknown_mcp_tool_fails_its_item_and_the_turn_goes_on() {
    let upstream = MockServer::start().await;
    mount_call(&upstream, "call_1", "mcp__fault__nope", &json!({})).await;
    mount_answer(&upstream).await;
    let (mut server, session) =
        server_with(&upstream, &fault_table("fault", "ok", ""), "never").await;
    let turn = submit(&mut server, &session, "nope").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let error = "unknown MCP tool `mcp__fault__nope`: no ready MCP server offers it in this turn";
    assert_eq!(
        completed_mcp_items(&events),
        vec![
            json!({"id": "call_1", "type": "mcpToolCall", "server": "fault", "tool": "nope",
            "arguments": {}, "status": "failed", "error": error})
        ]
    );
    assert_eq!(
        told_model(&upstream, "call_1").await,
        format!("{error}. Use only the tools you were given.")
    );
    assert_eq!(status_of(&events), "completed");
}

#[tokio::test]
async fn a_server_that_crashes_mid_call_fails_the_item_and_is_restarted_at_the_next_turn() {
    let upstream = MockServer::start().await;
    mount_call(&upstream, "call_1", "mcp__fault__crash", &json!({})).await;
    mount_sse_once(
        &upstream,
        sse([
            ev_created("resp_a"),
            ev_message_done("msg_a", "it crashed"),
            ev_completed("resp_a", responses_usage(1, 0, 1, 0)),
        ]),
    )
    .await;
    mount_call(
        &upstream,
        "call_2",
        "mcp__fault__echo",
        &json!({"message": "back"}),
    )
    .await;
    mount_answer(&upstream).await;
    let (mut server, session) =
        server_with(&upstream, &fault_table("fault", "ok", ""), "never").await;
    let turn = submit(&mut server, &session, "crash").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let items = completed_mcp_items(&events);
    assert_eq!(
        items,
        vec![
            json!({"id": "call_1", "type": "mcpToolCall", "server": "fault", "tool": "crash",
            "arguments": {}, "status": "failed",
            "error": "the MCP server's connection closed during the call (the server crashed or exited)"})
        ]
    );
    assert_eq!(status_of(&events), "completed");
    let failed = server
        .wait_for_notification("mcp/serverStatus", |p| p["status"] == "failed")
        .await;
    assert_eq!(failed["params"]["name"], "fault");

    let turn = submit(&mut server, &session, "again").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    assert_eq!(
        completed_mcp_items(&events),
        vec![
            json!({"id": "call_2", "type": "mcpToolCall", "server": "fault", "tool": "echo",
            "arguments": {"message": "back"}, "status": "completed",
            "result": {"content": [{"type": "text", "text": "echo: back"}], "isError": false}})
        ]
    );
    let restarted = server
        .wait_for_notification("mcp/serverStatus", |p| p["status"] == "ready")
        .await;
    assert_eq!(restarted["params"]["name"], "fault");
}

#[tokio::test]
async fn lines_that_are_not_json_rpc_on_stdout_are_skipped() {
    let upstream = MockServer::start().await;
    mount_call(&upstream, "call_1", "mcp__noisy__noisy", &json!({})).await;
    mount_answer(&upstream).await;
    let (mut server, session) =
        server_with(&upstream, &fault_table("noisy", "garbage", ""), "never").await;
    let turn = submit(&mut server, &session, "noise").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    assert_eq!(
        completed_mcp_items(&events),
        vec![
            json!({"id": "call_1", "type": "mcpToolCall", "server": "noisy", "tool": "noisy",
            "arguments": {}, "status": "completed",
            "result": {"content": [{"type": "text", "text": "still here"}], "isError": false}})
        ]
    );
    let stderr = server.stderr_text();
    assert!(stderr.contains("not JSON-RPC"), "{stderr}");
}

#[tokio::test]
async fn servers_that_cannot_start_are_reported_and_left_out_of_the_turn() {
    let upstream = MockServer::start().await;
    mount_answer(&upstream).await;
    let config = format!(
        "[mcp_servers.bad]\ncommand = \"/nonexistent/mcp-server\"\n\n{}\n{}",
        fault_table("hang", "hang-init", "startup_timeout_sec = 0.5"),
        fault_table("good", "ok", "enabled_tools = [\"echo\"]"),
    );
    let (mut server, session) = server_with(&upstream, &config, "never").await;
    let turn = submit(&mut server, &session, "hello").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    assert_eq!(status_of(&events), "completed");
    let names = tool_names(&upstream, 0).await;
    let mcp: Vec<&String> = names.iter().filter(|n| n.starts_with("mcp__")).collect();
    assert_eq!(mcp, vec!["mcp__good__echo"]);

    let listed = mcp_list(&mut server, Some(&session)).await;
    let summary: Vec<Value> = listed["servers"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .map(|s| {
            json!([
                s["name"],
                s["transport"],
                s["status"],
                s["error"],
                s["tools"].as_array().map(Vec::len)
            ])
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            json!([
                "bad",
                "stdio",
                "failed",
                "cannot start `/nonexistent/mcp-server`: No such file or directory (os error 2); check `command` (and `cwd`) of this MCP server",
                0
            ]),
            json!(["good", "stdio", "ready", null, 1]),
            json!([
                "hang",
                "stdio",
                "failed",
                "it did not finish initialize and tools/list within 0.5s (startup_timeout_sec); it was stopped",
                0
            ]),
        ]
    );
    let hang = server
        .wait_for_notification("mcp/serverStatus", |p| {
            p["name"] == "hang" && p["status"] == "failed"
        })
        .await;
    assert_eq!(
        hang["params"],
        json!({"name": "hang", "status": "failed", "error":
            "it did not finish initialize and tools/list within 0.5s (startup_timeout_sec); it was stopped"})
    );
}

#[tokio::test]
async fn initialize_and_session_new_do_not_wait_for_servers_still_starting() {
    let upstream = MockServer::start().await;
    let config = fault_table("slow", "hang-init", "startup_timeout_sec = 60");
    let mut server = api_key_builder(&upstream)
        .home_file("config.toml", config)
        .spawn()
        .await;
    // Both answer while the server hangs in its initialize (for up to a minute).
    initialize(&mut server, true).await;
    let session = new_session(
        &mut server,
        json!({"mcpServers": [{"name": "slow2", "command": "node",
            "args": [fault_js(), "--mode", "hang-init"]}]}),
    )
    .await;
    let listed = mcp_list(&mut server, Some(&session)).await;
    let statuses: Vec<Value> = listed["servers"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .map(|s| json!([s["name"], s["status"]]))
        .collect();
    assert_eq!(
        statuses,
        vec![json!(["slow", "starting"]), json!(["slow2", "starting"])]
    );
    // Both report `starting` (the configured one just after the handshake, the session's own
    // at `session/new`: either may come first).
    let mut starting = Vec::new();
    for _ in 0..2 {
        let status = server
            .wait_for_notification("mcp/serverStatus", |p| p["status"] == "starting")
            .await;
        starting.push(status["params"].clone());
    }
    starting.sort_by_key(|p| p["name"].to_string());
    assert_eq!(
        starting,
        vec![
            json!({"name": "slow", "status": "starting"}),
            json!({"name": "slow2", "sessionId": session, "status": "starting"})
        ]
    );
    server.close_stdin().await;
    assert!(server.wait_exit().await.success());
}

#[tokio::test]
async fn a_session_can_bring_its_own_http_and_stdio_servers() {
    let upstream = MockServer::start().await;
    mount_call(
        &upstream,
        "call_1",
        "mcp__remote__echo",
        &json!({"message": "over http"}),
    )
    .await;
    mount_answer(&upstream).await;
    let http = HttpFaultServer::start().await;
    let mut server = api_key_builder(&upstream)
        .home_file(
            "config.toml",
            fault_table("local", "ok", "enabled_tools = [\"echo\"]"),
        )
        .spawn()
        .await;
    initialize(&mut server, true).await;
    let session = new_session(
        &mut server,
        json!({"approvalPolicy": "never", "mcpServers": [
            {"name": "remote", "url": http.url, "headers": {"X-Test": "1"}},
            {"name": "local", "command": "node", "args": [fault_js()]},
        ]}),
    )
    .await;
    let turn = submit(&mut server, &session, "echo over http").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    assert_eq!(
        completed_mcp_items(&events),
        vec![
            json!({"id": "call_1", "type": "mcpToolCall", "server": "remote", "tool": "echo",
            "arguments": {"message": "over http"}, "status": "completed",
            "result": {"content": [{"type": "text", "text": "echo: over http"}], "isError": false}})
        ]
    );
    // The session's `local` replaced the configured one (no enabled_tools filter).
    assert_eq!(
        list_summary(&mut server, &session).await,
        vec![
            json!(["remote", "http", "ready", 7]),
            json!(["local", "stdio", "ready", 7])
        ]
    );
    // Without a session only the configured server is listed, with its filter.
    server
        .wait_for_notification("mcp/serverStatus", |p| {
            p["name"] == "local" && p.get("sessionId").is_none() && p["status"] == "ready"
        })
        .await;
    let configured = mcp_list(&mut server, None).await;
    assert_eq!(
        configured["servers"][0]["tools"].as_array().map(Vec::len),
        Some(1)
    );
    let ready = server
        .wait_for_notification("mcp/serverStatus", |p| {
            p["name"] == "remote" && p["status"] == "ready"
        })
        .await;
    assert_eq!(
        ready["params"],
        json!({"name": "remote", "sessionId": session, "status": "ready", "toolCount": 7})
    );
}

#[tokio::test]
async fn bad_mcp_servers_params_and_unknown_sessions_are_invalid_params() {
    let mut server = TestServer::start().await;
    let reply = server
        .request_raw(
            "session/new",
            Some(json!({"mcpServers": [{"name": "x", "url": "ftp://host/mcp"}]})),
        )
        .await;
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    assert_eq!(reply["error"]["data"]["field"], "mcpServers", "{reply}");
    let reply = server
        .request_raw(
            "session/new",
            Some(json!({"mcpServers": [
                {"name": "x", "command": "a"}, {"name": "x", "command": "b"}]})),
        )
        .await;
    assert_eq!(reply["error"]["data"]["field"], "mcpServers", "{reply}");
    let reply = server
        .request::<McpList>(McpListParams {
            session_id: Some("nope".into()),
        })
        .await;
    assert_eq!(
        reply.map_err(|e| e.data.kind),
        Err(ErrorKind::SessionNotFound)
    );
}

/// Our fault server as a session's own stdio server named `name`.
fn own_fault_server(name: &str) -> McpServerSpec {
    McpServerSpec::Stdio(McpStdioServerSpec {
        name: name.into(),
        command: "node".into(),
        args: vec![fault_js().display().to_string()],
        env: BTreeMap::new(),
        cwd: None,
    })
}

/// `[name, transport, status, tool count]` of each server `mcp/list` shows for `session`.
async fn list_summary(server: &mut TestServer, session: &str) -> Vec<Value> {
    let listed = mcp_list(server, Some(session)).await;
    listed["servers"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .map(|s| {
            json!([
                s["name"],
                s["transport"],
                s["status"],
                s["tools"].as_array().map(Vec::len)
            ])
        })
        .collect()
}

/// Waits for `session`'s own fault server `name` to be ready (7 tools), and checks `mcp/list`
/// shows it for that session.
async fn expect_session_server_ready(server: &mut TestServer, session: &str, name: &str) {
    let ready = server
        .wait_for_notification("mcp/serverStatus", |p| {
            p["name"] == name && p["status"] == "ready"
        })
        .await;
    assert_eq!(
        ready["params"],
        json!({"name": name, "sessionId": session, "status": "ready", "toolCount": 7})
    );
    assert_eq!(
        list_summary(server, session).await,
        vec![json!([name, "stdio", "ready", 7])]
    );
}

async fn resume(server: &mut TestServer, session: &str, mcp: Option<Vec<McpServerSpec>>) {
    let params = ResumeSessionParams {
        session_id: session.into(),
        overrides: SessionOverrides::default(),
        mcp_servers: mcp,
    };
    if let Err(error) = server.request::<ResumeSession>(params).await {
        panic!("session/resume failed: {error:?}");
    }
}

#[tokio::test]
async fn a_resumed_session_starts_the_mcp_servers_it_is_given_which_are_not_stored() {
    let upstream = MockServer::start().await;
    mount_call(
        &upstream,
        "call_1",
        "mcp__own__echo",
        &json!({"message": "resumed"}),
    )
    .await;
    mount_answer(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let mut first = api_key_builder(&upstream).home(home.path()).spawn().await;
    initialize(&mut first, true).await;
    let session = new_session(
        &mut first,
        json!({"approvalPolicy": "never", "mcpServers": [own_fault_server("own")]}),
    )
    .await;
    first.close_stdin().await;
    assert!(first.wait_exit().await.success());

    let mut server = api_key_builder(&upstream).home(home.path()).spawn().await;
    initialize(&mut server, true).await;
    // Resumed without them, the session has no server of its own: they were not stored.
    resume(&mut server, &session, None).await;
    assert_eq!(
        list_summary(&mut server, &session).await,
        Vec::<Value>::new()
    );
    let closed = server
        .request::<CloseSession>(CloseSessionParams {
            session_id: session.clone(),
        })
        .await;
    assert!(closed.is_ok(), "{closed:?}");

    resume(&mut server, &session, Some(vec![own_fault_server("own")])).await;
    expect_session_server_ready(&mut server, &session, "own").await;
    let turn = submit(&mut server, &session, "echo resumed").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    assert!(
        tool_names(&upstream, 0)
            .await
            .contains(&"mcp__own__echo".to_owned())
    );
    assert_eq!(
        completed_mcp_items(&events),
        vec![
            json!({"id": "call_1", "type": "mcpToolCall", "server": "own", "tool": "echo",
            "arguments": {"message": "resumed"}, "status": "completed",
            "result": {"content": [{"type": "text", "text": "echo: resumed"}], "isError": false}})
        ]
    );
    assert_eq!(told_model(&upstream, "call_1").await, "echo: resumed");
}

#[tokio::test]
async fn a_forked_session_starts_the_mcp_servers_it_is_given_and_its_source_does_not() {
    let upstream = MockServer::start().await;
    mount_answer(&upstream).await;
    let mut server = api_key_builder(&upstream).spawn().await;
    initialize(&mut server, true).await;
    let source = new_session(&mut server, json!({"approvalPolicy": "never"})).await;
    let turn = submit(&mut server, &source, "one").await;
    turn_events(&mut server, &turn).await;

    let params = ForkSessionParams {
        session_id: source.clone(),
        turn_id: None,
        overrides: SessionOverrides::default(),
        mcp_servers: Some(vec![own_fault_server("forked")]),
    };
    let forked = match server.request::<ForkSession>(params).await {
        Ok(fork) => fork.session.session_id,
        Err(error) => panic!("session/fork failed: {error:?}"),
    };
    expect_session_server_ready(&mut server, &forked, "forked").await;
    assert_eq!(
        list_summary(&mut server, &source).await,
        Vec::<Value>::new()
    );

    for (session, text) in [(&forked, "two"), (&source, "three")] {
        let turn = submit(&mut server, session, text).await;
        turn_events(&mut server, &turn).await;
    }
    let mcp_names = |names: Vec<String>| -> Vec<String> {
        names
            .into_iter()
            .filter(|n| n.starts_with("mcp__"))
            .collect()
    };
    assert_eq!(
        mcp_names(tool_names(&upstream, 0).await),
        Vec::<String>::new()
    );
    let fork_tools = mcp_names(tool_names(&upstream, 1).await);
    assert!(
        fork_tools.len() == 7 && fork_tools.contains(&"mcp__forked__echo".to_owned()),
        "the fork's tools: {fork_tools:?}"
    );
    // The source was not given the fork's server.
    assert_eq!(
        mcp_names(tool_names(&upstream, 2).await),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn bad_mcp_servers_on_resume_and_fork_are_invalid_params_and_load_nothing() {
    let upstream = MockServer::start().await;
    let mut server = api_key_builder(&upstream).spawn().await;
    initialize(&mut server, true).await;
    let session = new_session(&mut server, json!({})).await;
    let reply = server
        .request_raw("session/close", Some(json!({"sessionId": session})))
        .await;
    assert!(reply.get("result").is_some(), "{reply}");
    let reply = server
        .request_raw(
            "session/resume",
            Some(
                json!({"sessionId": session, "mcpServers": [{"name": "x", "url": "ftp://h/mcp"}]}),
            ),
        )
        .await;
    assert_eq!(
        (&reply["error"]["code"], &reply["error"]["data"]["field"]),
        (&json!(-32602), &json!("mcpServers")),
        "{reply}"
    );
    let reply = server
        .request_raw(
            "session/fork",
            Some(json!({"sessionId": session, "mcpServers": [
                {"name": "x", "command": "a"}, {"name": "x", "command": "b"}]})),
        )
        .await;
    assert_eq!(
        (&reply["error"]["code"], &reply["error"]["data"]["field"]),
        (&json!(-32602), &json!("mcpServers")),
        "{reply}"
    );
    let loaded = server.request_raw("session/list", Some(json!({}))).await;
    assert_eq!(loaded["result"]["sessions"], json!([]), "{loaded}");
    let stored = server
        .request_raw("session/list", Some(json!({"stored": true})))
        .await;
    assert_eq!(
        stored["result"]["sessions"].as_array().map(Vec::len),
        Some(1),
        "{stored}"
    );
}

/// Starts a server whose configured fault server (and a grandchild it spawns) carry `marker`,
/// waits until the MCP server is ready, and checks the processes are there.
async fn server_with_marked_mcp(marker: &str) -> TestServer {
    server_with_marked(marker, true).await
}

async fn server_with_marked(marker: &str, child: bool) -> TestServer {
    let args: &[&str] = if child {
        &["--mode", "ok", "--child", marker]
    } else {
        &["--mode", "ok", marker]
    };
    let config = node_server_table("marked", &fault_js(), args, "");
    let mut server = TestServer::builder()
        .home_file("config.toml", config)
        .spawn()
        .await;
    initialize(&mut server, false).await;
    server
        .wait_for_notification("mcp/serverStatus", |p| p["status"] == "ready")
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while processes_with(marker).len() < if child { 2 } else { 1 } {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the MCP server and its child did not both start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
}

fn marker(way: &str) -> String {
    format!("mcp-marker-{way}-{}", std::process::id())
}

#[tokio::test]
async fn no_mcp_process_is_left_after_an_exit_notification() {
    let marker = marker("exit");
    let mut server = server_with_marked_mcp(&marker).await;
    server.send_notification("exit", None).await;
    assert!(server.wait_exit().await.success());
    wait_no_processes_with(&marker).await;
}

#[tokio::test]
async fn no_mcp_process_is_left_after_shutdown() {
    let marker = marker("shutdown");
    let mut server = server_with_marked_mcp(&marker).await;
    let reply = server.request::<Shutdown>(EmptyParams {}).await;
    assert_eq!(reply, Ok(()));
    assert!(server.wait_exit().await.success());
    wait_no_processes_with(&marker).await;
}

#[tokio::test]
async fn no_mcp_process_is_left_after_sigterm() {
    let marker = marker("sigterm");
    let mut server = server_with_marked_mcp(&marker).await;
    server.kill_signal(SIGTERM);
    assert!(server.wait_exit().await.success());
    wait_no_processes_with(&marker).await;
}

#[tokio::test]
async fn no_mcp_process_is_left_after_stdin_closes() {
    let marker = marker("eof");
    let mut server = server_with_marked_mcp(&marker).await;
    server.close_stdin().await;
    assert!(server.wait_exit().await.success());
    wait_no_processes_with(&marker).await;
}

#[tokio::test]
async fn configured_servers_start_without_any_request_and_go_with_the_server() {
    let marker = marker("silent");
    let config = node_server_table("marked", &fault_js(), &["--mode", "ok", &marker], "");
    let mut server = TestServer::builder()
        .home_file("config.toml", config)
        .spawn()
        .await;
    // Nothing is sent: the configured server is started anyway, shortly after the process.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while processes_with(&marker).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the configured MCP server did not start while the client was silent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    initialize(&mut server, false).await;
    let ready = server
        .wait_for_notification("mcp/serverStatus", |p| p["status"] == "ready")
        .await;
    assert_eq!(
        ready["params"],
        json!({"name": "marked", "status": "ready", "toolCount": 7})
    );
    server.close_stdin().await;
    assert!(server.wait_exit().await.success());
    wait_no_processes_with(&marker).await;
}

#[tokio::test]
async fn the_mcp_server_process_dies_even_with_a_killed_agent_server() {
    let marker = marker("sigkill");
    let server = server_with_marked(&marker, false).await;
    server.kill_signal(agent_server_tests::SIGKILL);
    wait_no_processes_with(&marker).await;
}

#[tokio::test]
async fn mcp_list_on_the_command_line_shows_status_and_tools() {
    let home = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[mcp_servers.bad]\ncommand = \"/nonexistent/mcp-server\"\n\n[mcp_servers.off]\ncommand = \"x\"\nenabled = false\n",
        fault_table("fault", "ok", "enabled_tools = [\"echo\", \"sleep\"]")
    );
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let home_arg = home.path().display().to_string();
    let out = agent_server_tests::run_to_end(
        home.path(),
        &["--home", &home_arg, "mcp", "list"],
        &[],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "bad  (stdio)  failed: cannot start `/nonexistent/mcp-server`: No such file or directory (os error 2); check `command` (and `cwd`) of this MCP server\n\
         fault  (stdio)  ready, 2 tools\n    echo                         Echoes the message back\n    sleep                        Answers after `ms` milliseconds\n"
    );
    let out = agent_server_tests::run_to_end(
        home.path(),
        &["--home", &home_arg, "mcp", "list", "--json"],
        &[],
        b"",
    )
    .await;
    let listed: Value = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<Value> = listed["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!([s["name"], s["status"]]))
        .collect();
    assert_eq!(
        names,
        vec![json!(["bad", "failed"]), json!(["fault", "ready"])]
    );
}
