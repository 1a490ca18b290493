//! Errors of this crate.

use std::io;

/// Why a [`WorkStealingPool`](crate::WorkStealingPool) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The builder asked for zero threads; a pool needs at least one to run anything.
    #[error("a work-stealing pool needs at least one thread; pass `threads(n)` with n >= 1")]
    ZeroThreads,
    /// `stack_size(n)` asked for a stack too small to run the pool's loop and a task.
    #[error(
        "a stack of {requested} bytes is too small for a work-stealing pool thread; pass `stack_size(n)` with n >= {minimum} (PoolBuilder::MIN_STACK_SIZE)"
    )]
    StackTooSmall {
        /// The size asked for, in bytes.
        requested: usize,
        /// The smallest size accepted, in bytes.
        minimum: usize,
    },
    /// `niceness(n)` asked for a value outside Linux's nice range.
    #[error(
        "niceness {requested} is outside Linux's range; pass `niceness(n)` with n from -20 (highest priority) to 19 (lowest)"
    )]
    NicenessOutOfRange {
        /// The niceness asked for.
        requested: i32,
    },
    /// `niceness(n)` was set on a platform other than Linux, where the pool cannot honour it.
    #[error("a work-stealing pool's niceness can be set on Linux only; leave `niceness` unset on this platform")]
    NicenessUnsupported,
    /// The operating system refused to set a pool thread's niceness. A niceness below the
    /// one the threads inherit raises their priority, which Linux allows only with
    /// `CAP_SYS_NICE` or an `RLIMIT_NICE` that covers it.
    #[error(
        "could not set niceness {requested} on work-stealing pool thread `{name}`; a niceness below the one the pool's threads inherit raises their priority, which needs CAP_SYS_NICE or an RLIMIT_NICE that allows it: ask for a niceness at or above the process's, or grant the privilege"
    )]
    Niceness {
        /// The thread's name.
        name: String,
        /// The niceness asked for.
        requested: i32,
        /// The operating system's error (permission denied when the privilege is missing).
        #[source]
        source: io::Error,
    },
    /// The operating system refused to start one of the pool's threads.
    #[error("could not start work-stealing pool thread `{name}`")]
    Spawn {
        /// The name the thread would have had.
        name: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}
