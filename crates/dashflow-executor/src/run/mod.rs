//! A run: the loop that drives it from step to step (`loop.rs`, LangGraph's `_loop.py`),
//! the routing algorithm that picks each next frontier (`algo.rs`, `_algo.py`), and the
//! step runner that runs a frontier's tasks (`runner.rs`, `_runner.py`). Every entry point
//! (`invoke`, `invoke_sequential`, `stream`, subgraph nodes) drives a run through here.
//!
//! Events enter through one place, the run's hub: the loop reports the run, its steps and
//! the routing decisions (which routing returns rather than records), and the task runner
//! (`task.rs`) each attempt's start and end; routing and the step runner report nothing.

use std::sync::Arc;
use std::time::Duration;

use dashflow_checkpoint::CheckpointId;
use dashflow_graph::__private::{CancelSignal, NodeId};
use dashflow_graph::{Graph, GraphState, MergeableState};
use dashflow_telemetry::RunIds;

use crate::compiled::Inner;
use crate::durable::{Durable, Restored};
use crate::hub::EventHub;
use crate::payload::{Position, StoredTask};
use crate::stream::StreamSender;
use crate::subgraph::ResumedStep;
use crate::{Error, NodeRuns, RunConfig, RunStatus};

mod algo;
mod r#loop;
mod runner;

use self::algo::Routing;
pub(crate) use self::r#loop::execute;

/// Folds a later update into an earlier one (`MergeableState::merge`).
pub(crate) type ComposeFn<S> = fn(&mut <S as GraphState>::Update, <S as GraphState>::Update);

/// The updates of one superstep, in frontier order, tagged with the node that wrote each.
type StepUpdates<S> = Vec<(NodeId, <S as GraphState>::Update)>;

/// Combines the updates of one superstep in frontier order, draining them.
pub(crate) type MergeFn<S> =
    fn(&mut StepUpdates<S>, &Graph<S>, u64) -> Result<Option<<S as GraphState>::Update>, Error>;

/// Merges the updates of parallel tasks; two writers of one overwrite field are an error.
pub(crate) fn merge_parallel<S: MergeableState>(
    updates: &mut StepUpdates<S>,
    graph: &Graph<S>,
    step: u64,
) -> Result<Option<S::Update>, Error> {
    if updates.len() <= 1 {
        return Ok(updates.pop().map(|(_, update)| update));
    }
    check_overwrite_conflicts::<S>(updates, graph, step)?;
    let mut updates = updates.drain(..);
    let Some((_, mut merged)) = updates.next() else { return Ok(None) };
    for (_, update) in updates {
        S::merge(&mut merged, update);
    }
    Ok(Some(merged))
}

fn check_overwrite_conflicts<S: MergeableState>(
    updates: &StepUpdates<S>,
    graph: &Graph<S>,
    step: u64,
) -> Result<(), Error> {
    let mut writers: Vec<(&'static str, NodeId)> = Vec::new();
    let mut conflict = None;
    for (node, update) in updates {
        S::for_each_overwrite(update, |field| {
            if conflict.is_some() {
                return;
            }
            match writers.iter().find(|(written, _)| *written == field) {
                Some(&(_, first)) => conflict = Some((field, first, *node)),
                None => writers.push((field, *node)),
            }
        });
    }
    match conflict {
        Some((field, first, second)) => Err(Error::StateConflict {
            field,
            first: graph.node(first).name.clone(),
            second: graph.node(second).name.clone(),
            step,
        }),
        None => Ok(()),
    }
}

/// Takes the only update of a step; `invoke_sequential` refuses parallel steps before they run.
pub(crate) fn merge_single<S: GraphState>(
    updates: &mut StepUpdates<S>,
    _graph: &Graph<S>,
    _step: u64,
) -> Result<Option<S::Update>, Error> {
    Ok(updates.pop().map(|(_, update)| update))
}

/// Everything one run needs besides its input.
pub(crate) struct RunParams<S: GraphState> {
    pub(crate) inner: Arc<Inner<S>>,
    pub(crate) config: RunConfig,
    pub(crate) ids: RunIds,
    pub(crate) hub: Arc<EventHub>,
    pub(crate) stream: Option<StreamSender<S>>,
    pub(crate) merge: MergeFn<S>,
    pub(crate) parallel_allowed: bool,
    /// Whether to fold every step's update into one (for a subgraph node's result).
    pub(crate) compose: Option<ComposeFn<S>>,
    /// Checkpointing of this run, when the graph has a checkpointer and the run a thread.
    pub(crate) durable: Option<Durable>,
    /// Tells the run's nodes to stop; set when the run is dropped or fails.
    pub(crate) cancel: CancelSignal,
}

/// Where a run begins.
pub(crate) enum Start<S: GraphState> {
    /// From `START`, with this state.
    Fresh(Arc<S>),
    /// From `START`, with the thread's state after `update` (already applied to `state`); the
    /// input checkpoint stores just the update.
    Updated { state: Arc<S>, update: S::Update },
    /// From a stored checkpoint. Boxed: resumes are rare, and a large `Start` makes every
    /// run's future larger and costlier to move.
    Restored(Box<Resumed<S>>),
}

/// A run continuing from a stored checkpoint: its state, its position, the step's pending
/// writes, and the parent checkpoint its subgraph runs started under
/// (`subgraph::resumed_step`).
pub(crate) struct Resumed<S: GraphState> {
    pub(crate) state: Arc<S>,
    pub(crate) position: Position<S>,
    pub(crate) restored: Restored<S>,
    pub(crate) step_start: Option<ResumedStep>,
}

/// What a finished run hands back to its entry point.
pub(crate) struct RunOutput<S: GraphState> {
    pub(crate) state: Arc<S>,
    pub(crate) status: RunStatus,
    pub(crate) composed: Option<S::Update>,
    pub(crate) steps: u64,
    pub(crate) nodes: NodeRuns,
    pub(crate) checkpoint_id: Option<CheckpointId>,
    pub(crate) duration: Duration,
}

/// Where a run goes after `node` wrote to `state`, as if it had just finished: the next
/// frontier and join progress of a position. For `update_state(as_node)`.
pub(crate) fn position_after<S: GraphState>(
    graph: &Graph<S>,
    state: &S,
    node: NodeId,
    position: Position<S>,
) -> Result<Position<S>, Error> {
    let mut routing = Routing::with_joins(graph, position.join_seen);
    routing.route(graph, state, Some(node), Vec::new(), None)?;
    let frontier = routing
        .next
        .into_iter()
        .map(|task| StoredTask { node: graph.node(task.node).name.clone(), input: task.input })
        .collect();
    Ok(Position { step: position.step, frontier, join_seen: routing.join_seen, composed: position.composed })
}

pub(super) fn node_index(node: NodeId) -> u32 {
    u32::try_from(node.index()).unwrap_or(u32::MAX)
}
