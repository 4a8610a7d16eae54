//! Section 7 of the contract (and the bad-input rules of section 1): each error code with its
//! normative `data.kind`, a human-readable message on every error, and the server still
//! serving the next line after each of them.

use agent_server_tests::TestServer;
use agent_server_tests::replies::{invalid_params, kind_error, ok_reply, redact};
use agent_server_tests::schema::methods::{AuthStatusRequest, LoginApiKey};
use agent_server_tests::schema::rpc::ErrorKind;
use agent_server_tests::turns::new_session;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

fn list_sessions(id: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "session/list"})
}

fn no_sessions() -> Value {
    json!({"sessions": [], "nextCursor": null})
}

/// The contract's `AuthStatus` in a home with no credentials and no OpenAI env.
fn logged_out() -> Value {
    json!({
        "authMode": null, "source": null, "email": null, "planType": null,
        "accountId": null, "lastRefresh": null, "requiresOpenaiAuth": true, "error": null,
    })
}

/// Proves the server still serves requests after whatever came before.
async fn assert_still_serving(server: &mut TestServer, id: i64) {
    server.send_json(list_sessions(json!(id))).await;
    assert_eq!(
        server.wait_for_response(id).await,
        ok_reply(id, no_sessions())
    );
}

// ---- -32700 ----

#[tokio::test]
async fn unparseable_json_gets_a_parse_error_with_a_null_id() {
    let mut server = TestServer::start().await;
    let bad_lines: [&[u8]; 5] = [
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\n",
        b"not json at all\n",
        b"[1, 2\n",
        b"{\"id\": 1, \"method\": \"session/list\",}\n",
        b"\xff\xfe{\"id\":1}\n",
    ];
    for (n, bad) in bad_lines.iter().enumerate() {
        server.send_raw(bad).await;
        assert_eq!(
            redact(server.wait_for_response(Value::Null).await),
            kind_error(Value::Null, -32700, "parseError"),
            "for input line {n}: {:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_still_serving(&mut server, 100).await;
}

// ---- -32600 ----

#[tokio::test]
async fn valid_json_that_is_no_message_gets_invalid_request() {
    let mut server = TestServer::start().await;
    let cases = [
        (json!({"jsonrpc": "2.0", "id": 3}), json!(3)),
        (json!({"jsonrpc": "2.0", "id": 4, "method": 5}), json!(4)),
        (
            json!({"jsonrpc": "2.0", "id": "s", "method": null}),
            json!("s"),
        ),
        (json!(42), Value::Null),
        (json!("session/list"), Value::Null),
        (json!(null), Value::Null),
        (json!(true), Value::Null),
        (json!({"foo": 1}), Value::Null),
    ];
    for (input, id) in cases {
        server.send_json(input.clone()).await;
        assert_eq!(
            redact(server.wait_for_response(id.clone()).await),
            kind_error(id, -32600, "invalidRequest"),
            "for {input}"
        );
    }
    assert_still_serving(&mut server, 100).await;
}

#[tokio::test]
async fn params_that_are_a_number_string_or_bool_get_invalid_request() {
    let mut server = TestServer::start().await;
    for (id, params) in [(1, json!(42)), (2, json!("x")), (3, json!(true))] {
        server
            .send_json(
                json!({"jsonrpc": "2.0", "id": id, "method": "session/list", "params": params}),
            )
            .await;
        assert_eq!(
            redact(server.wait_for_response(id).await),
            kind_error(id, -32600, "invalidRequest"),
            "for params {params}"
        );
    }
    assert_still_serving(&mut server, 100).await;
}

#[tokio::test]
async fn null_params_are_taken_as_absent() {
    let mut server = TestServer::start().await;
    server
        .send_json(json!({"jsonrpc": "2.0", "id": 1, "method": "session/list", "params": null}))
        .await;
    assert_eq!(
        server.wait_for_response(1).await,
        ok_reply(1, no_sessions())
    );
    server
        .send_json(json!({"jsonrpc": "2.0", "id": 2, "method": "auth/status", "params": null}))
        .await;
    assert_eq!(server.wait_for_response(2).await, ok_reply(2, logged_out()));
}

#[tokio::test]
async fn a_request_with_a_null_id_is_answered_with_a_null_id() {
    let mut server = TestServer::start().await;
    server.send_json(list_sessions(Value::Null)).await;
    assert_eq!(
        server.read_message().await,
        ok_reply(Value::Null, no_sessions())
    );
}

#[tokio::test]
async fn an_oversized_message_is_rejected_and_the_next_request_answered() {
    let mut server = TestServer::builder()
        .args(["-c", "max_message_bytes=1024"])
        .spawn()
        .await;
    let padding = "x".repeat(1024 * 1024);
    let big =
        json!({"jsonrpc": "2.0", "id": 7, "method": "auth/status", "params": {"pad": padding}});
    // The next request rides in the same write, right behind the oversized line.
    server
        .send_raw(format!("{big}\n{}\n", list_sessions(json!(8))))
        .await;
    assert_eq!(
        redact(server.wait_for_response(Value::Null).await),
        kind_error(Value::Null, -32600, "messageTooLarge")
    );
    assert_eq!(
        server.wait_for_response(8).await,
        ok_reply(8, no_sessions())
    );
    assert_still_serving(&mut server, 100).await;
}

#[tokio::test]
async fn an_oversized_content_length_message_is_skipped() {
    let mut server = TestServer::builder()
        .args(["-c", "max_message_bytes=1024"])
        .content_length()
        .spawn()
        .await;
    let padding = "x".repeat(64 * 1024);
    let big =
        json!({"jsonrpc": "2.0", "id": 7, "method": "auth/status", "params": {"pad": padding}});
    server.send_json(big).await;
    server.send_json(list_sessions(json!(8))).await;
    assert_eq!(
        redact(server.wait_for_response(Value::Null).await),
        kind_error(Value::Null, -32600, "messageTooLarge")
    );
    assert_eq!(
        server.wait_for_response(8).await,
        ok_reply(8, no_sessions())
    );
}

#[tokio::test]
async fn a_message_under_the_limit_is_served() {
    let mut server = TestServer::builder()
        .args(["-c", "max_message_bytes=1024"])
        .spawn()
        .await;
    let padding = "x".repeat(900);
    server
        .send_json(json!({"jsonrpc": "2.0", "id": 1, "method": "session/list", "params": {"pad": padding}}))
        .await;
    assert_eq!(
        server.wait_for_response(1).await,
        ok_reply(1, no_sessions())
    );
}

// ---- -32601 ----

#[tokio::test]
async fn an_unknown_method_gets_method_not_found() {
    let mut server = TestServer::start().await;
    for (id, method) in [(1, "no/such/method"), (2, "session/List"), (3, "")] {
        server
            .send_json(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}}))
            .await;
        assert_eq!(
            redact(server.wait_for_response(id).await),
            kind_error(id, -32601, "methodNotFound"),
            "for method {method:?}"
        );
    }
    assert_still_serving(&mut server, 100).await;
}

