//! `CompiledGraph<S>`: a validated graph plus its runtime settings, ready to run.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use dashflow_checkpoint::{Checkpointer, Codec, PendingWrite};
use dashflow_graph::__private::{CancelSignal, Route};
use dashflow_graph::{Command, Graph, GraphSchema, GraphState, MergeableState, NodeName, Placement, RetryPolicy};
use dashflow_scheduler::{Scheduler, TokioScheduler};
use dashflow_telemetry::__private::NodeNames;
use dashflow_telemetry::{EventCallback, RunIds};
use tokio::sync::mpsc;

use crate::durable::{CheckpointFormat, CheckpointSettings, Durable, Restored, Source, checkpoint_error, rebuild};
use crate::hub::{EventHub, UntypedSink};
use crate::observer::Observer;
use crate::payload::{OUTPUT, split_write_id};
use crate::run::{MergeFn, Resumed, RunParams, Start, execute, merge_parallel, merge_single};
use crate::stream::{RunStream, StreamSender};
use crate::subgraph::{Continuing, STEP_START, resumed_step, step_start_of};
use crate::{Error, ExecutionResult, RunConfig};

/// What every run of one compiled graph shares.
pub(crate) struct Inner<S: GraphState> {
    pub(crate) graph: Arc<Graph<S>>,
    pub(crate) scheduler: Arc<dyn Scheduler>,
    /// Whether a step's async tasks are polled together on the run's own task: with the
    /// default scheduler, not with one the user chose (`with_scheduler`), which gets them.
    pub(crate) polls_fan_outs: bool,
    /// Where CPU-bound and blocking nodes run when the graph chose (`with_scheduler_for`);
    /// `None` is the process's default for that placement, started only when first used.
    pub(crate) cpu_scheduler: Option<Arc<dyn Scheduler>>,
    pub(crate) blocking_scheduler: Option<Arc<dyn Scheduler>>,
    /// Where every run's events go, defaults first.
    pub(crate) observers: Vec<Observer>,
    pub(crate) node_timeout: Option<Duration>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) checkpoints: Option<CheckpointSettings>,
    /// How checkpoints are written, kept apart from the checkpointer so that settings made
    /// before it is attached still count.
    pub(crate) format: CheckpointFormat,
    /// Per node: pause before it runs / after it ran.
    pub(crate) interrupt_before: Vec<bool>,
    pub(crate) interrupt_after: Vec<bool>,
    /// The graph's schema as JSON, made once and shared by every run's `GraphDefined` event.
    pub(crate) schema_json: Arc<serde_json::Value>,
    /// The node names by index, each also as the node list of a superstep that runs it
    /// alone (most steps of most graphs), shared by every run's events.
    pub(crate) names: Arc<NodeNames>,
    /// The graph's own node names by index, which each run's [`NodeRuns`] reads from.
    pub(crate) node_names: Arc<[NodeName]>,
    /// Whether a node runs a subgraph: durable runs then tell each step's tasks which
    /// checkpoint the step started from.
    pub(crate) has_subgraphs: bool,
}

impl<S: GraphState> Inner<S> {
    /// The observers' sinks, in order.
    pub(crate) fn sinks(&self) -> Vec<Arc<dyn EventCallback>> {
        self.observers.iter().map(|observer| Arc::clone(observer.sink())).collect()
    }

    /// Changes how checkpoints are written, whether the checkpointer is attached yet or not.
    pub(crate) fn set_format(&mut self, change: impl FnOnce(&mut CheckpointFormat)) {
        change(&mut self.format);
        if let Some(settings) = &mut self.checkpoints {
            settings.apply(&self.format);
        }
    }
}

impl<S: GraphState> Clone for Inner<S> {
    fn clone(&self) -> Self {
        Self {
            graph: Arc::clone(&self.graph),
            scheduler: Arc::clone(&self.scheduler),
            polls_fan_outs: self.polls_fan_outs,
            cpu_scheduler: self.cpu_scheduler.clone(),
            blocking_scheduler: self.blocking_scheduler.clone(),
            observers: self.observers.clone(),
            node_timeout: self.node_timeout,
            retry: self.retry.clone(),
            checkpoints: self.checkpoints.clone(),
            format: self.format.clone(),
            interrupt_before: self.interrupt_before.clone(),
            interrupt_after: self.interrupt_after.clone(),
            schema_json: Arc::clone(&self.schema_json),
            names: Arc::clone(&self.names),
            node_names: Arc::clone(&self.node_names),
            has_subgraphs: self.has_subgraphs,
        }
    }
}

