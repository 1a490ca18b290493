//! States, node builders, ledgers and event renderers shared by the test modules.

use std::fmt::Debug;
use std::future::{Ready, ready};
use std::sync::{Arc, Mutex};

use dashflow_executor::{Error, ExecutionResult, RunStream, StreamEvent};
use dashflow_graph::{GraphState, NodeError};
use dashflow_telemetry::{Event, EventCallback, EventKind};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// A node that logs `name` and records each execution in `ledger`.
pub(crate) fn recorded(
    name: &'static str,
    ledger: &Ledger,
) -> impl Fn(Arc<Trail>) -> ReadyNode + Send + Sync + 'static {
    let ledger = ledger.clone();
    move |_| {
        ledger.push(name);
        std::future::ready(Ok(TrailUpdate::default().log(vec![name.to_owned()])))
    }
}

/// The state most tests use: a log of what ran, a counter, and one overwrite field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
#[graph_state(update_derive(Debug, PartialEq))]
pub(crate) struct Trail {
    /// What the nodes wrote, in the order their updates were applied.
    #[reduce(append)]
    pub(crate) log: Vec<String>,
    /// Summed across updates.
    #[reduce(add)]
    pub(crate) count: u64,
    /// Overwritten; two writers in one superstep conflict.
    pub(crate) note: String,
}

/// The type of the node functions [`log`] and [`saw`] build.
pub(crate) type ReadyNode = Ready<Result<TrailUpdate, NodeError>>;

/// A node that appends its own name to the log.
pub(crate) fn log(name: &'static str) -> impl Fn(Arc<Trail>) -> ReadyNode + Send + Sync + 'static {
    move |_| ready(Ok(TrailUpdate::default().log(vec![name.to_owned()])))
}

/// A node that appends `name:N`, where `N` is the length of the log it read: tasks of one
/// superstep all read the same snapshot, so they all report the same `N`.
pub(crate) fn saw(name: &'static str) -> impl Fn(Arc<Trail>) -> ReadyNode + Send + Sync + 'static {
    move |state| ready(Ok(TrailUpdate::default().log(vec![format!("{name}:{}", state.log.len())])))
}

/// A node that adds one to the counter.
pub(crate) fn tick(_: Arc<Trail>) -> ReadyNode {
    ready(Ok(TrailUpdate::default().count(1_u64)))
}

/// `["a", "b"]` as owned strings, for comparing logs.
pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|&item| item.to_owned()).collect()
}

/// `(step, node)` of every task a run executed, in order.
pub(crate) fn trace<S>(result: &ExecutionResult<S>) -> Vec<(u64, String)> {
    result.nodes.iter().map(|run| (run.step, run.node.to_string())).collect()
}

/// A list shared between a test and the nodes it builds, for recording side effects.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ledger(Arc<Mutex<Vec<String>>>);

impl Ledger {
    pub(crate) fn push(&self, entry: impl Into<String>) {
        self.0.lock().unwrap().push(entry.into());
    }

    pub(crate) fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// The entries, sorted: for effects of parallel tasks, whose order is not specified.
    pub(crate) fn sorted(&self) -> Vec<String> {
        let mut entries = self.entries();
        entries.sort();
        entries
    }
}

/// An event callback that keeps every event it receives.
#[derive(Clone, Debug, Default)]
pub(crate) struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    pub(crate) fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// The events rendered with [`describe`].
    pub(crate) fn described(&self) -> Vec<String> {
        self.events().iter().map(|event| describe(&event.kind)).collect()
    }
}

impl EventCallback for Recorder {
    fn on_event(&self, event: &Event) {
        // The graph description preceding each run is checked once, in `callbacks.rs`.
        if !matches!(event.kind, EventKind::GraphDefined { .. }) {
            self.0.lock().unwrap().push(event.clone());
        }
    }
}

