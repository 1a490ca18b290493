//! `GraphSchema`: a serializable description of a graph, and its Mermaid rendering.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::builder::{EdgeSpec, NodeSpec};
use crate::graph::{describe_edges, describe_nodes};
use crate::{END, GraphState, START};

/// Nodes and edges of a graph, for tools: the CLI draws it, traces store it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphSchema {
    /// The graph's name.
    pub name: String,
    /// Nodes in the order they were added.
    pub nodes: Vec<NodeSchema>,
    /// Edges in the order they were added; `START` and `END` appear by their reserved names.
    pub edges: Vec<EdgeSchema>,
}

/// One node of a [`GraphSchema`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSchema {
    /// The node's name.
    pub name: String,
    /// Whether it may route itself with a `Command`.
    pub routes_itself: bool,
    /// Per-attempt timeout, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Attempts allowed by its retry policy.
    pub max_attempts: Option<u32>,
}

/// One edge of a [`GraphSchema`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeSchema {
    /// Source node, or `__start__`.
    pub from: String,
    /// Target node, or `__end__`.
    pub to: String,
    /// What kind of edge.
    pub kind: EdgeKind,
}

/// The kinds of edge, each drawn differently.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EdgeKind {
    /// Always taken.
    Direct,
    /// One branch of a fan-out.
    Parallel,
    /// Taken when the router returns `label`.
    Conditional {
        /// The label.
        label: String,
    },
    /// A possible target of a send edge (map-reduce).
    Send,
    /// One predecessor of a join; `group` lists all predecessors.
    Join {
        /// Every predecessor the target waits for.
        group: Vec<String>,
    },
}

impl GraphSchema {
    pub(crate) fn describe<S: GraphState>(name: &str, nodes: &[NodeSpec<S>], edges: &[EdgeSpec<S>]) -> Self {
        Self { name: name.to_owned(), nodes: describe_nodes(nodes), edges: describe_edges(edges) }
    }

    /// A Mermaid flowchart: direct edges `-->`, parallel `==>`, conditional `-. label .->`,
    /// send `-. send .->`, and join edges ending in a circle `--o` labelled `join`.
    ///
    /// ```
    /// # use dashflow_graph::{StateGraph, START, END, NodeError};
    /// # use std::sync::Arc;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
    /// # struct S { n: u32 }
    /// # dashflow_graph::whole_state!(S);
    /// # async fn step(s: Arc<S>) -> Result<S, NodeError> { Ok((*s).clone()) }
    /// let mut g = StateGraph::<S>::new();
    /// g.add_node("a", step).add_edge(START, "a").add_edge("a", END);
    /// let mermaid = g.build()?.to_mermaid();
    /// assert!(mermaid.contains("__start__ --> a"));
    /// # Ok::<(), dashflow_graph::GraphError>(())
    /// ```
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        // Writing to a String cannot fail, so the fmt results are ignored throughout.
        let _ = writeln!(out, "    {START}([START])");
        for node in &self.nodes {
            let shape = if node.routes_itself { ("{{", "}}") } else { ("[", "]") };
            let _ = writeln!(out, "    {}{}\"{}\"{}", mermaid_id(&node.name), shape.0, escape(&node.name), shape.1);
        }
        let _ = writeln!(out, "    {END}([END])");
        for edge in &self.edges {
            let (from, to) = (mermaid_id(&edge.from), mermaid_id(&edge.to));
            let _ = match &edge.kind {
                EdgeKind::Direct => writeln!(out, "    {from} --> {to}"),
                EdgeKind::Parallel => writeln!(out, "    {from} ==> {to}"),
                EdgeKind::Conditional { label } => writeln!(out, "    {from} -. \"{}\" .-> {to}", escape(label)),
                EdgeKind::Send => writeln!(out, "    {from} -. send .-> {to}"),
                EdgeKind::Join { .. } => writeln!(out, "    {from} --o|join| {to}"),
            };
        }
        out
    }
}

/// A Mermaid-safe identifier, distinct for distinct names: plain names stay readable; names
/// with spaces or punctuation, names Mermaid reserves (`end`, `graph`, ...) and names that
/// start with the escape prefix `n_` are escaped: `n_`, then each letter or digit as itself,
/// `_` as `__` and any other character as `_{hex}_`. An escaped id decodes back to one name,
/// and a plain one never starts with `n_`, so no two nodes share an id.
fn mermaid_id(name: &str) -> String {
    const RESERVED: [&str; 8] = ["end", "graph", "subgraph", "flowchart", "style", "class", "click", "default"];
    let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("n_")
        && !RESERVED.contains(&name.to_ascii_lowercase().as_str());
    if name == START || name == END || plain {
        return name.to_owned();
    }
    let mut id = String::from("n_");
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c);
        } else if c == '_' {
            id.push_str("__");
        } else {
            let _ = write!(id, "_{:x}_", u32::from(c));
        }
    }
    id
}

fn escape(text: &str) -> String {
    text.replace('"', "#quot;")
}
