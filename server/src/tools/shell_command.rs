//! `shell_command`: the shell tool shape taking one command string, which the user's login
//! shell runs as `<shell> -lc <command>`. The argv built here goes through exactly the same
//! path as a `shell` call (approvals, the safety classifier, the sandbox, the
//! `commandExecution` item, whose `command` is that argv).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::shell::ShellArgs;

/// Arguments of `shell_command`.
#[derive(Debug, Deserialize)]
pub(crate) struct ShellCommandArgs {
    command: String,
    #[serde(default)]
    workdir: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// What the model must send, for error messages.
pub(crate) const EXPECTED: &str =
    r#"{"command": string, "workdir"?: string, "timeout_ms"?: number}"#;

impl ShellCommandArgs {
    /// The `shell` arguments running this command in `shell` as a login shell.
    pub(crate) fn into_shell_args(self, shell: &Path) -> ShellArgs {
        let argv = vec![shell.display().to_string(), "-lc".to_owned(), self.command];
        ShellArgs::new(argv, self.workdir, self.timeout_ms)
    }
}

/// The user's login shell: `$SHELL` when it names an existing absolute path, else `/bin/bash`
/// when present, else `/bin/sh`.
pub fn login_shell() -> PathBuf {
    login_shell_from(std::env::var_os("SHELL").map(PathBuf::from))
}

fn login_shell_from(shell: Option<PathBuf>) -> PathBuf {
    if let Some(shell) = shell.filter(|s| s.is_absolute() && s.is_file()) {
        return shell;
    }
    let bash = PathBuf::from("/bin/bash");
    if bash.is_file() {
        bash
    } else {
        PathBuf::from("/bin/sh")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn runs_the_string_in_the_login_shell_with_lc() {
        let args: ShellCommandArgs =
            serde_json::from_str(r#"{"command":"ls -la | head","workdir":"sub","timeout_ms":5}"#)
                .unwrap();
        let shell = args.into_shell_args(Path::new("/bin/bash"));
        assert_eq!(
            format!("{shell:?}"),
            format!(
                "{:?}",
                ShellArgs::new(
                    vec!["/bin/bash".into(), "-lc".into(), "ls -la | head".into()],
                    Some("sub".into()),
                    Some(5)
                )
            )
        );
    }

    #[test]
    fn an_unusable_shell_variable_falls_back_to_bash_or_sh() {
        let fallback = if Path::new("/bin/bash").is_file() {
            "/bin/bash"
        } else {
            "/bin/sh"
        };
        for shell in [None, Some("zsh"), Some("/nonexistent/shell")] {
            assert_eq!(
                login_shell_from(shell.map(PathBuf::from)),
                PathBuf::from(fallback),
                "{shell:?}"
            );
        }
        assert_eq!(
            login_shell_from(Some(PathBuf::from("/bin/sh"))),
            PathBuf::from("/bin/sh")
        );
    }
}
