//! The statements: one function per thing the session layer asks of the store.

use agent_server_schema::session::{
    ForkedFrom, InputItem, Item, StoredTurnStatus, Turn, TurnError, Usage,
};
use base64::Engine;
use rusqlite::{OptionalExtension, Row, Transaction, params};
use serde_json::Value;

use super::{QueryError, Store, StoreError};

/// A session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// The id.
    pub id: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339); set by the store on every change.
    pub updated_at: String,
    /// Working directory.
    pub cwd: String,
    /// Title, once known.
    pub title: Option<String>,
    /// Hidden from the default listing.
    pub archived: bool,
    /// The session layer's settings, as JSON.
    pub settings: Value,
    /// Where a fork came from.
    pub forked_from: Option<ForkedFrom>,
    /// Number of turns.
    pub turn_count: u64,
    /// Whether a turn was running when last written.
    pub running: bool,
    /// The highest `seq` the session may have sent.
    pub last_seq: u64,
    /// What the model was told about its context (the session layer's JSON), once known.
    pub context: Option<Value>,
}

/// What `list` is asked for.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Where the previous page ended (opaque).
    pub cursor: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Exact cwd.
    pub cwd: Option<String>,
    /// Archived ones instead of the others.
    pub archived: bool,
    /// Case-insensitive substring of the title or of any user text.
    pub search: Option<String>,
}

/// One page of sessions, newest first.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// The sessions.
    pub sessions: Vec<SessionRow>,
    /// The cursor of the next page.
    pub next_cursor: Option<String>,
}

/// A turn beginning.
#[derive(Debug, Clone)]
pub struct TurnStart {
    /// Its id.
    pub turn_id: String,
    /// Its input.
    pub input: Vec<InputItem>,
    /// The session's title if it has none yet.
    pub title: Option<String>,
}

/// A turn ending.
#[derive(Debug, Clone)]
pub struct TurnEnd {
    /// Its id.
    pub turn_id: String,
    /// How it ended.
    pub status: StoredTurnStatus,
    /// Its usage.
    pub usage: Usage,
    /// Its error.
    pub error: Option<TurnError>,
    /// The `seq` of its `turnCompleted`, which becomes the session's exact high-water mark;
    /// 0 leaves the mark as it is (a turn ended by crash recovery sent nothing).
    pub seq: u64,
}

/// What a batch of events completed.
#[derive(Debug, Clone, Default)]
pub struct Progress<'a> {
    /// Completed items with their turn ids, in order.
    pub items: Vec<(&'a str, &'a Item)>,
    /// A turn's end.
    pub end: Option<TurnEnd>,
    /// A new upper bound of the `seq` the session may have sent.
    pub reserve_seq: Option<u64>,
}

/// What `fork` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The copy was made.
    Done,
    /// No such source session.
    NoSession,
    /// The source has no such turn.
    NoTurn,
}

fn now() -> (String, i64) {
    let now = chrono::Utc::now();
    (
        now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        now.timestamp_millis(),
    )
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, QueryError> {
    Ok(serde_json::to_string(value)?)
}

fn status_name(status: StoredTurnStatus) -> &'static str {
    match status {
        StoredTurnStatus::InProgress => "inProgress",
        StoredTurnStatus::Completed => "completed",
        StoredTurnStatus::Interrupted => "interrupted",
        StoredTurnStatus::Failed => "failed",
    }
}

const SESSION_COLUMNS: &str = "id, created_at, updated_at, cwd, title, archived, settings, \
     forked_from_session, forked_from_turn, turn_count, running, last_seq, updated_ms, context";

fn session_row(row: &Row<'_>) -> Result<(SessionRow, i64), QueryError> {
    let settings: String = row.get(6)?;
    let forked_session: Option<String> = row.get(7)?;
    let forked_turn: Option<String> = row.get(8)?;
    let session = SessionRow {
        id: row.get(0)?,
        created_at: row.get(1)?,
        updated_at: row.get(2)?,
        cwd: row.get(3)?,
        title: row.get(4)?,
        archived: row.get(5)?,
        settings: serde_json::from_str(&settings)?,
        forked_from: forked_session
            .zip(forked_turn)
            .map(|(session_id, turn_id)| ForkedFrom {
                session_id,
                turn_id,
            }),
        turn_count: u64::try_from(row.get::<_, i64>(9)?).unwrap_or(0),
        running: row.get(10)?,
        last_seq: u64::try_from(row.get::<_, i64>(11)?).unwrap_or(0),
        context: match row.get::<_, Option<String>>(13)? {
            Some(text) => Some(serde_json::from_str(&text)?),
            None => None,
        },
    };
    Ok((session, row.get(12)?))
}

