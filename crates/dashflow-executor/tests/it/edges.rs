//! Every static edge type through real runs: direct, parallel, join, conditional.

use std::sync::Arc;

use crate::common::Compiled;
use dashflow_executor::{Error, RunConfig};
use dashflow_graph::{END, START, StateGraph};

use crate::common::{Trail, TrailUpdate, log, saw, strings, tick, trace};

#[tokio::test]
async fn direct_edges_run_one_node_per_superstep_in_order() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("a", log("a"))
        .add_node("b", log("b"))
        .add_node("c", log("c"))
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", "c")
        .add_edge("c", END);
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();

    assert_eq!(result.state.log, ["a", "b", "c"]);
    assert_eq!(result.steps, 3);
    assert_eq!(trace(&result), [(1, "a".into()), (2, "b".into()), (3, "c".into())]);
    assert!(result.nodes.iter().all(|run| run.attempts == 1));
}

#[tokio::test]
async fn parallel_edges_run_their_targets_in_one_superstep_on_the_same_snapshot() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("fork", log("fork"))
        .add_node("x", saw("x"))
        .add_node("y", saw("y"))
        .add_node("z", saw("z"))
        .add_edge(START, "fork")
        .add_parallel_edges("fork", ["x", "y", "z"])
        .add_edge("x", END)
        .add_edge("y", END)
        .add_edge("z", END);
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();

    // All three read the state after `fork` (one entry), and merge in frontier order.
    assert_eq!(result.state.log, ["fork", "x:1", "y:1", "z:1"]);
    assert_eq!(result.steps, 2);
    assert_eq!(trace(&result), [(1, "fork".into()), (2, "x".into()), (2, "y".into()), (2, "z".into())]);
}

#[tokio::test]
async fn parallel_edges_from_start_fan_out_in_the_first_superstep() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("x", saw("x"))
        .add_node("y", saw("y"))
        .add_parallel_edges(START, ["x", "y"])
        .add_edge("x", END)
        .add_edge("y", END);
    let input = Trail { log: strings(&["input"]), ..Trail::default() };
    let result = graph.compiled().unwrap().invoke(input, RunConfig::new()).await.unwrap();

    assert_eq!(result.state.log, ["input", "x:1", "y:1"]);
    assert_eq!(result.steps, 1);
}

#[tokio::test]
async fn a_node_reached_by_two_edges_in_one_superstep_runs_once() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("a", log("a"))
        .add_node("b", log("b"))
        .add_node("c", saw("c"))
        .add_parallel_edges(START, ["a", "b"])
        .add_edge("a", "c")
        .add_edge("b", "c")
        .add_edge("c", END);
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();

    assert_eq!(result.state.log, ["a", "b", "c:2"]);
    assert_eq!(trace(&result), [(1, "a".into()), (1, "b".into()), (2, "c".into())]);
}

#[tokio::test]
async fn join_waits_across_supersteps_for_branches_of_different_lengths() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("short", log("short"))
        .add_node("long1", log("long1"))
        .add_node("long2", log("long2"))
        .add_node("long3", log("long3"))
        .add_node("merge", saw("merge"))
        .add_parallel_edges(START, ["short", "long1"])
        .add_edge("long1", "long2")
        .add_edge("long2", "long3")
        .add_join(["short", "long3"], "merge")
        .add_edge("merge", END);
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();

    // `short` finished in step 1, but `merge` waited for `long3` (step 3) and ran once.
    assert_eq!(result.state.log, ["short", "long1", "long2", "long3", "merge:4"]);
    assert_eq!(
        trace(&result),
        [(1, "short".into()), (1, "long1".into()), (2, "long2".into()), (3, "long3".into()), (4, "merge".into()),]
    );
}

#[tokio::test]
async fn join_fires_again_each_time_a_loop_completes_all_its_predecessors() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("fan", log("fan"))
        .add_node("left", log("left"))
        .add_node("left2", log("left2"))
        .add_node("right", log("right"))
        .add_node("gather", tick)
        .add_edge(START, "fan")
        .add_parallel_edges("fan", ["left", "right"])
        .add_edge("left", "left2")
        .add_join(["left2", "right"], "gather")
        .add_conditional_edges(
            "gather",
            |state: &Trail| if state.count < 3 { "again" } else { "done" },
            [("again", "fan"), ("done", END)],
        );
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();

    assert_eq!(result.state.count, 3);
    let gathers: Vec<u64> = result.nodes.iter().filter(|run| run.node == "gather").map(|run| run.step).collect();
    // Each round is fan, left+right, left2, gather: the join's marks reset after it fires, so
    // `right` finishing early in a later round does not fire it early.
    assert_eq!(gathers, [4, 8, 12]);
    assert_eq!(result.steps, 12);
}

