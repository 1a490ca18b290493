//! The checkpointer's operations as SQL, run on the worker thread.
//!
//! Every write runs in one `IMMEDIATE` transaction: it takes the database's write lock before
//! reading, so a check (the head, an empty target) and the writes that depend on it cannot be
//! interleaved with another connection's, in this process or another. Statements go through
//! the connection's prepared-statement cache.

use std::collections::HashSet;

use dashflow_checkpoint::{
    CheckpointError, CheckpointId, CheckpointKind, CheckpointRecord, ListOptions, LoadedCheckpoint, Metadata,
    PendingWrite, ThreadListOptions, ThreadSummary,
};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use rusqlite::ffi;

use crate::error::{Error, Result};

const SNAPSHOT: i64 = 0;
const DELTA: i64 = 1;

fn kind_code(kind: CheckpointKind) -> i64 {
    match kind {
        CheckpointKind::Snapshot => SNAPSHOT,
        CheckpointKind::Delta => DELTA,
    }
}

fn spell(id: Option<&str>) -> String {
    id.unwrap_or("none").to_owned()
}

fn immediate(connection: &mut Connection) -> Result<Transaction<'_>> {
    Ok(connection.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

fn head(transaction: &Connection, thread_id: &str, namespace: &str) -> Result<Option<String>> {
    Ok(transaction
        .prepare_cached("SELECT head FROM heads WHERE thread_id = ?1 AND namespace = ?2")?
        .query_row(params![thread_id, namespace], |row| row.get(0))
        .optional()?)
}

/// Stores `record` as the new head if the head is still `expected`.
///
/// The head moves first, by a statement that only matches the expected head, then the record
/// goes in; if either fails the transaction rolls back, so a put is all or nothing.
pub(crate) fn put(connection: &mut Connection, record: &CheckpointRecord, expected: Option<&str>) -> Result<()> {
    let transaction = immediate(connection)?;
    put_in(&transaction, record, expected)?;
    transaction.commit()?;
    Ok(())
}

/// Stores `records` in order in one transaction, each conditional on its expected head; stops
/// at the first failure, keeping the records before it (as separate puts would).
pub(crate) fn put_batch(connection: &mut Connection, records: &[(CheckpointRecord, Option<String>)]) -> Result<()> {
    let mut transaction = immediate(connection)?;
    let mut failure = None;
    for (index, (record, expected)) in records.iter().enumerate() {
        // A savepoint per record: a failed record leaves no half (a moved head without it).
        let savepoint = transaction.savepoint()?;
        match put_in(&savepoint, record, expected.as_deref()) {
            Ok(()) => savepoint.commit()?,
            Err(error) => {
                drop(savepoint);
                failure = Some((index, error));
                break;
            }
        }
    }
    let Some((failed, error)) = failure else { return Ok(transaction.commit()?) };
    if transaction.is_autocommit() {
        // SQLite rolled the whole transaction back (as a full disk or database makes it do),
        // taking the records before the failed one along: store them again on their own, and
        // report the failure itself, not the commit of a transaction that is gone.
        drop(transaction);
        put_batch(connection, &records[..failed])?;
        return Err(error);
    }
    transaction.commit()?;
    Err(error)
}

/// The statements of one put, inside the caller's transaction.
fn put_in(connection: &Connection, record: &CheckpointRecord, expected: Option<&str>) -> Result<()> {
    let metadata = serde_json::to_string(&record.metadata).map_err(|error| encode_error("metadata", &error))?;
    let next_nodes = serde_json::to_string(&record.next_nodes).map_err(|error| encode_error("next_nodes", &error))?;
    let transaction = connection;
    let (thread_id, namespace, id) = (&record.thread_id, &record.namespace, record.checkpoint_id.as_str());
    let moved = match expected {
        Some(expected) => transaction
            .prepare_cached(
                "UPDATE heads SET head = ?3, newest_ms = max(newest_ms, ?4)
                 WHERE thread_id = ?1 AND namespace = ?2 AND head = ?5",
            )?
            .execute(params![thread_id, namespace, id, record.created_at_ms, expected])?,
        None => transaction
            .prepare_cached(
                "INSERT INTO heads (thread_id, namespace, head, newest_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![thread_id, namespace, id, record.created_at_ms])?,
    };
    if moved == 0 {
        let actual = head(transaction, thread_id, namespace)?;
        return Err(conflict(record, expected, actual.as_deref()));
    }
    let inserted = transaction
        .prepare_cached(
            "INSERT INTO checkpoints (thread_id, namespace, checkpoint_id, parent_id, step, kind, blob, metadata,
                                      next_nodes, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            thread_id,
            namespace,
            id,
            record.parent_id.as_ref().map(CheckpointId::as_str),
            record.step,
            kind_code(record.kind),
            record.blob,
            metadata,
            next_nodes,
            record.created_at_ms,
        ]);
    match inserted {
        Ok(_) => {}
        // The id is stored already: a stored checkpoint is never overwritten.
        Err(error)
            if error.sqlite_error().is_some_and(|error| error.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY) =>
        {
            return Err(conflict(record, expected, expected));
        }
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

fn conflict(record: &CheckpointRecord, expected: Option<&str>, actual: Option<&str>) -> Error {
    Error::Checkpoint(CheckpointError::Conflict {
        thread_id: record.thread_id.clone(),
        namespace: record.namespace.clone(),
        expected: spell(expected),
        actual: spell(actual),
    })
}

fn encode_error(what: &str, error: &serde_json::Error) -> Error {
    Error::Checkpoint(CheckpointError::Encode { detail: format!("{what} as JSON: {error}") })
}

/// Stores pending writes after `checkpoint_id`; a task's later write replaces its earlier one
/// in place (its `seq`, the stored order, is kept).
pub(crate) fn put_writes(
    connection: &mut Connection,
    thread_id: &str,
    namespace: &str,
    checkpoint_id: &str,
    writes: &[PendingWrite],
) -> Result<()> {
    let transaction = immediate(connection)?;
    let next: i64 = transaction
        .prepare_cached(
            "SELECT coalesce(max(seq) + 1, 0) FROM pending_writes
             WHERE thread_id = ?1 AND namespace = ?2 AND checkpoint_id = ?3",
        )?
        .query_row(params![thread_id, namespace, checkpoint_id], |row| row.get(0))?;
    {
        let mut insert = transaction.prepare_cached(
            "INSERT INTO pending_writes (thread_id, namespace, checkpoint_id, task_id, seq, node, blob)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT DO UPDATE SET node = excluded.node, blob = excluded.blob",
        )?;
        for (seq, write) in (next..).zip(writes) {
            insert.execute(params![thread_id, namespace, checkpoint_id, write.task_id, seq, write.node, write.blob])?;
        }
    }
    transaction.commit()?;
    Ok(())
}

const COLUMNS: &str = "namespace, checkpoint_id, parent_id, step, kind, blob, metadata, next_nodes, created_at_ms";

/// Decodes a row selected with [`COLUMNS`].
fn record(thread_id: &str, row: &Row<'_>) -> Result<CheckpointRecord> {
    let checkpoint_id: String = row.get(1)?;
    let bad =
        |column: &'static str, detail: String| Error::BadValue { column, checkpoint_id: checkpoint_id.clone(), detail };
    let parse_id =
        |column: &'static str, id: &str| id.parse::<CheckpointId>().map_err(|error| bad(column, error.to_string()));
    let parent_id: Option<String> = row.get(2)?;
    let kind: i64 = row.get(4)?;
    let metadata: String = row.get(6)?;
    let next_nodes: String = row.get(7)?;
    let json = |column: &'static str| {
        let checkpoint_id = checkpoint_id.clone();
        move |source| Error::Json { column, checkpoint_id, source }
    };
    Ok(CheckpointRecord {
        thread_id: thread_id.to_owned(),
        namespace: row.get(0)?,
        parent_id: parent_id.as_deref().map(|parent| parse_id("parent_id", parent)).transpose()?,
        step: row.get(3)?,
        kind: match kind {
            SNAPSHOT => CheckpointKind::Snapshot,
            DELTA => CheckpointKind::Delta,
            other => return Err(bad("kind", format!("{other} is neither 0 (snapshot) nor 1 (delta)"))),
        },
        blob: row.get(5)?,
        metadata: serde_json::from_str::<Metadata>(&metadata).map_err(json("metadata"))?,
        next_nodes: serde_json::from_str(&next_nodes).map_err(json("next_nodes"))?,
        created_at_ms: row.get(8)?,
        checkpoint_id: parse_id("checkpoint_id", &checkpoint_id)?,
    })
}

/// The checkpoint (the head when `id` is `None`), the chain back to its nearest snapshot
/// along parent links, and its pending writes; read in one transaction, so a concurrent put
/// or prune cannot tear the answer.
pub(crate) fn load(
    connection: &mut Connection,
    thread_id: &str,
    namespace: &str,
    id: Option<&str>,
) -> Result<Option<LoadedCheckpoint>> {
    let transaction = connection.transaction()?;
    let target = match id {
        Some(id) => id.to_owned(),
        None => match head(&transaction, thread_id, namespace)? {
            Some(head) => head,
            None => return Ok(None),
        },
    };
    let mut chain = Vec::new();
    let mut seen = HashSet::new();
    {
        let mut select = transaction.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM checkpoints WHERE thread_id = ?1 AND namespace = ?2 AND checkpoint_id = ?3"
        ))?;
        let mut next = Some(target.clone());
        while let Some(id) = next.take() {
            if !seen.insert(id.clone()) {
                return Err(Error::BadValue {
                    column: "parent_id",
                    checkpoint_id: id,
                    detail: "the parent links form a cycle".to_owned(),
                });
            }
            let mut rows = select.query(params![thread_id, namespace, id])?;
            // A missing parent (pruned) ends the chain at the oldest record still stored.
            let Some(row) = rows.next()? else { break };
            let record = record(thread_id, row)?;
            if record.kind == CheckpointKind::Delta {
                next = record.parent_id.as_ref().map(|parent| parent.as_str().to_owned());
            }
            chain.push(record);
        }
    }
    if chain.is_empty() {
        return Ok(None);
    }
    chain.reverse();
    let pending_writes = transaction
        .prepare_cached(
            "SELECT task_id, node, blob FROM pending_writes
             WHERE thread_id = ?1 AND namespace = ?2 AND checkpoint_id = ?3 ORDER BY seq",
        )?
        .query_map(params![thread_id, namespace, target], |row| {
            Ok(PendingWrite { task_id: row.get(0)?, node: row.get(1)?, blob: row.get(2)? })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(LoadedCheckpoint { chain, pending_writes }))
}

/// Checkpoints of a thread, newest first. Namespace, `before` and (without a metadata filter)
/// the limit go into SQL, where the primary key serves them; metadata is compared in Rust with
/// JSON equality, and the scan stops once `limit` rows passed.
pub(crate) fn list(
    connection: &mut Connection,
    thread_id: &str,
    options: &ListOptions,
) -> Result<Vec<CheckpointRecord>> {
    let mut sql = format!("SELECT {COLUMNS} FROM checkpoints WHERE thread_id = ?1");
    sql.push_str(if options.namespace.is_some() { " AND namespace = ?2" } else { " AND ?2 IS NULL" });
    sql.push_str(if options.before.is_some() { " AND checkpoint_id < ?3" } else { " AND ?3 IS NULL" });
    sql.push_str(" ORDER BY checkpoint_id DESC");
    let sql_limit = match options.limit {
        Some(limit) if options.metadata.is_empty() => i64::try_from(limit).unwrap_or(i64::MAX),
        _ => -1,
    };
    sql.push_str(" LIMIT ?4");
    let limit = options.limit.unwrap_or(usize::MAX);
    let mut records = Vec::new();
    if limit == 0 {
        return Ok(records);
    }
    let mut select = connection.prepare_cached(&sql)?;
    let mut rows = select.query(params![
        thread_id,
        options.namespace,
        options.before.as_ref().map(CheckpointId::as_str),
        sql_limit
    ])?;
    while let Some(row) = rows.next()? {
        let record = record(thread_id, row)?;
        if options.matches(&record) {
            records.push(record);
            if records.len() >= limit {
                break;
            }
        }
    }
    Ok(records)
}

fn delete_thread_in(transaction: &Transaction<'_>, thread_id: &str) -> Result<()> {
    for sql in [
        "DELETE FROM checkpoints WHERE thread_id = ?1",
        "DELETE FROM pending_writes WHERE thread_id = ?1",
        "DELETE FROM heads WHERE thread_id = ?1",
    ] {
        transaction.prepare_cached(sql)?.execute([thread_id])?;
    }
    Ok(())
}

/// Deletes every namespace, checkpoint and pending write of a thread.
pub(crate) fn delete_thread(connection: &mut Connection, thread_id: &str) -> Result<()> {
    let transaction = immediate(connection)?;
    delete_thread_in(&transaction, thread_id)?;
    transaction.commit()?;
    Ok(())
}

/// Copies a thread into an empty one: checkpoints, pending writes and heads.
pub(crate) fn copy_thread(connection: &mut Connection, from: &str, to: &str) -> Result<()> {
    let transaction = immediate(connection)?;
    let occupied: Option<String> = transaction
        .prepare_cached("SELECT namespace FROM checkpoints WHERE thread_id = ?1 LIMIT 1")?
        .query_row([to], |row| row.get(0))
        .optional()?;
    if let Some(namespace) = occupied {
        let actual = head(&transaction, to, &namespace)?;
        return Err(Error::Checkpoint(CheckpointError::Conflict {
            thread_id: to.to_owned(),
            namespace,
            expected: spell(None),
            actual: spell(actual.as_deref()),
        }));
    }
    for sql in [
        "INSERT INTO checkpoints (thread_id, namespace, checkpoint_id, parent_id, step, kind, blob, metadata,
                                  next_nodes, created_at_ms)
         SELECT ?2, namespace, checkpoint_id, parent_id, step, kind, blob, metadata, next_nodes, created_at_ms
         FROM checkpoints WHERE thread_id = ?1",
        // Writes or heads left without checkpoints (say, writes after a pruned checkpoint)
        // are replaced: the target has no checkpoints, so they belong to nothing.
        "INSERT OR REPLACE INTO pending_writes (thread_id, namespace, checkpoint_id, task_id, seq, node, blob)
         SELECT ?2, namespace, checkpoint_id, task_id, seq, node, blob FROM pending_writes WHERE thread_id = ?1",
        "INSERT OR REPLACE INTO heads (thread_id, namespace, head, newest_ms)
         SELECT ?2, namespace, head, newest_ms FROM heads WHERE thread_id = ?1",
    ] {
        transaction.prepare_cached(sql)?.execute([from, to])?;
    }
    transaction.commit()?;
    Ok(())
}

