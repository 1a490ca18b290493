//! Database files: creation, persistence, migration, foreign and damaged files.

use dashflow_checkpoint::{CheckpointError, Checkpointer, ListOptions};
use dashflow_checkpoint_sqlite::{SqliteCheckpointer, SqliteOptions};

use crate::common::record;

#[tokio::test]
async fn open_creates_missing_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/.dashflow/checkpoints.db");
    let checkpointer = SqliteCheckpointer::open(&path).await.unwrap();
    assert_eq!(checkpointer.path(), Some(path.as_path()));
    assert!(path.exists());
}

#[tokio::test]
async fn checkpoints_persist_across_reopening_and_migration_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("persist.db");
    let first = record("t", None, 100);
    let second = record("t", Some(&first), 20);
    {
        let checkpointer = SqliteCheckpointer::open(&path).await.unwrap();
        checkpointer.put(first.clone(), None).await.unwrap();
        checkpointer.put(second.clone(), Some(&first.checkpoint_id)).await.unwrap();
        checkpointer.close().await;
    }
    for _ in 0..3 {
        let checkpointer = SqliteCheckpointer::open(&path).await.unwrap();
        let loaded = checkpointer.load("t", "", None).await.unwrap().unwrap();
        assert_eq!(loaded.chain, vec![first.clone(), second.clone()]);
        checkpointer.close().await;
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = raw.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
    assert_eq!(version, 2, "reopening must not re-run or skip migrations");
    let tables: i64 =
        raw.query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |row| row.get(0)).unwrap();
    assert_eq!(tables, 4, "checkpoints, pending_writes, heads and schemas, once each");
}

#[tokio::test]
async fn the_database_runs_in_wal_mode_with_small_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pragmas.db");
    SqliteCheckpointer::open(&path).await.unwrap().close().await;
    let raw = rusqlite::Connection::open(&path).unwrap();
    let mode: String = raw.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let page_size: i64 = raw.query_row("PRAGMA page_size", [], |row| row.get(0)).unwrap();
    assert_eq!(page_size, 1024);
}

#[tokio::test]
async fn a_database_from_a_newer_schema_is_a_version_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    SqliteCheckpointer::open(&path).await.unwrap().close().await;
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let error = SqliteCheckpointer::open(&path).await.unwrap_err();
    assert!(matches!(error, CheckpointError::VersionMismatch { .. }), "{error}");
    assert!(error.to_string().contains("schema version 99"), "{error}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let error = SqliteCheckpointer::open(&path).await.unwrap_err();
    assert!(matches!(error, CheckpointError::Corrupt { .. }), "{error}");
}

#[tokio::test]
async fn a_locked_database_is_a_retryable_unavailable_and_the_put_succeeds_once_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let options = SqliteOptions::new().busy_timeout(std::time::Duration::ZERO);
    let checkpointer = SqliteCheckpointer::open_with(&path, options).await.unwrap();
    let first = record("t", None, 20);
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("BEGIN IMMEDIATE").unwrap();
    let error = checkpointer.put(first.clone(), None).await.unwrap_err();
    assert!(error.is_retryable(), "a busy database must be retryable: {error}");
    raw.execute_batch("COMMIT").unwrap();
    checkpointer.put(first.clone(), None).await.unwrap();
    assert_eq!(checkpointer.list("t", &ListOptions::new()).await.unwrap(), vec![first]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_put_behind_another_writers_lock_waits_off_the_callers_thread_and_commits_once_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("waiting.db");
    let options = SqliteOptions::new().busy_timeout(std::time::Duration::from_secs(30));
    let checkpointer = SqliteCheckpointer::open_with(&path, options).await.unwrap();
    let first = record("t", None, 20);
    // Another connection (another process, as far as SQLite can tell) holds the write lock.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (locked, is_locked) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn({
        let path = path.clone();
        move || {
            let raw = rusqlite::Connection::open(&path).unwrap();
            raw.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked.send(()).unwrap();
            released.recv().unwrap();
            raw.execute_batch("COMMIT").unwrap();
        }
    });
    is_locked.recv().unwrap();
    let mut put = Box::pin(checkpointer.put(first.clone(), None));
    // The put cannot run inline, so it waits on the connection's thread: this runtime's only
    // thread is free (a put waiting here would come back only after the busy timeout, failed).
    assert!(futures::poll!(&mut put).is_pending());
    release.send(()).unwrap();
    put.await.unwrap();
    holder.join().unwrap();
    assert_eq!(checkpointer.list("t", &ListOptions::new()).await.unwrap(), vec![first]);
}

#[tokio::test]
async fn an_in_memory_database_keeps_the_contract_for_its_lifetime() {
    let checkpointer = SqliteCheckpointer::open_in_memory().await.unwrap();
    assert_eq!(checkpointer.path(), None);
    let first = record("t", None, 20);
    checkpointer.put(first.clone(), None).await.unwrap();
    assert!(checkpointer.put(record("t", None, 20), None).await.unwrap_err().is_conflict());
    assert_eq!(checkpointer.load("t", "", None).await.unwrap().unwrap().chain, vec![first]);
}

#[tokio::test]
async fn a_tiny_delta_costs_at_most_300_database_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let checkpointer = SqliteCheckpointer::open(dir.path().join("size.db")).await.unwrap();
    let mut head = record("thread-1", None, 20);
    checkpointer.put(head.clone(), None).await.unwrap();
    let before = checkpointer.database_bytes().await.unwrap();
    let puts = 2_000;
    for _ in 0..puts {
        let next = record("thread-1", Some(&head), 20);
        checkpointer.put(next.clone(), Some(&head.checkpoint_id)).await.unwrap();
        head = next;
    }
    let per_checkpoint = (checkpointer.database_bytes().await.unwrap() - before) / puts;
    assert!(per_checkpoint <= 300, "{per_checkpoint} database bytes per checkpoint of a 20-byte delta");
}

#[tokio::test]
async fn the_write_ahead_log_stays_bounded_under_a_steady_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bounded.db");
    let checkpointer = SqliteCheckpointer::open(&path).await.unwrap();
    let mut head = record("t", None, 2048);
    checkpointer.put(head.clone(), None).await.unwrap();
    // About four 1 KiB log pages per put: some 16 MiB of log in all.
    for _ in 0..4_000 {
        let next = record("t", Some(&head), 2048);
        checkpointer.put(next.clone(), Some(&head.checkpoint_id)).await.unwrap();
        head = next;
    }
    let wal = std::fs::metadata(dir.path().join("bounded.db-wal")).unwrap().len();
    assert!(wal < 10 * 1024 * 1024, "the log grew to {wal} bytes; it must rewind at about 8 MiB");
    assert_eq!(checkpointer.load("t", "", None).await.unwrap().unwrap().head(), Some(&head));
}
