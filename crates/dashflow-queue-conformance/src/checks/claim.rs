//! `claim`: which runs a worker gets, in which order, and never twice.

use std::collections::HashSet;

use dashflow_queue::{GraphKey, Multitask, NewRun, Priority, RunKind, RunState, WorkerInfo};

use crate::error::{Context, Error, ensure, ensure_eq};
use crate::fixture::{QUEUE, claim, claim_one, key, queues, run, state_of, submit, worker};
use crate::{Result, TestQueue};

/// A claim marks the run running under the worker, with attempt 1 and the lease's epoch.
pub async fn marks_the_run_running_under_the_worker_and_the_epoch(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    let submitted = run("t").config(serde_json::json!({ "durability": "sync" }));
    submit(&t, submitted.clone()).await?;
    let claimed = claim_one(&t, "w").await?;
    ensure_eq!(claimed.lease.run_id, submitted.run_id, "claimed run");
    ensure_eq!((claimed.lease.thread_id.as_str(), claimed.lease.worker_id.as_str()), ("t", "w"), "lease");
    ensure_eq!((claimed.attempt, claimed.first_claim), (1, true), "attempt and first claim of a new run");
    ensure_eq!((&claimed.input, &claimed.config), (&submitted.input, &submitted.config), "input and config");
    ensure_eq!((claimed.graph_key.clone(), claimed.kind), (key(), RunKind::Invoke), "graph and kind");
    let stored = t.queue().get(&submitted.run_id).await.context(|| "get".into())?;
    let stored = stored.map(|r| (r.state, r.worker_id, r.lease_epoch, r.attempt, r.started_at_ms.is_some()));
    ensure_eq!(stored, Some((RunState::Running, Some("w".to_owned()), Some(claimed.lease.epoch), 1, true)), "row");
    Ok(())
}

/// A claimed run is not claimed again, by the same worker or another.
pub async fn a_claimed_run_is_not_claimed_again(t: TestQueue) -> Result<()> {
    worker(&t, "w1").await?;
    worker(&t, "w2").await?;
    submit(&t, run("t")).await?;
    claim_one(&t, "w1").await?;
    ensure!(claim(&t, "w1", 8).await?.is_empty(), "worker w1 claimed its own running run again");
    ensure!(claim(&t, "w2", 8).await?.is_empty(), "worker w2 claimed a run w1 holds");
    Ok(())
}

/// Eight workers claiming at once never get the same run twice, and get every run.
pub async fn concurrent_claimers_never_claim_one_run_twice(t: TestQueue) -> Result<()> {
    for n in 0..40 {
        submit(&t, run(&format!("t{n}"))).await?;
    }
    let mut claimers = Vec::new();
    for w in 0..8 {
        let t = t.clone();
        claimers.push(tokio::spawn(async move {
            let id = format!("w{w}");
            worker(&t, &id).await?;
            let mut mine = Vec::new();
            // Claims until nothing is left; more claims than runs already break the contract.
            while mine.len() <= 40 {
                let batch = claim(&t, &id, 3).await?;
                if batch.is_empty() {
                    break;
                }
                mine.extend(batch.into_iter().map(|claimed| claimed.lease.run_id));
            }
            Ok::<_, Error>(mine)
        }));
    }
    let mut seen = HashSet::new();
    for claimer in claimers {
        for run_id in claimer.await.map_err(|source| Error::Task { source })?? {
            ensure!(seen.insert(run_id.clone()), "run {run_id} was claimed twice");
        }
    }
    ensure_eq!(seen.len(), 40, "runs claimed of 40 queued");
    Ok(())
}

/// Runs of a higher priority are claimed before every run of a lower one.
pub async fn highest_priority_first(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    for (thread, priority) in
        [("low", Priority::Low), ("normal", Priority::Normal), ("urgent", Priority::Urgent), ("high", Priority::High)]
    {
        submit(&t, run(thread).priority(priority)).await?;
    }
    let mut order = Vec::new();
    for _ in 0..4 {
        order.push(claim_one(&t, "w").await?.lease.thread_id);
    }
    ensure_eq!(order, ["urgent", "high", "normal", "low"], "claim order by priority");
    Ok(())
}

