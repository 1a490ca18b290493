//! The loop: drives a run from step to step (interrupts, limits, checkpoints, the stream)
//! and reports its events through the run's hub.

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointError, PendingWrite};
use dashflow_graph::__private::{NodeId, Target};
use dashflow_graph::{GraphState, NodeName};
use dashflow_telemetry::clock::Tick;
use dashflow_telemetry::{DeltaKind, Event, EventKind, InterruptReason, Report, RunOutcome};
use tracing::{Instrument, Level};

use super::algo::{Decision, PendingTask, Routing};
use super::runner::{StepResults, execute_tasks, stored_goto};
use super::{Resumed, RunOutput, RunParams, Start, node_index};
use crate::durable::{Durable, Restored, Source};
use crate::hub::ExecScope;
use crate::payload::{INTERRUPT, OUTPUT, Position, StoredTask, StoredWrite};
use crate::stream::StreamEvent;
use crate::subgraph::{STEP_START, StepStarts};
use crate::task::{TaskSlot, Timing};
use crate::{Durability, Error, NodeRuns, RunStatus, StreamMode};

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
        context: params.config.context.clone(),
        cancel: std::mem::take(&mut params.cancel),
    });
    // Tells tasks still running when the run ends without completing (it was dropped, failed
    // or timed out) to stop: CPU-bound and blocking ones may be running on other threads.
    let mut cancel_unless_done = CancelUnlessDone(Some(Arc::clone(&scope)));
    let graph = &params.inner.graph;
    let run = Loop {
        state,
        step: 0,
        steps_this_run: 0,
        frontier: Vec::new(),
        routing: Routing::new(graph),
        decisions: Vec::new(),
        routed: Vec::new(),
        results: StepResults {
            updates: Vec::new(),
            done: Vec::new(),
            first_error: None,
            interrupts: Vec::new(),
            nodes: NodeRuns::new(Arc::clone(&params.inner.node_names)),
            held_end: None,
        },
        composed: None,
        scope,
        durable,
        restored,
        skip_interrupt_before: start_position.is_some(),
        next_start: None,
        params,
    };
    let hub = Arc::clone(&run.params.hub);
    // Boxed: held inline, the loop's future would be copied whole into each future that
    // awaits `execute`, and with it the run's.
    let mut run = Box::pin(run.run(start_position, input_update).instrument(span));
    // Whenever the run waits (a node's I/O, a checkpoint write, a slow stream reader), its
    // batching sinks get what it buffered, so they are current while it waits.
    let output = std::future::poll_fn(|cx| {
        hub.run_resumes();
        let poll = run.as_mut().poll(cx);
        if poll.is_pending() {
            hub.run_waits();
        }
        poll
    })
    .await;
    if output.is_ok() {
        // Every task of a run that returns `Ok` has finished: nothing to tell.
        cancel_unless_done.0 = None;
    }
    output
}

/// Hands the sinks that ask for deltas their own copy of step `step`'s merged update (they
/// encode it wherever they encode). Out of line: most runs never come here, and their step
/// should not carry its code.
#[cold]
#[inline(never)]
fn share_update<U: Clone + Send + Sync + serde::Serialize + 'static>(
    hub: &crate::hub::EventHub,
    run: dashflow_telemetry::RunIds,
    step: u64,
    update: &U,
) {
    hub.delta(run, step, DeltaKind::Update, Arc::new(update.clone()));
}

/// Cancels the run's signal when dropped, unless emptied first.
struct CancelUnlessDone(Option<Arc<ExecScope>>);

