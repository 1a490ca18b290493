//! `Graph<S>`: a validated graph, indexed for the executor.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::builder::{EdgeSpec, NodeSpec, RouterFn, SendRouterFn};
use crate::route::Labels;
use crate::schema::{EdgeKind, EdgeSchema, GraphSchema, NodeSchema};
use crate::{END, GraphError, GraphState, Node, NodeName, NodeOptions, START, StateGraph};

/// Index of a node in its [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

impl NodeId {
    /// The index into [`Graph::nodes`].
    pub fn index(self) -> usize {
        self.0 as usize
    }

    fn from_index(index: usize) -> Self {
        // Graphs hold far fewer than 2^32 nodes; saturating keeps this total.
        Self(u32::try_from(index).unwrap_or(u32::MAX))
    }
}

/// Where an edge leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A node.
    Node(NodeId),
    /// The end of the branch.
    End,
}

/// A conditional edge: a router over the state, and its labels resolved to targets.
pub struct ConditionalRoute<S> {
    router: RouterFn<S>,
    mapping: Vec<(NodeName, Target)>,
}

impl<S> ConditionalRoute<S> {
    /// Calls the router.
    pub fn route(&self, state: &S) -> Labels {
        (self.router)(state)
    }

    /// The target of `label`, with the label as the mapping spells it and its place among
    /// [`labels`](Self::labels).
    pub fn resolve_at(&self, label: &str) -> Option<(usize, &NodeName, Target)> {
        self.mapping
            .iter()
            .enumerate()
            .find(|(_, (known, _))| &**known == label)
            .map(|(index, (known, target))| (index, known, *target))
    }

    /// Every label the mapping knows, for error messages.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.mapping.iter().map(|(label, _)| &**label)
    }
}

/// An outgoing edge of a node (or of `START`).
pub enum Route<S> {
    /// Always go to the target.
    Direct(Target),
    /// Go where the router's label maps.
    Conditional(ConditionalRoute<S>),
    /// Run the tasks the router returns.
    Send(SendRouterFn<S>),
}

/// A join: `target` runs once every predecessor has finished since it last ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Join {
    /// The nodes waited for.
    pub predecessors: Vec<NodeId>,
    /// The node that runs when all have finished.
    pub target: NodeId,
}

/// One node of a [`Graph`], with everything the executor needs to run it and route after it.
pub struct GraphNode<S: GraphState> {
    /// Its name.
    pub name: NodeName,
    /// The function.
    pub node: Node<S>,
    /// Timeout and retry policy.
    pub options: NodeOptions,
    /// Outgoing edges, in the order they were added.
    pub routes: Vec<Route<S>>,
    /// The joins this node is a predecessor of: (index into [`Graph::joins`], position of the
    /// node among that join's predecessors).
    pub joins: Vec<(usize, usize)>,
}

/// A validated graph, indexed for execution: nodes by [`NodeId`], edges resolved to ids.
///
/// Made by [`StateGraph::build`]; the executor wraps it in a `CompiledGraph`.
pub struct Graph<S: GraphState> {
    name: Arc<str>,
    nodes: Vec<GraphNode<S>>,
    start: Vec<Route<S>>,
    joins: Vec<Join>,
    by_name: HashMap<NodeName, NodeId>,
    schema: GraphSchema,
}

impl<S: GraphState> Graph<S> {
    /// The graph's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// All nodes, indexed by [`NodeId::index`].
    pub fn nodes(&self) -> &[GraphNode<S>] {
        &self.nodes
    }

    /// The node with id `id`.
    pub fn node(&self, id: NodeId) -> &GraphNode<S> {
        &self.nodes[id.index()]
    }

