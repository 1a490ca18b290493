//! What a running node knows about its run, and how it talks back to it.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use dashflow_telemetry::{RunId, RunIds};
use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::cancel::{CancelSignal, passed};
use crate::{Interrupt, NodeError, NodeErrorKind, NodeName};

/// The runtime side of a [`NodeContext`], implemented by the executor.
///
/// Graph code never implements this; it exists so that this crate can define the context
/// without depending on the executor.
pub trait RunScope: Send + Sync + 'static {
    /// Whether anyone listens to custom values; when not, `emit` skips building them.
    fn custom_enabled(&self) -> bool;

    /// Delivers a custom value written by `task`; resolves once the value is accepted (a full
    /// stream buffer makes the node wait, which is how backpressure reaches producers).
    fn emit_custom(&self, task: &TaskId, value: serde_json::Value) -> BoxFuture<'static, ()>;

    /// The thread the run belongs to, if any.
    fn thread_id(&self) -> Option<&str>;

    /// The value a resume delivered for the `index`-th `interrupt` call of `task`, if any.
    fn resume_value(&self, task: &TaskId, index: u32) -> Option<serde_json::Value>;

    /// The concrete scope, for runtimes that nest runs (subgraphs).
    fn as_any(&self) -> &dyn Any;

    /// The run's context: the value its configuration carries for nodes to read (none by
    /// default).
    fn context(&self) -> Option<&(dyn Any + Send + Sync)> {
        None
    }

    /// The run's cancellation signal, if the runtime can cancel runs (none by default).
    fn cancellation(&self) -> Option<&CancelSignal> {
        None
    }

    /// Where a subgraph run's checkpoints live in its thread (its parent tasks' ids, outermost
    /// first, joined by `|`); empty for a top-level run and for runs nobody checkpoints.
    fn namespace(&self) -> &str {
        ""
    }
}

/// Identifies one task of a run: the superstep, the node and the task's place in the frontier.
///
/// It is stable across re-executions of the same step (retries, resumes), which makes it a
/// good idempotency key for a node's outside effects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TaskId {
    /// 1-based superstep.
    pub step: u64,
    /// The node the task runs.
    pub node: NodeName,
    /// Position of the task in the superstep's frontier.
    pub index: u32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.step, self.node, self.index)
    }
}

/// Passed to nodes that take a second argument: who and where they are, and a way to write
/// custom values to the run's stream while they work.
pub struct NodeContext {
    task: TaskId,
    attempt: u32,
    run: RunIds,
    scope: Arc<dyn RunScope>,
    /// How many times this task called `interrupt`, to match calls with resume values.
    interrupts: AtomicU32,
    /// When the attempt times out, if it has a timeout.
    deadline: Option<Instant>,
}

impl NodeContext {
    /// A context for `task`; called by the executor.
    pub fn new(task: TaskId, attempt: u32, run: RunIds, scope: Arc<dyn RunScope>) -> Self {
        Self { task, attempt, run, scope, interrupts: AtomicU32::new(0), deadline: None }
    }

    /// The context of an attempt that times out at `deadline`; called by the executor.
    #[doc(hidden)]
    #[must_use]
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// A context outside any run, for calling a node function directly in a unit test:
    /// step 1, attempt 1, a fresh run id, and custom values discarded.
    pub fn detached(node: impl Into<NodeName>) -> Self {
        let task = TaskId { step: 1, node: node.into(), index: 0 };
        Self::new(task, 1, RunIds::root(RunId::new()), Arc::new(DetachedScope { context: None }))
    }

    /// [`detached`](Self::detached), with a run context for the node to read
    /// ([`context`](Self::context)); a real run's comes from its configuration.
    pub fn detached_with_context<C: Any + Send + Sync>(node: impl Into<NodeName>, context: C) -> Self {
        let task = TaskId { step: 1, node: node.into(), index: 0 };
        let scope = DetachedScope { context: Some(Box::new(context)) };
        Self::new(task, 1, RunIds::root(RunId::new()), Arc::new(scope))
    }

