//! The store's SQL schema and its forward migrations, versioned with `PRAGMA user_version`.
//!
//! Each entry of [`MIGRATIONS`] takes the file from version `n` to `n + 1`; a new version only
//! ever appends an entry. A file with a `user_version` above the last one was written by a newer
//! server: it is refused, never changed.

use rusqlite::Connection;

/// Migration `i` takes a store at version `i` to version `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // Version 1: sessions, turns, items, and the model-facing history.
    "
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        updated_ms INTEGER NOT NULL,
        cwd TEXT NOT NULL,
        title TEXT,
        title_lower TEXT NOT NULL DEFAULT '',
        user_text TEXT NOT NULL DEFAULT '',
        archived INTEGER NOT NULL DEFAULT 0,
        settings TEXT NOT NULL,
        forked_from_session TEXT,
        forked_from_turn TEXT,
        turn_count INTEGER NOT NULL DEFAULT 0,
        running INTEGER NOT NULL DEFAULT 0,
        last_seq INTEGER NOT NULL DEFAULT 0,
        context TEXT
    );
    CREATE INDEX sessions_by_update ON sessions (archived, updated_ms DESC, id DESC);
    CREATE TABLE turns (
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        turn_id TEXT NOT NULL,
        status TEXT NOT NULL,
        input TEXT NOT NULL,
        usage TEXT,
        error TEXT,
        started_at TEXT NOT NULL,
        completed_at TEXT
    );
    CREATE INDEX turns_by_session ON turns (session_id, turn_id);
    CREATE TABLE items (
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        turn_id TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX items_by_session ON items (session_id);
    CREATE TABLE history (
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        turn_id TEXT,
        body TEXT NOT NULL
    );
    CREATE INDEX history_by_session ON history (session_id);
    ",
];

/// The version this server writes.
pub(super) fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Why the schema could not be brought up to date.
#[derive(Debug)]
pub(super) enum SchemaError {
    /// The file was written by a newer server.
    TooNew(i64),
    /// SQLite failed (a corrupt file, a read-only home).
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for SchemaError {
    fn from(err: rusqlite::Error) -> Self {
        SchemaError::Sql(err)
    }
}

/// Brings the schema to [`current_version`], each migration in its own transaction, so two
/// processes opening a new store at once cannot both apply one (the second waits on the write
/// lock and then sees the new version).
pub(super) fn migrate(conn: &mut Connection) -> Result<(), SchemaError> {
    migrate_with(conn, MIGRATIONS)
}

fn migrate_with(conn: &mut Connection, migrations: &[&str]) -> Result<(), SchemaError> {
    let target = migrations.len() as i64;
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > target {
            return Err(SchemaError::TooNew(version));
        }
        if version == target {
            return Ok(());
        }
        let index = usize::try_from(version).unwrap_or(0);
        tx.execute_batch(migrations[index])?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_forward_from_any_older_version_and_keep_data() {
        let mut conn = Connection::open_in_memory().unwrap();
        // A store at version 1 with a session in it, then a (test) version 2 adding a column.
        migrate_with(&mut conn, &MIGRATIONS[..1]).unwrap();
        conn.execute(
            "INSERT INTO sessions (id, created_at, updated_at, updated_ms, cwd, settings)
             VALUES ('s', 't', 't', 1, '/', '{}')",
            [],
        )
        .unwrap();
        let mut newer: Vec<&str> = MIGRATIONS.to_vec();
        newer.push("ALTER TABLE sessions ADD COLUMN note TEXT NOT NULL DEFAULT 'n';");
        migrate_with(&mut conn, &newer).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, newer.len() as i64);
        let (id, note): (String, String) = conn
            .query_row("SELECT id, note FROM sessions", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((id.as_str(), note.as_str()), ("s", "n"));
        // Running the same migrations again changes nothing.
        migrate_with(&mut conn, &newer).unwrap();
        // And the current server refuses the newer file.
        assert!(matches!(
            migrate(&mut conn),
            Err(SchemaError::TooNew(v)) if v == newer.len() as i64
        ));
    }
}
