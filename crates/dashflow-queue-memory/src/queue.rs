//! [`MemoryRunQueue`]: the [`RunQueue`] trait in process memory.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashflow_checkpoint::Checkpointer;
use dashflow_checkpoint_memory::MemoryCheckpointer;
use dashflow_queue::{
    ClaimedRun, Finish, GraphKey, HeartbeatReply, Lease, Multitask, NewRun, Priority, QueueError, QueueStat, Result,
    RunFilter, RunQueue, RunRecord, RunState, RunStreams, SweepReport, Timings, Wake, Wakeups, WorkerInfo,
    WorkerRecord, WorkerState,
};
use tokio::sync::{Mutex, broadcast};

use crate::clock::{Clock, SystemClock};
use crate::fence::FencedCheckpointer;
use crate::streams::{MemoryRunStreams, StoredItem};

/// How many wake-ups a listener may fall behind before it is told it missed some.
const WAKE_BACKLOG: usize = 64;

/// The whole run queue in process memory: runs, leases, fence epochs, workers, tenant clocks
/// and event streams, behind one lock.
///
/// Cheap to clone; clones share one queue. See the crate's docs for what it is for.
#[derive(Clone)]
pub struct MemoryRunQueue {
    pub(crate) shared: Arc<Shared>,
}

/// Builds a [`MemoryRunQueue`] with a clock or a checkpointer of the caller's.
#[derive(Debug, Default)]
pub struct MemoryRunQueueBuilder {
    clock: Option<Arc<dyn Clock>>,
    checkpointer: Option<MemoryCheckpointer>,
}

impl MemoryRunQueueBuilder {
    /// Reads lease times, backoffs and ages from `clock` ([`SystemClock`] by default).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Stores the runs' checkpoints in `checkpointer` (a fresh one by default), e.g. to look
    /// inside through a clone.
    #[must_use]
    pub fn checkpointer(mut self, checkpointer: MemoryCheckpointer) -> Self {
        self.checkpointer = Some(checkpointer);
        self
    }

    /// The queue.
    pub fn build(self) -> MemoryRunQueue {
        let (wake, _) = broadcast::channel(WAKE_BACKLOG);
        let (events, _) = broadcast::channel(WAKE_BACKLOG);
        MemoryRunQueue {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                checkpointer: self.checkpointer.unwrap_or_default(),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                wake,
                events,
            }),
        }
    }
}

pub(crate) struct Shared {
    /// Held across a fenced write, so that the fence check and the write are one step that no
    /// change of owner can come between.
    pub(crate) state: Mutex<State>,
    pub(crate) checkpointer: MemoryCheckpointer,
    pub(crate) clock: Arc<dyn Clock>,
    wake: broadcast::Sender<Wake>,
    pub(crate) events: broadcast::Sender<Wake>,
}

impl Shared {
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A hint only: nobody listening is not an error. A run's end is news to its stream's
    /// followers too.
    fn wake(&self, wake: Wake) {
        if let Wake::Done(run_id) = &wake {
            let _unheard = self.events.send(Wake::Done(run_id.clone()));
        }
        let _unheard = self.wake.send(wake);
    }
}

#[derive(Default)]
pub(crate) struct State {
    runs: HashMap<String, Run>,
    /// Submission order, the tie-break of promotion and of `list`.
    submitted: u64,
    /// Fence epochs by thread; absent until the thread's first claim.
    pub(crate) fences: HashMap<String, i64>,
    workers: BTreeMap<String, Worker>,
    /// Start-time fair queueing: each tenant's clock per queue and priority.
    tenant_clocks: HashMap<(String, Priority, String), i64>,
    pub(crate) streams: HashMap<String, Vec<StoredItem>>,
}

struct Run {
    record: RunRecord,
    order: u64,
    vtime: i64,
    input: Vec<u8>,
    config: serde_json::Value,
    max_attempts: i32,
    /// When it may be claimed: its submission, or the end of a backoff after a lost attempt.
    run_at_ms: i64,
}