// ---- -32602 ----

#[tokio::test]
async fn params_of_the_wrong_shape_name_the_field_and_what_was_expected() {
    let mut server = TestServer::start().await;
    let cases = [
        ("auth/loginApiKey", Some(json!({"apiKey": 5})), "apiKey"),
        ("auth/loginApiKey", Some(json!({})), "apiKey"),
        ("auth/loginApiKey", None, "apiKey"),
        (
            "auth/status",
            Some(json!({"includeToken": "yes"})),
            "includeToken",
        ),
        ("session/close", Some(json!({"sessionId": 7})), "sessionId"),
        ("auth/cancelLogin", Some(json!({})), "loginId"),
    ];
    for (method, params, field) in cases {
        let reply = server.request_raw(method, params.clone()).await;
        let id = reply["id"].clone();
        assert_eq!(
            redact(reply),
            invalid_params(id, field),
            "for {method} {params:?}"
        );
    }
    assert_still_serving(&mut server, 100).await;
}

#[tokio::test]
async fn the_typed_client_sees_invalid_params_as_an_rpc_error() {
    let mut server = TestServer::start().await;
    // The typed API cannot build a wrong shape; an empty key is the one the contract forbids.
    let error = server
        .request::<LoginApiKey>(agent_server_tests::schema::auth::LoginApiKeyParams {
            api_key: String::new(),
        })
        .await
        .expect_err("an empty API key must be refused");
    assert_eq!(error.code, -32602);
    assert_eq!(
        (error.data.kind, error.data.field.as_deref()),
        (ErrorKind::InvalidParams, Some("apiKey"))
    );
}

