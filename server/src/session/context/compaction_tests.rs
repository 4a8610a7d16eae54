//! Tests of the compacted history.

use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;

fn assistant(text: &str) -> ResponseItem {
    ResponseItem::from_json(
        json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}),
    )
}

fn context() -> Vec<ResponseItem> {
    vec![
        user_text_message(
            "# AGENTS.md instructions for /w\n\n<INSTRUCTIONS>\nbe nice\n</INSTRUCTIONS>",
        ),
        user_text_message("<environment_context>\n  <cwd>/w</cwd>\n</environment_context>"),
    ]
}

#[test]
fn the_new_history_is_context_then_recent_user_messages_then_the_summary() {
    let mut history = context();
    history.extend([
        user_text_message("first"),
        assistant("answer one"),
        ResponseItem::from_json(
            json!({"type": "function_call", "call_id": "c", "name": "shell", "arguments": "{}"}),
        ),
        ResponseItem::from_json(
            json!({"type": "function_call_output", "call_id": "c", "output": "ok"}),
        ),
        summary_message("an older summary"),
        user_text_message("second"),
        assistant("answer two"),
    ]);
    let out = compacted_history(context(), &history, "  the summary\n");
    let mut expected = context();
    expected.extend([
        user_text_message("first"),
        user_text_message("second"),
        user_text_message(&format!("{SUMMARY_PREFIX}\n\nthe summary")),
    ]);
    assert_eq!(out, expected);
}

#[test]
fn an_empty_summary_becomes_a_placeholder() {
    let out = compacted_history(Vec::new(), &[], " \n");
    assert_eq!(
        out,
        vec![user_text_message(&format!(
            "{SUMMARY_PREFIX}\n\n{EMPTY_SUMMARY_PLACEHOLDER}"
        ))]
    );
}

#[test]
fn recent_user_messages_fit_the_budget_and_the_oldest_that_does_not_is_cut() {
    let budget = RECENT_USER_TOKENS * BYTES_PER_TOKEN;
    let big = "é".repeat(budget / 4); // budget / 2 bytes of text
    let history = vec![
        user_text_message("too old to keep"),
        user_text_message(&format!("oldest kept {big}")),
        user_text_message(&big),
        user_text_message("newest"),
    ];
    let out = compacted_history(Vec::new(), &history, "s");
    assert_eq!(out.len(), 4, "cut message, big, newest, summary");
    assert_eq!(out[1], history[2]);
    assert_eq!(out[2], history[3]);
    let cut = user_text(&out[0]).unwrap();
    assert!(cut.starts_with("oldest kept é"), "{cut}");
    assert!(cut.ends_with(CUT_MARKER), "{cut}");
    let kept_bytes: usize = out[..3].iter().map(item_bytes).sum();
    assert!(kept_bytes <= budget + 200, "{kept_bytes} > {budget}");
    assert!(estimate_tokens(&out) < estimate_tokens(&history));
}

#[test]
fn context_messages_are_recognised_and_user_text_is_not() {
    for item in context() {
        assert!(is_context_message(&item), "{item:?}");
    }
    assert!(is_context_message(&summary_message("x")));
    assert!(!is_context_message(&user_text_message(
        "<environment> is a word"
    )));
    assert!(!is_context_message(&assistant("<environment_context>")));
}

#[test]
fn tokens_are_estimated_at_four_bytes_each() {
    let item = ResponseItem::Other(json!("12345678"));
    // The JSON string with its quotes is 10 bytes: 3 tokens rounded up.
    assert_eq!(estimate_tokens(&[item]), 3);
    assert_eq!(assistant_text(&assistant("hi")), "hi");
    assert_eq!(assistant_text(&user_text_message("hi")), "");
}

#[test]
fn the_auto_limit_is_the_setting_else_ninety_percent_of_the_window() {
    assert_eq!(auto_compact_limit(Some(1000), Some(272_000)), Some(1000));
    assert_eq!(auto_compact_limit(None, Some(272_000)), Some(244_800));
    assert_eq!(auto_compact_limit(None, None), None);
}

#[test]
fn trimming_drops_the_oldest_quarter_after_the_context_and_orphaned_outputs() {
    let call = ResponseItem::from_json(
        json!({"type": "function_call", "call_id": "c", "name": "shell", "arguments": "{}"}),
    );
    let output = ResponseItem::from_json(
        json!({"type": "function_call_output", "call_id": "c", "output": "ok"}),
    );
    let mut items = context();
    items.extend([
        user_text_message("a long first message that weighs more than a quarter of them all, surely, with padding to be sure of it"),
        call.clone(),
        output.clone(),
        assistant("x"),
        user_text_message("newest"),
    ]);
    // The long first message alone is a quarter: the call and its output stay together.
    assert!(trim_oldest(&mut items));
    assert_eq!(items[..2], context()[..]);
    assert_eq!(
        items[2..],
        [
            call.clone(),
            output.clone(),
            assistant("x"),
            user_text_message("newest")
        ]
    );
    // The call is less than a quarter; then its output would be orphaned, so it goes too.
    assert!(trim_oldest(&mut items));
    assert_eq!(items[2..], [assistant("x"), user_text_message("newest")]);
    assert!(trim_oldest(&mut items));
    assert_eq!(items[2..], [user_text_message("newest")]);
    assert!(!trim_oldest(&mut items));
}
