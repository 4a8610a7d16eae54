//! Durable sessions: the one module that knows there is a database.
//!
//! `<home>/sessions/sessions.db` is SQLite in WAL mode, shared by every process on the home
//! (readers never wait for the writer; writers wait up to [`BUSY_TIMEOUT`] for each other, and
//! every transaction is a handful of statements, so that wait is short). The directory is 0700
//! and every file in it 0600. Per-session leases are `flock`s on `sessions/<id>.lock`
//! ([`lease`]). An in-memory variant holds ephemeral sessions and serves unit tests.
//!
//! The store keeps rows, not meaning: what a session's settings or the model-facing history
//! contain is the session layer's business; here they are JSON values.

mod lease;
mod queries;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

pub use lease::Lease;
pub use queries::{Forked, ListQuery, Progress, SessionRow, TurnEnd, TurnStart};

/// How long a write waits for another process's transaction before giving up. Transactions
/// here take microseconds to a few milliseconds; seconds of waiting mean something is wrong
/// (a stuck process holding the file), and the turn then fails with a clear error.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The file name of the database inside `<home>/sessions/`.
pub const DB_FILE: &str = "sessions.db";

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database file cannot be used: corrupt, from a newer server, unreadable.
    #[error("the session store {path} cannot be used: {reason}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// A read or write failed (disk full, read-only home, locked too long).
    #[error("the session store {path} could not be {action}: {reason}")]
    Failed {
        /// The file.
        path: PathBuf,
        /// "read" or "written".
        action: &'static str,
        /// SQLite's or the OS's words.
        reason: String,
    },
    /// Another live process has the session loaded.
    #[error("the session is loaded by another process{}", .0.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    InUse(Option<u32>),
    /// A `session/list` cursor that this store did not hand out.
    #[error("the cursor is not one that session/list returned; start again without a cursor")]
    BadCursor,
    /// A stored value could not be decoded (written by a broken or newer server).
    #[error("the session store {path} holds a value this server cannot read: {reason}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// What.
        reason: String,
    },
}

