//! `StateGraph<S>`: the mutable builder users add nodes and edges to.

use std::fmt;
use std::sync::Arc;

use crate::command::Send as SendTask;
use crate::graph::Graph;
use crate::route::{IntoLabels, Labels, MappingEntry};
use crate::{END, GraphError, GraphState, IntoNode, Node, NodeName, NodeOptions, START};

pub(crate) type RouterFn<S> = Arc<dyn Fn(&S) -> Labels + Send + Sync>;
pub(crate) type SendRouterFn<S> = Arc<dyn Fn(&S) -> Vec<SendTask<S>> + Send + Sync>;

pub(crate) struct NodeSpec<S: GraphState> {
    pub(crate) name: NodeName,
    pub(crate) node: Node<S>,
    pub(crate) options: NodeOptions,
}

pub(crate) enum EdgeSpec<S> {
    Direct { from: NodeName, to: NodeName },
    Parallel { from: NodeName, to: Vec<NodeName> },
    Conditional { from: NodeName, router: RouterFn<S>, mapping: Vec<(NodeName, NodeName)> },
    Send { from: NodeName, router: SendRouterFn<S>, targets: Vec<NodeName> },
    Join { from: Vec<NodeName>, to: NodeName },
}

/// A graph under construction: nodes, and the edges between them.
///
/// Every method returns `&mut Self` so calls chain; mistakes (a duplicate node, an edge to a
/// node that does not exist, ...) are collected and reported by `compile()` as a
/// [`GraphError`] naming the node, edge or label.
///
/// ```
/// use std::sync::Arc;
/// use dashflow_graph::{NodeError, StateGraph, END, START};
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
/// # struct Doc { text: String }
/// # dashflow_graph::whole_state!(Doc);
///
/// async fn shout(doc: Arc<Doc>) -> Result<Doc, NodeError> {
///     Ok(Doc { text: doc.text.to_uppercase() })
/// }
///
/// let mut graph = StateGraph::<Doc>::named("shouter");
/// graph.add_node("shout", shout).add_edge(START, "shout").add_edge("shout", END);
/// let graph = graph.build()?;
/// assert_eq!(graph.node_count(), 1);
/// # Ok::<(), dashflow_graph::GraphError>(())
/// ```
pub struct StateGraph<S: GraphState> {
    pub(crate) name: Arc<str>,
    pub(crate) nodes: Vec<NodeSpec<S>>,
    pub(crate) edges: Vec<EdgeSpec<S>>,
    pub(crate) errors: Vec<GraphError>,
}

impl<S: GraphState> StateGraph<S> {
    /// An empty graph named `graph`.
    pub fn new() -> Self {
        Self::named("graph")
    }

