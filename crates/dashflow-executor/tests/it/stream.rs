//! Stream modes, several at once, errors at the end of a stream, and backpressure.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::Compiled;
use dashflow_executor::{CompiledGraph, Error, RunConfig, StreamEvent, StreamMode};
use dashflow_graph::{END, NodeContext, NodeError, START, StateGraph};
use dashflow_telemetry::{EventKind, RunIds, RunOutcome};
use futures::StreamExt;
use serde_json::json;

use crate::common::{Trail, TrailUpdate, drain, log, render, strings};

/// `START -> a -> (conditional "next") -> b -> END`, both nodes logging their names.
fn two_steps() -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::named("two-steps");
    graph
        .add_node("a", log("a"))
        .add_node("b", log("b"))
        .add_edge(START, "a")
        .add_conditional_edges("a", |_: &Trail| "next", [("next", "b"), ("stop", END)])
        .add_edge("b", END);
    graph.compiled().unwrap()
}

#[tokio::test]
async fn values_mode_yields_the_input_as_step_zero_then_the_state_after_each_step() {
    let input = Trail { note: "in".into(), ..Trail::default() };
    let config = RunConfig::new().stream_modes([StreamMode::Values]);
    let (events, result) = drain(two_steps().stream(input, config)).await;

    let values: Vec<(u64, Vec<String>)> = events
        .iter()
        .map(|event| match event {
            StreamEvent::Values { step, state } => (*step, state.log.clone()),
            other => panic!("unexpected {}", render(other)),
        })
        .collect();
    assert_eq!(values, [(0, strings(&[])), (1, strings(&["a"])), (2, strings(&["a", "b"]))]);
    assert_eq!(result.unwrap().state.log, ["a", "b"]);
}

#[tokio::test]
async fn updates_mode_yields_each_node_update_as_the_node_returned_it() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("x", log("x"))
        .add_node("y", |_: Arc<Trail>| async move { Ok(TrailUpdate::default().count(2_u64)) })
        .add_node("z", log("z"))
        .add_parallel_edges(START, ["x", "y"])
        .add_join(["x", "y"], "z")
        .add_edge("z", END);
    let config = RunConfig::new().stream_modes([StreamMode::Updates]);
    let (events, result) = drain(graph.compiled().unwrap().stream(Trail::default(), config)).await;

    let updates: Vec<(u64, String, TrailUpdate)> = events
        .into_iter()
        .map(|event| match event {
            StreamEvent::Updates { step, node, update } => (step, node.to_string(), update),
            other => panic!("unexpected {}", render(&other)),
        })
        .collect();
    assert_eq!(
        updates,
        [
            (1, "x".to_owned(), TrailUpdate::default().log(strings(&["x"]))),
            (1, "y".to_owned(), TrailUpdate::default().count(2_u64)),
            (2, "z".to_owned(), TrailUpdate::default().log(strings(&["z"]))),
        ]
    );
    assert_eq!(result.unwrap().state.count, 2);
}

#[tokio::test]
async fn events_mode_reports_run_supersteps_tasks_and_routing_in_order() {
    let config = RunConfig::thread("t-1").stream_modes([StreamMode::Events]);
    let (events, result) = drain(two_steps().stream(Trail::default(), config)).await;
    let result = result.unwrap();

    let rendered: Vec<String> = events.iter().map(render).collect();
    assert_eq!(
        rendered,
        [
            "run two-steps on t-1",
            "step 1 [\"a\"]",
            "start 1 a #1",
            "finish 1 a #1",
            "step 1 done",
            "route 1 a -next-> b",
            "step 2 [\"b\"]",
            "start 2 b #1",
            "finish 2 b #1",
            "step 2 done",
            "completed after 2",
        ]
    );
    for event in &events {
        let StreamEvent::Event(event) = event else { panic!("only events were asked for") };
        assert_eq!(event.run, RunIds::root(result.run_id));
    }
    let last = events.last().unwrap();
    assert!(
        matches!(last, StreamEvent::Event(event) if matches!(event.kind, EventKind::RunFinished { outcome: RunOutcome::Completed, steps: 2, .. }))
    );
}

