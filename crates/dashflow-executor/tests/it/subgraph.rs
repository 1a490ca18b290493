//! Compiled graphs as nodes: same state, mapped state, nested run ids, forwarded events.

use std::sync::{Arc, Mutex};

use crate::common::Compiled;
use dashflow_executor::{CompiledGraph, Error, RunConfig, StreamEvent, StreamMode, Subgraph};
use dashflow_graph::{END, GraphState, NodeContext, NodeError, START, StateGraph};
use dashflow_telemetry::{EventKind, RunIds};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::common::{Recorder, Trail, TrailUpdate, describe, drain, log, strings};

/// `START -> inner1 -> inner2 -> END`, appending and counting.
fn child() -> CompiledGraph<Trail> {
    let step = |name: &'static str| {
        move |_: Arc<Trail>| async move { Ok(TrailUpdate::default().log(strings(&[name])).count(1_u64)) }
    };
    let mut graph = StateGraph::<Trail>::named("child");
    graph
        .add_node("inner1", step("inner1"))
        .add_node("inner2", step("inner2"))
        .add_edge(START, "inner1")
        .add_edge("inner1", "inner2")
        .add_edge("inner2", END);
    graph.compiled().unwrap()
}

/// `START -> before -> sub -> after -> END`.
fn parent_of(sub: CompiledGraph<Trail>) -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::named("parent");
    graph
        .add_node("before", log("before"))
        .add_node("sub", sub)
        .add_node("after", log("after"))
        .add_edge(START, "before")
        .add_edge("before", "sub")
        .add_edge("sub", "after")
        .add_edge("after", END);
    graph.compiled().unwrap()
}

#[tokio::test]
async fn a_same_state_subgraph_folds_its_steps_into_one_update_without_duplicating_appends() {
    let config = RunConfig::new().stream_modes([StreamMode::Updates]);
    let (events, result) = drain(parent_of(child()).stream(Trail::default(), config)).await;
    let result = result.unwrap();

    assert_eq!(result.state.log, ["before", "inner1", "inner2", "after"]);
    assert_eq!(result.state.count, 2);
    // The parent sees one task for the whole child run, whose update holds only the child's
    // own additions (not the `before` entry it was given).
    assert_eq!(result.nodes_executed().collect::<Vec<_>>(), ["before", "sub", "after"]);
    let sub_updates: Vec<&TrailUpdate> = events
        .iter()
        .filter_map(|event| match event {
            StreamEvent::Updates { node, update, .. } if &**node == "sub" => Some(update),
            _ => None,
        })
        .collect();
    assert_eq!(sub_updates, [&TrailUpdate::default().log(strings(&["inner1", "inner2"])).count(2_u64)]);
}

#[tokio::test]
async fn a_same_state_subgraph_that_changes_nothing_leaves_the_parent_state_alone() {
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("skip", |_: Arc<Trail>| async move { Ok(TrailUpdate::default()) });
    graph.add_conditional_edges(START, |_: &Trail| "end", [("end", END), ("skip", "skip")]).add_edge("skip", END);
    let input = Trail { note: "kept".into(), ..Trail::default() };
    let result = parent_of(graph.compiled().unwrap()).invoke(input, RunConfig::new()).await.unwrap();

    assert_eq!(result.state.log, ["before", "after"]);
    assert_eq!(result.state.note, "kept");
}

/// A child with its own state type: sums numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Sums {
    numbers: Vec<u64>,
    #[reduce(add)]
    total: u64,
    #[reduce(append)]
    seen: Vec<String>,
}

fn summing_child() -> CompiledGraph<Sums> {
    let mut graph = StateGraph::<Sums>::named("summer");
    graph
        .add_node("sum_even", |sums: Arc<Sums>| async move {
            Ok(SumsUpdate::default()
                .total(sums.numbers.iter().filter(|n| *n % 2 == 0).sum::<u64>())
                .seen(strings(&["even"])))
        })
        .add_node("sum_odd", |sums: Arc<Sums>| async move {
            Ok(SumsUpdate::default()
                .total(sums.numbers.iter().filter(|n| *n % 2 == 1).sum::<u64>())
                .seen(strings(&["odd"])))
        })
        .add_parallel_edges(START, ["sum_even", "sum_odd"])
        .add_edge("sum_even", END)
        .add_edge("sum_odd", END);
    graph.compiled().unwrap()
}