    /// An empty graph; the name appears in events, traces and the CLI.
    pub fn named(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into(), nodes: Vec::new(), edges: Vec::new(), errors: Vec::new() }
    }

    /// The graph's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a node: an async function or closure of `Arc<S>` (and optionally a
    /// `NodeContext`) returning `Result<S::Update, NodeError>` or
    /// `Result<Command<S>, NodeError>`, or a compiled subgraph.
    pub fn add_node<M>(&mut self, name: impl Into<NodeName>, node: impl IntoNode<S, M>) -> &mut Self {
        self.add_node_with(name, node, NodeOptions::default())
    }

    /// Adds a node with a timeout and/or retry policy.
    pub fn add_node_with<M>(
        &mut self,
        name: impl Into<NodeName>,
        node: impl IntoNode<S, M>,
        options: NodeOptions,
    ) -> &mut Self {
        let name = name.into();
        if let Some(reason) = invalid_name_reason(&name) {
            self.errors.push(GraphError::InvalidNodeName { node: name, reason });
        } else if self.nodes.iter().any(|spec| spec.name == name) {
            self.errors.push(GraphError::DuplicateNode { node: name });
        } else {
            self.nodes.push(NodeSpec { name, node: node.into_node(), options });
        }
        self
    }

    /// Runs `to` after `from`. `from` may be `START`, `to` may be `END`.
    pub fn add_edge(&mut self, from: impl Into<NodeName>, to: impl Into<NodeName>) -> &mut Self {
        self.edges.push(EdgeSpec::Direct { from: from.into(), to: to.into() });
        self
    }

    /// Makes `to` the first node (the same as `add_edge(START, to)`).
    pub fn set_entry_point(&mut self, to: impl Into<NodeName>) -> &mut Self {
        self.add_edge(START, to)
    }

    /// Ends the run after `from` (the same as `add_edge(from, END)`).
    pub fn set_finish_point(&mut self, from: impl Into<NodeName>) -> &mut Self {
        self.add_edge(from, END)
    }

    /// Runs every node of `to` in parallel, in the superstep after `from`.
    pub fn add_parallel_edges<I>(&mut self, from: impl Into<NodeName>, to: I) -> &mut Self
    where
        I: IntoIterator,
        I::Item: Into<NodeName>,
    {
        let to = to.into_iter().map(Into::into).collect();
        self.edges.push(EdgeSpec::Parallel { from: from.into(), to });
        self
    }

    /// Runs `to` once every node of `from` has finished since `to` last ran, however many
    /// supersteps apart they finish: the join of a fan-out.
    pub fn add_join<I>(&mut self, from: I, to: impl Into<NodeName>) -> &mut Self
    where
        I: IntoIterator,
        I::Item: Into<NodeName>,
    {
        let from = from.into_iter().map(Into::into).collect();
        self.edges.push(EdgeSpec::Join { from, to: to.into() });
        self
    }

    /// After `from`, calls `router` on the updated state and goes where its label maps.
    ///
    /// `mapping` lists `(label, target)` pairs (a target is a node or `END`), or bare node
    /// names that are their own labels. A label the router returns that the mapping lacks is
    /// a run-time error naming the label.
    pub fn add_conditional_edges<R, L, I>(&mut self, from: impl Into<NodeName>, router: R, mapping: I) -> &mut Self
    where
        R: Fn(&S) -> L + Send + Sync + 'static,
        L: IntoLabels,
        I: IntoIterator,
        I::Item: MappingEntry,
    {
        let mapping = mapping
            .into_iter()
            .map(|entry| {
                let (label, target) = entry.into_entry();
                (NodeName::from(label), NodeName::from(target))
            })
            .collect();
        let router: RouterFn<S> = Arc::new(move |state: &S| router(state).into_labels());
        self.edges.push(EdgeSpec::Conditional { from: from.into(), router, mapping });
        self
    }

    /// After `from`, calls `router` on the updated state and runs one task per returned
    /// [`Send`](crate::Send), each reading its own input: the map step of map-reduce. `targets` lists the
    /// nodes the router may send to, so the graph can be validated and drawn.
    pub fn add_send_edges<R, I>(&mut self, from: impl Into<NodeName>, router: R, targets: I) -> &mut Self
    where
        R: Fn(&S) -> Vec<SendTask<S>> + Send + Sync + 'static,
        I: IntoIterator,
        I::Item: Into<NodeName>,
    {
        let targets = targets.into_iter().map(Into::into).collect();
        self.edges.push(EdgeSpec::Send { from: from.into(), router: Arc::new(router), targets });
        self
    }

    /// Validates the graph and indexes it for execution.
    ///
    /// Usually reached through `compile()`, which also attaches the runtime.
    pub fn build(self) -> Result<Graph<S>, GraphError> {
        Graph::validate(self)
    }
}

impl<S: GraphState> Default for StateGraph<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: GraphState> fmt::Debug for StateGraph<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<&str> = self.nodes.iter().map(|spec| &*spec.name).collect();
        f.debug_struct("StateGraph")
            .field("name", &self.name)
            .field("nodes", &nodes)
            .field("edges", &self.edges.len())
            .finish()
    }
}

fn invalid_name_reason(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        Some("node names must not be empty")
    } else if name == START || name == END {
        Some("START and END are reserved")
    } else {
        None
    }
}
