//! Sinks that take a run's events in batches: the same events as one by one, current
//! whenever the run waits, one buffer for a run and its subgraph runs.

use std::sync::{Arc, Mutex};

use crate::common::Compiled;
use dashflow_executor::RunConfig;
use dashflow_graph::NodeError;
use dashflow_graph::{END, START, StateGraph};
use dashflow_telemetry::{Event, EventBatch, EventCallback, EventKind, Interest};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::common::{Recorder, Trail, TrailUpdate, describe, log};

/// What the write-ahead log asks for: no task starts, no step ends.
const NARROW: Interest = Interest { tasks_started: false, steps_finished: false, ..Interest::ALL };

/// Keeps each batch it gets.
#[derive(Clone, Default)]
struct Batches(Arc<Mutex<Vec<Vec<Event>>>>);

impl Batches {
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().iter().flatten().cloned().collect()
    }

    fn described(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|event| !matches!(event.kind, EventKind::GraphDefined { .. }))
            .map(|event| describe(&event.kind))
            .collect()
    }
}

impl EventCallback for Batches {
    fn on_event(&self, _: &Event) {
        panic!("a batching sink gets batches only");
    }

    fn interest(&self) -> Interest {
        NARROW
    }

    fn batches(&self) -> bool {
        true
    }

    fn take_batch(&self, batch: EventBatch) {
        assert!(!batch.is_empty(), "no empty batches");
        self.0.lock().unwrap().push(batch.into_events());
    }
}

/// Keeps only the events of `NARROW`, one by one.
#[derive(Clone, Default)]
struct OneByOne(Recorder);

impl EventCallback for OneByOne {
    fn on_event(&self, event: &Event) {
        self.0.on_event(event);
    }

    fn interest(&self) -> Interest {
        NARROW
    }
}

/// `a -> (b, c) -> d -> END`: two one-task steps around a two-task step.
fn diamond() -> StateGraph<Trail> {
    let mut graph = StateGraph::<Trail>::named("diamond");
    graph
        .add_node("a", log("a"))
        .add_node("b", log("b"))
        .add_node("c", log("c"))
        .add_node("d", log("d"))
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("a", "c")
        .add_edge("b", "d")
        .add_edge("c", "d")
        .add_edge("d", END);
    graph
}

#[tokio::test]
async fn a_batching_sink_gets_the_events_a_one_by_one_sink_gets() {
    let (batches, one_by_one) = (Batches::default(), OneByOne::default());
    let app = diamond().compiled().unwrap().with_callback(batches.clone()).with_callback(one_by_one.clone());
    app.invoke(Trail::default(), RunConfig::new()).await.unwrap();

    let recorder = one_by_one.0;
    let one_by_one = recorder.described();
    assert_eq!(
        one_by_one,
        [
            "run diamond",
            "step 1 [\"a\"]",
            "finish 1 a #1",
            "step 2 [\"b\", \"c\"]",
            "finish 2 b #1",
            "finish 2 c #1",
            "step 3 [\"d\"]",
            "finish 3 d #1",
            "completed after 3",
        ]
    );
    assert_eq!(batches.described(), one_by_one);
    // The very events, times and durations included.
    let graph_defined = |event: &Event| matches!(event.kind, EventKind::GraphDefined { .. });
    let batched: Vec<Event> = batches.events().into_iter().filter(|event| !graph_defined(event)).collect();
    let single: Vec<Event> = recorder.events().into_iter().filter(|event| !graph_defined(event)).collect();
    assert_eq!(batched, single);
}

type NodeFuture = BoxFuture<'static, Result<TrailUpdate, NodeError>>;

/// A node that runs once: it says it entered on the returned receiver, waits for the
/// returned sender's signal, and logs `slow`.
fn gated() -> (impl Fn(Arc<Trail>) -> NodeFuture + Send + Sync + 'static, oneshot::Receiver<()>, oneshot::Sender<()>) {
    let (entered_tx, entered) = oneshot::channel::<()>();
    let (release, release_rx) = oneshot::channel::<()>();
    let gate = Arc::new(Mutex::new(Some((entered_tx, release_rx))));
    let node = move |_: Arc<Trail>| {
        let gate = gate.lock().unwrap().take();
        async move {
            let (entered, release) = gate.expect("the gated node runs once");
            entered.send(()).unwrap();
            release.await.unwrap();
            Ok(TrailUpdate::default().log(vec!["slow".to_owned()]))
        }
        .boxed()
    };
    (node, entered, release)
}

