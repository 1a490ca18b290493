//! `CompiledGraph<S>`: a validated graph plus its runtime settings, ready to run.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use dashflow_graph::{Graph, GraphSchema, GraphState, MergeableState, RetryPolicy, StateGraph};
use dashflow_scheduler::{Scheduler, TokioScheduler};
use dashflow_telemetry::{EventCallback, RunIds};
use tokio::sync::mpsc;

use crate::hub::{EventHub, UntypedSink};
use crate::run::{MergeFn, RunParams, execute, merge_parallel, merge_single};
use crate::stream::{RunStream, StreamSender};
use crate::{Error, ExecutionResult, RunConfig, RunStatus};

/// What every run of one compiled graph shares.
pub(crate) struct Inner<S: GraphState> {
    pub(crate) graph: Arc<Graph<S>>,
    pub(crate) scheduler: Arc<dyn Scheduler>,
    pub(crate) callbacks: Vec<Arc<dyn EventCallback>>,
    pub(crate) node_timeout: Option<Duration>,
    pub(crate) retry: Option<RetryPolicy>,
}

impl<S: GraphState> Clone for Inner<S> {
    fn clone(&self) -> Self {
        Self {
            graph: Arc::clone(&self.graph),
            scheduler: Arc::clone(&self.scheduler),
            callbacks: self.callbacks.clone(),
            node_timeout: self.node_timeout,
            retry: self.retry.clone(),
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

/// Adds `compile()` to [`StateGraph`].
pub trait CompileExt<S: GraphState> {
    /// Validates the graph and makes it runnable with the default tokio scheduler.
    fn compile(self) -> Result<CompiledGraph<S>, Error>;
}

impl<S: GraphState> CompileExt<S> for StateGraph<S> {
    fn compile(self) -> Result<CompiledGraph<S>, Error> {
        Ok(CompiledGraph::new(self.build()?))
    }
}

impl<S: GraphState> CompiledGraph<S> {
    /// Wraps a validated graph.
    pub fn new(graph: Graph<S>) -> Self {
        let inner = Inner {
            graph: Arc::new(graph),
            scheduler: Arc::new(TokioScheduler),
            callbacks: Vec::new(),
            node_timeout: None,
            retry: None,
        };
        Self { inner: Arc::new(inner) }
    }

    fn configure(self, change: impl FnOnce(&mut Inner<S>)) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        change(&mut inner);
        Self { inner: Arc::new(inner) }
    }

    /// Runs parallel tasks on `scheduler` instead of as tokio tasks.
    pub fn with_scheduler(self, scheduler: impl Scheduler) -> Self {
        self.configure(|inner| inner.scheduler = Arc::new(scheduler))
    }

    /// Sends every run's events to `callback` too.
    pub fn with_callback(self, callback: impl EventCallback) -> Self {
        self.configure(|inner| inner.callbacks.push(Arc::new(callback)))
    }

    /// Cancels any node attempt that runs longer than `timeout`, unless the node sets its own.
    pub fn with_node_timeout(self, timeout: Duration) -> Self {
        self.configure(|inner| inner.node_timeout = Some(timeout))
    }

    /// Retries failing nodes with `policy`, unless the node sets its own.
    pub fn with_retry_policy(self, policy: RetryPolicy) -> Self {
        self.configure(|inner| inner.retry = Some(policy))
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
        self.launch(input, config, merge_single::<S>, false, false).result().await
    }

    pub(crate) fn launch(
        &self,
        input: S,
        config: RunConfig,
        merge: MergeFn<S>,
        parallel_allowed: bool,
        streaming: bool,
    ) -> RunStream<S> {
        let ids = RunIds::root(config.run_id.unwrap_or_default());
        let (stream, events) = if streaming && !config.stream_modes.is_empty() {
            let (tx, rx) = mpsc::channel(config.stream_capacity.max(1));
            (Some(StreamSender(tx)), Some(rx))
        } else {
            (None, None)
        };
        let callbacks: Vec<_> = self.inner.callbacks.iter().chain(&config.callbacks).map(Arc::clone).collect();
        let sink = stream.as_ref().map(|s: &StreamSender<S>| Arc::new(StreamSender(s.0.clone())) as Arc<dyn UntypedSink>);
        let hub = Arc::new(EventHub::new(callbacks, sink, config.stream_modes));
        let params = RunParams {
            inner: Arc::clone(&self.inner),
            config,
            ids,
            hub,
            stream,
            merge,
            parallel_allowed,
            compose: None,
        };
        let driver = Box::pin(async move {
            let output = execute(params, Arc::new(input)).await?;
            Ok(ExecutionResult {
                state: Arc::unwrap_or_clone(output.state),
                status: RunStatus::Completed,
                run_id: ids.run_id,
                steps: output.steps,
                nodes: output.nodes,
                checkpoint_id: None,
                duration: output.duration,
            })
        });
        RunStream::new(events, driver)
    }
}

impl<S: MergeableState> CompiledGraph<S> {
    /// Runs to the end and returns the final state.
    ///
    /// The same loop as [`CompiledGraph::stream`] with no stream modes: `invoke` is a stream
    /// drained to its result.
    pub async fn invoke(&self, input: S, config: RunConfig) -> Result<ExecutionResult<S>, Error> {
        self.launch(input, config, merge_parallel::<S>, true, false).result().await
    }

    /// Runs while the returned stream is polled, yielding what `config.stream_modes` asks for.
    pub fn stream(&self, input: S, config: RunConfig) -> RunStream<S> {
        self.launch(input, config, merge_parallel::<S>, true, true)
    }
}

impl<S: GraphState> fmt::Debug for CompiledGraph<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledGraph")
            .field("graph", &self.inner.graph)
            .field("scheduler", &self.inner.scheduler)
            .field("callbacks", &self.inner.callbacks.len())
            .field("node_timeout", &self.inner.node_timeout)
            .field("retry", &self.inner.retry)
            .finish()
    }
}
