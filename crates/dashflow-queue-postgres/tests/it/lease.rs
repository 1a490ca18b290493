//! Leases from registration to the first heartbeat.

use std::time::Duration;

use dashflow_queue::{RunQueue, RunState, Timings};

use crate::support::{claim_one, queue, run, worker};

/// A worker that froze after its heartbeat session took its lock and before its first
/// heartbeat (so the sweeper's fast path, which needs the lock gone, never applies) has no
/// lease from registering: the sweeper stops it once the live fleet's heartbeats are a lease
/// ahead of its registration, and re-queues its run.
#[tokio::test]
async fn a_worker_frozen_before_its_first_heartbeat_is_reaped_after_a_lease() {
    let test = "a_worker_frozen_before_its_first_heartbeat_is_reaped_after_a_lease";
    let Some((db, queue)) = queue(test).await else { return };
    worker(&queue, "frozen").await;
    let submitted = run("t");
    queue.submit(submitted.clone()).await.unwrap();
    claim_one(&queue, "frozen").await;
    // Its heartbeat session holds its lock, as `heartbeat` leaves it, but never heart-beats.
    let mut session = db.admin().await;
    sqlx::query("SELECT set_config('search_path', $1, false)").bind(db.schema()).execute(&mut session).await.unwrap();
    let locked: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_lock(x'4446574b'::int, lock_key) FROM dashflow_workers WHERE worker_id = 'frozen'",
    )
    .fetch_one(&mut session)
    .await
    .unwrap();
    assert!(locked);
    worker(&queue, "alive").await;
    let timings = Timings::short().lease(Duration::from_millis(100));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        queue.heartbeat("alive", &[], &timings).await.unwrap();
        let report = queue.sweep(&timings).await.unwrap();
        assert!(!report.workers_stopped.contains(&"alive".to_owned()), "{report:?}");
        if report.workers_stopped.contains(&"frozen".to_owned()) {
            assert_eq!(report.runs, [(submitted.run_id.clone(), RunState::Queued)]);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the frozen worker kept its run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
