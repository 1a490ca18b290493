//! The superstep loop: every entry point (`invoke`, `invoke_sequential`, `stream`, subgraph
//! nodes) drives a run through here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashflow_graph::{
    Goto, Graph, GraphNode, GraphState, MergeableState, NodeId, NodeName, NodeOutput, Route, Send as SendTask, Target,
    TaskId,
};
use dashflow_telemetry::{EventKind, RunIds, RunOutcome};
use tokio::sync::oneshot;
use tracing::{Instrument, Level};

use crate::compiled::Inner;
use crate::hub::{EventHub, ExecScope};
use crate::stream::{StreamEvent, StreamSender};
use crate::task::{TaskOutcome, is_bare, run_bare, run_task};
use crate::{Error, NodeRun, RunConfig, StreamMode};

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

fn check_overwrite_conflicts<S: MergeableState>(updates: &StepUpdates<S>, graph: &Graph<S>, step: u64) -> Result<(), Error> {
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
}

/// What a finished run hands back to its entry point.
pub(crate) struct RunOutput<S: GraphState> {
    pub(crate) state: Arc<S>,
    pub(crate) composed: Option<S::Update>,
    pub(crate) steps: u64,
    pub(crate) nodes: Vec<NodeRun>,
    pub(crate) duration: Duration,
}

struct PendingTask<S> {
    node: NodeId,
    /// A `Send`'s own input; `None` reads the shared state.
    input: Option<Arc<S>>,
}

struct Finished<S: GraphState> {
    node: NodeId,
    gotos: Vec<Goto<S>>,
}

/// Runs a graph from `input` to the end, or to the first error.
pub(crate) async fn execute<S: GraphState>(params: RunParams<S>, input: Arc<S>) -> Result<RunOutput<S>, Error> {
    let span = tracing::info_span!(
        "dashflow.run",
        graph = %params.inner.graph.name(),
        run_id = %params.ids.run_id,
        depth = params.ids.depth,
    );
    let scope = Arc::new(ExecScope {
        hub: Arc::clone(&params.hub),
        run: params.ids,
        thread_id: params.config.thread_id.clone(),
        recursion_limit: params.config.recursion_limit,
    });
    let graph = &params.inner.graph;
    let run = Loop {
        state: input,
        step: 0,
        frontier: Vec::new(),
        routing: Routing {
            next: Vec::new(),
            scheduled: vec![false; graph.node_count()],
            join_seen: graph.joins().iter().map(|join| vec![false; join.predecessors.len()]).collect(),
            events: Vec::new(),
        },
        results: StepResults { updates: Vec::new(), finished: Vec::new(), first_error: None, nodes: Vec::new() },
        composed: None,
        scope,
        params,
    };
    run.run().instrument(span).await
}

/// One run's mutable progress. Split into parts so that the hot path can borrow the graph
/// (inside `params`) while it updates the others, without cloning the `Arc` that holds it.
struct Loop<S: GraphState> {
    params: RunParams<S>,
    state: Arc<S>,
    step: u64,
    frontier: Vec<PendingTask<S>>,
    routing: Routing<S>,
    results: StepResults<S>,
    composed: Option<S::Update>,
    scope: Arc<ExecScope>,
}

/// Where the run goes next: the next frontier under construction, and join progress.
struct Routing<S> {
    next: Vec<PendingTask<S>>,
    /// Which nodes `next` already holds, so a node reached twice runs once.
    scheduled: Vec<bool>,
    /// Per join, which predecessors finished since the join last fired.
    join_seen: Vec<Vec<bool>>,
    /// `Routed` events of this step, for observers; filled only when the run is observed.
    events: Vec<EventKind>,
}

/// What the current step's tasks produced; buffers reused from step to step.
struct StepResults<S: GraphState> {
    updates: StepUpdates<S>,
    finished: Vec<Finished<S>>,
    first_error: Option<Error>,
    /// Every task execution of the run, in order.
    nodes: Vec<NodeRun>,
}

impl<S: GraphState> Loop<S> {
    async fn run(mut self) -> Result<RunOutput<S>, Error> {
        let started = Instant::now();
        let graph_name = Arc::clone(self.params.inner.graph.name());
        let kind = EventKind::RunStarted { graph: graph_name, thread_id: self.params.config.thread_id.clone() };
        self.params.hub.emit(self.params.ids, kind).await;
        let result = self.steps().await;
        let (outcome, error) = match &result {
            Ok(()) => (RunOutcome::Completed, None),
            Err(error) => (RunOutcome::Failed, Some(error.to_string())),
        };
        let duration = started.elapsed();
        let kind = EventKind::RunFinished { outcome, steps: self.step, duration, error };
        self.params.hub.emit(self.params.ids, kind).await;
        result?;
        Ok(RunOutput { state: self.state, composed: self.composed, steps: self.step, nodes: self.results.nodes, duration })
    }

