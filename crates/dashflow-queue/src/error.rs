//! What can go wrong with a queue operation.

use std::error::Error as StdError;
use std::sync::Arc;

use dashflow_checkpoint::CheckpointError;

/// A queue operation failed. Callers act on the kind: `ThreadBusy` is a submit to retry
/// later (or to enqueue), `LeaseLost` means another worker owns the run now, `Unavailable`
/// with `retryable` may succeed when tried again.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A run of this thread is queued or running, and the submit asked to reject (the
    /// default): one active run per thread.
    #[error(
        "thread `{thread_id}` has an active run ({active_run}); wait for it, cancel it, or submit with Multitask::Enqueue"
    )]
    ThreadBusy {
        /// The thread.
        thread_id: String,
        /// The run that is queued or running on it.
        active_run: String,
    },
    /// No run (or worker) with this id.
    #[error("{what} was not found")]
    NotFound {
        /// What was looked for, e.g. `run 01J…`.
        what: String,
    },
    /// The run's lease moved on: another worker claimed it (or the sweeper re-queued it, or it
    /// was cancelled) after this worker's epoch; nothing was written.
    #[error("lost the lease of run {run_id} (epoch {epoch}): {why}")]
    LeaseLost {
        /// The run.
        run_id: String,
        /// The epoch this worker held.
        epoch: i64,
        /// What the queue found instead.
        why: String,
    },
    /// The run cannot be retried (see `RunQueue::retry`): it did not fail and was not
    /// cancelled, or a later run moved its thread on.
    #[error("run {run_id} cannot be retried: {why}")]
    NotRetryable {
        /// The run.
        run_id: String,
        /// Why not, and what to do instead.
        why: String,
    },
    /// A submitted or stored value is not acceptable (an empty thread id, a NUL character).
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// Which value.
        what: &'static str,
        /// What is wrong and what to do.
        detail: String,
    },
    /// The queue's storage is unreachable or refused the operation.
    #[error("run queue unavailable while trying to {operation} ({})", if *.retryable { "retryable" } else { "not retryable" })]
    Unavailable {
        /// What was being done, e.g. `claim runs`.
        operation: &'static str,
        /// Whether trying again may succeed.
        retryable: bool,
        /// The backend's error.
        #[source]
        source: Arc<dyn StdError + Send + Sync + 'static>,
    },
    /// A stored row does not decode.
    #[error("corrupt run queue data: {detail}")]
    Corrupt {
        /// What is wrong.
        detail: String,
    },
    /// A checkpoint operation the queue made failed.
    #[error("checkpoint operation of the run queue failed")]
    Checkpoint(#[from] CheckpointError),
}

impl QueueError {
    /// Run `run_id` cannot be retried: run `later` came after it on `thread_id`.
    pub fn moved_on(run_id: &str, later: &str, thread_id: &str) -> Self {
        Self::NotRetryable {
            run_id: run_id.to_owned(),
            why: format!(
                "run {later} came after it on thread `{thread_id}`, so the thread's checkpoint is no longer this run's; submit a new run instead"
            ),
        }
    }

    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { retryable: true, .. })
    }
}

/// `Result` with [`QueueError`] as the default error.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;
