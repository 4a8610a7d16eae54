//! Our session events as ACP `session/update`s (contract section 13, the `session/update` row).
//!
//! One [`Translator`] per session, because what to say about an item depends on what was already
//! said: a message streamed as deltas is not repeated when it completes, and a tool call is
//! reported `in_progress` once, at its first output.

use std::collections::HashSet;

use agent_client_protocol::v1::schema::{
    ContentBlock, ContentChunk, Diff, ImageContent, Plan, PlanEntry, PlanEntryPriority,
    PlanEntryStatus, SessionUpdate, TextContent, ToolCall, ToolCallContent, ToolCallLocation,
    ToolCallStatus, ToolCallUpdate, ToolCallUpdateFields, ToolKind, UsageUpdate,
};
use agent_server_schema::session::{
    Event, FileChange, FileChangeKind, InputItem, Item, ItemStatus, PlanStep, PlanStepStatus, Turn,
};
use serde_json::{Value, json};

/// What the translator remembers about one session's open items.
#[derive(Debug, Default)]
pub(crate) struct Translator {
    /// Messages and reasoning whose text already went out as chunks.
    streamed: HashSet<String>,
    /// Tool calls already reported `in_progress`.
    running: HashSet<String>,
}

fn text(text: impl Into<String>) -> ContentBlock {
    ContentBlock::Text(TextContent::new(text))
}

impl Translator {
    /// The updates one event becomes (none for turn boundaries and retries).
    pub(crate) fn translate(
        &mut self,
        event: &Event,
        context_window: Option<u64>,
    ) -> Vec<SessionUpdate> {
        match event {
            Event::AgentMessageDelta { item_id, delta } => {
                self.mark_streamed(item_id);
                vec![SessionUpdate::AgentMessageChunk(ContentChunk::new(text(
                    delta.as_str(),
                )))]
            }
            Event::ReasoningDelta { item_id, delta } => {
                self.mark_streamed(item_id);
                vec![SessionUpdate::AgentThoughtChunk(ContentChunk::new(text(
                    delta.as_str(),
                )))]
            }
            Event::CommandOutputDelta { item_id, .. } => {
                if self.running.insert(item_id.clone()) {
                    vec![status_update(item_id, ToolCallStatus::InProgress)]
                } else {
                    Vec::new()
                }
            }
            Event::InputAdded { input } => user_chunks(input),
            Event::ItemStarted { item } => started(item).into_iter().collect(),
            Event::ItemCompleted { item } => self.completed(item).into_iter().collect(),
            Event::PlanUpdated { plan: steps, .. } => vec![plan(steps)],
            Event::TokenUsage { last, .. } => match context_window {
                Some(size) => vec![SessionUpdate::UsageUpdate(UsageUpdate::new(
                    last.total_tokens,
                    size,
                ))],
                None => Vec::new(),
            },
            // Compaction is the agent's own housekeeping; ACP's compaction updates need a client
            // capability this agent does not ask about yet.
            Event::TurnStarted { .. }
            | Event::TurnCompleted { .. }
            | Event::Retrying { .. }
            | Event::ContextCompacted { .. }
            | Event::RateLimitsUpdated { .. } => Vec::new(),
        }
    }

    fn mark_streamed(&mut self, item_id: &str) {
        if !self.streamed.contains(item_id) {
            self.streamed.insert(item_id.to_string());
        }
    }