fn encode_cursor(updated_ms: i64, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{updated_ms}:{id}"))
}

fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (ms, id) = text.split_once(':')?;
    Some((ms.parse().ok()?, id.to_string()))
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Writes a new session.
    pub fn create(&self, session: &SessionRow) -> Result<SessionRow, StoreError> {
        let (updated_at, updated_ms) = now();
        let mut row = session.clone();
        row.updated_at = updated_at;
        self.write(|tx| {
            insert_session(tx, &row, updated_ms)?;
            Ok(())
        })?;
        Ok(row)
    }

    /// One session.
    pub fn get(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        self.read(|tx| get_session(tx, id))
    }

    /// A page of sessions, newest change first.
    pub fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        let after = match &query.cursor {
            Some(cursor) => Some(decode_cursor(cursor).ok_or(StoreError::BadCursor)?),
            None => None,
        };
        self.read(|tx| list_sessions(tx, query, after))
    }

    /// The turns of a session with their items, oldest first.
    pub fn turns(&self, id: &str) -> Result<Vec<Turn>, StoreError> {
        self.read(|tx| read_turns(tx, id))
    }

    /// The model-facing history of a session, in order, each item decoded straight from its
    /// stored text into `T` (no intermediate `Value` for the thousands of items of a long one).
    pub fn history<T: serde::de::DeserializeOwned>(&self, id: &str) -> Result<Vec<T>, StoreError> {
        self.read(|tx| {
            let mut stmt =
                tx.prepare_cached("SELECT body FROM history WHERE session_id = ?1 ORDER BY rowid")?;
            let mut rows = stmt.query(params![id])?;
            let mut history = Vec::new();
            while let Some(row) = rows.next()? {
                let body: String = row.get(0)?;
                history.push(serde_json::from_str(&body)?);
            }
            Ok(history)
        })
    }

    /// Records a turn's start: its row, the turn count, the search text, the title if unset.
    pub fn begin_turn(
        &self,
        id: &str,
        turn: &TurnStart,
        user_text: &str,
    ) -> Result<String, StoreError> {
        let (updated_at, updated_ms) = now();
        let input = to_json(&turn.input).map_err(|e| self.query_error(e, "written"))?;
        let stamp = updated_at.clone();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO turns (session_id, turn_id, status, input, started_at)
                 VALUES (?1, ?2, 'inProgress', ?3, ?4)",
                params![id, turn.turn_id, input, stamp],
            )?;
            tx.execute(
                "UPDATE sessions SET turn_count = turn_count + 1, running = 1,
                     updated_at = ?2, updated_ms = ?3,
                     user_text = user_text || char(10) || ?4,
                     title = COALESCE(title, ?5),
                     title_lower = CASE WHEN title IS NULL THEN ?6 ELSE title_lower END
                 WHERE id = ?1",
                params![
                    id,
                    stamp,
                    updated_ms,
                    user_text.to_lowercase(),
                    turn.title,
                    turn.title.as_deref().unwrap_or_default().to_lowercase()
                ],
            )?;
            Ok(())
        })?;
        Ok(updated_at)
    }

    /// Records what a batch of events completed, in one transaction: items, a turn's end,
    /// and a new high-water mark of `seq`.
    pub fn record(&self, id: &str, progress: &Progress<'_>) -> Result<(), StoreError> {
        let (updated_at, updated_ms) = now();
        self.write(|tx| {
            if !progress.items.is_empty() {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO items (session_id, turn_id, body) VALUES (?1, ?2, ?3)",
                )?;
                for (turn_id, item) in &progress.items {
                    stmt.execute(params![id, turn_id, to_json(item)?])?;
                }
            }
            if let Some(end) = &progress.end {
                finish_turn(tx, id, end, &updated_at, updated_ms)?;
            }
            if let Some(seq) = progress.reserve_seq {
                tx.execute(
                    "UPDATE sessions SET last_seq = MAX(last_seq, ?2) WHERE id = ?1",
                    params![id, i64_of(seq)],
                )?;
            }
            Ok(())
        })
    }

    /// Appends items to the model-facing history.
    pub fn append_history(
        &self,
        id: &str,
        turn_id: Option<&str>,
        items: &[Value],
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO history (session_id, turn_id, body) VALUES (?1, ?2, ?3)",
            )?;
            for item in items {
                stmt.execute(params![id, turn_id, to_json(item)?])?;
            }
            Ok(())
        })
    }

    /// Replaces the whole model-facing history (compaction); the turns are kept for reading.
    pub fn replace_history(
        &self,
        id: &str,
        turn_id: Option<&str>,
        items: &[Value],
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute("DELETE FROM history WHERE session_id = ?1", params![id])?;
            let mut stmt = tx.prepare_cached(
                "INSERT INTO history (session_id, turn_id, body) VALUES (?1, ?2, ?3)",
            )?;
            for item in items {
                stmt.execute(params![id, turn_id, to_json(item)?])?;
            }
            Ok(())
        })
    }

    /// New settings and cwd (a resume with overrides); also unarchives. False when unknown.
    pub fn update_settings(
        &self,
        id: &str,
        cwd: &str,
        settings: &Value,
    ) -> Result<bool, StoreError> {
        let (updated_at, updated_ms) = now();
        let settings = to_json(settings).map_err(|e| self.query_error(e, "written"))?;
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE sessions SET cwd = ?2, settings = ?3, archived = 0,
                     updated_at = ?4, updated_ms = ?5 WHERE id = ?1",
                params![id, cwd, settings, updated_at, updated_ms],
            )? == 1)
        })
    }

    /// Stores what the model has been told about its context (the session layer's JSON).
    pub fn set_context(&self, id: &str, context: &Value) -> Result<(), StoreError> {
        let context = to_json(context).map_err(|e| self.query_error(e, "written"))?;
        self.write(|tx| {
            tx.execute(
                "UPDATE sessions SET context = ?2 WHERE id = ?1",
                params![id, context],
            )?;
            Ok(())
        })
    }

    /// Sets the title. False when the session is unknown.
    pub fn set_title(&self, id: &str, title: &str) -> Result<bool, StoreError> {
        let (updated_at, updated_ms) = now();
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE sessions SET title = ?2, title_lower = ?3, updated_at = ?4,
                     updated_ms = ?5 WHERE id = ?1",
                params![id, title, title.to_lowercase(), updated_at, updated_ms],
            )? == 1)
        })
    }

    /// Archives or unarchives. False when the session is unknown.
    pub fn set_archived(&self, id: &str, archived: bool) -> Result<bool, StoreError> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE sessions SET archived = ?2 WHERE id = ?1",
                params![id, archived],
            )? == 1)
        })
    }

    /// Copies `source`'s turns up to and including `upto` (default all), their items and
    /// history into the new session `new`, in one transaction.
    pub fn fork(
        &self,
        source: &str,
        upto: Option<&str>,
        new: &SessionRow,
    ) -> Result<Forked, StoreError> {
        let (_, updated_ms) = now();
        self.write(|tx| fork(tx, source, upto, new, updated_ms))
    }
}

