//! Why a graph failed to compile.

use std::sync::Arc;

/// An invalid graph, reported by `compile()`.
///
/// Every variant names the node, edge or label at fault and says how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// No edge leaves `START`, so a run would have nothing to do.
    #[error("the graph has no entry point: add an edge from START to the first node")]
    NoEntryPoint,
    /// Two nodes were added under one name.
    #[error("node `{node}` is added twice: node names must be unique")]
    DuplicateNode {
        /// The repeated name.
        node: Arc<str>,
    },
    /// A node name is empty or one of the reserved names.
    #[error("`{node}` cannot name a node: {reason}")]
    InvalidNodeName {
        /// The rejected name.
        node: Arc<str>,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// An edge mentions a node that was never added.
    #[error("{edge} refers to node `{node}`, which does not exist: add it with add_node or fix the name")]
    UnknownNode {
        /// The missing node.
        node: Arc<str>,
        /// The edge, described as `edge from `a``, `conditional edge from `a``, ...
        edge: String,
    },
    /// An edge leaves `END` or enters `START`.
    #[error("{edge} is not allowed: edges never leave END or enter START")]
    InvalidEndpoint {
        /// The edge.
        edge: String,
    },
    /// A conditional edge maps no labels.
    #[error("the conditional edge from `{node}` maps no labels: give at least one (label, target) pair")]
    EmptyMapping {
        /// The node the edge leaves.
        node: Arc<str>,
    },
    /// A conditional edge maps one label twice.
    #[error("the conditional edge from `{node}` maps label `{label}` twice")]
    DuplicateLabel {
        /// The node the edge leaves.
        node: Arc<str>,
        /// The repeated label.
        label: Arc<str>,
    },
    /// A join names no predecessors, or names one twice.
    #[error("the join into `{node}` must name distinct predecessors, at least one")]
    InvalidJoin {
        /// The node the join enters.
        node: Arc<str>,
    },
    /// No path from `START` reaches a node.
    #[error("node `{node}` is unreachable from START: connect it or remove it")]
    UnreachableNode {
        /// The unreachable node.
        node: Arc<str>,
    },
    /// A node has no outgoing edge and cannot route itself with a `Command`.
    #[error("node `{node}` has no outgoing edge: add an edge to the next node or to END")]
    DeadEnd {
        /// The node.
        node: Arc<str>,
    },
    /// A node-level setting names a node that does not exist.
    #[error("{setting} names node `{node}`, which does not exist")]
    UnknownNodeInSetting {
        /// The missing node.
        node: Arc<str>,
        /// The setting, e.g. `interrupt_before`.
        setting: &'static str,
    },
}

/// `Result` with [`GraphError`] as the default error.
pub type Result<T, E = GraphError> = std::result::Result<T, E>;
