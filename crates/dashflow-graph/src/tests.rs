//! Unit tests of what the public API cannot see: the builder's collected mistakes. Everything
//! observable from outside is tested in `tests/it`.

use std::sync::Arc;

use crate::{END, GraphError, NodeError, START, StateGraph};

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct Doc {
    text: String,
}

crate::whole_state!(Doc);

async fn step(doc: Arc<Doc>) -> Result<Doc, NodeError> {
    Ok((*doc).clone())
}

#[test]
fn the_builder_collects_every_naming_mistake_and_build_reports_the_first() {
    let mut graph = StateGraph::<Doc>::new();
    graph
        .add_node("a", step)
        .add_node(START, step)
        .add_node("a", step)
        .add_node("", step)
        .add_edge(START, "a")
        .add_edge("a", END);
    assert_eq!(
        graph.errors,
        [
            GraphError::InvalidNodeName { node: START.into(), reason: "START and END are reserved" },
            GraphError::DuplicateNode { node: "a".into() },
            GraphError::InvalidNodeName { node: "".into(), reason: "node names must not be empty" },
        ],
    );
    // A rejected node is not added, so the graph keeps only the first `a`.
    assert_eq!(graph.nodes.len(), 1);
    assert_eq!(
        graph.build().err(),
        Some(GraphError::InvalidNodeName { node: START.into(), reason: "START and END are reserved" }),
    );
}

#[test]
fn edges_are_recorded_as_written_and_only_checked_by_build() {
    let mut graph = StateGraph::<Doc>::new();
    graph.add_edge("nowhere", "ghost").add_parallel_edges("a", ["b", "c"]).add_join(["b", "c"], "d");
    assert!(graph.errors.is_empty());
    assert_eq!(graph.edges.len(), 3);
}
