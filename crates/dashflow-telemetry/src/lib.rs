//! Run identities, the events a DashFlow run emits, and two built-in sinks: run and node
//! metrics through the `metrics` facade ([`MetricsCallback`]) and the registry of runs in
//! progress ([`LiveRuns`]).
//!
//! The executor describes what happens during a run as small [`Event`] values (run start and
//! end, supersteps, task start and end, routing decisions, checkpoints, interrupts, custom
//! values) and hands each one
//! to every registered [`EventCallback`]. This crate owns only the vocabulary: it depends on no
//! other DashFlow crate, so sinks (the write-ahead log, metrics, a user's monitoring) can be
//! written against it without pulling in the runtime.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use dashflow_telemetry::{Event, EventCallback, EventKind};
//!
//! #[derive(Default)]
//! struct FailedTasks(Mutex<Vec<String>>);
//!
//! impl EventCallback for FailedTasks {
//!     fn on_event(&self, event: &Event) {
//!         if let EventKind::TaskFinished { node, error: Some(error), .. } = &event.kind {
//!             self.0.lock().unwrap().push(format!("{node}: {error}"));
//!         }
//!     }
//! }
//!
//! let sink: Arc<dyn EventCallback> = Arc::new(FailedTasks::default());
//! # let _ = sink;
//! ```
//!
//! This crate has no feature flags.

mod batch;
pub mod clock;
mod delta;
mod event;
mod held;
mod idle;
mod ids;
mod live;
mod metrics_sink;
mod report;
mod run_map;

pub use batch::{BatchItem, EventBatch, EventRef, Items, Refs};
pub use delta::{DeltaKind, StateDelta, StateJson};
pub use event::{Event, EventCallback, EventKind, Interest, InterruptReason, RunOutcome};
pub use ids::{RunId, RunIds};
pub use live::{LiveRun, LiveRuns};
pub use metrics_sink::MetricsCallback;
pub use report::Report;

#[cfg(test)]
mod tests;

/// What the executor records a run's compact events with (node names by index, a run's clock
/// and ids), and what the sinks share (how their threads wait when idle, maps keyed by run
/// id). Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::batch::{NodeNames, RunContext};
    pub use crate::held::{Held, HeldStart};
    pub use crate::idle::{Idle, Wait, Waits};
    pub use crate::run_map::{RunIdHasher, RunIdMap};
}
