//! Compiled graphs as nodes of other graphs.

use std::fmt;
use std::sync::Arc;

use dashflow_graph::{Command, GraphState, IntoNode, MergeableState, Node, NodeContext, NodeError, NodeOutput};
use dashflow_telemetry::RunId;
use futures::FutureExt;

use crate::hub::{EventHub, ExecScope};
use crate::run::{RunOutput, RunParams, Start, execute, merge_parallel};
use crate::{CompiledGraph, Error, RunConfig, StreamModes};

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
                let run = child.run_nested(child_input, &ctx, false).await.map_err(NodeError::new)?;
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
                let run = child.run_nested(state, &ctx, true).await.map_err(NodeError::new)?;
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
    async fn run_nested(&self, input: Arc<S>, ctx: &NodeContext, compose: bool) -> Result<RunOutput<S>, Error> {
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
        let params = RunParams {
            inner: Arc::clone(&self.inner),
            config,
            ids: ctx.run().child(RunId::new()),
            hub: Arc::new(hub),
            stream: None,
            merge: merge_parallel::<S>,
            parallel_allowed: true,
            compose: compose.then_some(S::merge as fn(&mut S::Update, S::Update)),
            durable: None,
        };
        execute(params, Start::Fresh(input)).await
    }
}