    /// The id of the node called `name`.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.by_name.get(name).copied()
    }

    /// The edges leaving `START`.
    pub fn start_routes(&self) -> &[Route<S>] {
        &self.start
    }

    /// All joins.
    pub fn joins(&self) -> &[Join] {
        &self.joins
    }

    /// The serializable description of nodes and edges.
    pub fn schema(&self) -> &GraphSchema {
        &self.schema
    }

    /// The graph as a Mermaid flowchart.
    pub fn to_mermaid(&self) -> String {
        self.schema.to_mermaid()
    }

    /// Resolves `name` as an edge target.
    pub fn target(&self, name: &str) -> Option<Target> {
        if name == END { Some(Target::End) } else { self.node_id(name).map(Target::Node) }
    }

    pub(crate) fn validate(builder: StateGraph<S>) -> Result<Self, GraphError> {
        let StateGraph { name, nodes, edges, mut errors } = builder;
        if !errors.is_empty() {
            return Err(errors.swap_remove(0));
        }
        let schema = GraphSchema::describe(&name, &nodes, &edges);
        let by_name: HashMap<NodeName, NodeId> =
            nodes.iter().enumerate().map(|(index, spec)| (spec.name.clone(), NodeId::from_index(index))).collect();
        let mut indexer = Indexer {
            by_name: &by_name,
            start: Vec::new(),
            routes: nodes.iter().map(|_| Vec::new()).collect(),
            joins: Vec::new(),
            sends: SendTargets { start: Vec::new(), nodes: nodes.iter().map(|_| Vec::new()).collect() },
        };
        for edge in edges {
            indexer.add(edge)?;
        }
        let Indexer { start, routes, joins, sends, .. } = indexer;
        if start.is_empty() {
            return Err(GraphError::NoEntryPoint);
        }
        let mut graph_nodes: Vec<GraphNode<S>> = nodes
            .into_iter()
            .zip(routes)
            .map(|(NodeSpec { name, node, options }, routes)| GraphNode {
                name,
                node,
                options,
                routes,
                joins: Vec::new(),
            })
            .collect();
        for (join_index, join) in joins.iter().enumerate() {
            for (position, pred) in join.predecessors.iter().enumerate() {
                graph_nodes[pred.index()].joins.push((join_index, position));
            }
        }
        let graph = Self { name, nodes: graph_nodes, start, joins, by_name, schema };
        graph.check_dead_ends()?;
        graph.check_reachability(&sends)?;
        Ok(graph)
    }

    fn check_dead_ends(&self) -> Result<(), GraphError> {
        match self.nodes.iter().find(|n| n.routes.is_empty() && n.joins.is_empty() && !n.node.routes_itself()) {
            Some(node) => Err(GraphError::DeadEnd { node: node.name.clone() }),
            None => Ok(()),
        }
    }

    fn check_reachability(&self, sends: &SendTargets) -> Result<(), GraphError> {
        let mut reached = vec![false; self.nodes.len()];
        let mut queue: Vec<NodeId> = Vec::new();
        let visit = |targets: Vec<NodeId>, reached: &mut Vec<bool>, queue: &mut Vec<NodeId>| {
            for id in targets {
                if !reached[id.index()] {
                    reached[id.index()] = true;
                    queue.push(id);
                }
            }
        };
        visit(self.route_targets(&self.start), &mut reached, &mut queue);
        visit(sends.start.clone(), &mut reached, &mut queue);
        while let Some(id) = queue.pop() {
            let node = self.node(id);
            if node.node.routes_itself() {
                // A node returning `Command` may go anywhere; nothing past it can be judged.
                return Ok(());
            }
            visit(self.route_targets(&node.routes), &mut reached, &mut queue);
            visit(sends.nodes[id.index()].clone(), &mut reached, &mut queue);
            let ready_joins = node
                .joins
                .iter()
                .map(|&(join, _)| &self.joins[join])
                .filter(|join| join.predecessors.iter().all(|pred| reached[pred.index()]))
                .map(|join| join.target)
                .collect();
            visit(ready_joins, &mut reached, &mut queue);
        }
        match reached.iter().position(|seen| !seen) {
            Some(index) => Err(GraphError::UnreachableNode { node: self.nodes[index].name.clone() }),
            None => Ok(()),
        }
    }

    fn route_targets(&self, routes: &[Route<S>]) -> Vec<NodeId> {
        let mut targets = Vec::new();
        for route in routes {
            match route {
                Route::Direct(Target::Node(id)) => targets.push(*id),
                Route::Direct(Target::End) => {}
                Route::Conditional(conditional) => {
                    targets.extend(conditional.mapping.iter().filter_map(|(_, t)| match t {
                        Target::Node(id) => Some(*id),
                        Target::End => None,
                    }))
                }
                // A send router's declared targets are kept apart (`SendTargets`): the route
                // itself holds only the router.
                Route::Send(_) => {}
            }
        }
        targets
    }
}

impl<S: GraphState> fmt::Debug for Graph<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph").field("name", &self.name).field("schema", &self.schema).finish_non_exhaustive()
    }
}

/// The nodes each send edge declares it may send to, by source; only reachability needs them.
struct SendTargets {
    start: Vec<NodeId>,
    nodes: Vec<Vec<NodeId>>,
}

/// Resolves edge specs to ids while validating their endpoints.
struct Indexer<'a, S> {
    by_name: &'a HashMap<NodeName, NodeId>,
    start: Vec<Route<S>>,
    routes: Vec<Vec<Route<S>>>,
    joins: Vec<Join>,
    sends: SendTargets,
}

