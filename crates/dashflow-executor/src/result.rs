//! What a finished run returns.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use dashflow_checkpoint::CheckpointId;
use dashflow_graph::NodeName;
use dashflow_telemetry::RunId;
use dashflow_telemetry::clock::{Tick, ticks_duration};

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

/// One task execution, in the order tasks finished their supersteps (read from
/// [`NodeRuns`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeRun<'a> {
    /// The node.
    pub node: &'a str,
    /// The superstep.
    pub step: u64,
    /// Attempts made (above 1 after retries).
    pub attempts: u32,
    /// Wall time, all attempts and backoff included, from the task's start, which for the
    /// one task of a step that followed the previous one without waiting is the previous
    /// task's end (so it includes the run's routing in between); measured when the run is
    /// observed (an event callback or an `Events` stream), `None` otherwise.
    pub duration: Option<Duration>,
}

/// The task executions of a run, in order (frontier order within a superstep).
///
/// Kept compact while the run goes (each node by its place in the graph, not a copy of its
/// shared name: a copy is an atomic increment, a large share of a short step); each
/// [`NodeRun`] is made when read, borrowing its node's name from here.
#[derive(Clone, Default)]
pub struct NodeRuns {
    names: Arc<[NodeName]>,
    runs: Vec<CompactRun>,
}

#[derive(Clone, Copy, Debug)]
struct CompactRun {
    node: u32,
    attempts: u32,
    step: u64,
    /// The clock's ticks from start to end ([`CompactRun::UNTIMED`]: not measured), turned
    /// into a duration only when read.
    ticks: u64,
}

impl CompactRun {
    const UNTIMED: u64 = u64::MAX;
}

impl NodeRuns {
    /// No executions yet, of a graph whose nodes, by index, are `names`.
    pub(crate) fn new(names: Arc<[NodeName]>) -> Self {
        Self { names, runs: Vec::new() }
    }

    /// Adds an execution of the node at `node` in the graph, which ran from `span.0` to
    /// `span.1` if it was timed.
    pub(crate) fn push(&mut self, node: u32, step: u64, attempts: u32, span: Option<(Tick, Tick)>) {
        let ticks =
            span.map_or(CompactRun::UNTIMED, |(start, end)| start.ticks_until(end).min(CompactRun::UNTIMED - 1));
        self.runs.push(CompactRun { node, attempts, step, ticks });
    }

    /// How many task executions.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether no task ran.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The `index`th execution.
    pub fn get(&self, index: usize) -> Option<NodeRun<'_>> {
        self.runs.get(index).map(|run| self.run(run))
    }

    /// Every execution, in order.
    pub fn iter(&self) -> NodeRunsIter<'_> {
        NodeRunsIter { runs: self, next: self.runs.iter() }
    }

    /// The executed nodes' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.runs.iter().map(|run| self.name(run.node))
    }

    fn name(&self, node: u32) -> &str {
        &self.names[node as usize]
    }

    fn run(&self, run: &CompactRun) -> NodeRun<'_> {
        // Every index pushed is a node of the graph whose names these are.
        let node = self.name(run.node);
        let duration = (run.ticks != CompactRun::UNTIMED).then(|| ticks_duration(run.ticks));
        NodeRun { node, step: run.step, attempts: run.attempts, duration }
    }
}

impl fmt::Debug for NodeRuns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for NodeRuns {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<'a> IntoIterator for &'a NodeRuns {
    type Item = NodeRun<'a>;
    type IntoIter = NodeRunsIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The executions of a [`NodeRuns`], in order.
#[derive(Clone, Debug)]
pub struct NodeRunsIter<'a> {
    runs: &'a NodeRuns,
    next: std::slice::Iter<'a, CompactRun>,
}

impl<'a> Iterator for NodeRunsIter<'a> {
    type Item = NodeRun<'a>;

    fn next(&mut self) -> Option<NodeRun<'a>> {
        self.next.next().map(|run| self.runs.run(run))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.next.size_hint()
    }
}

impl ExactSizeIterator for NodeRunsIter<'_> {}

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
    pub nodes: NodeRuns,
    /// The thread's checkpoint this run ended at, when it was checkpointed.
    pub checkpoint_id: Option<CheckpointId>,
    /// Wall time of the run.
    pub duration: Duration,
}

impl<S> ExecutionResult<S> {
    /// The names of executed nodes, in order.
    pub fn nodes_executed(&self) -> impl Iterator<Item = &str> {
        self.nodes.names()
    }
}
