//! The superstep loop: every entry point (`invoke`, `invoke_sequential`, `stream`, subgraph
//! nodes) drives a run through here.

use std::sync::Arc;
use std::time::Duration;

use dashflow_telemetry::clock::Tick;

use dashflow_graph::{
    Goto, Graph, GraphNode, GraphState, MergeableState, NodeId, NodeName, NodeOutput, Route, Send as SendTask, Target,
    TaskId,
};
use dashflow_telemetry::{Event, EventKind, InterruptReason, Report, RunIds, RunOutcome};
use futures::FutureExt;
use futures::future::{AbortHandle, Abortable};
use std::collections::HashMap;
use tokio::sync::oneshot;
use tracing::{Instrument, Level};

use dashflow_checkpoint::{CheckpointError, CheckpointId, PendingWrite};

use crate::compiled::Inner;
use crate::durable::{Durable, Restored, Source, TaskWriter};
use crate::hub::{EventHub, ExecScope};
use crate::payload::{INTERRUPT, OUTPUT, Position, StoredGoto, StoredTask, StoredWrite};
use crate::stream::{StreamEvent, StreamSender};
use crate::subgraph::{ResumedStep, STEP_START, StepStarts};
use crate::task::{TaskOutcome, run_any};
use crate::{Durability, Error, NodeRun, RunConfig, RunStatus, StreamMode};

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
    pub(crate) nodes: Vec<NodeRun>,
    pub(crate) checkpoint_id: Option<CheckpointId>,
    pub(crate) duration: Duration,
}

struct PendingTask<S> {
    node: NodeId,
    /// A `Send`'s own input; `None` reads the shared state.
    input: Option<Arc<S>>,
}

/// A task that finished: its update and where it wants to go.
struct Done<S: GraphState> {
    index: u32,
    node: NodeId,
    update: Option<S::Update>,
    gotos: Vec<Goto<S>>,
}

/// How a superstep ended.
enum Flow {
    Continue,
    /// The run pauses: `writes` (finished siblings, interrupt values) must be stored.
    Interrupted {
        node: NodeName,
        value: Option<serde_json::Value>,
        writes: Vec<PendingWrite>,
    },
}

/// Runs a graph from `start` to the end, an interrupt, or the first error.
pub(crate) async fn execute<S: GraphState>(mut params: RunParams<S>, start: Start<S>) -> Result<RunOutput<S>, Error> {
    let span = tracing::info_span!(
        "dashflow.run",
        graph = %params.inner.graph.name(),
        run_id = %params.ids.run_id,
        depth = params.ids.depth,
    );
    let (state, start_position, restored, input_update, step_start) = match start {
        Start::Fresh(state) => (state, None, Restored::default(), None, None),
        Start::Updated { state, update } => (state, None, Restored::default(), Some(update), None),
        Start::Restored(resumed) => {
            let Resumed { state, position, restored, step_start } = *resumed;
            (state, Some(position), restored, None, step_start)
        }
    };
    let durable = params.durable.take().map(|durable| durable.observed_by(&params.hub, params.ids));
    let step_starts = (params.inner.has_subgraphs && durable.is_some()).then(|| StepStarts::new(step_start));
    let scope = Arc::new(ExecScope {
        hub: Arc::clone(&params.hub),
        run: params.ids,
        thread_id: params.config.thread_id.clone(),
        recursion_limit: params.config.recursion_limit,
        resumes: restored.resumes.clone(),
        nesting: durable.as_ref().map(Durable::nesting),
        step_starts,
    });
    let graph = &params.inner.graph;
    let run = Loop {
        state,
        step: 0,
        steps_this_run: 0,
        frontier: Vec::new(),
        routing: Routing {
            next: Vec::new(),
            scheduled: vec![false; graph.node_count()],
            join_seen: graph.joins().iter().map(|join| vec![false; join.predecessors.len()]).collect(),
            events: Vec::new(),
        },
        results: StepResults {
            updates: Vec::new(),
            done: Vec::new(),
            first_error: None,
            interrupts: Vec::new(),
            nodes: Vec::new(),
        },
        composed: None,
        scope,
        durable,
        restored,
        skip_interrupt_before: start_position.is_some(),
        params,
    };
    let hub = Arc::clone(&run.params.hub);
    let mut run = std::pin::pin!(run.run(start_position, input_update).instrument(span));
    // Whenever the run waits (a node's I/O, a checkpoint write, a slow stream reader), its
    // batching sinks get what it buffered, so they are current while it waits.
    std::future::poll_fn(|cx| {
        hub.run_resumes();
        let poll = run.as_mut().poll(cx);
        if poll.is_pending() {
            hub.run_waits();
        }
        poll
    })
    .await
}