#[tokio::test]
async fn events_mode_reports_a_route_to_end_with_the_end_target() {
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("a", log("a")).add_edge(START, "a").add_conditional_edges("a", |_: &Trail| "stop", [("stop", END)]);
    let config = RunConfig::new().stream_modes([StreamMode::Events]);
    let (events, _) = drain(graph.compiled().unwrap().stream(Trail::default(), config)).await;

    let routes: Vec<String> = events.iter().map(render).filter(|line| line.starts_with("route")).collect();
    assert_eq!(routes, [format!("route 1 a -stop-> {END}")]);
}

/// A node that emits `tokens` custom values, then logs its name.
fn chatty(
    name: &'static str,
    tokens: &'static [&'static str],
) -> impl Fn(Arc<Trail>, NodeContext) -> futures::future::BoxFuture<'static, Result<TrailUpdate, NodeError>>
+ Send
+ Sync
+ 'static {
    move |_, ctx| {
        Box::pin(async move {
            for token in tokens {
                ctx.emit(json!(token)).await;
            }
            Ok(TrailUpdate::default().log(strings(&[name])))
        })
    }
}

#[tokio::test]
async fn custom_values_arrive_in_emit_order_before_the_task_update() {
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("talk", chatty("talk", &["one", "two", "three"])).add_edge(START, "talk").add_edge("talk", END);
    let config = RunConfig::new().stream_modes([StreamMode::Custom, StreamMode::Updates]);
    let (events, result) = drain(graph.compiled().unwrap().stream(Trail::default(), config)).await;

    let rendered: Vec<String> = events.iter().map(render).collect();
    assert_eq!(
        rendered,
        [
            "custom 1 talk \"one\"",
            "custom 1 talk \"two\"",
            "custom 1 talk \"three\"",
            "update 1 talk TrailUpdate { log: [\"talk\"] }",
        ]
    );
    let StreamEvent::Custom(custom) = &events[0] else { unreachable!("checked above") };
    assert_eq!(custom.run, RunIds::root(result.unwrap().run_id));
}

#[tokio::test]
async fn custom_values_of_parallel_tasks_keep_each_task_order() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("left", chatty("left", &["l1", "l2", "l3"]))
        .add_node("right", chatty("right", &["r1", "r2", "r3"]))
        .add_parallel_edges(START, ["left", "right"])
        .add_edge("left", END)
        .add_edge("right", END);
    let config = RunConfig::new().stream_modes([StreamMode::Custom, StreamMode::Updates]).stream_capacity(1);
    let (events, _) = drain(graph.compiled().unwrap().stream(Trail::default(), config)).await;

    let rendered: Vec<String> = events.iter().map(render).collect();
    for node in ["left", "right"] {
        let own: Vec<&String> = rendered.iter().filter(|line| line.contains(node)).collect();
        let first = &node[..1];
        assert_eq!(own.len(), 4, "{rendered:?}");
        for (index, line) in own[..3].iter().enumerate() {
            assert_eq!(**line, format!("custom 1 {node} \"{first}{}\"", index + 1));
        }
        assert!(own[3].starts_with(&format!("update 1 {node}")), "{rendered:?}");
    }
}

