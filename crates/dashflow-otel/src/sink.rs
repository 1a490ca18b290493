//! The sink: a bounded queue to a thread of its own, which builds spans from the events and
//! exports them in batches.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant, SystemTime};

use dashflow_scheduler::__private::niceness::{self, Niceness};
use dashflow_telemetry::__private::{Idle, Wait, Waits};
use dashflow_telemetry::{Event, EventBatch, EventCallback, EventRef, Interest};
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::error::{Error, Result};
use crate::spans::SpanMaker;

/// The events the exporter turns into spans: runs, superstep starts, the end of each task
/// attempt (it carries its duration), routing decisions and checkpoints. A step ends where
/// the next one of its run starts, or with its run, so step ends are not asked for: every
/// step would record one on the run's thread, where a step's start, its task's end and its
/// routing decision are recorded as a few numbers (see `EventBatch`). Task starts and custom
/// values are not needed either.
const INTEREST: Interest = Interest {
    runs: true,
    steps_started: true,
    steps_finished: false,
    tasks_started: false,
    tasks_finished: true,
    routing: true,
    custom: false,
    checkpoints: true,
    deltas: false,
};

/// Sets up an [`OtelSink`]; see [`OtelSink::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct OtelBuilder {
    endpoint: Option<String>,
    service_name: String,
    capacity: usize,
    max_batch: usize,
    export_interval: Duration,
    timeout: Duration,
    /// How the thread waits when idle (shortened by tests).
    waits: Waits,
    /// The thread's niceness.
    niceness: Niceness,
}

impl Default for OtelBuilder {
    fn default() -> Self {
        Self {
            endpoint: None,
            service_name: "dashflow".to_owned(),
            capacity: 4096,
            max_batch: 512,
            export_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            waits: Waits::default(),
            niceness: Niceness::BACKGROUND,
        }
    }
}

impl OtelBuilder {
    /// The OTLP/gRPC endpoint, such as `http://127.0.0.1:4317`. Unset, the OTLP exporter
    /// follows OpenTelemetry's own environment variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// ...), and without them `http://localhost:4317`.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The `service.name` of the exported resource. Default `dashflow`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// Hand-overs (a run's batch of events, or one event) the queue holds before new ones are
    /// dropped and counted ([`OtelStats::dropped`]). Default 4,096.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The most spans sent in one export. Default 512.
    pub fn max_batch(mut self, spans: usize) -> Self {
        self.max_batch = spans;
        self
    }

    /// The longest a finished span waits before it is exported. Default one second.
    pub fn export_interval(mut self, interval: Duration) -> Self {
        self.export_interval = interval;
        self
    }

    /// The longest one export may take. Default ten seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Linux only: the nice value of the exporter's thread, from -20 (highest priority) to 19
    /// (lowest), instead of the default, ten steps nicer than the thread that calls `start`
    /// (see [`nicer_by`](Self::nicer_by)). A value below the inherited one raises priority,
    /// which Linux allows only with `CAP_SYS_NICE` or an `RLIMIT_NICE` that covers it; `start`
    /// fails with [`Error::Niceness`] when the operating system refuses, for a value outside
    /// -20..=19, and on other platforms.
    pub fn niceness(mut self, nice: i32) -> Self {
        self.niceness = Niceness::Exactly(nice);
        self
    }

    /// Runs the exporter's thread `steps` nicer than the thread that calls `start`, at most
    /// 19; by default ten (`nicer_by(0)` keeps the starter's niceness). Linux only: elsewhere
    /// the thread keeps its starter's niceness, and this is never refused. Whichever of this
    /// and [`niceness`](Self::niceness) is set last holds.
    ///
    /// Span building is background work: nicer than the runs, the thread takes the CPU time
    /// the runs leave when both want it, and a saturated exporter drops more spans (counted)
    /// instead of slowing the runs. On a machine other processes keep busy it then gets
    /// little time at all: `nicer_by(0)` puts it level with them.
    pub fn nicer_by(mut self, steps: u8) -> Self {
        self.niceness = Niceness::NicerBy(steps);
        self
    }