/// One run's mutable progress. Split into parts so that the hot path can borrow the graph
/// (inside `params`) while it updates the others, without cloning the `Arc` that holds it.
struct Loop<S: GraphState> {
    params: RunParams<S>,
    state: Arc<S>,
    /// The last completed superstep (continuing a thread's numbering).
    step: u64,
    /// Supersteps run by this invocation, counted against the recursion limit.
    steps_this_run: u32,
    frontier: Vec<PendingTask<S>>,
    routing: Routing<S>,
    results: StepResults<S>,
    composed: Option<S::Update>,
    scope: Arc<ExecScope>,
    durable: Option<Durable>,
    /// Pending writes of the step being resumed; used by its first superstep only.
    restored: Restored<S>,
    /// A resumed run does not stop again before the nodes it stopped before.
    skip_interrupt_before: bool,
}

/// Where the run goes next: the next frontier under construction, and join progress.
struct Routing<S> {
    next: Vec<PendingTask<S>>,
    /// Which nodes `next` already holds, so a node reached twice runs once.
    scheduled: Vec<bool>,
    /// Per join, which predecessors finished since the join last fired.
    join_seen: Vec<Vec<bool>>,
    /// Routing decisions of this step for the stream, which callbacks have already heard;
    /// filled only when the run is streamed.
    events: Vec<Event>,
}

/// What the current step's tasks produced; buffers reused from step to step.
struct StepResults<S: GraphState> {
    updates: StepUpdates<S>,
    done: Vec<Done<S>>,
    first_error: Option<Error>,
    /// Tasks that paused with `interrupt`: frontier index, node, value.
    interrupts: Vec<(u32, NodeId, serde_json::Value)>,
    /// Every task execution of the run, in order.
    nodes: Vec<NodeRun>,
}

impl<S: GraphState> Loop<S> {
    async fn run(mut self, start: Option<Position<S>>, input_update: Option<S::Update>) -> Result<RunOutput<S>, Error> {
        let started = Tick::now();
        let graph_name = Arc::clone(self.params.inner.graph.name());
        let schema = Arc::clone(&self.params.inner.schema_json);
        self.params.hub.emit(self.params.ids, EventKind::GraphDefined { graph: Arc::clone(&graph_name), schema }).await;
        let kind = EventKind::RunStarted { graph: graph_name, thread_id: self.params.config.thread_id.clone() };
        self.params.hub.emit(self.params.ids, kind).await;
        let mut result = self.steps(start, input_update).await;
        // Even a failed run returns only once its queued checkpoints are committed.
        let flushed = self.finish_durable(matches!(result, Ok(RunStatus::Completed))).await;
        if let (Ok(_), Err(error)) = (&result, flushed) {
            result = Err(error);
        }
        let (outcome, error) = match &result {
            Ok(RunStatus::Completed) => (RunOutcome::Completed, None),
            Ok(_) => (RunOutcome::Interrupted, None),
            Err(error) => (RunOutcome::Failed, Some(Report(error).to_string())),
        };
        let duration = started.until(Tick::now());
        let kind = EventKind::RunFinished { outcome, steps: self.step, duration, error };
        self.params.hub.emit(self.params.ids, kind).await;
        let status = result?;
        Ok(RunOutput {
            state: self.state,
            status,
            composed: self.composed,
            steps: self.step,
            nodes: self.results.nodes,
            checkpoint_id: self.durable.as_ref().and_then(|durable| durable.head().cloned()),
            duration,
        })
    }

