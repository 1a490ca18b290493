//! Run event streams: what a run's owner appends while it runs, so that any process can follow
//! the run live and re-attach from a sequence number (docs/distributed.md).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Lease, Result, Wakeups};

/// One item a run's owner appends to the run's stream.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StreamEntry {
    /// The superstep of the top-level run the item belongs to, when it has one: a takeover
    /// re-runs the step it interrupted, and readers learn which items repeat a step.
    pub step: Option<i64>,
    /// The item, as JSON (a serialized run event, or a note such as items lost).
    pub payload: serde_json::Value,
}

impl StreamEntry {
    /// An entry of `payload`, of superstep `step` when it has one.
    pub fn new(step: Option<i64>, payload: serde_json::Value) -> Self {
        Self { step, payload }
    }
}

/// One stored item of a run's stream.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamItem {
    /// Its position in the run's stream: 1, 2, 3, ... with no gaps, across takeovers.
    pub seq: i64,
    /// The fence epoch of the attempt that wrote it; it grows at every takeover.
    pub epoch: i64,
    /// The attempt that wrote it (1 for the first claim).
    pub attempt: i32,
    /// The superstep of the top-level run it belongs to, when it has one.
    pub step: Option<i64>,
    /// Whether it belongs to a step that an earlier attempt had started: after a takeover
    /// the new owner runs that step again (its unfinished tasks), and these items are that
    /// repetition, not a new step.
    pub rerun: bool,
    /// When it was stored, in milliseconds since the Unix epoch (database time).
    pub at_ms: i64,
    /// What the owner appended.
    pub payload: serde_json::Value,
}

/// The event streams of a queue's runs (see [`RunQueue::streams`](crate::RunQueue::streams)).
///
/// The contract:
///
/// - Items of one run are numbered 1, 2, 3, ... in the order they were appended, with no gap
///   and no number used twice, across every attempt of the run.
/// - An append checks the lease's fence epoch in its own transaction: once another worker
///   owns the thread, a former owner's append is `LeaseLost` and stores nothing. So the items
///   of a later attempt always follow every item of an earlier one.
/// - A reader sees items in order: when it sees item `n`, it has seen (or can read) every
///   item before `n`.
#[async_trait]
pub trait RunStreams: Send + Sync + fmt::Debug + 'static {
    /// Appends `entries` to the stream of `lease`'s run, numbered after its last item, as
    /// written by `attempt`; returns the number of the last one. `LeaseLost` (nothing
    /// stored) when the thread's epoch moved on.
    async fn append(&self, lease: &Lease, attempt: i32, entries: &[StreamEntry]) -> Result<i64>;

    /// Up to `limit` items of run `run_id` numbered after `after_seq`, in order.
    async fn read(&self, run_id: &str, after_seq: i64, limit: usize) -> Result<Vec<StreamItem>>;

    /// Deletes the streams of runs that ended more than `ended_before` ago; returns how many
    /// items it deleted.
    async fn trim(&self, ended_before: Duration) -> Result<u64>;

    /// Hints that items were appended ([`Wake::Events`](crate::Wake::Events) with the run
    /// id) and that runs ended ([`Wake::Done`](crate::Wake::Done)), all a follower of a run's
    /// stream waits for; `None` (the default): poll only.
    async fn wakeups(&self) -> Result<Option<Box<dyn Wakeups>>> {
        Ok(None)
    }
}
