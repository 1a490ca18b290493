//! R15: `build()` rejects an invalid graph with a typed `GraphError` naming the node, edge or
//! label at fault, and its message says how to fix it.

use dashflow_graph::{END, GraphError, START, Send as SendTask, StateGraph};

use crate::support::{Doc, build_error, graph_with, jump, step};

fn unknown(node: &str, edge: &str) -> GraphError {
    GraphError::UnknownNode { node: node.into(), edge: edge.to_owned() }
}

/// Adds an edge to a graph under test.
type AddEdge = fn(&mut StateGraph<Doc>);

fn no_sends(_: &Doc) -> Vec<SendTask<Doc>> {
    Vec::new()
}

#[test]
fn a_graph_without_an_edge_from_start_has_no_entry_point() {
    let mut graph = graph_with(&["a"]);
    graph.add_edge("a", END);
    assert_eq!(build_error(graph), GraphError::NoEntryPoint);
}

#[test]
fn an_empty_graph_has_no_entry_point() {
    assert_eq!(build_error(StateGraph::<Doc>::new()), GraphError::NoEntryPoint);
}

#[test]
fn an_edge_to_an_unknown_node_names_the_node_and_describes_the_edge() {
    let mut graph = graph_with(&["a"]);
    graph.add_edge(START, "a").add_edge("a", "ghost");
    assert_eq!(build_error(graph), unknown("ghost", "the edge `a` -> `ghost`"));
}

#[test]
fn an_edge_from_an_unknown_node_names_that_node() {
    let mut graph = graph_with(&["a"]);
    graph.add_edge(START, "a").add_edge("a", END).add_edge("ghost", "a");
    assert_eq!(build_error(graph), unknown("ghost", "the edge `ghost` -> `a`"));
}

#[test]
fn an_entry_point_to_an_unknown_node_is_an_unknown_node() {
    let mut graph = graph_with(&["a"]);
    graph.set_entry_point("ghost").set_finish_point("a");
    assert_eq!(build_error(graph), unknown("ghost", "the edge `__start__` -> `ghost`"));
}

#[test]
fn a_parallel_edge_to_an_unknown_node_is_described_as_parallel() {
    let mut graph = graph_with(&["a", "b"]);
    graph.add_edge(START, "a").add_parallel_edges("a", ["b", "ghost"]).add_edge("b", END);
    assert_eq!(build_error(graph), unknown("ghost", "the parallel edge from `a`"));
}

#[test]
fn a_parallel_edge_from_an_unknown_node_names_that_node() {
    let mut graph = graph_with(&["a"]);
    graph.add_edge(START, "a").add_edge("a", END).add_parallel_edges("ghost", ["a"]);
    assert_eq!(build_error(graph), unknown("ghost", "the parallel edge from `ghost`"));
}

#[test]
fn adding_a_node_twice_is_a_duplicate_node() {
    let mut graph = graph_with(&["a", "b", "a"]);
    graph.add_edge(START, "a").add_edge("a", "b").add_edge("b", END);
    assert_eq!(build_error(graph), GraphError::DuplicateNode { node: "a".into() });
}

#[test]
fn a_duplicate_is_reported_even_when_the_second_node_has_another_shape() {
    let mut graph = graph_with(&["a"]);
    graph.add_node("a", jump).add_edge(START, "a").add_edge("a", END);
    assert_eq!(build_error(graph), GraphError::DuplicateNode { node: "a".into() });
}

#[test]
fn start_and_end_are_reserved_node_names() {
    for reserved in [START, END] {
        let mut graph = graph_with(&["a"]);
        graph.add_node(reserved, step).add_edge(START, "a").add_edge("a", END);
        assert_eq!(
            build_error(graph),
            GraphError::InvalidNodeName { node: reserved.into(), reason: "START and END are reserved" },
        );
    }
}

