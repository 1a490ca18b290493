//! Shared helpers.

use std::future::Future;
use std::pin::Pin;

use dashflow_checkpoint::{CheckpointId, CheckpointKind, CheckpointRecord, now_ms};
use dashflow_checkpoint_postgres::testing::TestDatabase;
pub(crate) use dashflow_checkpoint_postgres::testing::together;
use dashflow_queue::{ClaimedRun, GraphKey, NewRun, RunKind, RunQueue, WorkerInfo};
use dashflow_queue_postgres::PostgresRunQueue;

pub(crate) async fn queue(test: &str) -> Option<(TestDatabase, PostgresRunQueue)> {
    let db = TestDatabase::from_env(test).await?;
    let queue = PostgresRunQueue::new(db.checkpointer().await).await.unwrap();
    Some((db, queue))
}

pub(crate) fn key() -> GraphKey {
    GraphKey::new("g", "v1", 7)
}

pub(crate) fn run(thread: &str) -> NewRun {
    NewRun::new(key(), thread, RunKind::Invoke, b"input".to_vec())
}

pub(crate) async fn worker(queue: &PostgresRunQueue, id: &str) {
    let info = WorkerInfo::new(id, "localhost", 1, vec!["default".to_owned()], vec![key()], 8);
    queue.register_worker(&info).await.unwrap();
}

pub(crate) async fn claim_one(queue: &PostgresRunQueue, worker: &str) -> ClaimedRun {
    let mut claimed = queue.claim(worker, &["default".to_owned()], &[key()], 1).await.unwrap();
    assert_eq!(claimed.len(), 1, "expected one run to claim");
    claimed.remove(0)
}

pub(crate) fn record(thread: &str, parent: Option<&CheckpointId>, step: i64, owner: &str) -> CheckpointRecord {
    let mut metadata = dashflow_checkpoint::Metadata::new();
    metadata.insert("owner".into(), owner.into());
    CheckpointRecord {
        thread_id: thread.to_owned(),
        namespace: String::new(),
        checkpoint_id: CheckpointId::new(),
        parent_id: parent.cloned(),
        step,
        kind: CheckpointKind::Snapshot,
        blob: b"blob".to_vec(),
        metadata,
        next_nodes: Vec::new(),
        created_at_ms: now_ms(),
    }
}

/// A call of the queue, not yet polled.
pub(crate) type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How many transactions wrote the rows of `table` whose `column` is one of `ids`.
pub(crate) async fn transactions(conn: &mut sqlx::PgConnection, table: &str, column: &str, ids: &[&str]) -> i64 {
    let query = format!("SELECT count(DISTINCT xmin::text) FROM {table} WHERE {column} = ANY ($1)");
    sqlx::query_scalar(sqlx::AssertSqlSafe(query)).bind(ids).fetch_one(conn).await.unwrap()
}

/// Submits and claims a run on each of `threads` for worker `w`.
pub(crate) async fn running(queue: &PostgresRunQueue, threads: &[&str]) -> Vec<ClaimedRun> {
    worker(queue, "w").await;
    let mut claimed = Vec::new();
    for thread in threads {
        queue.submit(run(thread)).await.unwrap();
        claimed.push(claim_one(queue, "w").await);
    }
    claimed
}
