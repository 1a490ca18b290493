//! sqlx errors as [`QueueError`]s.

use std::sync::Arc;

use dashflow_queue::QueueError;

/// Wraps sqlx's error for `operation`; connection losses, server shutdowns, deadlocks,
/// serialization failures and pool timeouts may succeed when tried again.
pub(crate) fn unavailable(operation: &'static str) -> impl FnOnce(sqlx::Error) -> QueueError {
    move |source| {
        let retryable = retryable(&source);
        QueueError::Unavailable { operation, retryable, source: Arc::new(source) }
    }
}

fn retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Connection exceptions, operator intervention (shutdown, terminated backend),
            // serialization failure, deadlock, lock timeout.
            code.starts_with("08") || code.starts_with("57") || code == "40001" || code == "40P01" || code == "55P03"
        }),
        _ => false,
    }
}

/// Whether a statement that failed so may have committed: the server did not refuse it, or
/// the connection was lost or the server stopped under it.
pub(crate) fn in_doubt(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db.code().is_none_or(|code| code.starts_with("08") || code.starts_with("57")),
        _ => true,
    }
}

/// A stored value that does not decode.
pub(crate) fn corrupt(detail: impl Into<String>) -> QueueError {
    QueueError::Corrupt { detail: detail.into() }
}
