//! Integration tests of dashflow-executor: graphs built with dashflow-graph, run through
//! `CompiledGraph`, checked by their final state, errors, streams and events.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod batches;
mod callbacks;
mod cancel;
mod cancellation;
mod command;
mod common;
mod concurrency;
mod context;
mod deltas;
mod durable;
mod edges;
mod events;
mod evolution;
mod failures;
mod fanout;
mod integrity;
mod limits;
mod per_run;
mod placement;
mod reducers;
mod send;
mod sequential;
mod stream;
mod subgraph;
mod subgraph_state;
mod task_writes;