    /// Starts the exporter's thread with the OTLP/gRPC exporter, and hands back the sink and
    /// the guard that stops the thread (exporting what it holds) when dropped.
    pub fn start(self) -> Result<(OtelSink, OtelGuard)> {
        let endpoint = self.endpoint.clone();
        let timeout = self.timeout;
        self.start_with_exporter(move || {
            let builder = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_timeout(timeout);
            let builder = match &endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint.clone()),
                None => builder,
            };
            builder.build().map_err(|source| Error::Exporter {
                endpoint: endpoint.unwrap_or_else(|| "the default endpoint".to_owned()),
                source,
            })
        })
    }

    /// Like [`start`](Self::start), with the exporter `make` returns (any OpenTelemetry
    /// `SpanExporter`). `make` runs on the exporter's thread, inside the Tokio runtime the
    /// exports run on, so exporters that need one (tonic's) can be built there.
    pub fn start_with_exporter<E, F>(self, make: F) -> Result<(OtelSink, OtelGuard)>
    where
        E: SpanExporter + 'static,
        F: FnOnce() -> Result<E> + Send + 'static,
    {
        if self.capacity == 0 || self.max_batch == 0 {
            return Err(Error::InvalidConfig("capacity and max_batch must be at least 1"));
        }
        if let Niceness::Exactly(requested) = self.niceness {
            niceness::check(requested).map_err(|unfit| Error::Niceness { requested, source: unfit.into() })?;
        }
        let (sender, receiver) = mpsc::sync_channel(self.capacity);
        let counters = Arc::new(Counters::default());
        let (started, started_rx) = mpsc::sync_channel(1);
        let worker_counters = Arc::clone(&counters);
        let settings = self.clone();
        let handle = std::thread::Builder::new()
            .name("dashflow-otel".into())
            .spawn(move || {
                // First, so that threads the runtime starts inherit it.
                if let Err(niceness::Refused { requested, source }) = settings.niceness.apply() {
                    let _ = started.send(Err(Error::Niceness { requested, source }));
                    return;
                }
                let thread_id = niceness::thread_id();
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = started.send(Err(Error::Start(error)));
                        return;
                    }
                };
                let exporter = match runtime.block_on(async { make() }) {
                    Ok(exporter) => exporter,
                    Err(error) => {
                        let _ = started.send(Err(error));
                        return;
                    }
                };
                let _ = started.send(Ok(thread_id));
                Worker::new(exporter, runtime, receiver, worker_counters, &settings).run();
            })
            .map_err(Error::Start)?;
        let thread_id = match started_rx.recv() {
            Ok(Ok(thread_id)) => thread_id,
            Ok(Err(error)) => {
                let _ = handle.join();
                return Err(error);
            }
            Err(_) => {
                let _ = handle.join();
                return Err(Error::Stopped);
            }
        };
        let worker = handle.thread().clone();
        let shared = Arc::new(Shared { sender, counters, capacity: self.capacity, worker, thread_id });
        let guard = OtelGuard { shared: Arc::clone(&shared), handle: Mutex::new(Some(handle)) };
        Ok((OtelSink { shared }, guard))
    }
}

/// Counters of an [`OtelSink`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtelStats {
    /// Hand-overs (batches or single events) dropped because the queue was full or the
    /// exporter had stopped.
    pub dropped: u64,
    /// Spans the exporter accepted.
    pub exported: u64,
    /// Spans lost because an export failed (the first failure is logged as a warning).
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    dropped: AtomicU64,
    exported: AtomicU64,
    failed: AtomicU64,
    warned: AtomicBool,
    /// Hand-overs queued and not yet taken by the thread.
    queued: AtomicUsize,
}

enum Command {
    Event(Event),
    Events(Vec<Event>),
    Batch(EventBatch),
    Flush(SyncSender<Result<()>>),
    Shutdown(SyncSender<Result<()>>),
}

