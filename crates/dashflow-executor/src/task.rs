//! One task of a superstep: attempts, timeout, retry with backoff, panics caught.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use dashflow_telemetry::clock::Tick;

use dashflow_graph::{
    GraphNode, GraphState, NodeContext, NodeError, NodeErrorKind, NodeId, NodeOutput, RunScope, TaskId,
};
use dashflow_telemetry::{Event, EventKind};
use futures::FutureExt;
use tracing::{Instrument, Level};

use crate::compiled::Inner;
use crate::hub::ExecScope;

/// How a task ended.
pub(crate) struct TaskOutcome<S: GraphState> {
    pub(crate) result: Result<NodeOutput<S>, NodeError>,
    pub(crate) attempts: u32,
    /// Measured only when the run is observed or streamed: reading the clock twice per task
    /// would be a large share of an unobserved sequential step.
    pub(crate) duration: Option<Duration>,
}

/// Whether a task can skip the attempt loop: no timeout, no retry policy. It then runs as
/// [`run_bare`] when nothing times it, else as [`run_timed`] unless debug spans are on.
pub(crate) fn is_plain<S: GraphState>(inner: &Inner<S>, node: &GraphNode<S>) -> bool {
    node.options.timeout.is_none()
        && inner.node_timeout.is_none()
        && node.options.retry.is_none()
        && inner.retry.is_none()
}

/// Runs a task in the cheapest way its graph and run allow. `now` is a clock reading taken
/// just before, if the caller has one (a lone task's step start): a timed task starts from
/// it instead of reading the clock again.
pub(crate) async fn run_any<S: GraphState>(
    scope: &Arc<ExecScope>,
    inner: &Inner<S>,
    (id, node): (NodeId, &GraphNode<S>),
    task: TaskId,
    input: Arc<S>,
    timed: bool,
    now: Option<Tick>,
) -> TaskOutcome<S> {
    if !is_plain(inner, node) || (timed && tracing::enabled!(Level::DEBUG)) {
        run_task(scope, inner, (id, node), task, input, timed).await
    } else if timed {
        run_timed(scope, (id, node), task, input, now).await
    } else {
        run_bare(scope, node, task, input).await
    }
}

/// Runs a plain task (see [`is_plain`]) that is timed for its events or the stream: one
/// attempt, at most two clock readings (one when the caller passes `now`), no attempt loop
/// or timeout wrapper.
pub(crate) async fn run_timed<S: GraphState>(
    scope: &Arc<ExecScope>,
    (id, node): (NodeId, &GraphNode<S>),
    task: TaskId,
    input: Arc<S>,
    now: Option<Tick>,
) -> TaskOutcome<S> {
    let step = task.step;
    let started = now.unwrap_or_else(Tick::now);
    if let Some(event) = report_started(scope, node, step, 1, started) {
        scope.hub.stream(event).await;
    }
    let ctx = NodeContext::new(task, 1, scope.run, Arc::clone(scope) as Arc<dyn RunScope>);
    let result = match AssertUnwindSafe(node.node.call(input, ctx)).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => Err(panicked(&node.name, payload.as_ref())),
    };
    let ended = Tick::now();
    if let Some(event) = report_finished(scope, (id, node), (step, 1), (started, ended), &result) {
        scope.hub.stream(event).await;
    }
    TaskOutcome { result, attempts: 1, duration: Some(started.until(ended)) }
}

/// Runs a plain task (see [`is_plain`]) nothing times: one attempt, panics still caught,
/// nothing measured.
pub(crate) async fn run_bare<S: GraphState>(
    scope: &Arc<ExecScope>,
    node: &GraphNode<S>,
    task: TaskId,
    input: Arc<S>,
) -> TaskOutcome<S> {
    let ctx = NodeContext::new(task, 1, scope.run, Arc::clone(scope) as Arc<dyn RunScope>);
    let result = match AssertUnwindSafe(node.node.call(input, ctx)).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => Err(panicked(&node.name, payload.as_ref())),
    };
    TaskOutcome { result, attempts: 1, duration: None }
}

/// Reports that an attempt began at `at` to the callbacks, when any listens; returns the
/// event if the stream wants it too. Synchronous, like [`EventHub::notify`], so a task's
/// future awaits only when it is streamed.
///
/// [`EventHub::notify`]: crate::hub::EventHub::notify
fn report_started<S: GraphState>(
    scope: &ExecScope,
    node: &GraphNode<S>,
    step: u64,
    attempt: u32,
    at: Tick,
) -> Option<Event> {
    let interest = scope.hub.interest();
    let kind = interest.tasks_started.then(|| EventKind::TaskStarted { step, node: node.name.clone(), attempt })?;
    scope.hub.notify(scope.run, kind, at)
}

