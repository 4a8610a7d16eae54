//! Unit tests of the store: rows in and out, paging, search, fork, delete, faults.

use std::os::unix::fs::PermissionsExt;

use agent_server_schema::session::{InputItem, Item, StoredTurnStatus, Usage};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;

fn row(id: &str, cwd: &str) -> SessionRow {
    SessionRow {
        id: id.to_string(),
        created_at: "2026-01-01T00:00:00Z".into(),
        updated_at: String::new(),
        cwd: cwd.to_string(),
        title: None,
        archived: false,
        settings: json!({"model": "m"}),
        forked_from: None,
        turn_count: 0,
        running: false,
        last_seq: 0,
        context: None,
    }
}

fn start(turn_id: &str, text: &str) -> TurnStart {
    TurnStart {
        turn_id: turn_id.into(),
        input: vec![InputItem::Text { text: text.into() }],
        title: Some(text.lines().next().unwrap_or_default().to_string()),
    }
}

fn end(turn_id: &str, seq: u64) -> TurnEnd {
    TurnEnd {
        turn_id: turn_id.into(),
        status: StoredTurnStatus::Completed,
        usage: Usage {
            total_tokens: 5,
            ..Usage::default()
        },
        error: None,
        seq,
    }
}

fn message(id: &str, text: &str) -> Item {
    Item::AgentMessage {
        id: id.into(),
        text: text.into(),
    }
}

#[test]
fn a_session_with_turns_items_and_history_reads_back_whole() {
    let store = Store::in_memory().unwrap();
    store.create(&row("s1", "/w")).unwrap();
    store
        .begin_turn(
            "s1",
            &start("t1", "Fix the bug\nplease"),
            "Fix the bug\nplease",
        )
        .unwrap();
    let (a, b) = (message("m1", "one"), message("m2", "two"));
    let items = Progress {
        items: vec![("t1", &a), ("t1", &b)],
        ..Progress::default()
    };
    store.record("s1", &items).unwrap();
    let history = vec![
        json!({"type": "message", "role": "user"}),
        json!({"type": "reasoning", "encrypted_content": "x"}),
    ];
    store.append_history("s1", Some("t1"), &history).unwrap();
    store
        .record(
            "s1",
            &Progress {
                end: Some(end("t1", 9)),
                ..Progress::default()
            },
        )
        .unwrap();

    let session = store.get("s1").unwrap().unwrap();
    assert_eq!(session.title.as_deref(), Some("Fix the bug"));
    assert_eq!(
        (session.turn_count, session.running, session.last_seq),
        (1, false, 9)
    );
    let turns = store.turns("s1").unwrap();
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].items, vec![a, b]);
    assert_eq!(turns[0].status, StoredTurnStatus::Completed);
    assert_eq!(turns[0].usage.total_tokens, 5);
    assert!(turns[0].completed_at.is_some());
    assert_eq!(store.history::<serde_json::Value>("s1").unwrap(), history);
    // A second turn's title does not replace the first one.
    store
        .begin_turn("s1", &start("t2", "other"), "other")
        .unwrap();
    let session = store.get("s1").unwrap().unwrap();
    assert_eq!(
        (session.title.as_deref(), session.running),
        (Some("Fix the bug"), true)
    );
    assert_eq!(
        store.turns("s1").unwrap()[1].status,
        StoredTurnStatus::InProgress
    );
}

