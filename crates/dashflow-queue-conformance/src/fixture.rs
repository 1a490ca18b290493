//! What the checks build their scenes from.

use std::time::Duration;

use dashflow_checkpoint::{CheckpointId, CheckpointKind, CheckpointRecord, Metadata, now_ms};
use dashflow_queue::{ClaimedRun, GraphKey, NewRun, RunKind, RunState, SweepReport, Timings, WorkerInfo};

use crate::error::{Context, ensure, ensure_eq, fail};
use crate::{Result, TestQueue};

/// The queue every run of the suite waits in.
pub(crate) const QUEUE: &str = "default";

/// Short leases, so that a check waiting for one to expire polls for under a second.
pub(crate) fn timings() -> Timings {
    Timings::short().heartbeat(Duration::from_millis(100)).lease(Duration::from_millis(300))
}

/// Between two polls: well within a lease, so a worker that beats at every poll stays alive.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// How many polls before a check gives up (20 s of real time).
pub(crate) const POLLS: usize = 400;

pub(crate) fn key() -> GraphKey {
    GraphKey::new("g", "v1", 7)
}

pub(crate) fn queues() -> Vec<String> {
    vec![QUEUE.to_owned()]
}

pub(crate) fn run(thread: &str) -> NewRun {
    NewRun::new(key(), thread, RunKind::Invoke, b"input".to_vec())
}

pub(crate) async fn submit(t: &TestQueue, run: NewRun) -> Result<RunState> {
    let thread = run.thread_id.clone();
    t.queue().submit(run).await.context(|| format!("submit of a run on thread `{thread}`"))
}

pub(crate) async fn worker(t: &TestQueue, id: &str) -> Result<()> {
    let info = WorkerInfo::new(id, "localhost", 1, queues(), vec![key()], 8);
    t.queue().register_worker(&info).await.context(|| format!("register worker {id}"))
}

pub(crate) async fn claim(t: &TestQueue, worker: &str, limit: usize) -> Result<Vec<ClaimedRun>> {
    t.queue().claim(worker, &queues(), &[key()], limit).await.context(|| format!("claim by worker {worker}"))
}

pub(crate) async fn claim_one(t: &TestQueue, worker: &str) -> Result<ClaimedRun> {
    let mut claimed = claim(t, worker, 1).await?;
    ensure_eq!(claimed.len(), 1, "runs claimed by worker {worker} with a run queued");
    Ok(claimed.remove(0))
}

/// Claims one run, polling (and letting time pass) while it is not yet due.
pub(crate) async fn claim_when_due(t: &TestQueue, worker: &str) -> Result<ClaimedRun> {
    for _ in 0..POLLS {
        let _beat = t.queue().heartbeat(worker, &[], &timings()).await;
        let mut claimed = claim(t, worker, 1).await?;
        if let Some(claimed) = claimed.pop() {
            return Ok(claimed);
        }
        t.pass(POLL).await;
    }
    fail!("worker {worker} never claimed the run put back in the queue")
}

pub(crate) async fn state_of(t: &TestQueue, run_id: &str) -> Result<RunState> {
    match t.queue().get(run_id).await.context(|| format!("get run {run_id}"))? {
        Some(record) => Ok(record.state),
        None => fail!("run {run_id} was submitted but `get` does not find it"),
    }
}

/// Sweeps while worker `alive` keeps beating, until the sweeper stops worker `dead`.
pub(crate) async fn sweep_until_stopped(t: &TestQueue, dead: &str, alive: &str) -> Result<SweepReport> {
    let timings = timings();
    for _ in 0..POLLS {
        t.queue().heartbeat(alive, &[], &timings).await.context(|| format!("heartbeat of worker {alive}"))?;
        let report = t.queue().sweep(&timings).await.context(|| "sweep".to_owned())?;
        ensure!(
            !report.workers_stopped.iter().any(|stopped| stopped == alive),
            "the sweeper stopped worker {alive}, which beat within its lease: {report:?}"
        );
        if report.workers_stopped.iter().any(|stopped| stopped == dead) {
            return Ok(report);
        }
        t.pass(POLL).await;
    }
    fail!("the sweeper never stopped worker {dead}, which stopped heart-beating {POLLS} polls ago")
}

pub(crate) fn record(thread: &str, parent: Option<&CheckpointId>, step: i64, owner: &str) -> CheckpointRecord {
    let mut metadata = Metadata::new();
    metadata.insert("owner".into(), owner.into());
    CheckpointRecord {
        thread_id: thread.to_owned(),
        namespace: String::new(),
        checkpoint_id: CheckpointId::new(),
        parent_id: parent.cloned(),
        step,
        kind: CheckpointKind::Snapshot,
        blob: b"blob".to_vec(),
        metadata,
        next_nodes: Vec::new(),
        created_at_ms: now_ms(),
    }
}
