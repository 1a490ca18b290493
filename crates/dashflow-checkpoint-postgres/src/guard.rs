//! [`WriteGuard`]: the fence a guarded checkpointer checks inside each of its writes, so that a
//! writer whose right to write was taken away stores nothing.
//!
//! The run queue (`dashflow-queue-postgres`) keeps one fence epoch per thread in a table of its
//! own and describes that table as a [`FenceTable`]; a worker holding a lease gets a
//! checkpointer guarded by the lease's epoch, and once another worker claimed the thread, every
//! put, pending write, retention write, deletion of the thread and copy into it of the former
//! owner is a `Conflict`. The checkpoint
//! crate learns the table's name from the queue, never its other tables.

use std::fmt;
use std::sync::Arc;

use crate::sql::{FenceLookup, Writes};

/// A table that holds one fence epoch (a `bigint`) per thread, and the write statements
/// fenced by it, built once. Cheap to clone.
#[derive(Clone)]
pub struct FenceTable {
    name: Arc<str>,
    pub(crate) writes: Arc<Writes>,
}

impl FenceTable {
    /// The table `table` whose column `thread_column` holds the thread id and `epoch_column`
    /// its epoch. The names are quoted identifiers (so case-sensitive: lower case for tables
    /// created without quotes) and are resolved through the `search_path` like the
    /// checkpointer's own tables.
    pub fn new(table: &str, thread_column: &str, epoch_column: &str) -> Self {
        let (table_name, thread, epoch) = (quote(table), quote(thread_column), quote(epoch_column));
        let one = format!("SELECT {epoch} AS epoch FROM {table_name} WHERE {thread} = $1 FOR SHARE");
        let many = format!(
            "SELECT {thread} AS thread_id, {epoch} AS epoch FROM {table_name} WHERE {thread} = ANY ($1::text[]) FOR SHARE"
        );
        let writes = Writes::new(Some(&FenceLookup { one: &one, many: &many }));
        Self { name: table.into(), writes: Arc::new(writes) }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for FenceTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FenceTable").field(&self.name).finish()
    }
}

/// An SQL identifier, quoted: any name is safe to write into a statement.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// A writer's fence on one thread: a write of a guarded checkpointer
/// ([`PostgresCheckpointer::guarded`](crate::PostgresCheckpointer::guarded)) passes only while
/// the thread's epoch in the [`FenceTable`] is this one, checked in the write's own statement.
/// The check reads the epoch `FOR SHARE`, which conflicts with the update that moves it:
/// whoever moves it waits for a write in flight (still legitimate, ownership had not changed),
/// and a write that starts after the move reads the new epoch and stores nothing. A write to
/// another thread is refused without reaching the database.
#[derive(Clone, Debug)]
pub struct WriteGuard {
    table: FenceTable,
    thread_id: String,
    epoch: i64,
}

impl WriteGuard {
    /// Writes to `thread_id` pass while its epoch in `table` is `epoch`.
    pub fn new(table: &FenceTable, thread_id: impl Into<String>, epoch: i64) -> Self {
        Self { table: table.clone(), thread_id: thread_id.into(), epoch }
    }

    /// The thread the guard lets writes through to.
    pub fn thread_id(&self) -> &str {
        &self.thread_id
    }

    /// The epoch the writer holds.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// The fence table.
    pub fn table(&self) -> &FenceTable {
        &self.table
    }
}
