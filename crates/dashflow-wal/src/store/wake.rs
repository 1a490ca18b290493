//! How the writer waits for work without costing every hand-over a wake-up.
//!
//! Waking a parked thread is a system call and, when the other core is idle, an interrupt to
//! it: on the reference machine that costs more than a whole run of a hundred short nodes.
//! Runs hand their events over once per run (or per burst), so waking the writer for each
//! would put that price on every run. Instead, once the queue is empty, the writer looks
//! again after a pause that grows while nothing comes (the sinks' shared schedule,
//! `dashflow_telemetry`'s `Idle`: 1 ms, doubling up to 32 ms), and sleeps until woken only
//! after a second with nothing. A hand-over wakes it only then, or when the queue fills past
//! a quarter of its capacity during a pause; flushes always wake it.
//!
//! The schedule is shared; the doorbell is the writer's own. The other sinks sleep in their
//! queue's blocking receive, which a hand-over wakes by itself; the writer parks, so a
//! hand-over must know whether it pauses or sleeps, which the doorbell's state tells (the
//! flush at exit, which does not come through the queue, wakes it the same way). The
//! schedule's longest pause suits this queue too: the queue (64 Ki events) takes longer than
//! that to fill in the tightest loops measured, and a backlogged hand-over wakes the writer
//! anyway.

use dashflow_telemetry::__private::Wait;

use self::sync::{AtomicU8, Ordering, Slot, fence, thread};
use super::Backlog;

/// What the doorbell is built of: the standard library's atomics and parking, or loom's, so
/// that the wake-up protocol is model-checked (`RUSTFLAGS="--cfg loom" cargo test -p
/// dashflow-wal --release loom`; see `loom_tests` below).
#[cfg(not(loom))]
mod sync {
    pub(super) use std::sync::atomic::{AtomicU8, Ordering, fence};
    pub(super) use std::thread;

    /// The writer's thread, named once.
    pub(super) type Slot = std::sync::OnceLock<thread::Thread>;
}

#[cfg(loom)]
mod sync {
    pub(super) use loom::sync::atomic::{AtomicU8, Ordering, fence};

    pub(super) mod thread {
        pub(crate) use loom::thread::{Thread, current, park, spawn, yield_now};

        /// A timed pause ends on its own: for the model, a spurious early wake-up.
        pub(crate) fn park_timeout(_: std::time::Duration) {
            yield_now();
        }
    }

    /// The writer's thread, named once.
    #[derive(Default)]
    pub(super) struct Slot(loom::sync::Mutex<Option<thread::Thread>>);

    impl Slot {
        pub(super) fn new() -> Self {
            Self::default()
        }

        pub(super) fn set(&self, thread: thread::Thread) -> Result<(), thread::Thread> {
            let mut slot = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match *slot {
                Some(_) => Err(thread),
                None => {
                    *slot = Some(thread);
                    Ok(())
                }
            }
        }

        pub(super) fn get(&self) -> Option<thread::Thread> {
            self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
        }
    }
}

const WORKING: u8 = 0;
const PAUSED: u8 = 1;
const ASLEEP: u8 = 2;

/// Shared by the producers and the writer: what the writer is doing, and its thread.
pub(super) struct Doorbell {
    state: AtomicU8,
    writer: Slot,
}

impl Doorbell {
    pub(super) fn new() -> Self {
        Self { state: AtomicU8::new(WORKING), writer: Slot::new() }
    }

    /// Names the writer's thread, once it runs.
    #[cfg(not(loom))]
    pub(super) fn attach(&self, writer: thread::Thread) {
        let _ = self.writer.set(writer);
    }

    /// Under loom only the model runs (a store's real writer thread is not loom's).
    #[cfg(loom)]
    pub(super) fn attach(&self, _writer: std::thread::Thread) {}

    /// Names the model's writer thread.
    #[cfg(loom)]
    fn attach_model(&self, writer: thread::Thread) {
        let _ = self.writer.set(writer);
    }

    /// After queueing events: wakes the writer if it sleeps, or if it pauses while the queue
    /// is [`Backlog::Behind`]; otherwise costs one fence and one load.
    pub(super) fn ring(&self, backlog: Backlog) {
        // Pairs with the fence in `sleep`: either the writer sees the queued events before it
        // parks, or this sees that it sleeps.
        fence(Ordering::SeqCst);
        let wake = match self.state.load(Ordering::Relaxed) {
            WORKING => false,
            PAUSED => backlog == Backlog::Behind,
            _ => true,
        };
        if wake && self.state.swap(WORKING, Ordering::AcqRel) != WORKING {
            self.unpark();
        }
    }

    /// Wakes the writer whatever it is doing (a flush or shutdown asks for it).
    pub(super) fn wake(&self) {
        self.state.store(WORKING, Ordering::SeqCst);
        self.unpark();
    }

    fn unpark(&self) {
        if let Some(writer) = self.writer.get() {
            writer.unpark();
        }
    }

