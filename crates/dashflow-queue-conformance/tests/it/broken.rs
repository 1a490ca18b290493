//! Wrappers of the memory queue that each break one rule of the contract.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use dashflow_checkpoint::Checkpointer;
use dashflow_queue::{
    ClaimedRun, Finish, GraphKey, HeartbeatReply, Lease, NewRun, Priority, QueueStat, Result, RunFilter, RunQueue,
    RunRecord, RunState, RunStreams, SweepReport, Timings, Wakeups, WorkerInfo, WorkerRecord,
};
use dashflow_queue_conformance::{TestQueue, Time};
use dashflow_queue_memory::{ManualClock, MemoryRunQueue};

/// The one rule a [`Broken`] queue breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// None: an honest pass-through, the control group.
    Honest,
    /// Hands out the unfenced checkpointer as the fenced one.
    IgnoresFences,
    /// Hands runs other workers hold to a claimer who found nothing queued.
    ClaimsHeldRunsAgain,
    /// Stores every run at normal priority (and shows the submitted one).
    IgnoresPriority,
    /// Never finds a worker dead.
    NeverSweeps,
    /// Has neither wake-ups nor streams while its harness declares both.
    LacksOptionalParts,
    /// Grants a retried run any number of attempts, and answers a refused retry with `queued`.
    LaxRetries,
    /// Keeps the cancel requests of running runs to itself and tells heartbeats, readers and
    /// the sweeper, but not a release or a give-up: those put the run back in the queue (or
    /// fail it at its last attempt), as both queues did before.
    RequeuesRunsAskedToCancel,
    /// Judges leases by the clock alone: a worker of its own heart-beats before each sweep, so
    /// a lone worker whose lease expired is stopped although nobody beat after it.
    SweepsByLeaseAlone,
}

/// The worker [`Fault::SweepsByLeaseAlone`] heart-beats with.
const GHOST: &str = "ghost";

/// The memory queue with one [`Fault`].
#[derive(Debug)]
pub(crate) struct Broken {
    inner: MemoryRunQueue,
    fault: Fault,
    /// Every run claimed so far, for [`Fault::ClaimsHeldRunsAgain`].
    claimed: Mutex<Vec<ClaimedRun>>,
    /// The priorities runs were submitted with, for [`Fault::IgnoresPriority`].
    priorities: Mutex<HashMap<String, Priority>>,
    /// Running runs asked to cancel, for [`Fault::RequeuesRunsAskedToCancel`].
    asked: Mutex<HashSet<String>>,
}

impl Broken {
    fn new(fault: Fault, inner: MemoryRunQueue) -> Self {
        Self { inner, fault, claimed: Mutex::default(), priorities: Mutex::default(), asked: Mutex::default() }
    }

    fn asked(&self, run_id: &str) -> bool {
        self.asked.lock().unwrap_or_else(PoisonError::into_inner).contains(run_id)
    }

    fn shown(&self, mut record: RunRecord) -> RunRecord {
        let priorities = self.priorities.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(priority) = priorities.get(&record.run_id) {
            record.priority = *priority;
        }
        if record.state == RunState::Running && self.asked(&record.run_id) {
            record.cancel_requested = true;
        }
        record
    }
}

/// Passes time by moving the queue's manual clock.
struct Manual(Arc<ManualClock>);

#[async_trait]
impl Time for Manual {
    async fn pass(&self, by: Duration) {
        self.0.advance(by);
        tokio::task::yield_now().await;
    }
}

/// A fresh queue with `fault`, on a manual clock.
pub(crate) fn broken(fault: Fault) -> TestQueue {
    let clock = Arc::new(ManualClock::starting_now());
    let inner = MemoryRunQueue::builder().clock(clock.clone()).build();
    TestQueue::new(Arc::new(Broken::new(fault, inner)), Arc::new(Manual(clock)))
}

#[async_trait]
impl RunQueue for Broken {
    async fn submit(&self, mut run: NewRun) -> Result<RunState> {
        if self.fault == Fault::IgnoresPriority {
            self.priorities.lock().unwrap_or_else(PoisonError::into_inner).insert(run.run_id.clone(), run.priority);
            run.priority = Priority::Normal;
        }
        self.inner.submit(run).await
    }

    async fn register_worker(&self, worker: &WorkerInfo) -> Result<()> {
        self.inner.register_worker(worker).await
    }

    async fn stop_worker(&self, worker_id: &str) -> Result<()> {
        self.inner.stop_worker(worker_id).await
    }

