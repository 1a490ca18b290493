//! How a sink's background thread waits for work without costing each hand-over a wake-up.
//!
//! A thread blocked on its queue is woken by the next hand-over, and that wake-up is a system
//! call on the run's thread (and, when the other core is idle, an interrupt to it). Runs hand
//! their events over once per run or per burst, so instead, once the queue is empty, the
//! thread looks again after a pause that grows while nothing comes (1 ms, doubling up to
//! 32 ms), during which a hand-over wakes nobody; only after a second with nothing does it
//! sleep until a hand-over wakes it.
//!
//! This is the schedule alone, shared by the run log's writer, the OpenTelemetry exporter and
//! the NATS publisher. How each pauses, sleeps and is woken early (a flush, a shutdown, a
//! backlogged queue) stays with each, since they sleep on different things: a parked thread
//! behind a doorbell, a blocking channel, an async queue.

use std::time::{Duration, Instant};

/// How long an idle thread pauses, and when it sleeps instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waits {
    /// The first pause after finding the queue empty.
    pub first: Duration,
    /// The longest pause: at most this long between a quiet hand-over and its handling.
    pub longest: Duration,
    /// How long the queue stays empty before the thread sleeps until a hand-over wakes it.
    pub sleep_after: Duration,
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
pub enum Wait {
    /// Look again after this long (or when woken early).
    Pause(Duration),
    /// Sleep until a hand-over or a request wakes it.
    Sleep,
}

/// How long the thread has found nothing to do.
#[derive(Debug, Default)]
pub struct Idle {
    waits: Waits,
    since: Option<Instant>,
    pause: Duration,
}

impl Idle {
    /// An idle schedule with these waits.
    pub fn new(waits: Waits) -> Self {
        Self { waits, since: None, pause: Duration::ZERO }
    }

    /// Work came: the next empty queue starts with the first pause again.
    pub fn reset(&mut self) {
        self.since = None;
        self.pause = Duration::ZERO;
    }

    /// The wait after finding the queue empty once more.
    pub fn next_wait(&mut self) -> Wait {
        self.next_wait_at(Instant::now())
    }

    fn next_wait_at(&mut self, now: Instant) -> Wait {
        let since = *self.since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.waits.sleep_after {
            return Wait::Sleep;
        }
        self.pause = (self.pause * 2).clamp(self.waits.first, self.waits.longest);
        Wait::Pause(self.pause)
    }
}

#[cfg(test)]
mod tests;
