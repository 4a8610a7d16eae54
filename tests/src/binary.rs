//! Finding the `agent-server` binary and starting it with a scrubbed environment.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// The binary under test: `$AGENT_SERVER_BIN` when set, else `<workspace>/target/debug/agent-server`.
///
/// The tests crate cannot depend on a binary target, so the binary is built separately
/// (`cargo build -p agent-server`) and found here; a missing one is a setup error, not a failure.
pub fn server_bin() -> PathBuf {
    let path = match std::env::var_os("AGENT_SERVER_BIN") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("debug")
            .join("agent-server"),
    };
    if !path.is_file() {
        panic!(
            "no agent-server binary at {}: build it first: cargo build -p agent-server",
            path.display()
        );
    }
    path
}

/// A command for the binary with nothing inherited but `PATH` (and `RUST_LOG` when set), and
/// `HOME` pointing at `home`, so a developer's own credentials and config never leak into a test.
pub fn scrubbed_command(home: &Path) -> Command {
    scrubbed_program(&server_bin(), home)
}

/// Like [`scrubbed_command`] for another program (a wrapper that `exec`s the server).
pub(crate) fn scrubbed_program(program: &Path, home: &Path) -> Command {
    let mut command = Command::new(program);
    command.env_clear().env("HOME", home);
    for name in ["PATH", "RUST_LOG"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.kill_on_drop(true);
    command
}

/// Everything a finished run left behind.
#[derive(Debug)]
pub struct RunOutput {
    /// How the process ended.
    pub status: std::process::ExitStatus,
    /// All of stdout.
    pub stdout: String,
    /// All of stderr.
    pub stderr: String,
}

/// Runs the binary with `args` in a scrubbed environment (plus `env`), writes `input` to its
/// stdin, closes stdin, and collects everything it prints until it exits.
///
/// For tests that want to see the raw bytes a short run produces (`--version`, start-up
/// failures); conversations go through [`crate::TestServer`].
pub async fn run_to_end(
    home: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    input: &[u8],
) -> RunOutput {
    use tokio::io::AsyncWriteExt;

    let mut command = scrubbed_command(home);
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", server_bin().display()));
    let mut stdin = child
        .stdin
        .take()
        .unwrap_or_else(|| panic!("the child has no stdin pipe"));
    let input = input.to_vec();
    // Written from a task so a server that prints before reading cannot dead-lock the pipes.
    let writer = tokio::spawn(async move {
        // A server that exits early (e.g. on a bad config) closes the pipe; that is its right.
        let _ = stdin.write_all(&input).await;
    });
    let output = tokio::time::timeout(crate::DEFAULT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "agent-server {args:?} did not exit within {:?}",
                crate::DEFAULT_TIMEOUT
            )
        })
        .unwrap_or_else(|e| panic!("waiting for agent-server failed: {e}"));
    let _ = writer.await;
    RunOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
