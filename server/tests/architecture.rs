//! The layering of `server/src`, checked: a module that imports one it must not see fails here.
//!
//! Data flows one way (see `lib.rs`). The rules, as `from ↛ to`:
//! - `rpc` is generic JSON-RPC: it imports none of the domain or the front doors;
//! - the domain (`session`, `auth`, `model`, `tools`, `store`, `mcp`) imports neither `rpc` nor a
//!   front door (`api`, `acp`), and `model` does not import `session`;
//! - the two front doors (`api`, `acp`) do not import each other;
//! - `transport` imports no `rpc`, and `config` none of the above;
//! - only `store/` names a database crate, only `mcp/` names `rmcp`, and only `acp/` names the
//!   ACP SDK (`agent_client_protocol`);
//! - the `schema` crate does not depend on the server.
//!
//! Every `crate::…` path is read (also inside `use crate::{a, b}` groups and in expressions),
//! and `super::` chains that climb out of a module are resolved, so an import cannot hide.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// `(from, to)`: code in module `from` must not name module `to`.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "rpc",
        &[
            "api", "acp", "session", "auth", "model", "tools", "store", "mcp",
        ],
    ),
    (
        "transport",
        &[
            "rpc", "api", "acp", "session", "auth", "model", "tools", "store", "mcp",
        ],
    ),
    (
        "config",
        &[
            "rpc", "api", "acp", "session", "auth", "model", "tools", "store", "mcp",
        ],
    ),
    ("session", &["rpc", "api", "acp"]),
    ("tools", &["rpc", "api", "acp", "session"]),
    ("auth", &["rpc", "api", "acp", "session"]),
    ("model", &["rpc", "api", "acp", "session", "tools"]),
    ("store", &["rpc", "api", "acp", "session"]),
    ("mcp", &["rpc", "api", "acp", "session"]),
    ("api", &["acp"]),
    ("acp", &["api"]),
];

/// `(crate name as written in code, the only module that may name it)`.
const CONFINED_CRATES: &[(&str, &str)] = &[
    ("rusqlite", "store"),
    ("sqlx", "store"),
    ("rmcp", "mcp"),
    ("agent_client_protocol", "acp"),
];

/// One offence: which file names which module it must not.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    to: String,
}

/// The module path of a file under `src/` (`session/turn.rs` → `["session", "turn"]`).
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs").to_string();
        if stem != "mod" && stem != "lib" && stem != "main" {
            parts.push(stem);
        }
    }
    parts
}

/// The code of a line without its `//` comment (string contents are kept; a `//` inside a
/// string only shortens what is checked).
fn code_of(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

fn ident_at(text: &str) -> Option<&str> {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    (end > 0).then(|| &text[..end])
}

/// The top-level modules a source file names, with the line of each mention.
fn named_modules(source: &str, module: &[String]) -> Vec<(usize, String)> {
    let code: Vec<&str> = source.lines().map(code_of).collect();
    let joined = code.join("\n");
    let line_of = |offset: usize| joined[..offset].matches('\n').count() + 1;
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = joined[at..].find("crate::") {
        let start = at + i;
        at = start + "crate::".len();
        // `agent_server_schema::crate::` does not exist; but `my_crate::` must not match.
        if joined[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        found.extend(
            heads_after(&joined[at..])
                .into_iter()
                .map(|(offset, head)| (line_of(at + offset), head)),
        );
    }
    let mut at = 0;
    while let Some(i) = joined[at..].find("super::") {
        let start = at + i;
        if joined[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
        {
            at = start + "super::".len();
            continue;
        }
        let mut depth = module.len();
        let mut rest = &joined[start..];
        while let Some(after) = rest.strip_prefix("super::") {
            depth = depth.saturating_sub(1);
            rest = after;
        }
        at = joined.len() - rest.len();
        if depth == 0 {
            found.extend(
                heads_after(rest)
                    .into_iter()
                    .map(|(offset, head)| (line_of(at + offset), head)),
            );
        }
    }
    found
}

/// The first path segments after `crate::`: one ident, or each item of a `{…}` group; each
/// with its offset in `rest`.
fn heads_after(rest: &str) -> Vec<(usize, String)> {
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 1;
        let mut heads = Vec::new();
        let mut item_start = true;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => {
                    item_start = true;
                    continue;
                }
                c if c.is_whitespace() => continue,
                _ => {}
            }
            if item_start && depth == 1 {
                if let Some(ident) = ident_at(&group[i..]) {
                    heads.push((i + 1, ident.to_string()));
                }
                item_start = false;
            }
        }
        heads
    } else {
        ident_at(rest)
            .map(|ident| (0, ident.to_string()))
            .into_iter()
            .collect()
    }
}

