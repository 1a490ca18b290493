//! [`LeaseGuard`]: the fence every write of a claimed run checks.

use std::sync::LazyLock;

use dashflow_checkpoint_postgres::{FenceTable, WriteGuard};

/// The queue's fence epochs (`dashflow_thread_fences`), as the checkpoint backend checks them.
static FENCES: LazyLock<FenceTable> = LazyLock::new(|| FenceTable::new("dashflow_thread_fences", "thread_id", "epoch"));

/// A run's lease as a fence: a checkpoint write to the thread passes only while the thread's
/// fence epoch is the lease's, checked in the write's own statement.
///
/// The write reads the epoch `FOR SHARE`, which conflicts with the update that moves it: a
/// claim, sweep or release waits for a write in flight (still legitimate: ownership had not
/// changed), and a write that starts after the change sees the new epoch and stores nothing.
/// A write to another thread has no lease at all and is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseGuard {
    /// The thread the lease is for.
    pub thread_id: String,
    /// The epoch the lease was granted with.
    pub epoch: i64,
}

impl LeaseGuard {
    /// The guard a checkpointer checks (`PostgresCheckpointer::guarded`).
    pub fn write_guard(&self) -> WriteGuard {
        WriteGuard::new(&FENCES, self.thread_id.as_str(), self.epoch)
    }
}
