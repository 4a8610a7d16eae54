//! A model's call to an MCP tool: the `mcpToolCall` item, the approval the policy asks for,
//! the call itself (bounded by the tool timeout) and the output the model gets.

use std::time::Instant;

use agent_server_schema::mcp::McpToolCallResult;
use agent_server_schema::session::{ApprovalKind, Event, Item, ItemStatus};
use serde_json::{Map, Value};

use super::approval::{Answer, ask};
use super::decision::{Action, Decision, decide};
use super::output::truncate;
use super::{ApprovalRequest, McpApprovalDetails, ToolCall, ToolContext, ToolHost, ToolOutcome};
use crate::mcp::{McpManager, OfferedTool};

/// The most output of one MCP call the model gets; longer output is cut in the middle. Larger
/// than a command's, because MCP tools (docs, search) often exist to return text.
const MAX_MCP_OUTPUT_BYTES: usize = 64 * 1024;
/// Lines kept of one MCP call's output.
const MAX_MCP_OUTPUT_LINES: usize = 2_000;

/// The `mcpToolCall` item of one call, announced when made.
struct McpItem<'a> {
    call: &'a ToolCall,
    server: String,
    tool: String,
    arguments: Value,
    host: &'a dyn ToolHost,
}

impl McpItem<'_> {
    fn item(
        &self,
        status: ItemStatus,
        result: Option<McpToolCallResult>,
        error: Option<String>,
        duration_ms: Option<u64>,
    ) -> Item {
        Item::McpToolCall {
            id: self.call.call_id.clone(),
            server: self.server.clone(),
            tool: self.tool.clone(),
            arguments: self.arguments.clone(),
            status,
            result,
            error,
            duration_ms,
        }
    }

    fn started(&self) {
        let item = self.item(ItemStatus::InProgress, None, None, None);
        self.host.emit(Event::ItemStarted {
            item: Box::new(item),
        });
    }

    fn completed(&self, item: Item) {
        self.host.emit(Event::ItemCompleted {
            item: Box::new(item),
        });
    }

    /// Ends the item `failed` (or `declined`) with `error`, and tells the model `output`.
    fn failed(&self, status: ItemStatus, error: String, output: String) -> ToolOutcome {
        self.completed(self.item(status, None, Some(error), None));
        ToolOutcome::failed(output)
    }
}

/// Runs one call of an MCP tool. `offered` is `None` when the name matches no tool of this
/// turn. Never fails the turn: errors become a failed item and an output saying why.
pub async fn run(
    call: &ToolCall,
    offered: Option<&OfferedTool>,
    mcp: &McpManager,
    ctx: &ToolContext,
    host: &dyn ToolHost,
) -> ToolOutcome {
    let (server, tool) = match offered {
        Some(o) => (o.server.name().to_string(), o.tool.clone()),
        None => split_name(&call.name),
    };
    let parsed = parse_arguments(&call.arguments);
    let item = McpItem {
        call,
        server,
        tool,
        arguments: parsed
            .clone()
            .map(Value::Object)
            .unwrap_or_else(|_| Value::String(call.arguments.clone())),
        host,
    };
    item.started();
    let Some(offered) = offered else {
        let error = format!(
            "unknown MCP tool `{}`: no ready MCP server offers it in this turn",
            call.name
        );
        let output = format!("{error}. Use only the tools you were given.");
        return item.failed(ItemStatus::Failed, error, output);
    };
    let arguments = match parsed {
        Ok(arguments) => arguments,
        Err(error) => {
            let output = format!("invalid arguments for {}: {error}", call.name);
            return item.failed(ItemStatus::Failed, error, output);
        }
    };
    if let Some(outcome) = approve(&item, offered, ctx).await {
        return outcome;
    }
    let started = Instant::now();
    let result = mcp.call(offered, Some(arguments), &ctx.cancel).await;
    let duration_ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
    match result {
        Ok(result) => {
            let status = if result.is_error {
                ItemStatus::Failed
            } else {
                ItemStatus::Completed
            };
            let output = model_output(&result);
            item.completed(item.item(status, Some(result), None, duration_ms));
            ToolOutcome {
                output,
                success: status == ItemStatus::Completed,
                abort_turn: false,
            }
        }
        Err(error) => {
            let interrupted = ctx.cancel.is_cancelled();
            item.completed(item.item(ItemStatus::Failed, None, Some(error.clone()), duration_ms));
            ToolOutcome {
                output: format!("The MCP tool call failed: {error}"),
                success: false,
                abort_turn: interrupted,
            }
        }
    }
}

