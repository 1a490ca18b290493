//! A small state and trivial nodes shared by the graph tests. Nothing here runs a graph, so
//! the nodes only have to have the right shapes.

use std::sync::Arc;

use dashflow_graph::{Command, END, GraphError, NodeError, StateGraph};
use serde::{Deserialize, Serialize};

/// A state whose update is a whole new state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Doc {
    pub(crate) text: String,
}

dashflow_graph::whole_state!(Doc);

/// A node returning an update, so it needs an outgoing edge.
pub(crate) async fn step(doc: Arc<Doc>) -> Result<Doc, NodeError> {
    Ok((*doc).clone())
}

/// A node returning a `Command`, so it routes itself.
pub(crate) async fn jump(_doc: Arc<Doc>) -> Result<Command<Doc>, NodeError> {
    Ok(Command::goto(END))
}

/// A graph holding one `step` node per name, and no edges yet.
pub(crate) fn graph_with(nodes: &[&str]) -> StateGraph<Doc> {
    let mut graph = StateGraph::named("test");
    for &name in nodes {
        graph.add_node(name, step);
    }
    graph
}

/// The error `build()` reports; panics if the graph builds.
pub(crate) fn build_error(graph: StateGraph<Doc>) -> GraphError {
    match graph.build() {
        Ok(graph) => panic!("expected a GraphError, but the graph built: {graph:?}"),
        Err(error) => error,
    }
}
