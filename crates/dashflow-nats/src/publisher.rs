//! The publishing sink: a bounded queue to a thread of its own, which publishes each event to
//! JetStream and waits for its acknowledgement.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;
use dashflow_scheduler::__private::niceness::{self, Niceness};
use dashflow_telemetry::__private::{Idle, Wait, Waits};
use dashflow_telemetry::{BatchItem, Event, EventBatch, EventCallback, EventKind, Interest, RunId, StateDelta};
use tokio::sync::Notify;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::wire::{self, Publisher};

/// The events published unless [`NatsBuilder::interest`] says otherwise: all but task starts
/// and step ends (as the run log keeps): a task's end carries its duration, and a step's
/// start names its tasks.
pub const DEFAULT_INTEREST: Interest = Interest { tasks_started: false, steps_finished: false, ..Interest::ALL };

/// Sets up a [`NatsSink`]; see [`NatsSink::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct NatsBuilder {
    url: String,
    stream: String,
    prefix: String,
    capacity: usize,
    pending_limit: usize,
    max_in_flight: usize,
    name: Option<String>,
    interest: Interest,
    ack_timeout: Duration,
    /// How the publisher waits when idle (shortened by tests).
    waits: Waits,
    /// The publisher's thread's niceness.
    niceness: Niceness,
}

impl NatsBuilder {
    /// The JetStream stream to publish to; created (subjects `{prefix}.>`) when missing.
    /// Default `dashflow-events`.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    /// The first tokens of every subject: events go to `{prefix}.{graph}.{run id}`. Default
    /// `dashflow.events`.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Events (and state deltas) the queue to the publisher's thread holds before new
    /// hand-overs (a run's batch, or one event) are dropped and counted; a hand-over larger
    /// than the whole queue is dropped. Default 65,536.
    pub fn capacity(mut self, events: usize) -> Self {
        self.capacity = events;
        self
    }

    /// Events published and not yet acknowledged (waiting for JetStream, or kept to re-send
    /// while the server is away) that the publisher holds before it stops taking hand-overs
    /// from the queue. Default 65,536.
    pub fn pending_limit(mut self, events: usize) -> Self {
        self.pending_limit = events;
        self
    }

    /// Publishes sent before the publisher waits for the oldest acknowledgement. Default 256.
    pub fn max_in_flight(mut self, publishes: usize) -> Self {
        self.max_in_flight = publishes;
        self
    }

    /// The publisher's name in every message (`publisher.name`). Default `{pid}@{host}`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Which events to publish. Default [`DEFAULT_INTEREST`]. Its `deltas` flag is
    /// [`state_deltas`](Self::state_deltas)'s, whichever is set last.
    pub fn interest(mut self, interest: Interest) -> Self {
        self.interest = interest;
        self
    }

    /// Also publishes each run's state deltas: the state it starts from and each superstep's
    /// merged update, as JSON on the run's subject (schema version 2, see [`crate::wire`]),
    /// so that a consumer can rebuild a thread's state without the checkpoint database
    /// ([`Follow::state_deltas`](crate::Follow::state_deltas)). Off by default: each observed
    /// run then copies every step's merged update once, and the publisher's thread encodes
    /// it. A value that cannot be written as JSON fails no run: it is counted
    /// ([`NatsStats::unencodable`]) and published as the reason.
    pub fn state_deltas(mut self) -> Self {
        self.interest.deltas = true;
        self
    }

    /// How long a publish waits for JetStream's acknowledgement before it is sent again.
    /// Default five seconds.
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Linux only: the nice value of the publisher's thread, from -20 (highest priority) to
    /// 19 (lowest), instead of the default, ten steps nicer than the thread that calls `start`
    /// (see [`nicer_by`](Self::nicer_by)). A value below the inherited one raises priority,
    /// which Linux allows only with `CAP_SYS_NICE` or an `RLIMIT_NICE` that covers it; `start`
    /// fails with [`Error::Niceness`] when the operating system refuses, for a value outside
    /// -20..=19, and on other platforms.
    pub fn niceness(mut self, nice: i32) -> Self {
        self.niceness = Niceness::Exactly(nice);
        self
    }

