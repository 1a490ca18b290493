//! Compiled graphs as nodes of other graphs.

use std::fmt;
use std::sync::Arc;

use dashflow_checkpoint::{
    CheckpointError, CheckpointId, CheckpointRecord, Checkpointer, ListOptions, LoadedCheckpoint,
};
use dashflow_graph::__private::CancelSignal;
use dashflow_graph::{
    Command, GraphState, Interrupt, IntoNode, MergeableState, Node, NodeContext, NodeError, NodeErrorKind, NodeOutput,
};
use dashflow_telemetry::RunId;
use futures::FutureExt;
use parking_lot::Mutex;

use crate::durable::{Durable, Nesting, Restored, checkpoint_error, rebuild};
use crate::hub::{EventHub, ExecScope};
use crate::run::{Resumed, RunOutput, RunParams, Start, execute, merge_parallel};
use crate::{CompiledGraph, Durability, Error, RunConfig, RunStatus, StreamModes};

/// Metadata of every checkpoint of a subgraph run: the parent checkpoint its parent task's
/// step started from (see [`StepStarts`]). A task that runs again continues only a run
/// recorded under its own step's, so a thread run again from `START`, or forked to an
/// earlier checkpoint, never continues a stale run of the same task id.
pub(crate) const PARENT_CHECKPOINT: &str = "parent_checkpoint";

/// Metadata of a checkpoint that stores a position an earlier checkpoint stored first (an
/// edit that keeps the next nodes), or a step's start that no checkpoint stored before (the
/// exit checkpoint of a step paused under `Exit` durability): the name subgraph runs of that
/// step recorded as their `parent_checkpoint`.
pub(crate) const STEP_START: &str = "step_start";

/// Marker for [`IntoNode`] implementations of subgraphs; never named by callers.
#[derive(Debug)]
pub enum SubgraphMarker {}

/// A compiled graph with its own state type, used as a node: `input` maps the parent's state
/// into the child's, `output` maps the child's final state to an update of the parent.
///
/// A child with the parent's own state type needs no mapping: pass the `CompiledGraph` to
/// `add_node` directly, and the child's whole run becomes one update of the parent.
pub struct Subgraph<P: GraphState, C: GraphState> {
    child: CompiledGraph<C>,
    input: Arc<dyn Fn(&P) -> C + Send + Sync>,
    output: Arc<dyn Fn(C) -> P::Update + Send + Sync>,
}

impl<P: GraphState, C: MergeableState> Subgraph<P, C> {
    /// A subgraph node mapping state in with `input` and out with `output`.
    pub fn mapped(
        child: CompiledGraph<C>,
        input: impl Fn(&P) -> C + Send + Sync + 'static,
        output: impl Fn(C) -> P::Update + Send + Sync + 'static,
    ) -> Self {
        Self { child, input: Arc::new(input), output: Arc::new(output) }
    }
}

impl<P: GraphState, C: GraphState> fmt::Debug for Subgraph<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subgraph").field("child", &self.child).finish_non_exhaustive()
    }
}

impl<P: GraphState, C: MergeableState> IntoNode<P, SubgraphMarker> for Subgraph<P, C> {
    fn into_node(self) -> Node<P> {
        let Self { child, input, output } = self;
        Node::from_boxed(move |state: Arc<P>, ctx: NodeContext| {
            let child = child.clone();
            let child_input = Arc::new(input(&state));
            let output = Arc::clone(&output);
            async move {
                let run = child.run_nested(child_input, &ctx, Updates::Discard).await?;
                Ok(NodeOutput::Update(output(Arc::unwrap_or_clone(run.state))))
            }
            .boxed()
        })
        .subgraph()
    }
}

impl<S: MergeableState> IntoNode<S, SubgraphMarker> for CompiledGraph<S> {
    fn into_node(self) -> Node<S> {
        Node::from_boxed(move |state: Arc<S>, ctx: NodeContext| {
            let child = self.clone();
            async move {
                let run = child.run_nested(state, &ctx, Updates::Compose).await?;
                Ok(match run.composed {
                    Some(update) => NodeOutput::Update(update),
                    // The child routed straight to END: nothing to apply.
                    None => NodeOutput::Command(Command::new()),
                })
            }
            .boxed()
        })
        .subgraph()
    }
}

/// What a subgraph run does with its steps' updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Updates {
    /// Only its final state counts (a subgraph on a state of its own, mapped in and out).
    Discard,
    /// They are composed into one update its parent applies (a subgraph on its parent's
    /// state).
    Compose,
}

