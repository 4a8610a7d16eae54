//! Tests of the item bookkeeping of one response.

use pretty_assertions::assert_eq;

use super::*;
use crate::model::Role;

fn message(id: &str, text: Option<&str>) -> ResponseItem {
    ResponseItem::Message {
        id: Some(id.into()),
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

fn reasoning(id: &str, summary: &[&str]) -> ResponseItem {
    ResponseItem::Reasoning {
        id: Some(id.into()),
        summary: summary
            .iter()
            .map(|text| crate::model::item::SummaryPart::SummaryText {
                text: (*text).into(),
            })
            .collect(),
        content: None,
        encrypted_content: Some("blob".into()),
    }
}

fn started_id(update: &Update) -> String {
    match update.started.as_deref() {
        Some(Item::AgentMessage { id, .. } | Item::Reasoning { id, .. }) => id.clone(),
        other => panic!("no item started: {other:?}"),
    }
}

fn completed(update: Update) -> Item {
    match update.next {
        Some(Next::Completed(item)) => *item,
        other => panic!("nothing completed: {other:?}"),
    }
}

#[test]
fn an_announced_message_streams_and_completes_with_its_final_text() {
    let mut tracker = ItemTracker::default();
    let added = tracker.added(&message("m1", None));
    let id = started_id(&added);
    assert_eq!(
        tracker.text_delta("m1".into(), "Hel".into()),
        Update {
            started: None,
            next: Some(Next::Delta(Event::AgentMessageDelta {
                item_id: id.clone(),
                delta: "Hel".into()
            })),
        }
    );
    let done = tracker.done(message("m1", Some("Hello")));
    assert_eq!(done.started, None);
    assert_eq!(
        completed(done),
        Item::AgentMessage {
            id,
            text: "Hello".into()
        }
    );
    let (items, calls) = tracker.finish();
    assert_eq!((items, calls), (vec![message("m1", Some("Hello"))], vec![]));
}

#[test]
fn a_message_done_without_text_parts_keeps_what_streamed() {
    let mut tracker = ItemTracker::default();
    tracker.added(&message("m1", None));
    tracker.text_delta("m1".into(), "streamed".into());
    match completed(tracker.done(message("m1", None))) {
        Item::AgentMessage { text, .. } => assert_eq!(text, "streamed"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unannounced_items_are_started_before_their_first_delta_or_their_end() {
    let mut tracker = ItemTracker::default();
    let delta = tracker.text_delta("m9".into(), "Hi".into());
    let id = started_id(&delta);
    assert_eq!(
        delta.next,
        Some(Next::Delta(Event::AgentMessageDelta {
            item_id: id.clone(),
            delta: "Hi".into()
        }))
    );
    let done = tracker.done(reasoning("r9", &["Thinking"]));
    let reasoning_id = started_id(&done);
    assert_eq!(
        completed(done),
        Item::Reasoning {
            id: reasoning_id,
            summary: vec!["Thinking".into()]
        }
    );
    // The message streamed earlier completes under the id it started with.
    match completed(tracker.done(message("m9", Some("Hi")))) {
        Item::AgentMessage { id: done_id, .. } => assert_eq!(done_id, id),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_huge_summary_index_neither_allocates_nor_loses_text() {
    let mut tracker = ItemTracker::default();
    tracker.added(&reasoning("r1", &[]));
    tracker.summary_delta("r1".into(), 0, "first ".into());
    let far = tracker.summary_delta("r1".into(), u32::MAX, "far".into());
    assert!(matches!(
        far.next,
        Some(Next::Delta(Event::ReasoningDelta { .. }))
    ));
    tracker.summary_delta("r1".into(), 1, "second".into());
    match completed(tracker.done(reasoning("r1", &[]))) {
        Item::Reasoning { summary, .. } => {
            assert_eq!(summary, vec!["first far".to_string(), "second".into()]);
        }
        other => panic!("{other:?}"),
    }
    let mut parts = Vec::new();
    summary_part(&mut parts, u32::MAX).push('x');
    assert_eq!(parts, vec!["x".to_string()]);
    summary_part(&mut parts, 2).push('y');
    assert_eq!(parts, vec!["x".to_string(), String::new(), "y".into()]);
}

#[test]
fn abandoning_an_attempt_forgets_its_items_and_calls() {
    let mut tracker = ItemTracker::default();
    let first = started_id(&tracker.added(&message("m1", None)));
    tracker.done(ResponseItem::FunctionCall {
        id: Some("fc_1".into()),
        call_id: "c1".into(),
        name: "shell".into(),
        arguments: "{}".into(),
    });
    let ended = tracker.abandon();
    assert_eq!(
        ended,
        vec![Item::AgentMessage {
            id: first.clone(),
            text: String::new()
        }]
    );
    // The same upstream id in the new attempt is a new client item.
    let second = started_id(&tracker.added(&message("m1", None)));
    assert_ne!(first, second);
    tracker.done(message("m1", Some("ok")));
    let (items, calls) = tracker.finish();
    assert_eq!((items, calls), (vec![message("m1", Some("ok"))], vec![]));
}

#[test]
fn calls_are_collected_with_their_kind_and_other_items_kept_silently() {
    let mut tracker = ItemTracker::default();
    let function = ResponseItem::FunctionCall {
        id: Some("fc_1".into()),
        call_id: "c1".into(),
        name: "shell".into(),
        arguments: "{\"command\":[\"ls\"]}".into(),
    };
    let custom = ResponseItem::CustomToolCall {
        id: Some("ct_1".into()),
        call_id: "c2".into(),
        name: "apply_patch".into(),
        input: "*** Begin Patch".into(),
    };
    let search = ResponseItem::Other(serde_json::json!({"type": "web_search_call", "id": "ws"}));
    assert_eq!(tracker.added(&function), Update::default());
    for item in [function.clone(), custom.clone(), search.clone()] {
        assert_eq!(tracker.done(item), Update::default());
    }
    let (items, calls) = tracker.finish();
    assert_eq!(items, vec![function, custom, search]);
    assert_eq!(
        calls
            .iter()
            .map(|c| (c.call.call_id.as_str(), c.call.arguments.as_str(), c.kind))
            .collect::<Vec<_>>(),
        vec![
            ("c1", "{\"command\":[\"ls\"]}", CallKind::Function),
            ("c2", "*** Begin Patch", CallKind::Custom)
        ]
    );
    assert_eq!(
        calls[1].output("done".into()),
        ResponseItem::CustomToolCallOutput {
            call_id: "c2".into(),
            output: "done".into()
        }
    );
}

#[test]
fn a_delta_of_the_wrong_kind_is_dropped() {
    let mut tracker = ItemTracker::default();
    tracker.added(&reasoning("r1", &[]));
    assert_eq!(
        tracker.text_delta("r1".into(), "text".into()),
        Update::default()
    );
    tracker.added(&message("m1", None));
    assert_eq!(
        tracker.summary_delta("m1".into(), 0, "why".into()),
        Update::default()
    );
}

#[test]
fn items_left_open_end_as_they_stood_in_the_order_they_began() {
    let mut tracker = ItemTracker::default();
    let reasoning_id = started_id(&tracker.summary_delta("rs_1".into(), 0, "Thinking".into()));
    let message_id = started_id(&tracker.text_delta("m1".into(), "Half a sen".into()));
    tracker.text_delta("m2".into(), "Other".into());
    tracker.done(message("m2", Some("Other")));
    assert_eq!(
        tracker.close_open(),
        vec![
            Item::Reasoning {
                id: reasoning_id,
                summary: vec!["Thinking".into()]
            },
            Item::AgentMessage {
                id: message_id,
                text: "Half a sen".into()
            },
        ]
    );
    assert_eq!(tracker.close_open(), vec![]);
}

#[test]
fn a_custom_tool_call_done_without_input_takes_the_streamed_input() {
    let mut tracker = ItemTracker::default();
    tracker.custom_input_delta("ctc_1".into(), "*** Begin Patch\n");
    tracker.custom_input_delta("ctc_1".into(), "*** End Patch");
    let bare = ResponseItem::from_json(serde_json::json!({
        "type": "custom_tool_call", "id": "ctc_1", "call_id": "call_1", "name": "apply_patch",
    }));
    tracker.done(bare);
    let (items, calls) = tracker.finish();
    assert_eq!(
        items,
        vec![ResponseItem::CustomToolCall {
            id: Some("ctc_1".into()),
            call_id: "call_1".into(),
            name: "apply_patch".into(),
            input: "*** Begin Patch\n*** End Patch".into(),
        }]
    );
    assert_eq!(
        calls
            .iter()
            .map(|c| (c.call.arguments.clone(), c.kind))
            .collect::<Vec<_>>(),
        vec![(
            "*** Begin Patch\n*** End Patch".to_string(),
            CallKind::Custom
        )]
    );
}