/// Turns checkpoint `id` into a snapshot with `blob`, in place (one statement, so atomic).
pub(crate) fn rewrite_as_snapshot(
    connection: &mut Connection,
    thread_id: &str,
    namespace: &str,
    id: &str,
    blob: &[u8],
) -> Result<()> {
    let changed = connection
        .prepare_cached(
            "UPDATE checkpoints SET kind = 0, blob = ?4
             WHERE thread_id = ?1 AND namespace = ?2 AND checkpoint_id = ?3",
        )?
        .execute(params![thread_id, namespace, id, blob])?;
    if changed == 0 {
        return Err(Error::Checkpoint(CheckpointError::NotFound {
            what: format!("checkpoint {id} of thread `{thread_id}`"),
        }));
    }
    Ok(())
}

/// Deletes the checkpoints of a namespace older than `keep_from` and their pending writes,
/// never the head.
pub(crate) fn delete_before(
    connection: &mut Connection,
    thread_id: &str,
    namespace: &str,
    keep_from: &str,
) -> Result<u64> {
    let transaction = immediate(connection)?;
    let head = head(&transaction, thread_id, namespace)?.unwrap_or_default();
    let deleted = transaction
        .prepare_cached(
            "DELETE FROM checkpoints
             WHERE thread_id = ?1 AND namespace = ?2 AND checkpoint_id < ?3 AND checkpoint_id <> ?4",
        )?
        .execute(params![thread_id, namespace, keep_from, head])?;
    transaction
        .prepare_cached(
            "DELETE FROM pending_writes
             WHERE thread_id = ?1 AND namespace = ?2 AND checkpoint_id < ?3 AND checkpoint_id <> ?4",
        )?
        .execute(params![thread_id, namespace, keep_from, head])?;
    transaction.commit()?;
    Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
}

