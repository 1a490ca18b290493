//! Valid graphs build, and `Graph<S>` indexes their nodes and edges for the executor.

use std::sync::Arc;
use std::time::Duration;

use dashflow_graph::__private::{ConditionalRoute, Join, NodeId, Route, Target};
use dashflow_graph::route::Labels;
use dashflow_graph::{
    END, Graph, NodeContext, NodeOptions, NodeOutput, RetryPolicy, START, Send as SendTask, StateGraph,
};

use crate::support::{Doc, graph_with, jump};

fn id(graph: &Graph<Doc>, name: &str) -> NodeId {
    graph.node_id(name).unwrap_or_else(|| panic!("no node `{name}`"))
}

fn node(graph: &Graph<Doc>, name: &str) -> Target {
    Target::Node(id(graph, name))
}

/// The targets of the direct routes among `routes`, in order.
fn direct_targets(routes: &[Route<Doc>]) -> Vec<Target> {
    routes
        .iter()
        .filter_map(|route| match route {
            Route::Direct(target) => Some(*target),
            Route::Conditional(_) | Route::Send(_) => None,
        })
        .collect()
}

fn only_conditional(routes: &[Route<Doc>]) -> &ConditionalRoute<Doc> {
    match routes {
        [Route::Conditional(conditional)] => conditional,
        _ => panic!("expected exactly one conditional route"),
    }
}

/// Each item of the doc's text, as its own task for `worker`.
fn fan_out(doc: &Doc) -> Vec<SendTask<Doc>> {
    doc.text.split(',').map(|item| SendTask::new("worker", Doc { text: item.to_owned() })).collect()
}

#[test]
fn a_chain_builds_and_indexes_nodes_in_the_order_they_were_added() {
    let mut graph = graph_with(&["a", "b", "c"]);
    graph.add_edge(START, "a").add_edge("a", "b").add_edge("b", "c").add_edge("c", END);
    let graph = graph.build().unwrap();

    assert_eq!(&**graph.name(), "test");
    assert_eq!(graph.node_count(), 3);
    let names: Vec<&str> = graph.nodes().iter().map(|n| &*n.name).collect();
    assert_eq!(names, ["a", "b", "c"]);
    for (index, name) in names.iter().enumerate() {
        assert_eq!(id(&graph, name).index(), index);
        assert_eq!(&*graph.node(id(&graph, name)).name, *name);
    }
    assert_eq!(direct_targets(graph.start_routes()), [node(&graph, "a")]);
    assert_eq!(direct_targets(&graph.node(id(&graph, "a")).routes), [node(&graph, "b")]);
    assert_eq!(direct_targets(&graph.node(id(&graph, "b")).routes), [node(&graph, "c")]);
    assert_eq!(direct_targets(&graph.node(id(&graph, "c")).routes), [Target::End]);
    assert!(graph.joins().is_empty());
}

#[test]
fn entry_and_finish_points_are_edges_from_start_and_to_end() {
    let mut graph = graph_with(&["only"]);
    graph.set_entry_point("only").set_finish_point("only");
    let graph = graph.build().unwrap();
    assert_eq!(direct_targets(graph.start_routes()), [node(&graph, "only")]);
    assert_eq!(direct_targets(&graph.node(id(&graph, "only")).routes), [Target::End]);
}

#[test]
fn target_resolves_nodes_and_end_but_not_start_or_unknown_names() {
    let mut graph = graph_with(&["a"]);
    graph.add_edge(START, "a").add_edge("a", END);
    let graph = graph.build().unwrap();
    assert_eq!(graph.target("__end__"), Some(Target::End));
    assert_eq!(graph.target(END), Some(Target::End));
    assert_eq!(graph.target("a"), Some(node(&graph, "a")));
    assert_eq!(graph.target(START), None);
    assert_eq!(graph.target("ghost"), None);
    assert_eq!(graph.node_id("ghost"), None);
    assert_eq!(graph.node_id(END), None);
}

#[test]
fn a_fan_out_and_join_builds_and_records_each_predecessor_position() {
    let mut graph = graph_with(&["plan", "left", "right", "merge"]);
    graph
        .add_edge(START, "plan")
        .add_parallel_edges("plan", ["left", "right"])
        .add_join(["left", "right"], "merge")
        .add_edge("merge", END);
    let graph = graph.build().unwrap();

    assert_eq!(direct_targets(&graph.node(id(&graph, "plan")).routes), [node(&graph, "left"), node(&graph, "right")],);
    assert_eq!(
        graph.joins(),
        [Join { predecessors: vec![id(&graph, "left"), id(&graph, "right")], target: id(&graph, "merge") }],
    );
    // A join predecessor needs no other outgoing edge, and knows its place in the join.
    assert!(graph.node(id(&graph, "left")).routes.is_empty());
    assert_eq!(graph.node(id(&graph, "left")).joins, [(0, 0)]);
    assert_eq!(graph.node(id(&graph, "right")).joins, [(0, 1)]);
    assert!(graph.node(id(&graph, "merge")).joins.is_empty());
}