    /// On the writer's thread, with the queue found empty: pauses, or sleeps until woken
    /// unless `pending` says events were queued meanwhile.
    pub(super) fn wait(&self, wait: Wait, pending: impl FnOnce() -> bool) {
        match wait {
            Wait::Pause(pause) => {
                self.state.store(PAUSED, Ordering::Relaxed);
                thread::park_timeout(pause);
            }
            Wait::Sleep => {
                self.state.store(ASLEEP, Ordering::Relaxed);
                fence(Ordering::SeqCst);
                if !pending() {
                    // May return early (an old wake-up): the writer looks and comes back.
                    thread::park();
                }
            }
        }
        self.state.store(WORKING, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;

    #[test]
    fn a_ring_wakes_a_sleeping_writer() {
        let bell = Arc::new(Doorbell::new());
        let queued = Arc::new(AtomicBool::new(false));
        let writer = {
            let (bell, queued) = (Arc::clone(&bell), Arc::clone(&queued));
            thread::spawn(move || {
                // Sleeps until the ring below: without it this test never ends.
                while !queued.load(Ordering::SeqCst) {
                    bell.wait(Wait::Sleep, || queued.load(Ordering::SeqCst));
                }
            })
        };
        bell.attach(writer.thread().clone());
        queued.store(true, Ordering::SeqCst);
        bell.ring(Backlog::KeepingUp);
        writer.join().unwrap();
    }

    #[test]
    fn a_ring_leaves_a_working_or_pausing_writer_alone_unless_backlogged() {
        let bell = Doorbell::new();
        bell.ring(Backlog::Behind);
        assert_eq!(bell.state.load(Ordering::SeqCst), WORKING);
        bell.state.store(PAUSED, Ordering::SeqCst);
        bell.ring(Backlog::KeepingUp);
        assert_eq!(bell.state.load(Ordering::SeqCst), PAUSED, "a quiet hand-over waits for the writer's next look");
        bell.ring(Backlog::Behind);
        assert_eq!(bell.state.load(Ordering::SeqCst), WORKING, "a backlog wakes it");
        bell.state.store(ASLEEP, Ordering::SeqCst);
        bell.ring(Backlog::KeepingUp);
        assert_eq!(bell.state.load(Ordering::SeqCst), WORKING);
    }
}

/// The wake-up protocol under every interleaving loom explores: a producer queues an event
/// (a counter standing for the queue) and rings; the writer drains, finds the queue empty,
/// and waits. Whatever the order, the writer never sleeps on a queued event: it drains
/// everything and the model ends (a lost wake-up would leave it parked, which loom reports
/// as a deadlock).
#[cfg(all(test, loom))]
mod loom_tests {
    use std::time::Duration;

    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;

    use super::*;

    /// The writer: takes queued events until it has seen `expected`, waiting as told.
    fn writer(bell: &Doorbell, queued: &AtomicUsize, expected: usize, waits: &[Wait]) {
        let mut seen = 0;
        let mut waits = waits.iter().copied().cycle();
        while seen < expected {
            let taken = queued.swap(0, Ordering::Relaxed);
            if taken > 0 {
                seen += taken;
                continue;
            }
            let wait = waits.next().unwrap_or(Wait::Sleep);
            bell.wait(wait, || queued.load(Ordering::Relaxed) > 0);
        }
    }

    fn model(producers: usize, waits: &'static [Wait], backlog: Backlog) {
        let mut builder = loom::model::Builder::new();
        // Every interleaving with one producer; with two, those of up to three preemptions
        // (the full space takes too long for CI, and lost wake-ups need only one or two).
        if producers > 1 {
            builder.preemption_bound = Some(3);
        }
        builder.check(move || {
            let bell = Arc::new(Doorbell::new());
            let queued = Arc::new(AtomicUsize::new(0));
            // The writer on a thread of its own, as in a store (and so that a ring's unpark
            // reaches no thread blocked in `join`, which loom does not allow).
            let writer = {
                let (bell, queued) = (Arc::clone(&bell), Arc::clone(&queued));
                thread::spawn(move || {
                    bell.attach_model(thread::current());
                    writer(&bell, &queued, producers, waits);
                })
            };
            let handles: Vec<_> = (0..producers)
                .map(|_| {
                    let (bell, queued) = (Arc::clone(&bell), Arc::clone(&queued));
                    thread::spawn(move || {
                        queued.fetch_add(1, Ordering::Relaxed);
                        bell.ring(backlog);
                    })
                })
                .collect();
            for handle in handles {
                handle.join().unwrap();
            }
            writer.join().unwrap();
        });
    }

    const PAUSE_THEN_SLEEP: &[Wait] = &[Wait::Pause(Duration::from_millis(1)), Wait::Sleep];

    #[test]
    fn loom_a_ring_never_leaves_a_sleeping_writer_asleep_on_a_queued_event() {
        model(1, &[Wait::Sleep], Backlog::KeepingUp);
    }

    #[test]
    fn loom_two_producers_and_a_writer_that_pauses_then_sleeps() {
        model(2, PAUSE_THEN_SLEEP, Backlog::KeepingUp);
    }

    #[test]
    fn loom_a_backlogged_ring_wakes_a_pausing_writer() {
        model(1, PAUSE_THEN_SLEEP, Backlog::Behind);
    }
}
