//! One task of a superstep: attempts, timeout, retry with backoff, panics caught.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashflow_graph::{GraphState, Node, NodeContext, NodeError, NodeErrorKind, NodeOutput, RetryPolicy, RunScope, TaskId};
use dashflow_telemetry::{EventKind, RunIds};
use futures::FutureExt;
use tracing::Instrument;

use crate::hub::EventHub;

/// Everything a task needs, owned, so it can run inline or be spawned.
pub(crate) struct TaskSpec<S: GraphState> {
    pub(crate) node: Node<S>,
    pub(crate) task: TaskId,
    pub(crate) input: Arc<S>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) run: RunIds,
    pub(crate) thread_id: Option<Arc<str>>,
    pub(crate) scope: Arc<dyn RunScope>,
    pub(crate) hub: Arc<EventHub>,
}

/// How a task ended.
pub(crate) struct TaskOutcome<S: GraphState> {
    pub(crate) result: Result<NodeOutput<S>, NodeError>,
    pub(crate) attempts: u32,
    pub(crate) duration: Duration,
}

impl<S: GraphState> TaskSpec<S> {
    /// Runs attempts until one succeeds or the retry policy gives up.
    pub(crate) async fn run(self) -> TaskOutcome<S> {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let result = self.attempt(attempt).await;
            match result {
                Err(error) if self.retry.as_ref().is_some_and(|policy| policy.should_retry(attempt, &error)) => {
                    if let Some(policy) = &self.retry {
                        tokio::time::sleep(policy.delay_after(attempt, fastrand::f64())).await;
                    }
                    attempt += 1;
                }
                result => return TaskOutcome { result, attempts: attempt, duration: started.elapsed() },
            }
        }
    }

    async fn attempt(&self, attempt: u32) -> Result<NodeOutput<S>, NodeError> {
        let node_name = &self.task.node;
        let observed = self.hub.enabled();
        if observed {
            let kind = EventKind::TaskStarted { step: self.task.step, node: node_name.clone(), attempt };
            self.hub.emit(self.run, kind).await;
        }
        let started = observed.then(Instant::now);
        let ctx = NodeContext::new(self.task.clone(), attempt, self.run, self.thread_id.clone(), Arc::clone(&self.scope));
        let span = tracing::debug_span!("dashflow.node", node = %node_name, step = self.task.step, attempt);
        // Unwinding out of a node is caught here so that one panicking task fails alone;
        // the node's future is dropped afterwards and never polled again.
        let call = AssertUnwindSafe(self.node.call(Arc::clone(&self.input), ctx)).catch_unwind().instrument(span);
        let result = match self.timeout {
            None => call.await,
            // Dropping the future on timeout cancels the node: a late result cannot arrive.
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(result) => result,
                Err(_) => Ok(Err(timed_out(node_name, limit))),
            },
        };
        let result = result.unwrap_or_else(|payload| Err(panicked(node_name, payload.as_ref())));
        if let Some(started) = started {
            let kind = EventKind::TaskFinished {
                step: self.task.step,
                node: node_name.clone(),
                attempt,
                duration: started.elapsed(),
                error: result.as_ref().err().map(|error| format!("{error:#}")),
            };
            self.hub.emit(self.run, kind).await;
        }
        result
    }
}

fn timed_out(node: &str, limit: Duration) -> NodeError {
    NodeError::msg(format!("node `{node}` timed out after {limit:?} and was cancelled")).with_kind(NodeErrorKind::Timeout)
}

fn panicked(node: &str, payload: &(dyn Any + Send)) -> NodeError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned());
    NodeError::msg(format!("node `{node}` panicked: {message}")).with_kind(NodeErrorKind::Panicked)
}