/// A one-line rendering of an event, without its timings, for comparing whole sequences.
pub(crate) fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::RunStarted { graph, thread_id, .. } => match thread_id {
            Some(thread) => format!("run {graph} on {thread}"),
            None => format!("run {graph}"),
        },
        EventKind::RunFinished { outcome, steps, error, .. } => match error {
            Some(error) => format!("{outcome} after {steps}: {error}"),
            None => format!("{outcome} after {steps}"),
        },
        EventKind::SuperstepStarted { step, nodes } => format!("step {step} {nodes:?}"),
        EventKind::SuperstepFinished { step, .. } => format!("step {step} done"),
        EventKind::TaskStarted { step, node, attempt } => format!("start {step} {node} #{attempt}"),
        EventKind::TaskFinished { step, node, attempt, error, .. } => match error {
            Some(error) => format!("fail {step} {node} #{attempt}: {error}"),
            None => format!("finish {step} {node} #{attempt}"),
        },
        EventKind::Routed { step, from, label, target } => format!("route {step} {from} -{label}-> {target}"),
        EventKind::Custom { step, node, value } => format!("custom event {step} {node} {value}"),
        EventKind::CheckpointCommitted { step, snapshot, .. } => {
            format!("checkpoint {step} {}", if *snapshot { "snapshot" } else { "delta" })
        }
        EventKind::Interrupted { step, node, reason, value } => match value {
            Some(value) => format!("interrupted {step} {reason} {node}: {value}"),
            None => format!("interrupted {step} {reason} {node}"),
        },
        other => format!("other {other:?}"),
    }
}

/// A one-line rendering of a stream item, for comparing whole streams.
pub(crate) fn render<S>(event: &StreamEvent<S>) -> String
where
    S: GraphState + Debug,
    S::Update: Debug,
{
    match event {
        StreamEvent::Values { step, state } => format!("values {step} {state:?}"),
        StreamEvent::Updates { step, node, update } => format!("update {step} {node} {update:?}"),
        StreamEvent::Event(event) => describe(&event.kind),
        StreamEvent::Custom(custom) => format!("custom {} {} {}", custom.step, custom.node, custom.value),
        other => format!("other {other:?}"),
    }
}

/// Reads a stream to its end, then returns its items and the run's result.
///
/// Checks on the way what every stream must do: nothing follows an error, and the error the
/// stream yielded is the one `result()` returns.
pub(crate) async fn drain<S: GraphState>(
    mut stream: RunStream<S>,
) -> (Vec<StreamEvent<S>>, Result<ExecutionResult<S>, Error>) {
    let mut events = Vec::new();
    let mut streamed_error = None;
    while let Some(item) = stream.next().await {
        assert!(streamed_error.is_none(), "the stream yielded an item after its error");
        match item {
            // Every run first describes its graph; tests of event order skip that preamble
            // (`callbacks.rs` checks it).
            Ok(StreamEvent::Event(Event { kind: EventKind::GraphDefined { .. }, .. })) => {}
            Ok(event) => events.push(event),
            Err(error) => streamed_error = Some(error),
        }
    }
    let result = stream.result().await;
    match (&result, &streamed_error) {
        (Ok(_), None) => {}
        (Err(returned), Some(streamed)) => assert_eq!(returned.to_string(), streamed.to_string()),
        (Ok(_), Some(streamed)) => panic!("the stream yielded {streamed} but the run succeeded"),
        (Err(returned), None) => panic!("the run failed with {returned} but the stream did not yield it"),
    }
    (events, result)
}

/// Validates a graph and wraps it, with no observers: the executor's own way to compile
/// (the facade's `compile()` is this plus its default observers).
pub(crate) trait Compiled<S: GraphState> {
    fn compiled(self) -> Result<dashflow_executor::CompiledGraph<S>, Error>;
}

impl<S: GraphState> Compiled<S> for dashflow_graph::StateGraph<S> {
    fn compiled(self) -> Result<dashflow_executor::CompiledGraph<S>, Error> {
        Ok(dashflow_executor::CompiledGraph::new(self.build()?))
    }
}