/// Reports that an attempt running from `span.0` to `span.1` ended with `result`, as
/// [`report_started`] does its start.
fn report_finished<S: GraphState>(
    scope: &ExecScope,
    (id, node): (NodeId, &GraphNode<S>),
    (step, attempt): (u64, u32),
    span: (Tick, Tick),
    result: &Result<NodeOutput<S>, NodeError>,
) -> Option<Event> {
    if !scope.hub.interest().tasks_finished {
        return None;
    }
    let error = result.as_ref().err().map(|error| format!("{error:#}"));
    scope.hub.task_finished(scope.run, (step, id, &node.name, attempt), span, error)
}

/// Runs attempts of `task` until one succeeds or the retry policy gives up.
///
/// Everything is borrowed, so a lone task runs inline without cloning the run's shared
/// parts; a spawned task owns `Arc`s of them and borrows from those. With `timed`, the clock
/// is read once when each attempt starts and once when it ends; those readings give the
/// attempts' durations, the task's, and the times of its events.
pub(crate) async fn run_task<S: GraphState>(
    scope: &Arc<ExecScope>,
    inner: &Inner<S>,
    (id, node): (NodeId, &GraphNode<S>),
    task: TaskId,
    input: Arc<S>,
    timed: bool,
) -> TaskOutcome<S> {
    let started = timed.then(Tick::now);
    let timeout = node.options.timeout.or(inner.node_timeout);
    let retry = node.options.retry.as_ref().or(inner.retry.as_ref());
    let Some(retry) = retry else {
        // One attempt: the input moves into it, no retry bookkeeping.
        let (result, ended) = run_attempt(scope, (id, node), &task, input, 1, started, timeout).await;
        let duration = started.zip(ended).map(|(started, ended)| started.until(ended));
        return TaskOutcome { result, attempts: 1, duration };
    };
    let mut attempt = 1;
    let mut attempt_started = started;
    loop {
        let (result, ended) =
            run_attempt(scope, (id, node), &task, Arc::clone(&input), attempt, attempt_started, timeout).await;
        match result {
            Err(error) if retry.should_retry(attempt, &error) => {
                tokio::time::sleep(retry.delay_after(attempt, fastrand::f64())).await;
                attempt += 1;
                attempt_started = timed.then(Tick::now);
            }
            result => {
                let duration = started.zip(ended).map(|(started, ended)| started.until(ended));
                return TaskOutcome { result, attempts: attempt, duration };
            }
        }
    }
}

/// One attempt; with `started` (the clock reading of its start), also its end's reading.
async fn run_attempt<S: GraphState>(
    scope: &Arc<ExecScope>,
    (id, node): (NodeId, &GraphNode<S>),
    task: &TaskId,
    input: Arc<S>,
    attempt: u32,
    started: Option<Tick>,
    timeout: Option<Duration>,
) -> (Result<NodeOutput<S>, NodeError>, Option<Tick>) {
    if let Some(event) = started.and_then(|at| report_started(scope, node, task.step, attempt, at)) {
        scope.hub.stream(event).await;
    }
    let ctx_scope: Arc<dyn RunScope> = Arc::clone(scope) as Arc<dyn RunScope>;
    let ctx = NodeContext::new(task.clone(), attempt, scope.run, ctx_scope);
    // Unwinding out of a node is caught here so that one panicking task fails alone; the
    // node's future is dropped afterwards and never polled again.
    let call = AssertUnwindSafe(node.node.call(input, ctx)).catch_unwind();
    let result = if tracing::enabled!(Level::DEBUG) {
        let span = tracing::debug_span!("dashflow.node", node = %node.name, step = task.step, attempt);
        with_timeout(call.instrument(span), timeout, &node.name).await
    } else {
        with_timeout(call, timeout, &node.name).await
    };
    let ended = started.map(|_| Tick::now());
    if let Some(event) =
        started.zip(ended).and_then(|span| report_finished(scope, (id, node), (task.step, attempt), span, &result))
    {
        scope.hub.stream(event).await;
    }
    (result, ended)
}

async fn with_timeout<S: GraphState>(
    call: impl Future<Output = std::thread::Result<Result<NodeOutput<S>, NodeError>>>,
    timeout: Option<Duration>,
    node: &str,
) -> Result<NodeOutput<S>, NodeError> {
    let result = match timeout {
        None => call.await,
        // Dropping the future on timeout cancels the node: a late result cannot arrive.
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => return Err(timed_out(node, limit)),
        },
    };
    result.unwrap_or_else(|payload| Err(panicked(node, payload.as_ref())))
}

fn timed_out(node: &str, limit: Duration) -> NodeError {
    NodeError::msg(format!("node `{node}` timed out after {limit:?} and was cancelled"))
        .with_kind(NodeErrorKind::Timeout)
}

fn panicked(node: &str, payload: &(dyn Any + Send)) -> NodeError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned());
    NodeError::msg(format!("node `{node}` panicked: {message}")).with_kind(NodeErrorKind::Panicked)
}
