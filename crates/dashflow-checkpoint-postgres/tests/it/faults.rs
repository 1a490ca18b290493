//! R21 and R4 on PostgreSQL: sessions killed under the writer, and a put interrupted inside
//! its transaction. Only whole records ever become visible, every failure is typed, and the
//! pool recovers.

use std::collections::HashMap;

use dashflow_checkpoint::{CheckpointError, CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer, ListOptions};
use dashflow_checkpoint_postgres::PostgresCheckpointer;
use dashflow_checkpoint_postgres::testing::TestDatabase;
use sqlx::Connection;

use crate::support::{
    assert_linear, committed_head, committed_record, database, hold_key_of, noise, record, session_waiting_on_a_lock,
};

/// The head as stored, reloading through transient failures (bounded).
async fn reload_head(checkpointer: &PostgresCheckpointer, thread: &str) -> Option<CheckpointRecord> {
    for _ in 0..50 {
        match checkpointer.load(thread, "", None).await {
            Ok(loaded) => return loaded.and_then(|loaded| loaded.head().cloned()),
            Err(error) if error.is_retryable() => continue,
            Err(error) => panic!("reloading the head failed for good: {error}"),
        }
    }
    panic!("the head could not be reloaded in 50 tries");
}

/// Writes `PUTS` records into `thread` while another task terminates the writer's sessions
/// after each of its steps (wherever the writer then is: between puts, inside one, or
/// retrying one), then checks what R21 promises.
async fn write_through_kills(db: &TestDatabase, checkpointer: &PostgresCheckpointer, thread: &str) {
    const PUTS: usize = 150;
    let (progress, mut progressed) = tokio::sync::watch::channel(0usize);
    let killer = {
        let (mut admin, application_name) = (db.admin().await, db.schema().to_owned());
        tokio::spawn(async move {
            let mut terminated = 0i64;
            while progressed.changed().await.is_ok() {
                terminated += sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = $1",
                )
                .bind(&application_name)
                .fetch_one(&mut admin)
                .await
                .unwrap();
            }
            terminated
        })
    };

    let mut head: Option<CheckpointRecord> = None;
    let mut acknowledged: Vec<CheckpointRecord> = Vec::new();
    let mut unacknowledged: Vec<CheckpointRecord> = Vec::new();
    for step in 0..PUTS {
        let kind = if step % 4 == 0 { CheckpointKind::Snapshot } else { CheckpointKind::Delta };
        let mut next = record(thread, "", head.as_ref(), kind);
        next.blob = noise(1 + step * 97, step as u64);
        match checkpointer.put(next.clone(), head.as_ref().map(|head| &head.checkpoint_id)).await {
            Ok(()) => {
                acknowledged.push(next.clone());
                head = Some(next);
            }
            Err(error) if error.is_retryable() => {
                unacknowledged.push(next);
                head = reload_head(checkpointer, thread).await;
            }
            Err(error) => panic!("step {step}: a put failed with a non-retryable error: {error}"),
        }
        let _ = progress.send(step + 1);
    }
    drop(progress);
    let terminated = killer.await.unwrap();
    println!("{thread}: {terminated} sessions terminated, {} puts failed with a retryable error", unacknowledged.len());

    // The pool recovered: later puts succeed.
    for _ in 0..10 {
        let next = record(thread, "", head.as_ref(), CheckpointKind::Delta);
        checkpointer.put(next.clone(), head.as_ref().map(|head| &head.checkpoint_id)).await.unwrap();
        acknowledged.push(next.clone());
        head = Some(next);
    }

    // Every acknowledged record is stored byte for byte; whatever else is stored is a whole
    // record that a failed put sent; the history is one line and every record loads.
    let listed = checkpointer.list(thread, &ListOptions::new()).await.unwrap();
    let sent: HashMap<&CheckpointId, &CheckpointRecord> =
        acknowledged.iter().chain(&unacknowledged).map(|record| (&record.checkpoint_id, record)).collect();
    for record in &listed {
        assert_eq!(
            Some(&record),
            sent.get(&record.checkpoint_id),
            "stored {} differs from what was put",
            record.checkpoint_id
        );
    }
    for record in &acknowledged {
        assert!(listed.contains(record), "acknowledged {} is missing", record.checkpoint_id);
    }
    let head = head.unwrap();
    assert_linear(&listed, &head.checkpoint_id);
    assert_eq!(checkpointer.load(thread, "", None).await.unwrap().unwrap().head(), Some(&head));
    for record in &listed {
        let loaded = checkpointer.load(thread, "", Some(&record.checkpoint_id)).await.unwrap().unwrap();
        assert_eq!(loaded.head(), Some(record));
        assert_eq!(loaded.chain[0].kind, CheckpointKind::Snapshot);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_sessions_during_writes_is_retried_transparently_and_keeps_whole_records() {
    let db = database!("killing_sessions_during_writes_is_retried_transparently_and_keeps_whole_records");
    let checkpointer = db.checkpointer().await;
    write_through_kills(&db, &checkpointer, "retried").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_sessions_during_writes_without_retries_gives_only_typed_retryable_errors() {
    let db = database!("killing_sessions_during_writes_without_retries_gives_only_typed_retryable_errors");
    // One try per operation: every kill that lands inside a put reaches the writer.
    let checkpointer = db.checkpointer().await.with_max_attempts(1);
    write_through_kills(&db, &checkpointer, "unretried").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_killed_inside_its_transaction_leaves_neither_the_record_nor_the_head_change() {
    let db = database!("a_put_killed_inside_its_transaction_leaves_neither_the_record_nor_the_head_change");
    // One try only, so that the interrupted put reports its failure instead of retrying.
    let checkpointer = db.checkpointer().await.with_max_attempts(1);
    let first = record("r4", "", None, CheckpointKind::Snapshot);
    checkpointer.put(first.clone(), None).await.unwrap();
    let next = record("r4", "", Some(&first), CheckpointKind::Delta);

    let (mut blocker, mut observer) = (db.admin().await, db.admin().await);
    hold_key_of(&mut blocker, &next).await;
    let put = tokio::spawn({
        let (checkpointer, next, expected) = (checkpointer.clone(), next.clone(), first.checkpoint_id.clone());
        async move { checkpointer.put(next, Some(&expected)).await }
    });
    let pid = session_waiting_on_a_lock(&mut observer, db.schema()).await;
    // The put has moved the head inside its statement and now waits to insert the record.
    let terminated: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(&mut observer).await.unwrap();
    assert!(terminated);
    let error = put.await.unwrap().unwrap_err();
    assert!(matches!(error, CheckpointError::Unavailable { retryable: true, .. }), "{error}");

    let head = first.checkpoint_id.to_string();
    assert_eq!(committed_head(&mut observer, "r4", "").await, Some(head.clone()));
    assert!(!committed_record(&mut observer, "r4", &next.checkpoint_id).await);
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    assert_eq!(committed_head(&mut observer, "r4", "").await, Some(head));
    assert!(!committed_record(&mut observer, "r4", &next.checkpoint_id).await);
    assert_eq!(checkpointer.load("r4", "", None).await.unwrap().unwrap().chain, vec![first.clone()]);

    // Trying again works: the pool replaced the killed session.
    checkpointer.put(next.clone(), Some(&first.checkpoint_id)).await.unwrap();
    assert_eq!(checkpointer.load("r4", "", None).await.unwrap().unwrap().chain, vec![first, next]);
    blocker.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_whose_future_is_dropped_mid_statement_is_applied_whole_or_not_at_all() {
    let db = database!("a_put_whose_future_is_dropped_mid_statement_is_applied_whole_or_not_at_all");
    let checkpointer = db.checkpointer().await;
    let first = record("r19", "", None, CheckpointKind::Snapshot);
    checkpointer.put(first.clone(), None).await.unwrap();
    let next = record("r19", "", Some(&first), CheckpointKind::Delta);

    let (mut blocker, mut observer) = (db.admin().await, db.admin().await);
    hold_key_of(&mut blocker, &next).await;
    let put = tokio::spawn({
        let (checkpointer, next, expected) = (checkpointer.clone(), next.clone(), first.checkpoint_id.clone());
        async move { checkpointer.put(next, Some(&expected)).await }
    });
    session_waiting_on_a_lock(&mut observer, db.schema()).await;
    put.abort();
    assert!(put.await.unwrap_err().is_cancelled());
    assert_eq!(committed_head(&mut observer, "r19", "").await, Some(first.checkpoint_id.to_string()));
    assert!(!committed_record(&mut observer, "r19", &next.checkpoint_id).await);

    // The statement is still on the server; once the key is free it finishes as a whole.
    // Whenever it is looked at (in one snapshot), head and record agree.
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    let mut settled = false;
    for _ in 0..100_000 {
        let (head, stored): (Option<String>, bool) = sqlx::query_as(
            "SELECT (SELECT head_id FROM dashflow_checkpoint_heads WHERE thread_id = 'r19' AND namespace = ''),
                    EXISTS (SELECT 1 FROM dashflow_checkpoints WHERE thread_id = 'r19' AND checkpoint_id = $1)",
        )
        .bind(next.checkpoint_id.as_str())
        .fetch_one(&mut observer)
        .await
        .unwrap();
        let moved = head.as_deref() == Some(next.checkpoint_id.as_str());
        assert_eq!(moved, stored, "head {head:?} and record {} disagree", next.checkpoint_id);
        if moved {
            settled = true;
            break;
        }
    }
    assert!(settled, "the dropped put's statement never finished");
    assert_eq!(checkpointer.load("r19", "", None).await.unwrap().unwrap().chain, vec![first, next]);
}
