//! Event callbacks on the compiled graph and per run.

use std::sync::Arc;

use crate::common::Compiled;
use dashflow_executor::{CompiledGraph, RunConfig};
use dashflow_graph::{END, NodeContext, NodeError, START, StateGraph};
use dashflow_telemetry::{Event, EventKind, RunOutcome};
use serde_json::json;

use crate::common::{Recorder, Trail, TrailUpdate, log};

fn greeter() -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::named("greeter");
    graph
        .add_node("greet", |_: Arc<Trail>, ctx: NodeContext| async move {
            ctx.emit(json!({ "says": "hello" })).await;
            Ok(TrailUpdate::default().count(1_u64))
        })
        .add_node("bye", log("bye"))
        .add_edge(START, "greet")
        .add_edge("greet", "bye")
        .add_edge("bye", END);
    graph.compiled().unwrap()
}

#[tokio::test]
async fn graph_and_run_callbacks_both_receive_every_event_of_the_run() {
    let on_graph = Recorder::default();
    let on_run = Recorder::default();
    let app = greeter().with_callback(on_graph.clone());
    let result = app.invoke(Trail::default(), RunConfig::thread("t").callback(on_run.clone())).await.unwrap();

    let expected = [
        "run greeter on t",
        "step 1 [\"greet\"]",
        "start 1 greet #1",
        "custom event 1 greet {\"says\":\"hello\"}",
        "finish 1 greet #1",
        "step 1 done",
        "step 2 [\"bye\"]",
        "start 2 bye #1",
        "finish 2 bye #1",
        "step 2 done",
        "completed after 2",
    ];
    assert_eq!(on_graph.described(), expected);
    assert_eq!(on_run.described(), expected);
    assert!(on_graph.events().iter().all(|event| event.run.run_id == result.run_id));

    // The graph's callback hears every later run too; the first run's callback does not.
    app.invoke(Trail::default(), RunConfig::new()).await.unwrap();
    assert_eq!(on_graph.described().len(), 2 * expected.len());
    assert_eq!(on_run.described().len(), expected.len());
}

#[tokio::test]
async fn a_plain_closure_is_a_callback() {
    let finished = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&finished);
    let config = RunConfig::new().callback(move |event: &Event| {
        if let EventKind::RunFinished { outcome, steps, .. } = &event.kind {
            sink.lock().unwrap().push((*outcome, *steps));
        }
    });
    greeter().invoke(Trail::default(), config).await.unwrap();

    assert_eq!(*finished.lock().unwrap(), [(RunOutcome::Completed, 2)]);
}

#[tokio::test]
async fn callbacks_hear_how_a_failed_run_ended() {
    let recorder = Recorder::default();
    let mut graph = StateGraph::<Trail>::named("failing");
    graph
        .add_node("oops", |_: Arc<Trail>| async move { Err::<TrailUpdate, _>(NodeError::msg("oops")) })
        .add_edge(START, "oops")
        .add_edge("oops", END);
    let app = graph.compiled().unwrap().with_callback(recorder.clone());
    app.invoke(Trail::default(), RunConfig::new()).await.unwrap_err();

    let described = recorder.described();
    assert_eq!(described[..3], ["run failing", "step 1 [\"oops\"]", "start 1 oops #1"]);
    assert_eq!(described[3], "fail 1 oops #1: oops");
    assert_eq!(
        described.last().unwrap(),
        "failed after 1: node `oops` failed at step 1 after 1 attempt(s) (Failed): oops"
    );
    let last = recorder.events().pop().unwrap();
    assert!(matches!(last.kind, EventKind::RunFinished { outcome: RunOutcome::Failed, .. }));
}

#[tokio::test]
async fn every_run_first_describes_its_graph_with_the_schema_of_nodes_and_edges() {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&events);
    let mut graph = dashflow_graph::StateGraph::<crate::common::Trail>::named("described");
    graph
        .add_node("only", crate::common::tick)
        .add_edge(dashflow_graph::START, "only")
        .add_edge("only", dashflow_graph::END);
    let app = graph.compiled().unwrap().with_callback(move |event: &dashflow_telemetry::Event| {
        seen.lock().unwrap().push(event.kind.clone());
    });
    app.invoke(crate::common::Trail::default(), dashflow_executor::RunConfig::new()).await.unwrap();
    let events = events.lock().unwrap();
    let dashflow_telemetry::EventKind::GraphDefined { graph, schema } = &events[0] else {
        panic!("the first event is {:?}", events[0]);
    };
    assert_eq!(&**graph, "described");
    assert_eq!(schema["nodes"][0]["name"], "only");
    assert!(matches!(events[1], dashflow_telemetry::EventKind::RunStarted { .. }));
}