/// A graph ready to run: `invoke`, `stream`, or use it as a node of another graph.
///
/// Cheap to clone and `Send + Sync`: one compiled graph serves any number of concurrent runs,
/// each with its own [`RunConfig`].
pub struct CompiledGraph<S: GraphState> {
    pub(crate) inner: Arc<Inner<S>>,
}

impl<S: GraphState> Clone for CompiledGraph<S> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<S: GraphState> CompiledGraph<S> {
    /// Makes a validated graph (`StateGraph::build`) runnable, on the tokio scheduler and with
    /// no observers: `CompiledGraph::new(graph.build()?)`. The `dashflow` facade's `compile()`
    /// does the same and attaches its default observers.
    pub fn new(graph: Graph<S>) -> Self {
        dashflow_telemetry::clock::warm_up();
        let nodes = graph.node_count();
        // A schema is plain data (strings, numbers, lists): serializing it cannot fail.
        let schema_json = Arc::new(serde_json::to_value(graph.schema()).unwrap_or_default());
        let labels = graph.nodes().iter().map(|node| {
            let edge_labels = |route: &Route<S>| match route {
                Route::Conditional(conditional) => conditional.labels().map(Arc::from).collect(),
                _ => Vec::new(),
            };
            node.routes.iter().map(edge_labels).collect()
        });
        let names = NodeNames::new(graph.nodes().iter().map(|node| Arc::clone(&node.name))).with_labels(labels);
        let names = Arc::new(names);
        let node_names = graph.nodes().iter().map(|node| Arc::clone(&node.name)).collect();
        let has_subgraphs = graph.nodes().iter().any(|node| node.node.is_subgraph());
        let inner = Inner {
            graph: Arc::new(graph),
            scheduler: Arc::new(TokioScheduler),
            polls_fan_outs: true,
            cpu_scheduler: None,
            blocking_scheduler: None,
            observers: Vec::new(),
            node_timeout: None,
            retry: None,
            checkpoints: None,
            format: CheckpointFormat::default(),
            interrupt_before: vec![false; nodes],
            interrupt_after: vec![false; nodes],
            schema_json,
            names,
            node_names,
            has_subgraphs,
        };
        Self { inner: Arc::new(inner) }
    }

