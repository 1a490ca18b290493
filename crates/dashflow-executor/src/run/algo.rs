//! The routing algorithm: where a run goes after a step. Pure: it reads the graph and the
//! state and returns the next frontier (edges, conditional edges, joins, `Send`, `Command`
//! gotos) and the decisions it made; it records nothing (the loop reports the decisions).

use std::sync::Arc;

use dashflow_graph::__private::{NodeId, Route, Target};
use dashflow_graph::{Goto, Graph, GraphState, NodeName, Send as SendTask};

use crate::Error;

/// A task of a frontier: a node, and for a `Send` its own input.
pub(super) struct PendingTask<S> {
    pub(super) node: NodeId,
    /// A `Send`'s own input; `None` reads the shared state.
    pub(super) input: Option<Arc<S>>,
}

/// A conditional edge's choice: label number `position` of edge `edge` of node `from`
/// (`None`: `START`), leading to `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Decision {
    pub(super) from: Option<NodeId>,
    pub(super) edge: usize,
    pub(super) position: usize,
    pub(super) target: Target,
}

impl Decision {
    /// The label the decision chose, as the edge's mapping spells it.
    pub(super) fn label<'g, S: GraphState>(&self, graph: &'g Graph<S>) -> Option<&'g NodeName> {
        let routes = match self.from {
            Some(id) => graph.node(id).routes.as_slice(),
            None => graph.start_routes(),
        };
        let Route::Conditional(conditional) = routes.get(self.edge)? else { return None };
        let label = conditional.labels().nth(self.position)?;
        conditional.resolve_at(label).map(|(_, known, _)| known)
    }
}

/// Where the run goes next: the next frontier under construction, and join progress.
pub(super) struct Routing<S> {
    pub(super) next: Vec<PendingTask<S>>,
    /// Which nodes `next` already holds, so a node reached twice runs once.
    scheduled: Vec<bool>,
    /// Per join, which predecessors finished since the join last fired.
    pub(super) join_seen: Vec<Vec<bool>>,
}

impl<S: GraphState> Routing<S> {
    /// No task routed yet, and no join predecessor seen.
    pub(super) fn new(graph: &Graph<S>) -> Self {
        let join_seen = graph.joins().iter().map(|join| vec![false; join.predecessors.len()]).collect();
        Self::with_joins(graph, join_seen)
    }

    /// No task routed yet, with join progress `join_seen` (as a stored position has it).
    pub(super) fn with_joins(graph: &Graph<S>, join_seen: Vec<Vec<bool>>) -> Self {
        Self { next: Vec::new(), scheduled: vec![false; graph.node_count()], join_seen }
    }

    /// Adds to `next` where the run goes after `from` (or after `START`), which finished with
    /// `gotos`, given `state`; with `decisions`, adds there each conditional edge's choice,
    /// in the order made. Synchronous, so the common case pays for no future.
    pub(super) fn route(
        &mut self,
        graph: &Graph<S>,
        state: &S,
        from: Option<NodeId>,
        gotos: Vec<Goto<S>>,
        mut decisions: Option<&mut Vec<Decision>>,
    ) -> Result<(), Error> {
        // The usual step of a chain: one plain edge out, no join to count, nothing sent.
        if let (Some(id), true) = (from, gotos.is_empty()) {
            let node = graph.node(id);
            if let ([Route::Direct(target)], []) = (node.routes.as_slice(), node.joins.as_slice()) {
                self.schedule(*target);
                return Ok(());
            }
        }
        let start_name: NodeName;
        let (from_name, routes) = match from {
            Some(id) => (&graph.node(id).name, graph.node(id).routes.as_slice()),
            None => {
                start_name = dashflow_graph::START.into();
                (&start_name, graph.start_routes())
            }
        };
        for (edge, route) in routes.iter().enumerate() {
            match route {
                Route::Direct(target) => self.schedule(*target),
                Route::Conditional(conditional) => {
                    let labels = conditional.route(state);
                    for label in labels.iter() {
                        let Some((position, _, target)) = conditional.resolve_at(label) else {
                            return Err(Error::UnknownLabel {
                                node: from_name.clone(),
                                label: label.to_owned(),
                                known: conditional.labels().collect::<Vec<_>>().join(", "),
                            });
                        };
                        if let Some(decisions) = decisions.as_deref_mut() {
                            decisions.push(Decision { from, edge, position, target });
                        }
                        self.schedule(target);
                    }
                }
                Route::Send(router) => {
                    for send in router(state) {
                        self.schedule_send(graph, from_name, send)?;
                    }
                }
            }
        }
        for goto in gotos {
            match goto {
                Goto::Node(name) => match graph.target(&name) {
                    Some(target) => self.schedule(target),
                    None => return Err(Error::UnknownTarget { node: from_name.clone(), target: name.to_string() }),
                },
                Goto::Send(send) => self.schedule_send(graph, from_name, send)?,
            }
        }
        if let Some(id) = from {
            for &(join, position) in &graph.node(id).joins {
                let seen = &mut self.join_seen[join];
                seen[position] = true;
                if seen.iter().all(|done| *done) {
                    seen.fill(false);
                    self.schedule(Target::Node(graph.joins()[join].target));
                }
            }
        }
        Ok(())
    }

