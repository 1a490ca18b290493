//! DashFlow runs as OpenTelemetry traces, exported over OTLP.
//!
//! [`OtelSink`] is an event sink: register it on a compiled graph (or for one run) and each
//! run becomes a span, each of its supersteps a child span, and each attempt of a task a
//! child of its superstep:
//!
//! ```text
//! dashflow.run            dashflow.graph.name, dashflow.run.id, dashflow.thread.id, ...
//! ├─ dashflow.superstep   dashflow.superstep = 1, dashflow.superstep.nodes = [classify]
//! │  └─ dashflow.task     dashflow.node = classify, dashflow.task.attempt = 1
//! └─ dashflow.superstep   dashflow.superstep = 2, nodes = [billing, account]
//!    ├─ dashflow.task     billing, attempt 1, error.type = _OTHER, status error
//!    ├─ dashflow.task     billing, attempt 2
//!    └─ dashflow.task     account, attempt 1
//! ```
//!
//! A superstep's span runs from its start to the start of the next one (its tasks, the merge
//! of their updates, its routing decisions and its checkpoint), and the last one to its run's
//! end: a run records no event of its own for a step's end (see [`OtelSink`]'s costs).
//!
//! A subgraph's run is a child of the parent's superstep that ran it, in the same trace. A
//! failed task attempt or run has status `Error` with the message, OpenTelemetry's
//! `error.type` attribute and an `exception` event. Routing decisions are events on their
//! superstep; checkpoints and interrupts are events on the run. The attribute and event
//! names are in [`attributes`] and [`events`].
//!
//! ```no_run
//! # fn main() -> Result<(), dashflow_otel::Error> {
//! use dashflow_otel::OtelSink;
//!
//! let (sink, _guard) = OtelSink::builder().endpoint("http://127.0.0.1:4317").start()?;
//! // let app = graph.compile()?.with_callback(sink);
//! # drop(sink);
//! # Ok(()) }
//! ```
//!
//! # Joining the caller's trace
//!
//! A run whose tags carry the caller's span ([`trace_parent_tag`], a W3C `traceparent`) is a
//! child of that span, in the caller's trace: `RunConfig::new().tag(trace_parent_tag(&cx)?)`.
//! The facade's `otel` feature adds `RunConfig::trace_parent` for this (see the module docs
//! of `parent` in the source for why a tag carries it).
//!
//! # Cost
//!
//! The sink obeys the contract of every sink: runs hand their events over in batches without
//! blocking; the spans are built and exported by the sink's own thread, `dashflow-otel`, with
//! a current-thread Tokio runtime of its own. It asks for no event a run would record whole
//! at every step, and a hand-over wakes its thread only when that thread has been idle for a
//! while ([`OtelSink`] says what a run pays). A full queue drops hand-overs and counts them
//! ([`OtelStats::dropped`]); a failed export counts its spans ([`OtelStats::failed`]) and is
//! logged once. Keep the [`OtelGuard`]: dropping it exports what is left.
//!
//! This crate has no feature flags.

mod error;
mod parent;
mod sink;
mod spans;

pub use error::{Error, Result};
pub use parent::{TRACE_PARENT_TAG_PREFIX, parse_trace_parent, trace_parent_tag};
pub use sink::{OtelBuilder, OtelGuard, OtelSink, OtelStats};
pub use spans::{attributes, events};

/// The OpenTelemetry crates this one is built on, at the versions it uses.
pub use opentelemetry;
pub use opentelemetry_sdk;