#[tokio::test]
async fn conditional_edge_follows_the_single_label_the_router_returns() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("check", log("check"))
        .add_node("big", log("big"))
        .add_node("small", log("small"))
        .add_edge(START, "check")
        .add_conditional_edges(
            "check",
            |state: &Trail| if state.count > 10 { "large" } else { "tiny" },
            [("large", "big"), ("tiny", "small")],
        )
        .add_edge("big", END)
        .add_edge("small", END);
    let app = graph.compiled().unwrap();

    let small = app.invoke(Trail { count: 1, ..Trail::default() }, RunConfig::new()).await.unwrap();
    assert_eq!(small.state.log, ["check", "small"]);
    let big = app.invoke(Trail { count: 11, ..Trail::default() }, RunConfig::new()).await.unwrap();
    assert_eq!(big.state.log, ["check", "big"]);
}

#[tokio::test]
async fn conditional_router_reads_the_state_after_the_step_update() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("set", |_: Arc<Trail>| async move { Ok(TrailUpdate::default().note("go")) })
        .add_node("went", log("went"))
        .add_edge(START, "set")
        .add_conditional_edges(
            "set",
            |state: &Trail| if state.note == "go" { "go" } else { "stop" },
            [("go", "went"), ("stop", END)],
        )
        .add_edge("went", END);
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();

    assert_eq!(result.state.log, ["went"]);
}

#[tokio::test]
async fn conditional_edge_with_several_labels_runs_every_mapped_target_in_parallel() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("pick", log("pick"))
        .add_node("x", saw("x"))
        .add_node("y", saw("y"))
        .add_node("z", saw("z"))
        .add_edge(START, "pick")
        // Bare names map to themselves; the router returns labels in its own order.
        .add_conditional_edges("pick", |_: &Trail| vec!["z", "x"], ["x", "y", "z"])
        .add_edge("x", END)
        .add_edge("y", END)
        .add_edge("z", END);
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();

    // Frontier order is the order of the labels.
    assert_eq!(result.state.log, ["pick", "z:1", "x:1"]);
    assert_eq!(trace(&result), [(1, "pick".into()), (2, "z".into()), (2, "x".into())]);
}

#[tokio::test]
async fn conditional_label_mapped_to_end_stops_only_that_branch() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("pick", log("pick"))
        .add_node("more", log("more"))
        .add_edge(START, "pick")
        .add_conditional_edges(
            "pick",
            |state: &Trail| if state.count == 0 { vec!["stop"] } else { vec!["stop", "go"] },
            [("stop", END), ("go", "more")],
        )
        .add_edge("more", END);
    let app = graph.compiled().unwrap();

    let stopped = app.invoke(Trail::default(), RunConfig::new()).await.unwrap();
    assert_eq!(stopped.state.log, ["pick"]);
    assert_eq!(stopped.steps, 1);

    let continued = app.invoke(Trail { count: 1, ..Trail::default() }, RunConfig::new()).await.unwrap();
    assert_eq!(continued.state.log, ["pick", "more"]);
}

#[tokio::test]
async fn unknown_router_label_at_run_time_is_an_error_naming_node_and_label() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("check", log("check"))
        .add_node("a", log("a"))
        .add_node("b", log("b"))
        .add_edge(START, "check")
        // The label is computed, so compile() cannot know it is unmapped.
        .add_conditional_edges("check", |state: &Trail| format!("label-{}", state.count), [("a", "a"), ("b", "b")])
        .add_edge("a", END)
        .add_edge("b", END);
    let error = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap_err();

    match &error {
        Error::UnknownLabel { node, label, known } => {
            assert_eq!(&**node, "check");
            assert_eq!(label, "label-0");
            assert_eq!(known, "a, b");
        }
        other => panic!("expected UnknownLabel, got {other:?}"),
    }
    assert_eq!(error.node(), Some("check"));
    let message = error.to_string();
    assert!(message.contains("`check`") && message.contains("`label-0`"), "{message}");
}

#[tokio::test]
async fn conditional_edge_from_start_picks_the_first_node() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("fast", log("fast"))
        .add_node("slow", log("slow"))
        .add_conditional_edges(
            START,
            |state: &Trail| if state.note == "hurry" { "fast" } else { "slow" },
            ["fast", "slow"],
        )
        .add_edge("fast", END)
        .add_edge("slow", END);
    let app = graph.compiled().unwrap();

    let hurried = app.invoke(Trail { note: "hurry".into(), ..Trail::default() }, RunConfig::new()).await.unwrap();
    assert_eq!(hurried.state.log, ["fast"]);
    assert_eq!(trace(&hurried), [(1, "fast".into())]);
    let relaxed = app.invoke(Trail::default(), RunConfig::new()).await.unwrap();
    assert_eq!(relaxed.state.log, ["slow"]);
}

#[tokio::test]
async fn a_conditional_edge_from_start_to_end_runs_no_superstep() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("work", log("work"))
        .add_conditional_edges(
            START,
            |state: &Trail| if state.count == 0 { "skip" } else { "work" },
            [("skip", END), ("work", "work")],
        )
        .add_edge("work", END);
    let input = Trail { note: "untouched".into(), ..Trail::default() };
    let result = graph.compiled().unwrap().invoke(input.clone(), RunConfig::new()).await.unwrap();

    assert_eq!(result.state, input);
    assert_eq!(result.steps, 0);
    assert!(result.nodes.is_empty());
}
