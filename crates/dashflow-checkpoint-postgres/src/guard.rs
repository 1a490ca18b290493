//! [`WriteGuard`]: a check a guarded checkpointer runs inside the transaction of each of its
//! writes, so that a writer whose right to write was taken away stores nothing.
//!
//! The run queue (`dashflow-queue-postgres`) implements it with the thread's fence epoch: a
//! worker holding a lease gets a checkpointer guarded by that lease, and once another worker
//! claimed the thread, every put, pending write and retention write of the former owner is a
//! `Conflict`. The checkpoint crate never learns the queue's tables.

use std::fmt;

use async_trait::async_trait;
use sqlx::PgConnection;

/// Why a [`WriteGuard`] refused a write.
#[derive(Debug)]
#[non_exhaustive]
pub enum Rejected {
    /// The writer lost its right to write the thread (e.g. its lease epoch is not the thread's
    /// fence epoch any more). Becomes `CheckpointError::Conflict` naming both.
    Fenced {
        /// What the writer holds, e.g. `lease epoch 7`.
        expected: String,
        /// What the database holds now, e.g. `epoch 8`.
        actual: String,
    },
    /// The check's own statement failed; the write is retried or reported like any other
    /// failure of its transaction.
    Database(sqlx::Error),
}

impl From<sqlx::Error> for Rejected {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

/// A check run inside the transaction of every write of a guarded checkpointer
/// ([`PostgresCheckpointer::guarded`](crate::PostgresCheckpointer::guarded)), before the write
/// itself. It should lock what it reads (`FOR SHARE`), so that whoever takes the right away
/// waits for a write in flight, and a write that starts later sees the change.
#[async_trait]
pub trait WriteGuard: Send + Sync + fmt::Debug + 'static {
    /// Checks, on the write's own connection and transaction, that the write to `thread_id`
    /// may proceed.
    async fn check(&self, conn: &mut PgConnection, thread_id: &str) -> Result<(), Rejected>;
}
