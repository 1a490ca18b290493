//! DashFlow's scale-out runtime: [`Worker`] processes on any host claim runs from a shared
//! [`RunQueue`](dashflow_queue::RunQueue), run them with the ordinary superstep loop, and
//! checkpoint through a checkpointer fenced by their lease; [`Client`] submits runs and waits
//! for them from any process.
//!
//! Every worker registers the same compiled graphs ([`RegisteredGraph`]: name, version, and a
//! hash of the graph's shape and state schema), and claims only runs whose graph it has.
//! While it runs, a worker heartbeats (its lease is renewed in database time), sweeps (stops
//! workers that stopped heart-beating and re-queues their runs with a bumped fence epoch), and
//! stops every run of its own if it cannot heartbeat before its lease would end
//! (self-fencing). A run taken over by another worker continues from the thread's last
//! checkpoint and the stored results of its finished tasks: only unfinished tasks run again,
//! and the run's input, update or resume answer is applied once.
//!
//! A worker also appends each run's events to the queue's stream of the run (when the queue
//! keeps streams), so that [`Client::follow`] can follow the run live from any process, across
//! takeovers. Its heartbeats run on a thread with a runtime of their own, so nodes that keep
//! its runtime busy do not cost it its lease.
//!
//! The worker never names a queue backend: the application passes one
//! (`dashflow_queue_postgres::PostgresRunQueue`). docs/guide.md has a walk-through.
//!
//! This crate has no feature flags.

mod client;
mod error;
mod registry;
mod stream;
mod worker;

pub use client::{Client, Finished, RunRequest};
pub use error::{Result, WorkerError};
pub use registry::{RegisteredGraph, RunEnd, RunnableGraph};
pub use stream::{RunEvent, RunEventSink, RunEvents, Streamed};
pub use worker::{Worker, WorkerBuilder, WorkerCounters, shutdown_signal};