impl<S: MergeableState> CompiledGraph<S> {
    /// Runs this graph as part of the run that owns `ctx`: a child run one level deeper,
    /// whose events reach the parent's callbacks and stream.
    ///
    /// Under a checkpointed parent the child checkpoints into its own namespace of the
    /// parent's thread (one per parent task id), with the parent's checkpointer and
    /// durability, each checkpoint naming the parent checkpoint the task's step started from.
    /// When the parent task runs again from that same checkpoint (a resume after an interrupt,
    /// a failure or a crash inside the child), the child continues from its last checkpoint
    /// instead of starting over, and an answer given to the parent reaches the child's pending
    /// interrupt; a run of the same task id from anywhere else (the thread run again from
    /// `START`, a fork) starts a fresh child run. A child that pauses pauses its parent: the
    /// node fails with the child's interrupt.
    async fn run_nested(&self, input: Arc<S>, ctx: &NodeContext, updates: Updates) -> Result<RunOutput<S>, NodeError> {
        let parent = ctx.scope().as_any().downcast_ref::<ExecScope>();
        let ids = ctx.run().child(RunId::new());
        let hub = match parent {
            Some(scope) => scope.hub.nested(&self.inner.sinks(), (ids, &self.inner.names)),
            None => EventHub::new(self.inner.sinks(), None, StreamModes::NONE, (ids, &self.inner.names)),
        };
        let mut config = RunConfig::new();
        config.thread_id = ctx.thread_id().map(Arc::from);
        // A child counts its own supersteps, under the limit its parent run was given.
        if let Some(scope) = parent {
            config.recursion_limit = scope.recursion_limit;
            config.context.clone_from(&scope.context);
        }
        let (durable, start) = match (parent.and_then(|scope| scope.nesting.as_ref()), &config.thread_id) {
            (Some(nesting), Some(thread_id)) => {
                let step = parent.and_then(|scope| scope.step_starts.as_ref()).and_then(StepStarts::current);
                nested_start(nesting, step, thread_id, ids.run_id, input, ctx).await.map_err(NodeError::new)?
            }
            _ => (None, Start::Fresh(input)),
        };
        let params = RunParams {
            inner: Arc::clone(&self.inner),
            config,
            ids,
            hub: Arc::new(hub),
            stream: None,
            merge: merge_parallel::<S>,
            parallel_allowed: true,
            compose: (updates == Updates::Compose).then_some(S::merge as fn(&mut S::Update, S::Update)),
            durable,
            cancel: CancelSignal::nested(ctx),
        };
        let output = execute(params, start).await.map_err(NodeError::new)?;
        match &output.status {
            RunStatus::Completed => Ok(output),
            RunStatus::Interrupted { node, value } => {
                let value = value.clone().unwrap_or_else(|| serde_json::json!({ "paused_at": node.to_string() }));
                Err(NodeError::new(Interrupt { value }).with_kind(NodeErrorKind::Interrupted))
            }
        }
    }
}

