//! The `EventStore`: an [`EventCallback`] that hands events to a background thread, which
//! writes them to the WAL in batches.
//!
//! The channel is bounded and `on_event` never blocks: when the writer falls behind, new
//! events are dropped and counted ([`StoreStats::dropped`]). Blocking would make a slow disk
//! slow down every graph in the process, and an unbounded queue would turn it into memory
//! growth; observability must not cost the workload its latency or its memory. The queue
//! holds [`StoreConfig::capacity`] events (64 Ki by default), and events travel in it by value
//! (no allocation per event). The writer keeps up with runs whose nodes do a little work, a
//! thousand of them at once (the facade's test
//! `a_thousand_concurrent_runs_of_10_us_nodes_lose_no_event`); a tight loop of steps that do
//! next to nothing (B1 in docs/benchmarks.md) can record events faster than one thread writes
//! them, and then some are dropped.
//!
//! Handing events over does not wake the writer each time (a wake-up is a system call and
//! an interrupt to another core, dearer than a short run): while the process is busy the
//! writer looks at the queue every few milliseconds, and only after a second with nothing
//! does it sleep until the next hand-over wakes it.
//!
//! The writer takes whatever is queued (up to [`StoreConfig::max_batch`] events) as one batch:
//! one write, at most one fsync and one index transaction per batch, so the busier the
//! process, the larger and cheaper the batches (group commit).
//!
//! The same thread builds each run's [`ExecutionTrace`](crate::ExecutionTrace) from the events
//! it writes and, in the batch that holds a run's `RunFinished`, appends the trace to the WAL
//! after the events and then writes the trace file ([`TraceConfig`]): trace persistence
//! costs the executor nothing beyond the events it sends anyway.

mod exit;
mod fold;
mod report;
mod traces;
mod wake;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use dashflow_telemetry::__private::{Idle, Wait};
use dashflow_telemetry::{Event, EventBatch, EventCallback, EventKind, EventRef, Interest, RunId};

use self::exit::ExitLink;
pub use self::report::FailureReport;
use self::traces::TraceSink;
use self::wake::Doorbell;
use crate::config::{FsyncPolicy, WalConfig};
use crate::error::{Result, WalError};
use crate::home;
use crate::trace_files::TraceConfig;
use crate::wal::{Framing, Record, Wal};

/// Configuration of an [`EventStore`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StoreConfig {
    /// How the WAL writes. Default: [`WalConfig::default`] with
    /// [`FsyncPolicy::Interval`] of [`StoreConfig::SYNC_INTERVAL`]: events are observability,
    /// not state (checkpoints are), so a machine crash may lose the last second of them, and
    /// a process crash none. Syncing every batch instead cost more than the runs themselves
    /// in tight loops of short runs (an fsync takes about a millisecond on the reference
    /// machine's disk).
    pub wal: WalConfig,
    /// Events the queue holds before new ones are dropped. Default 65,536 (a burst of runs
    /// the writer can catch up with).
    pub capacity: usize,
    /// The most events written as one batch. Default 4,096.
    pub max_batch: usize,
    /// Where the trace of each finished run goes. Default [`TraceConfig::off`]: a store you
    /// open yourself persists exactly what you configure and reads no environment.
    /// [`EventStore::global`] uses [`TraceConfig::from_env`] instead: files under the working
    /// directory or `DASHFLOW_TRACE_DIR`, records in the WAL, nothing with `DASHFLOW_TRACE=0`.
    pub traces: TraceConfig,
    /// Where a log that cannot be written is reported, once. Default
    /// [`FailureReport::Tracing`]; [`EventStore::global`] uses [`FailureReport::Stderr`].
    pub report: FailureReport,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            wal: WalConfig::default().fsync(FsyncPolicy::Interval(Self::SYNC_INTERVAL)),
            capacity: 64 * 1024,
            max_batch: 4096,
            traces: TraceConfig::off(),
            report: FailureReport::default(),
        }
    }
}

impl StoreConfig {
    /// The default store's longest time between syncs.
    pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

    /// Sets [`wal`](Self::wal).
    pub fn wal(mut self, wal: WalConfig) -> Self {
        self.wal = wal;
        self
    }

