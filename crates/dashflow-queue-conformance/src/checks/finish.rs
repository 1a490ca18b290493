//! `finish`: a held run ends, and its thread's next pending run is queued.

use dashflow_queue::{Finish, Multitask, QueueError, RunState};

use crate::error::{Context, ensure, ensure_eq, fail};
use crate::fixture::{claim_one, run, state_of, submit, worker};
use crate::{Result, TestQueue};

/// A finish stores the end state, the last checkpoint and the error.
pub async fn stores_the_state_checkpoint_and_error(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    for (thread, finish) in [
        ("done", Finish::new(RunState::Completed, Some("c1".into()))),
        ("paused", Finish::new(RunState::Interrupted, Some("c2".into()))),
        ("broken", Finish::failed("node `a` failed", Some("c3".into()))),
    ] {
        let submitted = run(thread);
        submit(&t, submitted.clone()).await?;
        let claimed = claim_one(&t, "w").await?;
        t.queue().finish(&claimed.lease, finish.clone()).await.context(|| format!("finish of thread {thread}"))?;
        let Some(stored) = t.queue().get(&submitted.run_id).await.context(|| "get".into())? else {
            fail!("the finished run {} is gone", submitted.run_id);
        };
        let read = (stored.state, stored.checkpoint_id, stored.error);
        ensure_eq!(read, (finish.state, finish.checkpoint_id, finish.error), "the finished run of thread {thread}");
        ensure!(stored.finished_at_ms.is_some(), "a finished run has no end time: thread {thread}");
    }
    Ok(())
}

/// Finishing promotes the thread's oldest pending run, and only that one.
pub async fn promotes_the_oldest_pending_run(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("t")).await?;
    let (second, third) = (run("t").multitask(Multitask::Enqueue), run("t").multitask(Multitask::Enqueue));
    submit(&t, second.clone()).await?;
    submit(&t, third.clone()).await?;
    let first = claim_one(&t, "w").await?;
    t.queue().finish(&first.lease, Finish::new(RunState::Completed, None)).await.context(|| "finish".into())?;
    ensure_eq!(state_of(&t, &second.run_id).await?, RunState::Queued, "the oldest pending run after the finish");
    ensure_eq!(state_of(&t, &third.run_id).await?, RunState::Pending, "the next pending run after the finish");
    let next = claim_one(&t, "w").await?;
    ensure_eq!(next.lease.run_id, second.run_id, "the run claimed after the finish");
    t.queue().finish(&next.lease, Finish::new(RunState::Completed, None)).await.context(|| "finish".into())?;
    ensure_eq!(claim_one(&t, "w").await?.lease.run_id, third.run_id, "the last run claimed");
    Ok(())
}

/// A finish under a lease that moved on is `LeaseLost` and changes nothing.
pub async fn with_a_lost_lease_is_lease_lost_and_changes_nothing(t: TestQueue) -> Result<()> {
    worker(&t, "w1").await?;
    worker(&t, "w2").await?;
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    let old = claim_one(&t, "w1").await?;
    t.queue().release(&old.lease, "test").await.context(|| "release".into())?;
    let new = claim_one(&t, "w2").await?;
    match t.queue().finish(&old.lease, Finish::new(RunState::Completed, Some("late".into()))).await {
        Err(QueueError::LeaseLost { run_id, epoch, .. }) => {
            ensure_eq!((run_id, epoch), (submitted.run_id.clone(), old.lease.epoch), "LeaseLost's run and epoch");
        }
        other => fail!("a former owner's finish must be LeaseLost, got {other:?}"),
    }
    let stored = t.queue().get(&submitted.run_id).await.context(|| "get".into())?;
    let stored = stored.map(|r| (r.state, r.worker_id, r.checkpoint_id));
    ensure_eq!(stored, Some((RunState::Running, Some("w2".to_owned()), None)), "the run after a late finish");
    t.queue().finish(&new.lease, Finish::new(RunState::Completed, None)).await.context(|| "the owner's finish".into())
}

/// A finish into a state that is not terminal is `Invalid`.
pub async fn a_state_that_is_not_terminal_is_invalid(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("t")).await?;
    let claimed = claim_one(&t, "w").await?;
    match t.queue().finish(&claimed.lease, Finish::new(RunState::Queued, None)).await {
        Err(QueueError::Invalid { .. }) => Ok(()),
        other => fail!("a finish as `queued` must be Invalid, got {other:?}"),
    }
}