#[test]
fn a_join_over_branches_of_different_lengths_builds() {
    let mut graph = graph_with(&["plan", "short", "long1", "long2", "merge"]);
    graph
        .add_edge(START, "plan")
        .add_parallel_edges("plan", ["short", "long1"])
        .add_edge("long1", "long2")
        .add_join(["short", "long2"], "merge")
        .add_edge("merge", END);
    let graph = graph.build().unwrap();
    assert_eq!(graph.joins().len(), 1);
    assert_eq!(graph.node(id(&graph, "long2")).joins, [(0, 1)]);
}

#[test]
fn a_node_may_belong_to_several_joins() {
    let mut graph = graph_with(&["a", "b", "c", "x", "y"]);
    graph
        .add_parallel_edges(START, ["a", "b", "c"])
        .add_join(["a", "b"], "x")
        .add_join(["c", "a"], "y")
        .add_edge("x", END)
        .add_edge("y", END);
    let graph = graph.build().unwrap();
    assert_eq!(graph.node(id(&graph, "a")).joins, [(0, 0), (1, 1)]);
    assert_eq!(graph.joins()[1].target, id(&graph, "y"));
}

#[test]
fn a_loop_with_a_conditional_exit_builds_and_resolves_its_labels() {
    let mut graph = graph_with(&["write"]);
    graph.add_edge(START, "write").add_conditional_edges(
        "write",
        |doc: &Doc| if doc.text.len() < 3 { "more" } else { "done" },
        [("more", "write"), ("done", END)],
    );
    let graph = graph.build().unwrap();

    let conditional = only_conditional(&graph.node(id(&graph, "write")).routes);
    let labels: Vec<&str> = conditional.labels().collect();
    assert_eq!(labels, ["more", "done"]);
    assert_eq!(conditional.resolve_at("more").map(|(_, _, t)| t), Some(node(&graph, "write")));
    assert_eq!(conditional.resolve_at("done").map(|(_, _, t)| t), Some(Target::End));
    assert!(conditional.resolve_at("unknown").is_none());
    assert_eq!(conditional.route(&Doc::default()), Labels::One("more".into()));
    let long = Doc { text: "long enough".to_owned() };
    assert_eq!(conditional.route(&long), Labels::One("done".into()));
}

#[test]
fn a_router_may_choose_several_labels() {
    let mut graph = graph_with(&["a", "b", "c"]);
    graph
        .add_edge(START, "a")
        .add_conditional_edges("a", |_: &Doc| vec!["b", "c"], ["b", "c"])
        .add_edge("b", END)
        .add_edge("c", END);
    let graph = graph.build().unwrap();
    let conditional = only_conditional(&graph.node(id(&graph, "a")).routes);
    let chosen = conditional.route(&Doc::default());
    let targets: Vec<Option<Target>> =
        chosen.iter().map(|label| conditional.resolve_at(label).map(|(_, _, t)| t)).collect();
    assert_eq!(targets, [Some(node(&graph, "b")), Some(node(&graph, "c"))]);
}

#[test]
fn a_conditional_edge_may_leave_start() {
    let mut graph = graph_with(&["a", "b"]);
    graph.add_conditional_edges(START, |_: &Doc| "a", ["a", "b"]).add_edge("a", END).add_edge("b", END);
    let graph = graph.build().unwrap();
    let conditional = only_conditional(graph.start_routes());
    assert_eq!(conditional.resolve_at("b").map(|(_, _, t)| t), Some(node(&graph, "b")));
}

#[test]
fn a_send_edge_builds_and_keeps_its_router() {
    // `plan` has both a send edge and a conditional edge; routes keep the order they were added.
    let mut graph = graph_with(&["plan", "worker"]);
    graph
        .add_edge(START, "plan")
        .add_send_edges("plan", fan_out, ["worker"])
        .add_conditional_edges("plan", |_: &Doc| "done", [("one", "worker"), ("done", END)])
        .add_edge("worker", END);
    let graph = graph.build().unwrap();

    let routes = &graph.node(id(&graph, "plan")).routes;
    assert_eq!(routes.len(), 2);
    let Route::Send(router) = &routes[0] else {
        panic!("the first route of `plan` should be its send edge");
    };
    let sends = router(&Doc { text: "x,y".to_owned() });
    let tasks: Vec<(&str, &str)> = sends.iter().map(|send| (&*send.node, send.input.text.as_str())).collect();
    assert_eq!(tasks, [("worker", "x"), ("worker", "y")]);
}