#[test]
fn an_empty_or_blank_node_name_is_rejected() {
    for blank in ["", "   ", "\t\n"] {
        let mut graph = graph_with(&["a"]);
        graph.add_node(blank, step).add_edge(START, "a").add_edge("a", END);
        assert_eq!(
            build_error(graph),
            GraphError::InvalidNodeName { node: blank.into(), reason: "node names must not be empty" },
        );
    }
}

#[test]
fn mistakes_made_while_adding_nodes_are_reported_before_edge_mistakes() {
    let mut graph = graph_with(&["a"]);
    graph.add_edge(START, "ghost").add_node("a", step).add_node("", step);
    assert_eq!(build_error(graph), GraphError::DuplicateNode { node: "a".into() });
}

#[test]
fn a_node_no_edge_reaches_is_unreachable() {
    let mut graph = graph_with(&["a", "orphan"]);
    graph.add_edge(START, "a").add_edge("a", END).add_edge("orphan", END);
    assert_eq!(build_error(graph), GraphError::UnreachableNode { node: "orphan".into() });
}

#[test]
fn an_island_of_nodes_that_only_reach_each_other_is_unreachable() {
    let mut graph = graph_with(&["a", "b", "c"]);
    graph.add_edge(START, "a").add_edge("a", END).add_edge("b", "c").add_edge("c", "b");
    assert_eq!(build_error(graph), GraphError::UnreachableNode { node: "b".into() });
}

#[test]
fn a_join_whose_predecessors_cannot_all_run_leaves_its_target_unreachable() {
    let mut graph = graph_with(&["a", "c", "b", "d"]);
    graph
        .add_edge(START, "a")
        .add_edge("a", END)
        .add_edge("b", END)
        .add_join(["a", "b"], "c")
        .add_edge("c", END)
        .add_edge("d", "b");
    // `b` and `d` are unreachable too; `c` is reported because it was added first.
    assert_eq!(build_error(graph), GraphError::UnreachableNode { node: "c".into() });
}

#[test]
fn a_node_without_an_outgoing_edge_is_a_dead_end() {
    let mut graph = graph_with(&["a", "b"]);
    graph.add_edge(START, "a").add_edge("a", "b");
    assert_eq!(build_error(graph), GraphError::DeadEnd { node: "b".into() });
}

#[test]
fn a_join_target_without_an_outgoing_edge_is_a_dead_end() {
    let mut graph = graph_with(&["a", "b", "c"]);
    graph.add_parallel_edges(START, ["a", "b"]).add_join(["a", "b"], "c");
    assert_eq!(build_error(graph), GraphError::DeadEnd { node: "c".into() });
}

#[test]
fn a_node_returning_command_needs_no_outgoing_edge() {
    let mut graph = StateGraph::<Doc>::new();
    graph.add_node("route", jump).add_edge(START, "route");
    let graph = graph.build().expect("a Command node routes itself");
    assert_eq!(graph.node_count(), 1);
}

#[test]
fn nodes_after_a_command_node_count_as_reachable() {
    let mut graph = graph_with(&["a"]);
    graph
        .add_node("route", jump)
        .add_node("left", step)
        .add_node("right", step)
        .add_edge(START, "a")
        .add_edge("a", "route")
        .add_edge("left", END)
        .add_edge("right", END);
    let graph = graph.build().expect("a Command node may go to any node");
    assert_eq!(graph.node_count(), 4);
}

#[test]
fn a_command_node_nothing_reaches_is_still_unreachable() {
    let mut graph = graph_with(&["a"]);
    graph.add_node("route", jump).add_edge(START, "a").add_edge("a", END);
    assert_eq!(build_error(graph), GraphError::UnreachableNode { node: "route".into() });
}

#[test]
fn a_conditional_edge_with_an_empty_mapping_is_rejected() {
    let mut graph = graph_with(&["a"]);
    graph.add_edge(START, "a").add_conditional_edges("a", |_: &Doc| "done", Vec::<(&str, &str)>::new());
    assert_eq!(build_error(graph), GraphError::EmptyMapping { node: "a".into() });
}

