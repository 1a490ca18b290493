//! A batch that is a chain (what a run's `Async` writer hands over: records of one namespace,
//! each continuing the one before) is stored by one statement; what that statement does not
//! store goes put by put, and reports what it would have alone. A batch of one record is a put,
//! which joins the puts of other threads waiting on the pool (group commit).

use dashflow_checkpoint::{CheckpointError, CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer, ListOptions};
use dashflow_checkpoint_postgres::testing::together;
use dashflow_checkpoint_postgres::{FenceTable, WriteGuard};
use sqlx::PgConnection;

use crate::support::{committed_head, committed_record, database, record};

/// Counts the statements that insert checkpoints, whatever their rows, from now on.
async fn count_insert_statements(admin: &mut PgConnection) {
    sqlx::raw_sql(
        "CREATE TABLE insert_statements (n bigint NOT NULL);
         INSERT INTO insert_statements VALUES (0);
         CREATE FUNCTION count_insert_statement() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN UPDATE insert_statements SET n = n + 1; RETURN NULL; END $$;
         CREATE TRIGGER count_insert_statement AFTER INSERT ON dashflow_checkpoints
             FOR EACH STATEMENT EXECUTE FUNCTION count_insert_statement();",
    )
    .execute(admin)
    .await
    .unwrap();
}

async fn insert_statements(admin: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT n FROM insert_statements").fetch_one(admin).await.unwrap()
}

/// `length` records continuing from `from`, each expecting the one before (the first `from`).
fn chain(from: &CheckpointRecord, length: usize) -> Vec<(CheckpointRecord, Option<CheckpointId>)> {
    let mut batch: Vec<(CheckpointRecord, Option<CheckpointId>)> = Vec::new();
    let mut parent = from.clone();
    for _ in 0..length {
        let next = record(&from.thread_id, &from.namespace, Some(&parent), CheckpointKind::Delta);
        batch.push((next.clone(), Some(parent.checkpoint_id.clone())));
        parent = next;
    }
    batch
}

#[tokio::test]
async fn a_chain_is_stored_by_one_statement_and_moves_the_head_to_its_last_record() {
    let db = database!("a_chain_is_stored_by_one_statement_and_moves_the_head_to_its_last_record");
    let checkpointer = db.checkpointer().await;
    let mut admin = db.admin().await;
    let first = record("t", "", None, CheckpointKind::Snapshot);
    checkpointer.put(first.clone(), None).await.unwrap();
    count_insert_statements(&mut admin).await;
    let batch = chain(&first, 5);

    checkpointer.put_batch(batch.clone()).await.unwrap();

    assert_eq!(insert_statements(&mut admin).await, 1, "the chain took more than one statement");
    let last = &batch[4].0;
    assert_eq!(committed_head(&mut admin, "t", "").await.as_deref(), Some(last.checkpoint_id.as_str()));
    let loaded = checkpointer.load("t", "", None).await.unwrap().unwrap();
    assert_eq!(loaded.head(), Some(last));
    let mut listed = checkpointer.list("t", &ListOptions::new()).await.unwrap();
    listed.sort_by_key(|record| record.step);
    let mut expected: Vec<CheckpointRecord> = batch.iter().map(|(record, _)| record.clone()).collect();
    expected.insert(0, first);
    assert_eq!(listed, expected, "the chain's records, as stored");
}

#[tokio::test]
async fn a_chain_whose_head_moved_stores_nothing_and_reports_the_conflict_of_its_first_put() {
    let db = database!("a_chain_whose_head_moved_stores_nothing_and_reports_the_conflict_of_its_first_put");
    let checkpointer = db.checkpointer().await;
    let mut admin = db.admin().await;
    let first = record("t", "", None, CheckpointKind::Snapshot);
    checkpointer.put(first.clone(), None).await.unwrap();
    let rival = record("t", "", Some(&first), CheckpointKind::Delta);
    checkpointer.put(rival.clone(), Some(&first.checkpoint_id)).await.unwrap();
    let batch = chain(&first, 3);

    match checkpointer.put_batch(batch.clone()).await {
        Err(CheckpointError::Conflict { expected, actual, .. }) => {
            assert_eq!((expected, actual), (first.checkpoint_id.to_string(), rival.checkpoint_id.to_string()));
        }
        other => panic!("a chain behind a moved head: {other:?}"),
    }
    assert_eq!(committed_head(&mut admin, "t", "").await.as_deref(), Some(rival.checkpoint_id.as_str()));
    for (record, _) in &batch {
        assert!(!committed_record(&mut admin, "t", &record.checkpoint_id).await, "a refused chain stored a record");
    }
}

