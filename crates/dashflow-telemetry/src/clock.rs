//! The clock that times tasks and steps and stamps their events, shared by the executor
//! (which reads it) and [`EventBatch`](crate::EventBatch) (which turns its readings into
//! event times and durations).
//!
//! A reading is the raw time-stamp counter (through quanta, which calibrates it against the
//! monotonic clock and falls back to that clock where the counter is unreliable), scaled to
//! nanoseconds only when a duration is needed. On the reference machine a raw reading costs
//! well under half of `std::time::Instant::now`. An observed step of one task takes one: a
//! step that follows a lone task's end without the run waiting (no checkpoint written in
//! between) starts at that end's reading, so the loop's own work between the two (routing,
//! merging the update) counts toward the later task's duration.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();

#[inline]
fn clock() -> &'static quanta::Clock {
    CLOCK.get_or_init(quanta::Clock::new)
}

/// One clock reading: cheap to take, turned into a duration or a time only when needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tick(u64);

impl Tick {
    /// Reads the clock.
    #[inline]
    pub fn now() -> Self {
        Self(clock().raw())
    }

    /// The reading as a number, to keep it in an atomic.
    #[inline]
    pub fn raw(self) -> u64 {
        self.0
    }

    /// A reading [`raw`](Self::raw) gave.
    #[inline]
    pub fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The time from `self` to `later` (zero if `later` is not later).
    #[inline]
    pub fn until(self, later: Tick) -> Duration {
        clock().delta(self.0, later.0)
    }

    /// The clock's ticks from `self` to `later` (zero if `later` is not later): a duration
    /// kept as a number, made one by [`ticks_duration`] when needed.
    #[inline]
    pub fn ticks_until(self, later: Tick) -> u64 {
        later.0.saturating_sub(self.0)
    }
}

/// A count of the clock's ticks ([`Tick::ticks_until`]) as a duration.
#[inline]
pub fn ticks_duration(ticks: u64) -> Duration {
    clock().delta(0, ticks)
}

/// Calibrates the clock, once per process and in the background, so that the first observed
/// run does not wait for it (calibration takes about a millisecond here, at most 200 ms).
pub fn warm_up() {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        // Without the thread, the first run calibrates instead: slower, never wrong.
        let _ = std::thread::Builder::new().name("dashflow-clock".to_owned()).spawn(|| {
            clock();
        });
    });
}

/// Turns readings into wall-clock times for events.
///
/// One reading then serves both an event's time and a duration: reading the wall clock for
/// every event as well cost about as much as the rest of the event. A run's event times follow
/// the monotonic clock from its start, so they never go backwards within a run even if the
/// system clock is adjusted meanwhile.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    wall: SystemTime,
    start: Tick,
}

impl RunClock {
    /// A clock anchored now.
    pub fn new() -> Self {
        Self { wall: SystemTime::now(), start: Tick::now() }
    }

    /// The wall-clock time of the reading `at`.
    pub fn wall_time(&self, at: Tick) -> SystemTime {
        self.wall + self.start.until(at)
    }
}

impl Default for RunClock {
    fn default() -> Self {
        Self::new()
    }
}
