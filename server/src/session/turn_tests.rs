//! Tests of the turn engine: whole turns driven by scripted model streams through the
//! in-memory client link.

use std::time::Duration;

use agent_server_schema::session::{
    ApprovalDecision, ApprovalPolicy, Event, Item, ItemStatus, TurnError, TurnErrorKind,
    TurnStatus, Usage,
};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::ApprovalReply;
use super::testing::{
    MemoryLink, Script, ScriptedModel, conversation, run_turn, session_with, settings_in, user_text,
};
use super::turn::NOT_RUN;
use crate::model::{ContentItem, ModelError, ResponseEvent, ResponseItem, Role, TokenUsage};

fn created(id: &str) -> Result<ResponseEvent, ModelError> {
    Ok(ResponseEvent::Created {
        response_id: Some(id.into()),
    })
}

fn message(id: Option<&str>, text: Option<&str>) -> ResponseItem {
    ResponseItem::Message {
        id: id.map(str::to_string),
        role: Role::Assistant,
        content: text
            .map(|text| ContentItem::OutputText {
                text: text.into(),
                extra: serde_json::Map::new(),
            })
            .into_iter()
            .collect(),
    }
}

fn added(item: ResponseItem) -> Result<ResponseEvent, ModelError> {
    Ok(ResponseEvent::OutputItemAdded {
        item: Box::new(item),
    })
}

fn done(item: ResponseItem) -> Result<ResponseEvent, ModelError> {
    Ok(ResponseEvent::OutputItemDone {
        item: Box::new(item),
    })
}

fn text(item_id: &str, delta: &str) -> Result<ResponseEvent, ModelError> {
    Ok(ResponseEvent::OutputTextDelta {
        item_id: item_id.into(),
        delta: delta.into(),
    })
}

fn completed(id: &str) -> Result<ResponseEvent, ModelError> {
    Ok(ResponseEvent::Completed {
        response_id: id.into(),
        usage: Some(TokenUsage {
            input_tokens: 5,
            output_tokens: 2,
            total_tokens: 7,
            ..TokenUsage::default()
        }),
    })
}

fn retrying() -> Result<ResponseEvent, ModelError> {
    Ok(ResponseEvent::Retrying {
        attempt: 1,
        max_attempts: 5,
        delay: Duration::from_millis(200),
        message: "the model stream broke".into(),
    })
}

fn answer(id: &str, said: &str) -> Script {
    vec![
        created(id),
        added(message(Some("m1"), None)),
        text("m1", said),
        done(message(Some("m1"), Some(said))),
        completed(id),
    ]
}

fn call(call_id: &str, name: &str, arguments: serde_json::Value) -> ResponseItem {
    ResponseItem::FunctionCall {
        id: Some(format!("fc_{call_id}")),
        call_id: call_id.into(),
        name: name.into(),
        arguments: arguments.to_string(),
    }
}

fn usage() -> Usage {
    Usage {
        input_tokens: 5,
        output_tokens: 2,
        total_tokens: 7,
        ..Usage::default()
    }
}

/// Replaces the server's item ids by `id1`, `id2`… in order of appearance.
fn normalized(events: Vec<Event>) -> serde_json::Value {
    let mut text = serde_json::to_string(&events).unwrap();
    let mut n = 0;
    for prefix in ["\"msg_", "\"rs_"] {
        while let Some(start) = text.find(prefix) {
            let end = start + 1 + text[start + 1..].find('"').unwrap();
            let id = text[start + 1..end].to_string();
            n += 1;
            text = text.replace(&format!("\"{id}\""), &format!("\"id{n}\""));
        }
    }
    serde_json::from_str(&text).unwrap()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test]
