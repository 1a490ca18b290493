//! `heartbeat`: which runs a worker still holds, and whether it is alive.

use crate::error::{Context, ensure, ensure_eq};
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