    pub(crate) fn configure(self, change: impl FnOnce(&mut Inner<S>)) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        change(&mut inner);
        Self { inner: Arc::new(inner) }
    }

    /// Spawns the tasks of async nodes on `scheduler`: every task of a step of several, and a
    /// lone one too unless the scheduler runs single tasks inline
    /// ([`Scheduler::runs_single_tasks_inline`]; the work-stealing pool does not). Without a
    /// scheduler of its own, a graph polls a step's async tasks together on the run's own
    /// task and spawns none; `with_scheduler(TokioScheduler)` spawns each as a tokio task
    /// instead, so that a fan-out of async nodes that compute between awaits runs in parallel
    /// on a multi-thread runtime (marking those nodes `cpu_bound` is usually better). CPU-bound
    /// and blocking nodes keep their placement either way.
    ///
    /// [`Scheduler::runs_single_tasks_inline`]: dashflow_scheduler::Scheduler::runs_single_tasks_inline
    pub fn with_scheduler(self, scheduler: impl Scheduler) -> Self {
        self.with_scheduler_for(Placement::Async, scheduler)
    }

    /// Runs the tasks of nodes placed at `placement` on `scheduler`, in every run of this
    /// graph (a graph used as a subgraph keeps its own choice).
    ///
    /// By default CPU-bound nodes run on the process's `WorkStealingPool::global()` and
    /// blocking ones on a `BlockingScheduler`; this replaces either with, say, a sized and
    /// named pool of the application's own. A CPU-bound or blocking task is never run inline,
    /// whatever its scheduler.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use dashflow_executor::{CompiledGraph, RunConfig};
    /// use dashflow_graph::{GraphState, NodeError, NodeOptions, Placement, StateGraph, END, START};
    /// use dashflow_scheduler::WorkStealingPool;
    ///
    /// #[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, GraphState)]
    /// struct Doc {
    ///     thread: String,
    /// }
    ///
    /// async fn parse(_: Arc<Doc>) -> Result<DocUpdate, NodeError> {
    ///     let thread = std::thread::current().name().unwrap_or_default().to_owned();
    ///     Ok(DocUpdate::default().thread(thread))
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut graph = StateGraph::<Doc>::new();
    /// graph.add_node_with("parse", parse, NodeOptions::new().cpu_bound()).add_edge(START, "parse").add_edge("parse", END);
    /// let pool = WorkStealingPool::builder().threads(2).thread_name("parser").build()?;
    /// let app = CompiledGraph::new(graph.build()?).with_scheduler_for(Placement::CpuBound, pool);
    /// let done = app.invoke(Doc::default(), RunConfig::new()).await?;
    /// assert!(done.state.thread.starts_with("parser-"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_scheduler_for(self, placement: Placement, scheduler: impl Scheduler) -> Self {
        let scheduler: Arc<dyn Scheduler> = Arc::new(scheduler);
        self.configure(|inner| match placement {
            Placement::CpuBound => inner.cpu_scheduler = Some(scheduler),
            Placement::Blocking => inner.blocking_scheduler = Some(scheduler),
            _ => {
                inner.scheduler = scheduler;
                inner.polls_fan_outs = false;
            }
        })
    }

    /// Sends every run's events to `callback` too.
    pub fn with_callback(self, callback: impl EventCallback) -> Self {
        self.with_shared_callback(Arc::new(callback))
    }

    /// Like [`CompiledGraph::with_callback`], for a sink shared with other graphs: a subgraph
    /// whose parent has the same sink reports each event to it once, not twice.
    pub fn with_shared_callback(self, callback: Arc<dyn EventCallback>) -> Self {
        self.configure(|inner| inner.observers.push(Observer::chosen(callback)))
    }

    /// Attaches `callback` as a default observer: one the graph has without its user asking,
    /// listed by [`CompiledGraph::observers`] and removed by
    /// [`CompiledGraph::without_default_observers`]. Shared like
    /// [`CompiledGraph::with_shared_callback`].
    pub fn with_default_observer(self, callback: Arc<dyn EventCallback>) -> Self {
        self.configure(|inner| {
            let defaults = inner.observers.iter().take_while(|observer| observer.is_default()).count();
            inner.observers.insert(defaults, Observer::default_one(callback));
        })
    }

    /// The sinks every run's events go to, default observers first; a run's own
    /// (`RunConfig::with_callback`) are not listed.
    pub fn observers(&self) -> &[Observer] {
        &self.inner.observers
    }

    /// The graph without its default observers (those `compile()` attached): its runs reach
    /// only the sinks added with `with_callback`, and write no event log.
    pub fn without_default_observers(self) -> Self {
        self.configure(|inner| inner.observers.retain(|observer| !observer.is_default()))
    }

    /// Cancels any node attempt that runs longer than `timeout`, unless the node sets its own
    /// (see [`NodeOptions::timeout`](dashflow_graph::NodeOptions::timeout)).
    pub fn with_node_timeout(self, timeout: Duration) -> Self {
        self.configure(|inner| inner.node_timeout = Some(timeout))
    }

    /// Retries failing nodes with `policy`, unless the node sets its own.
    pub fn with_retry_policy(self, policy: RetryPolicy) -> Self {
        self.configure(|inner| inner.retry = Some(policy))
    }

    /// Checkpoints every run into `checkpointer`, making runs durable, resumable and
    /// inspectable (`get_state`, `get_state_history`, time travel). Each run then needs a
    /// thread (`RunConfig::thread`); one without fails as it starts with `ThreadRequired`.
    ///
    /// A checkpointer shared with other graphs is passed as an `Arc` (`Arc<T>` and
    /// `Arc<dyn Checkpointer>` are checkpointers themselves).
    pub fn with_checkpointer(self, checkpointer: impl Checkpointer) -> Self {
        let checkpointer: Arc<dyn Checkpointer> = Arc::new(checkpointer);
        self.configure(|inner| inner.checkpoints = Some(CheckpointSettings::with_format(checkpointer, &inner.format)))
    }

    /// Encodes checkpoints with `codec` (bincode by default; JSON is readable by any tool),
    /// set before or after the checkpointer.
    pub fn with_codec(self, codec: Codec) -> Self {
        self.configure(|inner| inner.set_format(|format| format.codec = codec))
    }

    /// Writes a full snapshot after at most `deltas` delta checkpoints (default 1000), bounding
    /// the replay work of a load. Snapshots are also written whenever the deltas since the
    /// last one outweigh it. Set before or after the checkpointer.
    pub fn with_max_delta_chain(self, deltas: u32) -> Self {
        self.configure(|inner| inner.set_format(|format| format.max_chain = deltas.max(1)))
    }

    /// Pauses runs before any of `nodes` runs; `resume` continues. Runs need a checkpointer
    /// and a thread (else they fail as they start, with `NoCheckpointer` or `ThreadRequired`).
    ///
    /// A name the graph does not have is an `UnknownInterruptNode` error here, not a pause that
    /// never comes.
    pub fn interrupt_before<I>(self, nodes: I) -> Result<Self, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let ids = node_ids(&self.inner.graph, nodes, "interrupt_before")?;
        Ok(self.configure(|inner| ids.iter().for_each(|&id| inner.interrupt_before[id] = true)))
    }

    /// Pauses runs after any of `nodes` ran; `resume` continues. Needs a checkpointer and a
    /// thread, and checks the names, as [`CompiledGraph::interrupt_before`] does.
    pub fn interrupt_after<I>(self, nodes: I) -> Result<Self, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let ids = node_ids(&self.inner.graph, nodes, "interrupt_after")?;
        Ok(self.configure(|inner| ids.iter().for_each(|&id| inner.interrupt_after[id] = true)))
    }

    /// The fingerprint of the state type's schema, which every blob of this graph's
    /// checkpoints carries (`dashflow_checkpoint::seal`): equal fingerprints read each
    /// other's blobs. A distributed client seals a run's input with it.
    pub fn state_fingerprint(&self) -> u64 {
        crate::schema::schema_of::<S>().fingerprint
    }

    /// The codec checkpoints are written with.
    pub fn codec(&self) -> Codec {
        self.inner.format.codec
    }

    /// The checkpointer, if any.
    pub fn checkpointer(&self) -> Option<&Arc<dyn Checkpointer>> {
        self.inner.checkpoints.as_ref().map(|settings| &settings.checkpointer)
    }

    /// The validated graph.
    pub fn graph(&self) -> &Graph<S> {
        &self.inner.graph
    }

    /// The graph's name.
    pub fn name(&self) -> &str {
        self.inner.graph.name()
    }

    /// Nodes and edges, serializable.
    pub fn schema(&self) -> &GraphSchema {
        self.inner.graph.schema()
    }

    /// The graph as a Mermaid flowchart.
    pub fn to_mermaid(&self) -> String {
        self.inner.graph.to_mermaid()
    }

    /// Runs to the end without merging: for states whose updates cannot be combined (a
    /// superstep with several tasks is an error naming them).
    pub async fn invoke_sequential(&self, input: S, config: RunConfig) -> Result<ExecutionResult<S>, Error> {
        self.launch(Begin::Fresh(input), config, Merging::sequential(), Output::Result).result().await
    }

    pub(crate) fn launch(
        &self,
        begin: Begin<S>,
        config: RunConfig,
        merging: Merging<S>,
        output: Output,
    ) -> RunStream<S> {
        let Merging { merge, parallel_allowed } = merging;
        let ids = RunIds::root(config.run_id.unwrap_or_default());
        let (stream, events) = if output == Output::Stream && !config.stream_modes.is_empty() {
            let (tx, rx) = mpsc::channel(config.stream_capacity.max(1));
            (Some(StreamSender(tx)), Some(rx))
        } else {
            (None, None)
        };
        let graph_sinks = self.inner.observers.iter().map(Observer::sink);
        let callbacks: Vec<_> = graph_sinks.chain(&config.callbacks).map(Arc::clone).collect();
        let sink =
            stream.as_ref().map(|s: &StreamSender<S>| Arc::new(StreamSender(s.0.clone())) as Arc<dyn UntypedSink>);
        let hub = Arc::new(EventHub::new(callbacks, sink, config.stream_modes, (ids, &self.inner.names)));
        let inner = Arc::clone(&self.inner);
        let driver = Box::pin(async move {
            let (durable, start) = prepare(&inner, &config, begin, ids).await?;
            let cancel = CancelSignal::new();
            let params =
                RunParams { inner, config, ids, hub, stream, merge, parallel_allowed, compose: None, durable, cancel };
            let output = execute(params, start).await?;
            Ok(ExecutionResult {
                state: Arc::unwrap_or_clone(output.state),
                status: output.status,
                run_id: ids.run_id,
                steps: output.steps,
                nodes: output.nodes,
                checkpoint_id: output.checkpoint_id,
                duration: output.duration,
            })
        });
        RunStream::new(events, driver)
    }
}