struct Inner {
    /// `<home>/sessions`, or `None` for the in-memory store.
    dir: Option<PathBuf>,
    /// The database file (or `:memory:`), for error messages.
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// A handle on a store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Store {
    /// Opens (creating on first use) the store in `<home>/sessions/`.
    pub fn open(home: &Path) -> Result<Self, StoreError> {
        let dir = home.join("sessions");
        let path = dir.join(DB_FILE);
        let unusable = |reason: String| StoreError::Unusable {
            path: path.clone(),
            reason,
        };
        create_private_dir(&dir).map_err(|e| {
            unusable(format!(
                "cannot create {}: {e}; check the home's permissions",
                dir.display()
            ))
        })?;
        create_private_file(&path).map_err(|e| {
            unusable(format!(
                "cannot create it: {e}; check the permissions of {}",
                dir.display()
            ))
        })?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags)
            .map_err(|e| unusable(format!("{e}; move the file aside to start a new store")))?;
        prepare_retrying(&mut conn).map_err(|e| open_error(&path, e))?;
        Ok(Self::wrap(Some(dir), path, conn))
    }

    /// A store in memory: for ephemeral sessions and tests. Leases always succeed.
    pub fn in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(":memory:");
        let mut conn = Connection::open_in_memory().map_err(|e| StoreError::Unusable {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        prepare(&mut conn, false).map_err(|e| open_error(&path, e))?;
        Ok(Self::wrap(None, path, conn))
    }

    fn wrap(dir: Option<PathBuf>, path: PathBuf, conn: Connection) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir,
                path,
                conn: Mutex::new(conn),
            }),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Copies the WAL into the database file and empties it, so the file stands alone after a
    /// clean exit. Best effort: another process reading at the same time just leaves it for later.
    pub fn checkpoint(&self) {
        if let Err(err) = self
            .conn()
            .pragma_update(None, "wal_checkpoint", "TRUNCATE")
        {
            tracing::debug!(%err, "no checkpoint of the session store at exit");
        }
    }

    /// Whether this store is on disk (not the in-memory one).
    pub fn is_durable(&self) -> bool {
        self.inner.dir.is_some()
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.inner
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_path(&self, id: &str) -> Option<PathBuf> {
        self.inner
            .dir
            .as_ref()
            .map(|dir| dir.join(format!("{id}.lock")))
    }

    /// Takes the exclusive lease of session `id` (ids are checked by the caller to be plain
    /// tokens, so they are safe in a file name). `None` for the in-memory store.
    pub fn lease(&self, id: &str) -> Result<Option<Lease>, StoreError> {
        let Some(path) = self.lock_path(id) else {
            return Ok(None);
        };
        match lease::acquire(&path) {
            Ok(lease) => Ok(Some(lease)),
            Err(lease::LeaseError::Held(pid)) => Err(StoreError::InUse(pid)),
            Err(lease::LeaseError::Io(e)) => Err(StoreError::Failed {
                path,
                action: "written",
                reason: e.to_string(),
            }),
        }
    }

    /// Whether a live process (this one included) holds the lease of session `id`.
    pub fn is_leased(&self, id: &str) -> bool {
        self.lock_path(id).is_some_and(|p| lease::is_held(&p))
    }

    /// Deletes a session whose lease `lease` is held; removes its lock file too.
    pub fn delete(&self, id: &str, lease: Option<&Lease>) -> Result<bool, StoreError> {
        let deleted = self.write(|tx| queries::delete(tx, id))?;
        if let Some(lease) = lease {
            lease.remove_file();
        }
        Ok(deleted)
    }

    /// Runs `f` in one write transaction (taken at once, so it never fails half-way on a lock).
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, QueryError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        let run = || -> Result<T, QueryError> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        };
        run().map_err(|e| self.query_error(e, "written"))
    }

    /// Runs `f` in one read transaction, so it sees one consistent state.
    fn read<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, QueryError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        let run = || -> Result<T, QueryError> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
            let value = f(&tx)?;
            tx.finish()?;
            Ok(value)
        };
        run().map_err(|e| self.query_error(e, "read"))
    }

    fn query_error(&self, err: QueryError, action: &'static str) -> StoreError {
        let path = self.inner.path.clone();
        match err {
            QueryError::Sql(e) => StoreError::Failed {
                path,
                action,
                reason: sql_reason(&e),
            },
            QueryError::Value(reason) => StoreError::BadValue { path, reason },
        }
    }
}

/// A failure inside a query: SQL, or a stored value that does not decode.
#[derive(Debug)]
pub(crate) enum QueryError {
    Sql(rusqlite::Error),
    Value(String),
}

impl From<rusqlite::Error> for QueryError {
    fn from(err: rusqlite::Error) -> Self {
        QueryError::Sql(err)
    }
}

impl From<serde_json::Error> for QueryError {
    fn from(err: serde_json::Error) -> Self {
        QueryError::Value(err.to_string())
    }
}

/// SQLite's words, with what to do for the failures a user can fix.
fn sql_reason(err: &rusqlite::Error) -> String {
    let hint = match err.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => "; free some disk space",
        Some(ErrorCode::SystemIoFailure) => {
            "; the disk may be full, over a file-size limit, read-only or failing: free some space and check the home's file system"
        }
        Some(ErrorCode::ReadOnly) | Some(ErrorCode::CannotOpen) => {
            "; check that the home is writable"
        }
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            "; another program holds the file locked"
        }
        _ => "",
    };
    format!("{err}{hint}")
}

/// The error of opening: the file names itself, and says nothing was changed.
fn open_error(path: &Path, err: schema::SchemaError) -> StoreError {
    let reason = match err {
        schema::SchemaError::TooNew(found) => format!(
            "it was written by a newer agent-server (store version {found}, this server knows up to {}); \
             upgrade agent-server, or point --home elsewhere; the file was not changed",
            schema::current_version()
        ),
        schema::SchemaError::Sql(e) if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
            "it is not a valid SQLite database (corrupt?); move it aside to start a new store; the file was not changed".to_string()
        }
        schema::SchemaError::Sql(e) => format!("{}; the file was not changed", sql_reason(&e)),
    };
    StoreError::Unusable {
        path: path.to_path_buf(),
        reason,
    }
}

