//! The part of the sandbox that runs in the forked child, between `fork` and `exec`.
//!
//! Only async-signal-safe work happens here: plain system calls on data prepared by the
//! parent, no allocation, no locks (the parent is multi-threaded, so another thread may have
//! held the allocator's lock at the moment of the fork).
//!
//! The process tree of one command, when a PID namespace can be had (always as root; with a
//! user namespace otherwise):
//!
//! ```text
//! server ─ A (the spawned child: waits for B, exits with its status; killed with the server)
//!          └ B (PID 1 of a new PID namespace: reaps, exits when C exits; killed with A)
//!            └ C (confines itself, then executes the command; all its descendants stay in
//!                 the namespace, which the kernel empties when B exits)
//! ```
//!
//! In confined modes C also gets: a new mount namespace in which every mount is read-only
//! except the writable roots, the agent home is covered by an empty read-only tmpfs and `/proc`
//! shows only the namespace's processes; a new, empty network namespace; no capabilities at
//! all (bounding, ambient, permitted, effective and inheritable sets cleared, `SECBIT_NOROOT`
//! locked), `no_new_privs`, a seccomp filter allowing only unix (and, inside the network
//! namespace, netlink) sockets, and the Landlock ruleset.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::NetIsolation;

/// Writable roots beyond this many are not remounted writable (the fixed array keeps the child
/// free of allocation); the session has two.
const MAX_ROOTS: usize = 8;

/// Everything the child needs, owned so that the closure is `'static`.
#[derive(Debug)]
pub(super) struct Plan {
    data: Arc<Data>,
}

/// The confinement of a confined mode; absent for commands that run unconfined.
#[derive(Debug)]
pub(super) struct Confine {
    /// Kept open until the command is spawned; the child uses the raw number.
    pub(super) ruleset: OwnedFd,
    pub(super) net: NetIsolation,
    /// Writable roots, as C strings.
    pub(super) roots: Vec<CString>,
    /// The agent's home, covered in the command's mount namespace.
    pub(super) hidden: Option<CString>,
}

#[derive(Debug)]
struct Data {
    confine: Option<Confine>,
    is_root: bool,
    server_pid: libc::pid_t,
    paths: Paths,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

/// Fixed C strings, made in the parent.
#[derive(Debug)]
struct Paths {
    setgroups: CString,
    uid_map: CString,
    gid_map: CString,
    root: CString,
    proc_dir: CString,
    proc_fs: CString,
    tmpfs: CString,
    tmpfs_options: CString,
    empty: CString,
}

impl Plan {
    pub(super) fn new(confine: Option<Confine>) -> Self {
        // SAFETY: geteuid/getegid/getpid cannot fail and touch no memory.
        let (uid, gid, pid) = unsafe { (libc::geteuid(), libc::getegid(), libc::getpid()) };
        let c = |s: &str| CString::new(s).unwrap_or_default();
        Self {
            data: Arc::new(Data {
                confine,
                is_root: uid == 0,
                server_pid: pid,
                paths: Paths {
                    setgroups: c("/proc/self/setgroups"),
                    uid_map: c("/proc/self/uid_map"),
                    gid_map: c("/proc/self/gid_map"),
                    root: c("/"),
                    proc_dir: c("/proc"),
                    proc_fs: c("proc"),
                    tmpfs: c("tmpfs"),
                    tmpfs_options: c("size=4k,mode=755"),
                    empty: c(""),
                },
                uid_map: format!("{uid} {uid} 1\n").into_bytes(),
                gid_map: format!("{gid} {gid} 1\n").into_bytes(),
            }),
        }
    }

    pub(super) fn install(&self, command: &mut tokio::process::Command) {
        let data = Arc::clone(&self.data);
        // SAFETY: the closure only makes system calls on memory owned by `data`, which lives as
        // long as the closure; it allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(move || in_child(&data));
        }
    }
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// What the namespaces step achieved.
#[derive(Clone, Copy)]
struct Spaces {
    pid: bool,
    mount: bool,
    net: bool,
    user: bool,
}

/// Runs in A, the spawned child. Returns only in the process that is to execute the command.
fn in_child(data: &Data) -> io::Result<()> {
    // SAFETY: prctl and getppid take integers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != data.server_pid {
            // The server died before the line above.
            libc::_exit(137);
        }
    }
    let spaces = match &data.confine {
        Some(confine) => confined_namespaces(data, confine.net)?,
        None => unconfined_namespaces(data),
    };
    if spaces.pid {
        // A waits for B, B for C; only C returns.
        fork_and_wait()?;
        fork_and_wait()?;
    }
    match &data.confine {
        Some(confine) => confine_self(data, confine, spaces),
        None => Ok(()),
    }
}

/// A PID namespace for unconfined commands where it costs nothing (as root); elsewhere none.
fn unconfined_namespaces(data: &Data) -> Spaces {
    // SAFETY: unshare takes flags.
    let pid = data.is_root && unsafe { libc::unshare(libc::CLONE_NEWPID) } == 0;
    Spaces {
        pid,
        mount: false,
        net: false,
        user: false,
    }
}

