//! R21 on PostgreSQL: the server restarts under a writer.
//!
//! The shared test server cannot be restarted (other tests use it at the same time), so each
//! test here runs a server of its own (`testing::TestServer`: a cluster in a temporary
//! directory, run as the `postgres` OS user when the tests run as root). These tests need no
//! `DASHFLOW_TEST_POSTGRES_URL`; without PostgreSQL binaries they print a skip line, which
//! `DASHFLOW_TEST_POSTGRES_REQUIRED=1` turns into a failure.
//!
//! What they show:
//! - a put cut off inside its statement by a restart is retried on a new connection once the
//!   server is back and succeeds, or (retries off) fails with a retryable `Unavailable` and
//!   leaves nothing behind; a prepared transaction holds the put inside its statement across
//!   the restart, so the cut-off is certain;
//! - while the server is down every call fails with a retryable `Unavailable` after the pool's
//!   acquire timeout instead of hanging, and the same checkpointer works again once it is up;
//! - a run writing through restarts keeps a whole history (every acknowledged put stored, one
//!   line of parents, the head its last put), and resuming it gives the uninterrupted state.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use dashflow_checkpoint::{
    CheckpointError, CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer, ListOptions, LoadedCheckpoint,
    PendingWrite,
};
use dashflow_checkpoint_postgres::PostgresCheckpointer;
use dashflow_checkpoint_postgres::testing::TestServer;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

use crate::support::{assert_linear, committed_head, committed_record, hold_key_of, record, session_waiting_on_a_lock};

/// A server of the test's own, or a skip (`return`) when this machine cannot run one.
macro_rules! server {
    ($test:literal) => {
        match TestServer::create($test).await {
            Some(server) => server,
            None => return,
        }
    };
}

/// The `application_name` of the checkpointer's connections, to find them on the server.
const WRITER: &str = "restart_writer";

/// Longer than any restart here takes: a call that waits for a connection rides it out.
const PATIENT: Duration = Duration::from_secs(20);

/// A call that has not ended after this long hangs. Generous: on a stopped server the pool
/// gives up after its acquire timeout.
const HANG: Duration = Duration::from_secs(60);

/// A checkpointer on a pool of its own whose connections wait `acquire_timeout` for the server.
async fn checkpointer(server: &TestServer, acquire_timeout: Duration) -> PostgresCheckpointer {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(acquire_timeout)
        .connect_with(server.connect_options().application_name(WRITER))
        .await
        .unwrap();
    PostgresCheckpointer::from_pool(pool).await.unwrap()
}

/// A connection that the test's checks use, apart from the checkpointer's pool.
async fn admin(server: &TestServer) -> PgConnection {
    PgConnection::connect_with(&server.connect_options().application_name("restart_admin")).await.unwrap()
}

/// `call`'s outcome, or a failure when it has not ended after [`HANG`].
async fn bounded<T>(call: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, call).await.expect("the call hangs instead of ending")
}

fn assert_retryable(error: &CheckpointError) {
    assert!(matches!(error, CheckpointError::Unavailable { retryable: true, .. }), "not a retryable error: {error}");
}

/// The prepared transaction that holds a checkpoint key across restarts.
const HOLD: &str = "restart_hold";

/// Inserts a row with `record`'s key and prepares the transaction (two-phase commit). Unlike
/// an open transaction, which a shutdown rolls back (possibly before it terminates the put
/// waiting on it, which could then commit first), a prepared one keeps its locks across the
/// restart: a put of `record` stays blocked inside its statement until [`release_key`].
async fn hold_key_across_restarts(server: &TestServer, record: &CheckpointRecord) {
    let mut holder = admin(server).await;
    hold_key_of(&mut holder, record).await;
    sqlx::raw_sql("PREPARE TRANSACTION 'restart_hold'").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
}

/// Rolls back the transaction of [`hold_key_across_restarts`], letting a blocked put go on.
async fn release_key(observer: &mut PgConnection) {
    sqlx::raw_sql("ROLLBACK PREPARED 'restart_hold'").execute(&mut *observer).await.unwrap();
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_prepared_xacts WHERE gid = $1")
        .bind(HOLD)
        .fetch_one(&mut *observer)
        .await
        .unwrap();
    assert_eq!(held, 0);
}