/// Asks the client when the policy says so; `Some` when the call must not go ahead.
async fn approve(
    item: &McpItem<'_>,
    offered: &OfferedTool,
    ctx: &ToolContext,
) -> Option<ToolOutcome> {
    let remembered = ctx.approvals.is_mcp_tool_approved(&item.server, &item.tool);
    let action = Action::ToolCall {
        read_only: offered.read_only,
    };
    match decide(ctx.approval_policy, ctx.sandbox, remembered, action) {
        Decision::Ask(_) => {}
        Decision::Run(_) | Decision::RunThenAskOnFailure => return None,
        Decision::Refuse => {
            let message = "The MCP tool call was refused by policy.".to_string();
            return Some(item.failed(ItemStatus::Declined, message.clone(), message));
        }
    }
    let request = ApprovalRequest {
        item_id: item.call.call_id.clone(),
        kind: ApprovalKind::McpToolCall,
        command: None,
        cwd: None,
        changes: None,
        reason: None,
        mcp: Some(McpApprovalDetails {
            server: item.server.clone(),
            tool: item.tool.clone(),
            arguments: item.arguments.clone(),
        }),
    };
    let answer = ask(ctx, item.host, request).await;
    if let Answer::Approved { for_session: true } = answer {
        ctx.approvals.approve_mcp_tool(&item.server, &item.tool);
    }
    let message = answer.declined_message("MCP tool call")?;
    let mut outcome = item.failed(ItemStatus::Declined, message.clone(), message);
    outcome.abort_turn = answer.aborts_turn();
    Some(outcome)
}

/// The arguments as a JSON object; an empty string counts as `{}`.
fn parse_arguments(text: &str) -> Result<Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "the arguments must be a JSON object, not {}",
            kind_of(&other)
        )),
        Err(err) => Err(format!("the arguments are not valid JSON ({err})")),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `mcp__server__tool` → (`server`, `tool`) for an unknown name, as well as it can be read.
fn split_name(name: &str) -> (String, String) {
    let rest = name.strip_prefix("mcp__").unwrap_or(name);
    match rest.split_once("__") {
        Some((server, tool)) => (server.to_string(), tool.to_string()),
        None => (String::new(), rest.to_string()),
    }
}

/// What the model is told: the text content, other content as JSON, the structured content
/// when there is nothing else, and an `isError` result said to be one.
fn model_output(result: &McpToolCallResult) -> String {
    let mut parts: Vec<String> = result
        .content
        .iter()
        .map(
            |block| match (block.get("type").and_then(Value::as_str), block.get("text")) {
                (Some("text"), Some(Value::String(text))) => text.clone(),
                _ => block.to_string(),
            },
        )
        .collect();
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    let text = truncate(
        &parts.join("\n"),
        MAX_MCP_OUTPUT_BYTES,
        MAX_MCP_OUTPUT_LINES,
    );
    if result.is_error {
        format!("The MCP tool reported an error:\n{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn the_model_gets_text_as_text_and_other_content_as_json() {
        let result = McpToolCallResult {
            content: vec![
                json!({"type": "text", "text": "first"}),
                json!({"type": "image", "data": "AA==", "mimeType": "image/png"}),
            ],
            structured_content: Some(json!({"answer": 42})),
            is_error: false,
        };
        // Non-text content is passed as its JSON, keys in the order the server sent them (the
        // build's serde_json keeps insertion order: the ACP SDK turns `preserve_order` on).
        let output = model_output(&result);
        let (text, json_part) = output.split_once('\n').unwrap();
        assert_eq!(text, "first");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(json_part).unwrap(),
            json!({"type": "image", "data": "AA==", "mimeType": "image/png"})
        );
        let only_structured = McpToolCallResult {
            content: vec![],
            structured_content: Some(json!({"answer": 42})),
            is_error: true,
        };
        assert_eq!(
            model_output(&only_structured),
            "The MCP tool reported an error:\n{\"answer\":42}"
        );
    }

    #[test]
    fn arguments_must_be_an_object() {
        assert_eq!(parse_arguments(""), Ok(Map::new()));
        assert_eq!(
            parse_arguments("{\"a\":1}"),
            Ok(Map::from_iter([("a".to_string(), json!(1))]))
        );
        assert_eq!(
            parse_arguments("[1]"),
            Err("the arguments must be a JSON object, not an array".to_string())
        );
        assert!(parse_arguments("{").is_err_and(|e| e.contains("not valid JSON")));
    }

    #[test]
    fn unknown_names_are_split_as_well_as_they_can_be() {
        assert_eq!(
            split_name("mcp__srv__do_it"),
            ("srv".to_string(), "do_it".to_string())
        );
        assert_eq!(split_name("mcp__odd"), (String::new(), "odd".to_string()));
    }
}
