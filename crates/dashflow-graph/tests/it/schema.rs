//! `GraphSchema`: the serializable description of a graph, and its Mermaid rendering.

use std::time::Duration;

use dashflow_graph::{
    END, EdgeKind, EdgeSchema, GraphSchema, NodeOptions, NodeSchema, RetryPolicy, START, Send as SendTask,
};

use crate::support::{Doc, graph_with, jump, step};

fn edge(from: &str, to: &str, kind: EdgeKind) -> EdgeSchema {
    EdgeSchema { from: from.to_owned(), to: to.to_owned(), kind }
}

fn conditional(label: &str) -> EdgeKind {
    EdgeKind::Conditional { label: label.to_owned() }
}

fn no_sends(_: &Doc) -> Vec<SendTask<Doc>> {
    Vec::new()
}

/// One edge of every kind, one `Command` node, and one node with a timeout and retries.
fn every_kind() -> GraphSchema {
    let mut graph = graph_with(&["plan", "left", "right", "merge"]);
    graph
        .add_node_with(
            "worker",
            step,
            NodeOptions::new().timeout(Duration::from_millis(1500)).retry(RetryPolicy::new(4)),
        )
        .add_node("route", jump)
        .add_edge(START, "plan")
        .add_parallel_edges("plan", ["left", "right"])
        .add_join(["left", "right"], "merge")
        .add_conditional_edges(
            "merge",
            |_: &Doc| "ship",
            [("again", "plan"), ("fix", "worker"), ("ask", "route"), ("ship", END)],
        )
        .add_send_edges("plan", no_sends, ["worker"])
        .add_edge("worker", END);
    graph.build().unwrap().schema().clone()
}

#[test]
fn the_schema_lists_nodes_in_the_order_they_were_added() {
    let schema = every_kind();
    assert_eq!(schema.name, "test");
    let plain =
        |name: &str| NodeSchema { name: name.to_owned(), routes_itself: false, timeout_ms: None, max_attempts: None };
    assert_eq!(
        schema.nodes,
        [
            plain("plan"),
            plain("left"),
            plain("right"),
            plain("merge"),
            NodeSchema { timeout_ms: Some(1500), max_attempts: Some(4), ..plain("worker") },
            NodeSchema { routes_itself: true, ..plain("route") },
        ],
    );
}

#[test]
fn the_schema_lists_edges_in_the_order_they_were_added_with_their_kinds() {
    let group = vec!["left".to_owned(), "right".to_owned()];
    assert_eq!(
        every_kind().edges,
        [
            edge(START, "plan", EdgeKind::Direct),
            edge("plan", "left", EdgeKind::Parallel),
            edge("plan", "right", EdgeKind::Parallel),
            edge("left", "merge", EdgeKind::Join { group: group.clone() }),
            edge("right", "merge", EdgeKind::Join { group }),
            edge("merge", "plan", conditional("again")),
            edge("merge", "worker", conditional("fix")),
            edge("merge", "route", conditional("ask")),
            edge("merge", END, conditional("ship")),
            edge("plan", "worker", EdgeKind::Send),
            edge("worker", END, EdgeKind::Direct),
        ],
    );
}

#[test]
fn the_schema_survives_a_json_round_trip() {
    let schema = every_kind();
    let json = serde_json::to_string(&schema).unwrap();
    let back: GraphSchema = serde_json::from_str(&json).unwrap();
    assert_eq!(back, schema);
}

#[test]
fn edge_kinds_serialize_as_snake_case_tagged_objects() {
    let cases = [
        (EdgeKind::Direct, serde_json::json!({ "type": "direct" })),
        (EdgeKind::Parallel, serde_json::json!({ "type": "parallel" })),
        (conditional("more"), serde_json::json!({ "type": "conditional", "label": "more" })),
        (EdgeKind::Send, serde_json::json!({ "type": "send" })),
        (
            EdgeKind::Join { group: vec!["a".to_owned(), "b".to_owned()] },
            serde_json::json!({ "type": "join", "group": ["a", "b"] }),
        ),
    ];
    for (kind, json) in cases {
        assert_eq!(serde_json::to_value(&kind).unwrap(), json);
        assert_eq!(serde_json::from_value::<EdgeKind>(json).unwrap(), kind);
    }
}

#[test]
fn graph_to_mermaid_is_its_schema_rendered() {
    let mut graph = graph_with(&["a"]);
    graph.add_edge(START, "a").add_edge("a", END);
    let graph = graph.build().unwrap();
    assert_eq!(graph.to_mermaid(), graph.schema().to_mermaid());
}