    /// Runs the publisher's thread `steps` nicer than the thread that calls `start`, at most
    /// 19; by default ten (`nicer_by(0)` keeps the starter's niceness). Linux only: elsewhere
    /// the thread keeps its starter's niceness, and this is never refused. Whichever of this
    /// and [`niceness`](Self::niceness) is set last holds.
    ///
    /// Publishing is background work: nicer than the runs, the thread takes the CPU time the
    /// runs leave when both want it, and a saturated publisher drops more events (counted)
    /// instead of slowing the runs. On a machine other processes keep busy it then gets
    /// little time at all, and a flush may run out of time: `nicer_by(0)` puts it level with
    /// them.
    pub fn nicer_by(mut self, steps: u8) -> Self {
        self.niceness = Niceness::NicerBy(steps);
        self
    }

    /// Connects (blocking the calling thread until connected, at most five seconds), creates
    /// the stream when missing, starts the publisher's thread, and hands
    /// back the sink and the guard that stops the thread (publishing what it holds, for at
    /// most [`NatsGuard::STOP_LIMIT`]) when dropped. Fails when the server cannot be reached
    /// or JetStream refuses the stream; once started, the publisher reconnects by itself.
    pub fn start(self) -> Result<(NatsSink, NatsGuard)> {
        if self.capacity == 0 || self.max_in_flight == 0 || self.pending_limit == 0 {
            return Err(Error::InvalidConfig("capacity, max_in_flight and pending_limit must be at least 1".into()));
        }
        crate::check_prefix(&self.prefix)?;
        if let Niceness::Exactly(requested) = self.niceness {
            niceness::check(requested).map_err(|unfit| Error::Niceness { requested, source: unfit.into() })?;
        }
        let publisher =
            Publisher { id: ulid::Ulid::new().to_string(), name: self.name.clone().unwrap_or_else(default_name) };
        // Unbounded as a channel, bounded in events by `Counters::queued` (a hand-over that
        // would pass `capacity` is dropped), so flushes and shutdowns always get through.
        let (sender, receiver) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let bell = Arc::new(Notify::new());
        let worker_bell = Arc::clone(&bell);
        let (started, is_started) = std_mpsc::sync_channel(1);
        let settings = self.clone();
        let worker_counters = Arc::clone(&counters);
        let worker_publisher = publisher.clone();
        // Everything async happens on the publisher's own thread and runtime, so `start` works
        // the same from inside an async runtime and outside one.
        let handle = std::thread::Builder::new()
            .name("dashflow-nats".into())
            .spawn(move || {
                // First, so that threads the runtime starts (name lookups) inherit it.
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
                let js = runtime.block_on(async {
                    let client = crate::connect(&settings.url, "dashflow publisher").await?;
                    let js = jetstream::ContextBuilder::new().timeout(settings.ack_timeout).build(client);
                    crate::open_stream(&js, &settings.stream, &settings.prefix).await?;
                    Ok::<_, Error>(js)
                });
                let js = match js {
                    Ok(js) => js,
                    Err(error) => {
                        let _ = started.send(Err(error));
                        return;
                    }
                };
                let _ = started.send(Ok(thread_id));
                let worker = Worker {
                    js,
                    receiver,
                    counters: worker_counters,
                    publisher: worker_publisher,
                    prefix: settings.prefix,
                    interest: settings.interest,
                    runs: HashMap::new(),
                    used: 0,
                    max_runs: MAX_RUNS,
                    next_id: 0,
                    in_flight: VecDeque::new(),
                    resend: VecDeque::new(),
                    max_in_flight: settings.max_in_flight,
                    pending_limit: settings.pending_limit,
                    bell: worker_bell,
                    idle: Idle::new(settings.waits),
                };
                runtime.block_on(worker.run());
            })
            .map_err(Error::Start)?;
        let thread_id = match is_started.recv().unwrap_or(Err(Error::Stopped)) {
            Ok(thread_id) => thread_id,
            Err(error) => {
                let _ = handle.join();
                return Err(error);
            }
        };
        let shared = Arc::new(Shared {
            sender,
            capacity: self.capacity,
            counters,
            interest: self.interest,
            publisher,
            bell,
            thread_id,
        });
        let guard = NatsGuard { shared: Arc::clone(&shared), handle: Mutex::new(Some(handle)) };
        Ok((NatsSink { shared }, guard))
    }
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|host| host.trim().to_owned());
    format!("{}@{}", std::process::id(), host.unwrap_or_else(|_| "localhost".to_owned()))
}