    /// Sets [`capacity`](Self::capacity).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets [`max_batch`](Self::max_batch).
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// Sets [`traces`](Self::traces).
    pub fn traces(mut self, traces: TraceConfig) -> Self {
        self.traces = traces;
        self
    }

    /// Sets [`report`](Self::report).
    pub fn report(mut self, report: FailureReport) -> Self {
        self.report = report;
        self
    }
}

/// Counters of an [`EventStore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Events written to the WAL. A one-task step's start that its task's end follows in the
    /// same hand-over is stored in that end and not counted (see the `fold` module).
    pub written: u64,
    /// Events dropped because the queue was full (the writer fell behind) or the store had
    /// shut down. A run's start and end are not dropped for a full queue: they are queued
    /// beyond its capacity, so a run that finished reads finished, with the events between
    /// missing.
    pub dropped: u64,
    /// Events lost because writing them failed (see [`EventStore::flush`] for the error).
    pub failed: u64,
    /// Traces of finished runs written everywhere the [`TraceConfig`] sends them.
    pub traces_written: u64,
    /// Traces of finished runs that could not be written somewhere (a trace file or the WAL
    /// record); the first failure is logged as a warning.
    pub traces_failed: u64,
    /// Runs not traced because the writer was behind when they started (more than a quarter
    /// of the queue's capacity waiting, counting the batch in hand): their events are all in the WAL (`dashflow runs show` reads
    /// them), but no trace file or trace record was built, so that the writer catches up
    /// with the events rather than drop them.
    pub traces_skipped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    traces_written: AtomicU64,
    traces_failed: AtomicU64,
    traces_skipped: AtomicU64,
    /// Events in the queue (sent, not yet taken by the writer), bounded by the capacity.
    queued: AtomicUsize,
}

enum Command {
    Event(Event),
    Events(Vec<Event>),
    /// A run's batch, its events still to be built.
    Batch(EventBatch),
    Flush(SyncSender<Result<()>>),
    Shutdown(SyncSender<Result<()>>),
}

/// The process's sink of run events into the WAL.
///
/// Register it as an [`EventCallback`]. `on_event` clones the event into a bounded queue
/// (`std::sync::mpsc::sync_channel`, lock-free for a sender) and returns; it never blocks and
/// never does I/O. When the queue is full the event is dropped and counted in
/// [`StoreStats::dropped`]: blocking would let a slow disk slow down every graph in the
/// process, and an unbounded queue would turn it into memory growth. A background thread
/// (`dashflow-wal`) takes whatever is queued, up to [`StoreConfig::max_batch`] events, and
/// appends it as one batch: one write, at most one fsync and one index transaction, so the
/// busier the process the cheaper each event (group commit).
///
/// Use [`EventStore::global`] for the one store of the process (what the `dashflow` facade
/// wires in), or [`EventStore::open`] for a store of your own (tests, tools).
///
/// # At exit
///
/// Every store still open when the process exits (it returns from `main`, calls
/// `std::process::exit`, or is a test binary whose harness ends) writes and syncs what it was
/// handed before the process ends, waiting at most [`EventStore::EXIT_FLUSH_LIMIT`] for a
/// slow disk: no call is needed for a finished run to be recorded. A process killed by a
/// signal or aborted loses what was still queued, as any crash does (the events of the last
/// few tens of milliseconds). Dropping or closing a store writes what it holds too, but
/// without a time limit.
///
/// # When the log cannot be written
///
/// Runs never fail because of the log. A WAL that cannot be written (a failed write or fsync,
/// or an unwritable trace directory) is reported once where [`StoreConfig::report`] says,
/// and the events that could not be written are counted in [`StoreStats::failed`].
pub struct EventStore {
    dir: PathBuf,
    traces_dir: Option<PathBuf>,
    sender: SyncSender<Command>,
    counters: Arc<Counters>,
    capacity: usize,
    /// How a hand-over tells the writer there is work, without waking it each time.
    doorbell: Arc<Doorbell>,
    /// What the flush at exit reaches this store through; held here so it lives as long as
    /// the store.
    exit: Arc<ExitLink>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for EventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStore").field("dir", &self.dir).field("stats", &self.stats()).finish_non_exhaustive()
    }
}