#[test]
fn a_label_mapped_twice_is_a_duplicate_label() {
    let mut graph = graph_with(&["a", "b"]);
    graph.add_edge(START, "a").add_edge("b", END).add_conditional_edges(
        "a",
        |_: &Doc| "go",
        [("go", "b"), ("stop", END), ("go", END)],
    );
    assert_eq!(build_error(graph), GraphError::DuplicateLabel { node: "a".into(), label: "go".into() },);
}

#[test]
fn a_bare_node_name_listed_twice_is_a_duplicate_label() {
    let mut graph = graph_with(&["a", "b"]);
    graph.add_edge(START, "a").add_edge("b", END).add_conditional_edges("a", |_: &Doc| "b", ["b", "b"]);
    assert_eq!(build_error(graph), GraphError::DuplicateLabel { node: "a".into(), label: "b".into() },);
}

#[test]
fn a_mapping_to_an_unknown_node_names_the_node_and_the_conditional_edge() {
    let mut graph = graph_with(&["a", "b"]);
    graph.add_edge(START, "a").add_edge("b", END).add_conditional_edges(
        "a",
        |_: &Doc| "go",
        [("go", "b"), ("oops", "ghost")],
    );
    assert_eq!(build_error(graph), unknown("ghost", "the conditional edge from `a`"));
}

#[test]
fn a_conditional_edge_from_an_unknown_node_names_that_node() {
    let mut graph = graph_with(&["a"]);
    graph.add_edge(START, "a").add_edge("a", END).add_conditional_edges("ghost", |_: &Doc| "go", [("go", "a")]);
    assert_eq!(build_error(graph), unknown("ghost", "the conditional edge from `ghost`"));
}

#[test]
fn a_join_with_an_unknown_predecessor_names_it_and_the_join() {
    let mut graph = graph_with(&["a", "b", "c"]);
    graph.add_parallel_edges(START, ["a", "b"]).add_join(["a", "ghost", "b"], "c").add_edge("c", END);
    assert_eq!(build_error(graph), unknown("ghost", "the join into `c`"));
}

#[test]
fn a_join_into_an_unknown_node_names_it() {
    let mut graph = graph_with(&["a", "b"]);
    graph.add_parallel_edges(START, ["a", "b"]).add_join(["a", "b"], "ghost");
    assert_eq!(build_error(graph), unknown("ghost", "the join into `ghost`"));
}

#[test]
fn a_join_naming_a_predecessor_twice_is_invalid() {
    let mut graph = graph_with(&["a", "b", "c"]);
    graph.add_parallel_edges(START, ["a", "b"]).add_join(["a", "b", "a"], "c").add_edge("c", END);
    assert_eq!(build_error(graph), GraphError::InvalidJoin { node: "c".into() });
}

#[test]
fn a_join_without_predecessors_is_invalid() {
    let mut graph = graph_with(&["a", "c"]);
    graph.add_edge(START, "a").add_edge("a", "c").add_join(Vec::<&str>::new(), "c").add_edge("c", END);
    assert_eq!(build_error(graph), GraphError::InvalidJoin { node: "c".into() });
}

#[test]
fn an_edge_out_of_end_is_an_invalid_endpoint() {
    let mut graph = graph_with(&["a"]);
    graph.add_edge(START, "a").add_edge("a", END).add_edge(END, "a");
    assert_eq!(build_error(graph), GraphError::InvalidEndpoint { edge: "the edge `__end__` -> `a`".to_owned() },);
}

#[test]
fn an_edge_into_start_is_an_invalid_endpoint() {
    let mut graph = graph_with(&["a"]);
    graph.add_edge(START, "a").add_edge("a", START);
    assert_eq!(build_error(graph), GraphError::InvalidEndpoint { edge: "the edge `a` -> `__start__`".to_owned() },);
}