    /// Makes the routed tasks `frontier` (its old tasks are dropped, its buffer reused for
    /// the next routing) and clears the dedup marks.
    pub(super) fn advance(&mut self, frontier: &mut Vec<PendingTask<S>>) {
        for task in &self.next {
            self.scheduled[task.node.index()] = false;
        }
        std::mem::swap(frontier, &mut self.next);
        self.next.clear();
    }

    fn schedule(&mut self, target: Target) {
        if let Target::Node(id) = target
            && !self.scheduled[id.index()]
        {
            self.scheduled[id.index()] = true;
            self.next.push(PendingTask { node: id, input: None });
        }
    }

    fn schedule_send(&mut self, graph: &Graph<S>, from: &NodeName, send: SendTask<S>) -> Result<(), Error> {
        match graph.node_id(&send.node) {
            Some(id) => {
                self.next.push(PendingTask { node: id, input: Some(send.input) });
                Ok(())
            }
            None => Err(Error::UnknownTarget { node: from.clone(), target: send.node.to_string() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use dashflow_graph::{END, START, StateGraph};

    use super::*;

    /// A counter; the routers below read it.
    #[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    struct N(u64);
    dashflow_graph::whole_state!(N);

    fn graph(build: impl FnOnce(&mut StateGraph<N>)) -> Graph<N> {
        let mut graph = StateGraph::<N>::new();
        build(&mut graph);
        graph.build().expect("a valid graph")
    }

    fn add(graph: &mut StateGraph<N>, names: &[&str]) {
        for name in names {
            graph.add_node(*name, |state: Arc<N>| async move { Ok((*state).clone()) });
        }
    }

    /// The names of `routing.next`, with each `Send`'s input.
    fn next(graph: &Graph<N>, routing: &Routing<N>) -> Vec<String> {
        routing
            .next
            .iter()
            .map(|task| {
                let name = &graph.node(task.node).name;
                match &task.input {
                    Some(input) => format!("{name}({})", input.0),
                    None => name.to_string(),
                }
            })
            .collect()
    }

    fn id(graph: &Graph<N>, name: &str) -> NodeId {
        graph.node_id(name).expect("a node of the graph")
    }

    #[test]
    fn edges_from_start_and_from_a_node_give_the_next_frontier_each_node_once() {
        let graph = graph(|g| {
            add(g, &["a", "b", "c"]);
            g.add_edge(START, "a").add_edge(START, "b").add_edge("a", "c").add_edge("b", "c").add_edge("c", END);
        });
        let mut routing = Routing::new(&graph);
        routing.route(&graph, &N(0), None, Vec::new(), None).unwrap();
        assert_eq!(next(&graph, &routing), ["a", "b"]);
        let mut frontier = Vec::new();
        routing.advance(&mut frontier);
        assert!(routing.next.is_empty());
        routing.route(&graph, &N(0), Some(id(&graph, "a")), Vec::new(), None).unwrap();
        routing.route(&graph, &N(0), Some(id(&graph, "b")), Vec::new(), None).unwrap();
        assert_eq!(next(&graph, &routing), ["c"], "reached twice, runs once");
        routing.advance(&mut frontier);
        routing.route(&graph, &N(0), Some(id(&graph, "c")), Vec::new(), None).unwrap();
        assert!(routing.next.is_empty(), "END schedules nothing");
    }

    #[test]
    fn a_conditional_edge_reads_the_state_and_reports_each_decision_in_order() {
        let graph = graph(|g| {
            add(g, &["loop"]);
            g.add_edge(START, "loop").add_conditional_edges(
                "loop",
                |n: &N| if n.0 < 3 { "again" } else { "done" },
                [("again", "loop"), ("done", END)],
            );
        });
        let node = id(&graph, "loop");
        let mut routing = Routing::new(&graph);
        let mut decisions = Vec::new();
        routing.route(&graph, &N(1), Some(node), Vec::new(), Some(&mut decisions)).unwrap();
        routing.route(&graph, &N(3), Some(node), Vec::new(), Some(&mut decisions)).unwrap();
        assert_eq!(next(&graph, &routing), ["loop"]);
        assert_eq!(
            decisions,
            [
                Decision { from: Some(node), edge: 0, position: 0, target: Target::Node(node) },
                Decision { from: Some(node), edge: 0, position: 1, target: Target::End },
            ]
        );
        let labels: Vec<&str> = decisions.iter().map(|decision| &**decision.label(&graph).unwrap()).collect();
        assert_eq!(labels, ["again", "done"]);
    }

    #[test]
    fn an_unknown_label_is_an_error_naming_the_node_the_label_and_the_known_ones() {
        let graph = graph(|g| {
            add(g, &["a"]);
            g.add_edge(START, "a").add_conditional_edges("a", |_: &N| "nowhere", [("end", END)]);
        });
        let error = Routing::new(&graph).route(&graph, &N(0), Some(id(&graph, "a")), Vec::new(), None).unwrap_err();
        assert!(
            matches!(&error, Error::UnknownLabel { node, label, known } if &**node == "a" && label == "nowhere" && known == "end"),
            "{error:?}"
        );
    }

    #[test]
    fn a_join_fires_once_all_its_predecessors_finished_and_then_starts_over() {
        let graph = graph(|g| {
            add(g, &["a", "b", "j"]);
            g.add_edge(START, "a").add_edge(START, "b").add_join(["a", "b"], "j").add_edge("j", END);
        });
        let (a, b) = (id(&graph, "a"), id(&graph, "b"));
        let mut routing = Routing::new(&graph);
        routing.route(&graph, &N(0), Some(a), Vec::new(), None).unwrap();
        assert!(routing.next.is_empty(), "`b` has not finished");
        assert_eq!(routing.join_seen, [vec![true, false]]);
        routing.route(&graph, &N(0), Some(b), Vec::new(), None).unwrap();
        assert_eq!(next(&graph, &routing), ["j"]);
        assert_eq!(routing.join_seen, [vec![false, false]], "progress starts over once the join fires");
    }

    #[test]
    fn a_plain_edge_with_a_goto_or_a_join_beside_it_still_routes_them_all() {
        let graph = graph(|g| {
            add(g, &["a", "b", "next", "j"]);
            g.add_edge(START, "a")
                .add_edge(START, "b")
                .add_edge("a", "next")
                .add_edge("b", END)
                .add_join(["a", "b"], "j")
                .add_edge("next", END)
                .add_edge("j", END);
        });
        let (a, b) = (id(&graph, "a"), id(&graph, "b"));
        let mut routing = Routing::new(&graph);
        routing.route(&graph, &N(0), Some(a), vec![Goto::Node("b".into())], None).unwrap();
        assert_eq!(next(&graph, &routing), ["next", "b"], "the edge and the goto");
        assert_eq!(routing.join_seen, [vec![true, false]], "`a` counted toward the join");
        routing.route(&graph, &N(0), Some(b), Vec::new(), None).unwrap();
        assert_eq!(next(&graph, &routing), ["next", "b", "j"], "`b`'s one edge ends, and the join fires");
        let mut frontier = Vec::new();
        routing.advance(&mut frontier);
        let goto = vec![Goto::Node("a".into())];
        routing.route(&graph, &N(0), Some(id(&graph, "next")), goto, None).unwrap();
        assert_eq!(next(&graph, &routing), ["a"], "a node of one plain edge to the end, and a goto");
    }

    #[test]
    fn sends_and_gotos_add_tasks_and_unknown_targets_are_errors() {
        let graph = graph(|g| {
            add(g, &["split", "work", "other"]);
            g.add_edge(START, "split")
                .add_edge(START, "other")
                .add_send_edges("split", |n: &N| (0..n.0).map(|i| SendTask::new("work", N(i))).collect(), ["work"])
                .add_edge("work", END)
                .add_edge("other", END);
        });
        let split = id(&graph, "split");
        let mut routing = Routing::new(&graph);
        let gotos = vec![Goto::Node("other".into()), Goto::Send(SendTask::new("work", N(9)))];
        routing.route(&graph, &N(2), Some(split), gotos, None).unwrap();
        assert_eq!(next(&graph, &routing), ["work(0)", "work(1)", "other", "work(9)"], "a `Send` always runs");

        let error = routing.route(&graph, &N(0), Some(split), vec![Goto::Node("missing".into())], None).unwrap_err();
        assert!(matches!(&error, Error::UnknownTarget { node, target } if &**node == "split" && target == "missing"));
        let send = vec![Goto::Send(SendTask::new("missing", N(0)))];
        let error = routing.route(&graph, &N(0), Some(split), send, None).unwrap_err();
        assert!(matches!(&error, Error::UnknownTarget { target, .. } if target == "missing"));
    }
}