struct Worker {
    info: WorkerInfo,
    running: i32,
    started_at_ms: i64,
    heartbeat_at_ms: i64,
    lease_expires_at_ms: i64,
    draining: bool,
    stopped: bool,
}

impl State {
    pub(crate) fn run_finished_at(&self, run_id: &str) -> Option<Option<i64>> {
        self.runs.get(run_id).map(|run| run.record.finished_at_ms)
    }

    fn active_run(&self, thread_id: &str) -> Option<&Run> {
        self.runs.values().find(|run| {
            run.record.thread_id == thread_id && matches!(run.record.state, RunState::Queued | RunState::Running)
        })
    }

    /// Queues the thread's oldest pending run if the thread has no active one; whether it did.
    fn promote(&mut self, thread_id: &str) -> bool {
        if self.active_run(thread_id).is_some() {
            return false;
        }
        let oldest = self
            .runs
            .values_mut()
            .filter(|run| run.record.thread_id == thread_id && run.record.state == RunState::Pending)
            .min_by_key(|run| run.order);
        match oldest {
            Some(run) => {
                run.record.state = RunState::Queued;
                true
            }
            None => false,
        }
    }

    /// The run `lease` holds, if it still holds it: running under the lease's epoch, which is
    /// still its thread's fence epoch.
    fn held(&mut self, lease: &Lease) -> Option<&mut Run> {
        let fence = self.fences.get(&lease.thread_id).copied();
        self.runs.get_mut(&lease.run_id).filter(|run| {
            run.record.state == RunState::Running
                && run.record.lease_epoch == Some(lease.epoch)
                && fence == Some(lease.epoch)
        })
    }

    /// Moves the thread's fence past `epoch`: nothing written under it lands any more.
    fn bump_fence(&mut self, thread_id: &str) -> i64 {
        let epoch = self.fences.entry(thread_id.to_owned()).or_insert(0);
        *epoch += 1;
        *epoch
    }

    /// The start tag of a new run of `tenant`: its clock plus its share, never below the
    /// smallest queued tag of the queue and priority, so an idle tenant banks no credit.
    fn tick(&mut self, queue: &str, priority: Priority, tenant: &str) -> i64 {
        let floor = self
            .runs
            .values()
            .filter(|run| {
                run.record.state == RunState::Queued && run.record.queue == queue && run.record.priority == priority
            })
            .map(|run| run.vtime)
            .min()
            .unwrap_or(0);
        let key = (queue.to_owned(), priority, tenant.to_owned());
        let vtime = match self.tenant_clocks.get(&key) {
            Some(clock) => (clock + 1000).max(floor),
            None => floor,
        };
        self.tenant_clocks.insert(key, vtime);
        vtime
    }
}

/// How the error of a run whose cancel was requested begins when a release, a give-up or the
/// sweeper ends it, as on PostgreSQL.
const CANCELLED_AS_ASKED: &str = "cancelled as asked";

