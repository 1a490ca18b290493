//! `retry`: a failed or cancelled run, the latest of its thread, is queued again.

use dashflow_queue::{Finish, QueueError, RunState};

use crate::error::{Context, ensure, ensure_eq, fail};
use crate::fixture::{claim_one, run, state_of, submit, worker};
use crate::{Result, TestQueue};

/// A failed run is queued again under its own id, its error cleared; the next claim is its
/// next attempt, under a higher epoch.
pub async fn a_failed_run_is_queued_again_as_its_next_attempt(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    let first = claim_one(&t, "w").await?;
    let failed = Finish::failed("the service is down".to_owned(), None);
    t.queue().finish(&first.lease, failed).await.context(|| "finish as failed".into())?;
    let retried = t.queue().retry(&submitted.run_id, 2).await.context(|| "retry".into())?;
    ensure_eq!(retried, RunState::Queued, "state returned by a retry");
    let stored = t.queue().get(&submitted.run_id).await.context(|| "get".into())?;
    let Some(stored) = stored else { fail!("the retried run is gone") };
    ensure_eq!((stored.state, stored.error, stored.finished_at_ms), (RunState::Queued, None, None), "retried run");
    let second = claim_one(&t, "w").await?;
    ensure_eq!(second.lease.run_id, submitted.run_id, "run claimed after the retry");
    ensure_eq!(second.attempt, 2, "attempt of the claim after a retry");
    ensure!(second.lease.epoch > first.lease.epoch, "the claim after a retry must bump the epoch");
    Ok(())
}

/// A retry allows exactly the attempts it grants: given up once more, a run retried with one
/// attempt fails.
pub async fn grants_exactly_the_attempts_asked_for(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    let submitted = run("t").max_attempts(5);
    submit(&t, submitted.clone()).await?;
    let first = claim_one(&t, "w").await?;
    t.queue().finish(&first.lease, Finish::failed("down".to_owned(), None)).await.context(|| "finish".into())?;
    t.queue().retry(&submitted.run_id, 1).await.context(|| "retry".into())?;
    let second = claim_one(&t, "w").await?;
    let given = t.queue().give_up(&second.lease, "stuck").await.context(|| "give up".into())?;
    ensure_eq!(given, RunState::Failed, "a run retried with one attempt, given up in it");
    Ok(())
}

/// A run cancelled before it ran is queued again.
pub async fn a_cancelled_run_is_queued_again(t: TestQueue) -> Result<()> {
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    t.queue().cancel(&submitted.run_id).await.context(|| "cancel".into())?;
    t.queue().retry(&submitted.run_id, 1).await.context(|| "retry".into())?;
    ensure_eq!(state_of(&t, &submitted.run_id).await?, RunState::Queued, "a cancelled run after a retry");
    Ok(())
}

/// A run that did not fail and was not cancelled is `NotRetryable` and stays as it is; an
/// unknown run is `NotFound`; no attempts is `Invalid`.
pub async fn a_run_that_did_not_fail_is_refused(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    match t.queue().retry(&submitted.run_id, 1).await {
        Err(QueueError::NotRetryable { .. }) => {}
        other => fail!("retrying a queued run must be NotRetryable, got {other:?}"),
    }
    let claimed = claim_one(&t, "w").await?;
    t.queue().finish(&claimed.lease, Finish::new(RunState::Completed, None)).await.context(|| "finish".into())?;
    match t.queue().retry(&submitted.run_id, 1).await {
        Err(QueueError::NotRetryable { .. }) => {}
        other => fail!("retrying a completed run must be NotRetryable, got {other:?}"),
    }
    ensure_eq!(state_of(&t, &submitted.run_id).await?, RunState::Completed, "a completed run after a refused retry");
    match t.queue().retry("no-such-run", 1).await {
        Err(QueueError::NotFound { .. }) => {}
        other => fail!("retrying an unknown run must be NotFound, got {other:?}"),
    }
    match t.queue().retry(&submitted.run_id, 0).await {
        Err(QueueError::Invalid { .. }) => Ok(()),
        other => fail!("a retry with no attempts must be Invalid, got {other:?}"),
    }
}

/// A run a later run of its thread followed is `NotRetryable`, naming the later run, and stays
/// as it is.
pub async fn a_run_a_later_one_followed_is_refused(t: TestQueue) -> Result<()> {
    let earlier = run("t");
    submit(&t, earlier.clone()).await?;
    t.queue().cancel(&earlier.run_id).await.context(|| "cancel".into())?;
    let later = run("t");
    submit(&t, later.clone()).await?;
    match t.queue().retry(&earlier.run_id, 1).await {
        Err(QueueError::NotRetryable { why, .. }) if why.contains(&later.run_id) => {}
        other => fail!("retrying a run a later one followed must be NotRetryable naming it, got {other:?}"),
    }
    ensure_eq!(state_of(&t, &earlier.run_id).await?, RunState::Cancelled, "the earlier run after a refused retry");
    Ok(())
}
