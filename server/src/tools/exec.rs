//! Running one command: its own process group, stdin closed, output streamed and kept bounded,
//! and no process of it left behind when it ends, times out, is cancelled, its future is
//! dropped or the server dies: SIGKILL to the whole group, and (see [`super::sandbox`]) a PID
//! namespace per command whose processes the kernel kills when the command exits, plus
//! `PR_SET_PDEATHSIG` tying the command to the server.
//!
//! The environment passed to commands is built from an allow-list ([`PASSED_ENV`] and `LC_*`)
//! rather than the server's own, so no credential of the server (`OPENAI_API_KEY`, a
//! `PGPASSWORD`, a `DATABASE_URL`) reaches a command.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use agent_server_schema::session::CommandStream;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::output::{HeadTail, Utf8Chunks};
use super::sandbox::{Confinement, SandboxError, SandboxPolicy};
use crate::process_group::ProcessGroup;

/// The exit code reported for a command killed at its timeout (as `timeout(1)` does).
pub const TIMEOUT_EXIT_CODE: i32 = 124;

/// How long to keep reading after the command's process group is gone, for processes that left
/// the group (`setsid`) but still hold its pipes. They are not waited for beyond this.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How long to wait for killed processes to disappear (be reaped by their parent or init).
const REAP_GRACE: Duration = Duration::from_secs(10);

/// Live output events stop after this many bytes per command, so a command printing without
/// end cannot flood the client; the kept output is bounded separately.
const MAX_STREAMED_BYTES: usize = 8 * 1024 * 1024;

/// The only variables of the server's environment passed to commands (with every `LC_*`);
/// `PWD` is set to the command's directory.
pub const PASSED_ENV: [&str; 12] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TERM",
    "COLORTERM",
    "TMPDIR",
    "TZ",
    "NO_COLOR",
];

/// What to run.
#[derive(Debug)]
pub struct ExecRequest<'a> {
    /// The argv; the program is looked up in `PATH`.
    pub argv: &'a [String],
    /// The working directory.
    pub cwd: &'a Path,
    /// When to kill it.
    pub timeout: Duration,
    /// How to confine it; `None` runs it unconfined.
    pub sandbox: Option<&'a SandboxPolicy>,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this code (128 + N when killed by signal N).
    Exited(i32),
    /// It ran past its timeout and was killed.
    TimedOut,
    /// The turn was interrupted and it was killed.
    Cancelled,
}

/// What a finished command produced.
#[derive(Debug)]
pub struct ExecOutput {
    /// How it ended.
    pub ending: Ending,
    /// stdout and stderr interleaved as read, bounded.
    pub output: HeadTail,
    /// From spawn to the end of its output.
    pub duration: Duration,
}

impl ExecOutput {
    /// The exit code to report: the real one, [`TIMEOUT_EXIT_CODE`] after a timeout, `None`
    /// when cancelled.
    pub fn exit_code(&self) -> Option<i32> {
        match self.ending {
            Ending::Exited(code) => Some(code),
            Ending::TimedOut => Some(TIMEOUT_EXIT_CODE),
            Ending::Cancelled => None,
        }
    }
}

/// Why a command did not run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The argv was empty.
    #[error("the command is empty; pass the program and its arguments as a list")]
    Empty,
    /// The sandbox could not be set up.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The program could not be started (not found, not executable, or the sandbox setup in the
    /// child failed).
    #[error(
        "could not start `{program}`{}: {source}",
        if *sandboxed { " in the sandbox" } else { "" }
    )]
    Spawn {
        /// The program.
        program: String,
        /// Whether it was to run confined (the confinement itself may have failed).
        sandboxed: bool,
        /// The error from the OS.
        source: std::io::Error,
    },
    /// Waiting for the command failed.
    #[error("lost track of `{program}`: {source}")]
    Wait {
        /// The program.
        program: String,
        /// The error from the OS.
        source: std::io::Error,
    },
}

/// Runs the command, calling `on_output` with each chunk of output as it is read.
pub async fn execute(
    request: ExecRequest<'_>,
    cancel: &CancellationToken,
    on_output: &mut (dyn FnMut(CommandStream, String) + Send),
) -> Result<ExecOutput, ExecError> {
    let Some(program) = request.argv.first() else {
        return Err(ExecError::Empty);
    };
    let confinement = match request.sandbox {
        Some(policy) => policy.prepare()?,
        None => Confinement::unconfined(),
    };
    let mut command = build_command(&request, &confinement);
    let started = Instant::now();
    let spawn_error = |source| ExecError::Spawn {
        program: program.clone(),
        sandboxed: confinement.confines(),
        source,
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    let group = ProcessGroup::new(child.id());
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(spawn_error(std::io::Error::other("no output pipes")));
    };
    // The confinement's fds are only needed until the child has exec'd.
    drop(confinement);
    let mut pump = Pump {
        output: HeadTail::default(),
        streamed: 0,
        decoders: [Utf8Chunks::default(), Utf8Chunks::default()],
        on_output,
    };
    let ending = pump
        .run(
            &mut child,
            &group,
            (stdout, stderr),
            request.timeout,
            cancel,
        )
        .await
        .map_err(|source| ExecError::Wait {
            program: program.clone(),
            source,
        })?;
    let (output, duration) = (pump.finish(), started.elapsed());
    reap(&group).await;
    Ok(ExecOutput {
        ending: ending.unwrap_or(Ending::Cancelled),
        output,
        duration,
    })
}