    fn completed(&mut self, item: &Item) -> Option<SessionUpdate> {
        match item {
            Item::AgentMessage { id, text: body } => (!self.streamed.remove(id)
                && !body.is_empty())
            .then(|| SessionUpdate::AgentMessageChunk(ContentChunk::new(text(body.as_str())))),
            Item::Reasoning { id, summary } => (!self.streamed.remove(id) && !summary.is_empty())
                .then(|| {
                    SessionUpdate::AgentThoughtChunk(ContentChunk::new(text(summary.join("\n\n"))))
                }),
            Item::CommandExecution {
                id,
                status,
                exit_code,
                output,
                duration_ms,
                ..
            } => {
                self.running.remove(id);
                let mut fields = ToolCallUpdateFields::new()
                    .status(tool_status(*status))
                    .raw_output(json!({
                        "exitCode": exit_code,
                        "output": output,
                        "durationMs": duration_ms,
                        "status": status,
                    }));
                if let Some(output) = output.as_deref().filter(|o| !o.is_empty()) {
                    fields = fields.content(vec![ToolCallContent::from(text(output))]);
                }
                Some(SessionUpdate::ToolCallUpdate(ToolCallUpdate::new(
                    id.clone(),
                    fields,
                )))
            }
            Item::FileChange { id, status, .. } => Some(status_update(id, tool_status(*status))),
            Item::ContextSummary { .. } => None,
            Item::McpToolCall {
                id,
                status,
                result,
                error,
                ..
            } => {
                let mut fields = ToolCallUpdateFields::new().status(tool_status(*status));
                if let Some(result) = result {
                    fields = fields
                        .content(result.content.iter().map(mcp_content).collect::<Vec<_>>())
                        .raw_output(serde_json::to_value(result).unwrap_or_default());
                } else if let Some(error) = error {
                    fields = fields
                        .content(vec![ToolCallContent::from(text(error.as_str()))])
                        .raw_output(json!({ "error": error }));
                }
                Some(SessionUpdate::ToolCallUpdate(ToolCallUpdate::new(
                    id.clone(),
                    fields,
                )))
            }
            Item::ToolCall {
                id, status, output, ..
            } => {
                let mut fields = ToolCallUpdateFields::new().status(tool_status(*status));
                if let Some(output) = output.as_deref().filter(|o| !o.is_empty()) {
                    fields = fields
                        .content(vec![ToolCallContent::from(text(output))])
                        .raw_output(Value::String(output.to_string()));
                }
                Some(SessionUpdate::ToolCallUpdate(ToolCallUpdate::new(
                    id.clone(),
                    fields,
                )))
            }
        }
    }
}

/// A stored turn as the updates a live turn sends (the `session/load` replay): its input as
/// `user_message_chunk`s, then each item as its start and its completion map: messages and
/// reasoning whole, tool calls as their `tool_call` and the `tool_call_update` with the final
/// status and content.
pub(crate) fn replay(turn: &Turn) -> Vec<SessionUpdate> {
    let mut translator = Translator::default();
    let mut updates = user_chunks(&turn.input);
    for item in &turn.items {
        updates.extend(started(item));
        updates.extend(translator.completed(item));
    }
    updates
}

/// A plan as its `plan` update.
pub(crate) fn plan(steps: &[PlanStep]) -> SessionUpdate {
    SessionUpdate::Plan(Plan::new(steps.iter().map(plan_entry).collect()))
}

fn status_update(id: &str, status: ToolCallStatus) -> SessionUpdate {
    SessionUpdate::ToolCallUpdate(ToolCallUpdate::new(
        id.to_string(),
        ToolCallUpdateFields::new().status(status),
    ))
}

fn tool_status(status: ItemStatus) -> ToolCallStatus {
    match status {
        ItemStatus::InProgress => ToolCallStatus::InProgress,
        ItemStatus::Completed => ToolCallStatus::Completed,
        ItemStatus::Failed | ItemStatus::Declined => ToolCallStatus::Failed,
    }
}

/// The `tool_call` an item's start becomes; messages and reasoning start silently.
fn started(item: &Item) -> Option<SessionUpdate> {
    let call = match item {
        Item::AgentMessage { .. } | Item::Reasoning { .. } | Item::ContextSummary { .. } => {
            return None;
        }
        Item::CommandExecution {
            id, command, cwd, ..
        } => ToolCall::new(id.clone(), command_title(command))
            .kind(ToolKind::Execute)
            .status(ToolCallStatus::Pending)
            .raw_input(json!({"command": command, "cwd": cwd})),
        Item::FileChange { id, changes, .. } => file_change_call(id, changes),
        Item::McpToolCall {
            id,
            server,
            tool,
            arguments,
            ..
        } => ToolCall::new(id.clone(), mcp_title(server, tool))
            .kind(ToolKind::Other)
            .status(ToolCallStatus::Pending)
            .raw_input(arguments.clone()),
        Item::ToolCall {
            id,
            name,
            arguments,
            ..
        } => ToolCall::new(id.clone(), name.clone())
            .kind(ToolKind::Other)
            .status(ToolCallStatus::Pending)
            .raw_input(
                serde_json::from_str::<Value>(arguments)
                    .unwrap_or_else(|_| Value::String(arguments.clone())),
            ),
    };
    Some(SessionUpdate::ToolCall(call))
}

