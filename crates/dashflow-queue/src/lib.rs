//! The run-queue contract of DashFlow's scale-out: the object-safe [`RunQueue`] trait, the
//! records it takes and returns, and [`QueueError`].
//!
//! When one process is not enough, many worker processes on many hosts share one queue of
//! runs. The unit of distribution is a whole run (one `invoke`, `update` or `resume` of one
//! thread): a worker claims it, drives the ordinary superstep loop in its own process, and
//! finishes it. Ownership is a [`Lease`]: the run, its thread, the worker and a **fence
//! epoch** that every change of owner (claim, sweep, release) increases. Every checkpoint a
//! run writes goes through [`RunQueue::fenced_checkpointer`], whose writes check the epoch in
//! their own transaction (on PostgreSQL, their own statement), so a paused or partitioned
//! former owner can never commit again.
//!
//! A queue may also keep each run's events in a stream ([`RunStreams`], through
//! [`RunQueue::streams`]): the run's owner appends them under the same fence, numbered across
//! takeovers, and any process follows the run live and re-attaches from a number.
//!
//! This crate depends on the checkpoint trait alone; `dashflow-queue-postgres` implements it
//! on PostgreSQL, and `dashflow-worker` drives it (the worker runtime and the typed client).
//!
//! ```
//! use dashflow_queue::{GraphKey, NewRun, Priority, RunKind};
//!
//! let key = GraphKey::new("support", "v3", 0x1234);
//! assert_eq!(key.as_str(), "support@v3#0000000000001234");
//! let run = NewRun::new(key, "ticket-42", RunKind::Invoke, b"sealed input".to_vec())
//!     .tenant("acme")
//!     .priority(Priority::High);
//! assert_eq!(run.thread_id, "ticket-42");
//! ```
//!
//! This crate has no feature flags.

mod error;
mod queue;
mod record;
mod stream;

pub use error::{QueueError, Result};
pub use queue::{RunQueue, Wake, Wakeups, next_wake};
pub use record::{
    ClaimedRun, Finish, GraphKey, HeartbeatReply, Lease, Multitask, NewRun, Priority, QueueStat, RunFilter, RunKind,
    RunRecord, RunState, SweepReport, Timings, WorkerInfo, WorkerRecord, WorkerState, new_run_id,
};
pub use stream::{RunStreams, StreamEntry, StreamItem};
