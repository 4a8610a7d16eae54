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
    pub(crate) fn prepare(&self) -> Result<Option<Confinement>, SandboxError> {
        if !self.confines() {
            return Ok(None);
        }
        let ruleset = landlock_rules::build(&self.writable_roots).map_err(|e| match e {
            landlock_rules::Error::Unsupported(reason) => SandboxError::Unsupported {
                mode: mode_name(self.mode),
                reason,
            },
            landlock_rules::Error::Root { path, reason } => SandboxError::Root { path, reason },
        })?;
        Ok(Some(Confinement {
            child: child::Plan::new(ruleset, self.net),
        }))
    }

    /// Elsewhere than on Linux nothing can be confined, so confined modes refuse to run.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn prepare(&self) -> Result<Option<Confinement>, SandboxError> {
        if !self.confines() {
            return Ok(None);
        }
        Err(SandboxError::Unsupported {
            mode: mode_name(self.mode),
            reason: "the sandbox is implemented on Linux only".to_owned(),
        })
    }
}

/// The mode as on the wire.
pub(crate) fn mode_name(mode: SandboxMode) -> &'static str {
    match mode {
        SandboxMode::ReadOnly => "readOnly",
        SandboxMode::WorkspaceWrite => "workspaceWrite",
        SandboxMode::DangerFullAccess => "dangerFullAccess",
    }
}

/// What a child process applies to itself before `exec`.
#[derive(Debug)]
pub(crate) struct Confinement {
    #[cfg(target_os = "linux")]
    child: child::Plan,
}