/// How a run merges the updates of a step.
pub(crate) struct Merging<S: GraphState> {
    merge: MergeFn<S>,
    /// Whether a step may run several tasks.
    parallel_allowed: bool,
}

impl<S: GraphState> Merging<S> {
    /// One task per step (`invoke_sequential`): updates that cannot be combined.
    fn sequential() -> Self {
        Self { merge: merge_single::<S>, parallel_allowed: false }
    }
}

impl<S: MergeableState> Merging<S> {
    /// Any number of tasks per step, their updates merged in frontier order.
    fn parallel() -> Self {
        Self { merge: merge_parallel::<S>, parallel_allowed: true }
    }
}

/// What a launched run gives its caller.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// Its result only (`invoke`, `resume`): no stream is built.
    Result,
    /// A stream of what `RunConfig::stream_modes` asks for.
    Stream,
}

/// How a run begins.
pub(crate) enum Begin<S: GraphState> {
    /// From `START` with this state (a thread's history continues behind it).
    Fresh(S),
    /// From `START` with the thread's state after this update.
    Update(S::Update),
    /// From the thread's checkpoint, with a resume value and/or an update.
    Resume(Command<S>),
}

/// The indices of the nodes named `nodes`, for `setting`; an unknown name is an error.
fn node_ids<S: GraphState, I>(graph: &Graph<S>, nodes: I, setting: &'static str) -> Result<Vec<usize>, Error>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    nodes
        .into_iter()
        .map(|name| {
            graph.node_id(name.as_ref()).map(|id| id.index()).ok_or_else(|| Error::UnknownInterruptNode {
                setting,
                node: name.as_ref().to_owned(),
                graph: graph.name().to_string(),
                known: graph.nodes().iter().map(|node| &*node.name).collect::<Vec<_>>().join(", "),
            })
        })
        .collect()
}

