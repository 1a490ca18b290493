//! What can go wrong in a worker or a client.

use dashflow_checkpoint::CheckpointError;
use dashflow_queue::QueueError;

/// A worker or client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The run queue failed.
    #[error("run queue operation failed")]
    Queue(#[from] QueueError),
    /// A run's input could not be sealed or opened (another state schema, a damaged blob).
    #[error("cannot seal or open the input of a run")]
    Input(#[source] CheckpointError),
    /// Reading the run's result failed.
    #[error("cannot read the result of run {run_id}")]
    Result {
        /// The run.
        run_id: String,
        /// The executor's error.
        #[source]
        source: dashflow_executor::Error,
    },
    /// `wait` gave up.
    #[error("run {run_id} did not finish within {after:?} (it is {state})")]
    Timeout {
        /// The run.
        run_id: String,
        /// How long was waited.
        after: std::time::Duration,
        /// Where it was when waiting stopped.
        state: dashflow_queue::RunState,
    },
    /// Two graphs registered under one name.
    #[error("graph `{name}` is registered twice in this worker; give each graph its own name")]
    DuplicateGraph {
        /// The name.
        name: String,
    },
    /// The run queue keeps no event streams, so runs cannot be followed.
    #[error("this run queue keeps no run event streams; follow runs on a queue that does (PostgreSQL)")]
    NoStreams,
    /// The worker's heartbeat thread (or its runtime) could not be started.
    #[error("cannot start the worker's heartbeat thread")]
    HeartbeatThread(#[source] std::io::Error),
    /// A run outlasted its timeout by the worker's `stuck_grace`: one of its nodes holds a
    /// thread and never reaches an await where the timeout could stop it. The worker gave the
    /// run up (see `WorkerBuilder::stuck_grace`) and stopped, since that thread is not coming
    /// back.
    #[error(
        "run {run_id} was still running {after:?} past its timeout: a node holds its thread without awaiting; \
         this worker gave the run up and stopped. Move blocking or CPU-bound work off the runtime \
         (spawn_blocking, or the graph's scheduler), and start the worker again"
    )]
    StuckRun {
        /// The run given up (the first, if several were).
        run_id: String,
        /// The grace past the timeout it was given.
        after: std::time::Duration,
    },
    /// A worker needs at least one graph.
    #[error("a worker needs at least one graph: call WorkerBuilder::graph")]
    NoGraphs,
}

/// `Result` with [`WorkerError`] as the default error.
pub type Result<T, E = WorkerError> = std::result::Result<T, E>;
