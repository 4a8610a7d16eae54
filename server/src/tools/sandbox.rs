//! The sandbox commands run in, and where patches may write.
//!
//! What each mode guarantees for a command (and every process it starts):
//!
//! - `readOnly`: it can read and execute any file the server can, write no file or directory
//!   anywhere (except the devices `/dev/null`, `/dev/zero`, `/dev/full`), and open no network
//!   socket (`AF_INET`/`AF_INET6`), not even to `127.0.0.1`. Patches are refused.
//! - `workspaceWrite`: as `readOnly`, but it may create, change, rename and delete files under
//!   the session cwd and the temp dir (`$TMPDIR`, else `/tmp`). Patches may write there only.
//! - `dangerFullAccess`: no confinement at all; patches may write anywhere.
//!
//! How (Linux only): between `fork` and `exec` the child restricts itself, and the restriction
//! is inherited by everything it starts and cannot be lifted.
//! - Files: Landlock (ABI v3 or later, Linux ≥ 6.2, required in full: writes, renames, links,
//!   truncation are all governed) with read and execute rights everywhere and all rights
//!   under the writable roots. `no_new_privs` is set, so setuid programs cannot regain rights.
//! - Network: a new, empty network namespace (`unshare(CLONE_NEWNET)`, preceded by
//!   `CLONE_NEWUSER` when the server is not root, with the uid and gid mapped to themselves, so
//!   files keep their owner). Where namespaces are not allowed (e.g. in some containers), a
//!   seccomp filter makes `socket(AF_INET|AF_INET6|AF_PACKET)` and `io_uring_setup` fail with
//!   `EPERM` instead. Unix sockets keep working either way.
//!
//! When the kernel cannot enforce a mode in full (no Landlock, an older ABI, or neither
//! network isolation works), the command is not run: the model gets an error naming the cause.
//! Nothing ever runs with less confinement than its mode promises, except when the user
//! approves re-running it without the sandbox under the `onFailure` policy.

use std::path::{Path, PathBuf};

use super::patch::nofollow::real_path;

use agent_server_schema::session::SandboxMode;

/// Why a command could not be confined as its sandbox mode requires.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The kernel cannot enforce the mode (Landlock missing or too old).
    #[error(
        "the {mode} sandbox cannot be enforced on this system ({reason}); the command was not \
         run. It needs Linux 6.2 or later with Landlock enabled, or the sandbox mode \
         dangerFullAccess"
    )]
    Unsupported {
        /// The mode, as on the wire.
        mode: &'static str,
        /// What is missing.
        reason: String,
    },
    /// A writable root could not be opened for the rules.
    #[error("could not prepare the sandbox: cannot open {path}: {reason}")]
    Root {
        /// The directory.
        path: String,
        /// The error.
        reason: String,
    },
}

/// How the child cuts itself off the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NetIsolation {
    /// A new network namespace; a seccomp filter where namespaces are not allowed.
    NamespaceElseSeccomp,
    /// Only the seccomp filter (used by tests to exercise the fallback).
    #[cfg_attr(not(test), allow(dead_code, reason = "selected by tests only"))]
    Seccomp,
}

/// The confinement of one sandbox mode for one session cwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPolicy {
    mode: SandboxMode,
    writable_roots: Vec<PathBuf>,
    net: NetIsolation,
}

impl SandboxPolicy {
    /// The policy of `mode` for a session in `cwd`.
    pub fn new(mode: SandboxMode, cwd: &Path) -> Self {
        let writable_roots = match mode {
            SandboxMode::ReadOnly | SandboxMode::DangerFullAccess => Vec::new(),
            SandboxMode::WorkspaceWrite => vec![cwd.to_path_buf(), std::env::temp_dir()],
        };
        Self {
            mode,
            writable_roots,
            net: NetIsolation::NamespaceElseSeccomp,
        }
    }

    /// A policy with explicit writable roots (tests use it to leave the temp dir out).
    #[cfg(test)]
    pub(crate) fn with_roots(mode: SandboxMode, roots: Vec<PathBuf>, net: NetIsolation) -> Self {
        Self {
            mode,
            writable_roots: roots,
            net,
        }
    }

    /// The mode.
    pub fn mode(&self) -> SandboxMode {
        self.mode
    }

    /// Whether commands run confined at all.
    pub fn confines(&self) -> bool {
        self.mode != SandboxMode::DangerFullAccess
    }

    /// Whether the server may write `path` on the model's behalf (patches) under this mode.
    /// Symlinks in the existing part of the path are resolved first, so a link inside the cwd
    /// pointing outside it does not count as inside.
    pub fn allows_write(&self, path: &Path) -> bool {
        match self.mode {
            SandboxMode::DangerFullAccess => true,
            SandboxMode::ReadOnly => false,
            SandboxMode::WorkspaceWrite => {
                let real = real_path(path);
                self.writable_roots
                    .iter()
                    .any(|root| real.starts_with(real_path(root)))
            }
        }
    }

    /// Opens what the child needs (the Landlock ruleset) in the parent, where allocating and
    /// failing are safe, and checks that the kernel enforces all of it.
    #[cfg(target_os = "linux")]
    pub(crate) fn prepare(&self) -> Result<Confinement, SandboxError> {
        if !self.confines() {
            return Ok(Confinement::unconfined());
        }
        let ruleset = landlock_rules::build(&self.writable_roots).map_err(|e| match e {
            landlock_rules::Error::Unsupported(reason) => SandboxError::Unsupported {
                mode: mode_name(self.mode),
                reason,
            },
            landlock_rules::Error::Root { path, reason } => SandboxError::Root { path, reason },
        })?;
        let c_path = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok();
        let roots: Vec<PathBuf> = self.writable_roots.iter().map(|r| real_path(r)).collect();
        // The home stays visible when a writable root is inside it (covering it would hide the
        // workspace too); BEHAVIOUR.md says so.
        let hidden = agent_home()
            .filter(|home| !roots.iter().any(|r| r.starts_with(home)))
            .and_then(c_path);
        let confine = child::Confine {
            ruleset,
            net: self.net,
            roots: roots.iter().filter_map(|r| c_path(r)).collect(),
            hidden,
        };
        Ok(Confinement {
            confines: true,
            child: child::Plan::new(Some(confine)),
        })
    }