/// Runs `counting_loop` once with `sink` as its only callback.
async fn run_counting_loop_with(sink: impl EventCallback) {
    let app = counting_loop().compiled().unwrap().with_callback(sink);
    app.invoke(Trail::default(), RunConfig::new()).await.unwrap();
}

#[tokio::test]
async fn a_batching_sink_has_heard_the_step_a_waiting_node_runs_in() {
    let (slow, entered, release) = gated();
    let mut graph = StateGraph::<Trail>::named("waits");
    graph
        .add_node("quick", log("quick"))
        .add_node("slow", slow)
        .add_edge(START, "quick")
        .add_edge("quick", "slow")
        .add_edge("slow", END);
    let batches = Batches::default();
    let app = graph.compiled().unwrap().with_callback(batches.clone());
    let run = tokio::spawn(async move { app.invoke(Trail::default(), RunConfig::new()).await });

    entered.await.unwrap();
    // `slow` waits for us: everything before it has been handed over, its step included.
    assert_eq!(batches.described(), ["run waits", "step 1 [\"quick\"]", "finish 1 quick #1", "step 2 [\"slow\"]"]);
    release.send(()).unwrap();
    run.await.unwrap().unwrap();
    assert_eq!(
        batches.described(),
        [
            "run waits",
            "step 1 [\"quick\"]",
            "finish 1 quick #1",
            "step 2 [\"slow\"]",
            "finish 2 slow #1",
            "completed after 2"
        ]
    );
}

#[tokio::test]
async fn a_run_and_its_subgraph_runs_share_one_buffer_and_each_event_arrives_once_in_order() {
    let recorded = Batches::default();
    let batches: Arc<dyn EventCallback> = Arc::new(recorded.clone());
    let mut inner = StateGraph::<Trail>::named("inner");
    inner.add_node("x", log("x")).add_node("y", log("y")).add_edge(START, "x").add_edge("x", "y").add_edge("y", END);
    let inner = inner.compiled().unwrap().with_shared_callback(Arc::clone(&batches));
    let mut outer = StateGraph::<Trail>::named("outer");
    outer
        .add_node("before", log("before"))
        .add_node("sub", inner)
        .add_edge(START, "before")
        .add_edge("before", "sub")
        .add_edge("sub", END);
    let app = outer.compiled().unwrap().with_shared_callback(Arc::clone(&batches));
    app.invoke(Trail::default(), RunConfig::new()).await.unwrap();

    assert_eq!(
        recorded.described(),
        [
            "run outer",
            "step 1 [\"before\"]",
            "finish 1 before #1",
            // The subgraph node's step starts, then the child runs inside it.
            "step 2 [\"sub\"]",
            "run inner",
            "step 1 [\"x\"]",
            "finish 1 x #1",
            "step 2 [\"y\"]",
            "finish 2 y #1",
            "completed after 2",
            "finish 2 sub #1",
            "completed after 2",
        ]
    );
    assert_eq!(recorded.0.lock().unwrap().len(), 2, "the child's end hands over once, the parent's once more");
}

/// `count` three times around its own conditional edge, then the end.
fn counting_loop() -> StateGraph<Trail> {
    let mut graph = StateGraph::<Trail>::named("loop");
    graph.add_node("count", crate::common::tick).add_edge(START, "count").add_conditional_edges(
        "count",
        |state: &Trail| if state.count < 3 { "again" } else { "done" },
        [("again", "count"), ("done", END)],
    );
    graph
}

