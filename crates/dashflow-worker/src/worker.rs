//! [`Worker`]: claims runs from a [`RunQueue`], runs them with the checkpointer fenced by
//! their lease, heartbeats, sweeps, fences itself when the database is out of reach, and
//! stops gracefully.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dashflow_graph::MergeableState;
use dashflow_queue::{
    ClaimedRun, Finish, GraphKey, Lease, QueueError, RunQueue, RunState, RunStreams, Timings, Wake, Wakeups, WorkerInfo,
};
use tokio::runtime::Handle;
use tokio::sync::{Notify, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use crate::registry::{RegisteredGraph, RunEnd, RunnableGraph};
use crate::stream;
use crate::{Result, WorkerError};

/// What a worker did, counted since it started. Also reported through the `metrics` facade
/// (`dashflow_runs_claimed_total`, `dashflow_lease_lost_total`, ...; docs/guide.md lists them).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct WorkerCounters {
    /// Runs claimed.
    pub claimed: AtomicU64,
    /// Runs finished (completed, interrupted, failed or cancelled) by this worker.
    pub finished: AtomicU64,
    /// Runs whose lease this worker lost: fenced writes, or finishes refused.
    pub lease_lost: AtomicU64,
    /// Runs given back to the queue (shutdown, self-fencing, an unavailable database).
    pub released: AtomicU64,
    /// Runs cancelled at a client's request.
    pub cancelled: AtomicU64,
    /// Heartbeats that failed or timed out.
    pub heartbeat_failures: AtomicU64,
    /// Times this worker stopped its runs because it could not heartbeat in time.
    pub self_fenced: AtomicU64,
    /// Runs of dead workers this worker's sweeps put back in the queue.
    pub rescued: AtomicU64,
    /// Runs this worker gave up because they ran past their timeout and its stuck grace
    /// ([`WorkerBuilder::stuck_grace`]).
    pub stuck: AtomicU64,
    /// Times this worker stopped heart-beating because its runtime could not give a stuck run
    /// up (0 or 1).
    pub abandoned: AtomicU64,
}

impl WorkerCounters {
    fn add(&self, counter: &AtomicU64, name: &'static str, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(name).increment(n);
    }

    /// The current value of `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Builds a [`Worker`].
pub struct WorkerBuilder {
    queue: Arc<dyn RunQueue>,
    graphs: Vec<Arc<dyn RunnableGraph>>,
    names: Vec<String>,
    slots: usize,
    queues: Vec<String>,
    timings: Timings,
    worker_id: Option<String>,
    grace: Duration,
    version: String,
    event_streams: bool,
    event_retention: Duration,
    stuck_grace: Duration,
    run_timeout: Option<Duration>,
}

impl WorkerBuilder {
    /// Runs `graph`'s runs.
    pub fn graph<S: MergeableState>(mut self, graph: RegisteredGraph<S>) -> Self {
        self.names.push(graph.key().name().to_owned());
        self.graphs.push(Arc::new(graph));
        self
    }

    /// Runs at most `slots` runs at once (8 by default, at least 1).
    pub fn slots(mut self, slots: usize) -> Self {
        self.slots = slots.max(1);
        self
    }

    /// Claims from `queue` (only `default` when never called).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queues.push(queue.into());
        self
    }

    /// Heartbeat, lease, sweep and poll intervals (`Timings::default()`).
    pub fn timings(mut self, timings: Timings) -> Self {
        self.timings = timings;
        self
    }

