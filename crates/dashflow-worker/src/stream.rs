//! A held run's events, appended to the queue's event stream of the run so that any process
//! can follow it ([`RunEvents`]): a sink the worker attaches to each run it claims, and a
//! writer that batches what the sink hears.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashflow_queue::{Lease, QueueError, RunQueue, RunStreams, StreamEntry, StreamItem, Wakeups, next_wake};
use dashflow_telemetry::{Event, EventCallback, EventKind, RunId, RunIds};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::{Result, WorkerError};

/// Events a run may have waiting for its writer; beyond it they are counted as lost (the
/// stream says how many) instead of holding the run back or growing without bound.
const BUFFER: usize = 4096;
/// A gathering batch this full is appended without waiting out its gathering time; one
/// append holds up to four times as many.
const BATCH: usize = 64;
/// How long a batch gathers after its first event: as long as the pause between appends, so
/// that a run that returns within it (a few quick steps) appends once, when it returns, and a
/// longer one appends at an even pace. Each append costs a statement and a notification
/// whatever it holds.
const GATHER: Duration = Duration::from_millis(100);
/// How often a gathering writer looks whether a batch is full.
const CHECK: Duration = Duration::from_millis(25);
/// At least this long between two appends of one run, so that a chatty run notifies
/// listeners at most ten times a second (each append notifies once).
const APPEND_EVERY: Duration = Duration::from_millis(100);

/// The event sink a worker attaches to a run it holds: the run's events go to the run's
/// stream in the queue. On the run's path it only moves the event into a bounded channel.
#[derive(Clone, Debug)]
pub struct RunEventSink {
    send: mpsc::Sender<Event>,
    lost: Arc<AtomicU64>,
}