/// Counters of a [`NatsSink`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsStats {
    /// Events JetStream acknowledged (stored in the stream).
    pub acknowledged: u64,
    /// Events dropped because the queue was full (the server was away or slow for longer
    /// than the buffers cover) or the publisher had stopped.
    pub dropped: u64,
    /// Publishes sent again after a failure or a missing acknowledgement (each is stored
    /// once: the stream drops duplicates by message id).
    pub resent: u64,
    /// Events given up when the publisher stopped before JetStream acknowledged them.
    pub lost: u64,
    /// State deltas whose state or update could not be written as JSON (published with the
    /// reason instead of the value; see [`NatsBuilder::state_deltas`]).
    pub unencodable: u64,
}

#[derive(Debug, Default)]
struct Counters {
    acknowledged: AtomicU64,
    dropped: AtomicU64,
    resent: AtomicU64,
    lost: AtomicU64,
    unencodable: AtomicU64,
    /// Events handed over and not yet taken by the publisher's thread.
    queued: AtomicUsize,
    warned: AtomicBool,
    warned_unencodable: AtomicBool,
}

/// What a borrowed batch hands over: its events built, its deltas shared.
enum Item {
    Event(Event),
    Delta(StateDelta),
}

enum Command {
    Event(Event),
    Delta(StateDelta),
    Items(Vec<Item>),
    Batch(EventBatch),
    Flush(Duration, std_mpsc::SyncSender<Result<()>>),
    Shutdown(Duration, std_mpsc::SyncSender<Result<()>>),
}

struct Shared {
    sender: mpsc::UnboundedSender<Command>,
    capacity: usize,
    counters: Arc<Counters>,
    interest: Interest,
    publisher: Publisher,
    /// Ends the publisher's pause early (see `idle`): rung by requests and by a backlog.
    bell: Arc<Notify>,
    /// The publisher's thread's id in the operating system (Linux; 0 elsewhere).
    thread_id: i32,
}

/// Run events on a NATS JetStream stream: an [`EventCallback`] that publishes every event of
/// every run it hears, as JSON of a versioned schema ([`crate::wire`]), to the subject
/// `{prefix}.{graph}.{run id}`, and counts JetStream's acknowledgements.
///
/// # Backpressure: drop and count, never block the run
///
/// Runs hand their events over (in batches, see [`EventCallback::batches`]) to a queue
/// bounded in events ([`capacity`](NatsBuilder::capacity)) without blocking and without I/O. The publisher's thread (`dashflow-nats`) takes
/// them, publishes up to [`max_in_flight`](NatsBuilder::max_in_flight) at a time and waits
/// for each acknowledgement; a publish that fails or is not acknowledged in time is sent
/// again, with the same message id, until it is, so a server restart loses nothing the
/// publisher still holds and stores nothing twice. While the server is away the publisher
/// holds up to [`pending_limit`](NatsBuilder::pending_limit) events, then stops taking from
/// the queue; once the queue is full too, new hand-overs are dropped and counted
/// ([`NatsStats::dropped`]). A run is never slowed by the stream.
///
/// # What a run pays
///
/// By default it asks for the events the run log keeps ([`DEFAULT_INTEREST`]), which a step
/// records as a few numbers. A hand-over is a count and a push onto the queue: the
/// publisher, once it finds the queue empty with nothing to acknowledge, looks again after
/// short pauses instead of waiting to be woken, so a hand-over costs the run no wake-up
/// unless the publisher has been idle for a second or a quarter of the queue is taken. When
/// this sink is the last of a run's batching sinks it takes each batch as it is, and the
/// events are built on its thread; otherwise it is lent the batch and builds the events it
/// publishes on the run's.
///
/// Cheap to clone (the clones share the queue).
#[derive(Clone)]
pub struct NatsSink {
    shared: Arc<Shared>,
}

