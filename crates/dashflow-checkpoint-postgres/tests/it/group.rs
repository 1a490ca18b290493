//! Group commit: puts of several threads waiting together on one pool share a statement and a
//! commit, and each still reports what it would have reported alone.
//!
//! The tests run on the current-thread runtime: every put is polled once (which hands its
//! record to the pool's committer) before the committer first runs, so the puts waiting
//! together are exactly the ones the test made.

use std::future::Future;
use std::pin::Pin;

use dashflow_checkpoint::{CheckpointError, CheckpointKind, CheckpointRecord, Checkpointer, Result};
use dashflow_checkpoint_postgres::testing::together;
use dashflow_checkpoint_postgres::{FenceTable, PostgresCheckpointer, WriteGuard};
use sqlx::PgConnection;

use crate::support::{committed_head, database, record};

type Pending<'a> = Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

/// The first record of each of `threads`, put one at a time.
async fn first_records(checkpointer: &PostgresCheckpointer, threads: &[String]) -> Vec<CheckpointRecord> {
    let mut firsts = Vec::new();
    for thread in threads {
        let first = record(thread, "", None, CheckpointKind::Snapshot);
        checkpointer.put(first.clone(), None).await.unwrap();
        firsts.push(first);
    }
    firsts
}

/// How many transactions stored the records with these ids (their rows' distinct `xmin`).
async fn transactions(conn: &mut PgConnection, records: &[&CheckpointRecord]) -> i64 {
    let ids: Vec<String> = records.iter().map(|record| record.checkpoint_id.to_string()).collect();
    sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM dashflow_checkpoints WHERE checkpoint_id = ANY ($1)")
        .bind(ids)
        .fetch_one(conn)
        .await
        .unwrap()
}

fn threads(count: usize) -> Vec<String> {
    (0..count).map(|thread| format!("thread-{thread}")).collect()
}