/// The command with its directory, pipes, process group, allow-listed environment and
/// confinement.
fn build_command(request: &ExecRequest<'_>, confinement: &Confinement) -> Command {
    let mut command = Command::new(&request.argv[0]);
    command
        .args(&request.argv[1..])
        .current_dir(request.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .env_clear()
        .envs(passed_env())
        .env("PWD", request.cwd);
    confinement.install(&mut command);
    command
}

/// The allow-listed part of the server's environment.
pub(crate) fn passed_env() -> impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os().filter(|(name, _)| {
        let name = name.to_string_lossy();
        PASSED_ENV.contains(&name.as_ref()) || name.starts_with("LC_")
    })
}

/// Reads a running command's output until it has ended and its pipes are closed.
struct Pump<'a> {
    output: HeadTail,
    streamed: usize,
    decoders: [Utf8Chunks; 2],
    on_output: &'a mut (dyn FnMut(CommandStream, String) + Send),
}

impl Pump<'_> {
    fn emit(&mut self, stream: CommandStream, text: String) {
        if text.is_empty() {
            return;
        }
        self.output.push(&text);
        if self.streamed < MAX_STREAMED_BYTES {
            self.streamed += text.len();
            (self.on_output)(stream, text);
        }
    }

    fn read(&mut self, index: usize, bytes: &[u8]) {
        let stream = [CommandStream::Stdout, CommandStream::Stderr][index];
        let text = self.decoders[index].decode(bytes);
        self.emit(stream, text);
    }

    /// The kept output, with what the decoders still held.
    fn finish(mut self) -> HeadTail {
        let tail_out = self.decoders[0].finish();
        self.emit(CommandStream::Stdout, tail_out);
        let tail_err = self.decoders[1].finish();
        self.emit(CommandStream::Stderr, tail_err);
        self.output
    }

    /// How the command ended. Reading stops [`DRAIN_GRACE`] after the end even when a process
    /// that escaped the group still holds the pipes.
    async fn run(
        &mut self,
        child: &mut tokio::process::Child,
        group: &ProcessGroup,
        (mut stdout, mut stderr): (tokio::process::ChildStdout, tokio::process::ChildStderr),
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> std::io::Result<Option<Ending>> {
        // A timeout too large to add is as good as none.
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        let (mut out_buf, mut err_buf) = (vec![0u8; 8192], vec![0u8; 8192]);
        let mut open = [true, true];
        let mut ending: Option<Ending> = None;
        let mut drain_until: Option<tokio::time::Instant> = None;
        while ending.is_none() || open[0] || open[1] {
            let ended = tokio::select! {
                read = stdout.read(&mut out_buf), if open[0] => {
                    match read {
                        Ok(n) if n > 0 => self.read(0, &out_buf[..n]),
                        _ => open[0] = false,
                    }
                    None
                }
                read = stderr.read(&mut err_buf), if open[1] => {
                    match read {
                        Ok(n) if n > 0 => self.read(1, &err_buf[..n]),
                        _ => open[1] = false,
                    }
                    None
                }
                status = child.wait(), if ending.is_none() => Some(Ending::Exited(exit_code(status?))),
                () = tokio::time::sleep_until(deadline), if ending.is_none() => Some(Ending::TimedOut),
                () = cancel.cancelled(), if ending.is_none() => Some(Ending::Cancelled),
                () = sleep_until_opt(drain_until), if drain_until.is_some() => {
                    tracing::warn!("a process that left the command's group keeps its output open; not waiting for it");
                    return Ok(ending);
                }
            };
            if let Some(end) = ended {
                // Background processes do not outlive the command; this also closes the pipes
                // they hold.
                group.kill();
                if !matches!(end, Ending::Exited(_)) {
                    let _ = child.wait().await;
                }
                ending = Some(end);
                drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
        }
        Ok(ending)
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Waits (at most [`REAP_GRACE`]) until no process of the command's group is left.
async fn reap(group: &ProcessGroup) {
    if !group.wait_gone(REAP_GRACE).await {
        tracing::warn!(pgid = ?group.id(), "processes of a killed command are still not reaped");
    }
}