#[tokio::test]
async fn unknown_fields_in_params_are_ignored() {
    let mut server = TestServer::start().await;
    // `initialize` goes first: it is refused after any other request.
    let reply = server
        .request_raw(
            "initialize",
            Some(json!({
                "protocolVersion": 1,
                "futureField": {"x": 1},
                "capabilities": {"approvals": true, "futureCapability": true},
            })),
        )
        .await;
    assert_eq!(
        reply["result"]["capabilities"],
        json!({"approvals": true, "framing": "ndjson"}),
        "{reply}"
    );
    let reply = server
        .request_raw(
            "auth/status",
            Some(json!({"includeToken": false, "bogus": 1})),
        )
        .await;
    assert_eq!(reply, ok_reply(reply["id"].clone(), logged_out()));
    let reply = server
        .request_raw("session/list", Some(json!({"whatever": [1, 2]})))
        .await;
    assert_eq!(reply, ok_reply(reply["id"].clone(), no_sessions()));
}

#[tokio::test]
async fn an_unknown_session_gets_session_not_found() {
    let mut server = TestServer::start().await;
    for method in ["session/close", "session/interrupt"] {
        let reply = server
            .request_raw(method, Some(json!({"sessionId": "no-such-session"})))
            .await;
        let id = reply["id"].clone();
        assert_eq!(
            redact(reply),
            kind_error(id, -32602, "sessionNotFound"),
            "for {method}"
        );
    }
}

#[tokio::test]
async fn an_unknown_turn_gets_turn_not_found() {
    let mut server = TestServer::builder()
        .env("OPENAI_API_KEY", "sk-test")
        .spawn()
        .await;
    let session_id = new_session(&mut server, json!({})).await;
    let reply = server
        .request_raw(
            "session/interrupt",
            Some(json!({"sessionId": session_id, "turnId": "no-such-turn"})),
        )
        .await;
    let id = reply["id"].clone();
    assert_eq!(redact(reply), kind_error(id, -32602, "turnNotFound"));
}

// ---- -32000 ----

#[tokio::test]
async fn sessions_without_auth_get_auth_required() {
    let mut server = TestServer::start().await;
    for (method, params) in [
        ("session/new", json!({})),
        ("session/submit", json!({"text": "hello"})),
    ] {
        let reply = server.request_raw(method, Some(params)).await;
        let id = reply["id"].clone();
        assert_eq!(
            redact(reply),
            kind_error(id, -32000, "authRequired"),
            "for {method}"
        );
    }
}

// ---- -32010 ----

#[tokio::test]
async fn a_busy_login_port_gets_login_port_in_use() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut server = TestServer::builder()
        .env("AGENT_SERVER_LOGIN_PORT", port.to_string())
        .spawn()
        .await;
    let reply = server
        .request_raw("auth/loginChatGPT", Some(json!({})))
        .await;
    let id = reply["id"].clone();
    assert_eq!(redact(reply), kind_error(id, -32010, "loginPortInUse"));
    // Another process's server on the port is never touched.
    assert!(listener.local_addr().is_ok());
}

// ---- the error object itself ----

#[tokio::test]
async fn every_error_has_a_message_and_a_kind_matching_its_code() {
    let mut server = TestServer::start().await;
    let inputs = [
        "{bad json\n".to_owned(),
        "[]\n".to_owned(),
        format!("{}\n", json!({"jsonrpc": "2.0", "id": 1, "method": "nope"})),
        format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": 2, "method": "auth/loginApiKey", "params": {}})
        ),
        format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": 3, "method": "session/close", "params": {"sessionId": "x"}})
        ),
    ];
    for input in &inputs {
        server.send_raw(input).await;
        let reply = server.read_message().await;
        let error: agent_server_tests::schema::rpc::RpcError =
            serde_json::from_value(reply["error"].clone())
                .unwrap_or_else(|e| panic!("not a contract error ({e}): {reply}"));
        assert!(!error.message.trim().is_empty(), "{reply}");
        assert_eq!(error.code, error.data.kind.code(), "{reply}");
    }
    // The typed API decodes a result when there is no error.
    let status = server
        .request::<AuthStatusRequest>(Default::default())
        .await
        .unwrap_or_else(|e| panic!("auth/status failed: {e:?}"));
    assert_eq!(serde_json::to_value(status).unwrap(), logged_out());
}
