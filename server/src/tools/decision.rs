//! The approval decision: one pure function of the policy, the sandbox mode, what the session
//! remembered and what is known about the action, shared by every tool that acts (commands,
//! file changes, and calls of external tools that declare whether they only read).
//!
//! | policy      | command                                    | file change                                   | external tool call         |
//! |-------------|--------------------------------------------|-----------------------------------------------|----------------------------|
//! | `untrusted` | known safe or remembered: run; else ask, then run (sandboxed unless dangerFullAccess) | outside the sandbox: refuse; remembered: write; else ask | read-only hint or remembered: run; else ask |
//! | `onFailure` | remembered or dangerFullAccess: run unsandboxed; else run sandboxed and ask to re-run unsandboxed when that fails | outside the sandbox and not remembered: ask (then write there); else write | run |
//! | `never`     | run (sandboxed unless dangerFullAccess)    | outside the sandbox: refuse; else write        | run                        |

use agent_server_schema::session::{ApprovalPolicy, SandboxMode};

/// What is about to happen, with what the tool knows about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A command; `known_safe` when the classifier knows it only reads ([`super::safety`]).
    Command {
        /// Known read-only.
        known_safe: bool,
    },
    /// A file change; `outside_sandbox` when some path it writes is outside what the sandbox
    /// lets the server write (real paths).
    FileChange {
        /// Writes outside the sandbox's bounds.
        outside_sandbox: bool,
    },
    /// A call of an external tool (e.g. an MCP server's), which no sandbox confines;
    /// `read_only` when the tool declares that it does not modify anything.
    ToolCall {
        /// The tool's read-only hint.
        read_only: bool,
    },
}

/// Whether the action runs inside the sandbox's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounds {
    /// Within the sandbox (commands confined; file writes only inside the writable roots).
    Sandboxed,
    /// Without the sandbox (dangerFullAccess, or approved to run or write outside it).
    Unsandboxed,
}

/// What the tool does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead without asking.
    Run(Bounds),
    /// Ask the client first; if approved, go ahead.
    Ask(Bounds),
    /// Run sandboxed; if the sandbox made it fail, ask to run it again unsandboxed.
    RunThenAskOnFailure,
    /// Do not do it: the policy forbids it without asking.
    Refuse,
}

/// The decision. `remembered`: the session approved this action earlier (`approveForSession`).
pub fn decide(
    policy: ApprovalPolicy,
    sandbox: SandboxMode,
    remembered: bool,
    action: Action,
) -> Decision {
    let confined = if sandbox == SandboxMode::DangerFullAccess {
        Bounds::Unsandboxed
    } else {
        Bounds::Sandboxed
    };
    match (policy, action) {
        (ApprovalPolicy::Untrusted, Action::Command { known_safe }) => {
            if known_safe || remembered {
                Decision::Run(confined)
            } else {
                Decision::Ask(confined)
            }
        }
        (ApprovalPolicy::OnFailure, Action::Command { .. }) => {
            if remembered || confined == Bounds::Unsandboxed {
                Decision::Run(Bounds::Unsandboxed)
            } else {
                Decision::RunThenAskOnFailure
            }
        }
        (ApprovalPolicy::Never, Action::Command { .. }) => Decision::Run(confined),
        (
            ApprovalPolicy::Untrusted | ApprovalPolicy::Never,
            Action::FileChange { outside_sandbox },
        ) if outside_sandbox => Decision::Refuse,
        (ApprovalPolicy::Untrusted, Action::FileChange { .. }) => {
            if remembered {
                Decision::Run(Bounds::Sandboxed)
            } else {
                Decision::Ask(Bounds::Sandboxed)
            }
        }
        (ApprovalPolicy::OnFailure, Action::FileChange { outside_sandbox }) => {
            match (outside_sandbox, remembered) {
                (false, _) => Decision::Run(Bounds::Sandboxed),
                (true, true) => Decision::Run(Bounds::Unsandboxed),
                (true, false) => Decision::Ask(Bounds::Unsandboxed),
            }
        }
        (ApprovalPolicy::Never, Action::FileChange { .. }) => Decision::Run(Bounds::Sandboxed),
        (ApprovalPolicy::Untrusted, Action::ToolCall { read_only }) => {
            if read_only || remembered {
                Decision::Run(Bounds::Unsandboxed)
            } else {
                Decision::Ask(Bounds::Unsandboxed)
            }
        }
        (ApprovalPolicy::OnFailure | ApprovalPolicy::Never, Action::ToolCall { .. }) => {
            Decision::Run(Bounds::Unsandboxed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ApprovalPolicy::{Never, OnFailure, Untrusted};
    use Bounds::{Sandboxed as S, Unsandboxed as U};
    use Decision::{Ask, Refuse, Run, RunThenAskOnFailure};
    use SandboxMode::{DangerFullAccess as Full, ReadOnly as Ro, WorkspaceWrite as Ws};
    use pretty_assertions::assert_eq;

    const fn cmd(known_safe: bool) -> Action {
        Action::Command { known_safe }
    }
    const fn file(outside_sandbox: bool) -> Action {
        Action::FileChange { outside_sandbox }
    }
    const fn tool(read_only: bool) -> Action {
        Action::ToolCall { read_only }
    }

    #[test]
    fn decides_as_the_table_says() {
        // (policy, sandbox, remembered, action) → decision
        let table = [
            // Commands.
            (Untrusted, Ws, false, cmd(false), Ask(S)),
            (Untrusted, Ro, false, cmd(false), Ask(S)),
            (Untrusted, Full, false, cmd(false), Ask(U)),
            (Untrusted, Ws, false, cmd(true), Run(S)),
            (Untrusted, Full, false, cmd(true), Run(U)),
            (Untrusted, Ws, true, cmd(false), Run(S)),
            (OnFailure, Ws, false, cmd(false), RunThenAskOnFailure),
            (OnFailure, Ro, false, cmd(true), RunThenAskOnFailure),
            (OnFailure, Ws, true, cmd(false), Run(U)),
            (OnFailure, Full, false, cmd(false), Run(U)),
            (Never, Ws, false, cmd(false), Run(S)),
            (Never, Ro, true, cmd(false), Run(S)),
            (Never, Full, false, cmd(false), Run(U)),
            // File changes.
            (Untrusted, Ws, false, file(false), Ask(S)),
            (Untrusted, Ws, true, file(false), Run(S)),
            (Untrusted, Ws, true, file(true), Refuse),
            (Untrusted, Ro, false, file(true), Refuse),
            (Untrusted, Full, false, file(false), Ask(S)),
            (OnFailure, Ws, false, file(false), Run(S)),
            (OnFailure, Ws, false, file(true), Ask(U)),
            (OnFailure, Ro, true, file(true), Run(U)),
            (Never, Ws, false, file(false), Run(S)),
            (Never, Ws, true, file(true), Refuse),
            (Never, Ro, false, file(true), Refuse),
            // External tool calls.
            (Untrusted, Ws, false, tool(false), Ask(U)),
            (Untrusted, Ws, false, tool(true), Run(U)),
            (Untrusted, Ws, true, tool(false), Run(U)),
            (OnFailure, Ws, false, tool(false), Run(U)),
            (Never, Ro, false, tool(false), Run(U)),
        ];
        let got: Vec<_> = table
            .iter()
            .map(|&(p, s, r, a, _)| (p, s, r, a, decide(p, s, r, a)))
            .collect();
        assert_eq!(got, table.to_vec());
    }
}