/// Where a subgraph run under a durable parent starts: from the last checkpoint of the run
/// its task started under the same parent step, when that run did not finish; else from
/// `input`, as a new run of the namespace.
///
/// A new run in a namespace that holds older runs chains onto the namespace's head, the way
/// a thread run again from `START` chains onto its last checkpoint; its `parent_checkpoint`
/// tells the runs apart. Without a `step` (a subgraph node the parent graph does not know as
/// one) nothing ties a stored run to this call, so the run starts fresh.
async fn nested_start<S: GraphState>(
    nesting: &Nesting,
    step: Option<StepStart>,
    thread_id: &Arc<str>,
    run_id: RunId,
    input: Arc<S>,
    ctx: &NodeContext,
) -> Result<(Option<Durable>, Start<S>), Error> {
    let namespace = nesting.child_namespace(&ctx.task_id().to_string());
    let checkpointer = &*nesting.settings.checkpointer;
    let parent = step.as_ref().map(|step| &step.checkpoint);
    // Only the step a parent run continued from a checkpoint can have runs of earlier parent
    // runs under it; a step this run started has none to look for.
    let lookup = if step.as_ref().is_some_and(|step| step.inherited) { Lookup::BehindHead } else { Lookup::Head };
    let found = find_run(checkpointer, thread_id, &namespace, parent, lookup).await?;
    // A finished run gives its task's result when the parent resumes the step it ran in (a
    // crash after the run's end, before the parent stored the result); after an edit or a
    // fork the task runs afresh on the state it now reads.
    let reuse_finished = step.as_ref().is_some_and(|step| step.reuse_finished);
    let continued = found.run.filter(|run| reuse_finished || unfinished(run));
    // A continued run chains onto its own last checkpoint (forking the namespace when that
    // is not the head), a new one onto the head; either way the put expects the head.
    let lineage = continued.as_ref().and_then(LoadedCheckpoint::head).map(|record| record.checkpoint_id.clone());
    let mut durable = Durable::new(
        nesting.settings.clone(),
        Arc::clone(thread_id),
        nesting.durability,
        run_id.to_string(),
        lineage.or_else(|| found.head.clone()),
        found.head,
    )
    .in_namespace(namespace);
    durable.tag(PARENT_CHECKPOINT, parent);
    let Some(loaded) = continued else {
        return Ok((Some(durable), Start::Fresh(input)));
    };
    let mut durable = durable.continuing(&loaded);
    let (state, position) = rebuild::<S>(&nesting.settings, &loaded).await?;
    let mut restored = Restored::<S>::decode(&nesting.settings, &loaded).await?;
    // The newest answer the parent task was given is for the child's pending interrupts.
    let answer = (0..).map_while(|index| ctx.scope().resume_value(ctx.task_id(), index)).last();
    if let Some(answer) = answer {
        durable.answer_interrupts(&mut restored, &answer).await?;
    }
    let step_start = resumed_step(&loaded, Continuing::Head)?;
    let resumed = Resumed { state: Arc::new(state), position, restored, step_start };
    Ok((Some(durable), Start::Restored(Box::new(resumed))))
}

/// Whether a run stopped at this checkpoint before its end (paused, or failed).
pub(crate) fn unfinished(loaded: &LoadedCheckpoint) -> bool {
    loaded.head().is_some_and(|record| !record.next_nodes.is_empty())
}

/// The parent checkpoint each step of a durable run with subgraph nodes starts under, which
/// the step's subgraph runs record as their `parent_checkpoint`: the checkpoint that stored
/// the step's start, so a resume that restarts the step from there finds them again.
///
/// Shared with the step's tasks through `ExecScope`, and updated once per step; runs of
/// graphs without subgraph nodes, or without a checkpointer, have none.
pub(crate) struct StepStarts {
    state: Mutex<StepStartsState>,
}

struct StepStartsState {
    current: Option<StepStart>,
    /// What the first step of a run continued from a checkpoint starts under, until it starts.
    resumed: Option<ResumedStep>,
}

/// The step a run continues from a stored checkpoint: the parent checkpoint its subgraph runs
/// started under, and whether their finished runs give their tasks' results.
#[derive(Clone, Debug)]
pub(crate) struct ResumedStep {
    checkpoint: CheckpointId,
    reuse_finished: bool,
}

/// The parent checkpoint one step starts under.
#[derive(Clone, Debug)]
pub(crate) struct StepStart {
    pub(crate) checkpoint: CheckpointId,
    /// Whether runs before this one may have started subgraph runs under it: true only for
    /// the step a run continues from a stored checkpoint.
    pub(crate) inherited: bool,
    /// Whether a subgraph run that finished under it gives its task's result instead of
    /// running again: only in a step resumed as it was left (no edit since, no fork).
    pub(crate) reuse_finished: bool,
}

impl StepStarts {
    /// For a run whose first step starts under `resumed` (a run continued from a checkpoint),
    /// or under the checkpoint the run writes first.
    pub(crate) fn new(resumed: Option<ResumedStep>) -> Self {
        Self { state: Mutex::new(StepStartsState { current: None, resumed }) }
    }

    /// Called as each step starts, with the run's checkpoints written so far.
    pub(crate) fn begin(&self, durable: &Durable) {
        let mut state = self.state.lock();
        let start = match state.resumed.take() {
            Some(resumed) => {
                StepStart { checkpoint: resumed.checkpoint, inherited: true, reuse_finished: resumed.reuse_finished }
            }
            None => match (durable.durability(), durable.head()) {
                (Durability::Sync | Durability::Async, Some(head)) => {
                    StepStart { checkpoint: head.clone(), inherited: false, reuse_finished: false }
                }
                // Under `Exit` durability no checkpoint stores the step's start (unless the
                // step pauses, and then it is written later): the step gets a name of its own.
                _ => StepStart { checkpoint: CheckpointId::new(), inherited: false, reuse_finished: false },
            },
        };
        state.current = Some(start);
    }