#[tokio::test]
async fn several_modes_at_once_share_one_stream_in_the_order_things_happen() {
    let mut graph = StateGraph::<Trail>::named("mixed");
    graph.add_node("talk", chatty("talk", &["hi"])).add_edge(START, "talk").add_edge("talk", END);
    let config = RunConfig::new().stream_modes([
        StreamMode::Values,
        StreamMode::Updates,
        StreamMode::Events,
        StreamMode::Custom,
    ]);
    let (events, result) = drain(graph.compiled().unwrap().stream(Trail::default(), config)).await;
    result.unwrap();

    let rendered: Vec<String> = events.iter().map(render).collect();
    assert_eq!(
        rendered,
        [
            "run mixed",
            "values 0 Trail { log: [], count: 0, note: \"\" }",
            "step 1 [\"talk\"]",
            "start 1 talk #1",
            // A custom value is reported once, as a custom item, even with events on.
            "custom 1 talk \"hi\"",
            "finish 1 talk #1",
            "update 1 talk TrailUpdate { log: [\"talk\"] }",
            "step 1 done",
            "values 1 Trail { log: [\"talk\"], count: 0, note: \"\" }",
            "completed after 1",
        ]
    );
}

#[tokio::test]
async fn a_stream_without_modes_yields_nothing_and_result_returns_the_final_state() {
    let mut stream = two_steps().stream(Trail::default(), RunConfig::new());
    assert!(stream.next().await.is_none());
    let result = stream.result().await.unwrap();
    assert_eq!(result.state.log, ["a", "b"]);
}

#[tokio::test]
async fn result_after_reading_part_of_a_stream_finishes_the_run() {
    let config = RunConfig::new().stream_modes([StreamMode::Values]);
    let mut stream = two_steps().stream(Trail::default(), config);
    let first = stream.next().await.unwrap().unwrap();
    assert!(matches!(first, StreamEvent::Values { step: 0, .. }));
    let result = stream.result().await.unwrap();
    assert_eq!(result.state.log, ["a", "b"]);
    assert_eq!(result.steps, 2);
}

#[tokio::test]
async fn a_failing_run_yields_its_error_as_the_last_item_and_result_returns_it_too() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("fine", log("fine"))
        .add_node("broken", |_: Arc<Trail>| async move { Err::<TrailUpdate, _>(NodeError::msg("disk full")) })
        .add_edge(START, "fine")
        .add_edge("fine", "broken")
        .add_edge("broken", END);
    let config = RunConfig::new().stream_modes([StreamMode::Updates, StreamMode::Events]);
    let mut stream = graph.compiled().unwrap().stream(Trail::default(), config);

    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item);
    }
    let (last, before) = items.split_last().unwrap();
    assert!(before.iter().all(Result::is_ok));
    let rendered: Vec<String> = before.iter().map(|item| render(item.as_ref().unwrap())).collect();
    assert!(rendered.contains(&"fail 2 broken #1: disk full".to_owned()), "{rendered:?}");
    assert!(rendered.last().unwrap().starts_with("failed after 2: node `broken` failed"), "{rendered:?}");
    let streamed = last.as_ref().unwrap_err();
    assert!(matches!(streamed, Error::NodeFailed { node, step: 2, .. } if &**node == "broken"), "{streamed:?}");

    let returned = stream.result().await.unwrap_err();
    assert!(matches!(&returned, Error::NodeFailed { node, step: 2, .. } if &**node == "broken"), "{returned:?}");
    assert_eq!(returned.to_string(), streamed.to_string());
}

#[tokio::test]
async fn a_slow_consumer_holds_the_run_back_instead_of_buffering_without_bound() {
    const STEPS: usize = 500;
    const CAPACITY: usize = 4;
    let executed = Arc::new(AtomicUsize::new(0));
    let config =
        RunConfig::new().recursion_limit(STEPS as u32).stream_modes([StreamMode::Custom]).stream_capacity(CAPACITY);
    let mut stream = counted_loop(STEPS as u64, &executed).stream(Trail::default(), config);

    let first = stream.next().await.unwrap().unwrap();
    assert!(matches!(&first, StreamEvent::Custom(custom) if custom.value == json!(1)));
    // The buffer holds CAPACITY values and one more node waits in `emit`; nothing else runs
    // until the consumer reads again.
    let ran = executed.load(Ordering::SeqCst);
    assert!(ran <= CAPACITY + 2, "{ran} steps ran ahead of a consumer that read one value");

    let mut values = vec![first];
    while let Some(item) = stream.next().await {
        values.push(item.unwrap());
    }
    let numbers: Vec<u64> = values
        .iter()
        .map(|event| match event {
            StreamEvent::Custom(custom) => custom.value.as_u64().unwrap(),
            other => panic!("unexpected {}", render(other)),
        })
        .collect();
    assert_eq!(numbers, (1..=STEPS as u64).collect::<Vec<_>>());
    assert_eq!(executed.load(Ordering::SeqCst), STEPS);
    assert_eq!(stream.result().await.unwrap().state.count, STEPS as u64);
}