/// Deletes one namespace of a thread: checkpoints, pending writes and head.
pub(crate) fn delete_namespace(connection: &mut Connection, thread_id: &str, namespace: &str) -> Result<u64> {
    let transaction = immediate(connection)?;
    let deleted = transaction
        .prepare_cached("DELETE FROM checkpoints WHERE thread_id = ?1 AND namespace = ?2")?
        .execute([thread_id, namespace])?;
    for sql in [
        "DELETE FROM pending_writes WHERE thread_id = ?1 AND namespace = ?2",
        "DELETE FROM heads WHERE thread_id = ?1 AND namespace = ?2",
    ] {
        transaction.prepare_cached(sql)?.execute([thread_id, namespace])?;
    }
    transaction.commit()?;
    Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
}

/// Deletes every thread whose newest checkpoint was created before `cutoff_ms`; the newest
/// time of each namespace is kept in `heads`, so this scans heads, not checkpoints.
pub(crate) fn delete_idle_threads(connection: &mut Connection, cutoff_ms: i64) -> Result<Vec<String>> {
    let transaction = immediate(connection)?;
    let idle = transaction
        .prepare_cached("SELECT thread_id FROM heads GROUP BY thread_id HAVING max(newest_ms) < ?1 ORDER BY thread_id")?
        .query_map([cutoff_ms], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for thread_id in &idle {
        delete_thread_in(&transaction, thread_id)?;
    }
    transaction.commit()?;
    Ok(idle)
}

/// Threads with a head in the root namespace, newest first (by the newest time in `heads`,
/// then by id, descending). Prefix, times and cursor go into SQL; metadata is compared in Rust
/// with JSON equality, as `list` does, and the scan stops once `limit` threads passed.
pub(crate) fn list_threads(connection: &mut Connection, options: &ThreadListOptions) -> Result<Vec<ThreadSummary>> {
    let limit = options.limit.unwrap_or(usize::MAX);
    let mut threads = Vec::new();
    if limit == 0 {
        return Ok(threads);
    }
    let sql_limit = match options.limit {
        Some(limit) if options.metadata.is_empty() => i64::try_from(limit).unwrap_or(i64::MAX),
        _ => -1,
    };
    let transaction = connection.transaction()?;
    let mut select = transaction.prepare_cached(
        "SELECT t.thread_id, t.updated, c.checkpoint_id, c.step, c.metadata,
                (SELECT count(*) FROM checkpoints n WHERE n.thread_id = t.thread_id AND n.namespace = '')
         FROM (SELECT thread_id, max(newest_ms) AS updated FROM heads
               WHERE ?1 IS NULL OR substr(thread_id, 1, length(?1)) = ?1
               GROUP BY thread_id) AS t
         JOIN heads r ON r.thread_id = t.thread_id AND r.namespace = ''
         JOIN checkpoints c ON c.thread_id = t.thread_id AND c.namespace = '' AND c.checkpoint_id = r.head
         WHERE (?2 IS NULL OR t.updated >= ?2)
           AND (?3 IS NULL OR t.updated < ?3)
           AND (?4 IS NULL OR t.updated < ?4 OR (t.updated = ?4 AND t.thread_id < ?5))
         ORDER BY t.updated DESC, t.thread_id DESC
         LIMIT ?6",
    )?;
    let after = options.after.as_ref();
    let mut rows = select.query(params![
        options.prefix,
        options.updated_since_ms,
        options.updated_before_ms,
        after.map(|cursor| cursor.updated_at_ms()),
        after.map(|cursor| cursor.thread_id()),
        sql_limit
    ])?;
    while let Some(row) = rows.next()? {
        let checkpoint_id: String = row.get(2)?;
        let metadata: String = row.get(4)?;
        let metadata = serde_json::from_str::<Metadata>(&metadata).map_err(|source| Error::Json {
            column: "metadata",
            checkpoint_id: checkpoint_id.clone(),
            source,
        })?;
        let checkpoint_id = checkpoint_id.parse::<CheckpointId>().map_err(|error| Error::BadValue {
            column: "checkpoint_id",
            checkpoint_id: checkpoint_id.clone(),
            detail: error.to_string(),
        })?;
        let count: i64 = row.get(5)?;
        let thread = ThreadSummary::new(
            row.get(0)?,
            row.get(1)?,
            checkpoint_id,
            row.get(3)?,
            metadata,
            u64::try_from(count).unwrap_or(0),
        );
        if options.matches(&thread) {
            threads.push(thread);
            if threads.len() >= limit {
                break;
            }
        }
    }
    Ok(threads)
}

/// Stores a state schema unless its fingerprint has one.
pub(crate) fn put_schema(connection: &mut Connection, fingerprint: u64, schema: &[u8]) -> Result<()> {
    connection
        .prepare_cached("INSERT OR IGNORE INTO schemas (fingerprint, schema) VALUES (?1, ?2)")?
        .execute(params![fingerprint.cast_signed(), schema])?;
    Ok(())
}

/// The state schema stored for a fingerprint.
pub(crate) fn get_schema(connection: &mut Connection, fingerprint: u64) -> Result<Option<Vec<u8>>> {
    Ok(connection
        .prepare_cached("SELECT schema FROM schemas WHERE fingerprint = ?1")?
        .query_row([fingerprint.cast_signed()], |row| row.get(0))
        .optional()?)
}

/// The database's size in bytes: pages in use or free, including pages still in the log.
pub(crate) fn database_bytes(connection: &mut Connection) -> Result<u64> {
    let pages: i64 = connection.query_row("PRAGMA page_count", [], |row| row.get(0))?;
    let page_size: i64 = connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    Ok(u64::try_from(pages.saturating_mul(page_size)).unwrap_or(0))
}