    /// What the current step starts under.
    pub(crate) fn current(&self) -> Option<StepStart> {
        self.state.lock().current.clone()
    }
}

/// A namespace's subgraph run of one parent step, if it has one, and the namespace's head.
pub(crate) struct FoundRun {
    pub(crate) run: Option<LoadedCheckpoint>,
    pub(crate) head: Option<CheckpointId>,
}

/// How far [`find_run`] looks for a subgraph run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The namespace's head only.
    Head,
    /// The head, then older runs behind it (a fork of the parent from before later runs of
    /// the same task).
    BehindHead,
}

/// Finds the latest checkpoint of the subgraph run in `namespace` started under parent
/// checkpoint `parent`, looking as far as `lookup` says.
pub(crate) async fn find_run(
    checkpointer: &dyn Checkpointer,
    thread_id: &str,
    namespace: &str,
    parent: Option<&CheckpointId>,
    lookup: Lookup,
) -> Result<FoundRun, Error> {
    let head = checkpointer.load(thread_id, namespace, None).await.map_err(checkpoint_error)?;
    let head_id = head.as_ref().and_then(LoadedCheckpoint::head).map(|record| record.checkpoint_id.clone());
    let Some(parent) = parent else { return Ok(FoundRun { run: None, head: head_id }) };
    let Some(head) = head else { return Ok(FoundRun { run: None, head: None }) };
    if head.head().is_some_and(|record| started_under(record, parent)) {
        return Ok(FoundRun { run: Some(head), head: head_id });
    }
    if lookup == Lookup::Head {
        return Ok(FoundRun { run: None, head: head_id });
    }
    let options = ListOptions::new().namespace(namespace).metadata(PARENT_CHECKPOINT, parent.as_str()).limit(1);
    let newest = checkpointer.list(thread_id, &options).await.map_err(checkpoint_error)?.into_iter().next();
    let run = match newest {
        Some(record) => {
            checkpointer.load(thread_id, namespace, Some(&record.checkpoint_id)).await.map_err(checkpoint_error)?
        }
        None => None,
    };
    Ok(FoundRun { run, head: head_id })
}

fn started_under(record: &CheckpointRecord, parent: &CheckpointId) -> bool {
    record.metadata.get(PARENT_CHECKPOINT).and_then(serde_json::Value::as_str) == Some(parent.as_str())
}

/// The parent checkpoint the step after `loaded` starts under, when a run continues from it:
/// the one its `step_start` names, else itself.
pub(crate) fn step_start_of(loaded: &LoadedCheckpoint) -> Result<Option<CheckpointId>, Error> {
    let Some(record) = loaded.head() else { return Ok(None) };
    match metadata_id(record, STEP_START)? {
        Some(id) => Ok(Some(id)),
        None => Ok(Some(record.checkpoint_id.clone())),
    }
}

/// Where a run that continues from a checkpoint continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Continuing {
    /// From the thread's head: a resume.
    Head,
    /// From an older checkpoint: a fork (time travel), which runs its steps again.
    Fork,
}

/// The step a run continuing from `loaded` resumes: the parent checkpoint it starts under
/// ([`step_start_of`]), and whether its finished subgraph runs give their tasks' results: not
/// when `loaded` is an edit (`update_state` drops finished tasks' results, which read the old
/// state) nor in a fork, which runs its steps again.
pub(crate) fn resumed_step(loaded: &LoadedCheckpoint, from: Continuing) -> Result<Option<ResumedStep>, Error> {
    let edited = loaded.head().and_then(|record| record.metadata.get("source")).and_then(serde_json::Value::as_str)
        == Some("update");
    let reuse_finished = from == Continuing::Head && !edited;
    Ok(step_start_of(loaded)?.map(|checkpoint| ResumedStep { checkpoint, reuse_finished }))
}

/// The checkpoint id stored under `key` in `record`'s metadata.
pub(crate) fn metadata_id(record: &CheckpointRecord, key: &str) -> Result<Option<CheckpointId>, Error> {
    let Some(value) = record.metadata.get(key) else { return Ok(None) };
    match value.as_str().map(str::parse::<CheckpointId>) {
        Some(Ok(id)) => Ok(Some(id)),
        _ => Err(Error::Checkpoint(CheckpointError::corrupt(format!(
            "metadata `{key}` of checkpoint {} is not a checkpoint id: {value}",
            record.checkpoint_id
        )))),
    }
}