fn finish_turn(
    tx: &Transaction<'_>,
    id: &str,
    end: &TurnEnd,
    stamp: &str,
    updated_ms: i64,
) -> Result<(), QueryError> {
    let error = match &end.error {
        Some(error) => Some(to_json(error)?),
        None => None,
    };
    tx.execute(
        "UPDATE turns SET status = ?3, usage = ?4, error = ?5, completed_at = ?6
         WHERE session_id = ?1 AND turn_id = ?2",
        params![
            id,
            end.turn_id,
            status_name(end.status),
            to_json(&end.usage)?,
            error,
            stamp
        ],
    )?;
    tx.execute(
        "UPDATE sessions SET running = EXISTS (SELECT 1 FROM turns WHERE session_id = ?1 AND status = 'inProgress'),
             updated_at = ?2, updated_ms = ?3, last_seq = CASE WHEN ?4 > 0 THEN ?4 ELSE last_seq END
         WHERE id = ?1",
        params![id, stamp, updated_ms, i64_of(end.seq)],
    )?;
    Ok(())
}

fn insert_session(
    tx: &Transaction<'_>,
    row: &SessionRow,
    updated_ms: i64,
) -> Result<(), QueryError> {
    tx.execute(
        "INSERT INTO sessions (id, created_at, updated_at, updated_ms, cwd, title, title_lower,
             archived, settings, forked_from_session, forked_from_turn, turn_count, last_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            row.id,
            row.created_at,
            row.updated_at,
            updated_ms,
            row.cwd,
            row.title,
            row.title.as_deref().unwrap_or_default().to_lowercase(),
            row.archived,
            to_json(&row.settings)?,
            row.forked_from.as_ref().map(|f| f.session_id.as_str()),
            row.forked_from.as_ref().map(|f| f.turn_id.as_str()),
            i64_of(row.turn_count),
            i64_of(row.last_seq),
        ],
    )?;
    Ok(())
}