/// Where a run resuming from `loaded` starts: its state and position, the step's stored
/// writes (outputs only when it continues the head), after the command's update and answer.
async fn resume_from<S: GraphState>(
    settings: &CheckpointSettings,
    durable: &mut Durable,
    loaded: &dashflow_checkpoint::LoadedCheckpoint,
    command: Command<S>,
    from: Continuing,
) -> Result<Start<S>, Error> {
    let (mut state, position) = rebuild::<S>(settings, loaded).await?;
    let mut restored = Restored::<S>::decode(settings, loaded).await?;
    // The resumed step's tasks store their results before this run writes a checkpoint.
    durable.store_schema::<S>().await?;
    // Results stored after a past checkpoint are those of the run that went on from it: a
    // run forked from there (time travel) runs its tasks again, as LangGraph replays do; only
    // a resume of the head reuses them.
    if from == Continuing::Fork {
        restored.outputs.clear();
    }
    let step_start = resumed_step(loaded, from)?;
    // Refused before anything is written: a half-applied command would be worse.
    if command.resume.is_some() && restored.interrupts.is_empty() {
        return Err(Error::NothingToResume { thread_id: durable.thread_id.to_string(), state: standing(loaded) });
    }
    if let Some(update) = command.update {
        state.apply(update.clone());
        // The step restarts from the edit: its subgraph runs still belong to it.
        durable.tag(STEP_START, step_start_of(loaded)?.as_ref());
        durable.commit(Source::Update, &state, Some(&update), &position).await?;
        durable.tag(STEP_START, None);
        // The step's stored results and interrupts move to the edit, so that a crash after it
        // reuses what this run reuses.
        let carried = loaded
            .pending_writes
            .iter()
            .filter(|write| from == Continuing::Head || !is_output(write))
            .cloned()
            .collect();
        durable.put_writes(carried).await?;
    }
    if let Some(answer) = command.resume {
        durable.answer_interrupts(&mut restored, &answer).await?;
        durable.tag_run();
    }
    Ok(Start::Restored(Box::new(Resumed { state: Arc::new(state), position, restored, step_start })))
}

