//! One task of a superstep: attempts, timeout, retry with backoff, panics caught.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use dashflow_telemetry::clock::Tick;

use dashflow_graph::__private::{GraphNode, NodeId, RunScope};
use dashflow_graph::{GraphState, NodeContext, NodeError, NodeErrorKind, NodeOutput, RetryPolicy, TaskId};
use dashflow_telemetry::{Event, EventKind};
use futures::FutureExt;
use tokio::time::Instant;
use tracing::{Instrument, Level};

use crate::compiled::Inner;
use crate::hub::ExecScope;

/// How a task ended.
pub(crate) struct TaskOutcome<S: GraphState> {
    pub(crate) result: Result<NodeOutput<S>, NodeError>,
    pub(crate) attempts: u32,
    /// The start and end readings of its attempts (backoff included): measured only when the
    /// run is observed or streamed, since reading the clock for every task would be a large
    /// share of an unobserved sequential step. A duration only when read (`NodeRun`).
    pub(crate) span: Option<(Tick, Tick)>,
    /// The start and end readings of a successful attempt whose end was not reported
    /// because the caller asked to record it itself ([`Timing::Timed`]'s `hold_end`).
    pub(crate) held_end: Option<(Tick, Tick)>,
}

/// Whether a task's attempts are timed: the clock read once when each attempt starts and
/// once when it ends, for the attempts' durations, the task's, and the times of its events.
/// Untimed (nobody listens for task events), nothing is read.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Timing {
    Untimed,
    /// `step_started`: the step's start reading, which a lone task's first start reuses.
    /// `hold_end`: a successful single attempt's end is left to the caller (the loop records
    /// it with its step's routing), in [`TaskOutcome::held_end`].
    Timed {
        step_started: Option<Tick>,
        hold_end: bool,
    },
}

impl Timing {
    /// The timing of one task of a step of several: its start is a reading of its own.
    pub(crate) fn of_one_of_several(self) -> Self {
        match self {
            Timing::Untimed => Timing::Untimed,
            Timing::Timed { .. } => Timing::Timed { step_started: None, hold_end: false },
        }
    }
}

/// Which task of its step an execution is: a [`TaskId`] without the node's name, which is
/// copied (a reference count's atomic increment) only for a node that takes a context.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TaskSlot {
    pub(crate) step: u64,
    pub(crate) index: u32,
}

impl TaskSlot {
    pub(crate) fn id<S: GraphState>(self, node: &GraphNode<S>) -> TaskId {
        TaskId { step: self.step, node: node.name.clone(), index: self.index }
    }
}

/// Runs one task: its attempts (one unless a retry policy asks for more), each with its
/// timeout, panics caught, and when timed, its start and end reported through the run's hub.
/// The one task runner: a lone task inline and the tasks of a parallel step on the scheduler
/// both run here.
pub(crate) async fn run_task<S: GraphState>(
    scope: &Arc<ExecScope>,
    inner: &Inner<S>,
    (id, node): (NodeId, &GraphNode<S>),
    task: TaskSlot,
    input: Arc<S>,
    timing: Timing,
) -> TaskOutcome<S> {
    let (started, hold_end) = match timing {
        Timing::Untimed => (None, false),
        Timing::Timed { step_started, hold_end } => (Some(step_started.unwrap_or_else(Tick::now)), hold_end),
    };
    let timeout = node.options.timeout.or(inner.node_timeout);
    match node.options.retry.as_ref().or(inner.retry.as_ref()) {
        None => {
            // One attempt: the input moves into it, no retry bookkeeping.
            let (result, ended) = run_attempt(scope, (id, node), task, input, (1, started), (timeout, hold_end)).await;
            let span = started.zip(ended);
            let held_end = span.filter(|_| hold_end && result.is_ok());
            TaskOutcome { result, attempts: 1, span, held_end }
        }
        // Boxed: the retry loop's future (with its backoff timer) stays out of every task's.
        Some(retry) => Box::pin(run_retried(scope, (id, node), task, input, started, (timeout, retry))).await,
    }
}

