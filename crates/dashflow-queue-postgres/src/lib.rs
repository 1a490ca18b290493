//! DashFlow's run queue on PostgreSQL: [`PostgresRunQueue`] implements
//! [`dashflow_queue::RunQueue`] in the database that holds the checkpoints, so that the queue,
//! the leases and the fences share one source of truth and one transaction.
//!
//! ```no_run
//! use dashflow_queue::{GraphKey, NewRun, RunKind, RunQueue};
//! use dashflow_queue_postgres::PostgresRunQueue;
//!
//! # async fn example() -> dashflow_queue::Result<()> {
//! let queue = PostgresRunQueue::connect("postgres://dashflow@db.internal/dashflow").await?;
//! let key = GraphKey::new("support", "v3", 0x1234);
//! queue.submit(NewRun::new(key, "ticket-42", RunKind::Invoke, b"sealed input".to_vec())).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # How it works (docs/distributed.md)
//!
//! - **Tables** (migrations in `dashflow_queue_migrations`, apart from the checkpoint
//!   backend's): `dashflow_runs` (one row per run; a partial unique index allows one queued or
//!   running run per thread), `dashflow_thread_fences` (the fence epoch of each thread),
//!   `dashflow_workers` (one narrow row per worker, updated by its heartbeats) and
//!   `dashflow_tenant_clocks` (fair share across tenants).
//! - **Submit**: the run's start tag from the tenant's clock (`dashflow_tick_clock`, in a
//!   transaction of its own that waits for no flush, so a tenant's submits never wait for
//!   each other's commits), then one round trip to a function of the queue's schema
//!   (`dashflow_submit_run`) whose statements run under the thread's advisory lock. Submits
//!   of other threads waiting at the same time go with it: their ticks in one statement, their
//!   submits in another.
//! - **Claim**: one statement selects queued runs `FOR UPDATE SKIP LOCKED` (priority first,
//!   then the tenant-fair start tag; each queue read in index order up to the batch, whatever
//!   its depth), bumps each thread's fence epoch and marks them running.
//!   No transaction or lock is held while a run runs.
//! - **Fence**: [`LeaseGuard`] makes every checkpoint write of a run check, in the write's own
//!   statement, that the thread's epoch is still the lease's (`FOR SHARE`); finish and release
//!   check it in their own statement. A former owner can never commit again.
//! - **Finish**: one round trip (`dashflow_end_run`): the fenced end and the promotion of the
//!   thread's next pending run.
//! - **Heartbeat**: per worker, on a connection of its own that also holds a session advisory
//!   lock; lease expiry is computed by the database (`now()`), never by a worker's clock.
//! - **Sweep**: one sweeper at a time (a transaction advisory lock) stops workers whose lease
//!   expired relative to the freshest heartbeat of the fleet (so a paused database does not
//!   reclaim everything at once), or whose heartbeat session vanished and who missed two
//!   beats (a killed process); their runs, and runs a worker stopped earlier still holds, are
//!   queued again with a bumped epoch, or failed after `max_attempts`, or cancelled when a
//!   cancel was asked.
//! - **Wake-ups**: `NOTIFY dashflow_wake` on submit, release and promotion, `dashflow_done` on
//!   finish, `dashflow_events` on an append to a run's stream, each sent after the commit of
//!   what it announces and never inside a transaction that writes (PostgreSQL commits
//!   notifying transactions one at a time, each holding a database-wide lock until its commit
//!   is on disk); workers and followers poll as well, so a lost notification is a hint lost.
//!   Those of submits, finishes and appends waiting at the same time go in one statement.
//! - **Event streams** ([`PgRunStreams`], the queue's `streams()`): `dashflow_run_events`
//!   (unlogged), one row per append holding its items as a JSON array, appended under the
//!   thread's fence and numbered from the stream itself, so a takeover continues the
//!   numbering and a former owner's append stores nothing; trimmed after the run ends.
//! - **Operations**: [`PostgresRunQueue::drain_worker`] (the worker stops claiming and stops
//!   once its runs are done) and [`PostgresRunQueue::health`] (dead rows of the queue's
//!   tables, the oldest snapshot held on the server), which `dashflow queue stats` shows.
//!
//! This crate has no feature flags.

mod admin;
mod error;
mod events;
mod finish;
mod grouped;
mod guard;
mod listen;
mod migrate;
mod notify;
mod queue;
mod sql;
mod submit;

pub use admin::{QueueHealth, TableHealth, XminHorizon};
pub use events::PgRunStreams;
pub use guard::LeaseGuard;
pub use queue::PostgresRunQueue;
