//! `release`: a held run goes back to the queue, its attempt given back, its fence moved on.

use dashflow_queue::{Finish, Multitask, QueueError, RunState};

use crate::error::{Context, ensure, ensure_eq, fail};
use crate::fixture::{claim, claim_one, run, state_of, submit, worker};
use crate::{Result, TestQueue};

/// A released run is queued at once, and its next claim is the same attempt with a higher
/// epoch; it is no longer a first claim.
pub async fn requeues_without_charging_the_attempt_and_bumps_the_epoch(t: TestQueue) -> Result<()> {
    worker(&t, "w1").await?;
    worker(&t, "w2").await?;
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    let first = claim_one(&t, "w1").await?;
    t.queue().release(&first.lease, "shutting down").await.context(|| "release".into())?;
    ensure_eq!(state_of(&t, &submitted.run_id).await?, RunState::Queued, "state of a released run");
    let second = claim_one(&t, "w2").await?;
    ensure_eq!(second.lease.run_id, submitted.run_id, "the run claimed after the release");
    ensure_eq!((second.attempt, second.first_claim), (1, false), "attempt and first claim after a release");
    ensure!(second.lease.epoch > first.lease.epoch + 1, "the release and the claim must each bump the epoch");
    Ok(())
}

/// A release under a lease that moved on is `LeaseLost`.
pub async fn with_a_lost_lease_is_lease_lost(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("t")).await?;
    let claimed = claim_one(&t, "w").await?;
    t.queue().release(&claimed.lease, "first").await.context(|| "release".into())?;
    match t.queue().release(&claimed.lease, "second").await {
        Err(QueueError::LeaseLost { .. }) => Ok(()),
        other => fail!("releasing a released run must be LeaseLost, got {other:?}"),
    }
}

/// A released run whose cancel was requested ends `cancelled` (its error says so), is never
/// claimed again, and its thread's next pending run is queued; the release still moved the
/// fence, so the released lease can finish nothing.
pub async fn a_run_asked_to_cancel_is_cancelled_not_queued(t: TestQueue) -> Result<()> {
    worker(&t, "w1").await?;
    worker(&t, "w2").await?;
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    let pending = run("t").multitask(Multitask::Enqueue);
    submit(&t, pending.clone()).await?;
    let claimed = claim_one(&t, "w1").await?;
    t.queue().cancel(&submitted.run_id).await.context(|| "cancel".into())?;
    t.queue().release(&claimed.lease, "shutting down").await.context(|| "release".into())?;
    let stored = t.queue().get(&submitted.run_id).await.context(|| "get".into())?;
    let Some(stored) = stored else { fail!("the released run is gone") };
    ensure_eq!(stored.state, RunState::Cancelled, "state of a released run whose cancel was requested");
    ensure!(stored.finished_at_ms.is_some(), "the cancelled run has no finish time: {stored:?}");
    ensure!(
        stored.error.as_deref().is_some_and(|error| error.contains("cancelled as asked")),
        "the cancelled run's error must say it was cancelled: {:?}",
        stored.error
    );
    ensure_eq!(state_of(&t, &pending.run_id).await?, RunState::Queued, "the pending run after the cancel");
    let next: Vec<String> = claim(&t, "w2", 8).await?.into_iter().map(|claimed| claimed.lease.run_id).collect();
    ensure_eq!(next, vec![pending.run_id.clone()], "runs claimed after the release (the cancelled one must not be)");
    match t.queue().finish(&claimed.lease, Finish::new(RunState::Cancelled, None)).await {
        Err(QueueError::LeaseLost { .. }) => Ok(()),
        other => fail!("a finish after the release must be LeaseLost, got {other:?}"),
    }
}
