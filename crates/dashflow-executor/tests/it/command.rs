//! `Command` from inside a node: update plus routing, END, unknown targets, sends.

use std::sync::Arc;

use crate::common::Compiled;
use dashflow_executor::{Error, RunConfig};
use dashflow_graph::{Command, END, START, Send, StateGraph};

use crate::common::{Trail, TrailUpdate, log, strings, trace};

#[tokio::test]
async fn command_update_and_goto_applies_the_update_and_runs_only_the_target() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("decide", |_: Arc<Trail>| async move {
            Ok(Command::update(TrailUpdate::default().log(strings(&["decide"]))).and_goto("b"))
        })
        .add_node("a", log("a"))
        .add_node("b", log("b"))
        .add_edge(START, "decide")
        .add_edge("a", END)
        .add_edge("b", END);
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();

    assert_eq!(result.state.log, ["decide", "b"]);
    assert_eq!(trace(&result), [(1, "decide".into()), (2, "b".into())]);
}

#[tokio::test]
async fn command_goto_end_applies_the_update_and_stops() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("finish", |_: Arc<Trail>| async move {
            Ok(Command::update(TrailUpdate::default().note("finished")).and_goto(END))
        })
        .add_node("never", log("never"))
        .add_edge(START, "finish")
        .add_edge("never", END);
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();

    assert_eq!(result.state.note, "finished");
    assert!(result.state.log.is_empty());
    assert_eq!(result.steps, 1);
}

#[tokio::test]
async fn command_goto_an_unknown_node_is_an_unknown_target_error() {
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("lost", |_: Arc<Trail>| async move { Ok(Command::goto("nowhere")) }).add_edge(START, "lost");
    let error = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap_err();

    match &error {
        Error::UnknownTarget { node, target } => {
            assert_eq!(&**node, "lost");
            assert_eq!(target, "nowhere");
        }
        other => panic!("expected UnknownTarget, got {other:?}"),
    }
    assert_eq!(error.node(), Some("lost"));
}

#[tokio::test]
async fn command_with_sends_runs_one_task_per_send_with_its_own_input() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("dispatch", |_: Arc<Trail>| async move {
            let task = |note: &str| Send::new("work", Trail { note: note.to_owned(), ..Trail::default() });
            Ok(Command::update(TrailUpdate::default().count(1_u64)).and_send(task("first")).and_send(task("second")))
        })
        .add_node("work", |task: Arc<Trail>| async move {
            Ok(TrailUpdate::default().log(vec![format!("work on {} (count {})", task.note, task.count)]))
        })
        .add_edge(START, "dispatch")
        .add_edge("work", END);
    let input = Trail { note: "shared".into(), ..Trail::default() };
    let result = graph.compiled().unwrap().invoke(input, RunConfig::new()).await.unwrap();

    assert_eq!(result.state.log, ["work on first (count 0)", "work on second (count 0)"]);
    assert_eq!(result.state.note, "shared");
    assert_eq!(result.state.count, 1);
    assert_eq!(trace(&result), [(1, "dispatch".into()), (2, "work".into()), (2, "work".into())]);
}

#[tokio::test]
async fn a_node_without_static_edges_can_route_only_by_command() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("loop", |state: Arc<Trail>| async move {
            Ok(if state.count < 3 {
                Command::update(TrailUpdate::default().count(1_u64)).and_goto("loop")
            } else {
                Command::goto(END)
            })
        })
        .add_edge(START, "loop");
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();

    assert_eq!(result.state.count, 3);
    assert_eq!(result.steps, 4);
    assert!(result.nodes_executed().all(|node| node == "loop"));
}

#[tokio::test]
async fn command_targets_are_added_to_the_node_static_edges() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("a", |_: Arc<Trail>| async move { Ok(Command::goto("c")) })
        .add_node("b", log("b"))
        .add_node("c", log("c"))
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", END)
        .add_edge("c", END);
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();

    // Static edges first, then the command's targets.
    assert_eq!(result.state.log, ["b", "c"]);
    assert_eq!(trace(&result), [(1, "a".into()), (2, "b".into()), (2, "c".into())]);
}

#[tokio::test]
async fn a_command_without_update_or_goto_leaves_the_state_and_follows_static_edges() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("noop", |_: Arc<Trail>| async move { Ok(Command::new()) })
        .add_node("next", log("next"))
        .add_edge(START, "noop")
        .add_edge("noop", "next")
        .add_edge("next", END);
    let input = Trail { note: "kept".into(), ..Trail::default() };
    let result = graph.compiled().unwrap().invoke(input, RunConfig::new()).await.unwrap();

    assert_eq!(result.state.note, "kept");
    assert_eq!(result.state.log, ["next"]);
}