static GLOBAL: OnceLock<Mutex<HashMap<PathBuf, Arc<EventStore>>>> = OnceLock::new();

impl EventStore {
    /// The longest the flush at process exit waits for the stores' writers, all together: a
    /// stuck disk must not hang the process's exit. What is still queued when it runs out is
    /// lost, and reported.
    pub const EXIT_FLUSH_LIMIT: Duration = exit::EXIT_FLUSH_LIMIT;

    /// Opens the WAL in `dir` (recovering it, on the calling thread, so errors show here) and
    /// starts the background writer, which persists traces as [`StoreConfig::traces`] says
    /// (and applies trace file retention first thing).
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Self> {
        if config.capacity == 0 || config.max_batch == 0 {
            return Err(WalError::InvalidConfig {
                detail: "StoreConfig capacity and max_batch must be at least 1".into(),
            });
        }
        let traces = TraceSink::new(config.traces, config.report.clone());
        let traces_dir = traces.as_ref().and_then(|sink| sink.dir().map(Path::to_owned));
        let wal = Wal::open(dir.as_ref(), config.wal)?;
        let (sender, receiver) = mpsc::sync_channel(config.capacity);
        let counters = Arc::new(Counters::default());
        let doorbell = Arc::new(Doorbell::new());
        let exit = Arc::new(ExitLink::new(dir.as_ref().to_owned(), Arc::clone(&doorbell), config.report.clone()));
        let writer = Writer {
            wal,
            receiver,
            doorbell: Arc::clone(&doorbell),
            counters: Arc::clone(&counters),
            max_batch: config.max_batch,
            capacity: config.capacity,
            error: None,
            reported: false,
            exit: WriterExit(Arc::clone(&exit)),
            served: 0,
            traces,
        };
        let handle = std::thread::Builder::new()
            .name("dashflow-wal".into())
            .spawn(move || writer.run())
            .map_err(|e| WalError::io("start the writer thread for", dir.as_ref(), e))?;
        doorbell.attach(handle.thread().clone());
        exit::register(&exit);
        Ok(Self {
            dir: dir.as_ref().to_owned(),
            traces_dir,
            sender,
            counters,
            capacity: config.capacity,
            doorbell,
            exit,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// The process's store for the WAL the environment names (see the crate docs for the
    /// variables), opened on first use; `None` when `DASHFLOW_WAL` turns the WAL off.
    ///
    /// Its traces follow [`TraceConfig::from_env`], read when it opens: files (and their
    /// records in the WAL) under `DASHFLOW_TRACE_DIR` or a working directory that has a
    /// `.dashflow/` directory, unless `DASHFLOW_TRACE` turns them off; otherwise none, and
    /// [`Wal::trace`](crate::Wal::trace) builds a run's trace from its events. When the working directory cannot
    /// be read, traces go to the WAL only.
    ///
    /// Stores are kept per directory for the life of the process and never dropped; they
    /// write what is queued when the process exits (see [At exit](Self#at-exit)), so no
    /// flush is needed. Failures are reported once on standard error
    /// ([`FailureReport::Stderr`]): a store that cannot be opened when first asked for, and a
    /// write, fsync or trace file that fails later. The error is returned as well, and a
    /// later call tries to open the store again (reporting nothing more).
    pub fn global() -> Result<Option<Arc<EventStore>>> {
        Self::global_from(|name| std::env::var_os(name))
    }

    /// [`global`](Self::global) reading variables through `var`.
    pub fn global_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Option<Arc<EventStore>>> {
        let dir = home::wal_dir_from(&var).inspect_err(|error| report_open_failure(None, error))?;
        let Some(dir) = dir else { return Ok(None) };
        let mut stores = GLOBAL.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(store) = stores.get(&dir) {
            return Ok(Some(Arc::clone(store)));
        }
        let traces = TraceConfig::from_env_with(&var).unwrap_or_else(|error| {
            tracing::warn!(%error, "no trace files: their directory is unknown; set DASHFLOW_TRACE_DIR");
            TraceConfig::wal_only()
        });
        let mut config = StoreConfig::default().traces(traces).report(FailureReport::Stderr);
        match fsync_from_env(&var) {
            Ok(Some(policy)) => config.wal = config.wal.fsync(policy),
            Ok(None) => {}
            Err(value) => tracing::warn!(
                %value,
                "ignoring DASHFLOW_WAL_FSYNC: use `always`, `never` or a number of milliseconds between syncs"
            ),
        }
        let store = match Self::open(&dir, config) {
            Ok(store) => Arc::new(store),
            Err(error) => {
                report_open_failure(Some(&dir), &error);
                return Err(error);
            }
        };
        stores.insert(dir, Arc::clone(&store));
        Ok(Some(store))
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory trace files go to (`{base}/.dashflow/traces`), `None` when none are
    /// written.
    pub fn traces_dir(&self) -> Option<&Path> {
        self.traces_dir.as_deref()
    }

    /// Blocks until every event handed over before this call is written and, unless the
    /// fsync policy is [`FsyncPolicy::Never`], synced, and the traces of the runs those
    /// events finished are written too.
    ///
    /// Returns the first write error since the last flush, or [`WalError::Poisoned`] if the
    /// WAL refuses writes; it never reports success for events that were not written. Trace
    /// file failures are not errors here (the events, and the WAL's trace records, are what
    /// a flush promises); they are counted in [`StoreStats::traces_failed`].
    pub fn flush(&self) -> Result<()> {
        self.request(Command::Flush)
    }

    /// Like [`flush`](Self::flush), but waits at most `limit`, and reports failures where
    /// [`StoreConfig::report`] says instead of returning them: the barrier for a program that
    /// wants its log written now and must not fail or hang because the log is broken.
    ///
    /// Returns `false` when the writer did not finish in time (a stuck disk) or has stopped.
    pub fn flush_within(&self, limit: Duration) -> bool {
        self.exit.flush_until(Instant::now() + limit) == exit::ExitFlush::Flushed
    }

    /// Counters of written, dropped and failed events.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            written: self.counters.written.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            traces_written: self.counters.traces_written.load(Ordering::Relaxed),
            traces_failed: self.counters.traces_failed.load(Ordering::Relaxed),
            traces_skipped: self.counters.traces_skipped.load(Ordering::Relaxed),
        }
    }

    /// Writes what is queued, syncs per the policy, and stops the writer. Dropping the store
    /// does the same but cannot report an error.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        let handle = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let Some(handle) = handle else { return Ok(()) };
        let result = self.request(Command::Shutdown);
        if handle.join().is_err() {
            return Err(WalError::Closed);
        }
        result
    }

    /// Hands over a burst of events as one message, in order, as if each had been passed to
    /// [`on_event`](EventCallback::on_event): one message and no clone per event, and no
    /// wake-up of the writer unless it sleeps (see the module docs). Like `on_event` it never blocks; when the queue cannot take the whole burst it
    /// is dropped and counted in [`StoreStats::dropped`].
    pub fn send_batch(&self, events: Vec<Event>) {
        let count = events.len();
        if count > 0 {
            self.enqueue(count, Command::Events(events));
        }
    }

    /// Queues `command`, which carries `count` events, for the writer; when the queue cannot
    /// take them all, drops them but the starts and ends of runs ([`overflow`](Self::overflow))
    /// and counts them in [`StoreStats::dropped`]. Never blocks.
    fn enqueue(&self, count: usize, command: Command) {
        if !self.reserve(count) {
            self.overflow(count, command);
            return;
        }
        match self.sender.try_send(command) {
            Ok(()) => self.ring(),
            Err(_) => {
                self.counters.queued.fetch_sub(count, Ordering::Relaxed);
                self.counters.dropped.fetch_add(count as u64, Ordering::Relaxed);
            }
        }
    }

    /// The queue is full: drops `command`'s `count` events except the starts and ends of
    /// runs, which are queued beyond the capacity (at most two per run), so that a run that
    /// finished reads `completed` (or `failed`) rather than `abandoned` for want of its last
    /// event. Tight loops meet a full queue often, so this looks only at the events a batch
    /// keeps whole and builds none of its compact entries.
    fn overflow(&self, count: usize, command: Command) {
        let bound = |event: &Event| matches!(event.kind, EventKind::RunStarted { .. } | EventKind::RunFinished { .. });
        let kept: Vec<Event> = match command {
            Command::Event(event) if bound(&event) => vec![event],
            Command::Events(events) => events.into_iter().filter(bound).collect(),
            // Run starts and ends are never compact entries: no compact entry is built here.
            Command::Batch(batch) => batch.whole_events().filter(|event| bound(event)).cloned().collect(),
            _ => Vec::new(),
        };
        let kept_count = kept.len();
        self.counters.dropped.fetch_add(count.saturating_sub(kept_count) as u64, Ordering::Relaxed);
        if kept_count == 0 {
            return;
        }
        self.counters.queued.fetch_add(kept_count, Ordering::Relaxed);
        match self.sender.try_send(Command::Events(kept)) {
            Ok(()) => self.ring(),
            Err(_) => {
                self.counters.queued.fetch_sub(kept_count, Ordering::Relaxed);
                self.counters.dropped.fetch_add(kept_count as u64, Ordering::Relaxed);
            }
        }
    }

    /// Tells the writer events are queued: a wake-up only when it sleeps with nothing to do,
    /// or when the queue fills up while it waits for its next look.
    fn ring(&self) {
        self.doorbell.ring(Backlog::of(self.counters.queued.load(Ordering::Relaxed), self.capacity));
    }

    /// Reserves room for `count` events in the queue.
    fn reserve(&self, count: usize) -> bool {
        let queued = &self.counters.queued;
        let mut current = queued.load(Ordering::Relaxed);
        loop {
            if current.saturating_add(count) > self.capacity {
                return false;
            }
            match queued.compare_exchange_weak(current, current + count, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    fn request(&self, command: impl FnOnce(SyncSender<Result<()>>) -> Command) -> Result<()> {
        let (reply, response) = mpsc::sync_channel(1);
        // Blocks while the queue is full: the caller asked to wait, unlike `on_event`. The
        // writer is woken before (to drain a full queue) and after (to see the request).
        self.doorbell.wake();
        self.sender.send(command(reply)).map_err(|_| WalError::Closed)?;
        self.doorbell.wake();
        response.recv().map_err(|_| WalError::Closed)?
    }
}

impl EventCallback for EventStore {
    /// Names the log's directory: where a graph's runs are written.
    fn name(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Owned(format!("event log in {}", self.dir.display()))
    }

    fn on_event(&self, event: &Event) {
        // Shared names are `Arc`s: the clone is a few reference counts.
        self.take_event(event.clone());
    }

    /// Hot path: a non-blocking send, no I/O.
    fn take_event(&self, event: Event) {
        self.enqueue(1, Command::Event(event));
    }

    /// Runs hand their events over in batches (see [`EventCallback::batches`]): one message
    /// per batch, which the writer then writes with others.
    fn batches(&self) -> bool {
        true
    }

    fn on_batch(&self, batch: &EventBatch) {
        let interest = self.interest();
        self.send_batch(batch.events().filter(|event| interest.covers(&event.kind)).collect());
    }

    /// The usual way in: the store is the last batching sink, so the batch moves to the
    /// writer as it is, which encodes its events where they lie ([`EventBatch::refs`]): off
    /// the run's thread, and without building them unless traces are built too.
    fn take_batch(&self, batch: EventBatch) {
        let count = batch.len();
        if count > 0 {
            self.enqueue(count, Command::Batch(batch));
        }
    }

    /// Everything but `TaskStarted` and `SuperstepFinished`: a `TaskFinished` carries its
    /// duration (so its start), and `SuperstepStarted` names the tasks a step starts, so
    /// those two would only double the events a step hands over.
    fn interest(&self) -> Interest {
        STORED
    }
}

/// What the store keeps: everything but `TaskStarted` and `SuperstepFinished`. A
/// `TaskFinished` carries its duration (so its start), and `SuperstepStarted` names the tasks
/// a step starts, so those two would only double the events a step hands over. A run killed
/// mid-step still shows which tasks were running: its last `SuperstepStarted`.
const STORED: Interest = Interest { tasks_started: false, steps_finished: false, ..Interest::ALL };

impl Drop for EventStore {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::warn!(dir = %self.dir.display(), %error, "the event store did not shut down cleanly");
        }
    }
}

/// Reports on standard error that the process's store for `dir` (`None`: no directory could
/// be found) cannot be opened, the first time only.
fn report_open_failure(dir: Option<&Path>, error: &WalError) {
    static REPORTED: Mutex<Vec<Option<PathBuf>>> = Mutex::new(Vec::new());
    let mut reported = REPORTED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = dir.map(Path::to_owned);
    if !reported.contains(&dir) {
        reported.push(dir);
        FailureReport::Stderr.emit(&report::cannot_open(error));
    }
}

/// The fsync policy `DASHFLOW_WAL_FSYNC` asks for: `always`, `never` or a number of
/// milliseconds between syncs; `Ok(None)` when unset, `Err` with the value when unreadable.
fn fsync_from_env(
    var: &impl Fn(&str) -> Option<std::ffi::OsString>,
) -> std::result::Result<Option<FsyncPolicy>, String> {
    let Some(value) = var("DASHFLOW_WAL_FSYNC") else { return Ok(None) };
    let value = value.to_string_lossy().trim().to_ascii_lowercase();
    match value.as_str() {
        "always" => Ok(Some(FsyncPolicy::Always)),
        "never" => Ok(Some(FsyncPolicy::Never)),
        millis => millis
            .parse::<u64>()
            .map(|millis| Some(FsyncPolicy::Interval(Duration::from_millis(millis))))
            .map_err(|_| value.clone()),
    }
}

/// The background half: owns the WAL.
struct Writer {
    wal: Wal,
    receiver: Receiver<Command>,
    doorbell: Arc<Doorbell>,
    counters: Arc<Counters>,
    max_batch: usize,
    /// The queue's capacity, to tell when the writer is behind.
    capacity: usize,
    /// The first write error since the last flush.
    error: Option<WalError>,
    /// Whether a failure to write was reported ([`StoreConfig::report`]): once per store.
    reported: bool,
    /// Tells the flush at exit when this writer stops.
    exit: WriterExit,
    /// The last flush request of the [`ExitLink`] served.
    served: u64,
    /// Trace persistence, `None` when it is off.
    traces: Option<TraceSink>,
}

/// The writer's end of its [`ExitLink`]: dropped when the writer stops, however it stops, so
/// that the flush at exit never waits for a writer that is gone.
struct WriterExit(Arc<ExitLink>);

impl Drop for WriterExit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.report.emit(&format!(
                "dashflow: the event log's writer for `{}` stopped (it panicked, a bug in DashFlow); later events \
                 are not recorded",
                self.0.dir.display()
            ));
        }
        self.0.writer_gone();
    }
}