struct Shared {
    sender: SyncSender<Command>,
    counters: Arc<Counters>,
    capacity: usize,
    /// The exporter's thread: unparked to end a pause early (see `idle`).
    worker: Thread,
    /// Its id in the operating system (Linux; 0 elsewhere).
    thread_id: i32,
}

/// Runs as OpenTelemetry spans: an [`EventCallback`] that exports each run as a span, each
/// superstep as its child and each task attempt as the superstep's child, over OTLP.
///
/// Register it like any sink (`CompiledGraph::with_callback`, or `RunConfig::callback` for
/// one run). Like the run log's store, it never blocks a run and does no I/O on the run's
/// thread: runs hand their events (in batches, see [`EventCallback::batches`]) to a bounded
/// queue, and a thread of its own (`dashflow-otel`) builds the spans and exports them. When
/// the queue is full, new hand-overs are dropped and counted ([`OtelStats::dropped`]): a
/// slow or unreachable collector costs spans, never the workload's latency or memory.
///
/// # What a run pays
///
/// It asks for no event a run records whole at every step: a step's start, its task's end
/// and its routing decision are recorded as a few numbers, and a step's span ends where the
/// next one starts (so step ends are not asked for). A hand-over is a push onto the queue:
/// the thread, once it finds the queue empty, looks again after short pauses instead of
/// waiting to be woken, so a hand-over costs the run no wake-up unless the thread has been
/// idle for a second or a quarter of the queue is taken. When this sink is the last of a
/// run's batching sinks it takes each batch as it is, and the events are built on its
/// thread; otherwise it is lent the batch and builds the events it wants on the run's.
///
/// Cheap to clone (the clones share the queue).
#[derive(Clone)]
pub struct OtelSink {
    shared: Arc<Shared>,
}