/// How an MCP tool call is titled: the tool, and the server it belongs to.
pub(crate) fn mcp_title(server: &str, tool: &str) -> String {
    format!("{tool} ({server})")
}

/// An MCP content block as ACP content: ACP's blocks are MCP's, so most pass as they are; one
/// that does not parse is shown as its JSON text.
fn mcp_content(block: &Value) -> ToolCallContent {
    serde_json::from_value::<ContentBlock>(block.clone())
        .map(ToolCallContent::from)
        .unwrap_or_else(|_| ToolCallContent::from(text(block.to_string())))
}

/// A command line for people: the script of `bash -lc SCRIPT`, else the argv joined, with
/// arguments that hold spaces quoted.
pub(crate) fn command_title(command: &[String]) -> String {
    if let [shell, flag, script] = command
        && matches!(flag.as_str(), "-c" | "-lc")
        && shell
            .rsplit('/')
            .next()
            .is_some_and(|s| matches!(s, "bash" | "sh" | "zsh"))
    {
        return script.clone();
    }
    let parts: Vec<String> = command
        .iter()
        .map(|arg| {
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                format!("'{}'", arg.replace('\'', r"'\''"))
            } else {
                arg.clone()
            }
        })
        .collect();
    parts.join(" ")
}

fn file_change_call(id: &str, changes: &[FileChange]) -> ToolCall {
    let kind = if !changes.is_empty() && changes.iter().all(|c| c.kind == FileChangeKind::Delete) {
        ToolKind::Delete
    } else if changes.iter().any(|c| moved_from(c).is_some()) {
        ToolKind::Move
    } else {
        ToolKind::Edit
    };
    let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
    let verb = match kind {
        ToolKind::Delete => "Delete",
        ToolKind::Move => "Move",
        _ => "Edit",
    };
    let title = if paths.is_empty() {
        "apply_patch".to_string()
    } else {
        format!("{verb} {}", paths.join(", "))
    };
    ToolCall::new(id.to_string(), title)
        .kind(kind)
        .status(ToolCallStatus::Pending)
        .locations(paths.iter().map(|p| ToolCallLocation::new(*p)).collect())
        .content(changes.iter().map(diff_content).collect())
        .raw_input(json!({"changes": changes}))
}

/// The source of a moved file: the `--- a/…` side of its diff when it names another file.
fn moved_from(change: &FileChange) -> Option<&str> {
    let mut lines = change.diff.lines();
    let old = lines.next()?.strip_prefix("--- ")?;
    let new = lines.next()?.strip_prefix("+++ ")?;
    let old = old.strip_prefix("a/").unwrap_or(old);
    let new = new.strip_prefix("b/").unwrap_or(new);
    (old != "/dev/null" && new != "/dev/null" && old != new).then_some(old)
}

/// A file change as ACP diff content. ACP wants the old and new text; the item carries a unified
/// diff, so both are rebuilt from its hunks (context and removed lines, context and added
/// lines): the changed regions with their context, not the whole file.
fn diff_content(change: &FileChange) -> ToolCallContent {
    let mut old_text = String::new();
    let mut new_text = String::new();
    for line in change.diff.lines() {
        if line.starts_with("--- ") || line.starts_with("+++ ") || line.starts_with("@@") {
            continue;
        }
        if line.starts_with('\\') {
            // "\ No newline at end of file"
            continue;
        }
        if let Some(rest) = line.strip_prefix('-') {
            old_text.push_str(rest);
            old_text.push('\n');
        } else if let Some(rest) = line.strip_prefix('+') {
            new_text.push_str(rest);
            new_text.push('\n');
        } else {
            let rest = line.strip_prefix(' ').unwrap_or(line);
            old_text.push_str(rest);
            old_text.push('\n');
            new_text.push_str(rest);
            new_text.push('\n');
        }
    }
    let old = (change.kind != FileChangeKind::Add).then_some(old_text);
    ToolCallContent::Diff(Diff::new(change.path.as_str(), new_text).old_text(old))
}