#[test]
fn every_kind_of_edge_rejects_start_as_a_target_and_end_as_a_source() {
    let cases: [(&str, AddEdge); 6] = [
        ("the conditional edge from `a`", |g| {
            g.add_conditional_edges("a", |_: &Doc| "back", [("back", START)]);
        }),
        ("the conditional edge from `__end__`", |g| {
            g.add_conditional_edges(END, |_: &Doc| "a", ["a"]);
        }),
        ("the parallel edge from `a`", |g| {
            g.add_parallel_edges("a", [START]);
        }),
        ("the send edge from `a`", |g| {
            g.add_send_edges("a", no_sends, [END]);
        }),
        ("the join into `a`", |g| {
            g.add_join([START], "a");
        }),
        ("the join into `__end__`", |g| {
            g.add_join(["a"], END);
        }),
    ];
    for (edge, add) in cases {
        let mut graph = graph_with(&["a"]);
        graph.add_edge(START, "a").add_edge("a", END);
        add(&mut graph);
        assert_eq!(build_error(graph), GraphError::InvalidEndpoint { edge: edge.to_owned() },);
    }
}

#[test]
fn a_send_edge_to_an_unknown_target_names_it_and_the_send_edge() {
    let mut graph = graph_with(&["a"]);
    graph.add_edge(START, "a").add_edge("a", END).add_send_edges("a", no_sends, ["ghost"]);
    assert_eq!(build_error(graph), unknown("ghost", "the send edge from `a`"));
}

#[test]
fn a_send_edge_from_an_unknown_node_names_that_node() {
    let mut graph = graph_with(&["a"]);
    graph.add_edge(START, "a").add_edge("a", END).add_send_edges("ghost", no_sends, ["a"]);
    assert_eq!(build_error(graph), unknown("ghost", "the send edge from `ghost`"));
}

#[test]
fn error_messages_name_the_culprit_and_say_what_to_do() {
    let cases = [
        (GraphError::NoEntryPoint, vec!["no entry point", "add an edge from START"]),
        (GraphError::DuplicateNode { node: "fetch".into() }, vec!["`fetch`", "added twice", "must be unique"]),
        (
            GraphError::InvalidNodeName { node: "__end__".into(), reason: "START and END are reserved" },
            vec!["`__end__`", "cannot name a node", "reserved"],
        ),
        (
            unknown("ghost", "the edge `fetch` -> `ghost`"),
            vec!["the edge `fetch` -> `ghost`", "node `ghost`", "add it with add_node or fix the name"],
        ),
        (
            GraphError::InvalidEndpoint { edge: "the edge `__end__` -> `fetch`".to_owned() },
            vec!["the edge `__end__` -> `fetch`", "never leave END or enter START"],
        ),
        (
            GraphError::EmptyMapping { node: "fetch".into() },
            vec!["`fetch`", "maps no labels", "at least one (label, target) pair"],
        ),
        (
            GraphError::DuplicateLabel { node: "fetch".into(), label: "retry".into() },
            vec!["`fetch`", "label `retry`", "twice"],
        ),
        (GraphError::InvalidJoin { node: "merge".into() }, vec!["`merge`", "distinct predecessors"]),
        (
            GraphError::UnreachableNode { node: "orphan".into() },
            vec!["`orphan`", "unreachable from START", "connect it or remove it"],
        ),
        (
            GraphError::DeadEnd { node: "fetch".into() },
            vec!["`fetch`", "no outgoing edge", "add an edge to the next node or to END"],
        ),
        (
            GraphError::UnknownNodeInSetting { node: "ghost".into(), setting: "interrupt_before" },
            vec!["interrupt_before", "`ghost`", "does not exist"],
        ),
    ];
    for (error, needles) in cases {
        let message = error.to_string();
        for needle in needles {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
    }
}

#[test]
fn the_reported_error_message_comes_from_build() {
    let mut graph = graph_with(&["draft"]);
    graph.add_edge(START, "draft").add_edge("draft", "review");
    assert_eq!(
        build_error(graph).to_string(),
        "the edge `draft` -> `review` refers to node `review`, which does not exist: \
         add it with add_node or fix the name",
    );
}
