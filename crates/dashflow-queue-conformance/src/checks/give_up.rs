//! `give_up`: a held run whose attempt went wrong is queued again, charged, or fails.

use dashflow_queue::{Finish, Multitask, QueueError, RunState};

use crate::error::{Context, ensure, ensure_eq, fail};
use crate::fixture::{claim, claim_one, run, state_of, submit, worker};
use crate::{Result, TestQueue};

/// A run given up with attempts left is queued again, its attempt counted.
pub async fn requeues_charging_the_attempt(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("t").max_attempts(3)).await?;
    let first = claim_one(&t, "w").await?;
    let given = t.queue().give_up(&first.lease, "stuck").await.context(|| "give up".into())?;
    ensure_eq!(given, RunState::Queued, "state of a run given up with attempts left");
    let second = claim_one(&t, "w").await?;
    ensure_eq!(second.attempt, 2, "attempt of the claim after a give-up");
    ensure!(second.lease.epoch > first.lease.epoch + 1, "the give-up and the claim must each bump the epoch");
    Ok(())
}

/// A run given up at its last attempt fails, and its thread's next pending run is queued.
pub async fn the_last_attempt_fails_and_promotes_the_next(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    let submitted = run("t").max_attempts(1);
    submit(&t, submitted.clone()).await?;
    let pending = run("t").multitask(Multitask::Enqueue);
    submit(&t, pending.clone()).await?;
    let claimed = claim_one(&t, "w").await?;
    let given = t.queue().give_up(&claimed.lease, "stuck past its timeout").await.context(|| "give up".into())?;
    ensure_eq!(given, RunState::Failed, "state of a run given up at its last attempt");
    let stored = t.queue().get(&submitted.run_id).await.context(|| "get".into())?;
    ensure_eq!(stored.and_then(|r| r.error), Some("stuck past its timeout".to_owned()), "the failed run's error");
    ensure_eq!(state_of(&t, &pending.run_id).await?, RunState::Queued, "the pending run after the failure");
    // The failed run's lease is over.
    match t.queue().finish(&claimed.lease, Finish::new(RunState::Completed, None)).await {
        Err(QueueError::LeaseLost { .. }) => Ok(()),
        other => fail!("a finish after giving up must be LeaseLost, got {other:?}"),
    }
}

/// A give-up under a lease that moved on is `LeaseLost`.
pub async fn with_a_lost_lease_is_lease_lost(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("t")).await?;
    let claimed = claim_one(&t, "w").await?;
    t.queue().release(&claimed.lease, "released").await.context(|| "release".into())?;
    match t.queue().give_up(&claimed.lease, "late").await {
        Err(QueueError::LeaseLost { .. }) => Ok(()),
        other => fail!("giving up a released run must be LeaseLost, got {other:?}"),
    }
}

/// A run given up whose cancel was requested ends `cancelled`, with attempts left or at its
/// last (its error says so, not failed), is never claimed again, and its thread's next
/// pending run is queued.
pub async fn a_run_asked_to_cancel_is_cancelled_with_attempts_left_or_not(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    for (thread, attempts) in [("left", 3), ("last", 1)] {
        let submitted = run(thread).max_attempts(attempts);
        submit(&t, submitted.clone()).await?;
        let pending = run(thread).multitask(Multitask::Enqueue);
        submit(&t, pending.clone()).await?;
        let claimed = claim_one(&t, "w").await?;
        t.queue().cancel(&submitted.run_id).await.context(|| "cancel".into())?;
        let given = t.queue().give_up(&claimed.lease, "stuck").await.context(|| "give up".into())?;
        ensure_eq!(
            given,
            RunState::Cancelled,
            "state returned by giving up a run asked to cancel ({attempts} attempts)"
        );
        let stored = t.queue().get(&submitted.run_id).await.context(|| "get".into())?;
        let Some(stored) = stored else { fail!("the run given up is gone") };
        ensure_eq!(stored.state, RunState::Cancelled, "stored state of a run given up after a cancel");
        ensure!(
            stored.finished_at_ms.is_some()
                && stored.error.as_deref().is_some_and(|error| error.contains("cancelled as asked")),
            "the cancelled run must say when it ended and that it was cancelled: {stored:?}"
        );
        ensure_eq!(state_of(&t, &pending.run_id).await?, RunState::Queued, "the pending run after the cancel");
        let next: Vec<String> = claim(&t, "w", 8).await?.into_iter().map(|claimed| claimed.lease.run_id).collect();
        ensure_eq!(
            next,
            vec![pending.run_id.clone()],
            "runs claimed after the give-up (the cancelled one must not be)"
        );
        let lease = &claimed.lease;
        match t.queue().finish(lease, Finish::new(RunState::Cancelled, None)).await {
            Err(QueueError::LeaseLost { .. }) => {}
            other => fail!("a finish after the give-up must be LeaseLost, got {other:?}"),
        }
    }
    Ok(())
}