#[tokio::test]
async fn a_batching_sink_alone_gets_compact_entries_that_build_the_events_a_one_by_one_sink_hears() {
    // Alone, the batching sink's steps, task ends and routing decisions are recorded as
    // compact entries; next to a one-by-one sink that wants them too, they would be built.
    let batches = Batches::default();
    run_counting_loop_with(batches.clone()).await;
    let one_by_one = OneByOne::default();
    run_counting_loop_with(one_by_one.clone()).await;

    let heard = one_by_one.0.described();
    assert_eq!(
        heard,
        [
            "run loop",
            "step 1 [\"count\"]",
            "finish 1 count #1",
            "route 1 count -again-> count",
            "step 2 [\"count\"]",
            "finish 2 count #1",
            "route 2 count -again-> count",
            "step 3 [\"count\"]",
            "finish 3 count #1",
            "route 3 count -done-> __end__",
            "completed after 3",
        ]
    );
    assert_eq!(batches.described(), heard);

    // Built from clock readings, the events still tell a consistent story: one run's ids,
    // times that never go backwards, and each task ending its duration after the run began.
    let events = batches.events();
    assert!(events.iter().all(|event| event.run == events[0].run));
    assert!(events.windows(2).all(|pair| pair[0].at <= pair[1].at), "times go forward");
    for event in &events {
        if let EventKind::TaskFinished { duration, .. } = &event.kind {
            assert!(event.at.checked_sub(*duration).is_some_and(|began| began >= events[0].at));
        }
    }
    // A step that follows a lone task's end without waiting starts at that end: one clock
    // reading serves both.
    let times = |wanted: fn(&EventKind) -> bool| -> Vec<_> {
        events.iter().filter(|event| wanted(&event.kind)).map(|event| event.at).collect()
    };
    let starts = times(|kind| matches!(kind, EventKind::SuperstepStarted { .. }));
    let ends = times(|kind| matches!(kind, EventKind::TaskFinished { .. }));
    assert_eq!((starts.len(), ends.len()), (3, 3));
    assert_eq!(starts[1..], ends[..2], "steps 2 and 3 start where the task before ended");
}

#[tokio::test]
async fn each_node_runs_duration_is_its_task_ends_and_spans_from_the_previous_tasks_end() {
    let batches = Batches::default();
    let app = counting_loop().compiled().unwrap().with_callback(batches.clone());
    let result = app.invoke(Trail::default(), RunConfig::new()).await.unwrap();
    let durations: Vec<_> = result.nodes.iter().map(|run| run.duration).collect();
    let events = batches.events();
    let ends: Vec<_> = events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::TaskFinished { duration, .. } => Some((event.at, *duration)),
            _ => None,
        })
        .collect();
    assert_eq!(durations, ends.iter().map(|(_, duration)| Some(*duration)).collect::<Vec<_>>());
    // Steps 2 and 3 began where the task before ended: each such task's start, its end less
    // its duration, is that earlier end (to the nanoseconds the conversions round off).
    for pair in ends.windows(2) {
        let ((previous_end, _), (end, duration)) = (pair[0], pair[1]);
        let start = end - duration;
        let gap = start.duration_since(previous_end).unwrap_or_else(|error| error.duration());
        assert!(gap <= std::time::Duration::from_nanos(5), "{gap:?} between a task's end and the next one's start");
    }
}

#[tokio::test]
async fn a_waiting_run_hands_over_a_one_task_steps_start_built_from_its_compact_entry() {
    // The same as `a_batching_sink_has_heard_the_step_a_waiting_node_runs_in`, through the
    // compact start (no one-by-one sink wants steps here either): the live view of a run
    // waiting in a node names that node.
    let (slow, entered, release) = gated();
    let mut graph = StateGraph::<Trail>::named("live");
    graph.add_node("slow", slow).add_edge(START, "slow").add_edge("slow", END);
    let live = Arc::new(dashflow_telemetry::LiveRuns::new());
    let app = graph.compiled().unwrap().with_shared_callback(Arc::clone(&live) as Arc<dyn EventCallback>);
    let run = tokio::spawn(async move { app.invoke(Trail::default(), RunConfig::new()).await });

    entered.await.unwrap();
    let running: Vec<(u64, Vec<String>)> = live
        .snapshot()
        .iter()
        .map(|run| (run.step, run.running.iter().map(|node| node.to_string()).collect()))
        .collect();
    assert_eq!(running, [(1, vec!["slow".to_owned()])]);
    release.send(()).unwrap();
    run.await.unwrap().unwrap();
    assert!(live.snapshot().is_empty());
}