    /// The node this task runs.
    pub fn node(&self) -> &NodeName {
        &self.task.node
    }

    /// The 1-based superstep.
    pub fn step(&self) -> u64 {
        self.task.step
    }

    /// The 1-based attempt (above 1 when the retry policy re-runs the task).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The task's id.
    pub fn task_id(&self) -> &TaskId {
        &self.task
    }

    /// This run's place in the execution stack (its id, parent, root and depth).
    pub fn run(&self) -> &RunIds {
        &self.run
    }

    /// The thread the run belongs to, if the run was given one.
    pub fn thread_id(&self) -> Option<&str> {
        self.scope.thread_id()
    }

    /// A key that names this task across retries and resumes: pass it to outside services so
    /// that a repeated task does not repeat its effect.
    ///
    /// On a thread it is the thread and the task id (`thread-7/2:fetch:0`); in a subgraph run
    /// the parent tasks' ids come between (`thread-7/3:review:0|2:fetch:0`), so the tasks of
    /// two runs of one subgraph (a node in a loop, parallel `Send`s of it) never share a key.
    /// Without a thread, or in a subgraph run nobody checkpoints (which cannot be resumed),
    /// it is the run id and the task id.
    pub fn idempotency_key(&self) -> String {
        let namespace = self.scope.namespace();
        match self.scope.thread_id() {
            Some(thread) if !namespace.is_empty() => format!("{thread}/{namespace}|{}", self.task),
            Some(thread) if self.run.depth == 0 => format!("{thread}/{}", self.task),
            _ => format!("{}/{}", self.run.run_id, self.task),
        }
    }

    /// Whether custom values reach anyone; lets a node skip building expensive ones.
    pub fn custom_enabled(&self) -> bool {
        self.scope.custom_enabled()
    }

    /// Writes a custom value (progress, LLM tokens, ...) to the run's stream
    /// (`StreamMode::Custom`) and event callbacks. Waits while the stream's buffer is full.
    pub async fn emit(&self, value: impl Into<serde_json::Value>) {
        if self.scope.custom_enabled() {
            self.scope.emit_custom(&self.task, value.into()).await;
        }
    }

    /// Pauses the run for a person's input, or returns the input once the run was resumed.
    ///
    /// The first time, this returns an error of kind `Interrupted` carrying `value`: return it
    /// with `?`, and the run stops with `RunStatus::Interrupted` after checkpointing the
    /// finished sibling tasks. Resuming the thread with `Command::resume(input)` runs the node
    /// again from its start; this call then returns `Ok(input)`. A node may interrupt several
    /// times; each call is matched with the resume values in order. Needs a checkpointer.
    ///
    /// ```no_run
    /// # use dashflow_graph::{NodeContext, NodeError};
    /// # async fn approve(ctx: NodeContext) -> Result<bool, NodeError> {
    /// let answer = ctx.interrupt(serde_json::json!({ "question": "send this reply?" }))?;
    /// Ok(answer == "yes")
    /// # }
    /// ```
    pub fn interrupt(&self, value: impl Into<serde_json::Value>) -> Result<serde_json::Value, NodeError> {
        let index = self.interrupts.fetch_add(1, Ordering::Relaxed);
        match self.scope.resume_value(&self.task, index) {
            Some(input) => Ok(input),
            None => Err(NodeError::new(Interrupt { value: value.into() }).with_kind(NodeErrorKind::Interrupted)),
        }
    }

    /// The run's context of type `C`, if the run was given one (`RunConfig::context` in the
    /// executor): what every node of one run shares and no checkpoint stores, such as a
    /// database handle, a client or the user the run acts for. Subgraph runs see their
    /// parent's. `None` when the run has no context or one of another type.
    ///
    /// ```
    /// # use dashflow_graph::NodeContext;
    /// struct User { id: u64 }
    /// let ctx = NodeContext::detached_with_context("greet", User { id: 7 });
    /// assert_eq!(ctx.context::<User>().map(|user| user.id), Some(7));
    /// assert!(ctx.context::<String>().is_none());
    /// ```
    pub fn context<C: Any>(&self) -> Option<&C> {
        self.scope.context()?.downcast_ref::<C>()
    }