/// Runs attempts of `task` until one succeeds or `retry` gives up (see [`run_task`]).
async fn run_retried<S: GraphState>(
    scope: &Arc<ExecScope>,
    (id, node): (NodeId, &GraphNode<S>),
    task: TaskSlot,
    input: Arc<S>,
    started: Option<Tick>,
    (timeout, retry): (Option<Duration>, &RetryPolicy),
) -> TaskOutcome<S> {
    let mut attempt = 1;
    let mut attempt_started = started;
    loop {
        let (result, ended) =
            run_attempt(scope, (id, node), task, Arc::clone(&input), (attempt, attempt_started), (timeout, false))
                .await;
        match result {
            Err(error) if retry.should_retry(attempt, &error) => {
                tokio::time::sleep(retry.delay_after(attempt, fastrand::f64())).await;
                attempt += 1;
                attempt_started = started.map(|_| Tick::now());
            }
            result => {
                return TaskOutcome { result, attempts: attempt, span: started.zip(ended), held_end: None };
            }
        }
    }
}

/// One attempt; with `started` (the clock reading of its start), also its end's reading.
/// With `hold_end`, a successful end is not reported (see [`Timing::Timed`]).
async fn run_attempt<S: GraphState>(
    scope: &Arc<ExecScope>,
    (id, node): (NodeId, &GraphNode<S>),
    task: TaskSlot,
    input: Arc<S>,
    (attempt, started): (u32, Option<Tick>),
    (timeout, hold_end): (Option<Duration>, bool),
) -> (Result<NodeOutput<S>, NodeError>, Option<Tick>) {
    let step = task.step;
    if let Some(event) = started.and_then(|at| report_started(scope, node, step, attempt, at)) {
        scope.hub.stream(event).await;
    }
    let deadline = timeout.map(|limit| (limit, Instant::now() + limit));
    let ctx = || {
        NodeContext::new(task.id(node), attempt, scope.run, Arc::clone(scope) as Arc<dyn RunScope>)
            .with_deadline(deadline.map(|(_, at)| at))
    };
    // Unwinding out of a node is caught here so that one panicking task fails alone, whether
    // it panics making its future or polling it; the future is dropped afterwards and never
    // polled again.
    let result = match std::panic::catch_unwind(AssertUnwindSafe(|| node.node.call(input, ctx))) {
        Err(payload) => Err(panicked(&node.name, payload.as_ref())),
        Ok(call) => {
            let call = AssertUnwindSafe(call).catch_unwind();
            let debug = tracing::enabled!(Level::DEBUG);
            if deadline.is_none() && !debug {
                call.await.unwrap_or_else(|payload| Err(panicked(&node.name, payload.as_ref())))
            } else {
                // Boxed: the timer and the span stay out of the future of an attempt that has
                // neither.
                let span = debug.then(|| tracing::debug_span!("dashflow.node", node = %node.name, step, attempt));
                Box::pin(with_timeout(call, deadline, span, &node.name)).await
            }
        }
    };
    let ended = started.map(|_| Tick::now());
    if hold_end && result.is_ok() {
        return (result, ended);
    }
    if let Some(event) =
        started.zip(ended).and_then(|span| report_finished(scope, (id, node), (step, attempt), span, &result))
    {
        scope.hub.stream(event).await;
    }
    (result, ended)
}

/// Reports that an attempt began at `at` to the callbacks, when any listens; returns the
/// event if the stream wants it too. Synchronous, like [`EventHub::notify`], so a task's
/// future awaits only when it is streamed.
///
/// [`EventHub::notify`]: crate::hub::EventHub::notify
#[inline]
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

/// Runs `call` until `deadline` (the limit and the instant it ends), inside `span`.
///
/// A result that arrives after the deadline is a timeout, never a success: a node that
/// computes past its deadline without awaiting returns from the very poll in which the timer
/// would have fired (tokio's `timeout` polls its future before its timer), so the deadline
/// is compared again once the result is ready, and a late result is discarded.
async fn with_timeout<S: GraphState>(
    call: impl Future<Output = std::thread::Result<Result<NodeOutput<S>, NodeError>>>,
    deadline: Option<(Duration, Instant)>,
    span: Option<tracing::Span>,
    node: &str,
) -> Result<NodeOutput<S>, NodeError> {
    let call = call.instrument(span.unwrap_or_else(tracing::Span::none));
    let result = match deadline {
        None => call.await,
        // Dropping the future on timeout cancels the node: a late result cannot arrive.
        Some((limit, at)) => match tokio::time::timeout_at(at, call).await {
            Ok(_) if Instant::now() >= at => {
                let message =
                    format!("node `{node}` finished after its timeout of {limit:?}; its result was discarded");
                return Err(NodeError::msg(message).with_kind(NodeErrorKind::Timeout));
            }
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