/// Starts a put of a delta after `first`, waits until it blocks inside its statement (after
/// moving the head, before inserting the record) on a key held across restarts, and restarts
/// the server under it: the fast shutdown terminates the put's session mid-statement.
async fn put_cut_off_by_a_restart(
    server: &TestServer,
    checkpointer: &PostgresCheckpointer,
    first: &CheckpointRecord,
) -> (tokio::task::JoinHandle<dashflow_checkpoint::Result<()>>, CheckpointRecord) {
    let next = record("restart", "", Some(first), CheckpointKind::Delta);
    hold_key_across_restarts(server, &next).await;
    let put = tokio::spawn({
        let (checkpointer, next, expected) = (checkpointer.clone(), next.clone(), first.checkpoint_id.clone());
        async move { checkpointer.put(next, Some(&expected)).await }
    });
    let mut observer = admin(server).await;
    session_waiting_on_a_lock(&mut observer, WRITER).await;
    observer.close().await.unwrap();
    server.restart().await;
    (put, next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_cut_off_by_a_restart_is_retried_transparently_once_the_server_is_back() {
    let server = server!("a_put_cut_off_by_a_restart_is_retried_transparently_once_the_server_is_back");
    let checkpointer = checkpointer(&server, PATIENT).await;
    let first = record("restart", "", None, CheckpointKind::Snapshot);
    checkpointer.put(first.clone(), None).await.unwrap();

    let (put, next) = put_cut_off_by_a_restart(&server, &checkpointer, &first).await;
    // The session that was waiting died with the server: a session waiting on the key now
    // is the put's retry, on a new connection of the same pool.
    let mut observer = admin(&server).await;
    session_waiting_on_a_lock(&mut observer, WRITER).await;
    assert!(!put.is_finished());
    release_key(&mut observer).await;
    bounded(put).await.unwrap().unwrap();

    assert_eq!(committed_head(&mut observer, "restart", "").await, Some(next.checkpoint_id.to_string()));
    assert_eq!(checkpointer.load("restart", "", None).await.unwrap().unwrap().chain, vec![first, next]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_cut_off_by_a_restart_without_retries_fails_retryably_and_stores_nothing() {
    let server = server!("a_put_cut_off_by_a_restart_without_retries_fails_retryably_and_stores_nothing");
    // One try only, so that the restart reaches the caller.
    let checkpointer = checkpointer(&server, PATIENT).await.with_max_attempts(1);
    let first = record("restart", "", None, CheckpointKind::Snapshot);
    checkpointer.put(first.clone(), None).await.unwrap();

    let (put, next) = put_cut_off_by_a_restart(&server, &checkpointer, &first).await;
    assert_retryable(&bounded(put).await.unwrap().unwrap_err());

    // Neither the head change nor the record survived: the old checkpoint is the head.
    let mut observer = admin(&server).await;
    release_key(&mut observer).await;
    assert_eq!(committed_head(&mut observer, "restart", "").await, Some(first.checkpoint_id.to_string()));
    assert!(!committed_record(&mut observer, "restart", &next.checkpoint_id).await);
    // The same checkpointer, on the same pool, takes the put again.
    checkpointer.put(next.clone(), Some(&first.checkpoint_id)).await.unwrap();
    assert_eq!(checkpointer.load("restart", "", None).await.unwrap().unwrap().chain, vec![first, next]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_while_the_server_is_down_fail_retryably_and_the_same_pool_recovers() {
    let server = server!("calls_while_the_server_is_down_fail_retryably_and_the_same_pool_recovers");
    // The default retry policy, and a pool that gives up on the server after two seconds.
    let checkpointer = checkpointer(&server, Duration::from_secs(2)).await;
    let first = record("down", "", None, CheckpointKind::Snapshot);
    checkpointer.put(first.clone(), None).await.unwrap();
    let second = record("down", "", Some(&first), CheckpointKind::Delta);
    checkpointer.put(second.clone(), Some(&first.checkpoint_id)).await.unwrap();

    server.stop().await;
    let refused = record("down", "", Some(&second), CheckpointKind::Delta);
    let write = PendingWrite { task_id: "task-1".into(), node: "work".into(), blob: b"result".to_vec() };
    // Together, so that the test waits one acquire timeout rather than four.
    let all = ListOptions::new();
    let (put, writes, load, list) = tokio::join!(
        bounded(checkpointer.put(refused.clone(), Some(&second.checkpoint_id))),
        bounded(checkpointer.put_writes("down", "", &second.checkpoint_id, vec![write.clone()])),
        bounded(checkpointer.load("down", "", None)),
        bounded(checkpointer.list("down", &all)),
    );
    assert_retryable(&put.unwrap_err());
    assert_retryable(&writes.unwrap_err());
    assert_retryable(&load.unwrap_err());
    assert_retryable(&list.unwrap_err());

    server.start().await;
    // The same checkpointer, without being rebuilt: what was acknowledged is there, and
    // nothing of the refused calls is.
    let loaded = checkpointer.load("down", "", None).await.unwrap().unwrap();
    assert_eq!(loaded.chain, vec![first.clone(), second.clone()]);
    assert!(loaded.pending_writes.is_empty());
    checkpointer.put_writes("down", "", &second.checkpoint_id, vec![write.clone()]).await.unwrap();
    assert_eq!(checkpointer.load("down", "", None).await.unwrap().unwrap().pending_writes, vec![write]);
    checkpointer.put(refused.clone(), Some(&second.checkpoint_id)).await.unwrap();
    assert_eq!(checkpointer.load("down", "", None).await.unwrap().unwrap().chain, vec![first, second, refused]);
}

/// A run whose state is the list of steps it went through: a snapshot holds the whole list,
/// a delta its own step. Resuming it from a checkpoint rebuilds the list from the chain.
#[derive(Debug)]
struct Run {
    thread: String,
    head: Option<CheckpointRecord>,
    steps: Vec<i64>,
    acknowledged: Vec<CheckpointRecord>,
    unacknowledged: Vec<CheckpointRecord>,
}

/// The state of an uninterrupted run at `step`.
fn uninterrupted(step: i64) -> Vec<i64> {
    (-1..=step).collect()
}

/// The run's state at the checkpoint `loaded` leads to.
fn state_of(loaded: &LoadedCheckpoint) -> Vec<i64> {
    let (snapshot, deltas) = loaded.chain.split_first().expect("a loaded chain is never empty");
    assert_eq!(snapshot.kind, CheckpointKind::Snapshot, "the chain starts at {}", snapshot.checkpoint_id);
    let mut steps: Vec<i64> = serde_json::from_slice(&snapshot.blob).unwrap();
    for delta in deltas {
        assert_eq!(delta.kind, CheckpointKind::Delta);
        steps.push(serde_json::from_slice(&delta.blob).unwrap());
    }
    steps
}

impl Run {
    fn new(thread: &str) -> Self {
        Self {
            thread: thread.into(),
            head: None,
            steps: Vec::new(),
            acknowledged: Vec::new(),
            unacknowledged: Vec::new(),
        }
    }

    /// Resumes from the stored head, as a new process would.
    async fn resume(checkpointer: &PostgresCheckpointer, thread: &str) -> Self {
        let mut run = Self::new(thread);
        run.reload(checkpointer).await;
        run
    }

    /// Takes the stored head and its state, reloading through transient failures (bounded).
    async fn reload(&mut self, checkpointer: &PostgresCheckpointer) {
        for _ in 0..50 {
            match checkpointer.load(&self.thread, "", None).await {
                Ok(loaded) => {
                    self.steps = loaded.as_ref().map(state_of).unwrap_or_default();
                    self.head = loaded.and_then(|loaded| loaded.head().cloned());
                    return;
                }
                Err(error) if error.is_retryable() => continue,
                Err(error) => panic!("reloading {} failed for good: {error}", self.thread),
            }
        }
        panic!("{} could not be reloaded in 50 tries", self.thread);
    }

    /// Puts the next step; after a retryable failure, carries on from whatever is stored.
    async fn step(&mut self, checkpointer: &PostgresCheckpointer) {
        let step = self.head.as_ref().map_or(-1, |head| head.step + 1);
        // A snapshot every five steps, deltas in between, as the executor writes them.
        let kind = if step % 5 == 4 || self.head.is_none() { CheckpointKind::Snapshot } else { CheckpointKind::Delta };
        let mut next = record(&self.thread, "", self.head.as_ref(), kind);
        let mut steps = self.steps.clone();
        steps.push(step);
        next.blob = match kind {
            CheckpointKind::Snapshot => serde_json::to_vec(&steps),
            _ => serde_json::to_vec(&step),
        }
        .unwrap();
        match checkpointer.put(next.clone(), self.head.as_ref().map(|head| &head.checkpoint_id)).await {
            Ok(()) => {
                self.acknowledged.push(next.clone());
                self.head = Some(next);
                self.steps = steps;
            }
            Err(error) if error.is_retryable() => {
                self.unacknowledged.push(next);
                self.reload(checkpointer).await;
            }
            Err(error) => panic!("step {step} of {}: a put failed with a non-retryable error: {error}", self.thread),
        }
    }
}

/// Runs `STEPS` steps of a run while the server restarts twice under it, then checks the
/// stored history and resumes the run on a new pool.
async fn write_through_restarts(server: &TestServer, checkpointer: &PostgresCheckpointer, thread: &str) {
    const STEPS: usize = 120;
    const RESTART_AT: [usize; 2] = [25, 70];
    let (progress, mut progressed) = tokio::sync::watch::channel(0usize);
    let mut run = Run::new(thread);
    let writer = async {
        for done in 1..=STEPS {
            run.step(checkpointer).await;
            let _ = progress.send(done);
        }
    };
    let restarter = async {
        for at in RESTART_AT {
            progressed.wait_for(|&done| done >= at).await.expect("the run ended before the restart");
            server.restart().await;
        }
    };
    tokio::join!(writer, restarter);
    println!("{thread}: {} puts failed with a retryable error across the restarts", run.unacknowledged.len());

    // The same checkpointer goes on writing after the restarts.
    let failed_before = run.unacknowledged.len();
    for _ in 0..5 {
        run.step(checkpointer).await;
    }
    assert_eq!(run.unacknowledged.len(), failed_before, "puts after the restarts failed");

    // Every acknowledged record is stored byte for byte; whatever else is stored is a whole
    // record that a failed put sent; the history is one line ending at the last put.
    let listed = checkpointer.list(thread, &ListOptions::new()).await.unwrap();
    let sent: HashMap<&CheckpointId, &CheckpointRecord> =
        run.acknowledged.iter().chain(&run.unacknowledged).map(|record| (&record.checkpoint_id, record)).collect();
    for record in &listed {
        assert_eq!(
            Some(&record),
            sent.get(&record.checkpoint_id),
            "stored {} differs from what was put",
            record.checkpoint_id
        );
    }
    for record in &run.acknowledged {
        assert!(listed.contains(record), "acknowledged {} is missing", record.checkpoint_id);
    }
    let head = run.head.clone().unwrap();
    assert_eq!(run.acknowledged.last(), Some(&head));
    assert_linear(&listed, &head.checkpoint_id);
    for record in &listed {
        let loaded = checkpointer.load(thread, "", Some(&record.checkpoint_id)).await.unwrap().unwrap();
        assert_eq!(loaded.head(), Some(record));
        assert_eq!(state_of(&loaded), uninterrupted(record.step), "state at {}", record.checkpoint_id);
    }

    // Another process resumes the run where it stands and finishes it.
    let other = self::checkpointer(server, PATIENT).await;
    let mut resumed = Run::resume(&other, thread).await;
    assert_eq!(resumed.head.as_ref(), Some(&head));
    assert_eq!(resumed.steps, uninterrupted(head.step));
    for _ in 0..5 {
        resumed.step(&other).await;
    }
    assert!(resumed.unacknowledged.is_empty());
    let finished = other.load(thread, "", None).await.unwrap().unwrap();
    assert_eq!(finished.head(), resumed.head.as_ref());
    assert_eq!(state_of(&finished), uninterrupted(head.step + 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_restarts_are_retried_and_the_run_resumes_to_the_uninterrupted_state() {
    let server = server!("writes_through_restarts_are_retried_and_the_run_resumes_to_the_uninterrupted_state");
    let checkpointer = checkpointer(&server, PATIENT).await;
    write_through_restarts(&server, &checkpointer, "retried").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_restarts_without_retries_fail_retryably_and_the_run_resumes_to_the_uninterrupted_state() {
    let server = server!(
        "writes_through_restarts_without_retries_fail_retryably_and_the_run_resumes_to_the_uninterrupted_state"
    );
    // One try per operation: a restart that lands inside a put reaches the writer.
    let checkpointer = checkpointer(&server, PATIENT).await.with_max_attempts(1);
    write_through_restarts(&server, &checkpointer, "unretried").await;
}
