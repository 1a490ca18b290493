//! The backend's own errors, converted into [`CheckpointError`] at the trait boundary so that
//! callers (and the conformance suite) see the same kinds on every backend.

use std::path::PathBuf;

use dashflow_checkpoint::CheckpointError;
use rusqlite::ErrorCode;

/// What went wrong inside the SQLite backend.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// An error of the trait's own kind, e.g. a `Conflict` found inside a transaction.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// SQLite refused a statement.
    #[error("SQLite refused the operation")]
    Sqlite(#[from] Sqlite),
    /// Another connection holds the lock longer than the busy timeout.
    #[error("the database is locked by another connection (SQLITE_BUSY); nothing was written, retry")]
    Busy(#[source] Sqlite),
    /// The disk or the database's size limit is full.
    #[error(
        "SQLite ran out of space (nothing was written; free disk space or raise the database's size \
         limit, then retry)"
    )]
    Full(#[source] Sqlite),
    /// The database file's directory could not be created.
    #[error("cannot create the directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The worker thread that owns the connection could not be started.
    #[error("cannot start the SQLite worker thread")]
    Spawn(#[source] std::io::Error),
    /// The worker thread is gone: it panicked, or the checkpointer was closed.
    #[error("the SQLite worker thread stopped before answering (it panicked or was closed)")]
    WorkerLost,
    /// A stored JSON column does not parse.
    #[error("stored {column} of checkpoint {checkpoint_id} is not valid JSON")]
    Json {
        /// The column.
        column: &'static str,
        /// The row's checkpoint id.
        checkpoint_id: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A stored value is not one this backend writes.
    #[error("stored {column} of checkpoint {checkpoint_id} is invalid: {detail}")]
    BadValue {
        /// The column.
        column: &'static str,
        /// The row's checkpoint id.
        checkpoint_id: String,
        /// What is wrong.
        detail: String,
    },
    /// The database was created by a newer DashFlow.
    #[error("the database has schema version {found}, this build knows versions up to {supported}; upgrade DashFlow")]
    NewerSchema {
        /// The version stored in the database.
        found: i64,
        /// The newest version this build migrates to.
        supported: usize,
    },
}

/// A failure of the database named `database`: the cause of every `Unavailable` this backend
/// returns, so that the report says which file failed.
#[derive(Debug, thiserror::Error)]
#[error("SQLite database {database} failed")]
pub(crate) struct InDatabase {
    /// The file's path in backticks, or `in memory`.
    pub(crate) database: String,
    /// What failed.
    #[source]
    pub(crate) source: std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>,
}

/// A SQLite error as a cause. SQLite's own error code, rusqlite's source, only repeats the
/// message with its number, so the chain ends here and a report names the cause once.
#[derive(Debug)]
pub(crate) struct Sqlite(pub(crate) rusqlite::Error);

impl From<rusqlite::Error> for Sqlite {
    fn from(error: rusqlite::Error) -> Self {
        Self(error)
    }
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(Sqlite(error))
    }
}

impl std::fmt::Display for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Sqlite {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            rusqlite::Error::SqliteFailure(..) => None,
            other => std::error::Error::source(other),
        }
    }
}

/// `Result` with the backend's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// The error and its sources on one line, for the `detail` of a `Corrupt` or `VersionMismatch`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Error {
    /// Whether another connection held a lock this one needed (and nothing was written).
    pub(crate) fn is_busy(&self) -> bool {
        match self {
            Self::Busy(_) => true,
            Self::Sqlite(Sqlite(sqlite)) => {
                matches!(sqlite.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
            }
            _ => false,
        }
    }
}

impl From<Error> for CheckpointError {
    fn from(error: Error) -> Self {
        match error {
            Error::Checkpoint(error) => error,
            Error::Sqlite(sqlite) => match sqlite.0.sqlite_error_code() {
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Self::transient(Error::Busy(sqlite)),
                Some(ErrorCode::DiskFull) => Self::permanent(Error::Full(sqlite)),
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                    Self::corrupt(format!("the SQLite database is damaged or not a database: {}", sqlite.0))
                }
                _ => Self::permanent(Error::Sqlite(sqlite)),
            },
            error @ (Error::Json { .. } | Error::BadValue { .. }) => Self::corrupt(chain(&error)),
            error @ Error::NewerSchema { .. } => Self::version_mismatch(chain(&error)),
            error @ Error::Busy(_) => Self::transient(error),
            error => Self::permanent(error),
        }
    }
}
