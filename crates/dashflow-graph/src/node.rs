//! Nodes: the async functions a graph runs, and how they are registered.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::{Command, GraphState, NodeContext, NodeError, RetryPolicy};

/// A node's name. Shared, so events and results name nodes without copying strings.
pub type NodeName = Arc<str>;

/// What one execution of a node produced.
pub enum NodeOutput<S: GraphState> {
    /// A partial update of the state.
    Update(S::Update),
    /// An update plus routing.
    Command(Command<S>),
}

impl<S: GraphState> fmt::Debug for NodeOutput<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Update(_) => f.write_str("Update(..)"),
            Self::Command(command) => command.fmt(f),
        }
    }
}

/// The future a node returns, boxed so that nodes of every shape share one type.
pub type NodeFuture<S> = BoxFuture<'static, Result<NodeOutput<S>, NodeError>>;

/// A node's function: of the state alone, or of the state and a context.
enum NodeFn<S: GraphState> {
    State(Arc<dyn Fn(Arc<S>) -> NodeFuture<S> + Send + Sync>),
    Context(Arc<dyn Fn(Arc<S>, NodeContext) -> NodeFuture<S> + Send + Sync>),
}

impl<S: GraphState> Clone for NodeFn<S> {
    fn clone(&self) -> Self {
        match self {
            Self::State(run) => Self::State(Arc::clone(run)),
            Self::Context(run) => Self::Context(Arc::clone(run)),
        }
    }
}

/// A registered node: a type-erased async function of the state snapshot and, if it takes
/// one, the context.
pub struct Node<S: GraphState> {
    run: NodeFn<S>,
    routes_itself: bool,
    subgraph: bool,
}

impl<S: GraphState> Node<S> {
    /// A node from a function that returns a boxed future, returning updates (see
    /// [`Node::routing`] for one that may return a [`Command`]).
    pub fn from_boxed(run: impl Fn(Arc<S>, NodeContext) -> NodeFuture<S> + Send + Sync + 'static) -> Self {
        Self { run: NodeFn::Context(Arc::new(run)), routes_itself: false, subgraph: false }
    }

    /// A node from a function of the state alone that returns a boxed future: the executor
    /// then makes no context for its calls.
    pub fn from_boxed_state_fn(run: impl Fn(Arc<S>) -> NodeFuture<S> + Send + Sync + 'static) -> Self {
        Self { run: NodeFn::State(Arc::new(run)), routes_itself: false, subgraph: false }
    }

    /// Marks the node as one that may return a [`Command`], so validation cannot know where
    /// it goes.
    #[must_use]
    pub fn routing(mut self) -> Self {
        self.routes_itself = true;
        self
    }

    /// Marks the node as one that runs a graph inside the run that calls it (a subgraph). The
    /// executor then tells it, for each call, which checkpoint of the calling run the call
    /// belongs to; graphs without such nodes pay nothing for it. Compiled graphs used as
    /// nodes are marked already.
    #[must_use]
    pub fn subgraph(mut self) -> Self {
        self.subgraph = true;
        self
    }

    /// Starts one execution of the node; `ctx` makes its context, called only if the node
    /// takes one.
    pub fn call(&self, state: Arc<S>, ctx: impl FnOnce() -> NodeContext) -> NodeFuture<S> {
        match &self.run {
            NodeFn::State(run) => run(state),
            NodeFn::Context(run) => run(state, ctx()),
        }
    }

    /// Whether the node takes a [`NodeContext`].
    pub fn takes_context(&self) -> bool {
        matches!(self.run, NodeFn::Context(_))
    }

    /// Whether the node may route itself with a [`Command`].
    pub fn routes_itself(&self) -> bool {
        self.routes_itself
    }

    /// Whether the node runs a subgraph (see [`Node::subgraph`]).
    pub fn is_subgraph(&self) -> bool {
        self.subgraph
    }
}

impl<S: GraphState> Clone for Node<S> {
    fn clone(&self) -> Self {
        Self { run: self.run.clone(), routes_itself: self.routes_itself, subgraph: self.subgraph }
    }
}

impl<S: GraphState> fmt::Debug for Node<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("routes_itself", &self.routes_itself)
            .field("subgraph", &self.subgraph)
            .finish_non_exhaustive()
    }
}

/// Anything `add_node` accepts: async functions and closures of `Arc<S>` (and optionally a
/// [`NodeContext`]) returning `Result<S::Update, NodeError>` or
/// `Result<Command<S>, NodeError>`, a ready [`Node`], or a compiled subgraph.
///
/// `M` is a marker that tells the shapes apart (the way axum tells handlers apart); callers
/// never name it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a node of a graph over `{S}`",
    label = "not a node of this graph",
    note = "a node is an async fn or closure taking `Arc<{S}>`, or `(Arc<{S}>, NodeContext)`, and returning \
            `Result<update, NodeError>` (the update type `#[derive(GraphState)]` made) or \
            `Result<Command<{S}>, NodeError>`; or a `Node<{S}>` or a compiled subgraph (`Subgraph`)",
    note = "take the state as `Arc<{S}>`, not `&{S}` or `{S}`, and return its update (`Ok(update)`), not the state",
    note = "the node's future must be `Send + 'static`: hold no `Rc`, `RefCell` borrow or std `MutexGuard` across an \
            `.await`, and borrow nothing from outside it (move clones in, `async move`)"
)]
pub trait IntoNode<S: GraphState, M>: Send + Sync + 'static {
    /// The type-erased node.
    fn into_node(self) -> Node<S>;
}