impl Writer {
    fn run(mut self) {
        if let Some(traces) = &mut self.traces {
            traces.retain(SystemTime::now());
        }
        let mut batch = Pending::default();
        let mut idle = Idle::default();
        loop {
            if self.exit.0.requested() > self.served {
                if !self.flush_for_exit(&mut batch) {
                    return;
                }
                idle = Idle::default();
            }
            // Takes whatever is queued; with nothing queued, writes what it holds and looks
            // again a little later (see `wake`): hand-overs do not wake it one by one.
            let first = match self.receiver.try_recv() {
                Ok(command) => command,
                Err(TryRecvError::Empty) => {
                    self.write(&mut batch);
                    let wait = idle.next_wait();
                    if wait == Wait::Sleep {
                        self.sync_before_sleep();
                    }
                    let (queued, exit, served) = (&self.counters.queued, &self.exit.0, self.served);
                    self.doorbell.wait(wait, || queued.load(Ordering::Relaxed) > 0 || exit.requested() > served);
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            };
            idle = Idle::default();
            let mut next = Some(first);
            while let Some(command) = next.take() {
                if !self.handle(command, &mut batch) {
                    return;
                }
                // A flush at exit goes first: the process is ending.
                if self.exit.0.requested() == self.served {
                    next = self.receiver.try_recv().ok();
                }
            }
        }
        // Every sender is gone (the store was dropped without a shutdown): write what is held.
        self.write(&mut batch);
    }

    /// Takes one command; `false` when it says to stop.
    fn handle(&mut self, command: Command, batch: &mut Pending) -> bool {
        match command {
            Command::Event(event) => {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                batch.push_event(event);
            }
            Command::Batch(events) => {
                self.counters.queued.fetch_sub(events.len(), Ordering::Relaxed);
                if self.traces.is_some() {
                    // Traces are built from events: build them once, here.
                    let mut built = events.into_events();
                    built.retain(|event| STORED.covers(&event.kind));
                    fold::fold_lone_starts(&mut built, 0, whole);
                    batch.push_events(built);
                } else {
                    // Written as they lie in the batch (`Pending::records`): no event built.
                    batch.push_batch(events);
                }
            }
            Command::Events(mut events) => {
                self.counters.queued.fetch_sub(events.len(), Ordering::Relaxed);
                fold::fold_lone_starts(&mut events, 0, whole);
                batch.push_events(events);
            }
            Command::Flush(reply) => {
                self.write(batch);
                let _ = reply.send(self.sync());
                return true;
            }
            Command::Shutdown(reply) => {
                self.write(batch);
                let _ = reply.send(self.sync());
                return false;
            }
        }
        if batch.len >= self.max_batch {
            self.write(batch);
        }
        true
    }

    /// For the flush at exit (or [`EventStore::flush_within`]): writes everything queued,
    /// syncs, and says so. `false` when a shutdown was among the queued commands.
    fn flush_for_exit(&mut self, batch: &mut Pending) -> bool {
        // Read before draining: whatever was handed over before this request is drained.
        let request = self.exit.0.requested();
        while let Ok(command) = self.receiver.try_recv() {
            if !self.handle(command, batch) {
                return false;
            }
        }
        self.write(batch);
        // A failure is reported where it happens; `flush` callers still get it.
        if let Err(error) = self.sync() {
            self.error.get_or_insert(error);
        }
        self.served = request;
        self.exit.0.served(request);
        true
    }

    /// Before sleeping until the next hand-over: syncs what the interval policy would sync
    /// at the next write, so an idle process does not leave its last events unsynced.
    fn sync_before_sleep(&mut self) {
        if matches!(self.wal.config().fsync, FsyncPolicy::Interval(_))
            && self.wal.poisoned().is_none()
            && let Err(error) = self.wal.sync()
        {
            self.failed(&error);
            self.error.get_or_insert(error);
        }
    }

    /// Reports that the log cannot be written, the first time; later failures go to debug
    /// logging, so a broken disk does not flood the output.
    fn failed(&mut self, error: &WalError) {
        if std::mem::replace(&mut self.reported, true) {
            tracing::debug!(%error, "cannot write events to the WAL");
        } else {
            self.exit.0.report.emit(&report::cannot_write(self.wal.dir(), error));
        }
    }

    fn write(&mut self, batch: &mut Pending) {
        if batch.is_empty() {
            return;
        }
        // Events wait behind this batch: start no new traces until the writer catches up.
        let backlog = Backlog::of(batch.len + self.counters.queued.load(Ordering::Relaxed), self.capacity);
        let counters = &self.counters;
        let mut finished = Vec::new();
        if let Some(traces) = &mut self.traces {
            for events in batch.events() {
                finished.extend(traces.collect(events, backlog, counters));
            }
        }
        let traces_in_wal = self.traces.as_ref().is_some_and(TraceSink::in_wal);
        // The traces go after the events, so a trace record follows its run's `RunFinished`.
        let mut records = batch.records();
        let count = records.len() as u64;
        if traces_in_wal {
            records.extend(finished.iter().map(Record::Trace));
        }
        let mut failed_in_wal: Vec<RunId> = Vec::new();
        let mut failure = None;
        match self.wal.append_records(&records, Framing::RunBlocks) {
            Ok(appended) => {
                self.counters.written.fetch_add(count, Ordering::Relaxed);
                for (run_id, error) in appended.skipped {
                    tracing::warn!(%run_id, %error, "cannot append a run's trace to the WAL; its events are there");
                    failed_in_wal.push(run_id);
                }
            }
            // The records are in the segments; the next append or open indexes them.
            Err(WalError::Index { source }) => {
                self.counters.written.fetch_add(count, Ordering::Relaxed);
                tracing::warn!(error = %source, "WAL index update failed; it catches up on the next write");
            }
            Err(error) => {
                self.counters.failed.fetch_add(count, Ordering::Relaxed);
                if traces_in_wal {
                    failed_in_wal.extend(finished.iter().map(|trace| trace.run.run_id));
                }
                failure = Some(error);
            }
        }
        drop(records);
        if let Some(error) = failure {
            // A poisoned WAL refuses every batch with the error that poisoned it, which was
            // reported when it happened.
            self.failed(&error);
            self.error.get_or_insert(error);
        }
        if let Some(traces) = &mut self.traces {
            traces.persist(&finished, &failed_in_wal, &self.counters);
        }
        batch.clear();
    }

    /// Syncs per the policy and reports the first error since the last call.
    fn sync(&mut self) -> Result<()> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        if let Some(poisoned) = self.wal.poisoned() {
            return Err(poisoned);
        }
        if self.wal.config().fsync == FsyncPolicy::Never {
            return Ok(());
        }
        self.wal.sync().inspect_err(|error| self.failed(error))
    }
}