    /// Registers under `worker_id` (host, process id and a random suffix by default).
    pub fn worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.worker_id = Some(worker_id.into());
        self
    }

    /// On shutdown, waits up to `grace` for running runs before releasing them (30 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Keeps no event streams of the runs it holds, whatever their submitters asked: nobody
    /// can follow them (`Client::follow`), and runs write nothing but their checkpoints.
    pub fn without_event_streams(mut self) -> Self {
        self.event_streams = false;
        self
    }

    /// How long the event streams of ended runs are kept for late followers before the
    /// sweeper deletes them (10 minutes).
    pub fn event_retention(mut self, retention: Duration) -> Self {
        self.event_retention = retention;
        self
    }

    /// How long past its timeout (`RunRequest::timeout`) a run may go on before the worker
    /// takes it for stuck (30 s). A run's timeout stops it at its next await; one still
    /// running this much later has a node that holds its thread without awaiting, which
    /// nothing in the process can stop. The worker then gives the run up: back to the queue
    /// with the attempt charged (`failed` when it was the last), its thread's fence bumped so
    /// that nothing the stuck node writes later lands, and counted ([`WorkerCounters::stuck`],
    /// `dashflow_runs_stuck_total`). It also stops claiming and stops as on SIGTERM, and
    /// [`Worker::run`] returns [`WorkerError::StuckRun`]: the blocked thread is lost to the
    /// process, so its supervisor should start a fresh one. Runs without a timeout are never
    /// taken for stuck. The check runs on the heartbeat thread, at each heartbeat; giving the
    /// run up runs on the worker's runtime. If that runtime has not done it within a lease (a
    /// current-thread runtime whose only thread the node holds), the heartbeat thread stops
    /// heart-beating for good ([`WorkerCounters::abandoned`]): the worker's lease ends, and
    /// another worker's sweeper takes its runs over with their fences bumped.
    pub fn stuck_grace(mut self, grace: Duration) -> Self {
        self.stuck_grace = grace;
        self
    }

    /// The timeout of runs submitted without one (`RunRequest::timeout`); none by default.
    /// With it, every run this worker holds is bounded, and a stuck one is given up (see
    /// [`stuck_grace`](Self::stuck_grace)).
    pub fn run_timeout(mut self, timeout: Duration) -> Self {
        self.run_timeout = Some(timeout);
        self
    }

    /// The program version the worker reports (`dashflow workers list`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The worker; `NoGraphs` without a graph, `DuplicateGraph` for a name given twice.
    pub fn build(mut self) -> Result<Worker> {
        if self.graphs.is_empty() {
            return Err(WorkerError::NoGraphs);
        }
        let mut names = self.names.clone();
        names.sort();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(WorkerError::DuplicateGraph { name: pair[0].clone() });
        }
        if self.queues.is_empty() {
            self.queues.push("default".to_owned());
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        let pid = std::process::id();
        let worker_id = self.worker_id.unwrap_or_else(|| format!("{host}-{pid}-{:08x}", fastrand::u32(..)));
        let info = WorkerInfo::new(
            worker_id,
            host,
            i32::try_from(pid).unwrap_or(i32::MAX),
            self.queues,
            self.graphs.iter().map(|graph| graph.key().clone()).collect(),
            i32::try_from(self.slots).unwrap_or(i32::MAX),
        )
        .version(self.version);
        let streams = if self.event_streams { self.queue.streams() } else { None };
        Ok(Worker {
            shared: Arc::new(Shared {
                streams,
                event_retention: self.event_retention,
                drain: Notify::new(),
                queue: self.queue,
                graphs: self.graphs.into_iter().map(|graph| (graph.key().clone(), graph)).collect(),
                info,
                timings: self.timings,
                held: Mutex::default(),
                dropped: Mutex::default(),
                slot_freed: Notify::new(),
                fenced: AtomicBool::new(false),
                counters: Arc::default(),
                stuck_grace: self.stuck_grace,
                run_timeout: self.run_timeout,
                stuck: Mutex::default(),
                giving_up: Mutex::default(),
            }),
            slots: self.slots,
            grace: self.grace,
        })
    }
}

/// A worker process's runtime: claims runs of its graphs, runs them, heartbeats, sweeps.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use dashflow_worker::{RegisteredGraph, Worker, shutdown_signal};
/// # async fn example<S: dashflow_graph::MergeableState>(
/// #     queue: Arc<dyn dashflow_queue::RunQueue>, app: dashflow_executor::CompiledGraph<S>,
/// # ) -> dashflow_worker::Result<()> {
/// let worker = Worker::builder(queue).graph(RegisteredGraph::new("support", "v3", app)).slots(8).build()?;
/// worker.run(shutdown_signal()).await?;
/// # Ok(())
/// # }
/// ```
pub struct Worker {
    shared: Arc<Shared>,
    slots: usize,
    grace: Duration,
}

