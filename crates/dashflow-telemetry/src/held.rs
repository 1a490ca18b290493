//! A lone step's start that its run holds back without a lock, for a buffer whose lock every
//! other recorder takes (the executor's batcher).
//!
//! A step of one task records its start and, a moment later, its task's end. Taking the
//! buffer's lock for each would cost the run's thread two lock round trips per step; instead
//! the run stores the start here with two plain stores, and its task's end, under the lock,
//! takes it back and records both as one entry. Anyone else who records under the lock in
//! between takes the start first and records it before their own event, so every sink still
//! hears the start before what followed it.
//!
//! The protocol, which the `loom_` models below check:
//! - Only the run that owns the slot calls [`HeldStart::hold`], and only when no start it
//!   held before can still be in the slot or being read from it: after a task end of its own
//!   took the slot under the lock (a taker that got the start before has then released the
//!   lock, so it has finished reading the time).
//! - [`HeldStart::take`] is called only under the buffer's lock, so takes never overlap: a
//!   take is a load and a store, with no read-modify-write.
//! - The time is stored before the step and node, which publish it (release / acquire).

use crate::clock::Tick;

use self::sync::{AtomicU64, Ordering};

/// The slot's atomics: the standard library's, or loom's for this crate's own models (other
/// crates built with `--cfg loom` get the standard library's: loom is a dev-dependency here).
#[cfg(not(all(loom, test)))]
mod sync {
    pub(super) use std::sync::atomic::{AtomicU64, Ordering};
}

#[cfg(all(loom, test))]
mod sync {
    pub(super) use loom::sync::atomic::{AtomicU64, Ordering};
}

/// The slot (see the module docs).
#[derive(Debug)]
pub struct HeldStart {
    /// The step (high half) and the node (low half), or [`HeldStart::NONE`].
    step_node: AtomicU64,
    /// The start's raw clock reading; stored before `step_node`.
    at: AtomicU64,
}

/// A start taken out of a [`HeldStart`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// The step.
    pub step: u64,
    /// Its one task's node, by index.
    pub node: u32,
    /// When it started.
    pub at: Tick,
}

impl Default for HeldStart {
    fn default() -> Self {
        Self::new()
    }
}

impl HeldStart {
    const NONE: u64 = u64::MAX;

    /// An empty slot.
    pub fn new() -> Self {
        Self { step_node: AtomicU64::new(Self::NONE), at: AtomicU64::new(0) }
    }

    /// Holds the start of step `step`, whose one task runs node `node`, at `at`; `false` if
    /// the step number does not fit (the caller records the start instead). Only the owner
    /// calls it, and only when its earlier starts are settled (see the module docs).
    #[inline]
    pub fn hold(&self, step: u64, node: u32, at: Tick) -> bool {
        let Ok(step) = u32::try_from(step) else { return false };
        let step_node = (u64::from(step) << 32) | u64::from(node);
        if step_node == Self::NONE {
            return false;
        }
        self.at.store(at.raw(), Ordering::Relaxed);
        self.step_node.store(step_node, Ordering::Release);
        true
    }