#[test]
fn listing_pages_newest_first_and_filters_by_cwd_archived_and_search() {
    let store = Store::in_memory().unwrap();
    for i in 0..7 {
        store
            .create(&row(
                &format!("s{i}"),
                if i % 2 == 0 { "/even" } else { "/odd" },
            ))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    store
        .begin_turn("s3", &start("t", "Ünïcode SEARCH me"), "Ünïcode SEARCH me")
        .unwrap();
    store.set_archived("s5", true).unwrap();
    let mut query = ListQuery {
        limit: 2,
        ..ListQuery::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = store.list(&query).unwrap();
        seen.extend(page.sessions.iter().map(|s| s.id.clone()));
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    // s3 changed last; s5 is archived.
    assert_eq!(seen, ["s3", "s6", "s4", "s2", "s1", "s0"]);
    let ids = |q: ListQuery| -> Vec<String> {
        store
            .list(&q)
            .unwrap()
            .sessions
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(
        ids(ListQuery {
            limit: 50,
            cwd: Some("/odd".into()),
            ..ListQuery::default()
        }),
        ["s3", "s1"]
    );
    assert_eq!(
        ids(ListQuery {
            limit: 50,
            archived: true,
            ..ListQuery::default()
        }),
        ["s5"]
    );
    assert_eq!(
        ids(ListQuery {
            limit: 50,
            search: Some("üNÏcode search".into()),
            ..ListQuery::default()
        }),
        ["s3"]
    );
    store.set_title("s1", "Renamed Thing").unwrap();
    assert_eq!(
        ids(ListQuery {
            limit: 50,
            search: Some("thing".into()),
            ..ListQuery::default()
        }),
        ["s1"]
    );
    assert!(matches!(
        store.list(&ListQuery {
            limit: 5,
            cursor: Some("garbage!".into()),
            ..ListQuery::default()
        }),
        Err(StoreError::BadCursor)
    ));
}

#[test]
fn a_fork_copies_turns_items_and_history_up_to_a_turn_and_leaves_the_source() {
    let store = Store::in_memory().unwrap();
    store.create(&row("src", "/w")).unwrap();
    for t in ["t1", "t2", "t3"] {
        store.begin_turn("src", &start(t, t), t).unwrap();
        let item = message(t, t);
        store
            .record(
                "src",
                &Progress {
                    items: vec![(t, &item)],
                    ..Progress::default()
                },
            )
            .unwrap();
        store
            .append_history("src", Some(t), &[json!({"turn": t})])
            .unwrap();
        store
            .record(
                "src",
                &Progress {
                    end: Some(end(t, 3)),
                    ..Progress::default()
                },
            )
            .unwrap();
    }
    assert_eq!(
        store.fork("src", Some("t2"), &row("dst", "/w")).unwrap(),
        Forked::Done
    );
    let turns = store.turns("dst").unwrap();
    assert_eq!(
        turns.iter().map(|t| t.turn_id.as_str()).collect::<Vec<_>>(),
        ["t1", "t2"]
    );
    assert_eq!(turns[1].items, vec![message("t2", "t2")]);
    assert_eq!(
        store.history::<serde_json::Value>("dst").unwrap(),
        vec![json!({"turn": "t1"}), json!({"turn": "t2"})]
    );
    let dst = store.get("dst").unwrap().unwrap();
    assert_eq!(
        (dst.turn_count, dst.title.as_deref(), dst.last_seq),
        (2, Some("t1"), 0)
    );
    let from = |turn: &str| agent_server_schema::session::ForkedFrom {
        session_id: "src".into(),
        turn_id: turn.into(),
    };
    assert_eq!(dst.forked_from, Some(from("t2")));
    assert_eq!(
        store.fork("src", None, &row("all", "/w")).unwrap(),
        Forked::Done
    );
    assert_eq!(
        store.get("all").unwrap().unwrap().forked_from,
        Some(from("t3"))
    );
    assert_eq!(store.turns("src").unwrap().len(), 3);
    assert_eq!(
        store.fork("src", Some("nope"), &row("x", "/")).unwrap(),
        Forked::NoTurn
    );
    assert_eq!(
        store.fork("nope", None, &row("y", "/")).unwrap(),
        Forked::NoSession
    );
    assert!(store.get("x").unwrap().is_none());

    assert!(store.delete("src", None).unwrap());
    assert!(store.get("src").unwrap().is_none());
    assert!(store.turns("src").unwrap().is_empty());
    assert!(
        store
            .history::<serde_json::Value>("src")
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.turns("dst").unwrap().len(), 2);
}

#[test]
fn the_store_on_disk_is_private_shared_and_survives_reopening() {
    let home = tempfile::tempdir().unwrap();
    let first = Store::open(home.path()).unwrap();
    first.create(&row("s1", "/w")).unwrap();
    let second = Store::open(home.path()).unwrap();
    assert_eq!(second.get("s1").unwrap().unwrap().cwd, "/w");
    let dir = home.path().join("sessions");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    let lease = first.lease("s1").unwrap();
    assert!(second.is_leased("s1"));
    assert!(
        matches!(second.lease("s1"), Err(StoreError::InUse(Some(pid))) if pid == std::process::id())
    );
    drop(lease);
    assert!(!second.is_leased("s1"));
}

#[test]
fn a_corrupt_or_newer_file_is_refused_by_name_and_left_as_it_is() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("sessions");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join(DB_FILE);
    let garbage = b"this is not a database at all, just some text that is long enough".repeat(100);
    std::fs::write(&path, &garbage).unwrap();
    let err = Store::open(home.path()).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("not a valid SQLite database"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage);

    std::fs::remove_file(&path).unwrap();
    drop(Store::open(home.path()).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Store::open(home.path()).unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("newer"),
        "{err}"
    );
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99);
}

#[test]
fn connections_opening_a_new_store_at_the_same_moment_all_get_it() {
    // Some of SQLite's locks (switching a new file to WAL, upgrading a read lock while another
    // connection does the same) fail at once instead of waiting; opening must try again.
    for _ in 0..20 {
        let home = tempfile::tempdir().unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let home = home.path().to_path_buf();
                let barrier = std::sync::Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    Store::open(&home).map(|_| ()).map_err(|e| e.to_string())
                })
            })
            .collect();
        for opener in openers {
            assert_eq!(opener.join().unwrap(), Ok(()));
        }
    }
}

#[test]
fn a_lazy_store_that_failed_to_open_opens_once_the_home_is_mended() {
    let home = tempfile::tempdir().unwrap();
    let sessions = home.path().join("sessions");
    std::fs::write(&sessions, "not a directory\n").unwrap();
    let lazy = LazyStore::new(home.path().to_path_buf());
    for _ in 0..2 {
        assert!(matches!(lazy.get(), Err(StoreError::Unusable { .. })));
    }
    assert!(lazy.opened().is_none());
    assert_eq!(
        std::fs::read_to_string(&sessions).unwrap(),
        "not a directory\n"
    );
    std::fs::remove_file(&sessions).unwrap();
    let store = lazy.get().unwrap();
    assert_eq!(store.path(), sessions.join(DB_FILE));
    assert!(lazy.opened().is_some());
}
