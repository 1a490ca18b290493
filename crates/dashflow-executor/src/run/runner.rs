//! The step runner: runs a frontier's tasks (async ones polled on the run's own task,
//! CPU-bound and blocking ones always on their own threads, all cancelled with the step) and
//! files their outcomes in frontier order.

use std::collections::HashMap;
use std::sync::Arc;

use dashflow_graph::__private::{GraphNode, NodeId};
use dashflow_graph::{Goto, GraphState, NodeOutput, Placement, Send as SendTask};
use dashflow_scheduler::{BlockingScheduler, Scheduler, WorkStealingPool};
use dashflow_telemetry::clock::Tick;
use futures::future::{AbortHandle, Abortable};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::oneshot;

use super::algo::PendingTask;
use super::{StepUpdates, node_index};
use crate::compiled::Inner;
use crate::durable::TaskWriter;
use crate::hub::ExecScope;
use crate::payload::{INTERRUPT, OUTPUT, StoredGoto, StoredWrite};
use crate::task::{TaskOutcome, TaskSlot, Timing, run_task};
use crate::{Error, NodeRuns};

/// A task that finished: its update and where it wants to go.
pub(super) struct Done<S: GraphState> {
    pub(super) index: u32,
    pub(super) node: NodeId,
    pub(super) update: Option<S::Update>,
    pub(super) gotos: Vec<Goto<S>>,
}

/// What the current step's tasks produced; buffers reused from step to step.
pub(super) struct StepResults<S: GraphState> {
    pub(super) updates: StepUpdates<S>,
    pub(super) done: Vec<Done<S>>,
    pub(super) first_error: Option<Error>,
    /// Tasks that paused with `interrupt`: frontier index, node, value.
    pub(super) interrupts: Vec<(u32, NodeId, serde_json::Value)>,
    /// Every task execution of the run, in order.
    pub(super) nodes: NodeRuns,
    /// A lone task's end the loop records itself, with its step's routing: the node and its
    /// attempt's start and end readings (see `Timing::Timed`).
    pub(super) held_end: Option<(NodeId, (Tick, Tick))>,
}

pub(super) fn stored_goto<S>(goto: &Goto<S>) -> StoredGoto<S> {
    match goto {
        Goto::Node(node) => StoredGoto::Node(node.clone()),
        Goto::Send(send) => StoredGoto::Send(send.node.clone(), Arc::clone(&send.input)),
    }
}

fn restored_goto<S>(goto: StoredGoto<S>) -> Goto<S> {
    match goto {
        StoredGoto::Node(node) => Goto::Node(node),
        StoredGoto::Send(node, input) => Goto::Send(SendTask { node, input }),
    }
}

/// Runs the frontier's tasks and records their outcomes in frontier order.
///
/// Async tasks run on this task: a lone one is awaited directly (unless the graph's
/// scheduler keeps work off its caller), several are polled together (unless the graph was
/// given a scheduler of its own), so a fan-out costs no spawn, no channel and no cross-thread
/// wake per task. CPU-bound and blocking tasks, and async ones the graph's scheduler takes,
/// are spawned; a mixed step runs both at once.
/// Tasks whose output a resumed step already stored are not run again; with a `writer`,
/// every other task stores its result (or interrupt) as soon as it finishes, while its
/// siblings still run.
#[allow(clippy::too_many_arguments, reason = "the loop's disjoint parts, borrowed separately")]
pub(super) async fn execute_tasks<S: GraphState>(
    inner: &Arc<Inner<S>>,
    scope: &Arc<ExecScope>,
    state: &Arc<S>,
    step: u64,
    frontier: &[PendingTask<S>],
    timing: Timing,
    mut restored: HashMap<String, StoredWrite<S, S::Update>>,
    writer: Option<Arc<TaskWriter>>,
    results: &mut StepResults<S>,
) {
    let graph = &inner.graph;
    if restored.is_empty()
        && let [task] = frontier
        && graph.node(task.node).options.placement == Placement::Async
        && inner.scheduler.runs_single_tasks_inline()
    {
        let node = graph.node(task.node);
        let input = task.input.clone().unwrap_or_else(|| Arc::clone(state));
        let slot = TaskSlot { step, index: 0 };
        let outcome = run_task(scope, inner, (task.node, node), slot, input, timing).await;
        results.record(0, task.node, node, step, Some(outcome));
        return;
    }
    let mut slots: Vec<Slot<S>> = Vec::with_capacity(frontier.len());
    let mut polled = FuturesUnordered::new();
    // Dropping this future (the run was dropped) cancels the tasks it spawned; the polled
    // ones are dropped with it.
    let mut spawned = CancelOnDrop(Vec::new());
    for (index, task) in frontier.iter().enumerate() {
        let node_id = task.node;
        let node = graph.node(node_id);
        let slot = TaskSlot { step, index: u32::try_from(index).unwrap_or(u32::MAX) };
        let key = (writer.is_some() || !restored.is_empty()).then(|| slot.id(node).to_string());
        if let Some(StoredWrite::Output { update, gotos }) = key.as_ref().and_then(|key| restored.remove(key)) {
            slots.push(Slot::Restored(update, gotos));
            continue;
        }
        let input = task.input.clone().unwrap_or_else(|| Arc::clone(state));
        let placement = node.options.placement;
        if placement == Placement::Async && inner.polls_fan_outs {
            let writer = writer.as_deref();
            polled.push(async move {
                let outcome = run_task(scope, inner, (node_id, node), slot, input, timing.of_one_of_several()).await;
                let stored = match (writer, key) {
                    (Some(writer), Some(key)) => store_result(writer, &key, &node.name, &outcome).await.err(),
                    _ => None,
                };
                (index, outcome, stored)
            });
            slots.push(Slot::Finished(None));
            continue;
        }
        let (tx, rx) = oneshot::channel();
        let scope = Arc::clone(scope);
        let owned_inner = Arc::clone(inner);
        let writer = writer.clone();
        let (handle, registration) = AbortHandle::new_pair();
        spawned.0.push(handle);
        let task = Abortable::new(
            async move {
                let node = owned_inner.graph.node(node_id);
                let outcome =
                    run_task(&scope, &owned_inner, (node_id, node), slot, input, timing.of_one_of_several()).await;
                let stored = match (&writer, key) {
                    (Some(writer), Some(key)) => store_result(writer, &key, &node.name, &outcome).await.err(),
                    _ => None,
                };
                let _ = tx.send((outcome, stored));
            },
            registration,
        );
        scheduler_for(inner, placement).spawn(Box::pin(task.map(drop)));
        slots.push(Slot::Spawned(rx));
    }
    while let Some((index, outcome, stored)) = polled.next().await {
        slots[index] = Slot::Finished(Some((outcome, stored)));
    }
    for ((index, task), slot) in frontier.iter().enumerate().zip(slots) {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let finished = match slot {
            Slot::Spawned(rx) => rx.await.ok(),
            Slot::Finished(finished) => finished,
            Slot::Restored(update, gotos) => {
                let gotos = gotos.into_iter().map(restored_goto).collect();
                results.done.push(Done { index, node: task.node, update, gotos });
                continue;
            }
        };
        let (outcome, store_error) = finished.unzip();
        results.record(index, task.node, graph.node(task.node), step, outcome);
        // A result that could not be stored fails the step: a crash now would re-run it.
        if let Some(error) = store_error.flatten() {
            results.first_error.get_or_insert(error);
        }
    }
    // Every spawned task has finished: nothing to cancel.
    spawned.0.clear();
}