    async fn steps(&mut self, start: Option<Position<S>>, input_update: Option<S::Update>) -> Result<RunStatus, Error> {
        match start {
            None => {
                self.send_values().await;
                let observer = self.params.hub.routing().then_some((&*self.params.hub, self.params.ids));
                self.routing.route(&self.params.inner.graph, &self.state, 0, observer, None, Vec::new())?;
                self.emit_routing_events().await;
                self.advance_frontier();
                self.commit(Source::Input, input_update.as_ref()).await?;
            }
            Some(position) => self.restore(position)?,
        }
        let deadline = self.params.config.timeout.map(|timeout| (timeout, tokio::time::Instant::now() + timeout));
        while !self.frontier.is_empty() {
            if let Some(node) = self.interrupt_before() {
                self.checkpoint_exit_pause().await?;
                return Ok(self.paused(node, InterruptReason::Before, None).await);
            }
            if self.steps_this_run >= self.params.config.recursion_limit {
                return Err(Error::RecursionLimit { limit: self.params.config.recursion_limit });
            }
            if let Some(error) = self.durable.as_ref().and_then(Durable::background_error) {
                return Err(error);
            }
            if let (Some(starts), Some(durable)) = (&self.scope.step_starts, &mut self.durable) {
                // A subgraph run checkpoints under this step's start through a writer of its
                // own: under `Async` that start must be committed first, or a crash could keep
                // the subgraph's progress and lose the checkpoint it belongs to.
                let graph = &self.params.inner.graph;
                if durable.durability() == Durability::Async
                    && self.frontier.iter().any(|task| graph.node(task.node).node.is_subgraph())
                {
                    durable.flush().await?;
                }
                starts.begin(durable);
            }
            self.step += 1;
            self.steps_this_run += 1;
            let flow = match deadline {
                None => self.traced_superstep().await?,
                Some((timeout, at)) => match tokio::time::timeout_at(at, self.traced_superstep()).await {
                    Ok(result) => result?,
                    Err(_) => return Err(Error::RunTimeout { timeout, step: self.step }),
                },
            };
            if let Flow::Interrupted { node, value, writes } = flow {
                let mut position = self.position();
                if let Some(durable) = &mut self.durable {
                    if durable.durability() == Durability::Exit {
                        // The step's subgraph runs recorded the name of its start, stored here.
                        let step_start = self.scope.step_starts.as_ref().and_then(StepStarts::current);
                        durable.tag(STEP_START, step_start.as_ref().map(|start| &start.checkpoint));
                        // A paused same-state subgraph hands its steps so far to its parent
                        // only when it finishes: keep them, as `commit` does for other modes.
                        if self.params.compose.is_some() {
                            position.composed = self.composed.as_ref().map(|c| durable.seal::<S, _>(c)).transpose()?;
                        }
                        durable.commit(Source::Exit, &*self.state, None, &position).await?;
                    }
                    durable.put_writes(writes).await?;
                }
                return Ok(self.paused(node, InterruptReason::Node, value).await);
            }
            if let Some(node) = self.interrupt_after() {
                self.checkpoint_exit_pause().await?;
                return Ok(self.paused(node, InterruptReason::After, None).await);
            }
        }
        Ok(RunStatus::Completed)
    }

    /// Under `Exit` durability, the one checkpoint of a run that pauses between steps
    /// (`interrupt_before`/`interrupt_after`): without it, a resume would find nothing.
    async fn checkpoint_exit_pause(&mut self) -> Result<(), Error> {
        let mut position = self.position();
        let Some(durable) = &mut self.durable else { return Ok(()) };
        if durable.durability() != Durability::Exit {
            return Ok(());
        }
        if self.params.compose.is_some() {
            position.composed = self.composed.as_ref().map(|c| durable.seal::<S, _>(c)).transpose()?;
        }
        durable.commit(Source::Exit, &*self.state, None, &position).await?;
        Ok(())
    }

    /// Continues from a stored position: its frontier, join progress and step number.
    fn restore(&mut self, position: Position<S>) -> Result<(), Error> {
        let graph = &self.params.inner.graph;
        let foreign = |detail: String| {
            Error::Checkpoint(CheckpointError::version_mismatch(format!(
                "{detail}; the checkpoint was written by another version of graph `{}`",
                graph.name()
            )))
        };
        if position.join_seen.len() != self.routing.join_seen.len()
            || position.join_seen.iter().zip(&self.routing.join_seen).any(|(stored, ours)| stored.len() != ours.len())
        {
            return Err(foreign("its joins differ from this graph's".into()));
        }
        self.routing.join_seen = position.join_seen;
        if let (Some(composed), Some(_)) = (&position.composed, self.params.compose) {
            self.composed = Some(
                dashflow_checkpoint::open(composed, crate::schema::schema_of::<S>().fingerprint)
                    .map_err(Error::Checkpoint)?,
            );
        }
        self.step = position.step;
        for task in position.frontier {
            let node = graph.node_id(&task.node).ok_or_else(|| foreign(format!("it names node `{}`", task.node)))?;
            self.frontier.push(PendingTask { node, input: task.input });
        }
        Ok(())
    }