    /// Elsewhere than on Linux nothing can be confined, so confined modes refuse to run.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn prepare(&self) -> Result<Confinement, SandboxError> {
        if !self.confines() {
            return Ok(Confinement::unconfined());
        }
        Err(SandboxError::Unsupported {
            mode: mode_name(self.mode),
            reason: "the sandbox is implemented on Linux only".to_owned(),
        })
    }
}

/// The agent's home (auth.json, sessions, config), hidden from confined commands and never
/// named by an auto-approved one. Set once at start-up.
static AGENT_HOME: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Records the agent home (its real path) for the whole process; later calls are ignored.
pub fn protect_agent_home(home: &Path) {
    let _ = AGENT_HOME.set(real_path(home));
}

/// The agent home, when recorded.
pub fn agent_home() -> Option<&'static Path> {
    AGENT_HOME.get().map(PathBuf::as_path)
}

/// Makes the server process not dumpable: its `/proc/<pid>` entries (environ with the API key,
/// mem, fds) then belong to root and need `CAP_SYS_PTRACE` to read, which no confined command
/// has. Programs the server executes become dumpable again (execve resets it).
pub fn make_server_unreadable() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

/// The mode as on the wire.
pub(crate) fn mode_name(mode: SandboxMode) -> &'static str {
    match mode {
        SandboxMode::ReadOnly => "readOnly",
        SandboxMode::WorkspaceWrite => "workspaceWrite",
        SandboxMode::DangerFullAccess => "dangerFullAccess",
    }
}

/// What a child process applies to itself before `exec`: for every command, that it dies with
/// the server and (where a PID namespace can be had) that its descendants die with it; for
/// confined commands, the confinement of their mode.
#[derive(Debug)]
pub(crate) struct Confinement {
    confines: bool,
    #[cfg(target_os = "linux")]
    child: child::Plan,
}

impl Confinement {
    /// No confinement; only the process lifetime rules.
    pub(crate) fn unconfined() -> Self {
        Self {
            confines: false,
            #[cfg(target_os = "linux")]
            child: child::Plan::new(None),
        }
    }

    /// Whether the command runs confined.
    pub(crate) fn confines(&self) -> bool {
        self.confines
    }

    /// Makes the command's child confine itself before it executes the program.
    pub(crate) fn install(&self, command: &mut tokio::process::Command) {
        #[cfg(target_os = "linux")]
        self.child.install(command);
        #[cfg(not(target_os = "linux"))]
        let _ = command;
    }
}

/// Landlock rules built in the parent.
#[cfg(target_os = "linux")]
mod landlock_rules {
    use std::os::fd::OwnedFd;
    use std::path::PathBuf;

    use landlock::{
        ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
        RulesetCreatedAttr, Scope,
    };

    /// ABI v3 is the first to govern truncation; with v1 or v2 a confined process could still
    /// empty files it may not write.
    const ABI_REQUIRED: ABI = ABI::V3;

    /// Devices anyone may write, as programs expect.
    const WRITABLE_DEVICES: [&str; 3] = ["/dev/null", "/dev/zero", "/dev/full"];

    pub(super) enum Error {
        Unsupported(String),
        Root { path: String, reason: String },
    }

    /// A ruleset fd: read and execute everywhere, everything under `roots`.
    pub(super) fn build(roots: &[PathBuf]) -> Result<OwnedFd, Error> {
        let unsupported = |e: landlock::RulesetError| Error::Unsupported(e.to_string());
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(ABI_REQUIRED))
            .map_err(unsupported)?
            // Signals to and abstract unix sockets of processes outside the sandbox, where the
            // kernel has these scopes (ABI 6, Linux 6.12); older kernels go without.
            .set_compatibility(CompatLevel::BestEffort)
            .scope(Scope::from_all(ABI::V6))
            .map_err(unsupported)?
            .set_compatibility(CompatLevel::HardRequirement)
            .create()
            .map_err(unsupported)?
            .add_rule(PathBeneath::new(
                open("/")?,
                AccessFs::from_read(ABI_REQUIRED),
            ))
            .map_err(unsupported)?;
        for device in WRITABLE_DEVICES {
            if let Ok(fd) = PathFd::new(device) {
                ruleset = ruleset
                    .add_rule(PathBeneath::new(fd, AccessFs::from_file(ABI_REQUIRED)))
                    .map_err(unsupported)?;
            }
        }
        for root in roots {
            ruleset = ruleset
                .add_rule(PathBeneath::new(
                    open(root)?,
                    AccessFs::from_all(ABI_REQUIRED),
                ))
                .map_err(unsupported)?;
        }
        let fd: Option<OwnedFd> = ruleset.into();
        fd.ok_or_else(|| Error::Unsupported("Landlock is not available".to_owned()))
    }

    fn open(path: impl AsRef<std::path::Path>) -> Result<PathFd, Error> {
        let path = path.as_ref();
        PathFd::new(path).map_err(|e| Error::Root {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

#[allow(
    unsafe_code,
    reason = "pre_exec and the raw unshare/mount/prctl/capset/landlock/seccomp system calls have \
              no safe wrapper; that code runs in the forked child before exec"
)]
#[cfg(target_os = "linux")]
mod child;