/// New PID, mount and network namespaces (as root directly, else inside a new user namespace
/// mapping our ids to themselves), falling back to fewer where they are not allowed. Once a
/// namespace exists, failing to set it up is an error (the command is not run).
fn confined_namespaces(data: &Data, net: NetIsolation) -> io::Result<Spaces> {
    let want_net = net == NetIsolation::NamespaceElseSeccomp;
    let user = if data.is_root { 0 } else { libc::CLONE_NEWUSER };
    let net_flag = if want_net { libc::CLONE_NEWNET } else { 0 };
    let attempts = [
        (
            libc::CLONE_NEWNS | libc::CLONE_NEWPID | net_flag,
            true,
            want_net,
        ),
        (libc::CLONE_NEWNS | libc::CLONE_NEWPID, true, false),
        (net_flag, false, want_net),
    ];
    for (flags, pid_and_mount, net) in attempts {
        if flags == 0 {
            continue;
        }
        // SAFETY: unshare takes flags.
        if unsafe { libc::unshare(flags | user) } != 0 {
            continue;
        }
        if user != 0 && !map_ids(data) {
            return Err(last_error());
        }
        let spaces = Spaces {
            pid: pid_and_mount,
            mount: pid_and_mount,
            net,
            user: user != 0,
        };
        if spaces.mount && !make_mounts_private(data) {
            return Err(last_error());
        }
        return Ok(spaces);
    }
    Ok(Spaces {
        pid: false,
        mount: false,
        net: false,
        user: false,
    })
}

/// Maps our uid and gid to themselves; setgroups must be denied first or the gid map is refused.
/// The server is not dumpable (so commands cannot read its `/proc` entries), which makes
/// `/proc/self` of this fork root's; it is dumpable only while it writes its own maps.
fn map_ids(data: &Data) -> bool {
    // SAFETY: prctl takes integers.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    let mapped = write_file(&data.paths.setgroups, b"deny\n")
        && write_file(&data.paths.uid_map, &data.uid_map)
        && write_file(&data.paths.gid_map, &data.gid_map);
    // SAFETY: prctl takes integers.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    mapped
}

/// Nothing mounted in the command's namespace may propagate back to the host's.
fn make_mounts_private(data: &Data) -> bool {
    // SAFETY: valid C strings; null source, type and data are allowed for a propagation change.
    unsafe {
        libc::mount(
            std::ptr::null(),
            data.paths.root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) == 0
    }
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

/// Forks. The child returns; the parent closes every descriptor (so that the spawning parent's
/// exec-error pipe and the output pipes are held only by the command), reaps whatever is
/// reparented to it, and exits with the child's status (128 + N when killed by signal N) once
/// the child is gone.
fn fork_and_wait() -> io::Result<()> {
    // SAFETY: the process is single-threaded (a fork child); fork takes no arguments.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(last_error());
    }
    if child == 0 {
        // SAFETY: prctl takes integers. The parent cannot have exited yet: it waits for us.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        return Ok(());
    }
    // SAFETY: close_range and waitpid take integers and a pointer to a local; _exit ends the
    // process without running anything of the parent's.
    unsafe {
        libc::syscall(libc::SYS_close_range, 0, libc::c_uint::MAX, 0);
        loop {
            let mut status = 0;
            let pid = libc::waitpid(-1, &mut status, 0);
            if pid == child {
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                };
                libc::_exit(code);
            }
            if pid < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(127);
            }
        }
    }
}

/// Runs in the process that executes the command (C, or A without a PID namespace).
fn confine_self(data: &Data, confine: &Confine, spaces: Spaces) -> io::Result<()> {
    if spaces.mount {
        mounts::restrict(&data.paths, confine)?;
        mounts::reenter_cwd()?;
        // A fresh /proc shows only the namespace's processes; where the kernel refuses it (a
        // masked /proc in some containers), the server's own entries stay unreadable anyway,
        // as the server is not dumpable.
        if spaces.pid {
            mounts::fresh_proc(&data.paths);
        }
    }
    if data.is_root || spaces.user {
        drop_capabilities()?;
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(last_error());
    }
    seccomp::allow_only_local_sockets(spaces.net)?;
    let ruleset: RawFd = confine.ruleset.as_raw_fd();
    // SAFETY: landlock_restrict_self takes an fd and flags.
    if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0) } != 0 {
        return Err(last_error());
    }
    Ok(())
}

