//! `sweep`: workers whose lease expired are stopped, their runs queued again under a new
//! epoch (or failed, or cancelled).

use dashflow_checkpoint::Checkpointer as _;
use dashflow_queue::{Finish, Multitask, QueueError, RunState};

use crate::error::{Context, ensure, ensure_eq, fail};
use crate::fixture::{
    POLL, claim_one, claim_when_due, record, run, state_of, submit, sweep_until_stopped, timings, worker,
};
use crate::{Result, TestQueue};

/// A worker that stopped heart-beating is stopped a lease later, while one that beats is
/// not; its run is queued again, claimed under a higher epoch, and the dead worker's writes
/// are refused.
pub async fn requeues_the_runs_of_a_worker_whose_lease_expired(t: TestQueue) -> Result<()> {
    worker(&t, "dead").await?;
    worker(&t, "alive").await?;
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    let claimed = claim_one(&t, "dead").await?;
    let lease = std::slice::from_ref(&claimed.lease);
    t.queue().heartbeat("dead", lease, &timings()).await.context(|| "the dead worker's last heartbeat".into())?;
    let report = sweep_until_stopped(&t, "dead", "alive").await?;
    ensure_eq!(report.workers_stopped, ["dead".to_owned()], "workers stopped");
    ensure_eq!(report.runs, [(submitted.run_id.clone(), RunState::Queued)], "runs the sweep moved");
    let again = claim_when_due(&t, "alive").await?;
    ensure_eq!(again.lease.run_id, submitted.run_id, "the run claimed after the sweep");
    ensure!(again.lease.epoch > claimed.lease.epoch, "the epoch after the sweep did not grow");
    ensure_eq!((again.attempt, again.first_claim), (2, false), "attempt after a lost attempt");
    let reply =
        t.queue().heartbeat("dead", lease, &timings()).await.context(|| "the dead worker's heartbeat".into())?;
    ensure_eq!((reply.alive, reply.lost), (false, vec![submitted.run_id.clone()]), "the reaped worker's heartbeat");
    let late = t.queue().fenced_checkpointer(&claimed.lease).put(record("t", None, -1, "dead"), None).await;
    ensure!(late.as_ref().is_err_and(|error| error.is_conflict()), "the dead worker's put: {late:?}");
    match t.queue().finish(&claimed.lease, Finish::new(RunState::Completed, None)).await {
        Err(QueueError::LeaseLost { .. }) => Ok(()),
        other => fail!("the dead worker's finish must be LeaseLost, got {other:?}"),
    }
}

/// A worker that keeps beating keeps its runs, sweep after sweep.
pub async fn a_worker_that_beats_keeps_its_runs(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("t")).await?;
    let claimed = claim_one(&t, "w").await?;
    let timings = timings();
    // Past two leases in all, beating at every poll.
    let polls = 2 * timings.lease.as_millis().div_ceil(POLL.as_millis()) + 1;
    for _ in 0..polls {
        let lease = std::slice::from_ref(&claimed.lease);
        let reply = t.queue().heartbeat("w", lease, &timings).await.context(|| "heartbeat".into())?;
        ensure!(reply.alive && reply.lost.is_empty(), "a worker that beats lost its run: {reply:?}");
        let report = t.queue().sweep(&timings).await.context(|| "sweep".into())?;
        ensure!(report.workers_stopped.is_empty() && report.runs.is_empty(), "the sweep took a live run: {report:?}");
        t.pass(POLL).await;
    }
    ensure_eq!(state_of(&t, &claimed.lease.run_id).await?, RunState::Running, "the live worker's run");
    Ok(())
}

/// A run whose worker died at its last attempt fails, and its thread's pending run is queued.
pub async fn the_last_attempt_fails_and_the_next_pending_run_is_queued(t: TestQueue) -> Result<()> {
    worker(&t, "dead").await?;
    worker(&t, "alive").await?;
    let submitted = run("t").max_attempts(1);
    submit(&t, submitted.clone()).await?;
    let pending = run("t").multitask(Multitask::Enqueue);
    submit(&t, pending.clone()).await?;
    let claimed = claim_one(&t, "dead").await?;
    let lease = std::slice::from_ref(&claimed.lease);
    t.queue().heartbeat("dead", lease, &timings()).await.context(|| "heartbeat".into())?;
    let report = sweep_until_stopped(&t, "dead", "alive").await?;
    ensure_eq!(report.runs, [(submitted.run_id.clone(), RunState::Failed)], "runs the sweep moved");
    let stored = t.queue().get(&submitted.run_id).await.context(|| "get".into())?;
    ensure!(
        stored.is_some_and(|r| r.error.is_some() && r.finished_at_ms.is_some()),
        "the failed run says why and when"
    );
    ensure_eq!(state_of(&t, &pending.run_id).await?, RunState::Queued, "the pending run after the failure");
    Ok(())
}

