//! `RunStream`: a run's progress as a `futures::Stream`, driven by the consumer.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use dashflow_graph::{GraphState, NodeName};
use dashflow_telemetry::{Event, RunIds};
use futures::Stream;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::hub::UntypedSink;
use crate::{Error, ExecutionResult};

/// A value a node wrote through `NodeContext::emit`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CustomValue {
    /// The run of the writing node (a subgraph's run for nested nodes).
    pub run: RunIds,
    /// Its superstep.
    pub step: u64,
    /// The writing node.
    pub node: NodeName,
    /// The value.
    pub value: serde_json::Value,
}

/// One item of a run's stream.
#[non_exhaustive]
pub enum StreamEvent<S: GraphState> {
    /// `StreamMode::Values`: the state after superstep `step` (step 0 is the input).
    Values {
        /// The superstep.
        step: u64,
        /// The state; shared, so streaming it copies nothing now (the next superstep copies
        /// the state once if the consumer still holds this).
        state: Arc<S>,
    },
    /// `StreamMode::Updates`: the update one task returned.
    Updates {
        /// The superstep.
        step: u64,
        /// The node.
        node: NodeName,
        /// Its update, before merging.
        update: S::Update,
    },
    /// `StreamMode::Events`: run, superstep, task and routing events.
    Event(Event),
    /// `StreamMode::Custom`: a value a node wrote while running.
    Custom(CustomValue),
    /// The run paused (in every mode, as the stream's last item): before or after `node`
    /// (`interrupt_before`/`interrupt_after`, no value), or because `node` called
    /// `NodeContext::interrupt` with `value`. Answer it with `resume`.
    Interrupted {
        /// The last superstep the run finished before it paused (as in
        /// `EventKind::Interrupted`): a node that interrupts itself in step 2 pauses after 1.
        step: u64,
        /// The node that paused it.
        node: NodeName,
        /// What the node asked (`NodeContext::interrupt`), if it asked.
        value: Option<serde_json::Value>,
    },
}

impl<S: GraphState> Clone for StreamEvent<S> {
    fn clone(&self) -> Self {
        match self {
            Self::Values { step, state } => Self::Values { step: *step, state: Arc::clone(state) },
            Self::Updates { step, node, update } => {
                Self::Updates { step: *step, node: node.clone(), update: update.clone() }
            }
            Self::Event(event) => Self::Event(event.clone()),
            Self::Custom(custom) => Self::Custom(custom.clone()),
            Self::Interrupted { step, node, value } => {
                Self::Interrupted { step: *step, node: node.clone(), value: value.clone() }
            }
        }
    }
}

impl<S> fmt::Debug for StreamEvent<S>
where
    S: GraphState + fmt::Debug,
    S::Update: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Values { step, state } => f.debug_struct("Values").field("step", step).field("state", state).finish(),
            Self::Updates { step, node, update } => {
                f.debug_struct("Updates").field("step", step).field("node", node).field("update", update).finish()
            }
            Self::Event(event) => f.debug_tuple("Event").field(event).finish(),
            Self::Custom(custom) => f.debug_tuple("Custom").field(custom).finish(),
            Self::Interrupted { step, node, value } => {
                f.debug_struct("Interrupted").field("step", step).field("node", node).field("value", value).finish()
            }
        }
    }
}

impl<S> fmt::Display for StreamEvent<S>
where
    S: GraphState + fmt::Debug,
    S::Update: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Values { step, state } => write!(f, "[step {step}] values: {state:?}"),
            Self::Updates { step, node, update } => write!(f, "[step {step}] {node}: {update:?}"),
            Self::Event(event) => write!(f, "event: {:?}", event.kind),
            Self::Custom(custom) => write!(f, "[step {}] {} says: {}", custom.step, custom.node, custom.value),
            Self::Interrupted { step, node, value: Some(value) } => write!(f, "[step {step}] {node} asks: {value}"),
            Self::Interrupted { step, node, value: None } => write!(f, "[step {step}] paused at {node}"),
        }
    }
}

/// The sending half a run writes its stream into.
pub(crate) struct StreamSender<S: GraphState>(pub(crate) mpsc::Sender<StreamEvent<S>>);