    async fn steps(&mut self) -> Result<(), Error> {
        self.send_values().await;
        let observed = self.params.hub.enabled();
        self.routing.route(&self.params.inner.graph, &self.state, 0, observed, None, Vec::new())?;
        self.emit_routing_events().await;
        self.advance_frontier();
        let deadline = self.params.config.timeout.map(|timeout| (timeout, tokio::time::Instant::now() + timeout));
        while !self.frontier.is_empty() {
            if self.step >= u64::from(self.params.config.recursion_limit) {
                return Err(Error::RecursionLimit { limit: self.params.config.recursion_limit });
            }
            self.step += 1;
            match deadline {
                None => self.traced_superstep().await?,
                Some((timeout, at)) => match tokio::time::timeout_at(at, self.traced_superstep()).await {
                    Ok(result) => result?,
                    Err(_) => return Err(Error::RunTimeout { timeout, step: self.step }),
                },
            }
        }
        Ok(())
    }

    /// A superstep inside a `dashflow.superstep` span, when anyone records debug spans; the
    /// check keeps untraced runs from paying for the span and the move into `Instrumented`.
    async fn traced_superstep(&mut self) -> Result<(), Error> {
        if tracing::enabled!(Level::DEBUG) {
            let span = tracing::debug_span!("dashflow.superstep", step = self.step, tasks = self.frontier.len());
            self.superstep().instrument(span).await
        } else {
            self.superstep().await
        }
    }

    async fn superstep(&mut self) -> Result<(), Error> {
        let observed = self.params.hub.enabled();
        let step_started = observed.then(Instant::now);
        let frontier = std::mem::take(&mut self.frontier);
        let graph = &self.params.inner.graph;
        if frontier.len() > 1 && !self.params.parallel_allowed {
            return Err(Error::ParallelStepInSequentialRun {
                step: self.step,
                count: frontier.len(),
                first: graph.node(frontier[0].node).name.clone(),
            });
        }
        if observed {
            let nodes = frontier.iter().map(|task| graph.node(task.node).name.clone()).collect();
            self.params.hub.emit(self.params.ids, EventKind::SuperstepStarted { step: self.step, nodes }).await;
        }
        execute_tasks(&self.params.inner, &self.scope, &self.state, self.step, &frontier, &mut self.results).await;
        // Siblings have all finished by now; the first failure in frontier order fails the step.
        if let Some(error) = self.results.first_error.take() {
            self.results.updates.clear();
            self.results.finished.clear();
            return Err(error);
        }
        if self.params.stream.is_some() {
            self.send_updates().await;
        }
        let graph = &self.params.inner.graph;
        if let Some(merged) = (self.params.merge)(&mut self.results.updates, graph, self.step)? {
            if let Some(compose) = self.params.compose {
                match &mut self.composed {
                    Some(composed) => compose(composed, merged.clone()),
                    None => self.composed = Some(merged.clone()),
                }
            }
            Arc::make_mut(&mut self.state).apply(merged);
        }
        if observed || self.params.stream.is_some() {
            self.commit_step(step_started).await;
        }
        let graph = &self.params.inner.graph;
        for Finished { node, gotos } in self.results.finished.drain(..) {
            self.routing.route(graph, &self.state, self.step, observed, Some(node), gotos)?;
        }
        if !self.routing.events.is_empty() {
            self.emit_routing_events().await;
        }
        self.advance_frontier();
        // Reuse the old frontier's allocation for the next step's routing.
        let mut recycled = frontier;
        recycled.clear();
        self.routing.next = recycled;
        Ok(())
    }

    /// The one place a superstep's result becomes final: the state now includes the step's
    /// merged update. Durable runs persist it here.
    async fn commit_step(&mut self, step_started: Option<Instant>) {
        if let Some(started) = step_started {
            let kind = EventKind::SuperstepFinished { step: self.step, duration: started.elapsed() };
            self.params.hub.emit(self.params.ids, kind).await;
        }
        self.send_values().await;
    }

