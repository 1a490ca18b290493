#![doc = include_str!("../README.md")]
//!
//! ## Crates
//!
//! The facade re-exports the golden path; each layer is also usable alone:
//! [`graph`] (state, nodes, edges, validation), [`executor`] (the run loop),
//! [`scheduler`] (where tasks run) and [`telemetry`] (events).
//!
//! ## Feature flags
//!
//! - `sqlite` (default): `SqliteCheckpointer`, the embedded checkpointer.
//! - `postgres`: `PostgresCheckpointer`, for servers and many processes on one database;
//!   switching is one line: `.with_checkpointer(PostgresCheckpointer::connect(url).await?)`.
//! - `all-backends`: every checkpoint backend (for CI).
//! - `prometheus`: `serve_prometheus`, run and node metrics on a scrape endpoint.
//!
//! [`MemoryCheckpointer`] is always available.

pub use dashflow_checkpoint as checkpoint;
pub use dashflow_checkpoint::{CheckpointError, CheckpointId, Checkpointer, Codec};
pub use dashflow_checkpoint_memory::MemoryCheckpointer;
#[cfg(feature = "postgres")]
pub use dashflow_checkpoint_postgres::PostgresCheckpointer;
#[cfg(feature = "sqlite")]
pub use dashflow_checkpoint_sqlite::{SqliteCheckpointer, SqliteOptions};
pub use dashflow_executor as executor;
pub use dashflow_graph as graph;
pub use dashflow_scheduler as scheduler;
pub use dashflow_telemetry as telemetry;
pub use dashflow_wal as wal;

mod defaults;
#[cfg(feature = "prometheus")]
mod metrics;

#[cfg(feature = "prometheus")]
pub use metrics::{PrometheusError, serve_prometheus};

pub use dashflow_executor::{
    CompiledGraph, CustomValue, Durability, Error, ExecutionResult, NodeRun, Observer, RunConfig, RunStatus, RunStream,
    SnapshotTask, StateSnapshot, StreamEvent, StreamMode, StreamModes, Subgraph,
};
pub use dashflow_graph::{
    Command, END, GraphError, GraphSchema, GraphState, MergeableState, Message, MessageLike, NodeContext, NodeError,
    NodeErrorKind, NodeOptions, RetryPolicy, Role, START, Send, StateGraph, reducers,
};
pub use dashflow_telemetry::{Event, EventCallback, EventKind, Report, RunId, RunIds, RunOutcome};
pub use defaults::{CompileExt, flush_observers, live_runs, with_default_observers};

/// Everything a typical graph needs: `use dashflow::prelude::*;`.
///
/// `Send` (map-reduce tasks) is left out on purpose: a glob import of a type called `Send`
/// would shadow the standard marker trait. Write `dashflow::Send`.
pub mod prelude {
    pub use std::sync::Arc;

    pub use crate::CompileExt;
    pub use dashflow_checkpoint_memory::MemoryCheckpointer;
    #[cfg(feature = "sqlite")]
    pub use dashflow_checkpoint_sqlite::SqliteCheckpointer;
    pub use dashflow_executor::{
        CompiledGraph, Durability, ExecutionResult, RunConfig, RunStatus, StateSnapshot, StreamEvent, StreamMode,
        Subgraph,
    };
    pub use dashflow_graph::{
        Command, END, GraphState, MergeableState, Message, NodeContext, NodeError, NodeOptions, RetryPolicy, Role,
        START, StateGraph,
    };
    pub use dashflow_telemetry::{Event, EventKind};
    pub use futures::StreamExt;
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::json;

    /// The result of a node function: `async fn node(s: Arc<S>) -> Result<SUpdate>`.
    pub type Result<T, E = NodeError> = std::result::Result<T, E>;
}

#[cfg(doctest)]
#[doc = include_str!("../../../docs/guide.md")]
mod guide {}