impl<S> Indexer<'_, S> {
    fn add(&mut self, edge: EdgeSpec<S>) -> Result<(), GraphError> {
        match edge {
            EdgeSpec::Direct { from, to } => {
                let what = || format!("the edge `{from}` -> `{to}`");
                let target = self.target(&to, what)?;
                self.push(&from, Route::Direct(target), what)
            }
            EdgeSpec::Parallel { from, to } => {
                let what = || format!("the parallel edge from `{from}`");
                for name in &to {
                    let target = self.target(name, what)?;
                    self.push(&from, Route::Direct(target), what)?;
                }
                Ok(())
            }
            EdgeSpec::Conditional { from, router, mapping } => {
                let what = || format!("the conditional edge from `{from}`");
                if mapping.is_empty() {
                    return Err(GraphError::EmptyMapping { node: from });
                }
                let mut resolved: Vec<(NodeName, Target)> = Vec::with_capacity(mapping.len());
                for (label, target) in mapping {
                    if resolved.iter().any(|(known, _)| *known == label) {
                        return Err(GraphError::DuplicateLabel { node: from, label });
                    }
                    resolved.push((label, self.target(&target, what)?));
                }
                self.push(&from, Route::Conditional(ConditionalRoute { router, mapping: resolved }), what)
            }
            EdgeSpec::Send { from, router, targets } => {
                let what = || format!("the send edge from `{from}`");
                let targets = targets.iter().map(|name| self.node(name, what)).collect::<Result<Vec<_>, _>>()?;
                self.push(&from, Route::Send(router), what)?;
                // `push` accepted `from`: it is START or a known node.
                match self.by_name.get(&from) {
                    Some(id) => self.sends.nodes[id.index()].extend(targets),
                    None => self.sends.start.extend(targets),
                }
                Ok(())
            }
            EdgeSpec::Join { from, to } => {
                let what = || format!("the join into `{to}`");
                let target = self.node(&to, what)?;
                let mut predecessors = Vec::with_capacity(from.len());
                for name in &from {
                    let pred = self.node(name, what)?;
                    if predecessors.contains(&pred) {
                        return Err(GraphError::InvalidJoin { node: to });
                    }
                    predecessors.push(pred);
                }
                if predecessors.is_empty() {
                    return Err(GraphError::InvalidJoin { node: to });
                }
                self.joins.push(Join { predecessors, target });
                Ok(())
            }
        }
    }

    fn push(&mut self, from: &str, route: Route<S>, what: impl Fn() -> String) -> Result<(), GraphError> {
        if from == START {
            self.start.push(route);
            return Ok(());
        }
        let id = self.node(from, what)?;
        self.routes[id.index()].push(route);
        Ok(())
    }

    fn target(&self, name: &str, what: impl Fn() -> String) -> Result<Target, GraphError> {
        if name == END { Ok(Target::End) } else { self.node(name, what).map(Target::Node) }
    }

    fn node(&self, name: &str, what: impl Fn() -> String) -> Result<NodeId, GraphError> {
        if name == START || name == END {
            return Err(GraphError::InvalidEndpoint { edge: what() });
        }
        self.by_name.get(name).copied().ok_or_else(|| GraphError::UnknownNode { node: name.into(), edge: what() })
    }
}

pub(crate) fn describe_nodes<S: GraphState>(nodes: &[NodeSpec<S>]) -> Vec<NodeSchema> {
    nodes
        .iter()
        .map(|spec| NodeSchema {
            name: spec.name.to_string(),
            routes_itself: spec.node.routes_itself(),
            timeout_ms: spec.options.timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            max_attempts: spec.options.retry.as_ref().map(|r| r.max_attempts()),
        })
        .collect()
}

pub(crate) fn describe_edges<S>(edges: &[EdgeSpec<S>]) -> Vec<EdgeSchema> {
    let edge = |from: &str, to: &str, kind: EdgeKind| EdgeSchema { from: from.to_owned(), to: to.to_owned(), kind };
    let mut out = Vec::new();
    for spec in edges {
        match spec {
            EdgeSpec::Direct { from, to } => out.push(edge(from, to, EdgeKind::Direct)),
            EdgeSpec::Parallel { from, to } => out.extend(to.iter().map(|t| edge(from, t, EdgeKind::Parallel))),
            EdgeSpec::Conditional { from, mapping, .. } => out.extend(
                mapping.iter().map(|(label, t)| edge(from, t, EdgeKind::Conditional { label: label.to_string() })),
            ),
            EdgeSpec::Send { from, targets, .. } => out.extend(targets.iter().map(|t| edge(from, t, EdgeKind::Send))),
            EdgeSpec::Join { from, to } => {
                let group: Vec<String> = from.iter().map(ToString::to_string).collect();
                out.extend(from.iter().map(|f| edge(f, to, EdgeKind::Join { group: group.clone() })));
            }
        }
    }
    out
}
