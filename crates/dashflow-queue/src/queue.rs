//! The `RunQueue` trait every queue backend implements.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use dashflow_checkpoint::Checkpointer;

use crate::{
    ClaimedRun, Finish, GraphKey, HeartbeatReply, Lease, NewRun, QueueStat, Result, RunFilter, RunRecord, RunState,
    RunStreams, SweepReport, Timings, WorkerInfo, WorkerRecord,
};

/// A durable queue of runs shared by worker processes, with leases and fences.
///
/// Object-safe: workers and clients hold an `Arc<dyn RunQueue>`. The contract:
///
/// - A queued run is claimed by at most one worker at a time; each claim increases the
///   thread's fence epoch and hands it out in the [`Lease`].
/// - Every change of owner (claim, sweep, release, give-up) increases the epoch, and every
///   write made under a lease (checkpoint writes through [`RunQueue::fenced_checkpointer`],
///   [`RunQueue::finish`], [`RunQueue::release`], [`RunQueue::give_up`]) checks it in its own
///   transaction: a former owner's late write is refused and stores nothing.
/// - A run whose cancel was requested never runs again: its worker finishes it `cancelled`,
///   and a release, give-up or sweep ends it `cancelled` rather than queueing it.
/// - A thread has at most one queued or running run.
/// - Lease times are the storage's own clock, never a worker's.
#[async_trait]
pub trait RunQueue: Send + Sync + fmt::Debug + 'static {
    /// Stores `run` as queued (or pending behind its thread's active run, with
    /// `Multitask::Enqueue`) and returns which; `ThreadBusy` when its thread is busy and the
    /// run asked to reject.
    async fn submit(&self, run: NewRun) -> Result<RunState>;

    /// Registers a worker (or registers it again after the sweeper reaped it).
    async fn register_worker(&self, worker: &WorkerInfo) -> Result<()>;

    /// Marks a worker stopped, after it released or finished its runs; a run it still holds
    /// (its release failed) is queued again by the next sweep.
    async fn stop_worker(&self, worker_id: &str) -> Result<()>;

    /// Renews the worker's lease for `timings.lease` and reports which of `runs` it no longer
    /// holds (lost to another owner, or ended under its own lease by a finish that committed)
    /// and which were asked to cancel, and whether the worker was asked to drain.
    ///
    /// Workers call it from a thread with a runtime of its own (so that busy nodes cannot
    /// delay it): it must not depend on running on the runtime the queue was created on.
    async fn heartbeat(&self, worker_id: &str, runs: &[Lease], timings: &Timings) -> Result<HeartbeatReply>;

    /// Claims up to `limit` queued runs of `queues` whose graph is among `graphs`, highest
    /// priority first and fair across tenants; each claim bumps its thread's fence epoch.
    async fn claim(
        &self,
        worker_id: &str,
        queues: &[String],
        graphs: &[GraphKey],
        limit: usize,
    ) -> Result<Vec<ClaimedRun>>;

    /// Ends a run held under `lease`; `LeaseLost` (and nothing changed) when the lease moved on.
    /// Promotes the thread's oldest pending run.
    async fn finish(&self, lease: &Lease, finish: Finish) -> Result<()>;

    /// Gives a held run back to the queue (shutdown, self-fencing) without charging the
    /// attempt; bumps the fence epoch. A run whose cancel was requested is not queued again:
    /// it ends `cancelled` (its error says it was cancelled, and why it was released), its
    /// thread's oldest pending run is promoted, and waiters hear that it is done, as after
    /// [`RunQueue::finish`]. `LeaseLost` when the lease moved on already.
    async fn release(&self, lease: &Lease, reason: &str) -> Result<()>;

    /// Gives up a held run whose attempt went wrong on its worker (a node stuck past the run's
    /// timeout): back to the queue with the attempt charged, or `failed` when it was the last;
    /// a run whose cancel was requested ends `cancelled` instead, whatever its attempts (its
    /// error says it was cancelled, and why it was given up). A run that ended has its
    /// thread's oldest pending run promoted. Bumps the fence epoch, so nothing the attempt
    /// writes later lands. Returns the state the run is in now; `LeaseLost` when the lease
    /// moved on already.
    async fn give_up(&self, lease: &Lease, reason: &str) -> Result<RunState>;

    /// Cancels a run: a pending or queued one at once, a running one by asking its worker
    /// (the state it is in afterwards is returned). A finished run is left as it is.
    async fn cancel(&self, run_id: &str) -> Result<RunState>;

    /// Queues a failed or cancelled run again, with `attempts` more claims allowed. The run
    /// keeps its id and what its attempts stored: a worker continues it from its thread's last
    /// checkpoint, re-running only tasks without a stored result and applying its input (or
    /// update, or resume answer) only if no attempt did. Only the thread's latest run can be
    /// retried, and only while no run of the thread is active: a later run moved the thread
    /// on, so its checkpoint is no longer this run's. Returns the state the run is in now
    /// (`queued`). `NotRetryable` says why a run cannot be; `NotFound` when there is none;
    /// `Invalid` for fewer than one attempt.
    async fn retry(&self, run_id: &str, attempts: i32) -> Result<RunState>;

    /// Stops dead workers and takes back their runs, and any run a stopped worker still
    /// holds (its release failed), each with a bumped epoch; at most one sweeper at a time.
    ///
    /// A live (not stopped) worker is dead when either holds:
    ///
    /// - its lease expired and its last heartbeat (its registration, before its first one) is
    ///   more than `timings.lease` older than the freshest heartbeat of the live workers. The
    ///   lease is judged relative to the fleet, not to the clock alone: when the storage or
    ///   the network stalls, every lease looks expired at once, and no worker is stopped
    ///   until another one heart-beats again. A lone worker is therefore never stopped for
    ///   its lease alone;
    /// - its heartbeat session is gone (a killed process closed its connection) and its last
    ///   heartbeat is more than two `timings.heartbeat` old. A queue without heartbeat
    ///   sessions (the memory queue) has only the first rule.
    ///
    /// A run taken back ends `cancelled` when its cancel was requested, `failed` when its
    /// attempt was its last, and is queued again otherwise, claimable after a backoff that
    /// grows with its attempts. A thread left without an active run gets its oldest pending
    /// run queued.
    async fn sweep(&self, timings: &Timings) -> Result<SweepReport>;

    /// The run `run_id`.
    async fn get(&self, run_id: &str) -> Result<Option<RunRecord>>;

    /// Runs, newest first.
    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;

    /// Run counts per queue, priority and state.
    async fn stats(&self) -> Result<Vec<QueueStat>>;

    /// Registered workers, stopped ones included.
    async fn workers(&self) -> Result<Vec<WorkerRecord>>;

    /// A checkpointer whose every write checks `lease`'s fence epoch in its own transaction;
    /// the only checkpointer a worker gives the run it holds.
    ///
    /// It writes the lease's thread only. Puts, batches, pending writes and retention's
    /// writes (`delete_before`, `rewrite_as_snapshot`, `delete_namespace`), deleting the
    /// thread (`delete_thread`) and copying another thread into it (`copy_thread` whose
    /// target is the lease's thread; the source is only read) are each a `Conflict` that
    /// changes nothing once the fence moved past the lease's epoch. A put or pending write to
    /// another thread is a `Conflict` too. Operations that reach beyond the lease's thread
    /// (`delete_idle_threads`, deleting another thread, copying into another thread) are
    /// `OutsideFence` and change nothing: make them through [`RunQueue::checkpointer`].
    /// Reads (`load`, `list`, `list_threads`, `get_schema`) and `put_schema` (schemas belong
    /// to the database, not to a thread) are not fenced.
    fn fenced_checkpointer(&self, lease: &Lease) -> Arc<dyn Checkpointer>;

    /// The checkpointer the queue's runs write through, unfenced: for reading results, and
    /// for what a fenced checkpointer refuses (other threads, idle threads).
    fn checkpointer(&self) -> Arc<dyn Checkpointer>;

    /// A stream of wake-ups: hints that work was queued or a run finished, so that workers
    /// and waiters need not wait for their next poll. Wake-ups can be missed (a reconnect
    /// loses those sent meanwhile, which [`Wake::Missed`] reports), so callers keep polling.
    /// `None` (the default): this queue has none, poll only.
    async fn wakeups(&self) -> Result<Option<Box<dyn Wakeups>>> {
        Ok(None)
    }

    /// The event streams of this queue's runs, which owners append to and any process can
    /// follow; `None` (the default): this queue keeps none.
    fn streams(&self) -> Option<Arc<dyn RunStreams>> {
        None
    }
}

