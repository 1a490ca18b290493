//! What a finished run returns.

use std::time::Duration;

use dashflow_checkpoint::CheckpointId;
use dashflow_graph::NodeName;
use dashflow_telemetry::RunId;

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunStatus {
    /// Every branch reached `END`.
    Completed,
    /// The run paused before, after or inside `node` and waits for `resume`; `value` is what
    /// the node passed to `NodeContext::interrupt` (none for `interrupt_before`/`after`).
    Interrupted {
        /// The node.
        node: NodeName,
        /// The interrupt's value.
        value: Option<serde_json::Value>,
    },
}

/// One task execution, in the order tasks finished their supersteps.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeRun {
    /// The node.
    pub node: NodeName,
    /// The superstep.
    pub step: u64,
    /// Attempts made (above 1 after retries).
    pub attempts: u32,
    /// Wall time, all attempts and backoff included; measured when the run is observed
    /// (an event callback or an `Events` stream), `None` otherwise.
    pub duration: Option<Duration>,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExecutionResult<S> {
    /// The final state.
    pub state: S,
    /// How the run ended.
    pub status: RunStatus,
    /// The run's id.
    pub run_id: RunId,
    /// Supersteps executed.
    pub steps: u64,
    /// Task executions in order (frontier order within a superstep).
    pub nodes: Vec<NodeRun>,
    /// The thread's checkpoint this run ended at, when it was checkpointed.
    pub checkpoint_id: Option<CheckpointId>,
    /// Wall time of the run.
    pub duration: Duration,
}

impl<S> ExecutionResult<S> {
    /// The names of executed nodes, in order.
    pub fn nodes_executed(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|run| &*run.node)
    }
}