impl<S: GraphState> StreamSender<S> {
    /// Waits for room; a consumer that went away is not an error for the run.
    pub(crate) async fn send(&self, event: StreamEvent<S>) {
        let _ = self.0.send(event).await;
    }
}

impl<S: GraphState> UntypedSink for StreamSender<S> {
    fn send_event(&self, event: Event) -> BoxFuture<'static, ()> {
        let tx = self.0.clone();
        Box::pin(async move {
            let _ = tx.send(StreamEvent::Event(event)).await;
        })
    }

    fn send_custom(&self, value: CustomValue) -> BoxFuture<'static, ()> {
        let tx = self.0.clone();
        Box::pin(async move {
            let _ = tx.send(StreamEvent::Custom(value)).await;
        })
    }
}

type Driver<S> = BoxFuture<'static, Result<ExecutionResult<S>, Error>>;

/// A run in progress, as a stream of [`StreamEvent`]s.
///
/// The run advances only while the stream is polled: the consumer's task drives it, nothing
/// is spawned for the run itself, and a consumer that stops reading stops the run once the
/// buffer (`RunConfig::stream_capacity`) is full. Dropping the stream cancels the run: every
/// task of it, those of a parallel step running on the scheduler too, is dropped at its next
/// await and never resumes.
/// A failed run yields its error as the last item. [`RunStream::result`] drains the rest and
/// returns the final result.
pub struct RunStream<S: GraphState> {
    events: Option<mpsc::Receiver<StreamEvent<S>>>,
    driver: Option<Driver<S>>,
    outcome: Option<Result<ExecutionResult<S>, Error>>,
    error_reported: bool,
}

impl<S: GraphState> RunStream<S> {
    pub(crate) fn new(events: Option<mpsc::Receiver<StreamEvent<S>>>, driver: Driver<S>) -> Self {
        Self { events, driver: Some(driver), outcome: None, error_reported: false }
    }

    /// Runs to the end, discarding events not yet read, and returns the result.
    pub async fn result(mut self) -> Result<ExecutionResult<S>, Error> {
        if let Some(driver) = self.driver.take() {
            // Nobody reads the remaining events, so close the buffer: sends then return at
            // once instead of waiting for room.
            drop(self.events.take());
            return driver.await;
        }
        match self.outcome.take() {
            Some(outcome) => outcome,
            None => unreachable_outcome(),
        }
    }
}

#[cold]
fn unreachable_outcome<S>() -> Result<ExecutionResult<S>, Error> {
    // `outcome` is set exactly when `driver` is taken by `poll_next`, and `result` consumes
    // the stream, so this cannot be reached; report it as a lost task rather than panic.
    Err(Error::TaskLost { node: "<run>".into(), step: 0 })
}

// Nothing in a `RunStream` is pinned in place: the run's future is boxed.
impl<S: GraphState> Unpin for RunStream<S> {}

impl<S: GraphState> Stream for RunStream<S> {
    type Item = Result<StreamEvent<S>, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(events) = &mut this.events {
                let received = if this.driver.is_some() {
                    events.poll_recv(cx)
                } else {
                    // The run is over: take what is buffered without waiting for senders
                    // that a node may have leaked.
                    Poll::Ready(events.try_recv().ok())
                };
                if let Poll::Ready(Some(event)) = received {
                    return Poll::Ready(Some(Ok(event)));
                }
            }
            match &mut this.driver {
                Some(driver) => match driver.as_mut().poll(cx) {
                    Poll::Ready(outcome) => {
                        this.driver = None;
                        this.outcome = Some(outcome);
                        // Loop once more to drain what the run sent before finishing.
                    }
                    Poll::Pending => return Poll::Pending,
                },
                None => {
                    return match &this.outcome {
                        Some(Err(error)) if !this.error_reported => {
                            this.error_reported = true;
                            Poll::Ready(Some(Err(error.clone())))
                        }
                        _ => Poll::Ready(None),
                    };
                }
            }
        }
    }
}

impl<S: GraphState> fmt::Debug for RunStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunStream").field("running", &self.driver.is_some()).finish_non_exhaustive()
    }
}