impl Confinement {
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
        RulesetCreatedAttr,
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

/// The part that runs in the child between `fork` and `exec`.
///
/// Only async-signal-safe work happens there: plain system calls on data prepared by the
/// parent, no allocation, no locks (the parent is multi-threaded, so another thread may have
/// held the allocator's lock at the moment of the fork).
#[allow(
    unsafe_code,
    reason = "pre_exec and the raw unshare/prctl/landlock/seccomp system calls have no safe \
              wrapper; the code below runs in the forked child before exec"
)]
#[cfg(target_os = "linux")]
mod child {
    use std::ffi::CString;
    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};
    use std::sync::Arc;

    use super::NetIsolation;

    /// Everything the child needs, owned so that the closure is `'static`.
    #[derive(Debug)]
    pub(super) struct Plan {
        data: Arc<Data>,
    }

    #[derive(Debug)]
    struct Data {
        /// Kept open until the command is spawned; the child uses the raw number.
        ruleset: OwnedFd,
        net: NetIsolation,
        is_root: bool,
        setgroups_path: CString,
        uid_map_path: CString,
        gid_map_path: CString,
        uid_map: Vec<u8>,
        gid_map: Vec<u8>,
    }

    impl Plan {
        pub(super) fn new(ruleset: OwnedFd, net: NetIsolation) -> Self {
            // SAFETY: geteuid/getegid cannot fail and touch no memory.
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            let path = |s: &str| CString::new(s).unwrap_or_default();
            Self {
                data: Arc::new(Data {
                    ruleset,
                    net,
                    is_root: uid == 0,
                    setgroups_path: path("/proc/self/setgroups"),
                    uid_map_path: path("/proc/self/uid_map"),
                    gid_map_path: path("/proc/self/gid_map"),
                    uid_map: format!("{uid} {uid} 1\n").into_bytes(),
                    gid_map: format!("{gid} {gid} 1\n").into_bytes(),
                }),
            }
        }

        pub(super) fn install(&self, command: &mut tokio::process::Command) {
            let data = Arc::clone(&self.data);
            let ruleset = data.ruleset.as_raw_fd();
            // SAFETY: the closure only makes system calls on memory owned by `data`, which lives
            // as long as the closure; it allocates nothing and takes no lock.
            unsafe {
                command.pre_exec(move || confine(&data, ruleset));
            }
        }
    }

    fn last_error() -> io::Error {
        io::Error::last_os_error()
    }

    /// Runs in the child. Network first: writing the uid map needs the write access Landlock is
    /// about to take away.
    fn confine(data: &Data, ruleset: RawFd) -> io::Result<()> {
        let isolated = match data.net {
            NetIsolation::NamespaceElseSeccomp => new_network_namespace(data),
            NetIsolation::Seccomp => false,
        };
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(last_error());
        }
        if !isolated {
            deny_inet_sockets()?;
        }
        // SAFETY: landlock_restrict_self takes an fd and flags.
        if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0) } != 0 {
            return Err(last_error());
        }
        Ok(())
    }

    /// Moves the child into a new, empty network namespace; false when not allowed.
    fn new_network_namespace(data: &Data) -> bool {
        if data.is_root {
            // SAFETY: unshare takes flags.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
                return true;
            }
        }
        // SAFETY: unshare takes flags.
        if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
            return false;
        }
        // Map our ids to themselves so files keep their owner; setgroups must be denied first
        // or the gid map is refused.
        write_file(&data.setgroups_path, b"deny\n")
            && write_file(&data.uid_map_path, &data.uid_map)
            && write_file(&data.gid_map_path, &data.gid_map)
    }

    fn write_file(path: &CString, bytes: &[u8]) -> bool {
        // SAFETY: path is a valid C string; bytes is a valid buffer of its length.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return false;
            }
            let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
            libc::close(fd);
            written == bytes.len() as isize
        }
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    use seccomp::deny_inet_sockets;
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    use unsupported_arch::deny_inet_sockets;

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    mod unsupported_arch {
        use std::io;

        /// The filter is written for x86_64 and aarch64 only: elsewhere the fallback is
        /// unavailable, and a command that cannot get a network namespace is refused.
        pub(super) fn deny_inet_sockets() -> io::Result<()> {
            Err(io::Error::from_raw_os_error(libc::ENOSYS))
        }
    }

    /// The seccomp fallback that keeps a command off the network.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    mod seccomp {
        use std::io;

        #[cfg(target_arch = "x86_64")]
        const AUDIT_ARCH: u32 = 0xC000_003E;
        #[cfg(target_arch = "aarch64")]
        const AUDIT_ARCH: u32 = 0xC000_00B7;
        /// x32 system calls on x86_64 have this bit set; they must not bypass the filter.
        const X32_SYSCALL_BIT: u32 = 0x4000_0000;

        const fn stmt(code: u32, k: u32) -> libc::sock_filter {
            libc::sock_filter {
                code: code as u16,
                jt: 0,
                jf: 0,
                k,
            }
        }

        const fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
            libc::sock_filter {
                code: code as u16,
                jt,
                jf,
                k,
            }
        }

        const LOAD: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
        const JGE: u32 = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
        const RET: u32 = libc::BPF_RET | libc::BPF_K;
        const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
        const DENY: u32 = libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA);

        /// Offsets in `struct seccomp_data`: nr, arch, then args[0] (its low half on little-endian).
        const NR: u32 = 0;
        const ARCH: u32 = 4;
        const ARG0: u32 = 16;

        /// Denies other architectures' and x32 system calls, `io_uring_setup` (it can open sockets
        /// outside the filter's sight), and `socket()` for IPv4, IPv6 and raw packets.
        const FILTER: [libc::sock_filter; 14] = [
            stmt(LOAD, ARCH),
            jump(JEQ, AUDIT_ARCH, 1, 0),
            stmt(RET, DENY),
            stmt(LOAD, NR),
            jump(JGE, X32_SYSCALL_BIT, 8, 0),
            jump(JEQ, libc::SYS_io_uring_setup as u32, 7, 0),
            jump(JEQ, libc::SYS_socket as u32, 1, 0),
            stmt(RET, ALLOW),
            stmt(LOAD, ARG0),
            jump(JEQ, libc::AF_INET as u32, 3, 0),
            jump(JEQ, libc::AF_INET6 as u32, 2, 0),
            jump(JEQ, libc::AF_PACKET as u32, 1, 0),
            stmt(RET, ALLOW),
            stmt(RET, DENY),
        ];

        pub(super) fn deny_inet_sockets() -> io::Result<()> {
            let program = libc::sock_fprog {
                len: FILTER.len() as u16,
                filter: FILTER.as_ptr().cast_mut(),
            };
            // SAFETY: the program points at a static filter of the stated length; no_new_privs is
            // already set, as the kernel requires for an unprivileged filter.
            let status = unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                )
            };
            if status != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }
    }
}
