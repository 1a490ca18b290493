//! The buffer of a run's events for the callbacks that take them in batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
pub(crate) struct Batcher {
    pub(crate) sinks: Vec<Arc<dyn EventCallback>>,
    /// What any of the sinks wants.
    pub(crate) interest: Interest,
    buffer: Mutex<Buffer>,
    /// Set while the run's future waits: events then go out as they come.
    pub(crate) waiting: AtomicBool,
}

#[derive(Default)]
struct Buffer {
    batch: EventBatch,
    /// When the first buffered event happened.
    since: Option<Tick>,
}

impl Batcher {
    /// Events buffered before they go out: a tight loop of short steps hands over about once
    /// per sixty steps, and a running run holds a few kilobytes.
    const CAPACITY: usize = 64;
    /// The longest an event waits in the buffer while the run keeps going without waiting.
    const MAX_DELAY: Duration = Duration::from_millis(50);

    pub(crate) fn new(sinks: Vec<Arc<dyn EventCallback>>) -> Option<Self> {
        if sinks.is_empty() {
            return None;
        }
        let interest = sinks.iter().fold(Interest::NONE, |interest, sink| interest.union(sink.interest()));
        Some(Self { sinks, interest, buffer: Mutex::new(Buffer::default()), waiting: AtomicBool::new(false) })
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
        let mut buffer = self.buffer.lock();
        if buffer.batch.is_empty() {
            buffer.batch = EventBatch::with_capacity(Self::CAPACITY);
            buffer.since = None;
        }
        let Some(at) = push(&mut buffer.batch) else { return };
        let since = *buffer.since.get_or_insert(at);
        let len = buffer.batch.len();
        // The age is checked every eighth event: turning readings into a duration is dearer
        // than the rest of a push.
        let due = len >= Self::CAPACITY
            || self.waiting.load(Ordering::Relaxed)
            || buffer.batch.ends_a_run()
            || (len.is_multiple_of(8) && since.until(at) >= Self::MAX_DELAY);
        if due {
            self.deliver(std::mem::take(&mut buffer.batch));
        }
    }

    /// Hands over what is buffered.
    pub(crate) fn flush(&self) {
        let mut buffer = self.buffer.lock();
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

impl Drop for Batcher {
    fn drop(&mut self) {
        self.flush();
    }
}
