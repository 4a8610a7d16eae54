//! Crash recovery: a turn whose process died reads back `interrupted`, and a tool call it left
//! without an output gets one saying it was aborted, so the conversation can go on.

use std::collections::HashSet;

use agent_server_schema::session::{StoredTurnStatus, Turn, TurnError, TurnErrorKind};
use serde_json::{Value, json};

use crate::model::ResponseItem;
use crate::store::{Progress, Store, StoreError, TurnEnd};

/// What the model is told about a call whose process died before it finished.
const ABORTED_OUTPUT: &str =
    "aborted: the server stopped before this tool call finished; its effects are unknown";

/// The error a crashed turn reads back with (the contract's words).
fn crash_error() -> TurnError {
    TurnError {
        kind: TurnErrorKind::Interrupted,
        message: "the server stopped during this turn".into(),
        http_status: None,
        resets_at: None,
        plan_type: None,
        rate_limits: None,
    }
}

/// Shows turns that no live process runs as they will be once repaired, without writing.
pub(crate) fn present(turns: &mut [Turn]) {
    for turn in turns {
        if turn.status == StoredTurnStatus::InProgress {
            turn.status = StoredTurnStatus::Interrupted;
            turn.error = Some(crash_error());
        }
    }
}

/// Repairs a session whose lease is held (so no live process runs its turns): stores the end of
/// every turn left running and an aborted output for every call without one.
pub(crate) fn repair(
    store: &Store,
    id: &str,
    turns: &mut [Turn],
    history: &mut Vec<ResponseItem>,
) -> Result<(), StoreError> {
    for turn in turns.iter_mut() {
        if turn.status != StoredTurnStatus::InProgress {
            continue;
        }
        tracing::info!(session_id = %id, turn_id = %turn.turn_id, "a turn's process died: marking it interrupted");
        let end = TurnEnd {
            turn_id: turn.turn_id.clone(),
            status: StoredTurnStatus::Interrupted,
            usage: turn.usage,
            error: Some(crash_error()),
            seq: 0,
        };
        store.record(
            id,
            &Progress {
                end: Some(end),
                ..Progress::default()
            },
        )?;
        turn.status = StoredTurnStatus::Interrupted;
        turn.error = Some(crash_error());
    }
    let outputs = missing_outputs(history);
    if !outputs.is_empty() {
        let last_turn = turns.last().map(|t| t.turn_id.as_str());
        store.append_history(id, last_turn, &outputs)?;
        history.extend(outputs.into_iter().map(ResponseItem::from_json));
    }
    Ok(())
}

/// An output item for every tool call in `history` that has none.
fn missing_outputs(history: &[ResponseItem]) -> Vec<Value> {
    let answered: HashSet<&str> = history
        .iter()
        .filter_map(|item| match item {
            ResponseItem::FunctionCallOutput { call_id, .. }
            | ResponseItem::CustomToolCallOutput { call_id, .. } => Some(call_id.as_str()),
            _ => None,
        })
        .collect();
    history
        .iter()
        .filter_map(|item| {
            let (output_type, id) = match item {
                ResponseItem::FunctionCall { call_id, .. } => ("function_call_output", call_id),
                ResponseItem::CustomToolCall { call_id, .. } => {
                    ("custom_tool_call_output", call_id)
                }
                _ => return None,
            };
            (!answered.contains(id.as_str()))
                .then(|| json!({"type": output_type, "call_id": id, "output": ABORTED_OUTPUT}))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn every_call_without_an_output_gets_an_aborted_one() {
        let history = vec![
            json!({"type": "function_call", "call_id": "a", "name": "shell", "arguments": "{}"}),
            json!({"type": "function_call_output", "call_id": "a", "output": "ok"}),
            json!({"type": "function_call", "call_id": "b", "name": "shell", "arguments": "{}"}),
            json!({"type": "custom_tool_call", "call_id": "c", "name": "apply_patch", "input": ""}),
        ];
        let history: Vec<ResponseItem> = history.into_iter().map(ResponseItem::from_json).collect();
        assert_eq!(
            missing_outputs(&history),
            vec![
                json!({"type": "function_call_output", "call_id": "b", "output": ABORTED_OUTPUT}),
                json!({"type": "custom_tool_call_output", "call_id": "c", "output": ABORTED_OUTPUT}),
            ]
        );
    }
}