impl RunEventSink {
    fn push(&self, event: Event) {
        // The graph's shape is the same for every run, and large: followers read it from the
        // graph, not from each run's stream.
        if matches!(event.kind, EventKind::GraphDefined { .. }) {
            return;
        }
        if self.send.try_send(event).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl EventCallback for RunEventSink {
    fn on_event(&self, event: &Event) {
        self.push(event.clone());
    }

    fn take_event(&self, event: Event) {
        self.push(event);
    }

    fn name(&self) -> std::borrow::Cow<'_, str> {
        "run event stream (queue)".into()
    }
}

/// Writes what a [`RunEventSink`] hears to the run's stream, in batches.
pub(crate) struct StreamWriter {
    streams: Arc<dyn RunStreams>,
    lease: Lease,
    attempt: i32,
    receive: mpsc::Receiver<Event>,
    lost: Arc<AtomicU64>,
    /// The ids of the held run itself, which its stream's row carries: its events are stored
    /// without them.
    root: Option<RunIds>,
}

/// The ids of a queued run's top-level run (the executor's run id is the queue's).
fn root_ids(run_id: &str) -> Option<RunIds> {
    run_id.parse::<RunId>().ok().map(RunIds::root)
}

/// `event` as a stream item: without its run's ids when they are `root`'s, which the stream
/// knows ([`restore_ids`] puts them back).
fn compact(event: &Event, root: Option<&RunIds>) -> serde_json::Result<serde_json::Value> {
    let mut payload = serde_json::to_value(event)?;
    if root == Some(&event.run)
        && let Some(fields) = payload.as_object_mut()
    {
        fields.remove("run");
    }
    Ok(payload)
}

/// Puts the ids of the followed run back into an event stored without them ([`compact`]);
/// items stored with their ids, or not events at all, stay as they are.
fn restore_ids(payload: &mut serde_json::Value, root: Option<&RunIds>) {
    let (Some(root), Some(fields)) = (root, payload.as_object_mut()) else { return };
    if fields.contains_key("kind") && !fields.contains_key("run") {
        match serde_json::to_value(root) {
            Ok(ids) => drop(fields.insert("run".to_owned(), ids)),
            Err(error) => tracing::debug!(%error, "run ids do not serialize"),
        }
    }
}

/// A sink for the run `lease` holds and the writer that empties it.
pub(crate) fn attach(streams: Arc<dyn RunStreams>, lease: Lease, attempt: i32) -> (RunEventSink, StreamWriter) {
    let (send, receive) = mpsc::channel(BUFFER);
    let lost = Arc::new(AtomicU64::new(0));
    let root = root_ids(&lease.run_id);
    (RunEventSink { send, lost: Arc::clone(&lost) }, StreamWriter { streams, lease, attempt, receive, lost, root })
}

/// The superstep of a top-level run's event; a subgraph's steps count apart.
fn step_of(event: &Event) -> Option<i64> {
    if event.run.depth > 0 {
        return None;
    }
    let step = match &event.kind {
        EventKind::SuperstepStarted { step, .. }
        | EventKind::SuperstepFinished { step, .. }
        | EventKind::TaskStarted { step, .. }
        | EventKind::TaskFinished { step, .. }
        | EventKind::Routed { step, .. }
        | EventKind::CheckpointCommitted { step, .. }
        | EventKind::Interrupted { step, .. }
        | EventKind::Custom { step, .. } => *step,
        _ => return None,
    };
    i64::try_from(step).ok()
}

impl StreamWriter {
    /// Appends events until `ended` fires (the run returned), then appends what is left and
    /// returns, so that the stream is complete before the run is finished in the queue.
    pub(crate) async fn write_until(mut self, mut ended: oneshot::Receiver<()>) {
        let mut last_append: Option<Instant> = None;
        let mut over = false;
        let mut batch: Vec<Event> = Vec::new();
        loop {
            if !over {
                tokio::select! {
                    biased;
                    event = self.receive.recv() => match event {
                        Some(event) => batch.push(event),
                        None => over = true,
                    },
                    _ = &mut ended => over = true,
                }
            }
            if !over {
                let now = Instant::now();
                let until = last_append.map_or(now + GATHER, |at| (now + GATHER).max(at + APPEND_EVERY));
                // The batch's other events wait in the channel meanwhile: the writer wakes to
                // look at how full it is every `CHECK`, not once per event.
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut ended => { over = true; break }
                        () = tokio::time::sleep_until(until.min(Instant::now() + CHECK)) => {}
                    }
                    if Instant::now() >= until || batch.len() + self.receive.len() >= BATCH {
                        break;
                    }
                }
            }
            // What waits, and once the run is over everything: every event of the run was
            // sent before it returned.
            while let Ok(event) = self.receive.try_recv() {
                batch.push(event);
            }
            for chunk in batch.chunks(BATCH * 4) {
                if !self.append(chunk).await {
                    return;
                }
            }
            batch.clear();
            last_append = Some(Instant::now());
            if over {
                return;
            }
        }
    }

    /// Appends `events` (and a note of events lost meanwhile); `false` once the lease is lost.
    async fn append(&self, events: &[Event]) -> bool {
        let mut entries = Vec::with_capacity(events.len() + 1);
        let lost = self.lost.swap(0, Ordering::Relaxed);
        if lost > 0 {
            entries.push(StreamEntry::new(None, serde_json::json!({ "lost": lost })));
        }
        for event in events {
            match compact(event, self.root.as_ref()) {
                Ok(payload) => entries.push(StreamEntry::new(step_of(event), payload)),
                Err(error) => tracing::debug!(%error, "a run event does not serialize; left out of its stream"),
            }
        }
        let mut pause = Duration::from_millis(50);
        for _ in 0..4 {
            match self.streams.append(&self.lease, self.attempt, &entries).await {
                Ok(_) => return true,
                Err(QueueError::LeaseLost { .. }) => {
                    tracing::debug!(run_id = %self.lease.run_id, "lease lost: no more events of this attempt are streamed");
                    return false;
                }
                Err(error) if error.is_retryable() => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(error) => {
                    tracing::warn!(run_id = %self.lease.run_id, error = %dashflow_telemetry::Report(&error), "cannot stream a run's events");
                    break;
                }
            }
        }
        // Counted, so that the stream says how many are missing.
        self.lost.fetch_add(events.len() as u64, Ordering::Relaxed);
        true
    }
}

/// What a run's stream carries.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Streamed {
    /// One of the run's events.
    Event(Event),
    /// This many events could not be streamed here (the owner's buffer was full, or the
    /// database refused them); the run itself went on.
    Lost(u64),
    /// An item this build does not know (written by a newer worker), as stored.
    Other(serde_json::Value),
}