#[test]
fn a_node_reached_only_through_a_send_edge_is_reachable() {
    // The textbook map-reduce graph: `plan` sends one task per item to `worker`.
    let mut graph = graph_with(&["plan", "worker"]);
    graph.add_edge(START, "plan").add_send_edges("plan", fan_out, ["worker"]).add_edge("worker", END);
    let graph = graph.build().unwrap();
    assert!(matches!(graph.node(id(&graph, "plan")).routes[..], [Route::Send(_)]));
}

#[test]
fn a_send_edge_may_leave_start() {
    let mut graph = graph_with(&["worker"]);
    graph.add_send_edges(START, fan_out, ["worker"]).add_edge("worker", END);
    let graph = graph.build().unwrap();
    assert!(matches!(graph.start_routes(), [Route::Send(_)]));
}

#[test]
fn a_node_behind_a_send_target_is_reachable_too() {
    let mut graph = graph_with(&["plan", "worker", "reduce"]);
    graph
        .add_edge(START, "plan")
        .add_send_edges("plan", fan_out, ["worker"])
        .add_edge("worker", "reduce")
        .add_edge("reduce", END);
    assert_eq!(graph.build().unwrap().node_count(), 3);
}

#[test]
fn a_command_node_builds_with_or_without_static_edges() {
    let mut graph = StateGraph::<Doc>::new();
    graph.add_node("route", jump).add_node("next", jump).add_edge(START, "route").add_edge("route", "next");
    let graph = graph.build().unwrap();
    assert!(graph.node(id(&graph, "route")).node.routes_itself());
    assert!(graph.node(id(&graph, "next")).routes.is_empty());
}

#[test]
fn node_options_are_kept_on_the_indexed_node() {
    let mut graph = StateGraph::<Doc>::new();
    graph
        .add_node_with("fetch", jump, NodeOptions::new().timeout(Duration::from_secs(2)).retry(RetryPolicy::new(5)))
        .add_edge(START, "fetch");
    let graph = graph.build().unwrap();
    let options = &graph.node(id(&graph, "fetch")).options;
    assert_eq!(options.timeout, Some(Duration::from_secs(2)));
    assert_eq!(options.retry.as_ref().map(RetryPolicy::max_attempts), Some(5));
}

#[test]
fn the_builder_reports_its_name_and_contents_in_debug_output() {
    let mut graph = graph_with(&["a", "b"]);
    graph.add_edge(START, "a");
    assert_eq!(graph.name(), "test");
    let debug = format!("{graph:?}");
    assert!(debug.contains(r#"nodes: ["a", "b"]"#), "{debug}");
    assert!(debug.contains("edges: 1"), "{debug}");
    assert_eq!(StateGraph::<Doc>::default().name(), "graph");
}

#[tokio::test]
async fn a_built_node_can_be_called_directly() {
    let mut graph = graph_with(&["a"]);
    graph.add_edge(START, "a").add_edge("a", END);
    let graph = graph.build().unwrap();
    let doc = Arc::new(Doc { text: "hi".to_owned() });
    let output = graph.node(id(&graph, "a")).node.call(doc, || NodeContext::detached("a")).await.unwrap();
    match output {
        NodeOutput::Update(doc) => assert_eq!(doc.text, "hi"),
        NodeOutput::Command(_) => panic!("`step` returns an update"),
    }
}

/// A node of the state alone gets no context made for its calls; a node that takes one gets
/// the one its caller makes.
#[tokio::test]
async fn only_nodes_that_take_a_context_get_one_made() {
    use dashflow_graph::IntoNode;
    let alone =
        (|doc: Arc<Doc>| async move { Ok::<_, dashflow_graph::NodeError>(Doc { text: doc.text.clone() }) }).into_node();
    let with = (|_: Arc<Doc>, ctx: NodeContext| async move {
        Ok::<_, dashflow_graph::NodeError>(Doc { text: ctx.node().to_string() })
    })
    .into_node();
    assert!(!alone.takes_context() && with.takes_context());
    let doc = Arc::new(Doc { text: "hi".to_owned() });
    let made = std::cell::Cell::new(0);
    let context = || {
        made.set(made.get() + 1);
        NodeContext::detached("with")
    };
    let texts =
        [alone.call(Arc::clone(&doc), context).await, with.call(doc, context).await].map(|output| match output {
            Ok(NodeOutput::Update(update)) => update.text,
            other => panic!("{other:?}"),
        });
    assert_eq!(texts, ["hi", "with"]);
    assert_eq!(made.get(), 1, "the context was made for the node that takes one only");
}