impl fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSink")
            .field("publisher", &self.shared.publisher)
            .field("thread_id", &self.shared.thread_id)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// Settings for a sink publishing to the server at `url` (`nats://127.0.0.1:4222`); then
    /// [`NatsBuilder::start`].
    pub fn builder(url: impl Into<String>) -> NatsBuilder {
        NatsBuilder {
            url: url.into(),
            stream: crate::DEFAULT_STREAM.to_owned(),
            prefix: crate::DEFAULT_PREFIX.to_owned(),
            capacity: 64 * 1024,
            pending_limit: 64 * 1024,
            max_in_flight: 256,
            name: None,
            interest: DEFAULT_INTEREST,
            ack_timeout: Duration::from_secs(5),
            waits: Waits::default(),
            niceness: Niceness::BACKGROUND,
        }
    }

    /// Who this sink publishes as.
    pub fn publisher(&self) -> &Publisher {
        &self.shared.publisher
    }

    /// Blocks until every event handed over before this call is acknowledged by JetStream,
    /// waiting at most `limit` (then [`Error::Unacknowledged`]). It blocks the calling thread:
    /// from async code, call it through `spawn_blocking`.
    pub fn flush(&self, limit: Duration) -> Result<()> {
        request(&self.shared, |reply| Command::Flush(limit, reply), limit)
    }

    /// The counters.
    pub fn stats(&self) -> NatsStats {
        let counters = &self.shared.counters;
        NatsStats {
            acknowledged: counters.acknowledged.load(Ordering::Relaxed),
            dropped: counters.dropped.load(Ordering::Relaxed),
            resent: counters.resent.load(Ordering::Relaxed),
            lost: counters.lost.load(Ordering::Relaxed),
            unencodable: counters.unencodable.load(Ordering::Relaxed),
        }
    }

    /// Queues `command` (`count` events) without blocking; drops and counts it when the
    /// queue would hold more than its capacity of events. Wakes nobody unless the publisher
    /// sleeps on the queue, or pauses (see `idle`) while a quarter of the queue is taken.
    fn enqueue(&self, count: usize, command: Command) {
        let shared = &self.shared;
        let counters = &shared.counters;
        if take_room(&counters.queued, count, shared.capacity) {
            if shared.sender.send(command).is_ok() {
                if counters.queued.load(Ordering::Relaxed) > shared.capacity / 4 {
                    shared.bell.notify_one();
                }
                return;
            }
            counters.queued.fetch_sub(count, Ordering::Relaxed);
        }
        counters.dropped.fetch_add(count as u64, Ordering::Relaxed);
    }
}

/// Counts `count` more events in `queued` if they fit under `capacity`; `false` (and nothing
/// counted) if not.
fn take_room(queued: &AtomicUsize, count: usize, capacity: usize) -> bool {
    let before = queued.fetch_add(count, Ordering::Relaxed);
    if before.saturating_add(count) <= capacity {
        return true;
    }
    queued.fetch_sub(count, Ordering::Relaxed);
    false
}

