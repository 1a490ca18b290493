//! Connection settings and the schema, created and migrated on open.
//!
//! The schema version lives in `PRAGMA user_version` (a field of the database header, so it
//! costs no table). [`MIGRATIONS`] is an ordered list: migration `i` takes version `i` to
//! `i + 1`. Opening runs the missing ones in one `IMMEDIATE` transaction, so two processes
//! opening a new file at once migrate it exactly once; a database from a newer build is
//! refused rather than misread.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};
use crate::{SqliteOptions, Synchronous};

/// Version 1: checkpoints, pending writes and heads.
///
/// All three tables are `WITHOUT ROWID`: their rows are found by their primary key alone, so
/// the key is the table's only b-tree (a rowid table would store the key twice, once more in
/// its primary-key index). `kind` is `0` (snapshot) or `1` (delta), which SQLite stores in the
/// record header alone. `heads` holds the last put of every thread and namespace, which with
/// forks is not the greatest id, and the newest `created_at_ms`, so that idle threads are
/// found without scanning checkpoints. No secondary indexes: every query is a prefix of a
/// primary key.
const V1: &str = "
CREATE TABLE checkpoints (
    thread_id     TEXT    NOT NULL,
    namespace     TEXT    NOT NULL,
    checkpoint_id TEXT    NOT NULL,
    parent_id     TEXT,
    step          INTEGER NOT NULL,
    kind          INTEGER NOT NULL,
    blob          BLOB    NOT NULL,
    metadata      TEXT    NOT NULL,
    next_nodes    TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (thread_id, namespace, checkpoint_id)
) WITHOUT ROWID;

CREATE TABLE pending_writes (
    thread_id     TEXT    NOT NULL,
    namespace     TEXT    NOT NULL,
    checkpoint_id TEXT    NOT NULL,
    task_id       TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    node          TEXT    NOT NULL,
    blob          BLOB    NOT NULL,
    PRIMARY KEY (thread_id, namespace, checkpoint_id, task_id)
) WITHOUT ROWID;

CREATE TABLE heads (
    thread_id     TEXT    NOT NULL,
    namespace     TEXT    NOT NULL,
    head          TEXT    NOT NULL,
    newest_ms     INTEGER NOT NULL,
    PRIMARY KEY (thread_id, namespace)
) WITHOUT ROWID;
";

/// Version 2: the state schemas blobs were written with, by fingerprint (a `u64` stored as
/// the `i64` of the same bits), so that a changed state type can read older threads.
const V2: &str = "
CREATE TABLE schemas (
    fingerprint INTEGER PRIMARY KEY,
    schema      BLOB    NOT NULL
);
";

/// Every migration, oldest first; the schema version is the number applied.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2];

/// The schema version this build creates.
pub(crate) const VERSION: usize = MIGRATIONS.len();

/// Opens (creating parent directories) and configures a connection, then migrates; a file's
/// connection comes with its background WAL checkpointer.
pub(crate) fn open(
    path: Option<&Path>,
    options: &SqliteOptions,
) -> Result<(Connection, Option<Arc<crate::wal::Background>>)> {
    let mut connection = match path {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|source| Error::CreateDir { path: parent.to_owned(), source })?;
            }
            Connection::open(path)?
        }
        None => Connection::open_in_memory()?,
    };
    configure(&connection, options)?;
    migrate(&mut connection)?;
    let background = path.map(|path| crate::wal::install(&connection, path, synchronous(options))).transpose()?;
    Ok((connection, background))
}

fn configure(connection: &Connection, options: &SqliteOptions) -> Result<()> {
    connection.busy_timeout(options.busy_timeout)?;
    // 1 KiB pages, for a new file (SQLite ignores this once the file exists). A commit writes
    // every page it touched to the log, and the log is synced to disk at each WAL checkpoint:
    // a put of a small delta touches two pages (the checkpoints leaf it appends to and the
    // heads leaf), so 4 KiB pages cost 8 KiB of log and of write-back per put. Measured on
    // the reference machine, 1 KiB pages made single-writer puts markedly faster (raw
    // rusqlite, same statements) and leave large blobs to overflow chains, which SQLite reads
    // and writes sequentially.
    connection.pragma_update(None, "page_size", 1024)?;
    // WAL: readers never block the writer and a commit is one append to the log. It reports
    // `memory` for in-memory databases, which is fine.
    connection.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode: a commit is durable against a crash of the process (the log is
    // written before the call returns) and syncs only at checkpoints; a power loss may lose
    // the last commits but never corrupts the database. FULL syncs every commit.
    connection.pragma_update(None, "synchronous", synchronous(options))?;
    // Keep the log from staying large after a burst of big snapshots.
    connection.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    set_max_size(connection, options.max_size_bytes)?;
    Ok(())
}

fn synchronous(options: &SqliteOptions) -> &'static str {
    match options.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    }
}

/// Caps the database at `max_size_bytes` (rounded down to whole pages; `None` lifts the cap).
/// A write that would grow the database past the cap fails with `SQLITE_FULL`.
pub(crate) fn set_max_size(connection: &Connection, max_size_bytes: Option<u64>) -> Result<()> {
    // SQLite's own ceiling: 2^32 - 2 pages (it clamps larger values).
    let pages = match max_size_bytes {
        Some(bytes) => {
            let page_size: i64 = connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
            let page_size = u64::try_from(page_size).unwrap_or(4096).max(1);
            i64::try_from((bytes / page_size).max(1)).unwrap_or(i64::MAX)
        }
        None => 4_294_967_294,
    };
    connection.pragma_update(None, "max_page_count", pages)?;
    Ok(())
}

/// Applies the migrations this database has not seen, in one `IMMEDIATE` transaction.
fn migrate(connection: &mut Connection) -> Result<()> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let applied = usize::try_from(found).map_err(|_| Error::NewerSchema { found, supported: VERSION })?;
    if applied > VERSION {
        return Err(Error::NewerSchema { found, supported: VERSION });
    }
    if applied == VERSION {
        return Ok(());
    }
    for migration in &MIGRATIONS[applied..] {
        transaction.execute_batch(migration)?;
    }
    transaction.pragma_update(None, "user_version", i64::try_from(VERSION).unwrap_or(i64::MAX))?;
    transaction.commit()?;
    Ok(())
}