/// Within a priority, a tenant's many queued runs do not hold back another tenant's few.
pub async fn fair_across_tenants_within_a_priority(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    for n in 0..30 {
        submit(&t, run(&format!("a{n}")).tenant("a")).await?;
    }
    for n in 0..3 {
        submit(&t, run(&format!("b{n}")).tenant("b")).await?;
    }
    let mut order = Vec::new();
    for _ in 0..8 {
        order.push(claim_one(&t, "w").await?.lease.thread_id);
    }
    let b = order.iter().filter(|thread| thread.starts_with('b')).count();
    ensure_eq!(b, 3, "tenant b's 3 runs among the first 8 claims, after tenant a queued 30: {order:?}");
    Ok(())
}

/// Within a tenant and priority, runs are claimed in submission order.
pub async fn in_submission_order_within_a_tenant(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    for n in 0..5 {
        submit(&t, run(&format!("t{n}"))).await?;
    }
    let batch = claim(&t, "w", 5).await?;
    let order: Vec<&str> = batch.iter().map(|claimed| claimed.lease.thread_id.as_str()).collect();
    ensure_eq!(order, ["t0", "t1", "t2", "t3", "t4"], "a batch's order");
    Ok(())
}

/// A worker gets only runs of graphs it has, from queues it reads, at most `limit`.
pub async fn only_its_graphs_and_queues_up_to_the_limit(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    let other = GraphKey::new("g", "v2", 7);
    submit(&t, NewRun::new(other, "other-graph", RunKind::Invoke, Vec::new())).await?;
    submit(&t, run("other-queue").queue("elsewhere")).await?;
    for n in 0..3 {
        submit(&t, run(&format!("t{n}"))).await?;
    }
    ensure!(t.queue().claim("w", &queues(), &[key()], 0).await.context(|| "claim".into())?.is_empty(), "limit 0");
    ensure!(t.queue().claim("w", &queues(), &[], 8).await.context(|| "claim".into())?.is_empty(), "no graphs");
    let batch = claim(&t, "w", 2).await?;
    ensure_eq!(batch.len(), 2, "runs claimed with limit 2");
    let rest = claim(&t, "w", 8).await?;
    let threads: Vec<&str> = batch.iter().chain(&rest).map(|claimed| claimed.lease.thread_id.as_str()).collect();
    ensure_eq!(threads, ["t0", "t1", "t2"], "runs claimed of the worker's graph and queue");
    let both = vec![QUEUE.to_owned(), "elsewhere".to_owned()];
    let elsewhere = t.queue().claim("w", &both, &[key()], 8).await.context(|| "claim".into())?;
    ensure_eq!(elsewhere.len(), 1, "runs claimed from the second queue once the worker reads it");
    Ok(())
}

/// A worker never registered, or stopped, claims nothing.
pub async fn an_unknown_or_stopped_worker_claims_nothing(t: TestQueue) -> Result<()> {
    submit(&t, run("t")).await?;
    ensure!(claim(&t, "stranger", 8).await?.is_empty(), "a worker never registered claimed a run");
    worker(&t, "w").await?;
    t.queue().stop_worker("w").await.context(|| "stop worker w".into())?;
    ensure!(claim(&t, "w", 8).await?.is_empty(), "a stopped worker claimed a run");
    let info = WorkerInfo::new("w", "localhost", 1, queues(), vec![key()], 8);
    t.queue().register_worker(&info).await.context(|| "register worker w again".into())?;
    ensure_eq!(claim(&t, "w", 8).await?.len(), 1, "runs claimed once the worker registered again");
    Ok(())
}

/// Pending runs are not claimable while their thread's run is active.
pub async fn pending_runs_are_not_claimed(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("t")).await?;
    let pending = run("t").multitask(Multitask::Enqueue);
    submit(&t, pending.clone()).await?;
    claim_one(&t, "w").await?;
    ensure!(claim(&t, "w", 8).await?.is_empty(), "a pending run was claimed while its thread's run runs");
    ensure_eq!(state_of(&t, &pending.run_id).await?, RunState::Pending, "the pending run's state");
    Ok(())
}

/// Every claim of a thread hands out a higher fence epoch than the one before.
pub async fn each_claim_of_a_thread_has_a_higher_epoch(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    let mut last = None;
    for n in 0..3 {
        submit(&t, run("t")).await?;
        let claimed = claim_one(&t, "w").await?;
        if let Some(last) = last {
            ensure!(claimed.lease.epoch > last, "claim {n} of thread t had epoch {} after {last}", claimed.lease.epoch);
        }
        last = Some(claimed.lease.epoch);
        let finish = dashflow_queue::Finish::new(RunState::Completed, None);
        t.queue().finish(&claimed.lease, finish).await.context(|| format!("finish of run {n}"))?;
    }
    Ok(())
}