/// What a [`Wakeups`] stream reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wake {
    /// Runs were queued (submitted, released, promoted or swept back): claim.
    Work,
    /// Run `0` ended.
    Done(String),
    /// Wake-ups may have been lost (the listener reconnected): check everything again.
    Missed,
    /// Items were appended to the event stream of run `0` ([`RunStreams`]).
    Events(String),
}

impl Wake {
    /// Whether this may be news to a follower of run `run_id`: items appended to its stream,
    /// its end, or wake-ups that were lost.
    pub fn may_concern(&self, run_id: &str) -> bool {
        match self {
            Self::Events(run) | Self::Done(run) => run == run_id,
            Self::Work => false,
            Self::Missed => true,
        }
    }
}

/// The next wake-up of `wakeups`; never, once there are none, so that a `select!` over it
/// and a timer waits for the timer alone.
pub async fn next_wake(wakeups: &mut Option<Box<dyn Wakeups>>) -> Option<Wake> {
    match wakeups {
        Some(wakeups) => wakeups.next().await,
        None => std::future::pending().await,
    }
}

/// Wake-ups from a queue (see [`RunQueue::wakeups`]).
#[async_trait]
pub trait Wakeups: Send + fmt::Debug {
    /// The next wake-up; `None` when there will be no more (poll only from then on).
    /// Cancel-safe: dropping the future loses nothing.
    async fn next(&mut self) -> Option<Wake>;
}