impl fmt::Debug for OtelSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelSink")
            .field("thread_id", &self.shared.thread_id)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl OtelSink {
    /// Settings, then [`OtelBuilder::start`].
    ///
    /// ```no_run
    /// # fn main() -> Result<(), dashflow_otel::Error> {
    /// let (sink, _guard) = dashflow_otel::OtelSink::builder()
    ///     .endpoint("http://127.0.0.1:4317")
    ///     .service_name("tickets")
    ///     .start()?;
    /// // app.with_callback(sink) ... runs ... and `_guard` exports the rest when dropped.
    /// # drop(sink); Ok(()) }
    /// ```
    pub fn builder() -> OtelBuilder {
        OtelBuilder::default()
    }

    /// Blocks until the spans of every event handed over before this call are exported, or
    /// `limit` passes. Runs still going export nothing yet (a run's span is sent when it ends).
    pub fn flush(&self, limit: Duration) -> Result<()> {
        request(&self.shared, Command::Flush, limit)
    }

    /// The counters.
    pub fn stats(&self) -> OtelStats {
        let counters = &self.shared.counters;
        OtelStats {
            dropped: counters.dropped.load(Ordering::Relaxed),
            exported: counters.exported.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
        }
    }

    /// Queues `command` without blocking; drops and counts it when the queue is full. Wakes
    /// nobody unless the thread sleeps on the queue, or pauses (see `idle`) while a quarter of
    /// the queue is taken.
    fn enqueue(&self, command: Command) {
        let shared = &self.shared;
        let queued = shared.counters.queued.fetch_add(1, Ordering::Relaxed) + 1;
        match shared.sender.try_send(command) {
            Ok(()) => {
                if queued > shared.capacity / 4 {
                    shared.worker.unpark();
                }
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                shared.counters.queued.fetch_sub(1, Ordering::Relaxed);
                shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn request(shared: &Shared, command: impl FnOnce(SyncSender<Result<()>>) -> Command, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let (reply, response) = mpsc::sync_channel(1);
    let mut command = command(reply);
    // Waits for room (the caller asked to wait, unlike a run), up to the limit.
    loop {
        match shared.sender.try_send(command) {
            Ok(()) => {
                // A pausing thread would see it only when its pause ends.
                shared.worker.unpark();
                break;
            }
            Err(TrySendError::Disconnected(_)) => return Err(Error::Stopped),
            Err(TrySendError::Full(back)) => {
                if Instant::now() >= deadline {
                    return Err(Error::InvalidConfig("the exporter's queue stayed full until the flush's limit"));
                }
                command = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    response.recv_timeout(deadline.saturating_duration_since(Instant::now())).map_err(|_| Error::Stopped)?
}

impl EventCallback for OtelSink {
    fn name(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed("OpenTelemetry exporter")
    }

    fn on_event(&self, event: &Event) {
        self.enqueue(Command::Event(event.clone()));
    }

    fn take_event(&self, event: Event) {
        self.enqueue(Command::Event(event));
    }

    fn batches(&self) -> bool {
        true
    }

    /// Another sink takes the batch itself: the events this one wants are built here, on the
    /// run's thread (only those).
    fn on_batch(&self, batch: &EventBatch) {
        let events: Vec<Event> =
            batch.refs().filter(|event| INTEREST.covers_ref(event)).map(|event| event.to_event()).collect();
        if !events.is_empty() {
            self.enqueue(Command::Events(events));
        }
    }

    /// The batch moves to the exporter's thread as it is; its events are built there.
    fn take_batch(&self, batch: EventBatch) {
        if !batch.is_empty() {
            self.enqueue(Command::Batch(batch));
        }
    }

    fn interest(&self) -> Interest {
        INTEREST
    }
}

/// Stops the exporter's thread when dropped: the spans of finished runs are exported, and
/// runs still open are exported as they stand (outcome `unfinished`), waiting at most the
/// export timeout. Keep it alive as long as runs may be exported (for the life of `main`).
pub struct OtelGuard {
    shared: Arc<Shared>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for OtelGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelGuard").finish_non_exhaustive()
    }
}

impl OtelGuard {
    /// Stops the thread now, reporting an export that failed.
    pub fn shutdown(self) -> Result<()> {
        self.stop()
    }

    fn stop(&self) -> Result<()> {
        let handle = self.handle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let Some(handle) = handle else { return Ok(()) };
        let result = request(&self.shared, Command::Shutdown, Duration::from_secs(30));
        let _ = handle.join();
        result
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::warn!(%error, "the OpenTelemetry exporter did not stop cleanly");
        }
    }
}

struct Worker<E> {
    exporter: E,
    runtime: tokio::runtime::Runtime,
    receiver: Receiver<Command>,
    counters: Arc<Counters>,
    maker: SpanMaker,
    ready: Vec<SpanData>,
    /// When the oldest span in `ready` must be exported by.
    due: Option<Instant>,
    max_batch: usize,
    interval: Duration,
    /// The first export error since the last flush.
    error: Option<Error>,
    idle: Idle,
}

impl<E: SpanExporter> Worker<E> {
    fn new(
        mut exporter: E,
        runtime: tokio::runtime::Runtime,
        receiver: Receiver<Command>,
        counters: Arc<Counters>,
        settings: &OtelBuilder,
    ) -> Self {
        exporter.set_resource(
            &Resource::builder_empty()
                .with_attributes([KeyValue::new("service.name", settings.service_name.clone())])
                .build(),
        );
        Self {
            exporter,
            runtime,
            receiver,
            counters,
            maker: SpanMaker::new(),
            ready: Vec::new(),
            due: None,
            max_batch: settings.max_batch,
            interval: settings.export_interval,
            error: None,
            idle: Idle::new(settings.waits),
        }
    }

    fn run(mut self) {
        loop {
            let command = match self.receiver.try_recv() {
                Ok(command) => {
                    self.idle.reset();
                    Some(command)
                }
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => match self.wait() {
                    Ok(Some(command)) => {
                        self.idle.reset();
                        Some(command)
                    }
                    Ok(None) => None,
                    Err(()) => break,
                },
            };
            match command {
                Some(Command::Event(event)) => {
                    self.taken();
                    self.push(&EventRef::Whole(&event));
                }
                Some(Command::Events(events)) => {
                    self.taken();
                    events.iter().for_each(|event| self.push(&EventRef::Whole(event)));
                }
                Some(Command::Batch(batch)) => {
                    self.taken();
                    // Read where they lie: the common kinds are never built as events.
                    for event in batch.refs() {
                        if INTEREST.covers_ref(&event) {
                            self.push(&event);
                        }
                    }
                }
                Some(Command::Flush(reply)) => {
                    self.export_all();
                    let _ = reply.send(self.error.take().map_or(Ok(()), Err));
                }
                Some(Command::Shutdown(reply)) => {
                    self.shutdown();
                    let _ = reply.send(self.error.take().map_or(Ok(()), Err));
                    return;
                }
                None => {}
            }
            if self.due.is_some_and(|due| Instant::now() >= due) {
                self.export_all();
            }
        }
        self.shutdown();
    }

    /// With the queue found empty: pauses (a hand-over wakes nobody) or, idle for long,
    /// blocks on the queue until a command comes or spans are due. `Err` when every sender
    /// is gone.
    ///
    /// The schedule is the sinks' shared one (`Idle`). A pause ends early for a flush or a
    /// shutdown, and for a hand-over that finds a quarter of the queue taken (see
    /// `OtelSink::enqueue`); the queue itself is where the thread sleeps, so its own blocking
    /// receive wakes it, where the run log's writer needs a doorbell.
    fn wait(&mut self) -> Result<Option<Command>, ()> {
        let until_due = self.due.map(|due| due.saturating_duration_since(Instant::now()));
        match self.idle.next_wait() {
            Wait::Pause(pause) => {
                std::thread::park_timeout(until_due.map_or(pause, |due| due.min(pause)));
                Ok(None)
            }
            Wait::Sleep => match until_due {
                Some(until_due) => match self.receiver.recv_timeout(until_due) {
                    Ok(command) => Ok(Some(command)),
                    Err(RecvTimeoutError::Timeout) => Ok(None),
                    Err(RecvTimeoutError::Disconnected) => Err(()),
                },
                None => self.receiver.recv().map(Some).map_err(|_| ()),
            },
        }
    }

    /// A hand-over left the queue.
    fn taken(&self) {
        self.counters.queued.fetch_sub(1, Ordering::Relaxed);
    }

    fn push(&mut self, event: &EventRef<'_>) {
        let before = self.ready.len();
        self.maker.push(event, &mut self.ready);
        if self.ready.len() > before && self.due.is_none() {
            self.due = Some(Instant::now() + self.interval);
        }
        while self.ready.len() >= self.max_batch {
            let rest = self.ready.split_off(self.max_batch);
            let batch = std::mem::replace(&mut self.ready, rest);
            self.export(batch);
        }
    }

    fn shutdown(&mut self) {
        let mut rest = Vec::new();
        self.maker.finish_all(SystemTime::now(), &mut rest);
        self.ready.extend(rest);
        self.export_all();
        let _ = self.exporter.shutdown();
    }

    fn export_all(&mut self) {
        while !self.ready.is_empty() {
            let rest = self.ready.split_off(self.ready.len().min(self.max_batch));
            let batch = std::mem::replace(&mut self.ready, rest);
            self.export(batch);
        }
        self.due = None;
    }

    fn export(&mut self, batch: Vec<SpanData>) {
        let spans = batch.len();
        match self.runtime.block_on(self.exporter.export(batch)) {
            Ok(()) => {
                self.counters.exported.fetch_add(spans as u64, Ordering::Relaxed);
            }
            Err(error) => {
                self.counters.failed.fetch_add(spans as u64, Ordering::Relaxed);
                if !self.counters.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, spans, "OpenTelemetry export failed; later failures are only counted");
                }
                self.error.get_or_insert(Error::Export { spans, message: error.to_string() });
            }
        }
    }
}

#[cfg(test)]
mod tests;
