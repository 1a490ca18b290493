//! DashFlow's server checkpoint backend: [`PostgresCheckpointer`] stores checkpoints in
//! PostgreSQL through an sqlx pool, for many worker processes on many hosts sharing one
//! database.
//!
//! It implements [`dashflow_checkpoint::Checkpointer`] over bytes and never sees graph or
//! state types. Swapping it for the SQLite backend is one line where the checkpointer is
//! built.
//!
//! ```no_run
//! use dashflow_checkpoint::{CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer, ListOptions, now_ms};
//! use dashflow_checkpoint_postgres::PostgresCheckpointer;
//!
//! # async fn example() -> dashflow_checkpoint::Result<()> {
//! let checkpointer = PostgresCheckpointer::connect("postgres://dashflow@db.internal/dashflow").await?;
//!
//! let first = CheckpointRecord {
//!     thread_id: "ticket-42".into(),
//!     namespace: String::new(),
//!     checkpoint_id: CheckpointId::new(),
//!     parent_id: None,
//!     step: -1,
//!     kind: CheckpointKind::Snapshot,
//!     blob: b"the executor's sealed state".to_vec(),
//!     metadata: Default::default(),
//!     next_nodes: vec!["classify".into()],
//!     created_at_ms: now_ms(),
//! };
//! // A put names the head it expects (none: the thread is new). If another process moved
//! // the head first, this fails with `CheckpointError::Conflict` and stores nothing.
//! checkpointer.put(first.clone(), None).await?;
//!
//! let latest = checkpointer.load("ticket-42", "", None).await?.expect("just stored");
//! assert_eq!(latest.head(), Some(&first));
//! let history = checkpointer.list("ticket-42", &ListOptions::new().limit(10)).await?;
//! # let _ = history;
//! # Ok(())
//! # }
//! ```
//!
//! # Schema and migrations
//!
//! Four tables in the first schema of the connections' `search_path` (set it with
//! `PgConnectOptions::options([("search_path", "dashflow")])` to keep them apart from the
//! application's): `dashflow_checkpoints` (one row per record; the blob as `bytea`, metadata
//! and next nodes as `jsonb`), `dashflow_checkpoint_writes` (pending writes, deleted with
//! their checkpoint), `dashflow_checkpoint_heads` (the head of each thread and namespace:
//! the last put, which after a fork is not the greatest id) and `dashflow_schema_migrations`.
//!
//! Every constructor migrates: pending migrations run in one transaction under an advisory
//! lock, so processes starting together on several hosts apply each migration once. A
//! database migrated by a newer build is refused rather than written with an older schema.
//!
//! # Concurrency
//!
//! One writer per thread holds across processes and hosts. A put moves the head row with a
//! conditional `UPDATE ... WHERE head_id = $expected` (or inserts it with
//! `ON CONFLICT DO NOTHING` for a new namespace) and inserts the record in the same
//! statement: concurrent writers queue on the head row, exactly one matches, the others
//! store nothing and get [`dashflow_checkpoint::CheckpointError::Conflict`] naming the head
//! they expected and the one they found. History never forks silently. A stored checkpoint
//! is never overwritten: putting an id that exists is a `Conflict` too.
//!
//! Puts of concurrent writers on one pool share statements and commits (group commit): a put
//! waits, with the others waiting at the same time, for the pool's committer, which stores
//! them in one statement and one transaction (the first puts of namespaces in one, the others
//! in another); each record still moves only its own head, only where that head is the one it
//! expects (none for a first put), and a put returns
//! once the commit that stored it is done. What a group does not store is put again alone, so
//! a put reports exactly what it would alone. A worker running many runs makes fewer round
//! trips and commits per step this way. A `put_batch` of one record is such a put; a batch
//! that is a chain (records of one namespace, each expecting the one before: what an `Async`
//! run's writer hands over) is stored by one statement, all or none, and what that statement
//! does not store goes put by put in one transaction, reporting what each put did.
//!
//! Deleting a thread, copying into one and pruning idle ones lock the thread first: its head
//! rows, and an advisory lock that a first put into a new namespace takes shared. A put
//! racing them lands either before (and is deleted or copied whole) or after (and conflicts
//! or starts afresh), never half-way.
//!
//! # Guarded writes
//!
//! [`PostgresCheckpointer::guarded`] gives a checkpointer whose every write (put, batch of
//! puts, pending writes, and retention's rewrites and deletions) checks a [`WriteGuard`]: a
//! fence epoch per thread, kept in a table the caller names ([`FenceTable`]). The check is part
//! of the write's own statement (a `FOR SHARE` read of the epoch in a CTE that gates the
//! write), so a guarded put is one round trip like an unguarded one. The run queue uses it as
//! a fence: a worker that lost its lease on a thread gets `CheckpointError::Conflict` naming
//! the epochs, and stores nothing. Deleting the guard's thread and copying into it check the
//! epoch in their own transaction; deleting or copying into another thread, and deleting idle
//! threads, are `CheckpointError::OutsideFence`. A retried put whose earlier try committed without
//! acknowledgement recognizes its own record before it looks at the fence, so a lost
//! acknowledgement is never reported as a fenced write.
//!
//! # Failures and retries
//!
//! A killed connection, a server restart, a deadlock or a serialization failure is retried a
//! few times with jittered backoff ([`PostgresCheckpointer::with_max_attempts`]); what still
//! fails is `Unavailable { retryable: true }`. A retry waits in the pool for the server to
//! accept connections again, for up to the pool's acquire timeout (sqlx's default is 30
//! seconds): a restart shorter than that is ridden out, and while the server stays down each
//! call fails after about one acquire timeout. A pool timeout is not retried here, since the
//! pool has already waited that long. The pool replaces dead connections by itself, so the
//! same checkpointer works again once the server is back. Reads, puts, pending writes and
//! thread deletion are retried even when the connection broke around a commit (a retried
//! put recognizes its own record); copying and pruning only when the server certainly
//! rolled back. Other database errors are `Unavailable { retryable: false }`, rows that do
//! not decode are `Corrupt`, and text PostgreSQL cannot hold (a NUL character) is `Encode`.
//!
//! # Feature flags
//!
//! - `testing`: `testing::TestDatabase`, a throwaway schema per test on the server named
//!   by `DASHFLOW_TEST_POSTGRES_URL`, with a skip line when it is unset and a failure instead
//!   when `DASHFLOW_TEST_POSTGRES_REQUIRED=1`; and `testing::TestServer`, a PostgreSQL
//!   server of a test's own (from the local installation's binaries) that the test may stop
//!   and restart. Off by default.

mod checkpointer;
mod error;
mod gather;
mod group;
mod guard;
mod migrate;
mod retry;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;

pub use checkpointer::{CONNECT_TIMEOUT, PostgresCheckpointer};

/// Plumbing the run queue's PostgreSQL crate shares with this one; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::gather::{Gatherer, Take, Unanswered, Waiting, take_group};

    /// `checkpointer`, guarded, told that its guard's thread has no checkpoint (see
    /// `PostgresCheckpointer::assuming_an_empty_thread`).
    pub fn assuming_an_empty_thread(checkpointer: crate::PostgresCheckpointer) -> crate::PostgresCheckpointer {
        checkpointer.assuming_an_empty_thread()
    }
}
pub use guard::{FenceTable, WriteGuard};