    /// Sends the routing decisions `route` recorded.
    async fn emit_routing_events(&mut self) {
        for kind in std::mem::take(&mut self.routing.events) {
            self.params.hub.emit(self.params.ids, kind).await;
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
            && self.params.config.stream_modes.contains(StreamMode::Values) {
                stream.send(StreamEvent::Values { step: self.step, state: Arc::clone(&self.state) }).await;
            }
    }

    async fn send_updates(&self) {
        if let Some(stream) = &self.params.stream
            && self.params.config.stream_modes.contains(StreamMode::Updates) {
                let graph = &self.params.inner.graph;
                for (node, update) in &self.results.updates {
                    let node = graph.node(*node).name.clone();
                    stream.send(StreamEvent::Updates { step: self.step, node, update: update.clone() }).await;
                }
            }
    }
}

/// Runs the frontier's tasks (a lone task inline on this task, several through the
/// scheduler) and records their outcomes in frontier order.
async fn execute_tasks<S: GraphState>(
    inner: &Arc<Inner<S>>,
    scope: &Arc<ExecScope>,
    state: &Arc<S>,
    step: u64,
    frontier: &[PendingTask<S>],
    results: &mut StepResults<S>,
) {
    let graph = &inner.graph;
    if let [task] = frontier
        && inner.scheduler.runs_single_tasks_inline() {
            let node = graph.node(task.node);
            let input = task.input.clone().unwrap_or_else(|| Arc::clone(state));
            let task_id = task_id(node, step, 0);
            let outcome = if is_bare(scope, inner, node) {
                run_bare(scope, node, task_id, input).await
            } else {
                run_task(scope, inner, node, task_id, input).await
            };
            results.record(task.node, node, step, Some(outcome));
            return;
        }
    let mut receivers = Vec::with_capacity(frontier.len());
    for (index, task) in frontier.iter().enumerate() {
        let (tx, rx) = oneshot::channel();
        let node_id = task.node;
        let task_id = task_id(graph.node(node_id), step, index);
        let input = task.input.clone().unwrap_or_else(|| Arc::clone(state));
        let scope = Arc::clone(scope);
        let owned_inner = Arc::clone(inner);
        inner.scheduler.spawn(Box::pin(async move {
            let node = owned_inner.graph.node(node_id);
            let _ = tx.send(run_task(&scope, &owned_inner, node, task_id, input).await);
        }));
        receivers.push(rx);
    }
    for (task, rx) in frontier.iter().zip(receivers) {
        results.record(task.node, graph.node(task.node), step, rx.await.ok());
    }
}

fn task_id<S: GraphState>(node: &GraphNode<S>, step: u64, index: usize) -> TaskId {
    TaskId { step, node: node.name.clone(), index: u32::try_from(index).unwrap_or(u32::MAX) }
}

impl<S: GraphState> StepResults<S> {
    /// Files one task's outcome: its update and routing, or the step's first error. `None`
    /// is a task the scheduler dropped.
    fn record(&mut self, id: NodeId, node: &GraphNode<S>, step: u64, outcome: Option<TaskOutcome<S>>) {
        let Some(outcome) = outcome else {
            self.first_error.get_or_insert(Error::TaskLost { node: node.name.clone(), step });
            return;
        };
        self.nodes.push(NodeRun { node: node.name.clone(), step, attempts: outcome.attempts, duration: outcome.duration });
        match outcome.result {
            Ok(NodeOutput::Update(update)) => {
                self.updates.push((id, update));
                self.finished.push(Finished { node: id, gotos: Vec::new() });
            }
            Ok(NodeOutput::Command(command)) => {
                if let Some(update) = command.update {
                    self.updates.push((id, update));
                }
                self.finished.push(Finished { node: id, gotos: command.goto });
            }
            Err(error) => {
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
        observed: bool,
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
        for route in routes {
            match route {
                Route::Direct(target) => self.schedule(*target),
                Route::Conditional(conditional) => {
                    let labels = conditional.route(state);
                    for label in labels.iter() {
                        let Some((label, target)) = conditional.resolve(label) else {
                            return Err(Error::UnknownLabel {
                                node: from_name.clone(),
                                label: label.to_owned(),
                                known: conditional.labels().collect::<Vec<_>>().join(", "),
                            });
                        };
                        if observed {
                            let target_name = match target {
                                Target::Node(id) => graph.node(id).name.clone(),
                                Target::End => dashflow_graph::END.into(),
                            };
                            self.events.push(EventKind::Routed {
                                step,
                                from: from_name.clone(),
                                label: label.clone(),
                                target: target_name,
                            });
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
            && !self.scheduled[id.index()] {
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