fn request(
    shared: &Shared,
    command: impl FnOnce(std_mpsc::SyncSender<Result<()>>) -> Command,
    limit: Duration,
) -> Result<()> {
    let (reply, response) = std_mpsc::sync_channel(1);
    shared.sender.send(command(reply)).map_err(|_| Error::Stopped)?;
    // A pausing publisher would see it only when its pause ends.
    shared.bell.notify_one();
    // The worker answers within `limit`; a little more covers its last acknowledgement.
    response.recv_timeout(limit + Duration::from_secs(5)).map_err(|_| Error::Stopped)?
}

impl EventCallback for NatsSink {
    fn name(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed("NATS JetStream publisher")
    }

    fn on_event(&self, event: &Event) {
        self.enqueue(1, Command::Event(event.clone()));
    }

    fn take_event(&self, event: Event) {
        self.enqueue(1, Command::Event(event));
    }

    fn batches(&self) -> bool {
        true
    }

    fn on_batch(&self, batch: &EventBatch) {
        let interest = self.shared.interest;
        let items: Vec<Item> = batch
            .items()
            .filter_map(|item| match item {
                BatchItem::Event(event) if interest.covers_ref(&event) => Some(Item::Event(event.to_event())),
                BatchItem::Delta(delta) if interest.deltas => Some(Item::Delta(delta.clone())),
                _ => None,
            })
            .collect();
        if !items.is_empty() {
            self.enqueue(items.len(), Command::Items(items));
        }
    }

    fn on_delta(&self, delta: &StateDelta) {
        self.enqueue(1, Command::Delta(delta.clone()));
    }

    /// The batch moves to the publisher's thread as it is; its events are built there.
    fn take_batch(&self, batch: EventBatch) {
        let count = batch.len();
        if count > 0 {
            self.enqueue(count, Command::Batch(batch));
        }
    }

    fn interest(&self) -> Interest {
        self.shared.interest
    }
}

/// Stops the publisher's thread when dropped, after publishing what it holds (for at most
/// [`STOP_LIMIT`](Self::STOP_LIMIT); what is still unacknowledged then is counted in
/// [`NatsStats::lost`]). Keep it alive as long as runs publish (for the life of `main`).
pub struct NatsGuard {
    shared: Arc<Shared>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for NatsGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsGuard").finish_non_exhaustive()
    }
}

impl NatsGuard {
    /// The longest dropping the guard waits for JetStream to acknowledge what is left.
    pub const STOP_LIMIT: Duration = Duration::from_secs(10);

    /// Stops the thread now, waiting at most `limit`; fails with [`Error::Unacknowledged`]
    /// when events were given up.
    pub fn shutdown(self, limit: Duration) -> Result<()> {
        self.stop(limit)
    }

    fn stop(&self, limit: Duration) -> Result<()> {
        let handle = self.handle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let Some(handle) = handle else { return Ok(()) };
        let result = request(&self.shared, |reply| Command::Shutdown(limit, reply), limit);
        let _ = handle.join();
        result
    }
}

impl Drop for NatsGuard {
    fn drop(&mut self) {
        if let Err(error) = self.stop(Self::STOP_LIMIT) {
            tracing::warn!(%error, "the NATS publisher did not stop cleanly");
        }
    }
}

/// One event on its way: kept until JetStream acknowledges it.
struct Pending {
    subject: String,
    payload: Bytes,
    id: String,
    ack: Option<PublishAckFuture>,
}

struct RunState {
    graph: Arc<str>,
    subject: String,
    seq: u64,
    /// When the publisher last sent for it, in messages: which runs to forget first.
    last_used: u64,
}

/// Runs whose numbering the publisher keeps at once. A run's entry goes with its
/// `RunFinished`; a run that never sends one (its future was dropped) would keep it for ever,
/// so past this many the quarter sent for least recently are forgotten. A forgotten run that
/// goes on numbers its messages from 1 again.
const MAX_RUNS: usize = 64 * 1024;