    /// Takes the held start out, if there is one. Only under the buffer's lock.
    ///
    /// A load and a store, not a swap: takers are serialised by the lock, and the owner
    /// holds a start only into an empty slot that no taker is still reading (see the module
    /// docs), so the one write that can race with a take is a hold into the empty slot the
    /// take then sees as empty, or as that start.
    #[inline]
    pub fn take(&self) -> Option<Held> {
        let step_node = self.step_node.load(Ordering::Acquire);
        if step_node == Self::NONE {
            return None;
        }
        let at = Tick::from_raw(self.at.load(Ordering::Relaxed));
        self.step_node.store(Self::NONE, Ordering::Relaxed);
        Some(Held {
            step: step_node >> 32,
            // The low half is the node, by construction in `hold`.
            node: (step_node & u64::from(u32::MAX)) as u32,
            at,
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_held_start_is_taken_once_with_its_step_node_and_time() {
        let slot = HeldStart::new();
        assert_eq!(slot.take(), None);
        assert!(slot.hold(7, 3, Tick::from_raw(42)));
        assert_eq!(slot.take(), Some(Held { step: 7, node: 3, at: Tick::from_raw(42) }));
        assert_eq!(slot.take(), None, "taken once");
        assert!(slot.hold(u64::from(u32::MAX) - 1, u32::MAX, Tick::from_raw(1)));
        assert_eq!(slot.take().map(|held| (held.step, held.node)), Some((u64::from(u32::MAX) - 1, u32::MAX)));
    }

    #[test]
    fn a_step_past_u32_or_the_empty_mark_is_not_held() {
        let slot = HeldStart::new();
        assert!(!slot.hold(u64::from(u32::MAX) + 1, 0, Tick::from_raw(1)));
        assert!(!slot.hold(u64::from(u32::MAX), u32::MAX, Tick::from_raw(1)), "the empty mark");
        assert_eq!(slot.take(), None);
    }
}

/// Models of the protocol: the owner holds starts and its task ends take them back under
/// the lock while another thread records under the lock (`RUSTFLAGS="--cfg loom" cargo test
/// -p dashflow-telemetry --release --lib loom`).
#[cfg(all(test, loom))]
mod loom_tests {
    use loom::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Record {
        Start { step: u64, node: u32, at: u64 },
        End { step: u64 },
        Other,
    }

    fn start(held: Held) -> Record {
        Record::Start { step: held.step, node: held.node, at: held.at.raw() }
    }

    /// Each step `s` starts once, naming node `s` at time `10 s`, before its end.
    fn check(records: &[Record], steps: u64) {
        for step in 1..=steps {
            let starts: Vec<usize> = (0..records.len())
                .filter(|&index| matches!(records[index], Record::Start { step: s, .. } if s == step))
                .collect();
            assert_eq!(starts.len(), 1, "step {step} starts once: {records:?}");
            assert_eq!(
                records[starts[0]],
                Record::Start { step, node: step as u32, at: 10 * step },
                "step {step}'s own node and time: {records:?}"
            );
            let end = records.iter().position(|record| *record == Record::End { step });
            assert!(end.is_none_or(|end| end > starts[0]), "step {step} starts before it ends: {records:?}");
        }
    }

    /// Records `record` under the lock as the batcher does: a held start goes first.
    fn record(slot: &HeldStart, records: &Mutex<Vec<Record>>, record: Record) {
        let mut records = records.lock().unwrap();
        if let Some(held) = slot.take() {
            records.push(start(held));
        }
        records.push(record);
    }

    /// The owner's task end: takes its own start back (or records whoever's is there first).
    fn end(slot: &HeldStart, records: &Mutex<Vec<Record>>, step: u64) {
        record(slot, records, Record::End { step });
    }

    type Shared = Arc<(HeldStart, Mutex<Vec<Record>>)>;

    /// Another thread (the `Async` writer, a subgraph run) recording something of its own.
    fn other_records(shared: &Shared) -> loom::thread::JoinHandle<()> {
        let shared = Arc::clone(shared);
        loom::thread::spawn(move || {
            let (slot, records) = &*shared;
            record(slot, records, Record::Other);
        })
    }

    #[test]
    fn loom_a_recorder_between_holds_and_ends_never_reads_another_steps_start() {
        loom::model(|| {
            let shared: Shared = Arc::new((HeldStart::new(), Mutex::new(Vec::new())));
            let other = other_records(&shared);
            let (slot, records) = &*shared;
            for step in 1..=2 {
                assert!(slot.hold(step, step as u32, Tick::from_raw(10 * step)));
                end(slot, records, step);
            }
            other.join().unwrap();
            let records = records.lock().unwrap();
            assert!(records.contains(&Record::Other));
            check(&records, 2);
        });
    }

    #[test]
    fn loom_a_start_whose_end_went_unrecorded_is_recorded_before_the_next_one() {
        loom::model(|| {
            let shared: Shared = Arc::new((HeldStart::new(), Mutex::new(Vec::new())));
            let other = other_records(&shared);
            let (slot, records) = &*shared;
            // Step 1's task ends unrecorded: the owner is not settled, so step 2's start goes
            // under the lock, after whatever is still held.
            assert!(slot.hold(1, 1, Tick::from_raw(10)));
            record(slot, records, Record::Start { step: 2, node: 2, at: 20 });
            end(slot, records, 2);
            other.join().unwrap();
            let mut records = records.lock().unwrap();
            if let Some(held) = slot.take() {
                records.push(start(held));
            }
            check(&records, 2);
            let first =
                |step| records.iter().position(|record| matches!(record, Record::Start { step: s, .. } if *s == step));
            assert!(first(1) < first(2), "{records:?}");
        });
    }
}