fn lease_lost(lease: &Lease, why: &str) -> QueueError {
    QueueError::LeaseLost { run_id: lease.run_id.clone(), epoch: lease.epoch, why: why.to_owned() }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The wait before a run whose worker died may be claimed again: doubling with each attempt,
/// up to 300 units, a unit being half a heartbeat (at most a second). PostgreSQL's queue takes
/// a random half to all of it; this one takes all of it, so that tests can count on it.
fn backoff_ms(attempt: i32, timings: &Timings) -> i64 {
    let unit = millis(timings.heartbeat / 2).min(1000);
    let doublings = u32::try_from(attempt.saturating_sub(1).clamp(0, 9)).unwrap_or(0);
    unit.saturating_mul(i64::from(2_u32.pow(doublings)).min(300))
}

impl MemoryRunQueue {
    /// An empty queue on the system clock, with a fresh memory checkpointer.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder, to choose the clock or the checkpointer.
    pub fn builder() -> MemoryRunQueueBuilder {
        MemoryRunQueueBuilder::default()
    }

    /// The checkpointer runs write through, unfenced, as its concrete type.
    pub fn memory_checkpointer(&self) -> &MemoryCheckpointer {
        &self.shared.checkpointer
    }

    /// Asks worker `worker_id` to drain: it claims nothing more, and its heartbeats say so.
    /// `NotFound` for an unknown worker.
    pub async fn drain_worker(&self, worker_id: &str) -> Result<()> {
        let mut state = self.shared.state.lock().await;
        let worker = state
            .workers
            .get_mut(worker_id)
            .ok_or_else(|| QueueError::NotFound { what: format!("worker {worker_id}") })?;
        worker.draining = true;
        Ok(())
    }

    fn claimed(run: &Run, worker_id: &str, first_claim: bool, waited_ms: i64) -> ClaimedRun {
        ClaimedRun {
            lease: Lease {
                run_id: run.record.run_id.clone(),
                thread_id: run.record.thread_id.clone(),
                worker_id: worker_id.to_owned(),
                epoch: run.record.lease_epoch.unwrap_or_default(),
            },
            graph_key: run.record.graph_key.clone(),
            kind: run.record.kind,
            input: run.input.clone(),
            config: run.config.clone(),
            attempt: run.record.attempt,
            first_claim,
            queue: run.record.queue.clone(),
            tenant: run.record.tenant.clone(),
            waited: Duration::from_millis(u64::try_from(waited_ms).unwrap_or(0)),
        }
    }
}

impl Default for MemoryRunQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryRunQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `try_lock`: formatting must never wait on (or deadlock with) an operation.
        let runs = self.shared.state.try_lock().map(|state| state.runs.len()).ok();
        f.debug_struct("MemoryRunQueue").field("runs", &runs).field("clock", &self.shared.clock).finish()
    }
}

#[async_trait]
impl RunQueue for MemoryRunQueue {
    async fn submit(&self, run: NewRun) -> Result<RunState> {
        run.validate()?;
        let now = self.shared.now();
        let mut state = self.shared.state.lock().await;
        // The same run submitted twice is submitted once.
        if let Some(existing) = state.runs.get(&run.run_id) {
            return Ok(existing.record.state);
        }
        let active = state.active_run(&run.thread_id).map(|active| active.record.run_id.clone());
        if let Some(active_run) = &active
            && run.multitask == Multitask::Reject
        {
            return Err(QueueError::ThreadBusy { thread_id: run.thread_id, active_run: active_run.clone() });
        }
        // Behind the active run, and behind runs already waiting, to keep their order.
        let waiting = state
            .runs
            .values()
            .any(|other| other.record.thread_id == run.thread_id && other.record.state == RunState::Pending);
        let run_state = if active.is_some() || waiting { RunState::Pending } else { RunState::Queued };
        let vtime = state.tick(&run.queue, run.priority, &run.tenant);
        state.submitted += 1;
        let order = state.submitted;
        let record = RunRecord {
            run_id: run.run_id.clone(),
            queue: run.queue,
            graph_key: run.graph_key,
            thread_id: run.thread_id,
            tenant: run.tenant,
            priority: run.priority,
            state: run_state,
            kind: run.kind,
            attempt: 0,
            worker_id: None,
            lease_epoch: None,
            cancel_requested: false,
            checkpoint_id: None,
            error: None,
            created_at_ms: now,
            started_at_ms: None,
            finished_at_ms: None,
        };
        let stored = Run {
            record,
            order,
            vtime,
            input: run.input,
            config: run.config,
            max_attempts: run.max_attempts.max(1),
            run_at_ms: now,
        };
        state.runs.insert(run.run_id, stored);
        drop(state);
        if run_state == RunState::Queued {
            self.shared.wake(Wake::Work);
        }
        Ok(run_state)
    }

    async fn register_worker(&self, worker: &WorkerInfo) -> Result<()> {
        worker.validate()?;
        let now = self.shared.now();
        let mut state = self.shared.state.lock().await;
        // Registering grants no lease of its own: the first heartbeat does.
        state.workers.insert(
            worker.worker_id.clone(),
            Worker {
                info: worker.clone(),
                running: 0,
                started_at_ms: now,
                heartbeat_at_ms: now,
                lease_expires_at_ms: now,
                draining: false,
                stopped: false,
            },
        );
        Ok(())
    }