    /// The run's position for a checkpoint: next frontier, joins, step.
    fn position(&self) -> Position<S> {
        let graph = &self.params.inner.graph;
        Position {
            step: self.step,
            frontier: self
                .frontier
                .iter()
                .map(|task| StoredTask { node: graph.node(task.node).name.clone(), input: task.input.clone() })
                .collect(),
            join_seen: self.routing.join_seen.clone(),
            composed: None,
        }
    }

    /// Writes a checkpoint of the current state and position, unless durability is `Exit`.
    async fn commit(&mut self, source: Source, update: Option<&S::Update>) -> Result<(), Error> {
        let mut position = match &self.durable {
            Some(durable) if durable.durability() != Durability::Exit => self.position(),
            _ => return Ok(()),
        };
        if let Some(durable) = &mut self.durable {
            if self.params.compose.is_some() {
                position.composed =
                    self.composed.as_ref().map(|composed| durable.seal::<S, _>(composed)).transpose()?;
            }
            durable.commit(source, &*self.state, update, &position).await?;
        }
        Ok(())
    }

    /// At the end of a run: the final checkpoint for `Exit` durability, then waits until
    /// every checkpoint is committed.
    async fn finish_durable(&mut self, completed: bool) -> Result<(), Error> {
        let position = self.position();
        let Some(durable) = &mut self.durable else { return Ok(()) };
        if completed && durable.durability() == Durability::Exit {
            durable.commit(Source::Exit, &*self.state, None, &position).await?;
        }
        durable.flush().await
    }

    /// The node of the frontier the graph pauses before, if any.
    fn interrupt_before(&mut self) -> Option<NodeName> {
        if std::mem::take(&mut self.skip_interrupt_before) {
            return None;
        }
        let inner = &self.params.inner;
        let task = self
            .frontier
            .iter()
            .find(|task| inner.interrupt_before.get(task.node.index()).copied().unwrap_or(false))?;
        Some(inner.graph.node(task.node).name.clone())
    }

    /// Reports the pause (everything it needs to resume is stored by now) and returns it.
    async fn paused(&self, node: NodeName, reason: InterruptReason, value: Option<serde_json::Value>) -> RunStatus {
        if self.params.hub.interest().runs {
            let kind = EventKind::Interrupted {
                step: self.step,
                node: Arc::clone(&node),
                reason,
                value: value.clone().map(Arc::new),
            };
            self.params.hub.emit(self.params.ids, kind).await;
        }
        RunStatus::Interrupted { node, value }
    }

    fn interrupt_after(&self) -> Option<NodeName> {
        let inner = &self.params.inner;
        let done = self
            .results
            .done
            .iter()
            .find(|done| inner.interrupt_after.get(done.node.index()).copied().unwrap_or(false))?;
        Some(inner.graph.node(done.node).name.clone())
    }

    /// A superstep inside a `dashflow.superstep` span, when anyone records debug spans; the
    /// check keeps untraced runs from paying for the span and the move into `Instrumented`.
    async fn traced_superstep(&mut self) -> Result<Flow, Error> {
        if tracing::enabled!(Level::DEBUG) {
            let span = tracing::debug_span!("dashflow.superstep", step = self.step, tasks = self.frontier.len());
            self.superstep().instrument(span).await
        } else {
            self.superstep().await
        }
    }

