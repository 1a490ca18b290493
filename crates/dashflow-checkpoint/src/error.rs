//! What can go wrong storing or loading a checkpoint.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use crate::CheckpointId;

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
    #[error("checkpoint blob mismatch{}: {detail}; load it with the graph and state type that wrote it", in_blob(.at))]
    VersionMismatch {
        /// What differs.
        detail: String,
        /// The stored blob, when the error is about one.
        at: Option<Box<BlobLocation>>,
    },
    /// The blob or record is damaged or is not a DashFlow checkpoint.
    #[error("corrupt checkpoint data{}: {detail}", in_blob(.at))]
    Corrupt {
        /// What is wrong.
        detail: String,
        /// The stored blob, when the error is about one.
        at: Option<Box<BlobLocation>>,
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
    /// The operation reaches beyond the one thread this checkpointer may write. A checkpointer
    /// fenced by a lease (a run queue's `RunQueue::fenced_checkpointer`, a guarded PostgreSQL
    /// checkpointer) writes only the lease's thread, each write checked against its fence;
    /// deleting or copying into another thread, or deleting idle threads across the database,
    /// is done through an unfenced checkpointer (the run queue's `RunQueue::checkpointer()`).
    #[error(
        "{operation} of {target} is not available through a checkpointer fenced to thread `{fenced_thread}`: \
         it writes only that thread; use an unfenced checkpointer (a run queue's `RunQueue::checkpointer()`)"
    )]
    OutsideFence {
        /// The operation, e.g. `delete_idle_threads`.
        operation: &'static str,
        /// What it would have written, e.g. ``thread `u` `` or `idle threads`.
        target: String,
        /// The thread the checkpointer's fence covers.
        fenced_thread: String,
    },
    /// The shape of a type could not be traced from its `Deserialize` (see `shape`): it needs a
    /// self-describing format, or checks its values beyond what tracing can give it.
    #[error("cannot trace the shape of `{type_name}`: {detail}")]
    Untraceable {
        /// The type traced.
        type_name: String,
        /// Why.
        detail: String,
    },
    /// A value could not be encoded.
    #[error("cannot encode checkpoint data: {detail}")]
    Encode {
        /// Why.
        detail: String,
    },
}

/// Where a stored blob lives: a checkpoint of a thread's namespace, or a pending write of a
/// task after that checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlobLocation {
    /// The thread.
    pub thread_id: String,
    /// The namespace within the thread (`""` for the top-level graph).
    pub namespace: String,
    /// The checkpoint (for a pending write, the checkpoint it was written after).
    pub checkpoint_id: CheckpointId,
    /// For a pending write, its id (task id and kind); `None` for the checkpoint's own blob.
    pub write_id: Option<String>,
}

impl BlobLocation {
    /// The blob of checkpoint `checkpoint_id`.
    pub fn checkpoint(thread_id: &str, namespace: &str, checkpoint_id: &CheckpointId) -> Self {
        Self {
            thread_id: thread_id.to_owned(),
            namespace: namespace.to_owned(),
            checkpoint_id: checkpoint_id.clone(),
            write_id: None,
        }
    }

    /// The blob of pending write `write_id` stored after checkpoint `checkpoint_id`.
    pub fn pending_write(thread_id: &str, namespace: &str, checkpoint_id: &CheckpointId, write_id: &str) -> Self {
        Self { write_id: Some(write_id.to_owned()), ..Self::checkpoint(thread_id, namespace, checkpoint_id) }
    }
}

impl fmt::Display for BlobLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(write_id) = &self.write_id {
            write!(f, "pending write `{write_id}` after ")?;
        }
        write!(f, "checkpoint {} of thread `{}`", self.checkpoint_id, self.thread_id)?;
        if !self.namespace.is_empty() {
            write!(f, " (namespace `{}`)", self.namespace)?;
        }
        Ok(())
    }
}

fn in_blob(at: &Option<Box<BlobLocation>>) -> String {
    at.as_ref().map_or_else(String::new, |at| format!(" in {at}"))
}

impl CheckpointError {
    /// A `Corrupt` error not (yet) tied to a stored blob; see [`CheckpointError::at`].
    pub fn corrupt(detail: impl Into<String>) -> Self {
        Self::Corrupt { detail: detail.into(), at: None }
    }

    /// A `VersionMismatch` not (yet) tied to a stored blob; see [`CheckpointError::at`].
    pub fn version_mismatch(detail: impl Into<String>) -> Self {
        Self::VersionMismatch { detail: detail.into(), at: None }
    }

    /// Names the stored blob a `Corrupt` or `VersionMismatch` error is about, unless it names
    /// one already; other errors are returned unchanged.
    #[must_use]
    pub fn at(mut self, location: impl FnOnce() -> BlobLocation) -> Self {
        if let Self::Corrupt { at, .. } | Self::VersionMismatch { at, .. } = &mut self
            && at.is_none()
        {
            *at = Some(Box::new(location()));
        }
        self
    }

    /// The stored blob a `Corrupt` or `VersionMismatch` error is about, when known.
    pub fn location(&self) -> Option<&BlobLocation> {
        match self {
            Self::Corrupt { at, .. } | Self::VersionMismatch { at, .. } => at.as_deref(),
            _ => None,
        }
    }

    /// Wraps a backend error as an `Unavailable` that retrying may cure (a lock held
    /// elsewhere, a dropped connection).
    pub fn transient(source: impl StdError + Send + Sync + 'static) -> Self {
        Self::Unavailable { retryable: true, source: Arc::new(source) }
    }

    /// Wraps a backend error as an `Unavailable` that retrying will not cure (a full disk,
    /// bad credentials).
    pub fn permanent(source: impl StdError + Send + Sync + 'static) -> Self {
        Self::Unavailable { retryable: false, source: Arc::new(source) }
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { retryable: true, .. })
    }

    /// Whether this is an `OutsideFence` (a fenced checkpointer asked to write beyond its
    /// thread).
    pub fn is_outside_fence(&self) -> bool {
        matches!(self, Self::OutsideFence { .. })
    }

    /// Whether this is a `Conflict` (another writer owns the thread).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

/// `Result` with [`CheckpointError`] as the default error.
pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;
