//! The tool specs sent to the model in the Responses `tools` array, in the shapes its family
//! was trained with: JSON function tools, or the freeform `apply_patch` (a `custom` tool with a
//! Lark grammar) and the one-string `shell_command`.

use serde_json::{Value, json};

use crate::config::{ApplyPatchTool, ShellTool};
use crate::model::ToolShapes;

/// The grammar of the patch envelope, as the model's sampler sees it (Lark syntax). It is
/// written for this server's parser (`patch/parser.rs`), which is more lenient than the
/// grammar: the grammar only keeps the model on the well-formed path.
pub const APPLY_PATCH_GRAMMAR: &str = r#"start: begin operation+ end
begin: "*** Begin Patch" LF
end: "*** End Patch" LF?

operation: add_file | delete_file | update_file
add_file: "*** Add File: " PATH LF added+
delete_file: "*** Delete File: " PATH LF
update_file: "*** Update File: " PATH LF rename? hunk+
rename: "*** Move to: " PATH LF

added: "+" TEXT? LF
hunk: hunk_header? change+ end_of_file?
hunk_header: "@@" (" " TEXT)? LF
change: (" " | "-" | "+") TEXT? LF
    | LF
end_of_file: "*** End of File" LF

PATH: /[^\r\n]+/
TEXT: /[^\r\n]+/

%import common.LF
"#;

/// The tool specs for `shapes`: the shell tool, `apply_patch` and `update_plan`.
pub fn tool_specs(shapes: ToolShapes) -> Vec<Value> {
    let shell = match shapes.shell {
        ShellTool::Shell => shell(),
        ShellTool::ShellCommand => shell_command(),
    };
    let patch = match shapes.apply_patch {
        ApplyPatchTool::Function => apply_patch(),
        ApplyPatchTool::Custom => apply_patch_custom(),
    };
    vec![shell, patch, update_plan()]
}

fn shell_command() -> Value {
    shell_function(
        "shell_command",
        "Runs a shell command and returns its exit code, wall time and combined stdout/stderr \
            (long output is cut in the middle). `command` is one string run by the user's \
            login shell (`<shell> -lc <command>`), so pipes, redirection and globs work.",
        json!({
            "type": "string",
            "description": "The shell script to run, e.g. \"ls -la | head\"."
        }),
    )
}

fn shell() -> Value {
    shell_function(
        "shell",
        "Runs a command and returns its exit code, wall time and combined stdout/stderr (long \
            output is cut in the middle). `command` is an argv list, run without a shell: use \
            [\"bash\", \"-lc\", \"<script>\"] for pipes, redirection or globs.",
        json!({
            "type": "array",
            "items": {"type": "string"},
            "description": "The program and its arguments, e.g. [\"ls\", \"-la\"]."
        }),
    )
}

/// What both shell tools tell the model after saying what `command` is.
const SHELL_GUIDANCE: &str = "The command runs in the session's working directory unless \
    `workdir` is given; stdin is closed, so never run anything interactive. Prefer `rg` over \
    `grep` and read files with `sed -n 'A,Bp' FILE` or `cat`. Do not edit files with shell \
    commands: use the apply_patch tool. The command may be sandboxed (no network, writes only \
    in the workspace) and may need the user's approval; if it is declined, do not retry it.";

/// A shell tool as a JSON function: `lead` says what it does and what `command` (whose
/// schema is `command`) is; `workdir` and `timeout_ms` are the same for both.
fn shell_function(name: &str, lead: &str, command: Value) -> Value {
    json!({
        "type": "function",
        "name": name,
        "description": format!("{lead} {SHELL_GUIDANCE}"),
        "strict": false,
        "parameters": {
            "type": "object",
            "properties": {
                "command": command,
                "workdir": {
                    "type": "string",
                    "description": "Directory to run in, relative to the session's working \
                        directory (default: that directory)."
                },
                "timeout_ms": {
                    "type": "number",
                    "description": "Kill the command after this many milliseconds (default: \
                        the session's shell timeout)."
                }
            },
            "required": ["command"],
            "additionalProperties": false
        }
    })
}