    async fn superstep(&mut self) -> Result<Flow, Error> {
        let interest = self.params.hub.interest();
        let step_started = (interest.steps_started || interest.steps_finished).then(Tick::now);
        let frontier = std::mem::take(&mut self.frontier);
        let graph = &self.params.inner.graph;
        if frontier.len() > 1 && !self.params.parallel_allowed {
            return Err(Error::ParallelStepInSequentialRun {
                step: self.step,
                count: frontier.len(),
                first: graph.node(frontier[0].node).name.clone(),
            });
        }
        if let Some(at) = step_started
            && interest.steps_started
        {
            let many: Arc<[Arc<str>]>;
            let (nodes, lone) = match &*frontier {
                [task] => match self.params.inner.names.lone(node_index(task.node)) {
                    Some(lone) => (lone, Some(task.node)),
                    None => {
                        many = Arc::from([graph.node(task.node).name.clone()]);
                        (&many, None)
                    }
                },
                tasks => {
                    many = tasks.iter().map(|task| graph.node(task.node).name.clone()).collect();
                    (&many, None)
                }
            };
            if let Some(event) = self.params.hub.step_started(self.params.ids, self.step, (nodes, lone), at) {
                self.params.hub.stream(event).await;
            }
        }
        self.results.done.clear();
        let timed = interest.tasks() || self.params.stream.is_some();
        let restored = std::mem::take(&mut self.restored.outputs);
        // In a durable step of several tasks, each task stores its result as it finishes; a
        // lone task's result is stored by the step's checkpoint.
        let writer = match &mut self.durable {
            Some(durable) if frontier.len() > 1 => durable.task_writer::<S>(),
            _ => None,
        };
        let stored_by_tasks = writer.is_some();
        execute_tasks(
            &self.params.inner,
            &self.scope,
            &self.state,
            self.step,
            &frontier,
            (timed, step_started),
            restored,
            writer,
            &mut self.results,
        )
        .await;
        // Siblings have all finished by now; the first failure in frontier order fails the step.
        if let Some(error) = self.results.first_error.take() {
            let writes = if stored_by_tasks { Vec::new() } else { self.pending_writes(&frontier)? };
            self.results.interrupts.clear();
            if let Some(durable) = &mut self.durable
                && durable.durability() != Durability::Exit
            {
                durable.put_writes(writes).await?;
            }
            return Err(error);
        }
        if !self.results.interrupts.is_empty() {
            if self.durable.is_none() {
                // Nothing would store the pause: a silent stop could never be resumed.
                let (_, node, _) = self.results.interrupts.swap_remove(0);
                self.results.interrupts.clear();
                let node = self.params.inner.graph.node(node).name.clone();
                return Err(Error::InterruptNotCheckpointed { node, step: self.step });
            }
            let writes = if stored_by_tasks { Vec::new() } else { self.pending_writes(&frontier)? };
            let (_, node, value) = self.results.interrupts.swap_remove(0);
            self.results.interrupts.clear();
            let node = self.params.inner.graph.node(node).name.clone();
            // The step did not happen: the run stands where it stood before it.
            self.frontier = frontier;
            self.step -= 1;
            return Ok(Flow::Interrupted { node, value: Some(value), writes });
        }
        self.results.updates.extend(
            self.results.done.iter_mut().filter_map(|done| done.update.take().map(|update| (done.node, update))),
        );
        if self.params.stream.is_some() {
            self.send_updates().await;
        }
        let graph = &self.params.inner.graph;
        let merged = (self.params.merge)(&mut self.results.updates, graph, self.step)?;
        // A delta checkpoint stores the merged update; keep it past `apply` only when needed.
        let keep = self.durable.as_ref().is_some_and(|durable| durable.durability() != Durability::Exit);
        let delta = if keep { merged.clone() } else { None };
        if let Some(merged) = merged {
            if let Some(compose) = self.params.compose {
                match &mut self.composed {
                    Some(composed) => compose(composed, merged.clone()),
                    None => self.composed = Some(merged.clone()),
                }
            }
            Arc::make_mut(&mut self.state).apply(merged);
        }
        if let Some(started) = step_started
            && interest.steps_finished
        {
            let ended = Tick::now();
            let kind = EventKind::SuperstepFinished { step: self.step, duration: started.until(ended) };
            if let Some(event) = self.params.hub.notify(self.params.ids, kind, ended) {
                self.params.hub.stream(event).await;
            }
        }
        if self.params.stream.is_some() {
            self.send_values().await;
        }
        let graph = &self.params.inner.graph;
        let observer = self.params.hub.routing().then_some((&*self.params.hub, self.params.ids));
        for done in &mut self.results.done {
            let gotos = std::mem::take(&mut done.gotos);
            self.routing.route(graph, &self.state, self.step, observer, Some(done.node), gotos)?;
        }
        if !self.routing.events.is_empty() {
            self.emit_routing_events().await;
        }
        self.advance_frontier();
        // Reuse the old frontier's allocation for the next step's routing.
        let mut recycled = frontier;
        recycled.clear();
        self.routing.next = recycled;
        self.commit_step(delta).await?;
        Ok(Flow::Continue)
    }