fn get_session(tx: &Transaction<'_>, id: &str) -> Result<Option<SessionRow>, QueryError> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1");
    let mut stmt = tx.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![id])?;
    match rows.next()? {
        Some(row) => Ok(Some(session_row(row)?.0)),
        None => Ok(None),
    }
}

fn list_sessions(
    tx: &Transaction<'_>,
    query: &ListQuery,
    after: Option<(i64, String)>,
) -> Result<ListPage, QueryError> {
    let limit = query.limit.clamp(1, 500);
    let (after_ms, after_id) = after.unwrap_or((i64::MAX, String::new()));
    let unbounded = query.cursor.is_none();
    let search = query.search.as_deref().map(str::to_lowercase);
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions
         WHERE archived = ?1
           AND (?2 OR updated_ms < ?3 OR (updated_ms = ?3 AND id < ?4))
           AND (?5 IS NULL OR cwd = ?5)
           AND (?6 IS NULL OR instr(title_lower, ?6) > 0 OR instr(user_text, ?6) > 0)
         ORDER BY updated_ms DESC, id DESC
         LIMIT ?7"
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![
        query.archived,
        unbounded,
        after_ms,
        after_id,
        query.cwd,
        search,
        i64::from(limit) + 1
    ])?;
    let mut sessions = Vec::new();
    let mut last_key = None;
    while let Some(row) = rows.next()? {
        if sessions.len() == limit as usize {
            let next_cursor = last_key.map(|(ms, id): (i64, String)| encode_cursor(ms, &id));
            return Ok(ListPage {
                sessions,
                next_cursor,
            });
        }
        let (session, updated_ms) = session_row(row)?;
        last_key = Some((updated_ms, session.id.clone()));
        sessions.push(session);
    }
    Ok(ListPage {
        sessions,
        next_cursor: None,
    })
}

fn parse_status(text: &str) -> Result<StoredTurnStatus, QueryError> {
    Ok(serde_json::from_value(Value::String(text.to_string()))?)
}

fn read_turns(tx: &Transaction<'_>, id: &str) -> Result<Vec<Turn>, QueryError> {
    let mut stmt = tx.prepare_cached(
        "SELECT turn_id, status, input, usage, error, started_at, completed_at
         FROM turns WHERE session_id = ?1 ORDER BY rowid",
    )?;
    let mut rows = stmt.query(params![id])?;
    let mut turns = Vec::new();
    let mut index = std::collections::HashMap::new();
    while let Some(row) = rows.next()? {
        let turn_id: String = row.get(0)?;
        let status: String = row.get(1)?;
        let input: String = row.get(2)?;
        let usage: Option<String> = row.get(3)?;
        let error: Option<String> = row.get(4)?;
        index.insert(turn_id.clone(), turns.len());
        turns.push(Turn {
            turn_id,
            status: parse_status(&status)?,
            input: serde_json::from_str(&input)?,
            items: Vec::new(),
            usage: match usage {
                Some(usage) => serde_json::from_str(&usage)?,
                None => Usage::default(),
            },
            error: match error {
                Some(error) => Some(serde_json::from_str(&error)?),
                None => None,
            },
            started_at: row.get(5)?,
            completed_at: row.get(6)?,
        });
    }
    let mut stmt =
        tx.prepare_cached("SELECT turn_id, body FROM items WHERE session_id = ?1 ORDER BY rowid")?;
    let mut rows = stmt.query(params![id])?;
    while let Some(row) = rows.next()? {
        let turn_id: String = row.get(0)?;
        let body: String = row.get(1)?;
        if let Some(&i) = index.get(&turn_id) {
            turns[i].items.push(serde_json::from_str(&body)?);
        }
    }
    Ok(turns)
}

