//! The JSON Schema of the whole protocol, as one bundle file.
//!
//! The bundle holds every type under `$defs`, a root object whose properties name every type
//! (so code generators emit them all), and `x-methods`: each method and notification with its
//! direction and the schemas of its params and result. `schema/json/` holds the committed copy;
//! a test fails when it drifts from the Rust types.

use std::path::Path;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::methods::{Direction, visit_notifications, visit_requests};
use crate::rpc::{ErrorData, RpcError};

/// The file name of the bundle inside the output directory.
pub const BUNDLE_FILE: &str = "agent-server.schema.json";

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::ClientToServer => "clientToServer",
        Direction::ServerToClient => "serverToClient",
    }
}

/// Builds the bundle.
pub fn bundle() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let mut requests = Vec::new();
    visit_requests(|name, dir, types| {
        let (params, result) = types(&mut generator);
        requests.push(json!({
            "method": name,
            "direction": direction(dir),
            "params": params,
            "result": result,
        }));
    });
    let mut notifications = Vec::new();
    visit_notifications(|name, dir, types| {
        let params = types(&mut generator);
        notifications.push(json!({"method": name, "direction": direction(dir), "params": params}));
    });
    generator.subschema_for::<RpcError>();
    generator.subschema_for::<ErrorData>();
    let defs: Map<String, Value> = generator.take_definitions(true);
    let properties: Map<String, Value> = defs
        .keys()
        .map(|name| (name.clone(), json!({"$ref": format!("#/$defs/{name}")})))
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "AgentServerProtocol",
        "description": "The agent-server JSON-RPC protocol: every type, method and notification.",
        "x-protocolVersion": crate::PROTOCOL_VERSION,
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
        "x-methods": requests,
        "x-notifications": notifications,
        "$defs": defs,
    })
}

/// The bundle as the text written to disk (pretty, keys sorted, with a final newline). Keys are
/// sorted here rather than left to `serde_json::Map`, whose order depends on whether some crate
/// in the build enables serde_json's `preserve_order` (the ACP SDK does).
pub fn bundle_text() -> String {
    let mut text = serde_json::to_string_pretty(&sorted(bundle())).unwrap_or_default();
    text.push('\n');
    text
}

/// `value` with the keys of every object in sorted order.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Writes the bundle into `dir` (created if missing).
pub fn write(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(BUNDLE_FILE), bundle_text())
}
