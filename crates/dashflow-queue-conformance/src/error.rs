//! Why a conformance check failed.

use std::error::Error as StdError;
use std::fmt::Write as _;

use dashflow_checkpoint::CheckpointError;
use dashflow_queue::QueueError;

/// A conformance check failed: the queue broke the contract, or could not be exercised.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The queue answered, but not as the contract says.
    #[error("{message} (check at {location})")]
    Contract {
        /// What was expected and what came back.
        message: String,
        /// The file and line of the failed expectation in this crate.
        location: String,
    },
    /// A queue operation that the contract says succeeds returned an error.
    #[error("{operation} failed")]
    Queue {
        /// The operation, e.g. `claim by worker w1`.
        operation: String,
        /// What the queue returned.
        #[source]
        source: QueueError,
    },
    /// A write through a fenced checkpointer that the contract says succeeds returned an error.
    #[error("{operation} failed")]
    Checkpoint {
        /// The operation, e.g. `put of the owner's first checkpoint`.
        operation: String,
        /// What the checkpointer returned.
        #[source]
        source: CheckpointError,
    },
    /// A task spawned by a check panicked or was cancelled.
    #[error("a task spawned by the check did not finish")]
    Task {
        /// Why.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The trial could not start the tokio runtime it runs on.
    #[error("cannot start a tokio runtime for the trial")]
    Runtime {
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error and its chain of sources, one per line, for a test report.
    pub fn report(&self) -> String {
        let mut report = self.to_string();
        let mut source = self.source();
        while let Some(error) = source {
            // Writing into a `String` cannot fail.
            let _ = write!(report, "\n  caused by: {error}");
            source = error.source();
        }
        report
    }
}

/// Names the operation behind a queue or checkpointer error.
pub(crate) trait Context<T> {
    /// Wraps an error as [`Error::Queue`] or [`Error::Checkpoint`] named by `operation`.
    fn context(self, operation: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for Result<T, QueueError> {
    fn context(self, operation: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Queue { operation: operation(), source })
    }
}

impl<T> Context<T> for Result<T, CheckpointError> {
    fn context(self, operation: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Checkpoint { operation: operation(), source })
    }
}

/// Fails the check with [`Error::Contract`] unless `$cond` holds.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err($crate::Error::Contract {
                message: format!($($message)+),
                location: concat!(file!(), ":", line!()).to_owned(),
            });
        }
    };
}

/// Fails the check with [`Error::Contract`] unless `$actual == $expected`, showing both.
macro_rules! ensure_eq {
    ($actual:expr, $expected:expr, $($message:tt)+) => {
        match (&$actual, &$expected) {
            (actual, expected) => {
                if actual != expected {
                    return Err($crate::Error::Contract {
                        message: format!("{}: expected {:?}, got {:?}", format!($($message)+), expected, actual),
                        location: concat!(file!(), ":", line!()).to_owned(),
                    });
                }
            }
        }
    };
}

/// Fails the check with [`Error::Contract`] right away.
macro_rules! fail {
    ($($message:tt)+) => {
        return Err($crate::Error::Contract {
            message: format!($($message)+),
            location: concat!(file!(), ":", line!()).to_owned(),
        })
    };
}

pub(crate) use {ensure, ensure_eq, fail};