    async fn heartbeat(&self, worker_id: &str, runs: &[Lease], timings: &Timings) -> Result<HeartbeatReply> {
        let mut reply = self.inner.heartbeat(worker_id, runs, timings).await?;
        for lease in runs {
            let run_id = &lease.run_id;
            if self.asked(run_id) && !reply.lost.contains(run_id) && !reply.cancel.contains(run_id) {
                reply.cancel.push(run_id.clone());
            }
        }
        Ok(reply)
    }

    async fn claim(
        &self,
        worker_id: &str,
        queues: &[String],
        graphs: &[GraphKey],
        limit: usize,
    ) -> Result<Vec<ClaimedRun>> {
        let mut claimed = self.inner.claim(worker_id, queues, graphs, limit).await?;
        if self.fault == Fault::ClaimsHeldRunsAgain {
            let mut all = self.claimed.lock().unwrap_or_else(PoisonError::into_inner);
            if claimed.is_empty()
                && let Some(held) = all.iter().find(|run| run.lease.worker_id != worker_id)
            {
                let mut again = held.clone();
                again.lease.worker_id = worker_id.to_owned();
                claimed.push(again);
            }
            all.extend(claimed.iter().cloned());
        }
        Ok(claimed)
    }

    async fn finish(&self, lease: &Lease, finish: Finish) -> Result<()> {
        self.inner.finish(lease, finish).await
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<()> {
        self.inner.release(lease, reason).await
    }

    async fn give_up(&self, lease: &Lease, reason: &str) -> Result<RunState> {
        self.inner.give_up(lease, reason).await
    }

    async fn cancel(&self, run_id: &str) -> Result<RunState> {
        let running = self.inner.get(run_id).await?.is_some_and(|run| run.state == RunState::Running);
        if self.fault == Fault::RequeuesRunsAskedToCancel && running {
            self.asked.lock().unwrap_or_else(PoisonError::into_inner).insert(run_id.to_owned());
            return Ok(RunState::Running);
        }
        self.inner.cancel(run_id).await
    }

    async fn retry(&self, run_id: &str, attempts: i32) -> Result<RunState> {
        if self.fault != Fault::LaxRetries {
            return self.inner.retry(run_id, attempts).await;
        }
        match self.inner.retry(run_id, 1_000).await {
            Err(dashflow_queue::QueueError::NotRetryable { .. }) => Ok(RunState::Queued),
            result => result,
        }
    }

    async fn sweep(&self, timings: &Timings) -> Result<SweepReport> {
        if self.fault == Fault::SweepsByLeaseAlone {
            if !self.inner.workers().await?.iter().any(|worker| worker.info.worker_id == GHOST) {
                self.inner.register_worker(&WorkerInfo::new(GHOST, "nowhere", 0, Vec::new(), Vec::new(), 0)).await?;
            }
            self.inner.heartbeat(GHOST, &[], timings).await?;
        }
        if self.fault == Fault::RequeuesRunsAskedToCancel {
            // The sweeper hears of them, so only a release and a give-up miss them.
            let asked: Vec<String> =
                self.asked.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect();
            for run_id in asked {
                self.inner.cancel(&run_id).await?;
            }
        }
        if self.fault == Fault::NeverSweeps {
            let mut report = SweepReport::default();
            report.swept = true;
            return Ok(report);
        }
        self.inner.sweep(timings).await
    }

    async fn get(&self, run_id: &str) -> Result<Option<RunRecord>> {
        Ok(self.inner.get(run_id).await?.map(|record| self.shown(record)))
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        Ok(self.inner.list(filter).await?.into_iter().map(|record| self.shown(record)).collect())
    }

    async fn stats(&self) -> Result<Vec<QueueStat>> {
        self.inner.stats().await
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>> {
        self.inner.workers().await
    }

    fn fenced_checkpointer(&self, lease: &Lease) -> Arc<dyn Checkpointer> {
        match self.fault {
            Fault::IgnoresFences => self.inner.checkpointer(),
            _ => self.inner.fenced_checkpointer(lease),
        }
    }

    fn checkpointer(&self) -> Arc<dyn Checkpointer> {
        self.inner.checkpointer()
    }

    async fn wakeups(&self) -> Result<Option<Box<dyn Wakeups>>> {
        match self.fault {
            Fault::LacksOptionalParts => Ok(None),
            _ => self.inner.wakeups().await,
        }
    }

    fn streams(&self) -> Option<Arc<dyn RunStreams>> {
        match self.fault {
            Fault::LacksOptionalParts => None,
            _ => self.inner.streams(),
        }
    }
}