/// Clears every capability set, and locks `SECBIT_NOROOT` so that executing a program as uid 0
/// does not grant them back.
fn drop_capabilities() -> io::Result<()> {
    const SECURE_BITS: libc::c_ulong = 0x2f; // NOROOT, NO_SETUID_FIXUP (both locked), KEEP_CAPS_LOCKED
    const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Sets {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // SAFETY: prctl and capset with integers and pointers to locals of the kernel's layout.
    unsafe {
        if libc::prctl(libc::PR_SET_SECUREBITS, SECURE_BITS, 0, 0, 0) != 0 {
            return Err(last_error());
        }
        for cap in 0..64 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
                && *libc::__errno_location() != libc::EINVAL
            {
                return Err(last_error());
            }
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        let header = Header {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let none = [Sets {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capset, &header, none.as_ptr()) != 0 {
            return Err(last_error());
        }
    }
    Ok(())
}

/// The mount namespace of a confined command.
mod mounts {
    use std::io;
    use std::os::fd::RawFd;

    use super::{Confine, MAX_ROOTS, Paths};

    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    const MOUNT_ATTR_RDONLY: u64 = 0x1;

    /// `struct mount_attr` of mount_setattr(2).
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }

    /// Every mount read-only (so metadata changes are refused outside the writable roots, which
    /// Landlock does not govern), the writable roots as they were, the home covered.
    pub(super) fn restrict(paths: &Paths, confine: &Confine) -> io::Result<()> {
        let mut clones: [RawFd; MAX_ROOTS] = [-1; MAX_ROOTS];
        for (slot, root) in clones.iter_mut().zip(&confine.roots) {
            // SAFETY: a valid C string and integer flags; the result is a new fd or -1.
            *slot = unsafe {
                libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    root.as_ptr(),
                    OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint,
                ) as RawFd
            };
            if *slot < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: a valid C string, a pointer to a local struct and its size.
        let status = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                paths.root.as_ptr(),
                AT_RECURSIVE,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if status != 0 {
            return Err(io::Error::last_os_error());
        }
        for (fd, root) in clones.iter().zip(&confine.roots) {
            // SAFETY: fds opened above, valid C strings.
            let moved = unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    *fd,
                    paths.empty.as_ptr(),
                    libc::AT_FDCWD,
                    root.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                )
            };
            if moved != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(home) = &confine.hidden {
            let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            // SAFETY: valid C strings.
            let status = unsafe {
                libc::mount(
                    paths.tmpfs.as_ptr(),
                    home.as_ptr(),
                    paths.tmpfs.as_ptr(),
                    flags,
                    paths.tmpfs_options.as_ptr().cast(),
                )
            };
            if status != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Changes to the current directory again by its path: the working directory was set
    /// before the writable roots were mounted over, and would otherwise stay on the read-only
    /// mount beneath them.
    pub(super) fn reenter_cwd() -> io::Result<()> {
        let mut buffer = [0u8; libc::PATH_MAX as usize];
        // SAFETY: getcwd writes at most the buffer's length, NUL-terminated; chdir reads it.
        unsafe {
            if libc::getcwd(buffer.as_mut_ptr().cast(), buffer.len()).is_null()
                || libc::chdir(buffer.as_ptr().cast()) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Mounts a `/proc` of the command's PID namespace over the host's; failure is tolerated.
    pub(super) fn fresh_proc(paths: &Paths) {
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        // SAFETY: valid C strings; no data.
        unsafe {
            libc::mount(
                paths.proc_fs.as_ptr(),
                paths.proc_dir.as_ptr(),
                paths.proc_fs.as_ptr(),
                flags,
                std::ptr::null(),
            );
        }
    }
}

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
    /// outside the filter's sight), and `socket()` of every family but unix and `also`.
    const fn filter(also: u32) -> [libc::sock_filter; 13] {
        [
            stmt(LOAD, ARCH),
            jump(JEQ, AUDIT_ARCH, 1, 0),
            stmt(RET, DENY),
            stmt(LOAD, NR),
            jump(JGE, X32_SYSCALL_BIT, 6, 0),
            jump(JEQ, libc::SYS_io_uring_setup as u32, 5, 0),
            jump(JEQ, libc::SYS_socket as u32, 1, 0),
            stmt(RET, ALLOW),
            stmt(LOAD, ARG0),
            jump(JEQ, libc::AF_UNIX as u32, 2, 0),
            jump(JEQ, also, 1, 0),
            stmt(RET, DENY),
            stmt(RET, ALLOW),
        ]
    }

    /// Unix sockets only (the host's network namespace: not even netlink).
    static UNIX_ONLY: [libc::sock_filter; 13] = filter(libc::AF_UNIX as u32);
    /// Unix and netlink sockets (inside an empty network namespace netlink sees nothing).
    static UNIX_AND_NETLINK: [libc::sock_filter; 13] = filter(libc::AF_NETLINK as u32);

    pub(super) fn allow_only_local_sockets(in_network_namespace: bool) -> io::Result<()> {
        let filter = if in_network_namespace {
            &UNIX_AND_NETLINK
        } else {
            &UNIX_ONLY
        };
        let program = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
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

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod seccomp {
    use std::io;

    /// The filter is written for x86_64 and aarch64 only: elsewhere a confined command is
    /// refused.
    pub(super) fn allow_only_local_sockets(_: bool) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }
}