/// Where a thread without a pending interrupt stands, for `NothingToResume`.
fn standing(loaded: &dashflow_checkpoint::LoadedCheckpoint) -> String {
    match loaded.head() {
        Some(record) if !record.next_nodes.is_empty() => {
            format!(
                "it stopped before {} by a failure, a crash or interrupt_before/after",
                record.next_nodes.join(", ")
            )
        }
        _ => "its last run finished".to_owned(),
    }
}

/// Whether a pending write holds a finished task's result.
fn is_output(write: &PendingWrite) -> bool {
    split_write_id(&write.task_id).is_some_and(|(_, kind)| kind == OUTPUT)
}

/// Resolves where a run starts and how it is checkpointed: loads the thread's checkpoint
/// when resuming, forking or updating, and applies a resume command's update and answers.
async fn prepare<S: GraphState>(
    inner: &Inner<S>,
    config: &RunConfig,
    begin: Begin<S>,
    ids: RunIds,
) -> Result<(Option<Durable>, Start<S>), Error> {
    let interrupts = inner.interrupt_before.iter().chain(&inner.interrupt_after).any(|flag| *flag);
    let operation = match &begin {
        Begin::Fresh(_) if interrupts => Some("interrupt_before/interrupt_after"),
        Begin::Fresh(_) => None,
        Begin::Update(_) => Some("invoke_update"),
        Begin::Resume(_) => Some("resume"),
    };
    // A per-run checkpointer writes with the graph's format.
    let per_run = config.checkpointer.as_ref().map(|cp| CheckpointSettings::with_format(Arc::clone(cp), &inner.format));
    let (settings, thread_id) = match (per_run.as_ref().or(inner.checkpoints.as_ref()), &config.thread_id) {
        (Some(settings), Some(thread_id)) => (settings, thread_id),
        (None, _) => match (operation, begin) {
            (None, Begin::Fresh(input)) => return Ok((None, Start::Fresh(Arc::new(input)))),
            (operation, _) => return Err(Error::NoCheckpointer { operation: operation.unwrap_or("this run") }),
        },
        // Like LangGraph, which refuses a checkpointed run without a `thread_id`: a run that
        // stores nothing could never be resumed or inspected.
        (Some(_), None) => match operation {
            Some(operation @ ("resume" | "invoke_update")) => return Err(Error::NoThread { operation }),
            _ => return Err(Error::ThreadRequired { graph: inner.graph.name().to_string() }),
        },
    };
    let checkpointer = &settings.checkpointer;
    let head = checkpointer.load(thread_id, "", None).await.map_err(checkpoint_error)?;
    let head_id = head.as_ref().and_then(|loaded| loaded.head()).map(|record| record.checkpoint_id.clone());
    let target = match &config.checkpoint_id {
        Some(id) if Some(id) != head_id.as_ref() => {
            checkpointer.load(thread_id, "", Some(id)).await.map_err(checkpoint_error)?
        }
        _ => head,
    };
    let not_found = || Error::ThreadNotFound {
        thread_id: thread_id.to_string(),
        checkpoint_id: config.checkpoint_id.as_ref().map(ToString::to_string),
    };
    if config.checkpoint_id.is_some() && target.is_none() {
        return Err(not_found());
    }
    let target_id = target.as_ref().and_then(|loaded| loaded.head()).map(|record| record.checkpoint_id.clone());
    let from = if target_id == head_id { Continuing::Head } else { Continuing::Fork };
    let mut durable = Durable::new(
        settings.clone(),
        Arc::clone(thread_id),
        config.durability,
        ids.run_id.to_string(),
        target_id,
        head_id,
    );
    let start = match begin {
        Begin::Fresh(input) => Start::Fresh(Arc::new(input)),
        Begin::Update(update) => {
            let loaded = target.ok_or_else(not_found)?;
            durable = durable.continuing(&loaded);
            let (mut state, _) = rebuild::<S>(settings, &loaded).await?;
            state.apply(update.clone());
            Start::Updated { state: Arc::new(state), update }
        }
        Begin::Resume(command) => {
            let loaded = target.ok_or_else(not_found)?;
            durable = durable.continuing(&loaded);
            // Boxed: a resume is rare, and its state would otherwise enlarge every run's future.
            Box::pin(resume_from(settings, &mut durable, &loaded, command, from)).await?
        }
    };
    Ok((Some(durable), start))
}

