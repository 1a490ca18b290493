//! Following the stream: typed events for programs (and `dashflow tail --nats`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use dashflow_telemetry::{EventKind, RunId};
use futures::Stream;
use tokio::time::{Instant, Sleep};

use crate::error::{Error, Result};
use crate::wire::{self, Item, Received};

/// Where following the stream starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartAt {
    /// The first message the stream holds: a consumer that starts late replays everything.
    #[default]
    Beginning,
    /// Message `n` of the stream ([`Received::stream_sequence`]) and what follows.
    Sequence(u64),
    /// The first message stored at or after this time.
    Time(SystemTime),
    /// Only messages published from now on.
    New,
}

/// Which events to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Follow {
    start: StartAt,
    graph: Option<String>,
    run: Option<RunId>,
    deltas: bool,
    window: usize,
    wait: Duration,
}

impl Default for Follow {
    fn default() -> Self {
        Self {
            start: StartAt::default(),
            graph: None,
            run: None,
            deltas: false,
            window: Follow::DEFAULT_WINDOW,
            wait: Follow::DEFAULT_WAIT,
        }
    }
}

impl Follow {
    /// Messages of one run held back waiting for a missing one, unless told otherwise.
    pub const DEFAULT_WINDOW: usize = 1024;
    /// How long a missing message is waited for, unless told otherwise: longer than a
    /// publisher's default acknowledgement timeout, after which it re-sends.
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

    /// Every event of every graph and run, from the beginning of the stream.
    pub fn all() -> Self {
        Self::default()
    }

    /// Also yields the runs' state deltas ([`Item::Delta`]), from publishers that send them
    /// ([`NatsBuilder::state_deltas`](crate::NatsBuilder::state_deltas)). Without it they are
    /// read (they share their run's subject and order) and skipped.
    pub fn state_deltas(mut self) -> Self {
        self.deltas = true;
        self
    }

    /// The reorder window: how many messages of one run (of one publisher) are held back
    /// while an earlier one is missing, at most (at least 1; default
    /// [`DEFAULT_WINDOW`](Self::DEFAULT_WINDOW)). A publisher that re-sends a message stores
    /// it after later ones; the consumer yields each run's messages in `seq` order all the
    /// same. When the window is full, or the missing message has not come within
    /// [`reorder_wait`](Self::reorder_wait), the consumer yields an [`Item::Gap`] naming the
    /// missing numbers and goes on; a message that arrives after its gap is yielded when it
    /// comes.
    pub fn reorder_window(mut self, messages: usize) -> Self {
        self.window = messages.max(1);
        self
    }

    /// How long a missing message is waited for before its gap is reported (see
    /// [`reorder_window`](Self::reorder_window)). Default [`DEFAULT_WAIT`](Self::DEFAULT_WAIT).
    pub fn reorder_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Starts at `start`.
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// Only runs of graph `name`.
    pub fn graph(mut self, name: impl Into<String>) -> Self {
        self.graph = Some(name.into());
        self
    }

    /// Only run `run` (not its subgraph runs, which have ids of their own).
    pub fn run(mut self, run: RunId) -> Self {
        self.run = Some(run);
        self
    }

    fn filter_subject(&self, prefix: &str) -> String {
        let graph = self.graph.as_deref().map_or_else(|| "*".to_owned(), crate::subject_token);
        let run = self.run.map_or_else(|| "*".to_owned(), |run| run.to_string());
        format!("{prefix}.{graph}.{run}")
    }
}

/// Reads the events a [`NatsSink`](crate::NatsSink) publishes, from any host.
///
/// ```no_run
/// # async fn demo() -> Result<(), dashflow_nats::Error> {
/// use dashflow_nats::{Follow, NatsConsumer, StartAt};
/// use futures::StreamExt;
///
/// let consumer = NatsConsumer::connect("nats://127.0.0.1:4222").await?;
/// let mut events = consumer.follow(Follow::all().start_at(StartAt::Beginning)).await?;
/// while let Some(received) = events.next().await {
///     let received = received?;
///     if let Some(event) = received.event() {
///         println!("{} {} {:?}", received.publisher.name, received.graph, event.kind);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct NatsConsumer {
    js: jetstream::Context,
    stream: String,
    prefix: String,
}

