//! The buffer of a run's events for the callbacks that take them in batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use dashflow_telemetry::__private::{Held, HeldStart, RunContext};
use dashflow_telemetry::clock::Tick;
use dashflow_telemetry::{EventBatch, EventCallback, Interest};
use parking_lot::Mutex;

/// A run's callbacks.
pub(crate) type Sinks = Vec<Arc<dyn EventCallback>>;

/// Splits callbacks into those that take batches and the others.
pub(crate) fn split_batching(callbacks: Sinks) -> (Sinks, Sinks) {
    callbacks.into_iter().partition(|callback| callback.batches())
}

pub(crate) fn same_sinks(a: &[Arc<dyn EventCallback>], b: &[Arc<dyn EventCallback>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b))
}

/// A run's events for the callbacks that take them in batches (see
/// [`EventCallback::batches`]).
///
/// Handing each event to each sink costs a call, and for a shared sink a lock every run
/// takes; here an event costs a push under a lock only this run (its tasks, its subgraph
/// runs) takes, and a step's common events are a few numbers, not built events (see
/// [`EventBatch`]). The buffer goes to the sinks, in order, when the run waits, ends, or has
/// buffered [`Batcher::CAPACITY`] events or held one for [`Batcher::MAX_DELAY`]; whatever is
/// left when the run is dropped goes then.
///
/// The run that made the buffer (its owner) may also hold back one lone step's start without
/// the lock ([`Batcher::hold_start`], [`HeldStart`]): its task's end then records both as one
/// entry. Whoever records anything else first puts the held start in the buffer before it,
/// under the lock, so every sink still hears the start before anything that followed it.
pub(crate) struct Batcher {
    pub(crate) sinks: Vec<Arc<dyn EventCallback>>,
    /// What any of the sinks wants.
    pub(crate) interest: Interest,
    buffer: Mutex<Buffer>,
    /// Set while the run's future waits: events then go out as they come.
    pub(crate) waiting: AtomicBool,
    /// Bursts in progress ([`Batcher::burst`]): while any is, waiting hands nothing over.
    bursts: AtomicU32,
    /// The run that made the buffer: the one whose starts are held back.
    owner: RunContext,
    held: HeldStart,
}

#[derive(Default)]
struct Buffer {
    batch: EventBatch,
    /// When the first buffered event happened.
    since: Option<Tick>,
}

impl Batcher {
    /// Events buffered before they go out: a tight loop of short steps hands over about once
    /// per hundred and twenty steps (a run of a hundred steps once, at its end), and a running
    /// run holds a few kilobytes. A hand-over (which may wake a sink's thread) costs the run
    /// more than many steps' entries.
    const CAPACITY: usize = 128;
    /// The longest an event waits in the buffer while the run keeps going without waiting.
    const MAX_DELAY: Duration = Duration::from_millis(50);

    /// The buffer of the run `owner` for `sinks`, if there are any.
    pub(crate) fn new(sinks: Vec<Arc<dyn EventCallback>>, owner: &RunContext) -> Option<Self> {
        if sinks.is_empty() {
            return None;
        }
        let interest = sinks.iter().fold(Interest::NONE, |interest, sink| interest.union(sink.interest()));
        Some(Self {
            sinks,
            interest,
            buffer: Mutex::new(Buffer::default()),
            waiting: AtomicBool::new(false),
            bursts: AtomicU32::new(0),
            owner: owner.clone(),
            held: HeldStart::new(),
        })
    }

    /// Holds back the owner's start of step `step`, whose one task runs node `node`, at `at`,
    /// without taking the lock; `false` if it does not fit (a step number past `u32`), and the
    /// caller records it instead.
    ///
    /// The caller is the owner run, and no start it held before may still be held unless its
    /// task's end was recorded since (see [`EventHub`](crate::hub::EventHub)): the slot is then
    /// empty and no thread that took a start from it is still reading its time.
    pub(crate) fn hold_start(&self, step: u64, node: u32, at: Tick) -> bool {
        self.held.hold(step, node, at)
    }