/// [`prepare`] for a file store, tried again while another process holds a lock it needs.
/// SQLite gives up on some locks at once instead of waiting out the busy timeout (switching a
/// new file to WAL, or two connections each upgrading a read lock), which happens when two
/// processes open a new store at the same moment; every step of `prepare` can be repeated.
fn prepare_retrying(conn: &mut Connection) -> Result<(), schema::SchemaError> {
    let start = std::time::Instant::now();
    loop {
        match prepare(conn, true) {
            Err(schema::SchemaError::Sql(e))
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && start.elapsed() < BUSY_TIMEOUT =>
            {
                tracing::debug!(%e, "the store is busy while opening; trying again");
                std::thread::sleep(Duration::from_millis(20));
            }
            done => return done,
        }
    }
}

/// WAL, a busy timeout, foreign keys, then the schema.
fn prepare(conn: &mut Connection, durable: bool) -> Result<(), schema::SchemaError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if durable {
        // WAL lets readers in other processes go on while one writes; NORMAL syncs the WAL at
        // checkpoints rather than at every commit: a power cut may lose the last commits, a
        // process crash (kill -9) loses nothing.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    schema::migrate(conn)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the database file 0600 before SQLite opens it; SQLite gives its WAL and shared-memory
/// files the database file's mode.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A store opened on first use (off `initialize`'s path) and shared by the process. An open
/// that fails is reported to that use and tried again on the next one, so a home the user has
/// mended (a `sessions` file moved aside, space freed, permissions fixed) works without a
/// restart; a failed open changes nothing on disk.
pub struct LazyStore {
    /// The home, or `None` for the in-memory store.
    home: Option<PathBuf>,
    store: OnceLock<Store>,
    /// Held while opening, so that uses arriving together make one attempt: the failure of
    /// the last attempt, for the uses that waited on it.
    opening: Mutex<Option<StoreError>>,
    /// How many attempts have finished.
    attempts: AtomicU64,
}

impl LazyStore {
    /// The store of `home`, not opened yet.
    pub fn new(home: PathBuf) -> Self {
        Self::at(Some(home))
    }

    /// An in-memory store, made on first use.
    pub fn memory() -> Self {
        Self::at(None)
    }

    fn at(home: Option<PathBuf>) -> Self {
        Self {
            home,
            store: OnceLock::new(),
            opening: Mutex::new(None),
            attempts: AtomicU64::new(0),
        }
    }

    /// The store if it was opened; never opens it.
    pub fn opened(&self) -> Option<Store> {
        self.store.get().cloned()
    }

    /// The store, opening it when it is not open yet.
    pub fn get(&self) -> Result<Store, StoreError> {
        if let Some(store) = self.store.get() {
            return Ok(store.clone());
        }
        let seen = self.attempts.load(Ordering::Acquire);
        let mut failed = self
            .opening
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(store) = self.store.get() {
            return Ok(store.clone());
        }
        // An attempt that ended while this use waited answers it too: a burst of uses of a
        // store that cannot be opened (each attempt may wait out the busy timeout) makes one
        // attempt, not one after the other.
        if self.attempts.load(Ordering::Acquire) != seen
            && let Some(err) = failed.as_ref()
        {
            return Err(err.clone());
        }
        let opened = match &self.home {
            Some(home) => Store::open(home),
            None => Store::in_memory(),
        };
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match opened {
            Ok(store) => {
                *failed = None;
                Ok(self.store.get_or_init(|| store).clone())
            }
            Err(err) => {
                tracing::error!(%err, "the session store cannot be used (tried again on its next use)");
                *failed = Some(err.clone());
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests;
