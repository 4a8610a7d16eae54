//! The types serialize to exactly the shapes the contract shows.

use agent_server_schema::auth::{AuthMode, AuthSource, AuthStatus};
use agent_server_schema::methods::{Direction, Method, REQUESTS, Submit, request_names};
use agent_server_schema::rpc::ErrorKind;
use agent_server_schema::session::*;
use pretty_assertions::assert_eq;
use serde_json::json;

#[test]
fn auth_status_has_every_field_with_nulls_and_no_token_by_default() {
    let status = AuthStatus {
        auth_mode: Some(AuthMode::ApiKey),
        source: Some(AuthSource::Env),
        requires_openai_auth: true,
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&status).unwrap(),
        json!({"authMode":"apiKey","source":"env","email":null,"planType":null,"accountId":null,
               "lastRefresh":null,"requiresOpenaiAuth":true,"error":null})
    );
}

#[test]
fn events_and_items_are_tagged_by_type_with_camel_case_fields() {
    let event = SessionEventNotification {
        session_id: "s".into(),
        turn_id: "t".into(),
        seq: 3,
        event: Event::ItemCompleted {
            item: Box::new(Item::CommandExecution {
                id: "call_1".into(),
                command: vec!["ls".into()],
                cwd: "/w".into(),
                status: ItemStatus::Completed,
                exit_code: Some(0),
                output: Some("a\n".into()),
                duration_ms: Some(5),
            }),
        },
    };
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!({"sessionId":"s","turnId":"t","seq":3,"event":{"type":"itemCompleted","item":{
            "id":"call_1","type":"commandExecution","command":["ls"],"cwd":"/w","status":"completed",
            "exitCode":0,"output":"a\n","durationMs":5}}})
    );
    let completed = Event::TurnCompleted {
        status: TurnStatus::Failed,
        last_agent_message: None,
        usage: Usage::default(),
        error: Some(Box::new(TurnError {
            kind: TurnErrorKind::UsageLimitReached,
            message: "m".into(),
            http_status: Some(429),
            resets_at: Some("2026-12-01T00:00:00Z".into()),
            plan_type: Some("plus".into()),
            rate_limits: None,
        })),
    };
    assert_eq!(
        serde_json::to_value(&completed).unwrap(),
        json!({"type":"turnCompleted","status":"failed","lastAgentMessage":null,
               "usage":{"inputTokens":0,"cachedInputTokens":0,"outputTokens":0,"reasoningOutputTokens":0,"totalTokens":0},
               "error":{"kind":"usageLimitReached","message":"m","httpStatus":429,"resetsAt":"2026-12-01T00:00:00Z","planType":"plus"}})
    );
}

#[test]
fn enums_use_the_contract_spelling() {
    assert_eq!(
        serde_json::to_value([
            ApprovalPolicy::Untrusted,
            ApprovalPolicy::OnFailure,
            ApprovalPolicy::Never
        ])
        .unwrap(),
        json!(["untrusted", "onFailure", "never"])
    );
    assert_eq!(
        serde_json::to_value([
            SandboxMode::ReadOnly,
            SandboxMode::WorkspaceWrite,
            SandboxMode::DangerFullAccess
        ])
        .unwrap(),
        json!(["readOnly", "workspaceWrite", "dangerFullAccess"])
    );
    assert_eq!(
        serde_json::to_value([
            ApprovalDecision::Approve,
            ApprovalDecision::ApproveForSession,
            ApprovalDecision::Deny,
            ApprovalDecision::Abort
        ])
        .unwrap(),
        json!(["approve", "approveForSession", "deny", "abort"])
    );
    let input: Vec<InputItem> = serde_json::from_value(json!([
        {"type":"text","text":"hi"},{"type":"image","url":"data:image/png;base64,AA"},{"type":"localImage","path":"a.png"}
    ])).unwrap();
    assert_eq!(
        input[2],
        InputItem::LocalImage {
            path: "a.png".into()
        }
    );
}

#[test]
fn every_error_kind_maps_to_its_contract_code() {
    let table = [
        (ErrorKind::ParseError, -32700),
        (ErrorKind::InvalidRequest, -32600),
        (ErrorKind::MessageTooLarge, -32600),
        (ErrorKind::AlreadyInitialized, -32600),
        (ErrorKind::InitializeNotFirst, -32600),
        (ErrorKind::MethodNotFound, -32601),
        (ErrorKind::InvalidParams, -32602),
        (ErrorKind::SessionNotFound, -32602),
        (ErrorKind::UnsupportedProtocolVersion, -32602),
        (ErrorKind::TurnNotFound, -32602),
        (ErrorKind::Internal, -32603),
        (ErrorKind::Cancelled, -32800),
        (ErrorKind::AuthRequired, -32000),
        (ErrorKind::LoginRequired, -32000),
        (ErrorKind::Overloaded, -32001),
        (ErrorKind::LoginPortInUse, -32010),
        (ErrorKind::LoginInProgress, -32010),
        (ErrorKind::DeviceCodeUnavailable, -32010),
    ];
    for (kind, code) in table {
        assert_eq!(
            (kind.as_str(), kind.code()),
            (serde_json::to_value(kind).unwrap().as_str().unwrap(), code)
        );
    }
}

#[test]
fn the_method_table_names_every_request_once() {
    assert_eq!(Submit::NAME, "session/submit");
    let mut names: Vec<&str> = REQUESTS.iter().map(|(name, _)| *name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), REQUESTS.len());
    assert_eq!(
        request_names(Direction::ServerToClient),
        vec!["session/requestApproval"]
    );
}
