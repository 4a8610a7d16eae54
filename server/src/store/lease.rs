//! The per-session lease: an exclusive `flock` on `sessions/<id>.lock`, held while a process has
//! the session loaded. The kernel releases it when the file is closed or the process dies, even
//! by `kill -9`, so a crash never leaves a session stuck "in use".

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A held lease; dropping it releases the lock.
#[derive(Debug)]
pub struct Lease {
    file: File,
    path: PathBuf,
}

/// Why a lease could not be taken.
#[derive(Debug)]
pub(super) enum LeaseError {
    /// Another open file holds the lock: another live process (or this one) has the session;
    /// the pid it wrote, when readable.
    Held(Option<u32>),
    /// The lock file could not be opened.
    Io(std::io::Error),
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

#[allow(
    clippy::incompatible_msrv,
    reason = "File::try_lock is stable since 1.89, the toolchain this project builds with"
)]
fn try_lock(file: &File) -> Result<bool, std::io::Error> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(err)) => Err(err),
    }
}

/// Takes the lease of `path` and writes this process's id into it.
pub(super) fn acquire(path: &Path) -> Result<Lease, LeaseError> {
    let mut file = open(path).map_err(LeaseError::Io)?;
    if !try_lock(&file).map_err(LeaseError::Io)? {
        return Err(LeaseError::Held(holder(&mut file)));
    }
    let pid = std::process::id().to_string();
    let written = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(pid.as_bytes()));
    if let Err(err) = written {
        // The lock is what matters; the pid is only for the error message of others.
        tracing::debug!(%err, path = %path.display(), "could not write the pid into a lease file");
    }
    Ok(Lease {
        file,
        path: path.to_path_buf(),
    })
}

/// The pid written by the holder. It writes right after locking, so a reader that comes in
/// between sees an empty file: one short retry covers that.
fn holder(file: &mut File) -> Option<u32> {
    for _ in 0..2 {
        let mut text = String::new();
        if file.seek(SeekFrom::Start(0)).is_ok()
            && file.read_to_string(&mut text).is_ok()
            && let Ok(pid) = text.trim().parse()
        {
            return Some(pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    None
}

/// Whether a live process holds the lease of `path` (without taking it for long).
pub(super) fn is_held(path: &Path) -> bool {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(_) => return false,
    };
    // Opened read-only, a flock is still exclusive; it is released when `file` drops.
    !try_lock(&file).unwrap_or(true)
}

impl Lease {
    /// Removes the lock file while still holding the lock (the session is being deleted).
    pub(super) fn remove_file(&self) {
        if let Err(err) = std::fs::remove_file(&self.path) {
            tracing::debug!(%err, path = %self.path.display(), "could not remove a lease file");
        }
        let _ = &self.file;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_exclusive_names_its_holder_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        assert!(!is_held(&path));
        let lease = acquire(&path).unwrap();
        assert!(is_held(&path));
        match acquire(&path) {
            Err(LeaseError::Held(pid)) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(lease);
        assert!(!is_held(&path));
        let again = acquire(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(again);
    }
}
