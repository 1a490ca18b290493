//! Dynamic control from inside a node: `Command` and `Send`.

use std::fmt;
use std::sync::Arc;

use crate::{GraphState, NodeName};

/// A task for `node` that sees `input` instead of the shared state: the map step of
/// map-reduce. Its update is merged into the shared state like any other task's.
///
/// Not in the prelude, because the name would shadow the `Send` marker trait; write
/// `dashflow::Send` (or return sends from `add_send_edges` routers and `Command::send`).
pub struct Send<S> {
    /// The node to run.
    pub node: NodeName,
    /// The snapshot the task reads.
    pub input: Arc<S>,
}

impl<S> Send<S> {
    /// A task for `node` reading `input`.
    pub fn new(node: impl Into<NodeName>, input: S) -> Self {
        Self { node: node.into(), input: Arc::new(input) }
    }
}

impl<S> Clone for Send<S> {
    fn clone(&self) -> Self {
        Self { node: self.node.clone(), input: Arc::clone(&self.input) }
    }
}

impl<S> fmt::Debug for Send<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Send").field("node", &self.node).finish_non_exhaustive()
    }
}

/// Where a [`Command`] sends the run next.
pub enum Goto<S> {
    /// Run this node (or stop this branch, for `END`) in the next superstep.
    Node(NodeName),
    /// Run a task with its own input in the next superstep.
    Send(Send<S>),
}

impl<S> Clone for Goto<S> {
    fn clone(&self) -> Self {
        match self {
            Self::Node(node) => Self::Node(node.clone()),
            Self::Send(send) => Self::Send(send.clone()),
        }
    }
}

impl<S> fmt::Debug for Goto<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Node(node) => f.debug_tuple("Node").field(node).finish(),
            Self::Send(send) => send.fmt(f),
        }
    }
}

/// A node's result that updates the state *and* says where to go next.
///
/// The targets are added to those of the node's static edges; a node that only routes this
/// way needs no outgoing edge.
///
/// ```
/// # use dashflow_graph::{Command, END};
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
/// # struct Counter { n: u32 }
/// # dashflow_graph::whole_state!(Counter);
/// let done: Command<Counter> = Command::update(Counter { n: 3 }).and_goto(END);
/// assert_eq!(done.goto.len(), 1);
/// ```
#[non_exhaustive]
pub struct Command<S: GraphState> {
    /// The state update, if any.
    pub update: Option<S::Update>,
    /// Where to go next.
    pub goto: Vec<Goto<S>>,
    /// For `CompiledGraph::resume`: the answer delivered to the interrupted node's
    /// `NodeContext::interrupt` call.
    pub resume: Option<serde_json::Value>,
}

impl<S: GraphState> Command<S> {
    /// A command that neither updates nor routes.
    pub fn new() -> Self {
        Self { update: None, goto: Vec::new(), resume: None }
    }

    /// Applies `update`.
    pub fn update(update: S::Update) -> Self {
        Self { update: Some(update), goto: Vec::new(), resume: None }
    }

    /// Goes to `node` (or `END`) next.
    pub fn goto(node: impl Into<NodeName>) -> Self {
        Self::new().and_goto(node)
    }

    /// Resumes an interrupted run, answering its pending `interrupt` with `value`.
    pub fn resume(value: impl Into<serde_json::Value>) -> Self {
        Self { resume: Some(value.into()), ..Self::new() }
    }

    /// Runs `send` next.
    pub fn send(send: Send<S>) -> Self {
        Self::new().and_send(send)
    }

    /// Also applies `update` (replacing an earlier one).
    pub fn with_update(mut self, update: S::Update) -> Self {
        self.update = Some(update);
        self
    }

    /// Also goes to `node`.
    pub fn and_goto(mut self, node: impl Into<NodeName>) -> Self {
        self.goto.push(Goto::Node(node.into()));
        self
    }

    /// Also runs `send`.
    pub fn and_send(mut self, send: Send<S>) -> Self {
        self.goto.push(Goto::Send(send));
        self
    }
}

impl<S: GraphState> Default for Command<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: GraphState> Clone for Command<S> {
    fn clone(&self) -> Self {
        Self { update: self.update.clone(), goto: self.goto.clone(), resume: self.resume.clone() }
    }
}

impl<S: GraphState> fmt::Debug for Command<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("update", &self.update.as_ref().map(|_| ".."))
            .field("goto", &self.goto)
            .field("resume", &self.resume)
            .finish()
    }
}
