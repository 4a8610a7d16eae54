//! The process group of a stdio MCP server: killed whole, so that what the server started goes
//! with it.

use std::time::{Duration, Instant};

/// How long [`ProcessGroup::wait_gone`] waits for killed processes to be reaped.
const REAP_GRACE: Duration = Duration::from_secs(2);

/// A process group led by a server's child process. Dropping it kills the group.
#[derive(Debug)]
pub struct ProcessGroup {
    pgid: Option<i32>,
}

impl ProcessGroup {
    /// The group of the child with this pid (the child leads its own group).
    pub fn new(pid: Option<u32>) -> Self {
        Self {
            pgid: pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0),
        }
    }

    /// SIGKILL to every process of the group.
    pub fn kill(&self) {
        if let Some(pgid) = self.pgid {
            signal_group(pgid, libc::SIGKILL);
        }
    }

    /// Kills the group until none of its processes is left (zombies included), for at most
    /// [`REAP_GRACE`].
    pub async fn wait_gone(&self) {
        let Some(pgid) = self.pgid else {
            return;
        };
        let give_up = Instant::now() + REAP_GRACE;
        let mut pause = Duration::from_millis(1);
        while group_exists(pgid) {
            if Instant::now() >= give_up {
                tracing::warn!(
                    pgid,
                    "processes of a killed MCP server are still not reaped"
                );
                return;
            }
            signal_group(pgid, libc::SIGKILL);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
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

fn group_exists(pgid: i32) -> bool {
    signal_group(pgid, 0) || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}