/// Where one task of a step stands until the step files it.
enum Slot<S: GraphState> {
    /// Spawned; its outcome and any error storing it arrive here (or the channel closes, if
    /// its scheduler dropped it).
    Spawned(oneshot::Receiver<(TaskOutcome<S>, Option<Error>)>),
    /// Polled on the step's task: its outcome once finished.
    Finished(Option<(TaskOutcome<S>, Option<Error>)>),
    /// Its output, stored before a resume: not run again.
    Restored(Option<S::Update>, Vec<StoredGoto<S>>),
}

/// Where a task of a node placed at `placement` runs: the scheduler the graph chose for that
/// placement, else the process's CPU pool or a thread that may block.
fn scheduler_for<S: GraphState>(inner: &Inner<S>, placement: Placement) -> &dyn Scheduler {
    match placement {
        Placement::CpuBound => inner.cpu_scheduler.as_deref().unwrap_or_else(|| WorkStealingPool::global()),
        Placement::Blocking => inner.blocking_scheduler.as_deref().unwrap_or(&BlockingScheduler),
        _ => &*inner.scheduler,
    }
}

/// The tasks a step spawned, cancelled when the step's future is dropped before they end.
struct CancelOnDrop(Vec<AbortHandle>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

/// Stores what a finished task produced: its update and routing, or its interrupt. A failed
/// task stores nothing: it runs again on resume.
async fn store_result<S: GraphState>(
    writer: &TaskWriter,
    task_id: &str,
    node: &str,
    outcome: &TaskOutcome<S>,
) -> Result<(), Error> {
    let (update, gotos) = match &outcome.result {
        Ok(NodeOutput::Update(update)) => (Some(update), Vec::new()),
        Ok(NodeOutput::Command(command)) => (command.update.as_ref(), command.goto.iter().map(stored_goto).collect()),
        Err(error) => {
            let Some(interrupt) = error.interrupt() else { return Ok(()) };
            let write: StoredWrite<S, &S::Update> = StoredWrite::Interrupt { value: interrupt.value.clone() };
            return writer.store(task_id, node, INTERRUPT, &write).await;
        }
    };
    let write: StoredWrite<S, &S::Update> = StoredWrite::Output { update, gotos };
    writer.store(task_id, node, OUTPUT, &write).await
}

impl<S: GraphState> StepResults<S> {
    /// Files one task's outcome: its update and routing, an interrupt, or the step's first
    /// error. `None` is a task the scheduler dropped.
    fn record(&mut self, index: u32, id: NodeId, node: &GraphNode<S>, step: u64, outcome: Option<TaskOutcome<S>>) {
        let Some(outcome) = outcome else {
            self.first_error.get_or_insert(Error::TaskLost { node: node.name.clone(), step });
            return;
        };
        if let Some(span) = outcome.held_end {
            self.held_end = Some((id, span));
        }
        self.nodes.push(node_index(id), step, outcome.attempts, outcome.span);
        match outcome.result {
            Ok(NodeOutput::Update(update)) => {
                self.done.push(Done { index, node: id, update: Some(update), gotos: Vec::new() });
            }
            Ok(NodeOutput::Command(command)) => {
                self.done.push(Done { index, node: id, update: command.update, gotos: command.goto });
            }
            Err(error) => {
                if let Some(interrupt) = error.interrupt() {
                    self.interrupts.push((index, id, interrupt.value.clone()));
                    return;
                }
                self.first_error.get_or_insert_with(|| Error::NodeFailed {
                    node: node.name.clone(),
                    step,
                    attempts: outcome.attempts,
                    kind: error.kind(),
                    source: error.into_shared(),
                });
            }
        }
    }
}
