//! Compiled graphs as nodes of other graphs.

use std::fmt;
use std::sync::Arc;

use dashflow_checkpoint::LoadedCheckpoint;
use dashflow_graph::{
    Command, GraphState, Interrupt, IntoNode, MergeableState, Node, NodeContext, NodeError, NodeErrorKind, NodeOutput,
};
use dashflow_telemetry::RunId;
use futures::FutureExt;

use crate::durable::{Durable, Nesting, Restored, checkpoint_error, rebuild};
use crate::hub::{EventHub, ExecScope};
use crate::payload::{RESUME, StoredWrite};
use crate::run::{RunOutput, RunParams, Start, execute, merge_parallel};
use crate::{CompiledGraph, Error, RunConfig, RunStatus, StreamModes};

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
        Node::from_boxed(false, move |state: Arc<P>, ctx: NodeContext| {
            let child = child.clone();
            let child_input = Arc::new(input(&state));
            let output = Arc::clone(&output);
            async move {
                let run = child.run_nested(child_input, &ctx, false).await?;
                Ok(NodeOutput::Update(output(Arc::unwrap_or_clone(run.state))))
            }
            .boxed()
        })
    }
}

impl<S: MergeableState> IntoNode<S, SubgraphMarker> for CompiledGraph<S> {
    fn into_node(self) -> Node<S> {
        Node::from_boxed(false, move |state: Arc<S>, ctx: NodeContext| {
            let child = self.clone();
            async move {
                let run = child.run_nested(state, &ctx, true).await?;
                Ok(match run.composed {
                    Some(update) => NodeOutput::Update(update),
                    // The child routed straight to END: nothing to apply.
                    None => NodeOutput::Command(Command::new()),
                })
            }
            .boxed()
        })
    }
}

impl<S: MergeableState> CompiledGraph<S> {
    /// Runs this graph as part of the run that owns `ctx`: a child run one level deeper,
    /// whose events reach the parent's callbacks and stream.
    ///
    /// Under a checkpointed parent the child checkpoints into its own namespace of the
    /// parent's thread (one per parent task), with the parent's checkpointer and durability.
    /// When the parent task runs again (a resume after an interrupt, a failure or a crash
    /// inside the child), the child continues from its last checkpoint instead of starting
    /// over, and an answer given to the parent reaches the child's pending interrupt. A child
    /// that pauses pauses its parent: the node fails with the child's interrupt.
    async fn run_nested(&self, input: Arc<S>, ctx: &NodeContext, compose: bool) -> Result<RunOutput<S>, NodeError> {
        let parent = ctx.scope().as_any().downcast_ref::<ExecScope>();
        let hub = match parent {
            Some(scope) => scope.hub.nested(&self.inner.callbacks),
            None => EventHub::new(self.inner.callbacks.clone(), None, StreamModes::NONE),
        };
        let mut config = RunConfig::new();
        config.thread_id = ctx.thread_id().map(Arc::from);
        // A child counts its own supersteps, under the limit its parent run was given.
        if let Some(scope) = parent {
            config.recursion_limit = scope.recursion_limit;
        }
        let ids = ctx.run().child(RunId::new());
        let (durable, start) = match (parent.and_then(|scope| scope.nesting.as_ref()), &config.thread_id) {
            (Some(nesting), Some(thread_id)) => {
                nested_start(nesting, thread_id, ids.run_id, input, ctx).await.map_err(NodeError::new)?
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
            compose: compose.then_some(S::merge as fn(&mut S::Update, S::Update)),
            durable,
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

/// Where a subgraph run under a durable parent starts: from its namespace's last checkpoint
/// when that run did not finish, else from `input`.
async fn nested_start<S: GraphState>(
    nesting: &Nesting,
    thread_id: &Arc<str>,
    run_id: RunId,
    input: Arc<S>,
    ctx: &NodeContext,
) -> Result<(Option<Durable>, Start<S>), Error> {
    let namespace = nesting.child_namespace(&ctx.task_id().to_string());
    let checkpointer = &nesting.settings.checkpointer;
    let head = checkpointer.load(thread_id, &namespace, None).await.map_err(checkpoint_error)?;
    let head_id = head.as_ref().and_then(LoadedCheckpoint::head).map(|record| record.checkpoint_id.clone());
    let durable = Durable::new(
        nesting.settings.clone(),
        Arc::clone(thread_id),
        nesting.durability,
        run_id.to_string(),
        head_id.clone(),
        head_id,
    )
    .in_namespace(namespace);
    let Some(loaded) = head.filter(|loaded| loaded.head().is_some_and(|record| !record.next_nodes.is_empty())) else {
        return Ok((Some(durable), Start::Fresh(input)));
    };
    let mut durable = durable.continuing(&loaded);
    let (state, position) = rebuild::<S>(&loaded)?;
    let mut restored = Restored::<S>::decode(&loaded.pending_writes)?;
    // The newest answer the parent task was given is for the child's pending interrupts.
    let answer = (0..).map_while(|index| ctx.scope().resume_value(ctx.task_id(), index)).last();
    if let Some(answer) = answer {
        let mut writes = Vec::new();
        for task_id in restored.interrupts.keys() {
            let values = restored.resumes.entry(task_id.clone()).or_default();
            values.push(answer.clone());
            let node = task_id.split(':').nth(1).unwrap_or_default();
            let write: StoredWrite<S, S::Update> = StoredWrite::Resume { values: values.clone() };
            writes.push(durable.pending_write::<S>(task_id, node, RESUME, &write)?);
        }
        durable.put_writes(writes).await?;
    }
    Ok((Some(durable), Start::Restored { state: Arc::new(state), position, restored }))
}