fn apply_patch_custom() -> Value {
    json!({
        "type": "custom",
        "name": "apply_patch",
        "description": "Creates, changes, moves and deletes text files. Send the patch itself \
            (no JSON), from `*** Begin Patch` to `*** End Patch`, paths relative to the \
            session's working directory. In an update, every line starts with ' ' (context), \
            '-' (remove) or '+' (add); give about 3 lines of context above and below each \
            change, copied exactly from the file, and start each hunk with an `@@` line (`@@ \
            <a line just above the change>` helps locate it). Add `*** End of File` after a \
            hunk that ends at the end of the file. Every line of an added file starts with \
            '+'. The patch is applied all or nothing: if a hunk does not match, nothing is \
            changed and the error says which lines were not found.",
        "format": {
            "type": "grammar",
            "syntax": "lark",
            "definition": APPLY_PATCH_GRAMMAR
        }
    })
}

fn apply_patch() -> Value {
    json!({
        "type": "function",
        "name": "apply_patch",
        "description": "Creates, changes, moves and deletes text files. `input` is a patch in \
            this format (paths relative to the session's working directory):\n\
            *** Begin Patch\n\
            *** Add File: path/new.txt\n\
            +first line of the new file\n\
            +second line\n\
            *** Update File: path/existing.py\n\
            *** Move to: path/renamed.py   (optional, only to rename)\n\
            @@ def some_function():        (a line just above the change, to locate it)\n\
            \x20    unchanged context line\n\
            -    line to remove\n\
            +    line to add\n\
            \x20    unchanged context line\n\
            *** Delete File: path/obsolete.txt\n\
            *** End Patch\n\
            In an update, every line starts with ' ' (context), '-' (remove) or '+' (add); give \
            about 3 lines of context above and below each change, copied exactly from the \
            file, and start each further hunk with another `@@` line. Add `*** End of File` \
            after a hunk that ends at the end of the file. Every line of an added file starts \
            with '+'. The patch is applied all or nothing: if a hunk does not match, nothing \
            is changed and the error says which lines were not found.",
        "strict": false,
        "parameters": {
            "type": "object",
            "properties": {
                "input": {
                    "type": "string",
                    "description": "The whole patch, from `*** Begin Patch` to `*** End Patch`."
                }
            },
            "required": ["input"],
            "additionalProperties": false
        }
    })
}

fn update_plan() -> Value {
    json!({
        "type": "function",
        "name": "update_plan",
        "description": "Shows the user your plan for the task as a list of short steps and \
            their status, and updates it as you go. Send the whole plan each time. Keep at \
            most one step in_progress; mark steps completed as soon as they are done. Skip \
            the plan for simple tasks.",
        "strict": false,
        "parameters": {
            "type": "object",
            "properties": {
                "explanation": {
                    "type": "string",
                    "description": "Why the plan changed (optional)."
                },
                "plan": {
                    "type": "array",
                    "description": "The steps, in order.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "step": {"type": "string", "description": "What the step does."},
                            "status": {
                                "type": "string",
                                "enum": ["pending", "in_progress", "completed"]
                            }
                        },
                        "required": ["step", "status"],
                        "additionalProperties": false
                    }
                }
            },
            "required": ["plan"],
            "additionalProperties": false
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn shapes_of(specs: &[Value]) -> Vec<(String, String)> {
        specs
            .iter()
            .map(|s| {
                (
                    s["type"].as_str().unwrap_or_default().to_owned(),
                    s["name"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn the_codex_shapes_are_a_custom_patch_tool_and_shell_command() {
        let specs = tool_specs(ToolShapes::CODEX);
        assert_eq!(
            shapes_of(&specs),
            vec![
                ("function".into(), "shell_command".into()),
                ("custom".into(), "apply_patch".into()),
                ("function".into(), "update_plan".into()),
            ]
        );
        assert_eq!(
            specs[1]["format"],
            json!({"type": "grammar", "syntax": "lark", "definition": APPLY_PATCH_GRAMMAR})
        );
        assert_eq!(
            specs[0]["parameters"]["properties"]["command"]["type"],
            "string"
        );
    }

    #[test]
    fn every_function_spec_is_a_named_function_with_an_object_schema() {
        let summary: Vec<(String, String, Value)> = tool_specs(ToolShapes::FUNCTIONS)
            .into_iter()
            .map(|s| {
                (
                    s["type"].as_str().unwrap_or_default().to_owned(),
                    s["name"].as_str().unwrap_or_default().to_owned(),
                    s["parameters"]["required"].clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("function".into(), "shell".into(), json!(["command"])),
                ("function".into(), "apply_patch".into(), json!(["input"])),
                ("function".into(), "update_plan".into(), json!(["plan"])),
            ]
        );
    }
}