    /// The pending writes of a step that did not complete and whose tasks did not store them
    /// (a lone task's, or any under `Exit` durability): the results of its finished tasks and
    /// the values of its interrupts, so a resume re-runs only what must run again.
    fn pending_writes(&self, frontier: &[PendingTask<S>]) -> Result<Vec<PendingWrite>, Error> {
        let Some(durable) = &self.durable else { return Ok(Vec::new()) };
        let graph = &self.params.inner.graph;
        let task_id = |index: u32, node: NodeId| task_id(graph.node(node), self.step, index as usize).to_string();
        let mut writes = Vec::new();
        for done in &self.results.done {
            let output: StoredWrite<S, S::Update> = StoredWrite::Output {
                update: done.update.clone(),
                gotos: done.gotos.iter().map(stored_goto).collect(),
            };
            let node = &graph.node(done.node).name;
            writes.push(durable.pending_write::<S>(&task_id(done.index, done.node), node, OUTPUT, &output)?);
        }
        for (index, node, value) in &self.results.interrupts {
            let interrupt: StoredWrite<S, S::Update> = StoredWrite::Interrupt { value: value.clone() };
            let name = &graph.node(*node).name;
            writes.push(durable.pending_write::<S>(&task_id(*index, *node), name, INTERRUPT, &interrupt)?);
        }
        debug_assert!(frontier.len() >= writes.len());
        Ok(writes)
    }

    /// The one place a superstep's result becomes final: the state includes the step's
    /// merged update and `frontier` holds the next step. Durable runs persist both here.
    async fn commit_step(&mut self, delta: Option<S::Update>) -> Result<(), Error> {
        if self.durable.is_some() {
            self.commit(Source::Loop, delta.as_ref()).await?;
        }
        Ok(())
    }

    /// Sends the routing decisions `route` kept for the stream (the buffer is kept for the
    /// next step).
    async fn emit_routing_events(&mut self) {
        for event in self.routing.events.drain(..) {
            self.params.hub.stream(event).await;
        }
    }

    /// Makes the routed tasks the frontier and clears the dedup marks.
    fn advance_frontier(&mut self) {
        for task in &self.routing.next {
            self.routing.scheduled[task.node.index()] = false;
        }
        std::mem::swap(&mut self.frontier, &mut self.routing.next);
        self.routing.next.clear();
    }

    async fn send_values(&self) {
        if let Some(stream) = &self.params.stream
            && self.params.config.stream_modes.contains(StreamMode::Values)
        {
            stream.send(StreamEvent::Values { step: self.step, state: Arc::clone(&self.state) }).await;
        }
    }

    async fn send_updates(&self) {
        if let Some(stream) = &self.params.stream
            && self.params.config.stream_modes.contains(StreamMode::Updates)
        {
            let graph = &self.params.inner.graph;
            for (node, update) in &self.results.updates {
                let node = graph.node(*node).name.clone();
                stream.send(StreamEvent::Updates { step: self.step, node, update: update.clone() }).await;
            }
        }
    }
}