#[tokio::test]
async fn a_mapped_subgraph_runs_with_its_own_state_type_and_maps_the_result_back() {
    let sub = Subgraph::mapped(
        summing_child(),
        |parent: &Trail| Sums { numbers: (1..=parent.count).collect(), ..Sums::default() },
        |child: Sums| TrailUpdate::default().note(format!("total {} from {}", child.total, child.seen.join("+"))),
    );
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("sum", sub).add_edge(START, "sum").add_edge("sum", END);
    let input = Trail { count: 4, ..Trail::default() };
    let result = graph.compiled().unwrap().invoke(input, RunConfig::new()).await.unwrap();

    assert_eq!(result.state.note, "total 10 from even+odd");
    assert_eq!(result.state.count, 4);
}

#[tokio::test]
async fn a_subgraph_run_is_nested_one_level_under_the_parent_run() {
    let seen: Arc<Mutex<Vec<(String, RunIds)>>> = Arc::default();
    let record = |name: &'static str| {
        let seen = Arc::clone(&seen);
        move |_: Arc<Trail>, ctx: NodeContext| {
            seen.lock().unwrap().push((name.to_owned(), *ctx.run()));
            async move { Ok(TrailUpdate::default()) }
        }
    };
    let mut inner = StateGraph::<Trail>::new();
    inner.add_node("inner", record("inner")).add_edge(START, "inner").add_edge("inner", END);
    let mut outer = StateGraph::<Trail>::new();
    outer
        .add_node("outer", record("outer"))
        .add_node("sub", inner.compiled().unwrap())
        .add_edge(START, "outer")
        .add_edge("outer", "sub")
        .add_edge("sub", END);
    let result = outer.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    let [(outer_name, outer_ids), (inner_name, inner_ids)] = seen.as_slice() else {
        panic!("expected two recorded nodes, got {seen:?}");
    };
    assert_eq!((outer_name.as_str(), inner_name.as_str()), ("outer", "inner"));
    assert_eq!(*outer_ids, RunIds::root(result.run_id));
    assert_eq!(inner_ids.depth, 1);
    assert_eq!(inner_ids.parent_run_id, Some(outer_ids.run_id));
    assert_eq!(inner_ids.root_run_id, outer_ids.root_run_id);
    assert_ne!(inner_ids.run_id, outer_ids.run_id);
}

#[tokio::test]
async fn subgraphs_nest_two_levels_deep_with_one_root() {
    let seen: Arc<Mutex<Vec<RunIds>>> = Arc::default();
    let deepest = {
        let seen = Arc::clone(&seen);
        let mut graph = StateGraph::<Trail>::new();
        graph
            .add_node("deepest", move |_: Arc<Trail>, ctx: NodeContext| {
                seen.lock().unwrap().push(*ctx.run());
                async move { Ok(TrailUpdate::default().log(strings(&["deepest"]))) }
            })
            .add_edge(START, "deepest")
            .add_edge("deepest", END);
        graph.compiled().unwrap()
    };
    let mut middle = StateGraph::<Trail>::new();
    middle.add_node("level2", deepest).add_edge(START, "level2").add_edge("level2", END);
    let mut top = StateGraph::<Trail>::new();
    top.add_node("level1", middle.compiled().unwrap()).add_edge(START, "level1").add_edge("level1", END);
    let result = top.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();

    assert_eq!(result.state.log, ["deepest"]);
    let ids = seen.lock().unwrap()[0];
    assert_eq!(ids.depth, 2);
    assert_eq!(ids.root_run_id, result.run_id);
    assert_ne!(ids.parent_run_id, Some(result.run_id));
}