#[tokio::test]
async fn events_mode_alone_carries_no_custom_values_while_callbacks_still_hear_them() {
    let recorder = crate::common::Recorder::default();
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("talk", chatty("talk", &["hi"])).add_edge(START, "talk").add_edge("talk", END);
    let config = RunConfig::new().stream_modes([StreamMode::Events]).callback(recorder.clone());
    let (events, _) = drain(graph.compiled().unwrap().stream(Trail::default(), config)).await;

    let rendered: Vec<String> = events.iter().map(render).collect();
    assert!(rendered.iter().all(|line| !line.contains("custom")), "{rendered:?}");
    assert!(recorder.described().contains(&"custom event 1 talk \"hi\"".to_owned()));
}

/// A loop of `steps` supersteps whose node counts its executions in `executed` and emits
/// the count.
fn counted_loop(steps: u64, executed: &Arc<AtomicUsize>) -> CompiledGraph<Trail> {
    let counter = Arc::clone(executed);
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("step", move |_: Arc<Trail>, ctx: NodeContext| {
            let counter = Arc::clone(&counter);
            async move {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                ctx.emit(json!(n)).await;
                Ok(TrailUpdate::default().count(1_u64))
            }
        })
        .add_edge(START, "step")
        .add_conditional_edges(
            "step",
            move |state: &Trail| if state.count < steps { "again" } else { "done" },
            [("again", "step"), ("done", END)],
        );
    graph.compiled().unwrap()
}

#[tokio::test]
async fn dropping_a_stream_cancels_its_run() {
    let executed = Arc::new(AtomicUsize::new(0));
    let config = RunConfig::new().recursion_limit(100).stream_modes([StreamMode::Custom]).stream_capacity(2);
    let mut stream = counted_loop(100, &executed).stream(Trail::default(), config);
    stream.next().await.unwrap().unwrap();
    drop(stream);

    let ran = executed.load(Ordering::SeqCst);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(executed.load(Ordering::SeqCst), ran);
    assert!(ran < 100);
}

#[tokio::test]
async fn result_finishes_a_run_whose_stream_buffer_is_full() {
    let executed = Arc::new(AtomicUsize::new(0));
    let config = RunConfig::new().recursion_limit(100).stream_modes([StreamMode::Custom]).stream_capacity(1);
    let mut stream = counted_loop(100, &executed).stream(Trail::default(), config);
    stream.next().await.unwrap().unwrap();

    let result = stream.result().await.unwrap();
    assert_eq!(result.state.count, 100);
    assert_eq!(executed.load(Ordering::SeqCst), 100);
}

#[tokio::test]
async fn an_unknown_label_at_start_ends_the_stream_with_the_error_after_the_input() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("a", log("a"))
        .add_conditional_edges(START, |_: &Trail| "nope".to_owned(), [("a", "a")])
        .add_edge("a", END);
    let config = RunConfig::new().stream_modes([StreamMode::Values]);
    let (events, result) = drain(graph.compiled().unwrap().stream(Trail::default(), config)).await;

    assert_eq!(events.iter().map(render).collect::<Vec<_>>(), ["values 0 Trail { log: [], count: 0, note: \"\" }"]);
    let error = result.unwrap_err();
    assert!(
        matches!(&error, Error::UnknownLabel { node, label, .. } if &**node == START && label == "nope"),
        "{error:?}"
    );
}
