//! Errors of this crate.

use std::io;

/// Why a [`WorkStealingPool`](crate::WorkStealingPool) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The builder asked for zero threads; a pool needs at least one to run anything.
    #[error("a work-stealing pool needs at least one thread; pass `threads(n)` with n >= 1")]
    ZeroThreads,
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
