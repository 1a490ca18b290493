//! Why a run failed.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use dashflow_graph::{GraphError, NodeErrorKind, NodeName};

/// A failed compile or run.
///
/// Cheap to clone (sources are shared), so a stream can report the error and still return it
/// from `RunStream::result`.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The graph is invalid.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A node failed on its last allowed attempt (error, timeout or panic).
    #[error("node `{node}` failed at step {step} after {attempts} attempt(s) ({kind:?})")]
    NodeFailed {
        /// The node.
        node: NodeName,
        /// The superstep.
        step: u64,
        /// Attempts made.
        attempts: u32,
        /// Error, timeout or panic.
        kind: NodeErrorKind,
        /// What the node reported.
        #[source]
        source: Arc<dyn StdError + Send + Sync + 'static>,
    },
    /// Two tasks of one superstep wrote the same overwrite field.
    #[error(
        "nodes `{first}` and `{second}` both wrote field `{field}` in step {step}: give the field a reducer \
         (e.g. #[reduce(append)]) or let only one branch write it"
    )]
    StateConflict {
        /// The field.
        field: &'static str,
        /// The earlier writer in frontier order.
        first: NodeName,
        /// The later writer.
        second: NodeName,
        /// The superstep.
        step: u64,
    },
    /// A router returned a label its mapping does not have.
    #[error("the router of `{node}` returned label `{label}`, which its mapping lacks (known labels: {known})")]
    UnknownLabel {
        /// The node whose conditional edge ran.
        node: NodeName,
        /// The unknown label.
        label: String,
        /// The mapped labels, comma-separated.
        known: String,
    },
    /// A `Command` or `Send` named a node that does not exist.
    #[error("node `{node}` routed to `{target}`, which is not a node of the graph")]
    UnknownTarget {
        /// The routing node.
        node: NodeName,
        /// The missing target.
        target: String,
    },
    /// The run needed more supersteps than its recursion limit.
    #[error(
        "the run reached its recursion limit of {limit} supersteps without finishing: \
         check for a loop without exit, or raise RunConfig::recursion_limit"
    )]
    RecursionLimit {
        /// The limit in force.
        limit: u32,
    },
    /// The run exceeded `RunConfig::timeout`.
    #[error("the run exceeded its timeout of {timeout:?} during step {step}")]
    RunTimeout {
        /// The limit.
        timeout: Duration,
        /// The superstep in progress.
        step: u64,
    },
    /// A superstep ran several tasks in a run that cannot merge updates.
    #[error(
        "step {step} runs {count} tasks in parallel, starting with `{first}`, but invoke_sequential cannot merge \
         updates: use invoke (the state must implement MergeableState)"
    )]
    ParallelStepInSequentialRun {
        /// The superstep.
        step: u64,
        /// Tasks in the step.
        count: usize,
        /// The first task's node.
        first: NodeName,
    },
    /// Storing or loading a checkpoint failed. The checkpoint error says where (thread,
    /// checkpoint, database) and why.
    #[error(transparent)]
    Checkpoint(dashflow_checkpoint::CheckpointError),
    /// Another run advanced the thread first: one writer per thread.
    #[error("thread `{thread_id}` is busy: another run wrote it first; retry when that run has finished")]
    ThreadBusy {
        /// The thread.
        thread_id: String,
    },
    /// The background checkpoint writer stopped without reporting why.
    #[error("the background checkpoint writer stopped; the last checkpoints may not be stored")]
    CheckpointWriterStopped,
    /// The operation needs a checkpointer and the graph has none.
    #[error("{operation} needs a checkpointer: attach one with CompiledGraph::with_checkpointer")]
    NoCheckpointer {
        /// The operation.
        operation: &'static str,
    },
    /// The operation needs a thread and the run configuration has none.
    #[error("{operation} needs a thread: use RunConfig::thread(id)")]
    NoThread {
        /// The operation.
        operation: &'static str,
    },
    /// A graph with a checkpointer was run without a thread: nothing would be checkpointed,
    /// so nothing could be resumed or inspected.
    #[error(
        "graph `{graph}` has a checkpointer, so every run needs a thread to checkpoint under: pass \
         RunConfig::thread(id) (a new id starts a new thread)"
    )]
    ThreadRequired {
        /// The graph.
        graph: String,
    },
    /// A node called `NodeContext::interrupt` in a run that is not checkpointed, so the pause
    /// could never be resumed.
    #[error(
        "node `{node}` called ctx.interrupt in step {step}, but the run is not checkpointed, so no resume could \
         continue it: attach a checkpointer with CompiledGraph::with_checkpointer and run with RunConfig::thread(id)"
    )]
    InterruptNotCheckpointed {
        /// The interrupting node.
        node: NodeName,
        /// The superstep.
        step: u64,
    },
    /// `interrupt_before` or `interrupt_after` named a node the graph does not have.
    #[error("{setting} names node `{node}`, which graph `{graph}` does not have: use one of its nodes ({known})")]
    UnknownInterruptNode {
        /// `interrupt_before` or `interrupt_after`.
        setting: &'static str,
        /// The name given.
        node: String,
        /// The graph.
        graph: String,
        /// The graph's nodes, comma-separated.
        known: String,
    },
    /// `Command::resume(value)` was sent to a thread with no pending `NodeContext::interrupt`:
    /// no node would read the value.
    #[error(
        "thread `{thread_id}` has no pending interrupt to answer with a resume value ({state}): continue it with \
         Command::new() (Command::update changes its state first), or start a new run with invoke"
    )]
    NothingToResume {
        /// The thread.
        thread_id: String,
        /// Where the thread stands, in words.
        state: String,
    },
    /// The thread (or the checkpoint asked for) has no checkpoint.
    #[error(
        "thread `{thread_id}` has no checkpoint{}: check the thread id (and checkpoint id), or start the thread \
         with invoke",
        checkpoint_id.as_ref().map(|id| format!(" {id}")).unwrap_or_default()
    )]
    ThreadNotFound {
        /// The thread.
        thread_id: String,
        /// The checkpoint asked for, if any.
        checkpoint_id: Option<String>,
    },
    /// A subgraph namespace (or the checkpoint asked for in it) has no checkpoint in the thread.
    #[error(
        "thread `{thread_id}` has no checkpoint{} in subgraph namespace `{namespace}`: take namespaces from the \
         pending tasks of get_state (SnapshotTask::subgraph)",
        checkpoint_id.as_ref().map(|id| format!(" {id}")).unwrap_or_default()
    )]
    SubgraphNotFound {
        /// The thread.
        thread_id: String,
        /// The namespace asked for.
        namespace: String,
        /// The checkpoint asked for, if any.
        checkpoint_id: Option<String>,
    },
    /// `update_subgraph_state` on a subgraph run that has finished: no run would read the edit.
    #[error(
        "the subgraph run in namespace `{namespace}` of thread `{thread_id}` has finished, so no run would read \
         an edit of its state: update the parent's state with update_state instead"
    )]
    SubgraphFinished {
        /// The thread.
        thread_id: String,
        /// The namespace.
        namespace: String,
    },
    /// The scheduler dropped a task without running it to completion.
    #[error("the scheduler dropped the task of node `{node}` in step {step} before it finished")]
    TaskLost {
        /// The node.
        node: NodeName,
        /// The superstep.
        step: u64,
    },
}

impl Error {
    /// The node at fault, for errors that have one.
    pub fn node(&self) -> Option<&str> {
        match self {
            Self::NodeFailed { node, .. }
            | Self::UnknownLabel { node, .. }
            | Self::UnknownTarget { node, .. }
            | Self::TaskLost { node, .. }
            | Self::InterruptNotCheckpointed { node, .. } => Some(node),
            Self::StateConflict { second, .. } => Some(second),
            _ => None,
        }
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
