//! How the exporter's thread waits for work without costing each hand-over a wake-up.
//!
//! A thread blocked on the queue is woken by the next hand-over, and that wake-up is a system
//! call on the run's thread (and an interrupt to the exporter's core). A run hands over a
//! batch every few dozen steps, so instead, once the queue is empty, the thread looks again
//! after a pause that grows while nothing comes (1 ms, doubling up to 32 ms), during which a
//! hand-over wakes nobody; only after a second with nothing does it block on the queue, where
//! the next hand-over wakes it. A pause ends early for a flush or a shutdown, and for a
//! hand-over that finds a quarter of the queue taken (see `OtelSink::enqueue`).
//!
//! The run log's writer waits the same way (its doorbell), with a state of its own to tell a
//! pausing writer from a sleeping one; here the queue itself is where the thread sleeps, so
//! the queue's own blocking receive does that part.

use std::time::{Duration, Instant};

/// How long an idle exporter thread pauses, and when it sleeps instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Waits {
    /// The first pause after finding the queue empty.
    pub(crate) first: Duration,
    /// The longest pause: at most this long between a quiet hand-over and its spans.
    pub(crate) longest: Duration,
    /// How long the queue stays empty before the thread sleeps until a hand-over wakes it.
    pub(crate) sleep_after: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(1),
            longest: Duration::from_millis(32),
            sleep_after: Duration::from_secs(1),
        }
    }
}

/// What the thread does next with nothing queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Look again after this long (or when unparked).
    Pause(Duration),
    /// Block on the queue until a hand-over or a request comes.
    Sleep,
}

/// How long the thread has found nothing to do.
#[derive(Debug)]
pub(crate) struct Idle {
    waits: Waits,
    since: Option<Instant>,
    pause: Duration,
}

impl Idle {
    pub(crate) fn new(waits: Waits) -> Self {
        Self { waits, since: None, pause: Duration::ZERO }
    }

    /// Work came: the next empty queue starts with the first pause again.
    pub(crate) fn reset(&mut self) {
        self.since = None;
        self.pause = Duration::ZERO;
    }

    /// The wait after finding the queue empty once more.
    pub(crate) fn next(&mut self) -> Wait {
        self.next_at(Instant::now())
    }

    fn next_at(&mut self, now: Instant) -> Wait {
        let since = *self.since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.waits.sleep_after {
            return Wait::Sleep;
        }
        self.pause = (self.pause * 2).clamp(self.waits.first, self.waits.longest);
        Wait::Pause(self.pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_longest_then_the_thread_sleeps_and_work_starts_over() {
        let start = Instant::now();
        let mut idle = Idle::new(Waits::default());
        let pauses: Vec<Wait> = (0..8).map(|_| idle.next_at(start)).collect();
        let millis = |ms| Wait::Pause(Duration::from_millis(ms));
        assert_eq!(
            pauses,
            [millis(1), millis(2), millis(4), millis(8), millis(16), millis(32), millis(32), millis(32)]
        );
        assert_eq!(idle.next_at(start + Duration::from_secs(1)), Wait::Sleep);
        idle.reset();
        assert_eq!(idle.next_at(start + Duration::from_secs(5)), millis(1));
    }
}
