//! The superstep loop: every entry point (`invoke`, `invoke_sequential`, `stream`, subgraph
//! nodes) drives a run through here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashflow_graph::{Goto, GraphNode, GraphState, MergeableState, NodeId, NodeName, NodeOutput, Route, Send as SendTask, Target, TaskId};
use dashflow_telemetry::{EventKind, RunIds, RunOutcome};
use tokio::sync::oneshot;
use tracing::{Instrument, Level};

use crate::compiled::Inner;
use crate::hub::{EventHub, ExecScope};
use crate::stream::{StreamEvent, StreamSender};
use crate::task::{TaskOutcome, run_task};
use crate::{Error, NodeRun, RunConfig, StreamMode};

/// Combines the updates of one superstep, in frontier order, draining `updates`.
pub(crate) type MergeFn<S> =
    fn(&mut Vec<(NodeName, <S as GraphState>::Update)>, u64) -> Result<Option<<S as GraphState>::Update>, Error>;

/// Merges the updates of parallel tasks; two writers of one overwrite field are an error.
pub(crate) fn merge_parallel<S: MergeableState>(
    updates: &mut Vec<(NodeName, S::Update)>,
    step: u64,
) -> Result<Option<S::Update>, Error> {
    if updates.len() > 1 {
        check_overwrite_conflicts::<S>(updates, step)?;
    }
    let mut updates = updates.drain(..);
    let Some((_, mut merged)) = updates.next() else { return Ok(None) };
    for (_, update) in updates {
        S::merge(&mut merged, update);
    }
    Ok(Some(merged))
}