#[test]
fn a_chain_renders_as_a_complete_flowchart() {
    let mut graph = graph_with(&["a", "b"]);
    graph.add_edge(START, "a").add_edge("a", "b").add_edge("b", END);
    let expected = "\
flowchart TD
    __start__([START])
    a[\"a\"]
    b[\"b\"]
    __end__([END])
    __start__ --> a
    a --> b
    b --> __end__
";
    assert_eq!(graph.build().unwrap().to_mermaid(), expected);
}

#[test]
fn each_edge_kind_renders_with_its_own_arrow() {
    let mermaid = every_kind().to_mermaid();
    let lines: Vec<&str> = mermaid.lines().map(str::trim).collect();
    for expected in [
        "__start__ --> plan",
        "plan ==> left",
        "plan ==> right",
        "left --o|join| merge",
        "right --o|join| merge",
        "merge -. \"again\" .-> plan",
        "merge -. \"ship\" .-> __end__",
        "plan -. send .-> worker",
        "worker --> __end__",
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in\n{mermaid}");
    }
    assert_eq!(lines.len(), 1 + 2 + every_kind().nodes.len() + every_kind().edges.len());
}

#[test]
fn a_command_node_is_drawn_as_a_hexagon_and_others_as_rectangles() {
    let mermaid = every_kind().to_mermaid();
    assert!(mermaid.contains("    route{{\"route\"}}\n"), "{mermaid}");
    assert!(mermaid.contains("    plan[\"plan\"]\n"), "{mermaid}");
    assert!(!mermaid.contains("plan{{"), "{mermaid}");
}

#[test]
fn names_with_spaces_or_punctuation_get_safe_ids_and_keep_their_labels() {
    let mut graph = graph_with(&["my node", "say \"hi\"", "a.b", "café"]);
    graph
        .add_edge(START, "my node")
        .add_edge("my node", "say \"hi\"")
        .add_edge("say \"hi\"", "a.b")
        .add_edge("a.b", "café")
        .add_edge("café", END);
    let mermaid = graph.build().unwrap().to_mermaid();
    for expected in [
        "    n_my_20_node[\"my node\"]\n",
        "    n_say_20__22_hi_22_[\"say #quot;hi#quot;\"]\n",
        "    n_a_2e_b[\"a.b\"]\n",
        "    n_caf_e9_[\"café\"]\n",
        "    __start__ --> n_my_20_node\n",
        "    n_my_20_node --> n_say_20__22_hi_22_\n",
        "    n_say_20__22_hi_22_ --> n_a_2e_b\n",
        "    n_caf_e9_ --> __end__\n",
    ] {
        assert!(mermaid.contains(expected), "missing {expected:?} in\n{mermaid}");
    }
}

#[test]
fn names_mermaid_reserves_are_prefixed_whatever_their_case() {
    let mut graph = graph_with(&["end", "Graph", "subgraph", "ok_name"]);
    graph
        .add_edge(START, "end")
        .add_edge("end", "Graph")
        .add_edge("Graph", "subgraph")
        .add_edge("subgraph", "ok_name")
        .add_edge("ok_name", END);
    let mermaid = graph.build().unwrap().to_mermaid();
    for expected in [
        "    n_end[\"end\"]\n",
        "    n_Graph[\"Graph\"]\n",
        "    n_subgraph[\"subgraph\"]\n",
        "    ok_name[\"ok_name\"]\n",
        "    __start__ --> n_end\n",
        "    n_end --> n_Graph\n",
        "    n_subgraph --> ok_name\n",
        "    ok_name --> __end__\n",
    ] {
        assert!(mermaid.contains(expected), "missing {expected:?} in\n{mermaid}");
    }
    // A bare `end` would close the flowchart early, so no id may be spelled that way.
    let mut tokens = mermaid.lines().flat_map(|line| line.split(|c: char| c.is_whitespace() || c == '['));
    assert!(tokens.all(|token| token != "end"), "{mermaid}");
}

#[test]
fn conditional_labels_with_quotes_are_escaped() {
    let mut graph = graph_with(&["a"]);
    graph.add_edge(START, "a").add_conditional_edges("a", |_: &Doc| "done", [("say \"done\"", END)]);
    let mermaid = graph.build().unwrap().to_mermaid();
    assert!(mermaid.contains("    a -. \"say #quot;done#quot;\" .-> __end__\n"), "{mermaid}");
}

/// An escaped name never takes the id of another node: `end` (reserved) and a node called
/// `n_end`, `a b` and a node called `n_a_20_b`, `a_b` and `a b` each draw as two nodes.
#[test]
fn escaped_names_never_collide_with_plain_ones() {
    let node =
        |name: &str| NodeSchema { name: name.to_owned(), routes_itself: false, timeout_ms: None, max_attempts: None };
    let names = ["end", "n_end", "a b", "n_a_20_b", "a_b", "n_a__b", "n__a", "End", "x-y", "x_2d_y"];
    let schema = GraphSchema {
        name: "collide".to_owned(),
        nodes: names.iter().map(|name| node(name)).collect(),
        edges: Vec::new(),
    };
    let mermaid = schema.to_mermaid();
    let ids: Vec<&str> =
        mermaid.lines().filter(|line| line.ends_with("\"]")).filter_map(|line| line.trim().split('[').next()).collect();
    assert_eq!(ids.len(), names.len(), "{mermaid}");
    let distinct: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "two nodes share a Mermaid id:\n{mermaid}");
    // Plain names stay readable.
    assert!(ids.contains(&"a_b") && ids.contains(&"n_end"), "{mermaid}");
}