impl<S: MergeableState> CompiledGraph<S> {
    /// Runs to the end (or to an interrupt) and returns the final state.
    ///
    /// The same loop as [`CompiledGraph::stream`] with no stream modes: `invoke` is a stream
    /// drained to its result. With a checkpointer and `RunConfig::thread`, the run is
    /// checkpointed and continues the thread's history. Dropping the future cancels the run,
    /// as dropping a stream does.
    pub async fn invoke(&self, input: S, config: RunConfig) -> Result<ExecutionResult<S>, Error> {
        self.launch(Begin::Fresh(input), config, Merging::parallel(), Output::Result).result().await
    }

    /// Runs while the returned stream is polled, yielding what `config.stream_modes` asks for.
    pub fn stream(&self, input: S, config: RunConfig) -> RunStream<S> {
        self.launch(Begin::Fresh(input), config, Merging::parallel(), Output::Stream)
    }

    /// Continues the thread's run from its latest checkpoint (or `RunConfig::checkpoint_id`):
    /// after an interrupt, a crash or a failure. `Command::resume(value)` answers a pending
    /// `NodeContext::interrupt` (a thread with none is `NothingToResume`, and nothing is
    /// written); a command's update is applied first; `Command::new()` just continues. Tasks
    /// whose results were stored are not run again, unless the run is a fork from a past
    /// checkpoint, which runs the step afresh.
    pub async fn resume(&self, command: Command<S>, config: RunConfig) -> Result<ExecutionResult<S>, Error> {
        self.launch(Begin::Resume(command), config, Merging::parallel(), Output::Result).result().await
    }

    /// [`CompiledGraph::resume`], streamed.
    pub fn resume_stream(&self, command: Command<S>, config: RunConfig) -> RunStream<S> {
        self.launch(Begin::Resume(command), config, Merging::parallel(), Output::Stream)
    }

    /// Starts a new run of the thread from `START`, on the thread's state with `update`
    /// applied: how a conversation continues with the next message.
    pub async fn invoke_update(&self, update: S::Update, config: RunConfig) -> Result<ExecutionResult<S>, Error> {
        self.launch(Begin::Update(update), config, Merging::parallel(), Output::Result).result().await
    }
}

impl<S: GraphState> fmt::Debug for CompiledGraph<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledGraph")
            .field("graph", &self.inner.graph)
            .field("scheduler", &self.inner.scheduler)
            .field("cpu_scheduler", &self.inner.cpu_scheduler)
            .field("blocking_scheduler", &self.inner.blocking_scheduler)
            .field("observers", &self.inner.observers)
            .field("node_timeout", &self.inner.node_timeout)
            .field("retry", &self.inner.retry)
            .finish()
    }
}