#[tokio::test]
async fn a_chain_under_a_moved_fence_stores_nothing() {
    let db = database!("a_chain_under_a_moved_fence_stores_nothing");
    let checkpointer = db.checkpointer().await;
    let mut admin = db.admin().await;
    sqlx::raw_sql(
        "CREATE TABLE fences (thread_id text PRIMARY KEY, epoch bigint NOT NULL); INSERT INTO fences VALUES ('t', 3)",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let fence = FenceTable::new("fences", "thread_id", "epoch");
    let first = record("t", "", None, CheckpointKind::Snapshot);
    checkpointer.put(first.clone(), None).await.unwrap();
    let owner = checkpointer.guarded(WriteGuard::new(&fence, "t", 3));
    let stale = checkpointer.guarded(WriteGuard::new(&fence, "t", 2));
    count_insert_statements(&mut admin).await;

    match stale.put_batch(chain(&first, 3)).await {
        Err(CheckpointError::Conflict { expected, actual, .. }) => {
            assert_eq!((expected.as_str(), actual.as_str()), ("lease epoch 2", "epoch 3"));
        }
        other => panic!("a chain under a moved fence: {other:?}"),
    }
    assert_eq!(committed_head(&mut admin, "t", "").await.as_deref(), Some(first.checkpoint_id.as_str()));
    // A statement-level trigger counts statements that inserted no row too.
    let before = insert_statements(&mut admin).await;
    let batch = chain(&first, 3);
    owner.put_batch(batch.clone()).await.unwrap();
    assert_eq!(committed_head(&mut admin, "t", "").await.as_deref(), Some(batch[2].0.checkpoint_id.as_str()));
    assert_eq!(insert_statements(&mut admin).await - before, 1, "the owner's chain took more than one statement");
}

#[tokio::test]
async fn a_batch_of_several_threads_goes_put_by_put_and_stores_them_all() {
    let db = database!("a_batch_of_several_threads_goes_put_by_put_and_stores_them_all");
    let checkpointer = db.checkpointer().await;
    let mut admin = db.admin().await;
    let a = record("a", "", None, CheckpointKind::Snapshot);
    let b = record("b", "", None, CheckpointKind::Snapshot);
    checkpointer.put(a.clone(), None).await.unwrap();
    checkpointer.put(b.clone(), None).await.unwrap();
    count_insert_statements(&mut admin).await;
    let (a2, b2) = (chain(&a, 1).remove(0), chain(&b, 1).remove(0));

    checkpointer.put_batch(vec![a2.clone(), b2.clone()]).await.unwrap();

    assert_eq!(insert_statements(&mut admin).await, 2);
    assert_eq!(committed_head(&mut admin, "a", "").await.as_deref(), Some(a2.0.checkpoint_id.as_str()));
    assert_eq!(committed_head(&mut admin, "b", "").await.as_deref(), Some(b2.0.checkpoint_id.as_str()));
}

#[tokio::test]
async fn lone_records_of_several_threads_put_as_batches_together_share_one_commit() {
    let db = database!("lone_records_of_several_threads_put_as_batches_together_share_one_commit");
    let checkpointer = db.checkpointer().await;
    let mut admin = db.admin().await;
    let mut firsts = Vec::new();
    for thread in ["a", "b", "c", "d"] {
        let first = record(thread, "", None, CheckpointKind::Snapshot);
        checkpointer.put(first.clone(), None).await.unwrap();
        firsts.push(first);
    }
    let batches: Vec<Vec<(CheckpointRecord, Option<CheckpointId>)>> =
        firsts.iter().map(|first| chain(first, 1)).collect();

    // Polled once each before the pool's committer first runs (the current-thread runtime),
    // so all four wait together, as the `Async` writers of concurrent runs do.
    let puts: Vec<_> = batches.iter().map(|batch| Box::pin(checkpointer.put_batch(batch.clone()))).collect();
    for result in together(puts).await {
        result.unwrap();
    }

    let ids: Vec<String> = batches.iter().map(|batch| batch[0].0.checkpoint_id.to_string()).collect();
    let transactions: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT xmin::text) FROM dashflow_checkpoints WHERE checkpoint_id = ANY ($1)",
    )
    .bind(&ids)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(transactions, 1, "lone records put as batches went one commit each");
}

#[tokio::test]
async fn a_chain_into_an_empty_namespace_is_stored_by_one_statement_and_only_once() {
    let db = database!("a_chain_into_an_empty_namespace_is_stored_by_one_statement_and_only_once");
    let checkpointer = db.checkpointer().await;
    let mut admin = db.admin().await;
    count_insert_statements(&mut admin).await;
    let input = record("t", "", None, CheckpointKind::Snapshot);
    let mut batch = vec![(input.clone(), None)];
    batch.extend(chain(&input, 4));

    checkpointer.put_batch(batch.clone()).await.unwrap();

    assert_eq!(insert_statements(&mut admin).await, 1, "the chain took more than one statement");
    assert_eq!(committed_head(&mut admin, "t", "").await.as_deref(), Some(batch[4].0.checkpoint_id.as_str()));
    assert_eq!(checkpointer.list("t", &ListOptions::new()).await.unwrap().len(), 5);

    // The namespace is not empty now: another chain that expects it empty stores nothing.
    let other = record("t", "", None, CheckpointKind::Snapshot);
    let mut again = vec![(other.clone(), None)];
    again.extend(chain(&other, 2));
    match checkpointer.put_batch(again.clone()).await {
        Err(CheckpointError::Conflict { expected, actual, .. }) => {
            assert_eq!((expected.as_str(), actual), ("none", batch[4].0.checkpoint_id.to_string()));
        }
        other => panic!("a first chain into a namespace that has a head: {other:?}"),
    }
    for (record, _) in &again {
        assert!(!committed_record(&mut admin, "t", &record.checkpoint_id).await, "a refused chain stored a record");
    }
}