    async fn stop_worker(&self, worker_id: &str) -> Result<()> {
        let mut state = self.shared.state.lock().await;
        if let Some(worker) = state.workers.get_mut(worker_id).filter(|worker| !worker.stopped) {
            worker.stopped = true;
            worker.running = 0;
        }
        Ok(())
    }

    async fn heartbeat(&self, worker_id: &str, runs: &[Lease], timings: &Timings) -> Result<HeartbeatReply> {
        let now = self.shared.now();
        let mut state = self.shared.state.lock().await;
        let mut reply = HeartbeatReply::default();
        if let Some(worker) = state.workers.get_mut(worker_id).filter(|worker| !worker.stopped) {
            worker.heartbeat_at_ms = now;
            worker.lease_expires_at_ms = now.saturating_add(millis(timings.lease));
            worker.running = i32::try_from(runs.len()).unwrap_or(i32::MAX);
            reply.alive = true;
            reply.draining = worker.draining;
        }
        for lease in runs {
            let owned = state.runs.get(&lease.run_id).filter(|run| {
                run.record.lease_epoch == Some(lease.epoch) && run.record.worker_id.as_deref() == Some(worker_id)
            });
            // A run that ended with the thread's fence still at the lease's epoch ended by its
            // worker's own finish; every change of owner moves the fence.
            let fence_kept = state.fences.get(&lease.thread_id) == Some(&lease.epoch);
            match owned {
                Some(run) if run.record.state == RunState::Running && run.record.cancel_requested => {
                    reply.cancel.push(lease.run_id.clone());
                }
                Some(run) if run.record.state == RunState::Running => {}
                Some(run) if run.record.state.is_terminal() && fence_kept => reply.ended.push(lease.run_id.clone()),
                _ => reply.lost.push(lease.run_id.clone()),
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
        if limit == 0 || graphs.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.shared.now();
        let mut state = self.shared.state.lock().await;
        let claimable = state.workers.get(worker_id).is_some_and(|worker| !worker.stopped && !worker.draining);
        if !claimable {
            return Ok(Vec::new());
        }
        let mut next: Vec<(Priority, i64, String)> = state
            .runs
            .values()
            .filter(|run| {
                run.record.state == RunState::Queued
                    && run.run_at_ms <= now
                    && queues.contains(&run.record.queue)
                    && graphs.contains(&run.record.graph_key)
            })
            .map(|run| (run.record.priority, run.vtime, run.record.run_id.clone()))
            .collect();
        next.sort_unstable();
        next.truncate(limit);
        let mut claimed = Vec::with_capacity(next.len());
        for (_, _, run_id) in next {
            // One queued run per thread: each claim of the batch is of another thread.
            let Some(thread_id) = state.runs.get(&run_id).map(|run| run.record.thread_id.clone()) else { continue };
            let epoch = state.bump_fence(&thread_id);
            let Some(run) = state.runs.get_mut(&run_id) else { continue };
            let first_claim = run.record.started_at_ms.is_none();
            run.record.state = RunState::Running;
            run.record.worker_id = Some(worker_id.to_owned());
            run.record.lease_epoch = Some(epoch);
            run.record.attempt += 1;
            run.record.started_at_ms.get_or_insert(now);
            run.record.error = None;
            claimed.push(Self::claimed(run, worker_id, first_claim, (now - run.run_at_ms).max(0)));
        }
        Ok(claimed)
    }

    async fn finish(&self, lease: &Lease, finish: Finish) -> Result<()> {
        if !finish.state.is_terminal() {
            return Err(QueueError::Invalid {
                what: "finish state",
                detail: format!("`{}` is not a terminal state", finish.state),
            });
        }
        let now = self.shared.now();
        let mut state = self.shared.state.lock().await;
        let Some(run) = state.held(lease) else {
            return Err(lease_lost(lease, "the run was claimed, swept, released or cancelled since"));
        };
        run.record.state = finish.state;
        run.record.finished_at_ms = Some(now);
        run.record.checkpoint_id = finish.checkpoint_id;
        run.record.error = finish.error;
        run.record.cancel_requested = false;
        let promoted = state.promote(&lease.thread_id);
        drop(state);
        self.shared.wake(Wake::Done(lease.run_id.clone()));
        if promoted {
            self.shared.wake(Wake::Work);
        }
        Ok(())
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<()> {
        let now = self.shared.now();
        let mut state = self.shared.state.lock().await;
        let Some(run) = state.held(lease) else {
            return Err(lease_lost(lease, "the run was claimed, swept or cancelled since"));
        };
        run.record.worker_id = None;
        run.run_at_ms = now;
        // A run asked to cancel ends here: queued again, another worker would run it.
        let cancelled = run.record.cancel_requested;
        if cancelled {
            run.record.state = RunState::Cancelled;
            run.record.finished_at_ms = Some(now);
            run.record.error = Some(format!("{CANCELLED_AS_ASKED}; its worker released it: {reason}"));
        } else {
            run.record.state = RunState::Queued;
            run.record.attempt = (run.record.attempt - 1).max(0);
            run.record.error = Some(reason.to_owned());
        }
        state.bump_fence(&lease.thread_id);
        let promoted = cancelled && state.promote(&lease.thread_id);
        drop(state);
        if cancelled {
            self.shared.wake(Wake::Done(lease.run_id.clone()));
        }
        if promoted || !cancelled {
            self.shared.wake(Wake::Work);
        }
        Ok(())
    }

    async fn give_up(&self, lease: &Lease, reason: &str) -> Result<RunState> {
        let now = self.shared.now();
        let mut state = self.shared.state.lock().await;
        let Some(run) = state.held(lease) else {
            return Err(lease_lost(lease, "the run was claimed, swept, released or cancelled since"));
        };
        let cancelled = run.record.cancel_requested;
        let ended = cancelled || run.record.attempt >= run.max_attempts;
        run.record.state = if cancelled {
            RunState::Cancelled
        } else if ended {
            RunState::Failed
        } else {
            RunState::Queued
        };
        run.record.finished_at_ms = ended.then_some(now);
        run.record.worker_id = None;
        run.record.error = Some(if cancelled {
            format!("{CANCELLED_AS_ASKED}; its worker gave it up: {reason}")
        } else {
            reason.to_owned()
        });
        run.run_at_ms = now;
        let run_state = run.record.state;
        state.bump_fence(&lease.thread_id);
        let promoted = ended && state.promote(&lease.thread_id);
        drop(state);
        if ended {
            self.shared.wake(Wake::Done(lease.run_id.clone()));
        }
        if promoted || !ended {
            self.shared.wake(Wake::Work);
        }
        Ok(run_state)
    }

    async fn cancel(&self, run_id: &str) -> Result<RunState> {
        let now = self.shared.now();
        let mut state = self.shared.state.lock().await;
        let Some(run) = state.runs.get_mut(run_id) else {
            return Err(QueueError::NotFound { what: format!("run {run_id}") });
        };
        match run.record.state {
            RunState::Pending | RunState::Queued => {
                run.record.state = RunState::Cancelled;
                run.record.finished_at_ms = Some(now);
                run.record.error = Some("cancelled before it ran".to_owned());
                let thread_id = run.record.thread_id.clone();
                let promoted = state.promote(&thread_id);
                drop(state);
                self.shared.wake(Wake::Done(run_id.to_owned()));
                if promoted {
                    self.shared.wake(Wake::Work);
                }
                Ok(RunState::Cancelled)
            }
            RunState::Running => {
                // Its worker learns it from its next heartbeat, and finishes it.
                run.record.cancel_requested = true;
                Ok(RunState::Running)
            }
            finished => Ok(finished),
        }
    }

    async fn retry(&self, run_id: &str, attempts: i32) -> Result<RunState> {
        let now = self.shared.now();
        let mut state = self.shared.state.lock().await;
        let Some(run) = state.runs.get(run_id) else {
            return Err(QueueError::NotFound { what: format!("run {run_id}") });
        };
        run.record.retryable(attempts)?;
        let (thread_id, order) = (run.record.thread_id.clone(), run.order);
        let later = state
            .runs
            .values()
            .filter(|other| other.record.thread_id == thread_id && other.order > order)
            .max_by_key(|other| other.order);
        if let Some(later) = later {
            return Err(QueueError::moved_on(run_id, &later.record.run_id, &thread_id));
        }
        let Some(run) = state.runs.get_mut(run_id) else {
            return Err(QueueError::NotFound { what: format!("run {run_id}") });
        };
        run.record.state = RunState::Queued;
        run.max_attempts = run.record.attempt.saturating_add(attempts);
        run.run_at_ms = now;
        run.record.error = None;
        run.record.finished_at_ms = None;
        run.record.cancel_requested = false;
        drop(state);
        self.shared.wake(Wake::Work);
        Ok(RunState::Queued)
    }

    async fn sweep(&self, timings: &Timings) -> Result<SweepReport> {
        let now = self.shared.now();
        let lease_ms = millis(timings.lease);
        let mut state = self.shared.state.lock().await;
        // The lock makes this the only sweeper.
        let mut report = SweepReport::default();
        report.swept = true;
        // A lease counts as expired relative to the freshest heartbeat of the fleet, as on
        // PostgreSQL: a clock that jumps (a test's) cannot reclaim every worker at once.
        let newest = state.workers.values().filter(|worker| !worker.stopped).map(|worker| worker.heartbeat_at_ms).max();
        let dead: Vec<String> = state
            .workers
            .iter()
            .filter(|(_, worker)| {
                !worker.stopped
                    && worker.lease_expires_at_ms < now
                    && newest.is_some_and(|newest| worker.heartbeat_at_ms < newest.saturating_sub(lease_ms))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for worker_id in &dead {
            if let Some(worker) = state.workers.get_mut(worker_id) {
                worker.stopped = true;
                worker.running = 0;
            }
        }
        // The runs of the workers just found dead, and any run still held by a worker stopped
        // earlier (its release failed before it stopped): nothing else would ever free them.
        let mut orphans: Vec<(u64, String, String, String)> = state
            .runs
            .values()
            .filter(|run| run.record.state == RunState::Running)
            .filter_map(|run| {
                let worker_id = run.record.worker_id.as_ref()?;
                let stopped = state.workers.get(worker_id).is_some_and(|worker| worker.stopped);
                stopped.then(|| (run.order, run.record.run_id.clone(), run.record.thread_id.clone(), worker_id.clone()))
            })
            .collect();
        orphans.sort_unstable();
        for (_, run_id, thread_id, worker_id) in orphans {
            let why = if dead.contains(&worker_id) { "stopped heart-beating" } else { "stopped while holding the run" };
            state.bump_fence(&thread_id);
            let Some(run) = state.runs.get_mut(&run_id) else { continue };
            let attempt = run.record.attempt;
            run.record.state = if run.record.cancel_requested {
                RunState::Cancelled
            } else if attempt >= run.max_attempts {
                RunState::Failed
            } else {
                RunState::Queued
            };
            if run.record.state.is_terminal() {
                run.record.finished_at_ms = Some(now);
            }
            run.run_at_ms = now.saturating_add(backoff_ms(attempt, timings));
            run.record.worker_id = None;
            let cancelled = if run.record.cancel_requested { format!("{CANCELLED_AS_ASKED}; ") } else { String::new() };
            run.record.error = Some(format!("{cancelled}worker {worker_id} {why} during attempt {attempt}"));
            report.runs.push((run_id, run.record.state));
        }
        report.workers_stopped = dead;
        // Each thread without an active run gets its oldest pending run queued (a run failed or
        // cancelled above leaves its thread free).
        let mut threads: Vec<String> = state
            .runs
            .values()
            .filter(|run| run.record.state == RunState::Pending)
            .map(|run| run.record.thread_id.clone())
            .collect();
        threads.sort_unstable();
        threads.dedup();
        for thread_id in threads {
            if state.promote(&thread_id) {
                report.promoted += 1;
            }
        }
        drop(state);
        for (run_id, _) in report.runs.iter().filter(|(_, run_state)| run_state.is_terminal()) {
            self.shared.wake(Wake::Done(run_id.clone()));
        }
        if report.promoted > 0 || report.runs.iter().any(|(_, run_state)| *run_state == RunState::Queued) {
            self.shared.wake(Wake::Work);
        }
        Ok(report)
    }

    async fn get(&self, run_id: &str) -> Result<Option<RunRecord>> {
        Ok(self.shared.state.lock().await.runs.get(run_id).map(|run| run.record.clone()))
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let state = self.shared.state.lock().await;
        let mut runs: Vec<&Run> = state
            .runs
            .values()
            .filter(|run| filter.state.is_none_or(|wanted| run.record.state == wanted))
            .filter(|run| filter.thread_id.as_ref().is_none_or(|wanted| run.record.thread_id == *wanted))
            .collect();
        runs.sort_unstable_by_key(|run| std::cmp::Reverse(run.order));
        Ok(runs.into_iter().take(filter.limit.unwrap_or(100)).map(|run| run.record.clone()).collect())
    }

    async fn stats(&self) -> Result<Vec<QueueStat>> {
        let now = self.shared.now();
        let state = self.shared.state.lock().await;
        let mut groups: BTreeMap<(String, Priority, &'static str), QueueStat> = BTreeMap::new();
        for run in state.runs.values() {
            let record = &run.record;
            let stat =
                groups.entry((record.queue.clone(), record.priority, record.state.as_str())).or_insert_with(|| {
                    QueueStat {
                        queue: record.queue.clone(),
                        priority: record.priority,
                        state: record.state,
                        count: 0,
                        oldest_wait_ms: None,
                    }
                });
            stat.count += 1;
            if record.state == RunState::Queued {
                let waited = now - record.created_at_ms;
                stat.oldest_wait_ms = Some(stat.oldest_wait_ms.map_or(waited, |oldest| oldest.max(waited)));
            }
        }
        Ok(groups.into_values().collect())
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>> {
        let now = self.shared.now();
        let state = self.shared.state.lock().await;
        let mut workers: Vec<&Worker> = state.workers.values().collect();
        workers.sort_by(|a, b| a.stopped.cmp(&b.stopped).then(b.started_at_ms.cmp(&a.started_at_ms)));
        Ok(workers
            .into_iter()
            .map(|worker| {
                let state = if worker.stopped {
                    WorkerState::Stopped
                } else if worker.draining {
                    WorkerState::Draining
                } else if worker.lease_expires_at_ms < now && worker.heartbeat_at_ms > worker.started_at_ms {
                    WorkerState::Stale
                } else {
                    WorkerState::Live
                };
                WorkerRecord {
                    info: worker.info.clone(),
                    running: worker.running,
                    heartbeat_age_ms: now - worker.heartbeat_at_ms,
                    state,
                }
            })
            .collect())
    }

    fn fenced_checkpointer(&self, lease: &Lease) -> Arc<dyn Checkpointer> {
        Arc::new(FencedCheckpointer::new(Arc::clone(&self.shared), lease))
    }

    fn checkpointer(&self) -> Arc<dyn Checkpointer> {
        Arc::new(self.shared.checkpointer.clone())
    }

    async fn wakeups(&self) -> Result<Option<Box<dyn Wakeups>>> {
        Ok(Some(Box::new(MemoryWakeups { received: self.shared.wake.subscribe() })))
    }

    fn streams(&self) -> Option<Arc<dyn RunStreams>> {
        Some(Arc::new(MemoryRunStreams::new(Arc::clone(&self.shared))))
    }
}

/// Wake-ups of a [`MemoryRunQueue`] (or of its streams): what was sent since subscribing.
#[derive(Debug)]
pub(crate) struct MemoryWakeups {
    pub(crate) received: broadcast::Receiver<Wake>,
}

#[async_trait]
impl Wakeups for MemoryWakeups {
    async fn next(&mut self) -> Option<Wake> {
        match self.received.recv().await {
            Ok(wake) => Some(wake),
            // Fell behind: the oldest hints were dropped.
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Wake::Missed),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}
