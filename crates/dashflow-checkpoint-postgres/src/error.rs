//! The backend's own errors, what each means for a retry, and their conversion into
//! [`CheckpointError`], whose kinds callers and the conformance suite act on.

use dashflow_checkpoint::CheckpointError;

/// A failure inside the backend. Private: callers see [`CheckpointError`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The URL does not parse, or the first connection failed.
    #[error("cannot connect to PostgreSQL at `{target}`")]
    Connect {
        /// Host and port, or `the URL` when it does not parse.
        target: String,
        /// sqlx's error.
        #[source]
        source: Sqlx,
    },
    /// The server did not answer the first connection in time.
    #[error(
        "cannot connect to PostgreSQL at `{host}`: no answer within {after:?}; check the host and port, and that no firewall drops the packets"
    )]
    ConnectTimeout {
        /// The host connected to.
        host: String,
        /// How long the connection was given.
        after: std::time::Duration,
    },
    /// No connection could be had from the pool, or no transaction begun on it: nothing
    /// reached the database.
    #[error("cannot get a PostgreSQL connection to {operation}")]
    Acquire {
        /// What the connection was for, e.g. `put a checkpoint`.
        operation: &'static str,
        /// sqlx's error.
        #[source]
        source: Sqlx,
    },
    /// A statement inside a transaction failed before `COMMIT` was sent: the transaction
    /// does not commit, so nothing it did took effect.
    #[error("cannot {operation} (rolled back)")]
    Uncommitted {
        /// What the transaction does.
        operation: &'static str,
        /// sqlx's error.
        #[source]
        source: Sqlx,
    },
    /// A statement that commits on its own, or a `COMMIT`, failed: if the connection broke,
    /// whether it took effect is unknown.
    #[error("cannot {operation}")]
    Statement {
        /// What the statement does, e.g. `put a checkpoint`.
        operation: &'static str,
        /// sqlx's error.
        #[source]
        source: Sqlx,
    },
    /// The head moved: another writer owns the thread.
    #[error("thread `{thread_id}` (namespace `{namespace}`) moved on: expected head {expected}, found {actual}")]
    Conflict {
        /// The thread.
        thread_id: String,
        /// The namespace.
        namespace: String,
        /// The head the writer expected, `none` for an empty namespace.
        expected: String,
        /// The head found, `none` when the namespace is empty.
        actual: String,
    },
    /// A stored row does not decode into a record.
    #[error("stored checkpoint data is unreadable: {detail}")]
    Corrupt {
        /// What is wrong.
        detail: String,
    },
    /// A string to store contains NUL, which PostgreSQL's `text` and `jsonb` cannot hold.
    #[error("{what} contains a NUL character, which PostgreSQL cannot store as text")]
    Nul {
        /// Which value, e.g. `the thread id`.
        what: &'static str,
    },
    /// Metadata or next nodes could not be written as JSON.
    #[error("cannot encode {what} as JSON")]
    Json {
        /// Which value.
        what: &'static str,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// One failure of work done for several callers (a group of puts), as each caller sees it.
    #[error(transparent)]
    Shared(std::sync::Arc<Error>),
    /// The database was migrated by a newer build than this one.
    #[error(
        "the checkpoint schema is at version {found}, newer than the newest this build knows ({known}); \
         upgrade this process before it writes checkpoints"
    )]
    SchemaTooNew {
        /// The version in the database.
        found: i64,
        /// The newest version this build has.
        known: i64,
    },
}

/// An sqlx error as a cause. sqlx quotes its own source in its message (`error communicating
/// with database: Connection refused`), so this cause continues the chain below that source,
/// and a report names each cause once.
#[derive(Debug)]
pub(crate) struct Sqlx(pub(crate) sqlx::Error);

impl From<sqlx::Error> for Sqlx {
    fn from(error: sqlx::Error) -> Self {
        Self(error)
    }
}

impl std::fmt::Display for Sqlx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Sqlx {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let inner = std::error::Error::source(&self.0)?;
        if self.0.to_string().contains(&inner.to_string()) { inner.source() } else { Some(inner) }
    }
}

/// What a failure means for trying again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Not retryable: the same operation would fail the same way.
    No,
    /// Retryable, and the operation certainly did not take effect (the server rolled it back,
    /// or nothing was sent): any operation may run again.
    RolledBack,
    /// Retryable, but the operation may have committed before the connection was lost: only
    /// operations that are idempotent (or check for their own earlier success) run again.
    InDoubt,
    /// Retryable by the caller, not here: the pool already spent its whole acquire timeout
    /// waiting for a connection (the server is down or unreachable, or every connection is
    /// busy), so another try would only wait as long again. Nothing reached the database.
    Later,
}

/// What a failed sqlx call means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// A transient failure (see [`Retry`]).
    Transient(Retry),
    /// Retrying does not help: a bad query, a missing table, a permission, a closed pool.
    Permanent,
    /// A stored value does not decode.
    Corrupt,
    /// A value to store is not representable.
    Encode,
}

