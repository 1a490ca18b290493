//! `get`, `list`, `stats`, `workers`: what the queue shows of its runs and workers.

use dashflow_queue::{Priority, QueueStat, RunFilter, RunState, WorkerState};

use crate::error::{Context, ensure, ensure_eq};
use crate::fixture::{claim_one, run, submit, timings, worker};
use crate::{Result, TestQueue};

/// An unknown run is `None`.
pub async fn get_of_an_unknown_run_is_none(t: TestQueue) -> Result<()> {
    let found = t.queue().get("no-such-run").await.context(|| "get".into())?;
    ensure!(found.is_none(), "`get` of an unknown run found {found:?}");
    Ok(())
}

/// Runs are listed newest first, filtered by state and thread, up to the limit.
pub async fn newest_first_filtered_by_state_thread_and_limit(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    let mut ids = Vec::new();
    for thread in ["a", "b", "c"] {
        let submitted = run(thread);
        ids.push(submitted.run_id.clone());
        submit(&t, submitted).await?;
    }
    let claimed = claim_one(&t, "w").await?;
    ensure_eq!(claimed.lease.thread_id, "a", "the first claim");
    let list = |filter: RunFilter| {
        let queue = t.queue().clone();
        async move { queue.list(&filter).await.context(|| format!("list with {filter:?}")) }
    };
    let all: Vec<String> = list(RunFilter::new()).await?.into_iter().map(|r| r.run_id).collect();
    ensure_eq!(all, [ids[2].clone(), ids[1].clone(), ids[0].clone()], "every run, newest first");
    let queued: Vec<String> =
        list(RunFilter::new().state(RunState::Queued)).await?.into_iter().map(|r| r.run_id).collect();
    ensure_eq!(queued, [ids[2].clone(), ids[1].clone()], "queued runs");
    let of_b: Vec<String> = list(RunFilter::new().thread("b")).await?.into_iter().map(|r| r.run_id).collect();
    ensure_eq!(of_b, [ids[1].clone()], "runs of thread b");
    let limited: Vec<String> = list(RunFilter::new().limit(2)).await?.into_iter().map(|r| r.run_id).collect();
    ensure_eq!(limited, [ids[2].clone(), ids[1].clone()], "the newest 2");
    Ok(())
}

/// Stats count runs per queue, priority and state.
pub async fn stats_count_runs_per_queue_priority_and_state(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("a")).await?;
    submit(&t, run("b")).await?;
    submit(&t, run("c").priority(Priority::High)).await?;
    claim_one(&t, "w").await?;
    let stats = t.queue().stats().await.context(|| "stats".into())?;
    let mut counts: Vec<(String, Priority, RunState, i64)> =
        stats.iter().map(|s: &QueueStat| (s.queue.clone(), s.priority, s.state, s.count)).collect();
    counts.sort_by_key(|(queue, priority, state, _)| (queue.clone(), *priority, state.as_str()));
    let expected = vec![
        ("default".to_owned(), Priority::High, RunState::Running, 1),
        ("default".to_owned(), Priority::Normal, RunState::Queued, 2),
    ];
    ensure_eq!(counts, expected, "run counts");
    let queued = stats.iter().find(|s| s.state == RunState::Queued);
    ensure!(queued.is_some_and(|s| s.oldest_wait_ms.is_some_and(|ms| ms >= 0)), "queued runs' oldest wait: {stats:?}");
    Ok(())
}

/// Workers are listed with what they registered, live or stopped.
pub async fn workers_are_listed_live_or_stopped(t: TestQueue) -> Result<()> {
    worker(&t, "live").await?;
    worker(&t, "gone").await?;
    t.queue().heartbeat("live", &[], &timings()).await.context(|| "heartbeat".into())?;
    t.queue().stop_worker("gone").await.context(|| "stop worker".into())?;
    let workers = t.queue().workers().await.context(|| "workers".into())?;
    let mut states: Vec<(String, WorkerState)> = workers.iter().map(|w| (w.info.worker_id.clone(), w.state)).collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    ensure_eq!(states, [("gone".to_owned(), WorkerState::Stopped), ("live".to_owned(), WorkerState::Live)], "workers");
    let live = workers.iter().find(|w| w.info.worker_id == "live");
    ensure!(live.is_some_and(|w| w.info.slots == 8 && w.info.host == "localhost"), "what `live` registered: {live:?}");
    Ok(())
}
