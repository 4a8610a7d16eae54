//! The model-facing history of a session, and how the next request's input is assembled.
//!
//! [`History`] is plain data (serde both ways), so it can be stored and loaded whole: every
//! item the model has seen or produced, as typed [`ResponseItem`]s without upstream ids. Items
//! enter it in two ways only: [`History::push_own`] for what the session adds (user input,
//! tool outputs), and [`History::record_response`] for the items of a completed response.
//! [`History::next_input`] is the one place that decides what the next model call sends.

use agent_server_schema::session::Usage;
use serde::{Deserialize, Serialize};

use crate::model::ResponseItem;

/// What the session remembers between model calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// Every item so far, as sent upstream with `store:false` (ids stripped).
    items: Vec<ResponseItem>,
    /// The last completed response, for `previous_response_id` with `store:true`.
    last_response_id: Option<String>,
    /// Items added since that response (user input, tool outputs), sent with `store:true`.
    unsent: Vec<ResponseItem>,
    /// The session's token usage so far.
    total: Usage,
    /// The `totalTokens` of the conversation's last response (not a compaction's): how full
    /// the context window is. `None` before the first response and after a compaction.
    #[serde(default)]
    last_total_tokens: Option<u64>,
}

/// The input of the next model call.
#[derive(Debug, Clone, PartialEq)]
pub struct NextInput {
    /// The items to send.
    pub items: Vec<ResponseItem>,
    /// The response these items continue, when storing upstream.
    pub previous_response_id: Option<String>,
}

impl History {
    /// A history that goes on from stored `items` and `total` usage. A stored upstream
    /// response is not continued across processes: the next request sends everything.
    pub(crate) fn restored(items: Vec<ResponseItem>, total: Usage) -> Self {
        Self {
            items,
            total,
            ..Self::default()
        }
    }

    /// Adds an item the session made (user input, a tool output): it goes into the history and
    /// into the next stored request.
    pub fn push_own(&mut self, item: ResponseItem) {
        let item = item.for_history();
        self.unsent.push(item.clone());
        self.items.push(item);
    }

    /// Adds the items of a finished response. `response_id` is `None` for a response that
    /// ended incomplete: the upstream keeps no response to continue from, so later stored
    /// requests keep sending what was unsent.
    pub fn record_response(
        &mut self,
        items: Vec<ResponseItem>,
        response_id: Option<String>,
        usage: &Usage,
    ) {
        self.items
            .extend(items.into_iter().map(ResponseItem::for_history));
        if let Some(id) = response_id {
            self.last_response_id = Some(id);
            self.unsent.clear();
        }
        self.total.add(usage);
        if usage.total_tokens > 0 {
            self.last_total_tokens = Some(usage.total_tokens);
        }
    }

    /// Replaces every item with the compacted history. The next request sends it whole, also
    /// when storing: no stored response upstream continues it.
    pub fn replace_compacted(&mut self, items: Vec<ResponseItem>) {
        self.items = items.into_iter().map(ResponseItem::for_history).collect();
        self.unsent.clear();
        self.last_response_id = None;
        self.last_total_tokens = None;
    }

    /// Counts usage that is not a conversation response (a compaction's request).
    pub fn add_usage(&mut self, usage: &Usage) {
        self.total.add(usage);
    }

    /// The `totalTokens` of the last response, when known.
    pub fn last_total_tokens(&self) -> Option<u64> {
        self.last_total_tokens
    }

    /// What the next model call sends: with `store` and a previous response, only what is new
    /// since it; otherwise the whole history.
    pub fn next_input(&self, store: bool) -> NextInput {
        match (&self.last_response_id, store) {
            (Some(previous), true) => NextInput {
                items: self.unsent.clone(),
                previous_response_id: Some(previous.clone()),
            },
            _ => NextInput {
                items: self.items.clone(),
                previous_response_id: None,
            },
        }
    }

    /// Every item so far.
    pub fn items(&self) -> &[ResponseItem] {
        &self.items
    }

    /// The session's token usage so far.
    pub fn total(&self) -> Usage {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContentItem, Role};
    use pretty_assertions::assert_eq;

    fn text(role: Role, text: &str) -> ResponseItem {
        ResponseItem::Message {
            id: Some("upstream".into()),
            role,
            content: vec![ContentItem::InputText { text: text.into() }],
        }
    }

    #[test]
    fn stored_requests_send_only_what_is_new_and_stateless_ones_everything() {
        let mut history = History::default();
        history.push_own(text(Role::User, "hi"));
        assert_eq!(
            history.next_input(true),
            NextInput {
                items: vec![text(Role::User, "hi").for_history()],
                previous_response_id: None,
            }
        );
        let usage = Usage {
            total_tokens: 3,
            ..Usage::default()
        };
        history.record_response(
            vec![text(Role::Assistant, "hello")],
            Some("resp_1".into()),
            &usage,
        );
        history.push_own(text(Role::User, "again"));
        assert_eq!(
            history.next_input(true),
            NextInput {
                items: vec![text(Role::User, "again").for_history()],
                previous_response_id: Some("resp_1".into()),
            }
        );
        assert_eq!(history.next_input(false).items.len(), 3);
        assert!(history.items().iter().all(|item| item.id().is_none()));
        assert_eq!(history.total().total_tokens, 3);
    }

    #[test]
    fn a_compacted_history_is_sent_whole_and_forgets_the_last_usage() {
        let mut history = History::default();
        history.push_own(text(Role::User, "hi"));
        let usage = Usage {
            total_tokens: 5000,
            ..Usage::default()
        };
        history.record_response(vec![text(Role::Assistant, "x")], Some("r".into()), &usage);
        assert_eq!(history.last_total_tokens(), Some(5000));
        history.replace_compacted(vec![text(Role::User, "summary")]);
        assert_eq!(
            history.next_input(true),
            NextInput {
                items: vec![text(Role::User, "summary").for_history()],
                previous_response_id: None,
            }
        );
        assert_eq!(history.last_total_tokens(), None);
        history.add_usage(&usage);
        assert_eq!(history.total().total_tokens, 10_000);
    }

    #[test]
    fn the_history_round_trips_through_json() {
        let mut history = History::default();
        history.push_own(text(Role::User, "hi"));
        history.record_response(
            vec![ResponseItem::FunctionCall {
                id: Some("fc_1".into()),
                call_id: "c1".into(),
                name: "shell".into(),
                arguments: "{}".into(),
            }],
            Some("resp_1".into()),
            &Usage::default(),
        );
        let text = serde_json::to_string(&history).unwrap();
        assert_eq!(serde_json::from_str::<History>(&text).unwrap(), history);
    }
}