/// One item of a run's stream, as a follower receives it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RunEvent {
    /// Its number in the run's stream (1, 2, 3, ...): re-attach after it with
    /// [`Client::follow_from`](crate::Client::follow_from).
    pub seq: i64,
    /// The fence epoch of the attempt that wrote it.
    pub epoch: i64,
    /// The attempt that wrote it: it grows when another worker takes the run over.
    pub attempt: i32,
    /// Whether it belongs to a step that an earlier attempt had started and this attempt runs
    /// again after a takeover (its unfinished tasks): a repetition, not a new step.
    pub rerun: bool,
    /// When it was stored (milliseconds since the Unix epoch, database time).
    pub at_ms: i64,
    /// What it carries.
    pub item: Streamed,
}

impl RunEvent {
    fn from_item(item: StreamItem, root: Option<&RunIds>) -> Self {
        let streamed = match item.payload.get("lost").and_then(serde_json::Value::as_u64) {
            Some(count) => Streamed::Lost(count),
            None => {
                let mut event = item.payload.clone();
                restore_ids(&mut event, root);
                match serde_json::from_value::<Event>(event) {
                    Ok(event) => Streamed::Event(event),
                    Err(_) => Streamed::Other(item.payload),
                }
            }
        };
        Self {
            seq: item.seq,
            epoch: item.epoch,
            attempt: item.attempt,
            rerun: item.rerun,
            at_ms: item.at_ms,
            item: streamed,
        }
    }

    /// The event, when the item is one.
    pub fn event(&self) -> Option<&Event> {
        match &self.item {
            Streamed::Event(event) => Some(event),
            _ => None,
        }
    }
}

/// Follows a run's event stream live, from any process (see [`Client::follow`]).
///
/// [`Client::follow`]: crate::Client::follow
pub struct RunEvents {
    queue: Arc<dyn RunQueue>,
    streams: Arc<dyn RunStreams>,
    run_id: String,
    /// The followed run's ids, which its stream stores once per row rather than per event.
    root: Option<RunIds>,
    last_seq: i64,
    buffer: VecDeque<StreamItem>,
    /// The stream's notifications: items appended, runs ended.
    wakeups: Option<Box<dyn Wakeups>>,
    listening: bool,
    poll: Duration,
    over: bool,
}

impl std::fmt::Debug for RunEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunEvents").field("run_id", &self.run_id).field("last_seq", &self.last_seq).finish()
    }
}

impl RunEvents {
    pub(crate) fn new(queue: Arc<dyn RunQueue>, run_id: &str, after_seq: i64, poll: Duration) -> Result<Self> {
        let streams = queue.streams().ok_or(WorkerError::NoStreams)?;
        Ok(Self {
            queue,
            streams,
            run_id: run_id.to_owned(),
            root: root_ids(run_id),
            last_seq: after_seq.max(0),
            buffer: VecDeque::new(),
            wakeups: None,
            listening: false,
            poll,
            over: false,
        })
    }

    /// The number of the last item returned (or the one followed after): where to re-attach.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// The next item, waiting for it while the run is not over; `None` once the run is over
    /// (completed, interrupted, failed or cancelled) and every item was returned.
    pub async fn next(&mut self) -> Result<Option<RunEvent>> {
        loop {
            if let Some(item) = self.buffer.pop_front() {
                self.last_seq = item.seq;
                return Ok(Some(RunEvent::from_item(item, self.root.as_ref())));
            }
            if self.over {
                return Ok(None);
            }
            if !self.listening {
                // Listen before reading, so that nothing appended after the read is missed,
                // nor the run's end after its state is read.
                self.listening = true;
                self.wakeups = self.streams.wakeups().await.ok().flatten();
            }
            if self.fill().await? {
                continue;
            }
            let run = self
                .queue
                .get(&self.run_id)
                .await?
                .ok_or_else(|| QueueError::NotFound { what: format!("run {}", self.run_id) })?;
            if run.state.is_terminal() {
                // The owner appends everything before it finishes the run: one more read sees it.
                if !self.fill().await? {
                    self.over = true;
                }
                continue;
            }
            let until = Instant::now() + self.poll;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    wake = next_wake(&mut self.wakeups) => match wake {
                        Some(wake) if wake.may_concern(&self.run_id) => break,
                        Some(_) => {}
                        None => self.wakeups = None,
                    },
                }
            }
        }
    }

    /// Reads what follows the last item into the buffer; whether there was anything.
    async fn fill(&mut self) -> Result<bool> {
        let items = self.streams.read(&self.run_id, self.last_seq, 256).await?;
        let any = !items.is_empty();
        self.buffer.extend(items);
        Ok(any)
    }
}

#[cfg(test)]
mod tests;