/// Whether events wait for the writer beyond a quarter of the queue's capacity: the writer
/// is then woken at once, and starts no new traces until it catches up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backlog {
    Behind,
    KeepingUp,
}

impl Backlog {
    fn of(waiting: usize, capacity: usize) -> Self {
        if waiting > capacity / 4 { Backlog::Behind } else { Backlog::KeepingUp }
    }
}

/// What the writer holds between writes, in the order it was handed over.
#[derive(Default)]
struct Pending {
    held: Vec<Held>,
    /// Events held; a run's batch counts its entries.
    len: usize,
}

enum Held {
    /// Events handed over as events, their lone starts folded.
    Events(Vec<Event>),
    /// A run's batch, written as it lies (see [`Pending::records`]).
    Batch(EventBatch),
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    fn push_event(&mut self, event: Event) {
        self.len += 1;
        if let Some(Held::Events(events)) = self.held.last_mut() {
            events.push(event);
        } else {
            self.held.push(Held::Events(vec![event]));
        }
    }

    fn push_events(&mut self, events: Vec<Event>) {
        if !events.is_empty() {
            self.len += events.len();
            self.held.push(Held::Events(events));
        }
    }

    fn push_batch(&mut self, batch: EventBatch) {
        self.len += batch.len();
        self.held.push(Held::Batch(batch));
    }

