#![doc = include_str!("../README.md")]
//!
//! ## Crates
//!
//! The facade re-exports what a program needs: the builder, the compiled graph and its
//! configuration at the top level, and three small modules for going further:
//! [`checkpoint`] (the contract a store implements, and its records), [`telemetry`] (events
//! and their sinks) and [`wal`] (the run log and its store). Each layer is also a crate of its
//! own (`dashflow-graph`, `dashflow-executor`, `dashflow-scheduler`, ...) for code that needs
//! more.
//!
//! ## Feature flags
//!
//! - `sqlite` (default): `SqliteCheckpointer`, the embedded checkpointer.
//! - `postgres`: `PostgresCheckpointer`, for servers and many processes on one database;
//!   switching is one line: `.with_checkpointer(PostgresCheckpointer::connect(url).await?)`.
//! - `all-backends`: every checkpoint backend (for CI).
//! - `prometheus`: `serve_prometheus`, run and node metrics on a scrape endpoint.
//! - `ui`: `ui::serve`, the web viewer of runs and threads, served for your own graphs.
//! - `otel`: `otel::OtelSink`, runs, supersteps and tasks as OpenTelemetry spans over OTLP.
//! - `nats`: `nats::NatsSink`, run events on a NATS JetStream stream, and `nats::NatsConsumer`
//!   to follow them from any host.
//!
//! [`MemoryCheckpointer`] is always available.

pub use dashflow_checkpoint::{CheckpointError, CheckpointId, Checkpointer, Codec};
pub use dashflow_checkpoint_memory::MemoryCheckpointer;
#[cfg(feature = "postgres")]
pub use dashflow_checkpoint_postgres::PostgresCheckpointer;
#[cfg(feature = "sqlite")]
pub use dashflow_checkpoint_sqlite::{SqliteCheckpointer, SqliteOptions};
pub use dashflow_scheduler::{BlockingScheduler, Scheduler, TokioScheduler, WorkStealingPool};

/// The checkpoint contract: implement [`Checkpointer`] for a store of
/// your own, or read what a store holds.
pub mod checkpoint {
    pub use dashflow_checkpoint::{
        BadThreadCursor, BlobLocation, CheckpointError, CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer,
        Codec, ListOptions, LoadedCheckpoint, Metadata, PendingWrite, Result, ThreadCursor, ThreadListOptions,
        ThreadSummary,
    };
}

/// Where tasks run: the schedulers, and the work-stealing pool's builder, counters and
/// errors, for a pool of your own.
///
/// ```
/// use dashflow::scheduler::{BuildError, PoolBuilder, WorkStealingPool};
///
/// let err = WorkStealingPool::builder().stack_size(PoolBuilder::MIN_STACK_SIZE - 1).build().unwrap_err();
/// assert!(matches!(err, BuildError::StackTooSmall { .. }));
/// ```
pub mod scheduler {
    pub use dashflow_scheduler::{
        BlockingScheduler, BuildError, PoolBuilder, PoolCounters, PoolStats, Scheduler, Task, TokioScheduler,
        WorkStealingPool,
    };
}

/// Events, and the sinks that receive them: implement
/// [`EventCallback`] for one of your own.
pub mod telemetry {
    pub use dashflow_telemetry::{
        BatchItem, DeltaKind, Event, EventBatch, EventCallback, EventKind, Interest, InterruptReason, LiveRun,
        LiveRuns, MetricsCallback, Report, RunId, RunIds, RunOutcome, StateDelta, StateJson,
    };
}

/// The run log that `compile()`'s default observers write, and what reads it back: the
/// process's store ([`EventStore::global`](wal::EventStore::global)), a store of your own,
/// and [`Wal`](wal::Wal) for listing runs, their events and traces.
pub mod wal {
    pub use dashflow_wal::{
        DamagedRange, EventStore, ExecutionTrace, FailureReport, Follower, FsyncPolicy, OsStorage, Retention,
        RunFilter, RunStatus, RunSummary, Storage, StoreConfig, StoreStats, TraceConfig, TraceStatus, Wal, WalConfig,
        WalError, home_dir,
    };
}

#[doc(hidden)]
pub mod __private {
    //! What `#[derive(GraphState)]` names when a crate depends on the facade alone.
    pub use dashflow_graph as graph;
}

mod defaults;
#[cfg(feature = "prometheus")]
mod metrics;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "otel")]
pub mod otel;
#[cfg(feature = "ui")]
pub mod ui;

/// Scale-out (feature `distributed`): worker processes on any host claim runs from a
/// PostgreSQL run queue, run them with the ordinary loop, and checkpoint through a
/// checkpointer fenced by their lease; [`Client`](distributed::Client) submits and waits.
/// The guide's section 19 walks through it.
#[cfg(feature = "distributed")]
pub mod distributed {
    pub use dashflow_queue::{
        GraphKey, Multitask, Priority, QueueError, RunFilter, RunKind, RunQueue, RunRecord, RunState, Timings,
        WorkerRecord, WorkerState,
    };
    pub use dashflow_queue_postgres::PostgresRunQueue;
    pub use dashflow_worker::{
        Client, Finished, RegisteredGraph, RunEvent, RunEvents, RunRequest, Streamed, Worker, WorkerBuilder,
        WorkerCounters, WorkerError, shutdown_signal,
    };
}

#[cfg(feature = "prometheus")]
pub use metrics::{PrometheusError, serve_prometheus};

pub use dashflow_executor::{
    CompiledGraph, CustomValue, Durability, Error, ExecutionResult, NodeRun, NodeRuns, NodeRunsIter, Observer,
    RunConfig, RunStatus, RunStream, SnapshotTask, StateSnapshot, StreamEvent, StreamMode, StreamModes, Subgraph,
};
pub use dashflow_graph::{
    Command, END, GraphError, GraphSchema, GraphState, MergeableState, Message, MessageLike, NodeContext, NodeError,
    NodeErrorKind, NodeOptions, Placement, RetryPolicy, Role, START, Send, StateGraph, reducers,
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