    /// [`context`](Self::context), or a permanent error naming the type the node needs and
    /// how to pass it: for a node that cannot work without it.
    pub fn require_context<C: Any>(&self) -> Result<&C, NodeError> {
        self.context::<C>().ok_or_else(|| {
            NodeError::permanent_msg(format!(
                "node `{}` needs a run context of type `{}`, and this run has {}: pass one with \
                 `RunConfig::context(...)`",
                self.task.node,
                std::any::type_name::<C>(),
                if self.scope.context().is_some() { "one of another type" } else { "none" },
            ))
        })
    }

    /// Whether this attempt should stop: its timeout passed, or its run was cancelled (its
    /// `invoke` future or stream was dropped, or it ended with an error, a run timeout among
    /// them), or a run this one is nested in was cancelled or passed its node's timeout.
    ///
    /// Nothing can stop a node between two awaits, so a long computation asks this between
    /// chunks of work and returns early (any result it returns after its timeout is discarded
    /// as a timeout). A cheap check: an atomic flag per level of nesting, and the clock when
    /// the attempt has a timeout. Each attempt of a retried task gets a fresh context: a retry
    /// after a timeout starts uncancelled.
    ///
    /// ```
    /// # use dashflow_graph::{NodeContext, NodeError};
    /// fn crunch(items: &[u64], ctx: &NodeContext) -> Result<u64, NodeError> {
    ///     let mut sum = 0;
    ///     for chunk in items.chunks(1024) {
    ///         if ctx.is_cancelled() {
    ///             return Err(NodeError::msg("stopped: cancelled or out of time"));
    ///         }
    ///         sum += chunk.iter().sum::<u64>();
    ///     }
    ///     Ok(sum)
    /// }
    /// assert_eq!(crunch(&[1, 2, 3], &NodeContext::detached("crunch")).unwrap(), 6);
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.deadline.is_some_and(passed) || self.scope.cancellation().is_some_and(CancelSignal::is_cancelled)
    }

    /// Resolves once [`is_cancelled`](Self::is_cancelled) holds; never, for a context that
    /// cannot be cancelled (a [`detached`](Self::detached) one). For racing work that does not
    /// watch the run itself, such as a thread the node waits on. Waiting on a timeout needs
    /// a tokio runtime with its timers, as every node has.
    pub async fn cancelled(&self) {
        match self.scope.cancellation() {
            Some(signal) => signal.cancelled(self.deadline).await,
            None => match self.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            },
        }
    }

    /// When this attempt times out, if it has a timeout.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The runtime's scope; for runtimes that nest runs.
    pub fn scope(&self) -> &Arc<dyn RunScope> {
        &self.scope
    }
}

impl Clone for NodeContext {
    fn clone(&self) -> Self {
        Self {
            task: self.task.clone(),
            attempt: self.attempt,
            run: self.run,
            scope: Arc::clone(&self.scope),
            interrupts: AtomicU32::new(self.interrupts.load(Ordering::Relaxed)),
            deadline: self.deadline,
        }
    }
}

impl fmt::Debug for NodeContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeContext")
            .field("task", &self.task)
            .field("attempt", &self.attempt)
            .field("run", &self.run)
            .field("thread_id", &self.thread_id())
            .finish_non_exhaustive()
    }
}

struct DetachedScope {
    context: Option<Box<dyn Any + Send + Sync>>,
}

impl RunScope for DetachedScope {
    fn custom_enabled(&self) -> bool {
        false
    }

    fn emit_custom(&self, _task: &TaskId, _value: serde_json::Value) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    fn thread_id(&self) -> Option<&str> {
        None
    }

    fn resume_value(&self, _task: &TaskId, _index: u32) -> Option<serde_json::Value> {
        None
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn context(&self) -> Option<&(dyn Any + Send + Sync)> {
        self.context.as_deref()
    }
}
