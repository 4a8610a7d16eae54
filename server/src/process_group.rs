//! The process group a child leads (a command, a stdio MCP server), killed as a whole so that
//! what the child started goes with it. Dropping a [`ProcessGroup`] kills the group.

use std::time::{Duration, Instant};

/// A process group led by a child process.
#[derive(Debug)]
pub(crate) struct ProcessGroup {
    pgid: Option<i32>,
}

impl ProcessGroup {
    /// The group of the child with this pid (the child leads its own group); without a pid
    /// (the child is already gone) there is nothing to kill.
    pub(crate) fn new(pid: Option<u32>) -> Self {
        Self {
            pgid: pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0),
        }
    }

    /// The group's id, for logs.
    pub(crate) fn id(&self) -> Option<i32> {
        self.pgid
    }

    /// SIGKILL to every process of the group.
    pub(crate) fn kill(&self) {
        if let Some(pgid) = self.pgid {
            signal_group(pgid, libc::SIGKILL);
        }
    }

    /// Kills the group until none of its processes is left (see [`wait_group_gone`]), for at
    /// most `grace`. Returns whether it is gone.
    pub(crate) async fn wait_gone(&self, grace: Duration) -> bool {
        match self.pgid {
            Some(pgid) => wait_group_gone(pgid, grace).await,
            None => true,
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills group `pgid` until none of its processes exists any more, zombies included (their new
/// parent, usually init, reaps them; nothing signals that, so this polls), for at most `grace`.
/// Returns whether the group is gone.
pub(crate) async fn wait_group_gone(pgid: i32, grace: Duration) -> bool {
    let give_up = Instant::now() + grace;
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