async fn a_text_turn_reports_every_event_and_remembers_the_answer() {
    let cwd = tempdir();
    let model = ScriptedModel::new(vec![answer("resp_1", "Hello")]);
    let link = MemoryLink::without_approvals();
    let session = session_with(
        settings_in(cwd.path(), ApprovalPolicy::Never),
        model.clone(),
        link.clone(),
    );
    let turn_id = run_turn(&session, "hi").await;
    assert_eq!(
        normalized(link.just_events()),
        json!([
            {"type": "turnStarted", "model": "test-model", "reasoningEffort": "medium",
                "approvalPolicy": "never", "sandbox": "workspaceWrite",
                "cwd": cwd.path().display().to_string()},
            {"type": "itemStarted", "item": {"type": "agentMessage", "id": "id1", "text": ""}},
            {"type": "agentMessageDelta", "itemId": "id1", "delta": "Hello"},
            {"type": "itemCompleted", "item": {"type": "agentMessage", "id": "id1", "text": "Hello"}},
            {"type": "tokenUsage", "last": usage(), "total": usage()},
            {"type": "turnCompleted", "status": "completed", "lastAgentMessage": "Hello",
             "usage": usage()},
        ])
    );
    let events = link.events();
    assert!(events.iter().all(|e| e.turn_id == turn_id));
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<u64>>()
    );
    run_turn(&session, "again").await;
    let second = &model.requests()[1];
    assert_eq!(
        conversation(&second.input),
        vec![
            user_text("hi"),
            message(None, Some("Hello")),
            user_text("again")
        ]
    );
    assert_eq!(second.reasoning_effort.as_deref(), Some("medium"));
}

#[tokio::test]
async fn a_retry_abandons_the_failed_attempts_items() {
    let cwd = tempdir();
    let script = vec![
        created("resp_1"),
        added(message(Some("m1"), None)),
        text("m1", "Hel"),
        done(message(Some("m1"), Some("Hel"))),
        retrying(),
        created("resp_2"),
        added(message(Some("m1"), None)),
        text("m1", "Hello"),
        done(message(Some("m1"), Some("Hello"))),
        completed("resp_2"),
    ];
    let model = ScriptedModel::new(vec![script, answer("resp_3", "Bye")]);
    let link = MemoryLink::without_approvals();
    let session = session_with(
        settings_in(cwd.path(), ApprovalPolicy::Never),
        model.clone(),
        link.clone(),
    );
    run_turn(&session, "hi").await;
    let events = normalized(link.just_events());
    assert_eq!(
        events.as_array().unwrap()[1..9],
        json!([
            {"type": "itemStarted", "item": {"type": "agentMessage", "id": "id1", "text": ""}},
            {"type": "agentMessageDelta", "itemId": "id1", "delta": "Hel"},
            {"type": "itemCompleted", "item": {"type": "agentMessage", "id": "id1", "text": "Hel"}},
            {"type": "retrying", "attempt": 1, "maxAttempts": 5, "delayMs": 200,
             "message": "the model stream broke"},
            {"type": "itemStarted", "item": {"type": "agentMessage", "id": "id2", "text": ""}},
            {"type": "agentMessageDelta", "itemId": "id2", "delta": "Hello"},
            {"type": "itemCompleted", "item": {"type": "agentMessage", "id": "id2", "text": "Hello"}},
            {"type": "tokenUsage", "last": usage(), "total": usage()},
        ])
        .as_array()
        .unwrap()[..]
    );
    // Only the attempt that completed reaches the history.
    run_turn(&session, "again").await;
    assert_eq!(
        conversation(&model.requests()[1].input),
        vec![
            user_text("hi"),
            message(None, Some("Hello")),
            user_text("again")
        ]
    );
}