#[tokio::test]
async fn events_and_custom_values_of_a_child_run_reach_the_parent_stream_and_callbacks_with_the_child_ids() {
    let mut inner = StateGraph::<Trail>::named("chatty-child");
    inner
        .add_node("speak", |_: Arc<Trail>, ctx: NodeContext| async move {
            ctx.emit(json!("from the child")).await;
            Ok(TrailUpdate::default().log(strings(&["speak"])))
        })
        .add_edge(START, "speak")
        .add_edge("speak", END);
    let recorder = Recorder::default();
    let config = RunConfig::new().stream_modes([StreamMode::Events, StreamMode::Custom]).callback(recorder.clone());
    let (events, result) = drain(parent_of(inner.compiled().unwrap()).stream(Trail::default(), config)).await;
    let result = result.unwrap();
    let root = RunIds::root(result.run_id);

    let streamed: Vec<_> = events
        .iter()
        .filter_map(|event| match event {
            StreamEvent::Event(event) => Some(event.clone()),
            _ => None,
        })
        .collect();
    let child_run = streamed
        .iter()
        .find(|event| matches!(&event.kind, EventKind::RunStarted { graph, .. } if &**graph == "chatty-child"))
        .expect("the child's run start reaches the parent's stream")
        .run;
    assert_eq!(child_run.depth, 1);
    assert_eq!(child_run.parent_run_id, Some(root.run_id));
    assert_eq!(child_run.root_run_id, root.run_id);
    assert!(streamed.iter().any(|event| event.run == child_run
        && matches!(&event.kind, EventKind::TaskFinished { node, .. } if &**node == "speak")));
    // The parent's own events carry the parent's ids.
    assert!(streamed.iter().any(
        |event| event.run == root && matches!(&event.kind, EventKind::TaskStarted { node, .. } if &**node == "sub")
    ));
    // Events of the child run sit inside the parent's `sub` task.
    let position = |run: RunIds, wanted: &str| {
        streamed.iter().position(|event| event.run == run && describe(&event.kind) == wanted).unwrap()
    };
    assert!(position(root, "start 2 sub #1") < position(child_run, "run chatty-child"));
    assert!(position(child_run, "completed after 1") < position(root, "finish 2 sub #1"));

    let custom: Vec<_> = events
        .iter()
        .filter_map(|event| match event {
            StreamEvent::Custom(custom) => Some(custom.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(custom.len(), 1);
    assert_eq!((custom[0].run, &*custom[0].node, &custom[0].value), (child_run, "speak", &json!("from the child")));

    // The run's callback saw the child's events too: the streamed ones, plus the custom value
    // (which the stream reports as a custom item instead).
    let of_child = |events: &[dashflow_telemetry::Event]| -> Vec<String> {
        events.iter().filter(|event| event.run == child_run).map(|event| describe(&event.kind)).collect()
    };
    let mut expected = of_child(&streamed);
    expected.insert(3, "custom event 1 speak \"from the child\"".to_owned());
    assert_eq!(of_child(&recorder.events()), expected);
}

#[tokio::test]
async fn a_child_graph_callback_sees_its_nested_runs() {
    let child_recorder = Recorder::default();
    let app = parent_of(child().with_callback(child_recorder.clone()));
    let result = app.invoke(Trail::default(), RunConfig::new()).await.unwrap();

    let events = child_recorder.events();
    assert!(!events.is_empty());
    assert!(events.iter().all(|event| event.run.parent_run_id == Some(result.run_id) && event.run.depth == 1));
    assert_eq!(child_recorder.described().first().map(String::as_str), Some("run child"));
}

#[tokio::test]
async fn a_failing_child_fails_the_parent_node_with_the_child_error_as_source() {
    let mut inner = StateGraph::<Trail>::new();
    inner
        .add_node("inner_fail", |_: Arc<Trail>| async move { Err::<TrailUpdate, _>(NodeError::msg("child broke")) })
        .add_edge(START, "inner_fail")
        .add_edge("inner_fail", END);
    let app = parent_of(inner.compiled().unwrap());
    let error = app.invoke(Trail::default(), RunConfig::new()).await.unwrap_err();

    let Error::NodeFailed { node, step, source, .. } = &error else { panic!("expected NodeFailed, got {error:?}") };
    assert_eq!((&**node, *step), ("sub", 2));
    let child_error = source.downcast_ref::<Error>().expect("the source is the child run's error");
    assert!(
        matches!(child_error, Error::NodeFailed { node, step: 1, .. } if &**node == "inner_fail"),
        "{child_error:?}"
    );
}

/// `START -> spin (loop until count reaches until) -> END`, as a child graph.
fn spinning_child(until: u64) -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::named("spinner");
    graph.add_node("spin", crate::common::tick).add_edge(START, "spin").add_conditional_edges(
        "spin",
        move |state: &Trail| if state.count < until { "again" } else { "done" },
        [("again", "spin"), ("done", END)],
    );
    graph.compiled().unwrap()
}

#[tokio::test]
async fn a_subgraph_runs_under_the_recursion_limit_of_the_run_that_started_it() {
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("sub", spinning_child(30)).add_edge(START, "sub").add_edge("sub", END);
    let app = graph.compiled().unwrap();

    let error = app.invoke(Trail::default(), RunConfig::new()).await.unwrap_err();
    let Error::NodeFailed { node, source, .. } = &error else { panic!("expected NodeFailed, got {error:?}") };
    assert_eq!(&**node, "sub");
    assert!(matches!(source.downcast_ref::<Error>(), Some(Error::RecursionLimit { limit: 25 })), "{source:?}");

    let result = app.invoke(Trail::default(), RunConfig::new().recursion_limit(30)).await.unwrap();
    assert_eq!(result.state.count, 30);
    assert_eq!(result.steps, 1);
}