struct Worker {
    js: jetstream::Context,
    receiver: mpsc::UnboundedReceiver<Command>,
    counters: Arc<Counters>,
    publisher: Publisher,
    prefix: String,
    interest: Interest,
    runs: HashMap<RunId, RunState>,
    /// Messages taken so far: the clock of `RunState::last_used`.
    used: u64,
    max_runs: usize,
    next_id: u64,
    /// Sent, waiting for their acknowledgement, oldest first.
    in_flight: VecDeque<Pending>,
    /// Failed or unacknowledged, to send again in order (before anything newer).
    resend: VecDeque<Pending>,
    max_in_flight: usize,
    pending_limit: usize,
    bell: Arc<Notify>,
    /// How long to pause, once the queue is empty and nothing waits for an acknowledgement,
    /// before awaiting the queue (the sinks' shared schedule): while the publisher pauses, a
    /// hand-over wakes nobody, since waking it unparks the runtime's driver on the run's
    /// thread. A pause ends early for a flush or a shutdown, and for a hand-over that finds a
    /// quarter of the queue taken (see `NatsSink::enqueue`).
    idle: Idle,
}

/// How long the worker tries to re-send before it looks at its queue again.
const RESEND_SLICE: Duration = Duration::from_millis(200);

impl Worker {
    async fn run(mut self) {
        loop {
            let command = if self.pending() == 0 {
                match self.receiver.try_recv() {
                    Ok(command) => {
                        self.idle.reset();
                        command
                    }
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => match self.idle.next_wait() {
                        Wait::Pause(pause) => {
                            tokio::select! {
                                () = tokio::time::sleep(pause) => {}
                                () = self.bell.notified() => {}
                            }
                            continue;
                        }
                        Wait::Sleep => match self.receiver.recv().await {
                            Some(command) => {
                                self.idle.reset();
                                command
                            }
                            None => break,
                        },
                    },
                }
            } else if self.pending() >= self.pending_limit {
                // Full: let the queue take the strain (and drop) while the server is away.
                self.settle(Instant::now() + RESEND_SLICE).await;
                continue;
            } else {
                match self.receiver.try_recv() {
                    Ok(command) => command,
                    Err(TryRecvError::Empty) => {
                        self.settle(Instant::now() + RESEND_SLICE).await;
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => break,
                }
            };
            let taken = match &command {
                Command::Event(_) | Command::Delta(_) => 1,
                Command::Items(items) => items.len(),
                Command::Batch(batch) => batch.len(),
                Command::Flush(..) | Command::Shutdown(..) => 0,
            };
            self.counters.queued.fetch_sub(taken, Ordering::Relaxed);
            match command {
                Command::Event(event) => self.publish(&event).await,
                Command::Delta(delta) => self.publish_delta(&delta).await,
                Command::Items(items) => {
                    for item in &items {
                        match item {
                            Item::Event(event) => self.publish(event).await,
                            Item::Delta(delta) => self.publish_delta(delta).await,
                        }
                    }
                }
                Command::Batch(batch) => {
                    for item in batch.items() {
                        match item {
                            BatchItem::Event(event) if self.interest.covers_ref(&event) => {
                                self.publish(&event.to_event()).await;
                            }
                            BatchItem::Delta(delta) if self.interest.deltas => self.publish_delta(delta).await,
                            _ => {}
                        }
                    }
                }
                Command::Flush(limit, reply) => {
                    self.settle(Instant::now() + limit).await;
                    let _ = reply.send(self.outcome());
                }
                Command::Shutdown(limit, reply) => {
                    self.settle(Instant::now() + limit).await;
                    let result = self.outcome();
                    self.give_up();
                    let _ = reply.send(result);
                    return;
                }
            }
        }
        self.settle(Instant::now() + NatsGuard::STOP_LIMIT).await;
        self.give_up();
    }

    fn pending(&self) -> usize {
        self.in_flight.len() + self.resend.len()
    }

    fn outcome(&self) -> Result<()> {
        match self.pending() {
            0 => Ok(()),
            n => Err(Error::Unacknowledged { unacknowledged: n as u64 }),
        }
    }

    fn give_up(&mut self) {
        let lost = self.pending() as u64;
        self.counters.lost.fetch_add(lost, Ordering::Relaxed);
        self.in_flight.clear();
        self.resend.clear();
    }

    /// Encodes `event` with its run's next sequence number and sends it.
    async fn publish(&mut self, event: &Event) {
        let run_id = event.run.run_id;
        self.used += 1;
        let state = run_state(&mut self.runs, (&self.prefix, self.max_runs), run_id, self.used);
        if let EventKind::RunStarted { graph, .. } | EventKind::GraphDefined { graph, .. } = &event.kind {
            state.subject = subject(&self.prefix, graph, run_id);
            state.graph = Arc::clone(graph);
        }
        // A number is used only by a message that is sent: a consumer takes a missing one
        // for a lost message.
        let Some(payload) = wire::encode(&self.publisher, state.seq + 1, &state.graph, event) else { return };
        state.seq += 1;
        let subject = state.subject.clone();
        if matches!(event.kind, EventKind::RunFinished { .. }) {
            self.runs.remove(&run_id);
        }
        self.send_new(subject, payload).await;
    }

    /// Encodes `delta` (its state or update becomes JSON here) with its run's next sequence
    /// number and sends it.
    async fn publish_delta(&mut self, delta: &StateDelta) {
        self.used += 1;
        let state = run_state(&mut self.runs, (&self.prefix, self.max_runs), delta.run.run_id, self.used);
        let (payload, error) = wire::encode_delta(&self.publisher, state.seq + 1, &state.graph, delta);
        let Some(payload) = payload else { return };
        state.seq += 1;
        let subject = state.subject.clone();
        if let Some(error) = error {
            self.counters.unencodable.fetch_add(1, Ordering::Relaxed);
            if !self.counters.warned_unencodable.swap(true, Ordering::Relaxed) {
                tracing::warn!(%error, "a state delta cannot be written as JSON; it is published without its value (later ones are only counted)");
            }
        }
        self.send_new(subject, payload).await;
    }

    /// Sends a new message, after whatever waits to be sent again.
    async fn send_new(&mut self, subject: String, payload: Vec<u8>) {
        self.next_id += 1;
        let pending = Pending {
            subject,
            payload: Bytes::from(payload),
            id: format!("{}-{}", self.publisher.id, self.next_id),
            ack: None,
        };
        if !self.resend.is_empty() {
            // Keep the order: nothing newer goes out before what waits to be sent again.
            self.resend.push_back(pending);
            return;
        }
        self.send(pending).await;
        while self.in_flight.len() >= self.max_in_flight {
            self.settle_oldest().await;
        }
    }

    /// Sends `pending`; on failure keeps it to send again.
    async fn send(&mut self, mut pending: Pending) {
        let message =
            jetstream::message::PublishMessage::build().payload(pending.payload.clone()).message_id(&pending.id);
        match self.js.send_publish(pending.subject.clone(), message).await {
            Ok(ack) => {
                pending.ack = Some(ack);
                self.in_flight.push_back(pending);
            }
            Err(error) => {
                self.warn_once(&error);
                self.resend.push_back(pending);
            }
        }
    }

    /// Waits for the oldest acknowledgement; an error or a timeout keeps the event to send
    /// again.
    async fn settle_oldest(&mut self) {
        let Some(mut pending) = self.in_flight.pop_front() else { return };
        let Some(ack) = pending.ack.take() else { return };
        match ack.await {
            Ok(_) => {
                self.counters.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.warn_once(&error);
                self.resend.push_back(pending);
            }
        }
    }

    /// Waits for every acknowledgement in flight at once, until `deadline` at most: each has
    /// its own timeout, so waiting for them one by one would take a timeout per publish the
    /// server lost (a connection that died with publishes on it), past any flush's limit.
    /// What is not acknowledged is kept, in order, to send again.
    async fn settle_in_flight(&mut self, deadline: Instant) {
        if self.in_flight.is_empty() {
            return;
        }
        let mut in_flight: Vec<Pending> = self.in_flight.drain(..).collect();
        let acks = in_flight.iter_mut().map(|pending| {
            let ack = pending.ack.take();
            async move {
                match ack {
                    Some(ack) => match tokio::time::timeout_at(deadline, ack).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(error)) => Err(error.to_string()),
                        Err(_) => Err("no acknowledgement before the deadline".to_owned()),
                    },
                    None => Err("never sent".to_owned()),
                }
            }
        });
        let outcomes = futures::future::join_all(acks).await;
        for (pending, outcome) in in_flight.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    self.counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    self.warn_once(&error);
                    self.resend.push_back(pending);
                }
            }
        }
    }

    /// Settles everything in flight, then sends again what failed, one at a time, until
    /// nothing is pending or `deadline` passes.
    async fn settle(&mut self, deadline: Instant) {
        self.settle_in_flight(deadline).await;
        let mut backoff = Duration::from_millis(20);
        while let Some(mut pending) = self.resend.pop_front() {
            if Instant::now() >= deadline {
                self.resend.push_front(pending);
                return;
            }
            self.counters.resent.fetch_add(1, Ordering::Relaxed);
            let message =
                jetstream::message::PublishMessage::build().payload(pending.payload.clone()).message_id(&pending.id);
            let acked = match self.js.send_publish(pending.subject.clone(), message).await {
                Ok(ack) => tokio::time::timeout_at(deadline, ack).await.map(|ack| ack.is_ok()).unwrap_or(false),
                Err(_) => false,
            };
            if acked {
                self.counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                backoff = Duration::from_millis(20);
            } else {
                pending.ack = None;
                self.resend.push_front(pending);
                // The server is away: wait a little before trying again (the client
                // reconnects meanwhile).
                tokio::time::sleep_until((Instant::now() + backoff).min(deadline)).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }

    fn warn_once(&self, error: &dyn std::fmt::Display) {
        if !self.counters.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(%error, "publishing to NATS failed; events are kept and sent again (later failures are only counted)");
        }
    }
}