struct Shared {
    queue: Arc<dyn RunQueue>,
    /// Where held runs' events go, unless streams are off.
    streams: Option<Arc<dyn RunStreams>>,
    event_retention: Duration,
    /// Notified (with a stored permit) when the queue asks this worker to drain.
    drain: Notify,
    graphs: HashMap<GraphKey, Arc<dyn RunnableGraph>>,
    info: WorkerInfo,
    timings: Timings,
    /// The runs this worker holds.
    held: Mutex<HashMap<String, Held>>,
    /// Leases of runs stopped by self-fencing, released once the database answers.
    dropped: Mutex<Vec<Lease>>,
    slot_freed: Notify,
    /// Set while the worker cannot heartbeat: it claims nothing and runs nothing.
    fenced: AtomicBool,
    counters: Arc<WorkerCounters>,
    stuck_grace: Duration,
    /// The timeout of runs submitted without one.
    run_timeout: Option<Duration>,
    /// The first run given up as stuck, which makes `run` end with `StuckRun`.
    stuck: Mutex<Option<String>>,
    /// Since when the worker's runtime has been asked to give stuck runs up without having
    /// done so yet.
    giving_up: Mutex<Option<Instant>>,
}

struct Held {
    lease: Lease,
    abort: Option<AbortHandle>,
    /// The run returned and its end is being reported: a heartbeat does not stop it (a lease
    /// lost meanwhile shows in the report's own answer, and a finish that committed is
    /// `HeartbeatReply::ended`, not lost).
    ending: bool,
    /// When the run counts as stuck: its timeout and the stuck grace after it was claimed.
    stuck_at: Option<Instant>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C): pass it to [`Worker::run`] for a graceful stop.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => drop(signal.recv().await),
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The next wake-up, or never when there are none.
async fn next_wake(wakeups: &mut Option<Box<dyn Wakeups>>) -> Option<Wake> {
    match wakeups {
        Some(wakeups) => wakeups.next().await,
        None => std::future::pending().await,
    }
}

/// `every`, give or take a fifth, so that workers started together do not act in lockstep.
fn jittered(every: Duration) -> Duration {
    every.mul_f64(0.8 + 0.4 * fastrand::f64())
}

/// The thread that heart-beats, on a current-thread runtime of its own: nodes that block or
/// saturate the worker's runtime (CPU-bound work left on it, blocking calls) cannot delay the
/// heartbeat, so a busy worker keeps its lease.
struct HeartbeatThread {
    stop: oneshot::Sender<()>,
    exited: oneshot::Receiver<()>,
}

impl HeartbeatThread {
    fn start(shared: Arc<Shared>) -> Result<Self> {
        let main = Handle::current();
        let (stop, stopped) = oneshot::channel::<()>();
        let (exit, exited) = oneshot::channel();
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(WorkerError::HeartbeatThread)?;
        std::thread::Builder::new()
            .name("dashflow-heartbeat".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        () = shared.heartbeats(main) => {}
                        _ = stopped => {}
                    }
                });
                // The runtime (and the heartbeat connection's socket with it) goes first.
                drop(runtime);
                let _ = exit.send(());
            })
            .map_err(WorkerError::HeartbeatThread)?;
        Ok(Self { stop, exited })
    }

    /// Stops heart-beating and waits until the thread has stopped.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.exited.await;
    }
}

impl Worker {
    /// A worker on `queue`; add graphs, then `build`.
    pub fn builder(queue: Arc<dyn RunQueue>) -> WorkerBuilder {
        WorkerBuilder {
            queue,
            graphs: Vec::new(),
            names: Vec::new(),
            slots: 8,
            queues: Vec::new(),
            timings: Timings::default(),
            worker_id: None,
            grace: Duration::from_secs(30),
            version: String::new(),
            event_streams: true,
            event_retention: Duration::from_secs(600),
            stuck_grace: Duration::from_secs(30),
            run_timeout: None,
        }
    }

    /// The id it registers under.
    pub fn id(&self) -> &str {
        &self.shared.info.worker_id
    }

    /// Its counters, readable while it runs.
    pub fn counters(&self) -> Arc<WorkerCounters> {
        Arc::clone(&self.shared.counters)
    }

