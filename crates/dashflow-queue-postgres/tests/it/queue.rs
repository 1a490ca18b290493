//! Submit, claim, finish, cancel, one active run per thread, sweep.

use std::collections::HashSet;
use std::sync::Arc;

use dashflow_queue::{Finish, Multitask, QueueError, RunFilter, RunQueue, RunState, Timings};

use crate::support::{claim_one, key, queue, run, worker};

#[tokio::test]
async fn concurrent_claimers_never_claim_one_run_twice() {
    let Some((_db, queue)) = queue("concurrent_claimers_never_claim_one_run_twice").await else { return };
    let queue = Arc::new(queue);
    for n in 0..40 {
        queue.submit(run(&format!("t{n}"))).await.unwrap();
    }
    let mut claimers = Vec::new();
    for w in 0..8 {
        let queue = Arc::clone(&queue);
        claimers.push(tokio::spawn(async move {
            let id = format!("w{w}");
            worker(&queue, &id).await;
            let mut mine = Vec::new();
            loop {
                let batch = queue.claim(&id, &["default".to_owned()], &[key()], 3).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|claimed| claimed.lease.run_id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for claimer in claimers {
        for run_id in claimer.await.unwrap() {
            assert!(seen.insert(run_id.clone()), "run {run_id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), 40);
}

#[tokio::test]
async fn a_busy_thread_rejects_or_enqueues_and_the_finish_promotes_the_next() {
    let Some((_db, queue)) = queue("a_busy_thread_rejects_or_enqueues_and_the_finish_promotes_the_next").await else {
        return;
    };
    worker(&queue, "w").await;
    let first = run("t");
    assert_eq!(queue.submit(first.clone()).await.unwrap(), RunState::Queued);
    // The same run again is the same run.
    assert_eq!(queue.submit(first.clone()).await.unwrap(), RunState::Queued);
    match queue.submit(run("t")).await {
        Err(QueueError::ThreadBusy { thread_id, active_run }) => {
            assert_eq!(thread_id, "t");
            assert_eq!(active_run, first.run_id);
        }
        other => panic!("expected ThreadBusy, got {other:?}"),
    }
    let second = run("t").multitask(Multitask::Enqueue);
    assert_eq!(queue.submit(second.clone()).await.unwrap(), RunState::Pending);

    let claimed = claim_one(&queue, "w").await;
    assert_eq!(claimed.lease.run_id, first.run_id);
    // Pending runs are not claimable while the first runs.
    assert!(queue.claim("w", &["default".to_owned()], &[key()], 8).await.unwrap().is_empty());
    queue.finish(&claimed.lease, Finish::new(RunState::Completed, Some("c1".into()))).await.unwrap();
    let done = queue.get(&first.run_id).await.unwrap().unwrap();
    assert_eq!((done.state, done.checkpoint_id.as_deref()), (RunState::Completed, Some("c1")));
    assert_eq!(queue.get(&second.run_id).await.unwrap().unwrap().state, RunState::Queued);
    assert_eq!(claim_one(&queue, "w").await.lease.run_id, second.run_id);
}

#[tokio::test]
async fn cancel_ends_a_queued_run_at_once_and_asks_a_running_ones_worker() {
    let Some((_db, queue)) = queue("cancel_ends_a_queued_run_at_once_and_asks_a_running_ones_worker").await else {
        return;
    };
    worker(&queue, "w").await;
    let queued = run("a");
    queue.submit(queued.clone()).await.unwrap();
    assert_eq!(queue.cancel(&queued.run_id).await.unwrap(), RunState::Cancelled);
    assert!(queue.claim("w", &["default".to_owned()], &[key()], 8).await.unwrap().is_empty());

    let running = run("b");
    queue.submit(running.clone()).await.unwrap();
    let claimed = claim_one(&queue, "w").await;
    assert_eq!(queue.cancel(&running.run_id).await.unwrap(), RunState::Running);
    let reply = queue.heartbeat("w", std::slice::from_ref(&claimed.lease), &Timings::short()).await.unwrap();
    assert!(reply.alive);
    assert_eq!(reply.cancel, vec![running.run_id.clone()]);
    assert!(reply.lost.is_empty());
}

#[tokio::test]
async fn a_worker_claims_only_graphs_it_has() {
    let Some((_db, queue)) = queue("a_worker_claims_only_graphs_it_has").await else { return };
    worker(&queue, "w").await;
    let other = dashflow_queue::GraphKey::new("g", "v2", 7);
    queue
        .submit(dashflow_queue::NewRun::new(other.clone(), "t", dashflow_queue::RunKind::Invoke, vec![]))
        .await
        .unwrap();
    assert!(queue.claim("w", &["default".to_owned()], &[key()], 8).await.unwrap().is_empty());
    assert_eq!(queue.list(&RunFilter::new().state(RunState::Queued)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_sweeper_requeues_the_runs_of_a_worker_whose_session_is_gone() {
    let Some((_db, queue)) = queue("the_sweeper_requeues_the_runs_of_a_worker_whose_session_is_gone").await else {
        return;
    };
    let timings = Timings::short();
    worker(&queue, "dead").await;
    worker(&queue, "alive").await;
    queue.submit(run("t")).await.unwrap();
    let claimed = claim_one(&queue, "dead").await;
    // The dead worker beat once, on a session it then lost (as a killed process does).
    queue.heartbeat("dead", std::slice::from_ref(&claimed.lease), &timings).await.unwrap();
    queue.close_heartbeat_session("dead").await;
    // A live worker keeps beating; the sweep comes once the dead one missed two beats.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let report = loop {
        queue.heartbeat("alive", &[], &timings).await.unwrap();
        let report = queue.sweep(&timings).await.unwrap();
        if !report.workers_stopped.is_empty() {
            break report;
        }
        assert!(tokio::time::Instant::now() < deadline, "the sweeper never stopped the dead worker");
        tokio::time::sleep(timings.heartbeat).await;
    };
    assert_eq!(report.workers_stopped, vec!["dead".to_owned()]);
    assert_eq!(report.runs, vec![(claimed.lease.run_id.clone(), RunState::Queued)]);
    // Its heartbeat now says it was reaped and holds nothing.
    let reply = queue.heartbeat("dead", std::slice::from_ref(&claimed.lease), &timings).await.unwrap();
    assert!(!reply.alive);
    assert_eq!(reply.lost, vec![claimed.lease.run_id.clone()]);
}

#[tokio::test]
async fn claims_are_fair_across_tenants_and_strict_across_priorities() {
    let Some((_db, queue)) = queue("claims_are_fair_across_tenants_and_strict_across_priorities").await else { return };
    worker(&queue, "w").await;
    for n in 0..100 {
        queue.submit(run(&format!("a{n}")).tenant("a")).await.unwrap();
    }
    for n in 0..5 {
        queue.submit(run(&format!("b{n}")).tenant("b")).await.unwrap();
    }
    let urgent = run("urgent").tenant("a").priority(dashflow_queue::Priority::High);
    queue.submit(urgent.clone()).await.unwrap();

    let mut order = Vec::new();
    for _ in 0..11 {
        order.push(claim_one(&queue, "w").await.lease.thread_id);
    }
    assert_eq!(order[0], "urgent", "a higher priority is claimed first: {order:?}");
    let b = order.iter().filter(|thread| thread.starts_with('b')).count();
    assert_eq!(b, 5, "tenant b's 5 runs interleave with tenant a's 100: {order:?}");
}

#[tokio::test]
async fn wakeups_report_queued_work_and_finished_runs() {
    let Some((_db, queue)) = queue("wakeups_report_queued_work_and_finished_runs").await else { return };
    let mut wakeups = queue.wakeups().await.unwrap().expect("PostgreSQL has wake-ups");
    let within = std::time::Duration::from_secs(30);
    worker(&queue, "w").await;
    queue.submit(run("t")).await.unwrap();
    assert_eq!(tokio::time::timeout(within, wakeups.next()).await.unwrap(), Some(dashflow_queue::Wake::Work));
    let claimed = claim_one(&queue, "w").await;
    queue.finish(&claimed.lease, Finish::new(RunState::Completed, None)).await.unwrap();
    let done = dashflow_queue::Wake::Done(claimed.lease.run_id.clone());
    assert_eq!(tokio::time::timeout(within, wakeups.next()).await.unwrap(), Some(done));
}

#[tokio::test]
async fn notifications_follow_the_commit_so_a_notification_that_fails_undoes_nothing() {
    let test = "notifications_follow_the_commit_so_a_notification_that_fails_undoes_nothing";
    let Some((_db, queue)) = queue(test).await else { return };
    let streams = queue.streams().expect("the PostgreSQL queue keeps streams");
    worker(&queue, "w").await;
    // `dashflow_done` and `dashflow_events` carry the run id, and PostgreSQL refuses a
    // notification payload of 8,000 bytes or more: every notification about this run fails.
    let mut long = run("t");
    long.run_id = "r".repeat(9_000);
    assert_eq!(queue.submit(long.clone()).await.unwrap(), RunState::Queued);
    let claimed = claim_one(&queue, "w").await;
    assert_eq!(claimed.lease.run_id, long.run_id);
    let entry = dashflow_queue::StreamEntry::new(Some(1), serde_json::json!({ "step": 1 }));
    assert_eq!(streams.append(&claimed.lease, 1, &[entry]).await.unwrap(), 1, "the append stands");
    queue.finish(&claimed.lease, Finish::new(RunState::Completed, None)).await.unwrap();
    let stored = queue.get(&long.run_id).await.unwrap().expect("the run is stored");
    assert_eq!(stored.state, RunState::Completed, "the finish stands");
    assert_eq!(streams.read(&long.run_id, 0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_finish_that_promotes_a_pending_run_wakes_the_workers_after_its_done() {
    let test = "a_finish_that_promotes_a_pending_run_wakes_the_workers_after_its_done";
    let Some((_db, queue)) = queue(test).await else { return };
    worker(&queue, "w").await;
    queue.submit(run("t")).await.unwrap();
    let claimed = claim_one(&queue, "w").await;
    assert_eq!(queue.submit(run("t").multitask(Multitask::Enqueue)).await.unwrap(), RunState::Pending);
    let mut wakeups = queue.wakeups().await.unwrap().expect("PostgreSQL has wake-ups");
    queue.finish(&claimed.lease, Finish::new(RunState::Completed, None)).await.unwrap();
    let within = std::time::Duration::from_secs(30);
    let done = dashflow_queue::Wake::Done(claimed.lease.run_id.clone());
    assert_eq!(tokio::time::timeout(within, wakeups.next()).await.unwrap(), Some(done));
    assert_eq!(tokio::time::timeout(within, wakeups.next()).await.unwrap(), Some(dashflow_queue::Wake::Work));
}

#[tokio::test]
async fn a_submit_in_flight_holds_back_no_other_submit_of_its_tenant() {
    let test = "a_submit_in_flight_holds_back_no_other_submit_of_its_tenant";
    let Some((db, queue)) = queue(test).await else { return };
    worker(&queue, "w").await;
    queue.submit(run("first")).await.unwrap();
    // A submit of the same tenant stays uncommitted in another session, as a submit waiting
    // for its commit to reach the disk would: it holds its thread and its run, not the clock.
    let mut admin = db.admin().await;
    let tag: Option<i64> =
        sqlx::query_scalar("SELECT dashflow_tick_clock('in-flight', 'a', 'default', 2::smallint, '', false)")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(tag.is_some());
    sqlx::query("BEGIN").execute(&mut admin).await.unwrap();
    sqlx::query(
        "SELECT * FROM dashflow_submit_run('in-flight', 'default', 'g@v1', 'a', '', 2::smallint, 'invoke', NULL, '{}',
                                           5, false, 0, $1)",
    )
    .bind(tag)
    .execute(&mut admin)
    .await
    .unwrap();
    let other = tokio::time::timeout(std::time::Duration::from_secs(30), queue.submit(run("b")))
        .await
        .expect("the submit waited for another submit's commit");
    assert_eq!(other.unwrap(), RunState::Queued);
    sqlx::query("ROLLBACK").execute(&mut admin).await.unwrap();
}

#[tokio::test]
async fn a_submit_given_no_start_tag_moves_the_tenants_clock_itself() {
    let test = "a_submit_given_no_start_tag_moves_the_tenants_clock_itself";
    let Some((db, queue)) = queue(test).await else { return };
    queue.submit(run("first")).await.unwrap();
    let mut admin = db.admin().await;
    let clock = "SELECT vtime FROM dashflow_tenant_clocks WHERE tenant = ''";
    let before: i64 = sqlx::query_scalar(clock).fetch_one(&mut admin).await.unwrap();
    // What a submit does when its tick found the thread busy and the thread was free again by
    // the time it ran.
    sqlx::query(
        "SELECT * FROM dashflow_submit_run('untagged', 'default', 'g@v1', 'free', '', 2::smallint, 'invoke', NULL,
                                           '{}', 5, false, 0, NULL)",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let after: i64 = sqlx::query_scalar(clock).fetch_one(&mut admin).await.unwrap();
    let tag: i64 = sqlx::query_scalar("SELECT vtime FROM dashflow_runs WHERE run_id = 'untagged'")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!((after, tag), (before + 1000, before + 1000));
}

#[tokio::test]
async fn a_claim_says_how_long_its_run_was_due() {
    let Some((_db, queue)) = queue("a_claim_says_how_long_its_run_was_due").await else { return };
    worker(&queue, "w1").await;
    queue.submit(run("t")).await.unwrap();
    // Due an hour ago, as a run submitted then and never claimed since would be.
    sqlx::query("UPDATE dashflow_runs SET run_at = now() - interval '1 hour' WHERE thread_id = 't'")
        .execute(queue.pool())
        .await
        .unwrap();
    let claimed = claim_one(&queue, "w1").await;
    let hour = std::time::Duration::from_secs(3600);
    assert!(claimed.waited >= hour && claimed.waited < hour * 2, "{:?}", claimed.waited);
}

#[tokio::test]
async fn a_run_a_sweep_skipped_under_a_row_lock_is_requeued_by_the_next_sweep() {
    let test = "a_run_a_sweep_skipped_under_a_row_lock_is_requeued_by_the_next_sweep";
    let Some((db, queue)) = queue(test).await else { return };
    let timings = Timings::short().lease(std::time::Duration::from_millis(100));
    worker(&queue, "dead").await;
    worker(&queue, "alive").await;
    let submitted = run("t");
    queue.submit(submitted.clone()).await.unwrap();
    let claimed = claim_one(&queue, "dead").await;
    queue.heartbeat("dead", std::slice::from_ref(&claimed.lease), &timings).await.unwrap();
    // Another session holds the run's row, as a finish or a cancel in flight does.
    let mut session = db.admin().await;
    sqlx::query("SELECT set_config('search_path', $1, false)").bind(db.schema()).execute(&mut session).await.unwrap();
    sqlx::query("BEGIN").execute(&mut session).await.unwrap();
    sqlx::query("SELECT 1 FROM dashflow_runs WHERE run_id = $1 FOR UPDATE")
        .bind(&submitted.run_id)
        .execute(&mut session)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        queue.heartbeat("alive", &[], &timings).await.unwrap();
        let report = queue.sweep(&timings).await.unwrap();
        if report.workers_stopped.contains(&"dead".to_owned()) {
            assert!(report.runs.is_empty(), "the locked run was skipped: {report:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the sweeper never stopped the dead worker");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    sqlx::query("ROLLBACK").execute(&mut session).await.unwrap();
    // The worker is stopped now; its run must not stay running for good.
    let report = queue.sweep(&timings).await.unwrap();
    assert_eq!(report.runs, [(submitted.run_id.clone(), RunState::Queued)]);
    let stored = queue.get(&submitted.run_id).await.unwrap().unwrap();
    assert!(stored.error.unwrap().contains("stopped while holding the run"));
}
