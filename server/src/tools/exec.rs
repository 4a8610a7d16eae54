//! Running one command: its own process group, stdin closed, output streamed and kept bounded,
//! and no process of the group left behind when it ends, times out, is cancelled or its future
//! is dropped (SIGKILL to the whole group; background processes do not outlive the command).
//! Environment variables that look like credentials (`*KEY*`, `*SECRET*`, `*TOKEN*`) are not
//! passed on, so the server's own API key never reaches a command.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use agent_server_schema::session::CommandStream;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::output::{HeadTail, Utf8Chunks};
use super::sandbox::{SandboxError, SandboxPolicy};

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

/// Environment variables whose names contain one of these (case-insensitively) are not passed
/// to commands: they usually hold credentials, such as the server's own `OPENAI_API_KEY`.
const SECRET_ENV_MARKERS: [&str; 3] = ["KEY", "SECRET", "TOKEN"];

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
        None => None,
    };
    let mut command = Command::new(program);
    command
        .args(&request.argv[1..])
        .current_dir(request.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        let upper = name.to_string_lossy().to_uppercase();
        if SECRET_ENV_MARKERS.iter().any(|m| upper.contains(m)) {
            command.env_remove(&name);
        }
    }
    if let Some(confinement) = &confinement {
        confinement.install(&mut command);
    }

    let started = Instant::now();
    let spawn_error = |source| ExecError::Spawn {
        program: program.clone(),
        sandboxed: confinement.is_some(),
        source,
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    let group = ProcessGroup::new(child.id());
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(spawn_error(std::io::Error::other("no output pipes")));
    };
    // The confinement's fds are only needed until the child has exec'd.
    drop(confinement);

    let mut output = HeadTail::default();
    let mut streamed = 0usize;
    let mut decoders = [Utf8Chunks::default(), Utf8Chunks::default()];
    let mut emit = |stream: CommandStream, text: String, output: &mut HeadTail| {
        if text.is_empty() {
            return;
        }
        output.push(&text);
        if streamed < MAX_STREAMED_BYTES {
            streamed += text.len();
            on_output(stream, text);
        }
    };

    // A timeout too large to add is as good as none.
    let now = tokio::time::Instant::now();
    let deadline = now
        .checked_add(request.timeout)
        .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
    let mut stdout_buf = vec![0u8; 8192];
    let mut stderr_buf = vec![0u8; 8192];
    let (mut stdout_open, mut stderr_open) = (true, true);
    let mut ending: Option<Ending> = None;
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        if ending.is_some() && !stdout_open && !stderr_open {
            break;
        }
        tokio::select! {
            read = stdout.read(&mut stdout_buf), if stdout_open => match read {
                Ok(n) if n > 0 => {
                    let text = decoders[0].decode(&stdout_buf[..n]);
                    emit(CommandStream::Stdout, text, &mut output);
                }
                _ => stdout_open = false,
            },
            read = stderr.read(&mut stderr_buf), if stderr_open => match read {
                Ok(n) if n > 0 => {
                    let text = decoders[1].decode(&stderr_buf[..n]);
                    emit(CommandStream::Stderr, text, &mut output);
                }
                _ => stderr_open = false,
            },
            status = child.wait(), if ending.is_none() => {
                let status = status.map_err(|source| ExecError::Wait {
                    program: program.clone(),
                    source,
                })?;
                ending = Some(Ending::Exited(exit_code(status)));
                // Background processes do not outlive the command; this also closes the pipes
                // they hold.
                group.kill();
                drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            () = tokio::time::sleep_until(deadline), if ending.is_none() => {
                group.kill();
                let _ = child.wait().await;
                ending = Some(Ending::TimedOut);
                drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            () = cancel.cancelled(), if ending.is_none() => {
                group.kill();
                let _ = child.wait().await;
                ending = Some(Ending::Cancelled);
                drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            () = sleep_until_opt(drain_until), if drain_until.is_some() => {
                tracing::warn!(program = %program, "a process that left the command's group keeps its output open; not waiting for it");
                break;
            }
        }
    }
    let tail_out = decoders[0].finish();
    emit(CommandStream::Stdout, tail_out, &mut output);
    let tail_err = decoders[1].finish();
    emit(CommandStream::Stderr, tail_err, &mut output);
    let duration = started.elapsed();
    group.wait_gone().await;
    Ok(ExecOutput {
        ending: ending.unwrap_or(Ending::Cancelled),
        output,
        duration,
    })
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

/// The command's process group, killed as a whole, also when the future running the command is
/// dropped.
#[derive(Debug)]
pub(crate) struct ProcessGroup {
    pgid: Option<i32>,
}

impl ProcessGroup {
    fn new(pid: Option<u32>) -> Self {
        Self {
            pgid: pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0),
        }
    }

    /// SIGKILL to every process of the group.
    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            signal_group(pgid, libc::SIGKILL);
        }
    }

    /// Waits until no process of the group exists any more (see [`wait_group_gone`]).
    async fn wait_gone(&self) {
        if let Some(pgid) = self.pgid
            && !wait_group_gone(pgid).await
        {
            tracing::warn!(pgid, "processes of a killed command are still not reaped");
        }
    }
}

/// Kills group `pgid` until none of its processes exists any more, zombies included (their new
/// parent, usually init, reaps them; nothing signals that, so this polls), for at most
/// [`REAP_GRACE`]. Returns whether the group is gone.
pub(crate) async fn wait_group_gone(pgid: i32) -> bool {
    let give_up = Instant::now() + REAP_GRACE;
    let mut pause = Duration::from_millis(1);
    while group_exists(pgid) {
        if Instant::now() >= give_up {
            return false;
        }
        signal_group(pgid, libc::SIGKILL);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    true
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[allow(
    unsafe_code,
    reason = "kill(2) on a process group has no safe wrapper in std; it takes two integers"
)]
fn signal_group(pgid: i32, signal: i32) -> bool {
    // SAFETY: kill takes plain integers and touches no memory.
    unsafe { libc::kill(-pgid, signal) == 0 }
}

/// Whether any process (zombies included) is still in group `pgid`.
pub(crate) fn group_exists(pgid: i32) -> bool {
    signal_group(pgid, 0) || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}