#[tokio::test]
async fn puts_of_many_threads_waiting_together_share_one_commit() {
    let db = database!("puts_of_many_threads_waiting_together_share_one_commit");
    let checkpointer = db.checkpointer().await;
    let threads = threads(12);
    let firsts = first_records(&checkpointer, &threads).await;

    let nexts: Vec<CheckpointRecord> =
        firsts.iter().map(|first| record(&first.thread_id, "", Some(first), CheckpointKind::Delta)).collect();
    let puts = nexts
        .iter()
        .zip(&firsts)
        .map(|(next, first)| Box::pin(checkpointer.put(next.clone(), Some(&first.checkpoint_id))) as Pending<'_>)
        .collect();
    let results = together(puts).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let mut admin = db.admin().await;
    assert_eq!(transactions(&mut admin, &nexts.iter().collect::<Vec<_>>()).await, 1);
    for next in &nexts {
        assert_eq!(committed_head(&mut admin, &next.thread_id, "").await.as_deref(), Some(next.checkpoint_id.as_str()));
        let loaded = checkpointer.load(&next.thread_id, "", None).await.unwrap().unwrap();
        assert_eq!(loaded.head(), Some(next));
    }
    // The firsts were put one after another, so each in a transaction of its own.
    assert_eq!(transactions(&mut admin, &firsts.iter().collect::<Vec<_>>()).await, 12);
}

#[tokio::test]
async fn first_puts_waiting_together_share_one_commit_and_one_namespace_gets_one_head() {
    let db = database!("first_puts_waiting_together_share_one_commit_and_one_namespace_gets_one_head");
    let checkpointer = db.checkpointer().await;
    let threads = threads(6);
    let firsts: Vec<CheckpointRecord> =
        threads.iter().map(|thread| record(thread, "", None, CheckpointKind::Snapshot)).collect();
    // A second first put into thread 0's root namespace, and one into a namespace of its own.
    let rival = record(&threads[0], "", None, CheckpointKind::Snapshot);
    let nested = record(&threads[0], "child", None, CheckpointKind::Snapshot);
    let mut puts: Vec<Pending<'_>> =
        firsts.iter().map(|first| Box::pin(checkpointer.put(first.clone(), None)) as Pending<'_>).collect();
    puts.push(Box::pin(checkpointer.put(rival.clone(), None)));
    puts.push(Box::pin(checkpointer.put(nested.clone(), None)));
    let results = together(puts).await;

    for (index, result) in results.iter().enumerate().take(6) {
        assert!(result.is_ok(), "first put {index}: {result:?}");
    }
    match &results[6] {
        Err(CheckpointError::Conflict { expected, actual, .. }) => {
            assert_eq!(expected, "none");
            assert_eq!(actual, &firsts[0].checkpoint_id.to_string());
        }
        other => panic!("the second first put of one namespace: {other:?}"),
    }
    assert!(results[7].is_ok(), "a first put into another namespace of the thread: {:?}", results[7]);
    let mut admin = db.admin().await;
    let mut stored: Vec<&CheckpointRecord> = firsts.iter().collect();
    stored.push(&nested);
    assert_eq!(transactions(&mut admin, &stored).await, 1);
    for first in &firsts {
        let loaded = checkpointer.load(&first.thread_id, "", None).await.unwrap().unwrap();
        assert_eq!(loaded.head(), Some(first));
    }
    assert_eq!(committed_head(&mut admin, &threads[0], "child").await.as_deref(), Some(nested.checkpoint_id.as_str()));
}

#[tokio::test]
async fn a_refused_put_in_a_group_stores_nothing_and_reports_what_it_would_alone() {
    let db = database!("a_refused_put_in_a_group_stores_nothing_and_reports_what_it_would_alone");
    let checkpointer = db.checkpointer().await;
    let mut admin = db.admin().await;
    sqlx::query("CREATE TABLE fences (thread_id text PRIMARY KEY, epoch bigint NOT NULL)")
        .execute(&mut admin)
        .await
        .unwrap();
    let threads = threads(6);
    for thread in &threads {
        sqlx::query("INSERT INTO fences VALUES ($1, 3)").bind(thread).execute(&mut admin).await.unwrap();
    }
    let fence = FenceTable::new("fences", "thread_id", "epoch");
    let firsts = first_records(&checkpointer, &threads).await;
    let guarded: Vec<PostgresCheckpointer> =
        threads.iter().map(|thread| checkpointer.guarded(WriteGuard::new(&fence, thread.clone(), 3))).collect();

    // Thread 1's writer expects a head that is not the thread's; thread 2's writer holds an
    // epoch the thread moved past; thread 3 is put twice, both expecting its first record.
    let nexts: Vec<CheckpointRecord> =
        firsts.iter().map(|first| record(&first.thread_id, "", Some(first), CheckpointKind::Delta)).collect();
    let stale = record(&threads[1], "", Some(&firsts[1]), CheckpointKind::Delta);
    let fenced_out = checkpointer.guarded(WriteGuard::new(&fence, threads[2].clone(), 2));
    let rival = record(&threads[3], "", Some(&firsts[3]), CheckpointKind::Delta);
    let mut puts: Vec<Pending<'_>> = Vec::new();
    for (index, next) in nexts.iter().enumerate() {
        let writer = if index == 2 { &fenced_out } else { &guarded[index] };
        let expected = if index == 1 { &stale.checkpoint_id } else { &firsts[index].checkpoint_id };
        puts.push(Box::pin(writer.put(next.clone(), Some(expected))));
    }
    puts.push(Box::pin(guarded[3].put(rival.clone(), Some(&firsts[3].checkpoint_id))));
    let results = together(puts).await;

    let conflict = |index: usize| match &results[index] {
        Err(CheckpointError::Conflict { expected, actual, .. }) => (expected.clone(), actual.clone()),
        other => panic!("put {index}: {other:?}, not a conflict"),
    };
    assert_eq!(conflict(1), (stale.checkpoint_id.to_string(), firsts[1].checkpoint_id.to_string()));
    assert_eq!(conflict(2), ("lease epoch 2".to_owned(), "epoch 3".to_owned()));
    assert_eq!(conflict(6), (firsts[3].checkpoint_id.to_string(), nexts[3].checkpoint_id.to_string()));
    for index in [0, 3, 4, 5] {
        assert!(results[index].is_ok(), "put {index}: {:?}", results[index]);
    }
    let stored: Vec<&CheckpointRecord> = [0, 3, 4, 5].iter().map(|&index| &nexts[index]).collect();
    assert_eq!(transactions(&mut admin, &stored).await, 1);
    for index in [1, 2] {
        assert_eq!(
            committed_head(&mut admin, &threads[index], "").await.as_deref(),
            Some(firsts[index].checkpoint_id.as_str()),
            "thread {index} kept its head"
        );
    }
    let refused: Vec<&CheckpointRecord> = vec![&nexts[1], &nexts[2], &rival];
    let ids: Vec<String> = refused.iter().map(|record| record.checkpoint_id.to_string()).collect();
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM dashflow_checkpoints WHERE checkpoint_id = ANY ($1)")
        .bind(ids)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(found, 0, "a refused put stored its record");
}

#[tokio::test]
async fn a_group_whose_statement_fails_stores_each_put_alone_and_fails_only_the_culprit() {
    let db = database!("a_group_whose_statement_fails_stores_each_put_alone_and_fails_only_the_culprit");
    let checkpointer = db.checkpointer().await;
    let mut admin = db.admin().await;
    // A trigger stands for any failure one record causes inside the shared statement.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.blob = 'poison' THEN RAISE EXCEPTION 'poisoned record'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT ON dashflow_checkpoints
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let threads = threads(5);
    let firsts = first_records(&checkpointer, &threads).await;
    let mut nexts: Vec<CheckpointRecord> =
        firsts.iter().map(|first| record(&first.thread_id, "", Some(first), CheckpointKind::Delta)).collect();
    nexts[2].blob = b"poison".to_vec();
    let puts = nexts
        .iter()
        .zip(&firsts)
        .map(|(next, first)| Box::pin(checkpointer.put(next.clone(), Some(&first.checkpoint_id))) as Pending<'_>)
        .collect();
    let results = together(puts).await;

    match &results[2] {
        Err(CheckpointError::Unavailable { retryable: false, .. }) => {}
        other => panic!("the poisoned put: {other:?}"),
    }
    for index in [0, 1, 3, 4] {
        assert!(results[index].is_ok(), "put {index}: {:?}", results[index]);
        let head = committed_head(&mut admin, &threads[index], "").await;
        assert_eq!(head.as_deref(), Some(nexts[index].checkpoint_id.as_str()));
    }
    assert_eq!(
        committed_head(&mut admin, &threads[2], "").await.as_deref(),
        Some(firsts[2].checkpoint_id.as_str()),
        "the poisoned put moved its head"
    );
}