impl NatsConsumer {
    /// Connects to the server at `url`, reading the stream `dashflow-events` (subjects
    /// `dashflow.events.>`).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_to(url, crate::DEFAULT_STREAM, crate::DEFAULT_PREFIX).await
    }

    /// Connects to the server at `url`, reading `stream`, whose subjects start with `prefix`
    /// (as the sink was configured).
    pub async fn connect_to(url: &str, stream: &str, prefix: &str) -> Result<Self> {
        crate::check_prefix(prefix)?;
        let client = crate::connect(url, "dashflow consumer").await?;
        let js = jetstream::new(client);
        Ok(Self { js, stream: stream.to_owned(), prefix: prefix.to_owned() })
    }

    /// Creates the stream when it does not exist yet, as a [`NatsSink`](crate::NatsSink)
    /// would, so that a consumer started before any publisher can wait for them. [`follow`](
    /// Self::follow) alone never creates anything (a missing stream is an error).
    pub async fn ensure_stream(&self) -> Result<()> {
        crate::open_stream(&self.js, &self.stream, &self.prefix).await
    }

    /// The stream sequence of the last message the stream holds, 0 when it holds none: a
    /// reader that wants what is stored now reads until [`Received::pending`] is 0, and
    /// need not wait at all when this is 0.
    pub async fn last_sequence(&self) -> Result<u64> {
        let consume = |reason: String| Error::Consume { stream: self.stream.clone(), reason };
        let mut stream = self.js.get_stream(&self.stream).await.map_err(|error| consume(error.to_string()))?;
        let info = stream.info().await.map_err(|error| consume(error.to_string()))?;
        Ok(info.state.last_sequence)
    }

    /// The events `follow` selects, live: the stream waits for new events once it has
    /// delivered the stored ones. Reconnects by itself. Runs interleave in stream order;
    /// each run's messages come in the order the run emitted them (their [`Received::seq`]),
    /// even after a publisher re-sent some, within the reorder window
    /// ([`Follow::reorder_window`]); a message missing for longer is reported as an
    /// [`Item::Gap`], never skipped silently.
    pub async fn follow(&self, follow: Follow) -> Result<Events> {
        let consume = |reason: String| Error::Consume { stream: self.stream.clone(), reason };
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|error| consume(format!("{error} (a stream exists once a publisher has started with it)")))?;
        let deliver_policy = match follow.start {
            StartAt::Beginning => DeliverPolicy::All,
            StartAt::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
            StartAt::Time(at) => DeliverPolicy::ByStartTime { start_time: at.into() },
            StartAt::New => DeliverPolicy::New,
        };
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: follow.filter_subject(&self.prefix),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|error| consume(error.to_string()))?;
        let messages = consumer.messages().await.map_err(|error| consume(error.to_string()))?;
        Ok(Events {
            messages: Some(messages),
            stream: self.stream.clone(),
            deltas: follow.deltas,
            order: Reorder::new(follow.window, follow.wait, follow.start == StartAt::Beginning),
            ready: VecDeque::new(),
            timer: None,
        })
    }
}

/// The events a [`NatsConsumer::follow`] selects (a [`Stream`]).
pub struct Events {
    /// `None` once the server's side ended: what is held back then goes out as gaps.
    messages: Option<jetstream::consumer::pull::Ordered>,
    stream: String,
    deltas: bool,
    order: Reorder,
    /// In order, to yield.
    ready: VecDeque<Result<Received>>,
    /// Wakes the stream when the oldest missing message has been waited for long enough.
    timer: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("stream", &self.stream).finish_non_exhaustive()
    }
}