/// What the publisher knows of `run_id`, from its first message on, marked used at `now`;
/// makes room first when `max` runs are known (see [`MAX_RUNS`]).
fn run_state<'a>(
    runs: &'a mut HashMap<RunId, RunState>,
    (prefix, max): (&str, usize),
    run_id: RunId,
    now: u64,
) -> &'a mut RunState {
    if runs.len() >= max && !runs.contains_key(&run_id) {
        forget_least_recent(runs);
    }
    let state = runs.entry(run_id).or_insert_with(|| RunState {
        graph: Arc::from("?"),
        subject: subject(prefix, "?", run_id),
        seq: 0,
        last_used: now,
    });
    state.last_used = now;
    state
}

/// Forgets the quarter of `runs` used least recently (at least one).
fn forget_least_recent(runs: &mut HashMap<RunId, RunState>) {
    let mut used: Vec<u64> = runs.values().map(|run| run.last_used).collect();
    if used.is_empty() {
        return;
    }
    let count = (used.len() / 4).max(1);
    let (_, &mut threshold, _) = used.select_nth_unstable(count - 1);
    runs.retain(|_, run| run.last_used > threshold);
}

/// `{prefix}.{graph}.{run id}`, the graph's name made a valid subject token: characters other
/// than ASCII letters, digits, `-` and `_` become `_`.
pub(crate) fn subject(prefix: &str, graph: &str, run_id: RunId) -> String {
    format!("{prefix}.{}.{run_id}", crate::subject_token(graph))
}

#[cfg(test)]
mod tests;