    /// Registers, then claims and runs until `shutdown` resolves; then stops claiming, keeps
    /// heart-beating while running runs finish within the grace period, releases what is
    /// left (without charging the attempt) and deregisters.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let shared = &self.shared;
        shared.queue.register_worker(&shared.info).await?;
        tracing::info!(worker_id = %shared.info.worker_id, graphs = ?shared.info.graph_keys, "worker started");
        let heartbeat = HeartbeatThread::start(Arc::clone(shared))?;
        let sweeper = tokio::spawn(Arc::clone(shared).sweeps());
        tokio::pin!(shutdown);
        let mut wakeups = match shared.queue.wakeups().await {
            Ok(wakeups) => wakeups,
            Err(error) => {
                tracing::info!(error = %dashflow_telemetry::Report(&error), "no wake-ups from the queue; polling only");
                None
            }
        };
        'claiming: loop {
            let free = self.slots.saturating_sub(lock(&shared.held).len());
            let idle = if free == 0 || shared.fenced.load(Ordering::SeqCst) || lock(&shared.stuck).is_some() {
                false
            } else {
                match shared.claim(free.min(8)).await {
                    // A full batch: there may be more.
                    Ok(claimed) if claimed == free.min(8) => continue,
                    Ok(_) => true,
                    Err(error) => {
                        tracing::warn!(error = %dashflow_telemetry::Report(&error), "claiming runs failed");
                        true
                    }
                }
            };
            // Idle: wait for the poll, or a wake-up that says work was queued. Full: for a
            // slot to free up.
            let until = Instant::now() + if idle { jittered(shared.timings.poll) } else { shared.timings.poll };
            loop {
                tokio::select! {
                    () = &mut shutdown => break 'claiming,
                    () = shared.drain.notified() => {
                        tracing::info!(worker_id = %shared.info.worker_id, "asked to drain: stopping as on SIGTERM");
                        break 'claiming;
                    }
                    () = shared.slot_freed.notified(), if !idle => break,
                    () = tokio::time::sleep_until(until) => break,
                    wake = next_wake(&mut wakeups), if idle => match wake {
                        Some(Wake::Done(_)) => {}
                        Some(_) => break,
                        None => wakeups = None,
                    },
                }
            }
        }
        self.drain(heartbeat, sweeper).await?;
        match lock(&shared.stuck).take() {
            Some(run_id) => Err(WorkerError::StuckRun { run_id, after: shared.stuck_grace }),
            None => Ok(()),
        }
    }

    async fn drain(&self, heartbeat: HeartbeatThread, sweeper: JoinHandle<()>) -> Result<()> {
        let shared = &self.shared;
        sweeper.abort();
        tracing::info!(worker_id = %shared.info.worker_id, "worker stopping: no more claims");
        let deadline = Instant::now() + self.grace;
        while !lock(&shared.held).is_empty() {
            tokio::select! {
                () = shared.slot_freed.notified() => {}
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let left: Vec<Held> = lock(&shared.held).drain().map(|(_, held)| held).collect();
        for held in left {
            if let Some(abort) = held.abort {
                abort.abort();
            }
            shared.release(&held.lease, "the worker shut down before the run finished").await;
        }
        // Stopped before the worker deregisters: a heartbeat after it would register it again.
        heartbeat.stop().await;
        let dropped = std::mem::take(&mut *lock(&shared.dropped));
        for lease in dropped {
            shared.release(&lease, "the worker shut down while fenced").await;
        }
        shared.queue.stop_worker(&shared.info.worker_id).await?;
        tracing::info!(worker_id = %shared.info.worker_id, "worker stopped");
        Ok(())
    }
}

impl Shared {
    /// Claims up to `limit` runs and starts them; returns how many.
    async fn claim(self: &Arc<Self>, limit: usize) -> Result<usize, QueueError> {
        let keys: Vec<GraphKey> = self.graphs.keys().cloned().collect();
        let claimed = self.queue.claim(&self.info.worker_id, &self.info.queues, &keys, limit).await?;
        // A run given up as stuck while this claim was on its way may be among these.
        if lock(&self.stuck).is_some() {
            for run in claimed {
                self.release(&run.lease, "its worker is stopping: a run it held was stuck").await;
            }
            return Ok(0);
        }
        let count = claimed.len();
        self.counters.add(&self.counters.claimed, "dashflow_runs_claimed_total", count as u64);
        for run in &claimed {
            metrics::histogram!("dashflow_queue_wait_seconds").record(run.waited.as_secs_f64());
        }
        for run in claimed {
            self.start(run);
        }
        Ok(count)
    }

    fn start(self: &Arc<Self>, mut run: ClaimedRun) {
        let lease = run.lease.clone();
        let Some(graph) = self.graphs.get(&run.graph_key).cloned() else {
            // The claim filters by key, so this is a queue that ignored the filter.
            tracing::error!(run_id = %lease.run_id, key = %run.graph_key, "claimed a run of a graph this worker lacks");
            return;
        };
        let asked = run.config.get("timeout_ms").and_then(serde_json::Value::as_u64).map(Duration::from_millis);
        let timeout = asked.or(self.run_timeout);
        if let (None, Some(timeout), Some(config)) = (asked, timeout, run.config.as_object_mut()) {
            // The graph runs the attempt with the limit its config names.
            config.insert("timeout_ms".to_owned(), u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).into());
        }
        let stuck_at = timeout.map(|timeout| Instant::now() + timeout + self.stuck_grace);
        lock(&self.held)
            .insert(lease.run_id.clone(), Held { lease: lease.clone(), abort: None, stuck_at, ending: false });
        let shared = Arc::clone(self);
        let streamed = run.config.get("event_stream").and_then(serde_json::Value::as_bool) != Some(false);
        let streams = self.streams.clone().filter(|_| streamed);
        let task = tokio::spawn(async move {
            tracing::debug!(run_id = %run.lease.run_id, epoch = run.lease.epoch, attempt = run.attempt, "run claimed");
            let checkpointer = shared.queue.fenced_checkpointer(&run.lease);
            let end = match streams {
                Some(streams) => {
                    let (sink, writer) = stream::attach(streams, run.lease.clone(), run.attempt);
                    let (ended, ended_rx) = oneshot::channel();
                    let running = async {
                        let end = graph.execute(&run, checkpointer, Some(sink)).await;
                        let _ = ended.send(());
                        end
                    };
                    // The stream is complete before the run is finished in the queue, so a
                    // follower that sees the run over has every event to read.
                    let (end, ()) = tokio::join!(running, writer.write_until(ended_rx));
                    end
                }
                None => graph.execute(&run, checkpointer, None).await,
            };
            if let Some(held) = lock(&shared.held).get_mut(&run.lease.run_id) {
                held.ending = true;
            }
            shared.end(&run.lease, end).await;
            lock(&shared.held).remove(&run.lease.run_id);
            shared.slot_freed.notify_one();
        });
        if let Some(held) = lock(&self.held).get_mut(&lease.run_id) {
            held.abort = Some(task.abort_handle());
        }
    }

    /// Reports a run's end to the queue, retrying while the database is unavailable (the run
    /// stays held, so heartbeats and self-fencing still cover it).
    async fn end(&self, lease: &Lease, end: RunEnd) {
        let mut pause = self.timings.heartbeat / 4;
        loop {
            let outcome = match &end {
                RunEnd::Finished(finish) => self.queue.finish(lease, finish.clone()).await,
                RunEnd::Unavailable(why) => self.queue.release(lease, why).await,
            };
            match outcome {
                Ok(()) => {
                    let counter = match &end {
                        RunEnd::Finished(_) => (&self.counters.finished, "dashflow_runs_finished_total"),
                        RunEnd::Unavailable(_) => (&self.counters.released, "dashflow_runs_released_total"),
                    };
                    self.counters.add(counter.0, counter.1, 1);
                    return;
                }
                Err(QueueError::LeaseLost { .. }) => {
                    tracing::info!(run_id = %lease.run_id, epoch = lease.epoch, "lease lost: another worker owns the run");
                    self.counters.add(&self.counters.lease_lost, "dashflow_lease_lost_total", 1);
                    return;
                }
                Err(error) if error.is_retryable() => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.timings.heartbeat);
                }
                Err(error) => {
                    tracing::error!(run_id = %lease.run_id, error = %dashflow_telemetry::Report(&error), "cannot end a run");
                    return;
                }
            }
        }
    }

    async fn release(&self, lease: &Lease, why: &str) {
        match self.queue.release(lease, why).await {
            Ok(()) => self.counters.add(&self.counters.released, "dashflow_runs_released_total", 1),
            Err(QueueError::LeaseLost { .. }) => {}
            Err(error) => {
                tracing::warn!(run_id = %lease.run_id, error = %dashflow_telemetry::Report(&error), "cannot release a run; the sweeper will");
            }
        }
    }

    /// Stops run `run_id` at its next await and forgets it.
    fn stop(&self, run_id: &str) -> Option<Lease> {
        let held = lock(&self.held).remove(run_id)?;
        if let Some(abort) = held.abort {
            abort.abort();
        }
        self.slot_freed.notify_one();
        Some(held.lease)
    }

    /// Heart-beats until dropped. Runs on the heartbeat thread's own runtime: only the
    /// heartbeat itself (on the queue's dedicated connection) and local bookkeeping happen
    /// here; anything that needs the shared pool (releases, finishes, registering again) is
    /// handed to the worker's runtime `main`, so that a busy pool or busy runtime cannot hold
    /// a heartbeat back.
    async fn heartbeats(self: Arc<Self>, main: Handle) {
        let timings = self.timings;
        // The instant the last successful heartbeat was sent: the database's lease runs from
        // its commit, later, so a local deadline counted from here falls first.
        let mut last_ok = Instant::now();
        let fence_after = timings.lease.saturating_sub(timings.self_fence_margin);
        loop {
            tokio::time::sleep(timings.heartbeat).await;
            self.give_up_stuck(&main);
            if lock(&self.giving_up).is_some_and(|since| since.elapsed() >= fence_after) {
                self.abandon();
                return;
            }
            let leases: Vec<Lease> = lock(&self.held).values().map(|held| held.lease.clone()).collect();
            let sent = Instant::now();
            let limit = fence_after.saturating_sub(sent - last_ok).max(timings.heartbeat);
            match tokio::time::timeout(limit, self.queue.heartbeat(&self.info.worker_id, &leases, &timings)).await {
                Ok(Ok(reply)) => {
                    last_ok = sent;
                    if self.fenced.swap(false, Ordering::SeqCst) {
                        tracing::info!(worker_id = %self.info.worker_id, "database reachable again: releasing the runs stopped while fenced");
                    }
                    let dropped = std::mem::take(&mut *lock(&self.dropped));
                    if !dropped.is_empty() {
                        let shared = Arc::clone(&self);
                        main.spawn(async move {
                            for lease in dropped {
                                shared.release(&lease, "its worker lost the database for too long").await;
                            }
                        });
                    }
                    if reply.draining {
                        self.drain.notify_one();
                    }
                    if !reply.alive {
                        tracing::warn!(worker_id = %self.info.worker_id, "the sweeper stopped this worker; dropping its runs and registering again");
                        let runs: Vec<String> = lock(&self.held).keys().cloned().collect();
                        for run_id in runs {
                            if self.stop(&run_id).is_some() {
                                self.counters.add(&self.counters.lease_lost, "dashflow_lease_lost_total", 1);
                            }
                        }
                        let shared = Arc::clone(&self);
                        main.spawn(async move {
                            if let Err(error) = shared.queue.register_worker(&shared.info).await {
                                tracing::warn!(error = %dashflow_telemetry::Report(&error), "registering again failed");
                            }
                        });
                        continue;
                    }
                    for run_id in &reply.lost {
                        if lock(&self.held).get(run_id).is_some_and(|held| held.ending) {
                            continue;
                        }
                        if self.stop(run_id).is_some() {
                            tracing::info!(%run_id, "lease lost: the run was taken over; stopped it");
                            self.counters.add(&self.counters.lease_lost, "dashflow_lease_lost_total", 1);
                        }
                    }
                    for run_id in &reply.cancel {
                        if let Some(lease) = self.stop(run_id) {
                            let shared = Arc::clone(&self);
                            main.spawn(async move {
                                let finish = Finish::new(RunState::Cancelled, None);
                                match shared.queue.finish(&lease, finish).await {
                                    Ok(()) => shared.counters.add(
                                        &shared.counters.cancelled,
                                        "dashflow_runs_cancelled_total",
                                        1,
                                    ),
                                    Err(error) => {
                                        tracing::warn!(run_id = %lease.run_id, error = %dashflow_telemetry::Report(&error), "cannot finish a cancelled run")
                                    }
                                }
                            });
                        }
                    }
                }
                failed => {
                    self.counters.add(&self.counters.heartbeat_failures, "dashflow_heartbeat_failures_total", 1);
                    if let Ok(Err(error)) = &failed {
                        tracing::warn!(error = %dashflow_telemetry::Report(error), "heartbeat failed");
                    }
                    if last_ok.elapsed() >= fence_after && !self.fenced.swap(true, Ordering::SeqCst) {
                        self.self_fence();
                    }
                }
            }
        }
    }

    /// Gives up the runs past their stuck time (see [`WorkerBuilder::stuck_grace`]) and asks
    /// the worker to stop. Runs on the heartbeat thread; the queue is called from `main`.
    fn give_up_stuck(self: &Arc<Self>, main: &Handle) {
        let now = Instant::now();
        let stuck: Vec<String> = lock(&self.held)
            .iter()
            .filter(|(_, held)| held.stuck_at.is_some_and(|at| at <= now))
            .map(|(run_id, _)| run_id.clone())
            .collect();
        for run_id in stuck {
            let Some(lease) = self.stop(&run_id) else { continue };
            tracing::error!(%run_id, worker_id = %self.info.worker_id, grace = ?self.stuck_grace, "a run is stuck past its timeout: a node holds its thread; giving the run up and stopping this worker");
            self.counters.add(&self.counters.stuck, "dashflow_runs_stuck_total", 1);
            // Claims nothing more: the run goes back to the queue, and this worker stops.
            lock(&self.stuck).get_or_insert_with(|| run_id.clone());
            lock(&self.giving_up).get_or_insert(now);
            let shared = Arc::clone(self);
            main.spawn(async move {
                let reason = format!(
                    "stuck: still running {:?} past its timeout on worker {}, which gave it up",
                    shared.stuck_grace, shared.info.worker_id
                );
                match shared.queue.give_up(&lease, &reason).await {
                    Ok(state) => tracing::info!(run_id = %lease.run_id, %state, "gave the stuck run up"),
                    Err(QueueError::LeaseLost { .. }) => {}
                    Err(error) => {
                        tracing::warn!(run_id = %lease.run_id, error = %dashflow_telemetry::Report(&error), "cannot give the stuck run up; the sweeper will take it once this worker stops")
                    }
                }
                *lock(&shared.giving_up) = None;
                shared.drain.notify_one();
            });
        }
    }

    /// Stops heart-beating for good, because the worker's runtime did not give a stuck run up
    /// within a lease: a node holds the runtime's only thread. Without heartbeats the worker's
    /// lease ends, and the sweeper of another worker takes its runs over with their fences
    /// bumped; nothing this worker writes afterwards lands.
    fn abandon(&self) {
        let runs: Vec<String> = lock(&self.held).keys().cloned().collect();
        tracing::error!(worker_id = %self.info.worker_id, runs = runs.len(), "the worker's runtime did not give its stuck run up within a lease (a node holds its thread): stopping heartbeats, so that other workers take its runs over");
        self.counters.add(&self.counters.abandoned, "dashflow_workers_abandoned_total", 1);
        for run_id in runs {
            self.stop(&run_id);
        }
    }

    /// Stops every run before the lease can expire: whoever takes them over is then the only
    /// writer, even if this worker's writes were not fenced.
    fn self_fence(&self) {
        let runs: Vec<String> = lock(&self.held).keys().cloned().collect();
        tracing::warn!(worker_id = %self.info.worker_id, runs = runs.len(), "cannot heartbeat before the lease ends: stopping every run");
        self.counters.add(&self.counters.self_fenced, "dashflow_self_fenced_total", 1);
        for run_id in runs {
            if let Some(lease) = self.stop(&run_id) {
                lock(&self.dropped).push(lease);
            }
        }
    }

    async fn sweeps(self: Arc<Self>) {
        loop {
            tokio::time::sleep(jittered(self.timings.sweep)).await;
            if self.fenced.load(Ordering::SeqCst) {
                continue;
            }
            match self.queue.sweep(&self.timings).await {
                Ok(report) => {
                    let rescued = report.runs.len() as u64;
                    if rescued > 0 {
                        self.counters.add(&self.counters.rescued, "dashflow_runs_rescued_total", rescued);
                    }
                    // One sweeper at a time trims, the one that held the sweep lock.
                    if report.swept
                        && let Some(streams) = &self.streams
                        && let Err(error) = streams.trim(self.event_retention).await
                    {
                        tracing::debug!(error = %dashflow_telemetry::Report(&error), "trimming event streams failed");
                    }
                }
                Err(error) => tracing::debug!(error = %dashflow_telemetry::Report(&error), "sweep failed"),
            }
        }
    }
}
