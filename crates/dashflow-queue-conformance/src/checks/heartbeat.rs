//! `heartbeat`: which runs a worker still holds, and whether it is alive.

use dashflow_queue::{Finish, RunState};

use crate::error::{Context, ensure, ensure_eq, fail};
use crate::fixture::{claim_one, run, submit, timings, worker};
use crate::{Result, TestQueue};

/// A heartbeat names the runs the worker lost and keeps quiet about the ones it holds.
pub async fn reports_the_runs_the_worker_lost(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("kept")).await?;
    submit(&t, run("lost")).await?;
    let kept = claim_one(&t, "w").await?;
    let lost = claim_one(&t, "w").await?;
    t.queue().release(&lost.lease, "test").await.context(|| "release".into())?;
    let leases = [kept.lease.clone(), lost.lease.clone()];
    let reply = t.queue().heartbeat("w", &leases, &timings()).await.context(|| "heartbeat".into())?;
    ensure!(reply.alive, "a registered worker's heartbeat says it is not alive");
    ensure_eq!(reply.lost, vec![lost.lease.run_id.clone()], "runs reported lost");
    ensure!(reply.cancel.is_empty() && !reply.draining, "nothing was cancelled or drained: {reply:?}");
    Ok(())
}

/// A worker that never registered, or stopped, is not alive.
pub async fn an_unknown_or_stopped_worker_is_not_alive(t: TestQueue) -> Result<()> {
    let reply = t.queue().heartbeat("stranger", &[], &timings()).await.context(|| "heartbeat".into())?;
    ensure!(!reply.alive, "a worker never registered is alive: {reply:?}");
    worker(&t, "w").await?;
    t.queue().stop_worker("w").await.context(|| "stop worker".into())?;
    let reply = t.queue().heartbeat("w", &[], &timings()).await.context(|| "heartbeat".into())?;
    ensure!(!reply.alive, "a stopped worker is alive: {reply:?}");
    Ok(())
}

/// A run its worker finished is reported ended, not lost, by a heartbeat that still names it
/// (the worker need not stop it); one its worker gave up at its last attempt, or released, is
/// lost: the run ended or went back under another lease, not by the worker's own finish.
pub async fn tells_runs_that_ended_under_their_lease_from_lost_ones(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("finished")).await?;
    submit(&t, run("given-up").max_attempts(1)).await?;
    submit(&t, run("released")).await?;
    let mut claimed = Vec::new();
    for _ in 0..3 {
        claimed.push(claim_one(&t, "w").await?);
    }
    let by_thread =
        |thread: &str| claimed.iter().find(|run| run.lease.thread_id == thread).map(|run| run.lease.clone());
    let (Some(finished), Some(given_up), Some(released)) =
        (by_thread("finished"), by_thread("given-up"), by_thread("released"))
    else {
        fail!("the three runs claimed are not the three submitted: {claimed:?}");
    };
    let finish = Finish::new(RunState::Completed, None);
    t.queue().finish(&finished, finish).await.context(|| "finish".into())?;
    let given = t.queue().give_up(&given_up, "test").await.context(|| "give up".into())?;
    ensure_eq!(given, RunState::Failed, "state of a run given up at its last attempt");
    t.queue().release(&released, "test").await.context(|| "release".into())?;

    let leases = [finished.clone(), given_up.clone(), released.clone()];
    let reply = t.queue().heartbeat("w", &leases, &timings()).await.context(|| "heartbeat".into())?;
    ensure_eq!(reply.ended, vec![finished.run_id.clone()], "runs reported ended");
    let mut lost = reply.lost.clone();
    lost.sort();
    let mut expected = vec![given_up.run_id.clone(), released.run_id.clone()];
    expected.sort();
    ensure_eq!(lost, expected, "runs reported lost");
    Ok(())
}
