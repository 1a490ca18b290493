//! R22 and R4: a full database fails puts cleanly, corrupts nothing and recovers when space
//! returns; a put that fails half-way leaves neither its record nor a moved head.

use dashflow_checkpoint::{CheckpointError, CheckpointRecord, Checkpointer, ListOptions, PendingWrite};
use dashflow_checkpoint_sqlite::{SqliteCheckpointer, SqliteOptions};

use crate::common::record;

/// Puts 2 KiB deltas until one fails; returns the stored line and the failed record.
async fn fill(checkpointer: &SqliteCheckpointer) -> (Vec<CheckpointRecord>, CheckpointRecord, CheckpointError) {
    let mut stored: Vec<CheckpointRecord> = Vec::new();
    for _ in 0..1_000 {
        let next = record("t", stored.last(), 2048);
        match checkpointer.put(next.clone(), stored.last().map(|head| &head.checkpoint_id)).await {
            Ok(()) => stored.push(next),
            Err(error) => return (stored, next, error),
        }
    }
    panic!("1,000 puts of 2 KiB never filled a database capped at 64 KiB");
}

/// The error and its causes on one line.
fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text = format!("{text}: {next}");
        cause = next.source();
    }
    text
}

#[tokio::test]
async fn a_batch_that_fills_the_database_keeps_the_records_before_the_failed_one_and_names_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions::new().max_size_bytes(64 * 1024);
    let checkpointer = SqliteCheckpointer::open_with(dir.path().join("batch.db"), options).await.unwrap();
    let mut batch: Vec<CheckpointRecord> = Vec::new();
    for _ in 0..200 {
        batch.push(record("t", batch.last(), 2048));
    }
    let puts = batch.iter().enumerate().map(|(index, record)| {
        (record.clone(), index.checked_sub(1).map(|before| batch[before].checkpoint_id.clone()))
    });
    let error = checkpointer.put_batch(puts.collect()).await.unwrap_err();
    // SQLite rolls a transaction back whole when the database fills: the cause is still the
    // full database, never the commit of a transaction that is gone.
    let report = report(&error);
    assert!(report.contains("SQLite ran out of space"), "{report}");
    assert!(!report.contains("no transaction is active"), "{report}");
    let mut listed = checkpointer.list("t", &ListOptions::new()).await.unwrap();
    listed.reverse();
    assert!(listed.len() >= 5, "only {} records fitted", listed.len());
    assert_eq!(listed, batch[..listed.len()], "the records before the failed one, in order, byte-exact");
    let head = checkpointer.load("t", "", None).await.unwrap().unwrap();
    assert_eq!(head.head().unwrap().checkpoint_id, listed.last().unwrap().checkpoint_id);
}

#[tokio::test]
async fn a_full_database_fails_puts_cleanly_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions::new().max_size_bytes(64 * 1024);
    let checkpointer = SqliteCheckpointer::open_with(dir.path().join("full.db"), options).await.unwrap();
    let (stored, failed, error) = fill(&checkpointer).await;
    assert!(stored.len() >= 5, "only {} puts fitted into 64 KiB", stored.len());
    assert!(matches!(error, CheckpointError::Unavailable { retryable: false, .. }), "{error}");
    let report = report(&error);
    assert!(report.contains("SQLite ran out of space"), "the error must say the database is full: {report}");
    assert_eq!(report.matches("database or disk is full").count(), 1, "SQLite's own words, once: {report}");

    // Nothing of the failed put is visible, and every earlier checkpoint loads byte-exact.
    assert!(checkpointer.load("t", "", Some(&failed.checkpoint_id)).await.unwrap().is_none());
    let listed = checkpointer.list("t", &ListOptions::new()).await.unwrap();
    assert_eq!(listed, stored.iter().rev().cloned().collect::<Vec<_>>());
    for record in &stored {
        let loaded = checkpointer.load("t", "", Some(&record.checkpoint_id)).await.unwrap().unwrap();
        assert_eq!(loaded.head(), Some(record));
    }
    let head = stored.last().unwrap();
    assert_eq!(checkpointer.load("t", "", None).await.unwrap().unwrap().head(), Some(head));

    // Pending writes fail just as cleanly.
    let write = PendingWrite { task_id: "task".into(), node: "node".into(), blob: vec![7; 16 * 1024] };
    let error = checkpointer.put_writes("t", "", &head.checkpoint_id, vec![write.clone()]).await.unwrap_err();
    assert!(matches!(error, CheckpointError::Unavailable { retryable: false, .. }), "{error}");

    // Space comes back: the run resumes from the last stored head.
    checkpointer.set_max_size(None).await.unwrap();
    checkpointer.put(failed.clone(), Some(&head.checkpoint_id)).await.unwrap();
    let next = record("t", Some(&failed), 2048);
    checkpointer.put(next.clone(), Some(&failed.checkpoint_id)).await.unwrap();
    checkpointer.put_writes("t", "", &next.checkpoint_id, vec![write.clone()]).await.unwrap();
    let loaded = checkpointer.load("t", "", None).await.unwrap().unwrap();
    assert_eq!(loaded.head(), Some(&next));
    assert_eq!(loaded.pending_writes, vec![write]);
    assert_eq!(checkpointer.list("t", &ListOptions::new()).await.unwrap().len(), stored.len() + 2);
}

#[tokio::test]
async fn a_put_that_fails_after_moving_the_head_leaves_neither_record_nor_head_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("atomic.db");
    let checkpointer = SqliteCheckpointer::open(&path).await.unwrap();
    let first = record("t", None, 20);
    checkpointer.put(first.clone(), None).await.unwrap();

    // The put moves the head first and inserts the record second; make the insert fail.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "CREATE TRIGGER fail_insert BEFORE INSERT ON checkpoints BEGIN SELECT RAISE(ABORT, 'injected'); END;",
    )
    .unwrap();
    let doomed = record("t", Some(&first), 20);
    let error = checkpointer.put(doomed.clone(), Some(&first.checkpoint_id)).await.unwrap_err();
    assert!(!error.is_conflict(), "an injected failure is not a conflict: {error}");
    let new_thread = record("fresh", None, 20);
    checkpointer.put(new_thread.clone(), None).await.unwrap_err();

    // Neither the record nor the head change survived.
    assert!(checkpointer.load("t", "", Some(&doomed.checkpoint_id)).await.unwrap().is_none());
    assert_eq!(checkpointer.load("t", "", None).await.unwrap().unwrap().head(), Some(&first));
    assert!(checkpointer.load("fresh", "", None).await.unwrap().is_none());
    let heads: Vec<(String, String)> = raw
        .prepare("SELECT thread_id, head FROM heads ORDER BY thread_id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(heads, vec![("t".to_owned(), first.checkpoint_id.to_string())]);

    // With the fault gone, the same puts succeed against the unchanged heads.
    raw.execute_batch("DROP TRIGGER fail_insert;").unwrap();
    checkpointer.put(doomed.clone(), Some(&first.checkpoint_id)).await.unwrap();
    checkpointer.put(new_thread, None).await.unwrap();
    assert_eq!(checkpointer.load("t", "", None).await.unwrap().unwrap().head(), Some(&doomed));
}