    /// The events held as events (all of them while traces are built).
    fn events(&self) -> impl Iterator<Item = &[Event]> + '_ {
        self.held.iter().filter_map(|held| match held {
            Held::Events(events) => Some(&events[..]),
            Held::Batch(_) => None,
        })
    }

    /// The records to append, in order: a batch's events read where they lie, those the store
    /// keeps, a one-task step's start folded into its task's end (see `fold`).
    fn records(&self) -> Vec<Record<'_>> {
        let mut records = Vec::with_capacity(self.len);
        for held in &self.held {
            match held {
                Held::Events(events) => {
                    records.extend(events.iter().map(|event| Record::Event(EventRef::Whole(event))))
                }
                Held::Batch(batch) => push_folded_refs(&mut records, batch),
            }
        }
        records
    }

    fn clear(&mut self) {
        self.held.clear();
        self.len = 0;
    }
}

/// Pushes the events of `batch` the store keeps onto `records`, where they lie, each lone
/// step's start folded into its task's end (see `fold`).
pub(crate) fn push_folded_refs<'a>(records: &mut Vec<Record<'a>>, batch: &'a EventBatch) {
    fold::push_folded(records, batch.refs().filter(|event| STORED.covers_ref(event)), Record::Event);
}

fn whole(event: &Event) -> Option<EventRef<'_>> {
    Some(EventRef::Whole(event))
}

#[cfg(test)]
mod tests;