impl Drop for CancelUnlessDone {
    fn drop(&mut self) {
        if let Some(scope) = &self.0 {
            scope.cancel.cancel();
        }
    }
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
    /// The current step's routing decisions, reported once it is routed.
    decisions: Vec<Decision>,
    /// Routing decisions of this step for the stream, which callbacks have already heard;
    /// filled only when the run is streamed.
    routed: Vec<Event>,
    results: StepResults<S>,
    composed: Option<S::Update>,
    scope: Arc<ExecScope>,
    durable: Option<Durable>,
    /// Pending writes of the step being resumed; used by its first superstep only.
    restored: Restored<S>,
    /// A resumed run does not stop again before the nodes it stopped before.
    skip_interrupt_before: bool,
    /// The end reading of the lone task just recorded, which the next step's start takes
    /// when nothing awaited in between (see `Loop::superstep`).
    next_start: Option<Tick>,
}

impl<S: GraphState> Loop<S> {
    async fn run(mut self, start: Option<Position<S>>, input_update: Option<S::Update>) -> Result<RunOutput<S>, Error> {
        let started = Tick::now();
        let graph_name = Arc::clone(self.params.inner.graph.name());
        let schema = Arc::clone(&self.params.inner.schema_json);
        self.params.hub.emit(self.params.ids, EventKind::GraphDefined { graph: Arc::clone(&graph_name), schema }).await;
        let kind = EventKind::RunStarted {
            graph: graph_name,
            thread_id: self.params.config.thread_id.clone(),
            tags: self.params.config.tags.clone(),
        };
        self.params.hub.emit(self.params.ids, kind).await;
        let mut result = self.steps(start, input_update).await;
        // Even a failed run returns only once its queued checkpoints are committed.
        let flushed = self.finish_durable(&result).await;
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
                let decisions = self.params.hub.routing().then_some(&mut self.decisions);
                let routed = self.routing.route(&self.params.inner.graph, &self.state, None, Vec::new(), decisions);
                self.report_decisions().await;
                routed?;
                self.routing.advance(&mut self.frontier);
                self.commit(Source::Input, input_update.as_ref()).await?;
            }
            Some(position) => self.restore(position)?,
        }
        if self.params.hub.deltas() {
            // Shared, not copied: the state is copied at the next apply only if a sink still
            // holds it then.
            let state: Arc<S> = Arc::clone(&self.state);
            self.params.hub.delta(self.params.ids, self.step, DeltaKind::Snapshot, state);
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

    /// At the end of a run that came to `result`: the final checkpoint for `Exit` durability
    /// if it completed, then waits until every checkpoint is committed.
    async fn finish_durable(&mut self, result: &Result<RunStatus, Error>) -> Result<(), Error> {
        let position = self.position();
        let Some(durable) = &mut self.durable else { return Ok(()) };
        if matches!(result, Ok(RunStatus::Completed)) && durable.durability() == Durability::Exit {
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
        if let Some(stream) = &self.params.stream {
            let paused = StreamEvent::Interrupted { step: self.step, node: node.clone(), value: value.clone() };
            stream.send(paused).await;
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
        // A step that follows a recorded lone task's end without waiting starts at that end:
        // one clock reading a step, and the loop's bookkeeping in between counts toward the
        // next task.
        let next_start = self.next_start.take();
        let step_started =
            (interest.steps_started || interest.steps_finished).then(|| next_start.unwrap_or_else(Tick::now));
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
            && !matches!(&*frontier, [task] if self.params.hub.hold_lone_start(self.step, task.node, at))
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
        let timing = match interest.tasks() || self.params.stream.is_some() {
            // A lone task's end waits for its step's routing when nothing else is recorded
            // in between (no stream, no deltas, no step ends): both then go in under one lock.
            true => Timing::Timed {
                step_started,
                hold_end: frontier.len() == 1
                    && self.params.stream.is_none()
                    && !interest.steps_finished
                    && !self.params.hub.deltas()
                    && self.params.hub.holds_lone_ends(),
            },
            false => Timing::Untimed,
        };
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
            timing,
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
        let merged = match (self.params.merge)(&mut self.results.updates, graph, self.step) {
            Ok(merged) => merged,
            Err(error) => {
                self.record_held_end(None);
                return Err(error);
            }
        };
        // A delta checkpoint stores the merged update; keep it past `apply` only when needed.
        let keep = self.durable.as_ref().is_some_and(|durable| durable.durability() != Durability::Exit);
        let delta = if keep { merged.clone() } else { None };
        if let Some(merged) = merged {
            if self.params.hub.deltas() {
                share_update(&self.params.hub, self.params.ids, self.step, &merged);
            }
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
        let mut decisions = self.params.hub.routing().then_some(&mut self.decisions);
        let mut routed = Ok(());
        for done in &mut self.results.done {
            let gotos = std::mem::take(&mut done.gotos);
            routed = self.routing.route(graph, &self.state, Some(done.node), gotos, decisions.as_deref_mut());
            if routed.is_err() {
                break;
            }
        }
        if !self.decisions.is_empty() || self.results.held_end.is_some() {
            self.record_decisions();
            if !self.routed.is_empty() {
                self.next_start = None;
                self.stream_routed().await;
            }
        }
        routed?;
        self.routing.advance(&mut self.frontier);
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
        let task_id = |index: u32, node: NodeId| TaskSlot { step: self.step, index }.id(graph.node(node)).to_string();
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

    /// Reports the routing decisions of the step just routed, in the order made: as compact
    /// entries when only batching sinks want them, else built (and sent to the stream if it
    /// wants them too). Empties `decisions`.
    async fn report_decisions(&mut self) {
        self.record_decisions();
        if !self.routed.is_empty() {
            self.stream_routed().await;
        }
    }

    /// [`Loop::report_decisions`] up to the stream, without an await: a step whose decisions
    /// are all compact entries does not pay for the future.
    #[inline]
    fn record_decisions(&mut self) {
        if self.results.held_end.is_some() {
            // The usual step, one decision as a compact entry, rides on the held end; any
            // other goes in after it, as below.
            let riding = match self.decisions[..] {
                [Decision { from: Some(from), edge, position, target: Target::Node(to) }] => {
                    self.params.hub.compact_route(from, (edge, position), to)
                }
                _ => None,
            };
            self.record_held_end(riding);
            if riding.is_some() {
                self.decisions.clear();
                return;
            }
        }
        if !self.decisions.is_empty() {
            self.record_other_decisions();
        }
    }

    /// The decisions [`Loop::record_decisions`] records one by one, in the order made.
    #[inline(never)]
    fn record_other_decisions(&mut self) {
        let hub = &self.params.hub;
        let graph = &self.params.inner.graph;
        for decision in self.decisions.drain(..) {
            let Decision { from, edge, position, target } = decision;
            if let (Some(from), Target::Node(to)) = (from, target)
                && hub.record_route(self.step, from, (edge, position), to)
            {
                continue;
            }
            let Some(label) = decision.label(graph) else { continue };
            let to = match target {
                Target::Node(id) => Some(id),
                Target::End => None,
            };
            let name = |node: Option<NodeId>, otherwise: &str| match node {
                Some(id) => graph.node(id).name.clone(),
                None => Arc::from(otherwise),
            };
            let built = hub.routed(self.params.ids, self.step, (from, label.clone(), to), Tick::now(), |from, to| {
                (name(from, dashflow_graph::START), name(to, dashflow_graph::END))
            });
            self.routed.extend(built);
        }
    }

    /// Records the lone task's end held back for its step's routing, if any, with the
    /// decision `route` riding on it.
    fn record_held_end(&mut self, route: Option<(u32, u32, u32)>) {
        if let Some((node, span)) = self.results.held_end.take() {
            self.params.hub.lone_task_routed((self.step, node), span, route);
            // Nothing awaits between here and the next step's start unless a checkpoint is
            // written: that start then takes this reading rather than one of its own.
            if self.durable.is_none() {
                self.next_start = Some(span.1);
            }
        }
    }

    /// Sends the decisions [`Loop::record_decisions`] built to the stream.
    async fn stream_routed(&mut self) {
        for event in self.routed.drain(..) {
            self.params.hub.stream(event).await;
        }
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