    /// Records the end of one of the owner's tasks with `push`, which gets the start the owner
    /// held back, if it is still held, to record with the end (it must record it); hands the
    /// buffer over if due.
    #[inline]
    pub(crate) fn record_end(&self, at: Tick, push: impl FnOnce(&mut EventBatch, Option<Held>)) {
        self.locked(|batch, held| {
            push(batch, held);
            Some(at)
        });
    }

    /// Records an event that happened at `at` with `push`, and hands the buffer over if it
    /// is due.
    #[inline]
    pub(crate) fn record(&self, at: Tick, push: impl FnOnce(&mut EventBatch)) {
        self.record_reading(|batch| {
            push(batch);
            Some(at)
        });
    }

    /// Records an event with `push`, which returns when it happened, or `None` if it added no
    /// entry (a routing decision riding on its task's end); hands the buffer over if due.
    #[inline]
    pub(crate) fn record_reading(&self, push: impl FnOnce(&mut EventBatch) -> Option<Tick>) {
        self.locked(|batch, held| {
            if let Some(held) = held {
                self.push_held(batch, held);
            }
            push(batch)
        });
    }

    /// Puts a held-back start in the batch as an entry of its own.
    pub(crate) fn push_held(&self, batch: &mut EventBatch, Held { step, node, at }: Held) {
        batch.push_step_started(&self.owner, step, node, at);
    }

    /// Runs `push` under the lock with the start the owner held back, if any; `push` returns
    /// when its event happened, or `None` if it added no entry.
    #[inline]
    fn locked(&self, push: impl FnOnce(&mut EventBatch, Option<Held>) -> Option<Tick>) {
        let mut buffer = self.buffer.lock();
        if buffer.batch.is_empty() {
            buffer.batch = EventBatch::with_capacity(Self::CAPACITY);
            buffer.since = None;
        }
        let held = self.held.take();
        let Some(at) = push(&mut buffer.batch, held) else { return };
        let since = *buffer.since.get_or_insert(at);
        let len = buffer.batch.len();
        // The age is checked every eighth event: turning readings into a duration is dearer
        // than the rest of a push.
        let due = len >= Self::CAPACITY
            || (self.waiting.load(Ordering::Relaxed) && self.bursts.load(Ordering::Relaxed) == 0)
            || buffer.batch.ends_a_run()
            || (len.is_multiple_of(8) && since.until(at) >= Self::MAX_DELAY);
        if due {
            self.deliver(std::mem::take(&mut buffer.batch));
        }
    }

    /// Keeps a waiting run's events in the buffer until the guard drops, which hands them
    /// over if the run still waits: events recorded together (the checkpoints of one
    /// commit) go out as one batch, not a batch each.
    pub(crate) fn burst(&self) -> Burst<'_> {
        self.bursts.fetch_add(1, Ordering::Relaxed);
        Burst(self)
    }

    /// Hands over what is buffered, a held-back start included.
    pub(crate) fn flush(&self) {
        let mut buffer = self.buffer.lock();
        if let Some(held) = self.held.take() {
            self.push_held(&mut buffer.batch, held);
        }
        if !buffer.batch.is_empty() {
            self.deliver(std::mem::take(&mut buffer.batch));
        }
    }

    /// Under the buffer's lock, so that batches of a run reach each sink in order. The
    /// sinks do no I/O and never block here (see `EventCallback::batches`).
    fn deliver(&self, batch: EventBatch) {
        if let Some((last, others)) = self.sinks.split_last() {
            for sink in others {
                sink.on_batch(&batch);
            }
            last.take_batch(batch);
        }
    }
}

/// A burst of events in progress (see [`Batcher::burst`]).
pub(crate) struct Burst<'a>(&'a Batcher);

impl Drop for Burst<'_> {
    fn drop(&mut self) {
        let batcher = self.0;
        if batcher.bursts.fetch_sub(1, Ordering::Relaxed) == 1 && batcher.waiting.load(Ordering::Relaxed) {
            batcher.flush();
        }
    }
}

/// A run's batcher, and whether the run made it or shares its parent's.
pub(crate) enum Owned<T> {
    Made(T),
    Shared(T),
}

impl<T> Owned<T> {
    pub(crate) fn into_inner(self) -> T {
        match self {
            Self::Made(inner) | Self::Shared(inner) => inner,
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.flush();
    }
}
