//! File operations that follow no symbolic link: every directory on the way is opened one
//! component at a time from `/` with `O_NOFOLLOW`, and the last step (open, create, rename,
//! unlink, mkdir) is done relative to the handle of the parent directory.
//!
//! The paths given here are real paths (see [`real_path`]): symlinks were resolved when the
//! patch was planned and checked. If a component has become a symlink since (another process
//! swapped a directory for a link while the user was deciding, or while the patch was being
//! written), the operation fails with [`SYMLINK_SWAPPED`] instead of following it, so nothing
//! is ever written outside the place that was checked.

use std::ffi::OsStr;
use std::fs::{File, Permissions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Mode, OFlags};

/// What the error says when a directory on the way is (now) a symlink or not a directory.
pub const SYMLINK_SWAPPED: &str = "a directory on the way is now a symbolic link or not a \
                                   directory (it changed after the patch was checked)";

/// `path` with its longest existing prefix canonicalized (the rest appended as is, `..` and `.`
/// already removed by the caller).
pub fn real_path(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// The error of opening `name` in `dir` as a directory: a symlink gets [`SYMLINK_SWAPPED`].
fn walk_error(dir: &OwnedFd, name: &OsStr, e: rustix::io::Errno) -> io::Error {
    let is_link = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_symlink());
    if is_link {
        io::Error::other(SYMLINK_SWAPPED)
    } else {
        e.into()
    }
}

/// Opens directory `dir` (absolute), following no symlink on the way.
pub fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::openat(CWD, "/", flags, Mode::empty())?;
    for component in dir.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(name) => {
                fd = rustix::fs::openat(&fd, name, flags, Mode::empty())
                    .map_err(|e| walk_error(&fd, name, e))?;
            }
            _ => return Err(io::Error::other("the path is not absolute and normalized")),
        }
    }
    Ok(fd)
}

/// The parent directory's handle and the file name of `path`.
fn parent_and_name(path: &Path) -> io::Result<(OwnedFd, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((open_dir(parent)?, name)),
        _ => Err(io::Error::other("the path has no file name")),
    }
}

/// The bytes and permissions of regular file `path`; `None` when it does not exist.
pub fn read(path: &Path) -> io::Result<Option<(Vec<u8>, Permissions)>> {
    let (dir, name) = match parent_and_name(path) {
        Ok(found) => found,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => {
            return Err(io::Error::other(
                "it is a symbolic link (it changed after the patch was checked)",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut file = File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("it is not a regular file"));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(Some((bytes, meta.permissions())))
}

/// Whether directory `dir` exists, reached without following symlinks.
pub fn dir_exists(dir: &Path) -> bool {
    open_dir(dir).is_ok()
}

/// Creates directory `dir` (its parent must exist). Something else already there is "not a
/// directory".
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let (parent, name) = parent_and_name(dir)?;
    match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o777)) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Err(io::ErrorKind::NotADirectory.into()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the empty directory `dir`.
pub fn remove_dir(dir: &Path) -> io::Result<()> {
    let (parent, name) = parent_and_name(dir)?;
    rustix::fs::unlinkat(&parent, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

/// Removes file (or symlink) `path` itself.
pub fn remove_file(path: &Path) -> io::Result<()> {
    let (parent, name) = parent_and_name(path)?;
    rustix::fs::unlinkat(&parent, name, AtFlags::empty())?;
    Ok(())
}

/// Replaces `path` atomically: a temp file beside it (created exclusively, never through a
/// link), fsync, rename over the target within the same directory handle. New files get 0644.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    permissions: Option<&Permissions>,
) -> io::Result<()> {
    let (dir, name) = parent_and_name(path)?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let (tmp_name, fd) = loop {
        let candidate = format!(
            ".{}.{:08x}.tmp",
            name.to_string_lossy(),
            rand::random::<u32>()
        );
        match rustix::fs::openat(&dir, &candidate, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => break (candidate, fd),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let written: io::Result<()> = (|| {
        let mut file = File::from(fd);
        file.write_all(bytes)?;
        let mode = permissions.map_or(0o644, |p| p.mode() & 0o7777);
        file.set_permissions(Permissions::from_mode(mode))?;
        file.sync_all()?;
        rustix::fs::renameat(&dir, &tmp_name, &dir, name)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = rustix::fs::unlinkat(&dir, &tmp_name, AtFlags::empty());
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_walk_through_a_symlinked_directory() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let ws = real_path(dir.path());
        std::os::unix::fs::symlink(outside.path(), ws.join("sub")).unwrap();
        let err = write_atomic(&ws.join("sub/x.txt"), b"x", None).unwrap_err();
        assert_eq!(err.to_string(), SYMLINK_SWAPPED);
        assert!(!outside.path().join("x.txt").exists());
        assert!(create_dir(&ws.join("sub/new")).is_err());
        assert!(read(&ws.join("sub/x.txt")).is_err());
    }

    #[test]
    fn writes_reads_and_removes_through_directory_handles() {
        let dir = tempfile::tempdir().unwrap();
        let ws = real_path(dir.path());
        create_dir(&ws.join("a")).unwrap();
        write_atomic(&ws.join("a/f.txt"), b"hi", None).unwrap();
        let (bytes, perms) = read(&ws.join("a/f.txt")).unwrap().unwrap();
        assert_eq!((bytes, perms.mode() & 0o777), (b"hi".to_vec(), 0o644));
        assert_eq!(read(&ws.join("a/none.txt")).unwrap(), None);
        remove_file(&ws.join("a/f.txt")).unwrap();
        remove_dir(&ws.join("a")).unwrap();
        assert!(!dir_exists(&ws.join("a")));
        // Only the file itself is left behind: no temp file.
        assert_eq!(std::fs::read_dir(&ws).unwrap().count(), 0);
    }
}
