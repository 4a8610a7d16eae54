//! The `<environment_context>` message: where the agent works and what it may do.

use std::path::{Path, PathBuf};

use agent_server_schema::session::{ApprovalPolicy, SandboxMode};

/// The first line of the environment message, by which it is recognised.
pub const MESSAGE_PREFIX: &str = "<environment_context>";

/// The settings the environment message describes; a change in any of them resends it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Environment {
    /// The session cwd.
    pub cwd: PathBuf,
    /// When the user is asked.
    pub approval_policy: ApprovalPolicy,
    /// What commands may touch.
    pub sandbox: SandboxMode,
}

impl Environment {
    /// The message text, with policy and sandbox in their wire spellings.
    pub fn message_text(&self, shell: &str) -> String {
        let network = match self.sandbox {
            SandboxMode::DangerFullAccess => "enabled",
            SandboxMode::ReadOnly | SandboxMode::WorkspaceWrite => "restricted",
        };
        format!(
            "{MESSAGE_PREFIX}\n  <cwd>{}</cwd>\n  <approval_policy>{}</approval_policy>\n  <sandbox_mode>{}</sandbox_mode>\n  <network_access>{network}</network_access>\n  <shell>{}</shell>\n</environment_context>",
            escape(&self.cwd.display().to_string()),
            policy_name(self.approval_policy),
            sandbox_name(self.sandbox),
            escape(shell),
        )
    }
}

fn policy_name(policy: ApprovalPolicy) -> &'static str {
    match policy {
        ApprovalPolicy::Untrusted => "untrusted",
        ApprovalPolicy::OnFailure => "onFailure",
        ApprovalPolicy::Never => "never",
    }
}

fn sandbox_name(sandbox: SandboxMode) -> &'static str {
    match sandbox {
        SandboxMode::ReadOnly => "readOnly",
        SandboxMode::WorkspaceWrite => "workspaceWrite",
        SandboxMode::DangerFullAccess => "dangerFullAccess",
    }
}

/// A directory name may hold `<` or `&`; escaped, it cannot close the tag early.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The name of the user's login shell: the last component of `$SHELL`, else `bash`.
pub fn login_shell_name(shell_var: Option<&str>) -> String {
    shell_var
        .map(Path::new)
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .filter(|name| !name.is_empty())
        .unwrap_or("bash")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_message_uses_wire_spellings_and_says_whether_the_network_is_on() {
        let env = Environment {
            cwd: PathBuf::from("/work/a<b>&c"),
            approval_policy: ApprovalPolicy::OnFailure,
            sandbox: SandboxMode::WorkspaceWrite,
        };
        assert_eq!(
            env.message_text("zsh"),
            "<environment_context>\n  <cwd>/work/a&lt;b&gt;&amp;c</cwd>\n  <approval_policy>onFailure</approval_policy>\n  <sandbox_mode>workspaceWrite</sandbox_mode>\n  <network_access>restricted</network_access>\n  <shell>zsh</shell>\n</environment_context>"
        );
        let open = Environment {
            sandbox: SandboxMode::DangerFullAccess,
            approval_policy: ApprovalPolicy::Never,
            ..env
        };
        let text = open.message_text("bash");
        assert!(
            text.contains("<network_access>enabled</network_access>")
                && text.contains("<sandbox_mode>dangerFullAccess</sandbox_mode>")
                && text.contains("<approval_policy>never</approval_policy>"),
            "{text}"
        );
    }

    #[test]
    fn the_shell_is_named_by_the_last_component_of_shell() {
        assert_eq!(login_shell_name(Some("/usr/bin/fish")), "fish");
        assert_eq!(login_shell_name(Some("")), "bash");
        assert_eq!(login_shell_name(None), "bash");
    }
}
