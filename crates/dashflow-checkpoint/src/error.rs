//! What can go wrong storing or loading a checkpoint.

use std::error::Error as StdError;
use std::sync::Arc;

/// A checkpoint operation failed. Callers act on the kind: retry `Unavailable` when it says
/// so, report `Conflict` as a busy thread, never use state behind `Corrupt` or a mismatch.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The thread or checkpoint does not exist.
    #[error("{what} was not found")]
    NotFound {
        /// What was looked for, e.g. `checkpoint 01J… of thread t-1`.
        what: String,
    },
    /// Another writer advanced the thread first: one writer per thread.
    #[error(
        "thread `{thread_id}` (namespace `{namespace}`) moved on: expected head {expected}, found {actual}; \
         another run is writing this thread"
    )]
    Conflict {
        /// The thread.
        thread_id: String,
        /// The namespace within the thread.
        namespace: String,
        /// The head the writer last saw (`none` for a new thread).
        expected: String,
        /// The head now stored (`none` when the thread is empty).
        actual: String,
    },
    /// The blob was written by another format version, codec or state schema.
    #[error("checkpoint blob mismatch: {detail}; load it with the graph and state type that wrote it")]
    VersionMismatch {
        /// What differs.
        detail: String,
    },
    /// The blob or record is damaged or is not a DashFlow checkpoint.
    #[error("corrupt checkpoint: {detail}")]
    Corrupt {
        /// What is wrong.
        detail: String,
    },
    /// The storage is unreachable or refused the operation.
    #[error("checkpoint storage unavailable ({})", if *.retryable { "retryable" } else { "not retryable" })]
    Unavailable {
        /// Whether trying again may succeed (a dropped connection, a busy database).
        retryable: bool,
        /// The backend's error.
        #[source]
        source: Arc<dyn StdError + Send + Sync + 'static>,
    },
    /// The backend does not implement this operation.
    #[error("{operation} is not supported by this checkpointer")]
    NotSupported {
        /// The operation.
        operation: &'static str,
    },
    /// A value could not be encoded.
    #[error("cannot encode checkpoint data: {detail}")]
    Encode {
        /// Why.
        detail: String,
    },
}

impl CheckpointError {
    /// Wraps a backend error as `Unavailable`.
    pub fn unavailable(retryable: bool, source: impl StdError + Send + Sync + 'static) -> Self {
        Self::Unavailable { retryable, source: Arc::new(source) }
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { retryable: true, .. })
    }

    /// Whether this is a `Conflict` (another writer owns the thread).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

/// `Result` with [`CheckpointError`] as the default error.
pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;