impl Stream for Events {
    type Item = Result<Received>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(next) = this.ready.pop_front() {
                if !this.deltas && matches!(&next, Ok(Received { item: Item::Delta(_), .. })) {
                    continue;
                }
                return Poll::Ready(Some(next));
            }
            let Some(messages) = this.messages.as_mut() else { return Poll::Ready(None) };
            match Pin::new(messages).poll_next(cx) {
                Poll::Ready(None) => {
                    this.messages = None;
                    this.order.release_all(&mut this.ready);
                }
                Poll::Ready(Some(Err(error))) => {
                    let reason = error.to_string();
                    this.ready.push_back(Err(Error::Consume { stream: this.stream.clone(), reason }));
                }
                Poll::Ready(Some(Ok(message))) => {
                    let (sequence, pending) =
                        message.info().map(|info| (info.stream_sequence, info.pending)).unwrap_or((0, 0));
                    match wire::decode(sequence, pending, &message.payload) {
                        Ok(received) => this.order.accept(received, &mut this.ready),
                        Err(error) => this.ready.push_back(Err(error)),
                    }
                }
                Poll::Pending => {
                    let now = Instant::now();
                    this.order.release_expired(now, &mut this.ready);
                    if !this.ready.is_empty() {
                        continue;
                    }
                    let Some(deadline) = this.order.next_deadline() else {
                        this.timer = None;
                        return Poll::Pending;
                    };
                    let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if timer.deadline() != deadline {
                        timer.as_mut().reset(deadline);
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        this.timer = None;
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Puts each run's messages back in `seq` order (see [`Follow::reorder_window`]).
#[derive(Debug)]
struct Reorder {
    window: usize,
    wait: Duration,
    /// Whether a run first seen expects `seq` 1 (the consumer reads from the beginning), or
    /// takes its first message as its start (it joined runs under way).
    from_one: bool,
    runs: HashMap<(String, RunId), RunOrder>,
    /// Messages held back, over all runs.
    held: usize,
}

#[derive(Debug)]
struct RunOrder {
    /// The `seq` due next.
    next: u64,
    held: BTreeMap<u64, Received>,
    /// When the run began waiting for `next`.
    since: Option<Instant>,
    /// Its `RunFinished` has been yielded.
    finished: bool,
}

impl Reorder {
    /// Runs whose order is kept at once; past it, runs holding nothing are forgotten (a
    /// forgotten run's next message starts its order again).
    const MAX_RUNS: usize = 10_000;

    fn new(window: usize, wait: Duration, from_one: bool) -> Self {
        Self { window: window.max(1), wait, from_one, runs: HashMap::new(), held: 0 }
    }

    /// Takes a message: yields it (and what it lets go) or holds it back.
    fn accept(&mut self, received: Received, ready: &mut VecDeque<Result<Received>>) {
        let key = (received.publisher.id.clone(), received.run.run_id);
        if self.runs.len() >= Self::MAX_RUNS && !self.runs.contains_key(&key) {
            self.runs.retain(|_, run| !run.held.is_empty());
            self.from_one = false;
        }
        let from_one = self.from_one;
        let run = self.runs.entry(key.clone()).or_insert_with(|| RunOrder {
            next: if from_one { 1 } else { received.seq },
            held: BTreeMap::new(),
            since: None,
            finished: false,
        });
        let pending = received.pending;
        let start = ready.len();
        if received.seq < run.next {
            // Late: its gap was reported already (or a duplicate).
            ready.push_back(Ok(received));
        } else if received.seq == run.next {
            run.next += 1;
            run.finished |= ends_run(&received);
            ready.push_back(Ok(received));
            self.held -= run.drain(ready);
        } else {
            run.held.insert(received.seq, received);
            run.since.get_or_insert_with(Instant::now);
            self.held += 1;
            while run.held.len() > self.window {
                self.held -= run.release_gap(ready);
            }
        }
        if run.held.is_empty() {
            run.since = None;
            if run.finished {
                self.runs.remove(&key);
            }
        }
        self.count_pending(ready, start, pending);
    }

    /// Reports the gaps of runs that waited long enough, and yields what follows each.
    fn release_expired(&mut self, now: Instant, ready: &mut VecDeque<Result<Received>>) {
        let start = ready.len();
        let wait = self.wait;
        let mut released = 0;
        for run in self.runs.values_mut() {
            if run.since.is_some_and(|since| now.duration_since(since) >= wait) {
                released += run.release_gap(ready);
                run.since = (!run.held.is_empty()).then_some(now);
            }
        }
        self.held -= released;
        self.runs.retain(|_, run| !(run.finished && run.held.is_empty()));
        self.count_pending(ready, start, 0);
    }

    /// Everything held goes out, gaps reported: the stream ended.
    fn release_all(&mut self, ready: &mut VecDeque<Result<Received>>) {
        for run in self.runs.values_mut() {
            while !run.held.is_empty() {
                run.release_gap(ready);
            }
        }
        self.runs.clear();
        self.held = 0;
    }

    /// When the run waiting longest will have waited long enough.
    fn next_deadline(&self) -> Option<Instant> {
        self.runs.values().filter_map(|run| run.since).min().map(|since| since + self.wait)
    }

    /// Makes `pending` of the messages queued from `start` on count what comes after each:
    /// the rest of the queue, what is held back, and what the server had yet to deliver.
    fn count_pending(&self, ready: &mut VecDeque<Result<Received>>, start: usize, server: u64) {
        let len = ready.len();
        for (index, item) in ready.iter_mut().enumerate().skip(start) {
            if let Ok(received) = item {
                received.pending = server + self.held as u64 + (len - index - 1) as u64;
            }
        }
    }
}

fn ends_run(received: &Received) -> bool {
    matches!(received.event(), Some(event) if matches!(event.kind, EventKind::RunFinished { .. }))
}

impl RunOrder {
    /// Yields the held messages that are due; returns how many.
    fn drain(&mut self, ready: &mut VecDeque<Result<Received>>) -> usize {
        let mut count = 0;
        while let Some(received) = self.held.remove(&self.next) {
            self.next += 1;
            self.finished |= ends_run(&received);
            ready.push_back(Ok(received));
            count += 1;
        }
        count
    }

    /// Reports the missing messages before the first held one as a gap, then yields what is
    /// due; returns how many held messages went out.
    fn release_gap(&mut self, ready: &mut VecDeque<Result<Received>>) -> usize {
        let Some((&first, held)) = self.held.first_key_value() else { return 0 };
        if first > self.next {
            let gap = Received {
                stream_sequence: held.stream_sequence,
                pending: 0,
                publisher: held.publisher.clone(),
                seq: self.next,
                graph: held.graph.clone(),
                run: held.run,
                item: Item::Gap { count: first - self.next },
            };
            ready.push_back(Ok(gap));
        }
        self.next = first;
        self.drain(ready)
    }
}
