//! `cancel`: at once when waiting, through the worker when running, never after the end.

use dashflow_queue::{Finish, Multitask, QueueError, RunState};

use crate::error::{Context, ensure, ensure_eq, fail};
use crate::fixture::{claim, claim_one, run, state_of, submit, timings, worker};
use crate::{Result, TestQueue};

/// A queued run is cancelled at once and never claimed.
pub async fn a_queued_run_is_cancelled_at_once(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    let cancelled = t.queue().cancel(&submitted.run_id).await.context(|| "cancel".into())?;
    ensure_eq!(cancelled, RunState::Cancelled, "state returned by cancelling a queued run");
    ensure_eq!(state_of(&t, &submitted.run_id).await?, RunState::Cancelled, "stored state of a cancelled run");
    ensure!(claim(&t, "w", 8).await?.is_empty(), "a cancelled run was claimed");
    // Its thread is free again.
    ensure_eq!(submit(&t, run("t")).await?, RunState::Queued, "a new run of the cancelled run's thread");
    Ok(())
}

/// Cancelling a pending run leaves the runs around it in their places.
pub async fn a_pending_run_is_cancelled_and_the_others_keep_their_places(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("t")).await?;
    let (second, third) = (run("t").multitask(Multitask::Enqueue), run("t").multitask(Multitask::Enqueue));
    submit(&t, second.clone()).await?;
    submit(&t, third.clone()).await?;
    let cancelled = t.queue().cancel(&second.run_id).await.context(|| "cancel".into())?;
    ensure_eq!(cancelled, RunState::Cancelled, "state returned by cancelling a pending run");
    ensure_eq!(state_of(&t, &third.run_id).await?, RunState::Pending, "the other pending run, its thread still busy");
    let first = claim_one(&t, "w").await?;
    t.queue().finish(&first.lease, Finish::new(RunState::Completed, None)).await.context(|| "finish".into())?;
    ensure_eq!(claim_one(&t, "w").await?.lease.run_id, third.run_id, "the run claimed after the first ended");
    Ok(())
}

/// A running run stays running with its cancel requested; its worker hears it.
pub async fn a_running_run_is_asked_through_its_workers_heartbeat(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    let claimed = claim_one(&t, "w").await?;
    let state = t.queue().cancel(&submitted.run_id).await.context(|| "cancel".into())?;
    ensure_eq!(state, RunState::Running, "state returned by cancelling a running run");
    let stored = t.queue().get(&submitted.run_id).await.context(|| "get".into())?;
    ensure_eq!(stored.map(|r| r.cancel_requested), Some(true), "cancel_requested of the running run");
    let lease = std::slice::from_ref(&claimed.lease);
    let reply = t.queue().heartbeat("w", lease, &timings()).await.context(|| "heartbeat".into())?;
    ensure_eq!((reply.alive, reply.cancel, reply.lost), (true, vec![submitted.run_id.clone()], vec![]), "heartbeat");
    t.queue().finish(&claimed.lease, Finish::new(RunState::Cancelled, None)).await.context(|| "finish".into())?;
    ensure_eq!(state_of(&t, &submitted.run_id).await?, RunState::Cancelled, "state once its worker finished it");
    Ok(())
}

/// A finished run stays as it ended; an unknown run is `NotFound`.
pub async fn a_finished_run_stays_and_an_unknown_one_is_not_found(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    let claimed = claim_one(&t, "w").await?;
    t.queue().finish(&claimed.lease, Finish::new(RunState::Completed, None)).await.context(|| "finish".into())?;
    let state = t.queue().cancel(&submitted.run_id).await.context(|| "cancel of a finished run".into())?;
    ensure_eq!(state, RunState::Completed, "state returned by cancelling a completed run");
    ensure_eq!(state_of(&t, &submitted.run_id).await?, RunState::Completed, "stored state after the cancel");
    match t.queue().cancel("no-such-run").await {
        Err(QueueError::NotFound { .. }) => Ok(()),
        other => fail!("cancelling an unknown run must be NotFound, got {other:?}"),
    }
}
