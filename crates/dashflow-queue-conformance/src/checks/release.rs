//! `release`: a held run goes back to the queue, its attempt given back, its fence moved on.

use dashflow_queue::{QueueError, RunState};

use crate::error::{Context, ensure, ensure_eq, fail};
use crate::fixture::{claim_one, run, state_of, submit, worker};
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