/// A run whose cancel was requested is cancelled when its worker is swept.
pub async fn a_run_asked_to_cancel_is_cancelled(t: TestQueue) -> Result<()> {
    worker(&t, "dead").await?;
    worker(&t, "alive").await?;
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    let claimed = claim_one(&t, "dead").await?;
    let lease = std::slice::from_ref(&claimed.lease);
    t.queue().heartbeat("dead", lease, &timings()).await.context(|| "heartbeat".into())?;
    t.queue().cancel(&submitted.run_id).await.context(|| "cancel".into())?;
    let report = sweep_until_stopped(&t, "dead", "alive").await?;
    ensure_eq!(report.runs, [(submitted.run_id.clone(), RunState::Cancelled)], "runs the sweep moved");
    let stored = t.queue().get(&submitted.run_id).await.context(|| "get".into())?;
    ensure!(
        stored.as_ref().is_some_and(|r| r.state == RunState::Cancelled
            && r.finished_at_ms.is_some()
            && r.error.as_deref().is_some_and(|error| error.contains("cancelled as asked"))),
        "the swept run must be cancelled, say when it ended and that it was cancelled as asked: {stored:?}"
    );
    Ok(())
}

/// A worker that stopped while it still held a run (its release failed on the way out) has
/// the run queued again by the next sweep, under a higher epoch, not left running forever.
pub async fn requeues_the_runs_a_stopped_worker_still_held(t: TestQueue) -> Result<()> {
    worker(&t, "stopped").await?;
    worker(&t, "alive").await?;
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    let claimed = claim_one(&t, "stopped").await?;
    t.queue().stop_worker("stopped").await.context(|| "stop worker".into())?;
    let report = t.queue().sweep(&timings()).await.context(|| "sweep".into())?;
    ensure_eq!(report.runs, [(submitted.run_id.clone(), RunState::Queued)], "runs the sweep moved");
    let again = claim_when_due(&t, "alive").await?;
    ensure_eq!(again.lease.run_id, submitted.run_id, "the run claimed after the sweep");
    ensure!(again.lease.epoch > claimed.lease.epoch, "the epoch after the sweep did not grow");
    let late = t.queue().fenced_checkpointer(&claimed.lease).put(record("t", None, -1, "stopped"), None).await;
    ensure!(late.as_ref().is_err_and(|error| error.is_conflict()), "the stopped worker's put: {late:?}");
    Ok(())
}

/// A lease is judged against the freshest heartbeat of the fleet, not against the clock
/// alone (a stalled storage makes every lease look expired at once): a lone worker whose lease
/// expired keeps its run, sweep after sweep, while no other worker heart-beats after it; once
/// one does, more than a lease later, the lone worker is stopped and its run queued again.
pub async fn a_lone_worker_whose_lease_expired_is_stopped_only_once_another_beats(t: TestQueue) -> Result<()> {
    worker(&t, "lone").await?;
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    let claimed = claim_one(&t, "lone").await?;
    let timings = timings();
    let lease = std::slice::from_ref(&claimed.lease);
    t.queue().heartbeat("lone", lease, &timings).await.context(|| "the lone worker's last heartbeat".into())?;
    // Past two leases in all, nobody beating.
    let polls = 2 * timings.lease.as_millis().div_ceil(POLL.as_millis()) + 1;
    for _ in 0..polls {
        t.pass(POLL).await;
        let report = t.queue().sweep(&timings).await.context(|| "sweep".into())?;
        ensure!(
            report.workers_stopped.is_empty() && report.runs.is_empty(),
            "the sweep stopped a lone worker while no worker beat after it: {report:?}"
        );
    }
    ensure_eq!(state_of(&t, &submitted.run_id).await?, RunState::Running, "the lone worker's run");
    worker(&t, "late").await?;
    let report = sweep_until_stopped(&t, "lone", "late").await?;
    ensure_eq!(report.runs, [(submitted.run_id.clone(), RunState::Queued)], "runs the sweep moved");
    Ok(())
}