/// A shared queue is a queue.
#[async_trait]
impl<T: RunQueue + ?Sized> RunQueue for Arc<T> {
    async fn submit(&self, run: NewRun) -> Result<RunState> {
        (**self).submit(run).await
    }

    async fn register_worker(&self, worker: &WorkerInfo) -> Result<()> {
        (**self).register_worker(worker).await
    }

    async fn stop_worker(&self, worker_id: &str) -> Result<()> {
        (**self).stop_worker(worker_id).await
    }

    async fn heartbeat(&self, worker_id: &str, runs: &[Lease], timings: &Timings) -> Result<HeartbeatReply> {
        (**self).heartbeat(worker_id, runs, timings).await
    }

    async fn claim(
        &self,
        worker_id: &str,
        queues: &[String],
        graphs: &[GraphKey],
        limit: usize,
    ) -> Result<Vec<ClaimedRun>> {
        (**self).claim(worker_id, queues, graphs, limit).await
    }

    async fn finish(&self, lease: &Lease, finish: Finish) -> Result<()> {
        (**self).finish(lease, finish).await
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<()> {
        (**self).release(lease, reason).await
    }

    async fn give_up(&self, lease: &Lease, reason: &str) -> Result<RunState> {
        (**self).give_up(lease, reason).await
    }

    async fn cancel(&self, run_id: &str) -> Result<RunState> {
        (**self).cancel(run_id).await
    }

    async fn retry(&self, run_id: &str, attempts: i32) -> Result<RunState> {
        (**self).retry(run_id, attempts).await
    }

    async fn sweep(&self, timings: &Timings) -> Result<SweepReport> {
        (**self).sweep(timings).await
    }

    async fn get(&self, run_id: &str) -> Result<Option<RunRecord>> {
        (**self).get(run_id).await
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        (**self).list(filter).await
    }

    async fn stats(&self) -> Result<Vec<QueueStat>> {
        (**self).stats().await
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>> {
        (**self).workers().await
    }

    fn fenced_checkpointer(&self, lease: &Lease) -> Arc<dyn Checkpointer> {
        (**self).fenced_checkpointer(lease)
    }

    fn checkpointer(&self) -> Arc<dyn Checkpointer> {
        (**self).checkpointer()
    }

    async fn wakeups(&self) -> Result<Option<Box<dyn Wakeups>>> {
        (**self).wakeups().await
    }

    fn streams(&self) -> Option<Arc<dyn RunStreams>> {
        (**self).streams()
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    #[test]
    fn a_wake_concerns_a_follower_of_its_own_run_and_every_follower_after_a_loss() {
        let run = "01RUN";
        assert!(Wake::Events(run.into()).may_concern(run));
        assert!(Wake::Done(run.into()).may_concern(run));
        assert!(!Wake::Events("01OTHER".into()).may_concern(run));
        assert!(!Wake::Done("01OTHER".into()).may_concern(run));
        assert!(!Wake::Work.may_concern(run), "queued work is no news of a run");
        assert!(Wake::Missed.may_concern(run), "after lost wake-ups anything may have happened");
    }

    /// Wake-ups that report `Work` whenever asked.
    #[derive(Debug)]
    struct Always;

    #[async_trait]
    impl Wakeups for Always {
        async fn next(&mut self) -> Option<Wake> {
            Some(Wake::Work)
        }
    }

    fn poll_once(wakeups: &mut Option<Box<dyn Wakeups>>) -> Poll<Option<Wake>> {
        let mut next = pin!(next_wake(wakeups));
        next.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn the_next_wake_is_the_listeners_and_never_comes_without_one() {
        let mut listening: Option<Box<dyn Wakeups>> = Some(Box::new(Always));
        assert_eq!(poll_once(&mut listening), Poll::Ready(Some(Wake::Work)));
        assert_eq!(poll_once(&mut None), Poll::Pending);
    }
}