#[tokio::test]
async fn a_failed_task_and_a_parallel_step_reach_a_batching_sink_alone_as_whole_events() {
    // `a` runs alone and fails after `b` and `c`, a parallel step whose tasks end on the
    // runtime's workers, recorded their ends into the same buffer.
    let mut graph = StateGraph::<Trail>::named("fails");
    graph
        .add_node("b", log("b"))
        .add_node("c", log("c"))
        .add_node("a", |_: Arc<Trail>| async { Err::<TrailUpdate, _>(dashflow_graph::NodeError::msg("boom")) })
        .add_edge(START, "b")
        .add_edge(START, "c")
        .add_edge("b", "a")
        .add_edge("c", "a")
        .add_edge("a", END);
    let batches = Batches::default();
    let app = graph.compiled().unwrap().with_callback(batches.clone());
    app.invoke(Trail::default(), RunConfig::new()).await.unwrap_err();

    let mut heard = batches.described();
    // The parallel tasks end in either order.
    heard[2..4].sort();
    assert_eq!(
        heard,
        [
            "run fails",
            "step 1 [\"b\", \"c\"]",
            "finish 1 b #1",
            "finish 1 c #1",
            "step 2 [\"a\"]",
            "fail 2 a #1: boom",
            "failed after 2: node `a` failed at step 2 after 1 attempt(s) (Failed): boom",
        ]
    );
}

#[tokio::test]
async fn an_events_stream_hears_every_event_while_live_runs_still_follows_the_run() {
    use futures::StreamExt;

    let live = Arc::new(dashflow_telemetry::LiveRuns::new());
    let app = counting_loop().compiled().unwrap().with_shared_callback(Arc::clone(&live) as Arc<dyn EventCallback>);
    let config = RunConfig::new().stream_modes([dashflow_executor::StreamMode::Events]);
    let mut stream = app.stream(Trail::default(), config);
    let mut streamed = Vec::new();
    while let Some(item) = stream.next().await {
        if let dashflow_executor::StreamEvent::Event(event) = item.unwrap()
            && !matches!(event.kind, EventKind::GraphDefined { .. })
        {
            streamed.push(describe(&event.kind));
        }
    }
    // Nothing is folded or held back for a stream: every start, end and decision.
    assert_eq!(streamed.iter().filter(|event| event.starts_with("step ") && !event.ends_with("done")).count(), 3);
    assert_eq!(streamed.iter().filter(|event| event.starts_with("route ")).count(), 3);
    assert_eq!(streamed.iter().filter(|event| event.starts_with("finish ")).count(), 3);
    assert!(live.snapshot().is_empty(), "the finished run left the live view");
}

#[tokio::test]
async fn a_steps_routing_decisions_reach_a_batching_sink_in_decision_order() {
    // `b` decides for the end (built as an event) before `c` decides for `d` (a compact
    // entry): the sink hears them in that order.
    let mut graph = StateGraph::<Trail>::named("decisions");
    graph
        .add_node("b", log("b"))
        .add_node("c", log("c"))
        .add_node("d", log("d"))
        .add_edge(START, "b")
        .add_edge(START, "c")
        .add_conditional_edges("b", |_: &Trail| "stop", [("stop", END)])
        .add_conditional_edges("c", |_: &Trail| "go", [("go", "d")])
        .add_edge("d", END);
    let batches = Batches::default();
    let app = graph.compiled().unwrap().with_callback(batches.clone());
    app.invoke(Trail::default(), RunConfig::new()).await.unwrap();
    let routes: Vec<String> = batches.described().into_iter().filter(|event| event.starts_with("route")).collect();
    assert_eq!(routes, ["route 1 b -stop-> __end__", "route 1 c -go-> d"]);
}