/// User input as `user_message_chunk`s: text as text, images as images (a `data:` URL as its
/// data and MIME type, any other URL as an image with that `uri` and no data).
pub(crate) fn user_chunks(input: &[InputItem]) -> Vec<SessionUpdate> {
    input
        .iter()
        .map(|item| {
            let block = match item {
                InputItem::Text { text: body } => text(body.as_str()),
                InputItem::Image { url } => image_block(url),
                InputItem::LocalImage { path } => text(format!("[image: {path}]")),
            };
            SessionUpdate::UserMessageChunk(ContentChunk::new(block))
        })
        .collect()
}

fn image_block(url: &str) -> ContentBlock {
    if let Some((mime, data)) = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
    {
        return ContentBlock::Image(ImageContent::new(data, mime));
    }
    ContentBlock::Image(ImageContent::new("", "image/*").uri(url.to_string()))
}

fn plan_entry(step: &PlanStep) -> PlanEntry {
    let status = match step.status {
        PlanStepStatus::Pending => PlanEntryStatus::Pending,
        PlanStepStatus::InProgress => PlanEntryStatus::InProgress,
        PlanStepStatus::Completed => PlanEntryStatus::Completed,
    };
    PlanEntry::new(step.step.as_str(), PlanEntryPriority::Medium, status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_server_schema::session::Usage;
    use pretty_assertions::assert_eq;

    fn wire(updates: Vec<SessionUpdate>) -> Value {
        serde_json::to_value(updates).unwrap()
    }

    #[test]
    fn streamed_messages_are_not_repeated_and_unstreamed_ones_are_sent_whole() {
        let mut t = Translator::default();
        let delta = Event::AgentMessageDelta {
            item_id: "m1".into(),
            delta: "Hel".into(),
        };
        assert_eq!(
            wire(t.translate(&delta, None)),
            json!([{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"Hel"}}])
        );
        let done = |id: &str| Event::ItemCompleted {
            item: Box::new(Item::AgentMessage {
                id: id.into(),
                text: "Hello".into(),
            }),
        };
        assert_eq!(wire(t.translate(&done("m1"), None)), json!([]));
        assert_eq!(
            wire(t.translate(&done("m2"), None)),
            json!([{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"Hello"}}])
        );
    }

    #[test]
    fn a_command_is_a_tool_call_then_updates() {
        let mut t = Translator::default();
        let command = vec!["bash".to_string(), "-lc".to_string(), "touch x".to_string()];
        let start = Event::ItemStarted {
            item: Box::new(Item::CommandExecution {
                id: "call_1".into(),
                command: command.clone(),
                cwd: "/w".into(),
                status: ItemStatus::InProgress,
                exit_code: None,
                output: None,
                duration_ms: None,
            }),
        };
        assert_eq!(
            wire(t.translate(&start, None)),
            json!([{"sessionUpdate":"tool_call","toolCallId":"call_1","title":"touch x",
                "kind":"execute",
                "rawInput":{"command":["bash","-lc","touch x"],"cwd":"/w"}}])
        );
        let out = Event::CommandOutputDelta {
            item_id: "call_1".into(),
            stream: agent_server_schema::session::CommandStream::Stdout,
            delta: "a".into(),
        };
        assert_eq!(
            wire(t.translate(&out, None)),
            json!([{"sessionUpdate":"tool_call_update","toolCallId":"call_1","status":"in_progress"}])
        );
        assert_eq!(wire(t.translate(&out, None)), json!([]));
        let done = Event::ItemCompleted {
            item: Box::new(Item::CommandExecution {
                id: "call_1".into(),
                command,
                cwd: "/w".into(),
                status: ItemStatus::Completed,
                exit_code: Some(0),
                output: Some("a".into()),
                duration_ms: Some(3),
            }),
        };
        assert_eq!(
            wire(t.translate(&done, None)),
            json!([{"sessionUpdate":"tool_call_update","toolCallId":"call_1","status":"completed",
                "content":[{"type":"content","content":{"type":"text","text":"a"}}],
                "rawOutput":{"exitCode":0,"output":"a","durationMs":3,"status":"completed"}}])
        );
    }

    #[test]
    fn file_changes_become_diffs_with_their_kind() {
        let start = |changes: Vec<FileChange>| Event::ItemStarted {
            item: Box::new(Item::FileChange {
                id: "p1".into(),
                changes,
                status: ItemStatus::InProgress,
            }),
        };
        let update = FileChange {
            path: "/w/a.txt".into(),
            kind: FileChangeKind::Update,
            diff: "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+TWO\n".into(),
        };
        let mut t = Translator::default();
        assert_eq!(
            wire(t.translate(&start(vec![update]), None)),
            json!([{"sessionUpdate":"tool_call","toolCallId":"p1","title":"Edit /w/a.txt",
                "kind":"edit",
                "content":[{"type":"diff","path":"/w/a.txt","oldText":"one\ntwo\n","newText":"one\nTWO\n"}],
                "locations":[{"path":"/w/a.txt"}],
                "rawInput":{"changes":[{"path":"/w/a.txt","kind":"update",
                    "diff":"--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+TWO\n"}]}}])
        );
        let added = FileChange {
            path: "/w/n.txt".into(),
            kind: FileChangeKind::Add,
            diff: "--- /dev/null\n+++ b/n.txt\n@@ -0,0 +1 @@\n+hi\n".into(),
        };
        let call = &wire(t.translate(&start(vec![added]), None))[0];
        assert_eq!(
            call["content"],
            json!([{"type":"diff","path":"/w/n.txt","newText":"hi\n"}])
        );
        let deleted = FileChange {
            path: "/w/o.txt".into(),
            kind: FileChangeKind::Delete,
            diff: "--- a/o.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n".into(),
        };
        assert_eq!(
            wire(t.translate(&start(vec![deleted]), None))[0]["kind"],
            json!("delete")
        );
        let moved = FileChange {
            path: "/w/to.txt".into(),
            kind: FileChangeKind::Update,
            diff: "--- a/from.txt\n+++ b/to.txt\n@@ -1 +1 @@\n-a\n+b\n".into(),
        };
        assert_eq!(
            wire(t.translate(&start(vec![moved]), None))[0]["kind"],
            json!("move")
        );
    }

    #[test]
    fn a_stored_turn_replays_as_a_live_turn_maps_it() {
        let turn: Turn = serde_json::from_value(json!({
            "turnId": "t1", "status": "completed", "startedAt": "2026-01-01T00:00:00Z",
            "usage": Usage::default(),
            "input": [{"type": "text", "text": "list files"}],
            "items": [
                {"type": "reasoning", "id": "r1", "summary": ["Look first"]},
                {"type": "commandExecution", "id": "c1", "command": ["ls"], "cwd": "/w",
                    "status": "failed", "exitCode": 2, "output": "no such file", "durationMs": 4},
                {"type": "agentMessage", "id": "m1", "text": "It failed"},
            ],
        }))
        .unwrap();
        assert_eq!(
            wire(replay(&turn)),
            json!([
                {"sessionUpdate":"user_message_chunk","content":{"type":"text","text":"list files"}},
                {"sessionUpdate":"agent_thought_chunk","content":{"type":"text","text":"Look first"}},
                {"sessionUpdate":"tool_call","toolCallId":"c1","title":"ls","kind":"execute",
                    "rawInput":{"command":["ls"],"cwd":"/w"}},
                {"sessionUpdate":"tool_call_update","toolCallId":"c1","status":"failed",
                    "content":[{"type":"content","content":{"type":"text","text":"no such file"}}],
                    "rawOutput":{"exitCode":2,"output":"no such file","durationMs":4,"status":"failed"}},
                {"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"It failed"}},
            ])
        );
    }

    #[test]
    fn plans_and_usage() {
        let mut t = Translator::default();
        let plan = Event::PlanUpdated {
            explanation: None,
            plan: vec![PlanStep {
                step: "read".into(),
                status: PlanStepStatus::InProgress,
            }],
        };
        assert_eq!(
            wire(t.translate(&plan, None)),
            json!([{"sessionUpdate":"plan","entries":[
                {"content":"read","priority":"medium","status":"in_progress"}]}])
        );
        let usage = Event::TokenUsage {
            last: Usage {
                total_tokens: 120,
                ..Usage::default()
            },
            total: Usage::default(),
        };
        assert_eq!(
            wire(t.translate(&usage, Some(1000))),
            json!([{"sessionUpdate":"usage_update","used":120,"size":1000}])
        );
    }
}