fn check_overwrite_conflicts<S: MergeableState>(updates: &[(NodeName, S::Update)], step: u64) -> Result<(), Error> {
    let mut writers: Vec<(&'static str, usize)> = Vec::new();
    let mut conflict = None;
    for (index, (_, update)) in updates.iter().enumerate() {
        S::for_each_overwrite(update, |field| {
            if conflict.is_some() {
                return;
            }
            match writers.iter().find(|(written, _)| *written == field) {
                Some(&(_, first)) => conflict = Some((field, first, index)),
                None => writers.push((field, index)),
            }
        });
    }
    match conflict {
        Some((field, first, second)) => Err(Error::StateConflict {
            field,
            first: updates[first].0.clone(),
            second: updates[second].0.clone(),
            step,
        }),
        None => Ok(()),
    }
}

/// Takes the only update of a step; `invoke_sequential` refuses parallel steps before they run.
pub(crate) fn merge_single<S: GraphState>(
    updates: &mut Vec<(NodeName, S::Update)>,
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
    pub(crate) compose: Option<fn(&mut S::Update, S::Update)>,
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
    let node_count = params.inner.graph.node_count();
    let join_count = params.inner.graph.joins().len();
    let scope = Arc::new(ExecScope {
        hub: Arc::clone(&params.hub),
        run: params.ids,
        thread_id: params.config.thread_id.clone(),
    });
    let run = Loop {
        state: input,
        step: 0,
        frontier: Vec::new(),
        next: Vec::new(),
        scheduled: vec![false; node_count],
        join_seen: params.inner.graph.joins().iter().map(|join| vec![false; join.predecessors.len()]).collect(),
        nodes: Vec::new(),
        updates: Vec::new(),
        finished: Vec::new(),
        first_error: None,
        composed: None,
        scope,
        params,
    };
    debug_assert_eq!(run.join_seen.len(), join_count);
    run.run().instrument(span).await
}

struct Loop<S: GraphState> {
    params: RunParams<S>,
    state: Arc<S>,
    step: u64,
    frontier: Vec<PendingTask<S>>,
    next: Vec<PendingTask<S>>,
    /// Which nodes `next` already holds, so a node reached twice runs once.
    scheduled: Vec<bool>,
    /// Per join, which predecessors finished since the join last fired.
    join_seen: Vec<Vec<bool>>,
    nodes: Vec<NodeRun>,
    /// This step's updates and finished tasks; buffers reused across steps.
    updates: Vec<(NodeName, S::Update)>,
    finished: Vec<Finished<S>>,
    first_error: Option<Error>,
    composed: Option<S::Update>,
    scope: Arc<ExecScope>,
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
        Ok(RunOutput { state: self.state, composed: self.composed, steps: self.step, nodes: self.nodes, duration })
    }

    async fn steps(&mut self) -> Result<(), Error> {
        self.send_values().await;
        self.route(None, Vec::new()).await?;
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
        let inner = Arc::clone(&self.params.inner);
        let graph = &inner.graph;
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
        self.execute_tasks(&inner, &frontier).await;
        // Siblings have all finished by now; the first failure in frontier order fails the step.
        if let Some(error) = self.first_error.take() {
            self.updates.clear();
            self.finished.clear();
            return Err(error);
        }
        self.send_updates().await;
        if let Some(merged) = (self.params.merge)(&mut self.updates, self.step)? {
            if let Some(compose) = self.params.compose {
                match &mut self.composed {
                    Some(composed) => compose(composed, merged.clone()),
                    None => self.composed = Some(merged.clone()),
                }
            }
            Arc::make_mut(&mut self.state).apply(merged);
        }
        self.commit_step(step_started).await;
        let mut finished = std::mem::take(&mut self.finished);
        for Finished { node, gotos } in finished.drain(..) {
            self.route(Some(node), gotos).await?;
        }
        self.finished = finished;
        self.advance_frontier();
        // Reuse the old frontier's allocation for the next step's routing.
        let mut recycled = frontier;
        recycled.clear();
        self.next = recycled;
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

    /// Runs the frontier's tasks (a lone task inline on this task, several through the
    /// scheduler) and records their outcomes in frontier order.
    async fn execute_tasks(&mut self, inner: &Arc<Inner<S>>, frontier: &[PendingTask<S>]) {
        if let [task] = frontier {
            if inner.scheduler.runs_single_tasks_inline() {
                let node = inner.graph.node(task.node);
                let input = task.input.clone().unwrap_or_else(|| Arc::clone(&self.state));
                let outcome = run_task(&self.scope, inner, node, self.task_id(node, 0), input).await;
                self.record(task.node, &node.name, Some(outcome));
                return;
            }
        }
        let mut receivers = Vec::with_capacity(frontier.len());
        for (index, task) in frontier.iter().enumerate() {
            let (tx, rx) = oneshot::channel();
            let node_id = task.node;
            let task_id = self.task_id(inner.graph.node(node_id), index);
            let input = task.input.clone().unwrap_or_else(|| Arc::clone(&self.state));
            let scope = Arc::clone(&self.scope);
            let owned_inner = Arc::clone(inner);
            inner.scheduler.spawn(Box::pin(async move {
                let node = owned_inner.graph.node(node_id);
                let _ = tx.send(run_task(&scope, &owned_inner, node, task_id, input).await);
            }));
            receivers.push(rx);
        }
        for (task, rx) in frontier.iter().zip(receivers) {
            let node = inner.graph.node(task.node);
            self.record(task.node, &node.name, rx.await.ok());
        }
    }

    fn task_id(&self, node: &GraphNode<S>, index: usize) -> TaskId {
        TaskId { step: self.step, node: node.name.clone(), index: u32::try_from(index).unwrap_or(u32::MAX) }
    }

    /// Files one task's outcome: its update and routing, or the step's first error.
    fn record(&mut self, id: NodeId, name: &NodeName, outcome: Option<TaskOutcome<S>>) {
        let Some(outcome) = outcome else {
            self.first_error.get_or_insert(Error::TaskLost { node: name.clone(), step: self.step });
            return;
        };
        self.nodes.push(NodeRun { node: name.clone(), step: self.step, attempts: outcome.attempts, duration: outcome.duration });
        match outcome.result {
            Ok(NodeOutput::Update(update)) => {
                self.updates.push((name.clone(), update));
                self.finished.push(Finished { node: id, gotos: Vec::new() });
            }
            Ok(NodeOutput::Command(command)) => {
                if let Some(update) = command.update {
                    self.updates.push((name.clone(), update));
                }
                self.finished.push(Finished { node: id, gotos: command.goto });
            }
            Err(error) => {
                self.first_error.get_or_insert_with(|| Error::NodeFailed {
                    node: name.clone(),
                    step: self.step,
                    attempts: outcome.attempts,
                    kind: error.kind(),
                    source: error.into_shared(),
                });
            }
        }
    }

    /// Adds to `next` where the run goes after `from` (or after `START`).
    async fn route(&mut self, from: Option<NodeId>, gotos: Vec<Goto<S>>) -> Result<(), Error> {
        let inner = Arc::clone(&self.params.inner);
        let graph = &inner.graph;
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
                    let labels = conditional.route(&self.state);
                    for label in labels.iter() {
                        let Some((label, target)) = conditional.resolve(label) else {
                            return Err(Error::UnknownLabel {
                                node: from_name.clone(),
                                label: label.to_owned(),
                                known: conditional.labels().collect::<Vec<_>>().join(", "),
                            });
                        };
                        if self.params.hub.enabled() {
                            let target_name = match target {
                                Target::Node(id) => graph.node(id).name.clone(),
                                Target::End => dashflow_graph::END.into(),
                            };
                            let kind = EventKind::Routed { step: self.step, from: from_name.clone(), label: label.clone(), target: target_name };
                            self.params.hub.emit(self.params.ids, kind).await;
                        }
                        self.schedule(target);
                    }
                }
                Route::Send(router) => {
                    for send in router(&self.state) {
                        self.schedule_send(from_name, send)?;
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
                Goto::Send(send) => self.schedule_send(from_name, send)?,
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
        if let Target::Node(id) = target {
            if !self.scheduled[id.index()] {
                self.scheduled[id.index()] = true;
                self.next.push(PendingTask { node: id, input: None });
            }
        }
    }

    fn schedule_send(&mut self, from: &NodeName, send: SendTask<S>) -> Result<(), Error> {
        match self.params.inner.graph.node_id(&send.node) {
            Some(id) => {
                self.next.push(PendingTask { node: id, input: Some(send.input) });
                Ok(())
            }
            None => Err(Error::UnknownTarget { node: from.clone(), target: send.node.to_string() }),
        }
    }

    /// Makes `next` the frontier and clears the dedup marks.
    fn advance_frontier(&mut self) {
        for task in &self.next {
            self.scheduled[task.node.index()] = false;
        }
        std::mem::swap(&mut self.frontier, &mut self.next);
        self.next.clear();
    }

    async fn send_values(&self) {
        if let Some(stream) = &self.params.stream {
            if self.params.config.stream_modes.contains(StreamMode::Values) {
                stream.send(StreamEvent::Values { step: self.step, state: Arc::clone(&self.state) }).await;
            }
        }
    }

    async fn send_updates(&self) {
        if let Some(stream) = &self.params.stream {
            if self.params.config.stream_modes.contains(StreamMode::Updates) {
                for (node, update) in &self.updates {
                    stream.send(StreamEvent::Updates { step: self.step, node: node.clone(), update: update.clone() }).await;
                }
            }
        }
    }
}