/// Classifies a PostgreSQL SQLSTATE.
pub(crate) fn classify_sqlstate(code: &str) -> Class {
    match code {
        // serialization_failure, deadlock_detected: the server rolled the transaction back.
        "40001" | "40P01" => Class::Transient(Retry::RolledBack),
        // admin_shutdown (pg_terminate_backend, a restart), crash_shutdown, cannot_connect_now:
        // the session is gone; a commit racing the shutdown may have completed.
        "57P01" | "57P02" | "57P03" => Class::Transient(Retry::InDoubt),
        // Connection exceptions.
        code if code.starts_with("08") => Class::Transient(Retry::InDoubt),
        // Insufficient resources (too many connections, disk full, out of memory),
        // lock_not_available, query_canceled (a statement timeout) and read_only_sql_transaction
        // (a failover in progress) all fail the statement and may pass later.
        code if code.starts_with("53") => Class::Transient(Retry::RolledBack),
        "55P03" | "57014" | "25006" => Class::Transient(Retry::RolledBack),
        // Invalid or untranslatable characters in a value to store.
        "22021" | "22P05" => Class::Encode,
        _ => Class::Permanent,
    }
}

/// Whether failed work may have committed before the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Commit {
    /// It certainly did not (getting a connection, a statement inside a transaction before
    /// `COMMIT`).
    Impossible,
    /// It may have: a broken connection leaves the outcome in doubt.
    Possible,
}

/// Classifies an sqlx error of work that `commit` says may or may not have committed.
pub(crate) fn classify_sqlx(error: &sqlx::Error, commit: Commit) -> Class {
    let class = match error {
        sqlx::Error::Database(database) => match database.code() {
            Some(code) => classify_sqlstate(&code),
            None => Class::Permanent,
        },
        // The connection broke mid-conversation: whether the statement committed is unknown.
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => Class::Transient(Retry::InDoubt),
        // The pool kept trying to connect (or waited for a busy connection) for its whole
        // acquire timeout: the caller's patience is spent.
        sqlx::Error::PoolTimedOut => Class::Transient(Retry::Later),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => Class::Corrupt,
        sqlx::Error::Encode(_) => Class::Encode,
        // A pool closed by `PgPool::close` never reopens, so retrying would only spin.
        // Configuration, TLS and everything else are permanent as well.
        _ => Class::Permanent,
    };
    match class {
        Class::Transient(Retry::InDoubt) if commit == Commit::Impossible => Class::Transient(Retry::RolledBack),
        class => class,
    }
}

impl Error {
    /// Wraps an sqlx error from a statement of `operation`.
    pub(crate) fn statement(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Statement { operation, source: Sqlx(source) }
    }

    /// Wraps an sqlx error from acquiring a connection (or beginning a transaction) for
    /// `operation`.
    pub(crate) fn acquire(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Acquire { operation, source: Sqlx(source) }
    }

    /// Wraps an sqlx error from a statement inside a transaction of `operation`, before its
    /// `COMMIT`.
    pub(crate) fn uncommitted(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Uncommitted { operation, source: Sqlx(source) }
    }

    /// What this failure means for the caller.
    pub(crate) fn class(&self) -> Class {
        match self {
            Self::Connect { source, .. } | Self::Acquire { source, .. } | Self::Uncommitted { source, .. } => {
                classify_sqlx(&source.0, Commit::Impossible)
            }
            Self::Statement { source, .. } => classify_sqlx(&source.0, Commit::Possible),
            Self::ConnectTimeout { .. } => Class::Transient(Retry::Later),
            Self::Corrupt { .. } => Class::Corrupt,
            Self::Nul { .. } | Self::Json { .. } => Class::Encode,
            Self::Conflict { .. } | Self::SchemaTooNew { .. } => Class::Permanent,
            Self::Shared(error) => error.class(),
        }
    }

    /// Whether (and how safely) the operation may run again.
    pub(crate) fn retry(&self) -> Retry {
        match self.class() {
            Class::Transient(retry) => retry,
            _ => Retry::No,
        }
    }

    /// The SQLSTATE of a database error, if this is one.
    pub(crate) fn sqlstate(&self) -> Option<String> {
        match self {
            Self::Acquire { source, .. } | Self::Uncommitted { source, .. } | Self::Statement { source, .. } => {
                match &source.0 {
                    sqlx::Error::Database(database) => database.code().map(|code| code.into_owned()),
                    _ => None,
                }
            }
            Self::Shared(error) => error.sqlstate(),
            _ => None,
        }
    }

    /// The violated constraint of a database error, if this is one.
    pub(crate) fn constraint(&self) -> Option<&str> {
        match self {
            Self::Uncommitted { source: Sqlx(sqlx::Error::Database(database)), .. }
            | Self::Statement { source: Sqlx(sqlx::Error::Database(database)), .. } => database.constraint(),
            Self::Shared(error) => error.constraint(),
            _ => None,
        }
    }
}

impl From<Error> for CheckpointError {
    fn from(error: Error) -> Self {
        match error {
            Error::Conflict { thread_id, namespace, expected, actual } => {
                CheckpointError::Conflict { thread_id, namespace, expected, actual }
            }
            error => match error.class() {
                Class::Transient(_) => CheckpointError::transient(error),
                Class::Permanent => CheckpointError::permanent(error),
                Class::Corrupt => CheckpointError::corrupt(report(&error)),
                Class::Encode => CheckpointError::Encode { detail: report(&error) },
            },
        }
    }
}

/// The error and its sources on one line, for the `detail` strings of `CheckpointError`.
fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests;