/// Marker types for [`IntoNode`]; not meant to be named.
pub mod markers {
    /// `Fn(Arc<S>) -> Future<Output = Result<S::Update, NodeError>>`.
    #[derive(Debug)]
    pub enum StateToUpdate {}
    /// `Fn(Arc<S>, NodeContext) -> Future<Output = Result<S::Update, NodeError>>`.
    #[derive(Debug)]
    pub enum ContextToUpdate {}
    /// `Fn(Arc<S>) -> Future<Output = Result<Command<S>, NodeError>>`.
    #[derive(Debug)]
    pub enum StateToCommand {}
    /// `Fn(Arc<S>, NodeContext) -> Future<Output = Result<Command<S>, NodeError>>`.
    #[derive(Debug)]
    pub enum ContextToCommand {}
    /// A ready `Node<S>`.
    #[derive(Debug)]
    pub enum Ready {}
}

impl<S, F, Fut> IntoNode<S, markers::StateToUpdate> for F
where
    S: GraphState,
    F: Fn(Arc<S>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<S::Update, NodeError>> + Send + 'static,
{
    fn into_node(self) -> Node<S> {
        Node::from_boxed_state_fn(move |state| self(state).map(|r| r.map(NodeOutput::Update)).boxed())
    }
}

impl<S, F, Fut> IntoNode<S, markers::ContextToUpdate> for F
where
    S: GraphState,
    F: Fn(Arc<S>, NodeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<S::Update, NodeError>> + Send + 'static,
{
    fn into_node(self) -> Node<S> {
        Node::from_boxed(move |state, ctx| self(state, ctx).map(|r| r.map(NodeOutput::Update)).boxed())
    }
}

impl<S, F, Fut> IntoNode<S, markers::StateToCommand> for F
where
    S: GraphState,
    F: Fn(Arc<S>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Command<S>, NodeError>> + Send + 'static,
{
    fn into_node(self) -> Node<S> {
        Node::from_boxed_state_fn(move |state| self(state).map(|r| r.map(NodeOutput::Command)).boxed()).routing()
    }
}

impl<S, F, Fut> IntoNode<S, markers::ContextToCommand> for F
where
    S: GraphState,
    F: Fn(Arc<S>, NodeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Command<S>, NodeError>> + Send + 'static,
{
    fn into_node(self) -> Node<S> {
        Node::from_boxed(move |state, ctx| self(state, ctx).map(|r| r.map(NodeOutput::Command)).boxed()).routing()
    }
}

impl<S: GraphState> IntoNode<S, markers::Ready> for Node<S> {
    fn into_node(self) -> Node<S> {
        self
    }
}

/// Per-node limits: a timeout per attempt and a retry policy.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct NodeOptions {
    /// Cancels an attempt that runs longer than this (see [`NodeOptions::timeout`]).
    pub timeout: Option<Duration>,
    /// Retries failed attempts; without one a failure fails the run.
    pub retry: Option<RetryPolicy>,
    /// Where the node runs: on the async runtime (the default), on a CPU pool, or on a thread
    /// that may block.
    pub placement: Placement,
}

/// Where a node's tasks run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Placement {
    /// On the async runtime: polled on its run's own task (with the other async tasks of its
    /// step, when there are several), or on the graph's scheduler if that keeps work off the
    /// caller. For nodes that mostly await: a node that computes for long between awaits
    /// holds up its siblings and its run, and should be [`CpuBound`](Placement::CpuBound).
    #[default]
    Async,
    /// On the process's work-stealing pool of CPU threads, never on the runtime's threads:
    /// for nodes that compute for a while (parsing, scoring), so they do not stall other runs.
    CpuBound,
    /// On a thread that may block (synchronous I/O, FFI), never on the runtime's threads.
    Blocking,
}

impl NodeOptions {
    /// No timeout, no retries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels an attempt after `timeout`: its future is dropped, and a result that arrives
    /// later (from a node that computed past its deadline without awaiting) is discarded: the
    /// attempt is a timeout either way, never a success. A computation that cannot await
    /// stops early by asking [`NodeContext::is_cancelled`](crate::NodeContext::is_cancelled).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Retries failed attempts with `policy`.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Runs the node on the CPU pool ([`Placement::CpuBound`]).
    pub fn cpu_bound(mut self) -> Self {
        self.placement = Placement::CpuBound;
        self
    }

    /// Runs the node on a thread that may block ([`Placement::Blocking`]).
    pub fn blocking(mut self) -> Self {
        self.placement = Placement::Blocking;
        self
    }
}
