//! [`MemoryRunQueue`]: DashFlow's run queue kept in process memory.
//!
//! For tests and single-process use: the whole [`RunQueue`](dashflow_queue::RunQueue) contract
//! (one queued or running run per thread, pending runs promoted in submission order, claims by
//! priority and then fairly across tenants, leases timed by the queue's own [`Clock`], fence
//! epochs bumped at every change of owner, sweeps, cancels, give-ups, wake-ups and run event
//! streams) without a database. It runs the `dashflow-queue-conformance` suite like the
//! PostgreSQL queue, so code tested against it behaves the same there. Nothing survives the
//! process and nothing is shared with other processes: workers on other hosts need
//! `dashflow-queue-postgres`.
//!
//! Runs write their checkpoints into a `dashflow-checkpoint-memory` checkpointer through
//! [`fenced_checkpointer`](dashflow_queue::RunQueue::fenced_checkpointer): every write checks
//! the lease's fence epoch and writes under the queue's one lock, so the check and the write
//! are one step, and a former owner's write is a `Conflict` that stores nothing. The lock is
//! an async one (held across that write, which does no I/O); no other operation awaits while
//! holding it.
//!
//! Lease times come from the queue's [`Clock`]: [`SystemClock`] by default, or a
//! [`ManualClock`] that a test moves forward to expire leases and pass backoffs without
//! sleeping.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use dashflow_queue::{GraphKey, NewRun, RunKind, RunQueue, RunState, Timings, WorkerInfo};
//! use dashflow_queue_memory::{ManualClock, MemoryRunQueue};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let clock = Arc::new(ManualClock::starting_now());
//! let queue = MemoryRunQueue::builder().clock(clock.clone()).build();
//! let key = GraphKey::new("support", "v3", 0x1234);
//! queue.submit(NewRun::new(key.clone(), "ticket-42", RunKind::Invoke, b"input".to_vec())).await?;
//! for worker in ["w1", "w2"] {
//!     queue.register_worker(&WorkerInfo::new(worker, "host", 1, vec!["default".into()], vec![key.clone()], 4)).await?;
//! }
//! let timings = Timings::short();
//! let claimed = queue.claim("w1", &["default".into()], &[key], 1).await?.remove(0);
//! queue.heartbeat("w1", &[claimed.lease.clone()], &timings).await?;
//!
//! // w1 stops heart-beating; w2 goes on, a lease later the sweeper takes the run back.
//! clock.advance(timings.lease * 2);
//! queue.heartbeat("w2", &[], &timings).await?;
//! let report = queue.sweep(&timings).await?;
//! assert_eq!(report.runs, [(claimed.lease.run_id.clone(), RunState::Queued)]);
//! # Ok::<(), dashflow_queue::QueueError>(())
//! # }).unwrap();
//! ```
//!
//! Where it differs from PostgreSQL's queue: the backoff after a lost attempt is the whole of
//! its upper bound, not a random half to all of it, and there are no heartbeat sessions, so a
//! dead worker is found by its lease alone (relative to the freshest heartbeat of the fleet,
//! as there).
//!
//! This crate has no feature flags.

mod clock;
mod fence;
mod queue;
mod streams;

#[cfg(test)]
mod tests;

pub use clock::{Clock, ManualClock, SystemClock};
pub use queue::{MemoryRunQueue, MemoryRunQueueBuilder};