fn fork(
    tx: &Transaction<'_>,
    source: &str,
    upto: Option<&str>,
    new: &SessionRow,
    updated_ms: i64,
) -> Result<Forked, QueryError> {
    let Some(src) = get_session(tx, source)? else {
        return Ok(Forked::NoSession);
    };
    let last_rowid: Option<i64> = match upto {
        Some(turn_id) => {
            let found = tx
                .query_row(
                    "SELECT rowid FROM turns WHERE session_id = ?1 AND turn_id = ?2",
                    params![source, turn_id],
                    |r| r.get(0),
                )
                .optional()?;
            match found {
                Some(rowid) => Some(rowid),
                None => return Ok(Forked::NoTurn),
            }
        }
        None => None,
    };
    let last_turn: Option<String> = match upto {
        Some(turn_id) => Some(turn_id.to_string()),
        None => tx
            .query_row(
                "SELECT turn_id FROM turns WHERE session_id = ?1 ORDER BY rowid DESC LIMIT 1",
                params![source],
                |r| r.get(0),
            )
            .optional()?,
    };
    let mut row = new.clone();
    row.title = row.title.or(src.title);
    row.forked_from = last_turn.map(|turn_id| ForkedFrom {
        session_id: source.to_string(),
        turn_id,
    });
    insert_session(tx, &row, updated_ms)?;
    let copied = tx.execute(
        "INSERT INTO turns (session_id, turn_id, status, input, usage, error, started_at, completed_at)
         SELECT ?1, turn_id, status, input, usage, error, started_at, completed_at FROM turns
         WHERE session_id = ?2 AND (?3 IS NULL OR rowid <= ?3) ORDER BY rowid",
        params![new.id, source, last_rowid],
    )?;
    tx.execute(
        "INSERT INTO items (session_id, turn_id, body)
         SELECT ?1, turn_id, body FROM items
         WHERE session_id = ?2 AND turn_id IN (SELECT turn_id FROM turns WHERE session_id = ?1)
         ORDER BY rowid",
        params![new.id, source],
    )?;
    tx.execute(
        "INSERT INTO history (session_id, turn_id, body)
         SELECT ?1, turn_id, body FROM history
         WHERE session_id = ?2
           AND (turn_id IS NULL OR turn_id IN (SELECT turn_id FROM turns WHERE session_id = ?1))
         ORDER BY rowid",
        params![new.id, source],
    )?;
    tx.execute(
        "UPDATE sessions SET turn_count = ?2, running = EXISTS (SELECT 1 FROM turns WHERE session_id = ?1 AND status = 'inProgress'),
             user_text = (SELECT user_text FROM sessions WHERE id = ?3),
             context = (SELECT context FROM sessions WHERE id = ?3)
         WHERE id = ?1",
        params![new.id, i64::try_from(copied).unwrap_or(0), source],
    )?;
    Ok(Forked::Done)
}

pub(super) fn delete(tx: &Transaction<'_>, id: &str) -> Result<bool, QueryError> {
    tx.execute("DELETE FROM items WHERE session_id = ?1", params![id])?;
    tx.execute("DELETE FROM history WHERE session_id = ?1", params![id])?;
    tx.execute("DELETE FROM turns WHERE session_id = ?1", params![id])?;
    Ok(tx.execute("DELETE FROM sessions WHERE id = ?1", params![id])? == 1)
}