#[tokio::test]
async fn unannounced_items_and_huge_indexes_are_reported_whole() {
    let cwd = tempdir();
    let reasoning = ResponseItem::Reasoning {
        id: Some("r1".into()),
        summary: vec![],
        content: None,
        encrypted_content: Some("blob".into()),
    };
    let script = vec![
        created("resp_1"),
        Ok(ResponseEvent::ReasoningSummaryDelta {
            item_id: "r1".into(),
            summary_index: u32::MAX,
            delta: "Thinking".into(),
        }),
        done(reasoning.clone()),
        text("m1", "Hi"),
        done(message(Some("m1"), Some("Hi"))),
        done(message(Some("m2"), Some("Also"))),
        completed("resp_1"),
    ];
    let model = ScriptedModel::new(vec![script]);
    let link = MemoryLink::without_approvals();
    let session = session_with(
        settings_in(cwd.path(), ApprovalPolicy::Never),
        model,
        link.clone(),
    );
    run_turn(&session, "hi").await;
    assert_eq!(
        normalized(link.just_events()).as_array().unwrap()[1..9],
        json!([
            {"type": "itemStarted", "item": {"type": "reasoning", "id": "id3", "summary": []}},
            {"type": "reasoningDelta", "itemId": "id3", "delta": "Thinking"},
            {"type": "itemCompleted", "item": {"type": "reasoning", "id": "id3", "summary": ["Thinking"]}},
            {"type": "itemStarted", "item": {"type": "agentMessage", "id": "id1", "text": ""}},
            {"type": "agentMessageDelta", "itemId": "id1", "delta": "Hi"},
            {"type": "itemCompleted", "item": {"type": "agentMessage", "id": "id1", "text": "Hi"}},
            {"type": "itemStarted", "item": {"type": "agentMessage", "id": "id2", "text": ""}},
            {"type": "itemCompleted", "item": {"type": "agentMessage", "id": "id2", "text": "Also"}},
        ])
        .as_array()
        .unwrap()[..]
    );
    let history = conversation(session.history.lock().await.items());
    assert_eq!(history[1], reasoning.for_history());
}