/// Checks one file's source against the rules.
fn check_source(file: &str, module: &[String], source: &str) -> Vec<Violation> {
    let Some(from) = module.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some((_, banned)) = FORBIDDEN.iter().find(|(m, _)| m == from) {
        for (line, to) in named_modules(source, module) {
            if banned.contains(&to.as_str()) {
                out.push(Violation {
                    file: file.to_string(),
                    line,
                    from: from.clone(),
                    to,
                });
            }
        }
    }
    for (krate, owner) in CONFINED_CRATES {
        if from == owner {
            continue;
        }
        for (n, line) in source.lines().enumerate() {
            let code = code_of(line);
            let mentions = code.match_indices(krate).any(|(i, _)| {
                let before = code[..i].chars().next_back();
                let after = code[i + krate.len()..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            if mentions {
                out.push(Violation {
                    file: file.to_string(),
                    line: n + 1,
                    from: from.clone(),
                    to: (*krate).to_string(),
                });
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn server_modules_import_only_downwards() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 50,
        "found only {} files under {}",
        files.len(),
        src.display()
    );
    let mut violations = BTreeSet::new();
    for path in files {
        let relative = path.strip_prefix(&src).unwrap_or(&path);
        let source = std::fs::read_to_string(&path).unwrap_or_default();
        let module = module_path(relative);
        violations.extend(check_source(
            &relative.display().to_string(),
            &module,
            &source,
        ));
    }
    assert!(
        violations.is_empty(),
        "imports across the layering rules (see this test's module doc):\n{}",
        violations
            .iter()
            .map(|v| format!("  {}:{}: {} must not use {}", v.file, v.line, v.from, v.to))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_schema_crate_does_not_depend_on_the_server() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("schema");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    assert!(manifest.contains("[package]"), "no schema/Cargo.toml");
    assert!(
        !manifest.contains("agent-server\"") && !manifest.contains("agent-server ="),
        "schema/Cargo.toml depends on the server"
    );
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for path in files {
        let source = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            !source.contains("agent_server::"),
            "{} names the server crate",
            path.display()
        );
    }
}

fn module(path: &str) -> Vec<String> {
    module_path(Path::new(path))
}

#[test]
fn the_checker_finds_every_form_of_import() {
    let source = "\
//! A session file that breaks the rules.
use crate::model::ModelClient;
use crate::{rpc::Peer, tools::{self, ToolCall}};
use crate::{
    gate::ReplyGate,
    api::App,
};
fn f() { let _ = crate::acp::serve(); } // crate::rpc in a comment is fine
use super::super::rpc::RpcError;
use super::items::Tracker;
";
    let found = check_source("session/turn.rs", &module("session/turn.rs"), source);
    let found: Vec<(usize, &str)> = found.iter().map(|v| (v.line, v.to.as_str())).collect();
    assert_eq!(found, vec![(3, "rpc"), (6, "api"), (8, "acp"), (9, "rpc")]);
    // The same imports are fine from the top of the crate.
    assert!(check_source("main.rs", &module("main.rs"), source).is_empty());
    let store_use = "use rusqlite::Connection;\nfn g() { rmcp::serve(); }\n";
    let found = check_source("session/mod.rs", &module("session/mod.rs"), store_use);
    let found: Vec<(usize, &str)> = found.iter().map(|v| (v.line, v.to.as_str())).collect();
    assert_eq!(found, vec![(1, "rusqlite"), (2, "rmcp")]);
    assert!(check_source("store/db.rs", &module("store/db.rs"), "use rusqlite::Row;").is_empty());
    let front_doors = "use crate::api::App;";
    assert_eq!(
        check_source("acp/mod.rs", &module("acp/mod.rs"), front_doors).len(),
        1
    );
}