fn stored_goto<S>(goto: &Goto<S>) -> StoredGoto<S> {
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

/// Runs the frontier's tasks (a lone task inline on this task, several through the
/// scheduler) and records their outcomes in frontier order. Tasks whose output a resumed
/// step already stored are not run again; with a `writer`, every other task stores its
/// result (or interrupt) as soon as it finishes, while its siblings still run.
#[allow(clippy::too_many_arguments, reason = "the loop's disjoint parts, borrowed separately")]
async fn execute_tasks<S: GraphState>(
    inner: &Arc<Inner<S>>,
    scope: &Arc<ExecScope>,
    state: &Arc<S>,
    step: u64,
    frontier: &[PendingTask<S>],
    (timed, step_started): (bool, Option<Tick>),
    mut restored: HashMap<String, StoredWrite<S, S::Update>>,
    writer: Option<Arc<TaskWriter>>,
    results: &mut StepResults<S>,
) {
    let graph = &inner.graph;
    if restored.is_empty()
        && let [task] = frontier
        && inner.scheduler.runs_single_tasks_inline()
    {
        let node = graph.node(task.node);
        let input = task.input.clone().unwrap_or_else(|| Arc::clone(state));
        let task_id = task_id(node, step, 0);
        let outcome = run_any(scope, inner, (task.node, node), task_id, input, timed, step_started).await;
        results.record(0, task.node, node, step, Some(outcome));
        return;
    }
    let mut receivers = Vec::with_capacity(frontier.len());
    // Dropping this future (the run was dropped) cancels the tasks it spawned.
    let mut spawned = CancelOnDrop(Vec::with_capacity(frontier.len()));
    for (index, task) in frontier.iter().enumerate() {
        let node_id = task.node;
        let task_id = task_id(graph.node(node_id), step, index);
        if let Some(StoredWrite::Output { update, gotos }) = restored.remove(&task_id.to_string()) {
            receivers.push(Err((update, gotos)));
            continue;
        }
        let (tx, rx) = oneshot::channel();
        let input = task.input.clone().unwrap_or_else(|| Arc::clone(state));
        let scope = Arc::clone(scope);
        let owned_inner = Arc::clone(inner);
        let writer = writer.clone();
        let (handle, registration) = AbortHandle::new_pair();
        spawned.0.push(handle);
        let task = Abortable::new(
            async move {
                let node = owned_inner.graph.node(node_id);
                let key = writer.as_ref().map(|_| task_id.to_string());
                let outcome = run_any(&scope, &owned_inner, (node_id, node), task_id, input, timed, None).await;
                let stored = match (&writer, key) {
                    (Some(writer), Some(key)) => store_result(writer, &key, &node.name, &outcome).await.err(),
                    _ => None,
                };
                let _ = tx.send((outcome, stored));
            },
            registration,
        );
        inner.scheduler.spawn(Box::pin(task.map(drop)));
        receivers.push(Ok(rx));
    }
    for ((index, task), receiver) in frontier.iter().enumerate().zip(receivers) {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        match receiver {
            Ok(rx) => {
                let (outcome, store_error) = rx.await.ok().unzip();
                results.record(index, task.node, graph.node(task.node), step, outcome);
                // A result that could not be stored fails the step: a crash now would re-run it.
                if let Some(error) = store_error.flatten() {
                    results.first_error.get_or_insert(error);
                }
            }
            Err((update, gotos)) => results.done.push(Done {
                index,
                node: task.node,
                update,
                gotos: gotos.into_iter().map(restored_goto).collect(),
            }),
        }
    }
    // Every spawned task has finished: nothing to cancel.
    spawned.0.clear();
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

fn task_id<S: GraphState>(node: &GraphNode<S>, step: u64, index: usize) -> TaskId {
    TaskId { step, node: node.name.clone(), index: u32::try_from(index).unwrap_or(u32::MAX) }
}

impl<S: GraphState> StepResults<S> {
    /// Files one task's outcome: its update and routing, an interrupt, or the step's first
    /// error. `None` is a task the scheduler dropped.
    fn record(&mut self, index: u32, id: NodeId, node: &GraphNode<S>, step: u64, outcome: Option<TaskOutcome<S>>) {
        let Some(outcome) = outcome else {
            self.first_error.get_or_insert(Error::TaskLost { node: node.name.clone(), step });
            return;
        };
        self.nodes.push(NodeRun {
            node: node.name.clone(),
            step,
            attempts: outcome.attempts,
            duration: outcome.duration,
        });
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

impl<S: GraphState> Routing<S> {
    /// Adds to `next` where the run goes after `from` (or after `START`). Synchronous, so the
    /// common case pays for no future.
    fn route(
        &mut self,
        graph: &Graph<S>,
        state: &S,
        step: u64,
        observer: Option<(&EventHub, RunIds)>,
        from: Option<NodeId>,
        gotos: Vec<Goto<S>>,
    ) -> Result<(), Error> {
        let start_name: NodeName;
        let (from_name, routes) = match from {
            Some(id) => (&graph.node(id).name, graph.node(id).routes.as_slice()),
            None => {
                start_name = dashflow_graph::START.into();
                (&start_name, graph.start_routes())
            }
        };
        for (edge, route) in routes.iter().enumerate() {
            match route {
                Route::Direct(target) => self.schedule(*target),
                Route::Conditional(conditional) => {
                    let labels = conditional.route(state);
                    for label in labels.iter() {
                        let Some((position, label, target)) = conditional.resolve_at(label) else {
                            return Err(Error::UnknownLabel {
                                node: from_name.clone(),
                                label: label.to_owned(),
                                known: conditional.labels().collect::<Vec<_>>().join(", "),
                            });
                        };
                        if let Some((hub, run_ids)) = observer {
                            // Heard as it is made, in decision order: as a compact entry when
                            // only batching sinks want it, else built (and kept for the stream
                            // if it wants it too).
                            let recorded = match (from, target) {
                                (Some(from), Target::Node(to)) => hub.record_route(step, from, (edge, position), to),
                                _ => false,
                            };
                            if !recorded {
                                let to = match target {
                                    Target::Node(id) => Some(id),
                                    Target::End => None,
                                };
                                let name = |node: Option<NodeId>, otherwise: &str| match node {
                                    Some(id) => graph.node(id).name.clone(),
                                    None => Arc::from(otherwise),
                                };
                                let decision = (from, label.clone(), to);
                                let built = hub.routed(run_ids, step, decision, Tick::now(), |from, to| {
                                    (name(from, dashflow_graph::START), name(to, dashflow_graph::END))
                                });
                                self.events.extend(built);
                            }
                        }
                        self.schedule(target);
                    }
                }
                Route::Send(router) => {
                    for send in router(state) {
                        self.schedule_send(graph, from_name, send)?;
                    }
                }
            }
        }
        for goto in gotos {
            match goto {
                Goto::Node(name) => match graph.target(&name) {
                    Some(target) => self.schedule(target),
                    None => return Err(Error::UnknownTarget { node: from_name.clone(), target: name.to_string() }),
                },
                Goto::Send(send) => self.schedule_send(graph, from_name, send)?,
            }
        }
        if let Some(id) = from {
            for &(join, position) in &graph.node(id).joins {
                let seen = &mut self.join_seen[join];
                seen[position] = true;
                if seen.iter().all(|done| *done) {
                    seen.fill(false);
                    self.schedule(Target::Node(graph.joins()[join].target));
                }
            }
        }
        Ok(())
    }

    fn schedule(&mut self, target: Target) {
        if let Target::Node(id) = target
            && !self.scheduled[id.index()]
        {
            self.scheduled[id.index()] = true;
            self.next.push(PendingTask { node: id, input: None });
        }
    }

    fn schedule_send(&mut self, graph: &Graph<S>, from: &NodeName, send: SendTask<S>) -> Result<(), Error> {
        match graph.node_id(&send.node) {
            Some(id) => {
                self.next.push(PendingTask { node: id, input: Some(send.input) });
                Ok(())
            }
            None => Err(Error::UnknownTarget { node: from.clone(), target: send.node.to_string() }),
        }
    }
}

/// Where a run goes after `node` wrote to `state`, as if it had just finished: the next
/// frontier and join progress of a position. For `update_state(as_node)`.
pub(crate) fn position_after<S: GraphState>(
    graph: &Graph<S>,
    state: &S,
    node: NodeId,
    position: Position<S>,
) -> Result<Position<S>, Error> {
    let mut routing = Routing {
        next: Vec::new(),
        scheduled: vec![false; graph.node_count()],
        join_seen: position.join_seen,
        events: Vec::new(),
    };
    routing.route(graph, state, position.step, None, Some(node), Vec::new())?;
    let frontier = routing
        .next
        .into_iter()
        .map(|task| StoredTask { node: graph.node(task.node).name.clone(), input: task.input })
        .collect();
    Ok(Position { step: position.step, frontier, join_seen: routing.join_seen, composed: position.composed })
}

fn node_index(node: NodeId) -> u32 {
    u32::try_from(node.index()).unwrap_or(u32::MAX)
}