#[tokio::test]
async fn an_aborted_approval_gives_every_call_an_output_and_ends_the_turn() {
    let cwd = tempdir();
    let script = vec![
        created("resp_1"),
        done(call(
            "c1",
            "shell",
            json!({"command": ["sh", "-c", "echo hi > out.txt"]}),
        )),
        done(call(
            "c2",
            "shell",
            json!({"command": ["sh", "-c", "echo again > out.txt"]}),
        )),
        completed("resp_1"),
    ];
    let model = ScriptedModel::new(vec![script, answer("resp_2", "ok")]);
    let link = MemoryLink::approving(&[ApprovalReply::Decided(ApprovalDecision::Abort)]);
    let session = session_with(
        settings_in(cwd.path(), ApprovalPolicy::Untrusted),
        model.clone(),
        link.clone(),
    );
    run_turn(&session, "write").await;
    let events = link.just_events();
    assert_eq!(
        events.last(),
        Some(&Event::TurnCompleted {
            status: TurnStatus::Interrupted,
            last_agent_message: None,
            usage: usage(),
            error: None,
        })
    );
    assert_eq!(link.approvals_asked().len(), 1);
    assert!(!cwd.path().join("out.txt").exists());
    // The next turn's request answers both calls, the second as never run.
    run_turn(&session, "next").await;
    let input = &model.requests()[1].input;
    let outputs: Vec<(String, String)> = input
        .iter()
        .filter_map(|item| match item {
            ResponseItem::FunctionCallOutput { call_id, output } => {
                Some((call_id.clone(), output.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(outputs.len(), 2, "{input:?}");
    assert!(outputs[0].1.contains("who stopped the turn"), "{outputs:?}");
    assert_eq!(outputs[1], ("c2".to_string(), NOT_RUN.to_string()));
}

#[tokio::test]
async fn a_client_that_cannot_answer_gets_the_action_declined_by_policy() {
    let cwd = tempdir();
    let script = vec![
        created("resp_1"),
        done(call(
            "c1",
            "shell",
            json!({"command": ["sh", "-c", "echo hi > out.txt"]}),
        )),
        completed("resp_1"),
    ];
    // The client declared approvals but is gone by the time it is asked.
    let model = ScriptedModel::new(vec![script, answer("resp_2", "ok")]);
    let link = MemoryLink::approving(&[ApprovalReply::Unavailable]);
    let session = session_with(
        settings_in(cwd.path(), ApprovalPolicy::Untrusted),
        model.clone(),
        link.clone(),
    );
    run_turn(&session, "write").await;
    let declined = link.just_events().into_iter().find_map(|e| match e {
        Event::ItemCompleted { item } => match *item {
            Item::CommandExecution { status, .. } => Some(status),
            _ => None,
        },
        _ => None,
    });
    assert_eq!(declined, Some(ItemStatus::Declined));
    let output = model.requests()[1]
        .input
        .iter()
        .find_map(|item| match item {
            ResponseItem::FunctionCallOutput { output, .. } => Some(output.clone()),
            _ => None,
        })
        .unwrap();
    assert!(output.contains("declined by policy"), "{output}");
    assert!(!output.contains("by the user"), "{output}");
    assert!(!cwd.path().join("out.txt").exists());
}

#[tokio::test]
async fn a_custom_tool_call_is_answered_with_a_custom_output() {
    let cwd = tempdir();
    let custom = ResponseItem::CustomToolCall {
        id: Some("ct_1".into()),
        call_id: "c1".into(),
        name: "lookup".into(),
        input: "anything".into(),
    };
    let script = vec![created("resp_1"), done(custom.clone()), completed("resp_1")];
    let model = ScriptedModel::new(vec![script, answer("resp_2", "ok")]);
    let link = MemoryLink::without_approvals();
    let session = session_with(
        settings_in(cwd.path(), ApprovalPolicy::Never),
        model.clone(),
        link,
    );
    run_turn(&session, "go").await;
    let input = conversation(&model.requests()[1].input);
    assert_eq!(input[1], custom.for_history());
    match &input[2] {
        ResponseItem::CustomToolCallOutput { call_id, output } => {
            assert_eq!(call_id, "c1");
            assert!(output.contains("unknown tool `lookup`"), "{output}");
        }
        other => panic!("not a custom output: {other:?}"),
    }
}

#[tokio::test]
async fn model_errors_end_the_turn_with_their_typed_kind() {
    let cwd = tempdir();
    let cases = [
        (
            ModelError::InvalidProvider("model provider `x` has an unusable base_url".into()),
            TurnErrorKind::Upstream,
        ),
        (
            ModelError::QuotaExceeded {
                message: "no credit".into(),
                http_status: Some(429),
            },
            TurnErrorKind::QuotaExceeded,
        ),
        (ModelError::Internal("bug".into()), TurnErrorKind::Internal),
    ];
    for (error, kind) in cases {
        let model = ScriptedModel::new(vec![vec![created("resp_1"), Err(error.clone())]]);
        let link = MemoryLink::without_approvals();
        let session = session_with(
            settings_in(cwd.path(), ApprovalPolicy::Never),
            model,
            link.clone(),
        );
        run_turn(&session, "hi").await;
        assert_eq!(
            link.just_events().last(),
            Some(&Event::TurnCompleted {
                status: TurnStatus::Failed,
                last_agent_message: None,
                usage: Usage::default(),
                error: Some(Box::new(TurnError {
                    kind,
                    message: error.to_string(),
                    http_status: error.http_status(),
                    resets_at: None,
                    plan_type: None,
                    rate_limits: None,
                })),
            })
        );
    }
}

#[tokio::test]
async fn an_interrupt_while_the_model_thinks_ends_the_turn_interrupted() {
    let cwd = tempdir();
    let model = ScriptedModel::hanging(answer("resp_1", "Hello"), 3);
    let link = MemoryLink::without_approvals();
    let session = session_with(
        settings_in(cwd.path(), ApprovalPolicy::Never),
        model,
        link.clone(),
    );
    let turn_id = session.submit(
        super::worker::TurnInput::User(user_text("hi")),
        Vec::new(),
        crate::gate::ReplyGate::opened_now(),
        None,
        None,
    );
    while !link
        .just_events()
        .iter()
        .any(|e| matches!(e, Event::AgentMessageDelta { .. }))
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(session.interrupt(Some(&turn_id)));
    session.wait_idle().await;
    assert_eq!(
        link.just_events().last(),
        Some(&Event::TurnCompleted {
            status: TurnStatus::Interrupted,
            last_agent_message: None,
            usage: Usage::default(),
            error: None,
        })
    );
}

#[tokio::test]
async fn a_stream_that_ends_early_fails_the_turn_as_upstream() {
    let cwd = tempdir();
    let model = ScriptedModel::new(vec![vec![created("resp_1"), text("m1", "Hi")]]);
    let link = MemoryLink::without_approvals();
    let session = session_with(
        settings_in(cwd.path(), ApprovalPolicy::Never),
        model,
        link.clone(),
    );
    run_turn(&session, "hi").await;
    match link.just_events().last() {
        Some(Event::TurnCompleted {
            status: TurnStatus::Failed,
            error: Some(error),
            ..
        }) => assert_eq!(error.kind, TurnErrorKind::Upstream),
        other => panic!("{other:?}"),
    }
}
