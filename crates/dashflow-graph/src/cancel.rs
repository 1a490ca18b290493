//! How a run tells its nodes to stop: the run's cancellation signal, which the executor sets
//! when the run is dropped or ends early, and which runs nested in a node (subgraphs) inherit
//! together with that node's attempt deadline.
//!
//! Nothing can preempt a node that computes without awaiting: dropping its future takes effect
//! only at its next `.await`. A long computation asks [`NodeContext::is_cancelled`] between
//! chunks of work, or races [`NodeContext::cancelled`] against an await that does not watch
//! the run itself.
//!
//! [`NodeContext::is_cancelled`]: crate::NodeContext::is_cancelled
//! [`NodeContext::cancelled`]: crate::NodeContext::cancelled

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::context::RunScope;

/// One run's cancellation: set once, never cleared.
///
/// Checking it reads one flag per level of nesting (and the clock when a level has a
/// deadline); waiting for it allocates, but only for a node that waits.
#[derive(Default)]
pub struct CancelSignal {
    cancelled: AtomicBool,
    notify: Notify,
    /// For a run nested in a node: that node's attempt deadline, if it has one.
    deadline: Option<Instant>,
    /// For a run nested in a node: the scope of the run that node belongs to.
    parent: Option<Arc<dyn RunScope>>,
}

impl CancelSignal {
    /// The signal of a top-level run.
    pub fn new() -> Self {
        Self::default()
    }

    /// The signal of a run nested in the task that owns `ctx`: cancelled with that task's run
    /// and once that task's attempt passes its deadline.
    pub fn nested(ctx: &crate::NodeContext) -> Self {
        Self { deadline: ctx.deadline(), parent: Some(Arc::clone(ctx.scope())), ..Self::default() }
    }

    /// Cancels the run: every context of it (and of the runs nested in it) reports it.
    pub fn cancel(&self) {
        if !self.cancelled.swap(true, Ordering::SeqCst) {
            self.notify.notify_waiters();
        }
    }

    /// Whether this run, or a run it is nested in, was cancelled or passed the deadline it
    /// inherited.
    pub fn is_cancelled(&self) -> bool {
        let mut level = self;
        loop {
            if level.cancelled.load(Ordering::Acquire) || level.deadline.is_some_and(passed) {
                return true;
            }
            match level.parent.as_deref().and_then(|scope| scope.cancellation()) {
                Some(parent) => level = parent,
                None => return false,
            }
        }
    }

    /// Resolves once [`is_cancelled`](Self::is_cancelled) holds or `deadline` passes (never,
    /// when neither can happen).
    pub(crate) async fn cancelled(&self, deadline: Option<Instant>) {
        let mut deadline = deadline;
        let mut waits = Vec::new();
        let mut level = Some(self);
        while let Some(signal) = level {
            // Registered before the flags are read: a `cancel` after that read wakes it.
            waits.push(Box::pin(signal.notify.notified()));
            deadline = earliest(deadline, signal.deadline);
            level = signal.parent.as_deref().and_then(|scope| scope.cancellation());
        }
        if self.is_cancelled() {
            return;
        }
        let cancelled = futures::future::select_all(waits);
        match deadline {
            Some(at) => drop(futures::future::select(cancelled, Box::pin(tokio::time::sleep_until(at))).await),
            None => drop(cancelled.await),
        }
    }
}

impl fmt::Debug for CancelSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelSignal")
            .field("cancelled", &self.is_cancelled())
            .field("deadline", &self.deadline)
            .field("nested", &self.parent.is_some())
            .finish()
    }
}

/// Whether `deadline` has passed, on tokio's clock (the one attempt timeouts use).
pub(crate) fn passed(deadline: Instant) -> bool {
    Instant::now() >= deadline
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
