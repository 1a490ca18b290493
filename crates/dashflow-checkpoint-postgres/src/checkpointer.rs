//! [`PostgresCheckpointer`]: the [`Checkpointer`] trait over an sqlx pool.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use dashflow_checkpoint::{
    CheckpointError, CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer, ListOptions, LoadedCheckpoint,
    Metadata, PendingWrite, Result, ThreadListOptions, ThreadSummary,
};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row};

use crate::error::{Error, Sqlx};
use crate::guard::{Rejected, WriteGuard};
use crate::migrate;
use crate::retry::{Idempotence, RetryPolicy};
use crate::sql;

/// How many records `load` follows back from a checkpoint looking for its snapshot before it
/// calls the chain corrupt. The executor writes a snapshot every few deltas, so real chains
/// are short; the bound only stops a cycle of parent ids from looping.
const MAX_CHAIN: i32 = 100_000;

/// How long [`PostgresCheckpointer::connect`] waits for a server that does not answer.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Checkpoints in PostgreSQL, shared by every process and host that connects to the same
/// database and schema.
///
/// Cloning is cheap and shares the pool. Construction migrates the schema (see the crate
/// docs); the tables live in the first schema of the connections' `search_path`.
///
/// Operations that fail transiently (a killed connection, a server restart, a deadlock, a
/// serialization failure) are retried a few times with backoff; puts are retried even when
/// the connection broke around the commit, because a retried put recognizes its own earlier
/// success. A retry waits in the pool for the server, up to the pool's acquire timeout; a
/// pool timeout is not retried, so a call on a server that stays down fails after about one
/// acquire timeout. What still fails reaches the caller as
/// [`CheckpointError::Unavailable`](dashflow_checkpoint::CheckpointError::Unavailable) with
/// `retryable: true`, and the same checkpointer works again once the server is back.
#[derive(Clone, Debug)]
pub struct PostgresCheckpointer {
    pool: PgPool,
    retry: RetryPolicy,
    /// Checked inside the transaction of every write (see [`PostgresCheckpointer::guarded`]).
    guard: Option<Arc<dyn WriteGuard>>,
}

impl PostgresCheckpointer {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`)
    /// with a default pool and migrates the schema.
    ///
    /// Options the URL cannot express (pool size, `search_path`, `application_name`) are set
    /// through [`PostgresCheckpointer::connect_with`] or [`PostgresCheckpointer::from_pool`].
    /// The first connection is made once, directly: a refused connection, an unknown host
    /// or a rejected password fails at once with the server's or the system's reason, as a
    /// retryable `Unavailable` for a server that is down. A server that does not answer at
    /// all fails after [`CONNECT_TIMEOUT`]. Later calls wait for a connection up to the
    /// pool's acquire timeout (sqlx's default, 30 seconds; choose another with
    /// `PgPoolOptions::acquire_timeout` and `from_pool`).
    pub async fn connect(url: &str) -> Result<Self> {
        let options: PgConnectOptions =
            url.parse().map_err(|source| Error::Connect { target: "the URL".to_owned(), source: Sqlx(source) })?;
        Self::connect_with(options).await
    }

    /// Connects with `options` and a default pool, and migrates the schema.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self> {
        // The pool retries a failing first connection for its whole acquire timeout and then
        // reports only that it timed out; one direct attempt reports the reason at once.
        let first = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| Error::ConnectTimeout { host: options.get_host().to_owned(), after: CONNECT_TIMEOUT })?
            .map_err(|source| Error::Connect {
                target: format!("{}:{}", options.get_host(), options.get_port()),
                source: Sqlx(source),
            })?;
        // The pool opens its own connections; this one only proved the server reachable.
        let _closed = first.close().await;
        Self::from_pool(PgPoolOptions::new().connect_lazy_with(options)).await
    }

    /// Uses `pool` (shared with the application if it likes) and migrates the schema.
    pub async fn from_pool(pool: PgPool) -> Result<Self> {
        let retry = RetryPolicy::default();
        migrate::migrate(&pool, &retry).await?;
        Ok(Self { pool, retry, guard: None })
    }

    /// A checkpointer on the same pool whose every write (put, batch, pending writes,
    /// snapshot rewrites, deletions of old checkpoints and namespaces) first runs `guard` in
    /// the write's own transaction; a [`Rejected::Fenced`] is a `Conflict` and stores
    /// nothing. Replaces any guard this one had. The run queue hands such a checkpointer, guarded
    /// by the lease's fence epoch, to each run a worker holds.
    #[must_use]
    pub fn guarded(&self, guard: Arc<dyn WriteGuard>) -> Self {
        Self { pool: self.pool.clone(), retry: self.retry, guard: Some(guard) }
    }

    /// The guard every write checks, if any.
    pub fn guard(&self) -> Option<&Arc<dyn WriteGuard>> {
        self.guard.as_ref()
    }

    /// Tries each operation at most `attempts` times in all (at least once; 5 by default).
    /// `1` turns the transparent retries off, so every transient failure reaches the caller.
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.retry.attempts = attempts.max(1);
        self
    }

    /// The pool, e.g. to run the application's own statements against the same database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema version this build writes (the database may be at this version, never a
    /// newer one).
    pub fn schema_version() -> i64 {
        migrate::LATEST
    }

    /// Puts `record` expecting head `expected_head`, as [`Checkpointer::put`] does, on the
    /// caller's connection or open transaction: a distributed worker commits a checkpoint and
    /// the enqueueing of the next work together this way.
    ///
    /// Nothing is retried, the caller owns the transaction. A `Conflict` because the head
    /// moved leaves the transaction usable; a `Conflict` because the id is already stored,
    /// and any other error, abort it. At `REPEATABLE READ` or `SERIALIZABLE`
    /// a lost race surfaces as a retryable serialization failure instead of a `Conflict`;
    /// either way at most one writer advances the head.
    pub async fn put_in(
        conn: &mut PgConnection,
        record: &CheckpointRecord,
        expected_head: Option<&CheckpointId>,
    ) -> Result<()> {
        let values = PutValues::new(record)?;
        put_on(conn, record, &values, expected_head, Try::First).await.map_err(Into::into)
    }

    async fn acquire(&self, operation: &'static str) -> Result<PoolConnection<Postgres>, Error> {
        self.pool.acquire().await.map_err(Error::acquire(operation))
    }
}

/// The encoded columns of a record, computed once for every try of a put.
struct PutValues {
    metadata: String,
    next_nodes: String,
}

impl PutValues {
    fn new(record: &CheckpointRecord) -> Result<Self, Error> {
        ensure_text(&record.thread_id, "the thread id")?;
        ensure_text(&record.namespace, "the namespace")?;
        if record.next_nodes.iter().any(|node| node.contains('\0')) {
            return Err(Error::Nul { what: "a next node's name" });
        }
        let metadata =
            serde_json::to_string(&record.metadata).map_err(|source| Error::Json { what: "metadata", source })?;
        let next_nodes =
            serde_json::to_string(&record.next_nodes).map_err(|source| Error::Json { what: "next nodes", source })?;
        Ok(Self { metadata, next_nodes })
    }
}

fn ensure_text(value: &str, what: &'static str) -> Result<(), Error> {
    if value.contains('\0') { Err(Error::Nul { what }) } else { Ok(()) }
}

/// `none` or the id, as `Conflict` spells heads.
fn spell(id: Option<&str>) -> String {
    id.unwrap_or("none").to_owned()
}

const PUT: &str = "put a checkpoint";
const PUT_BATCH: &str = "put checkpoints";

/// Runs `guard` on the write's transaction; a refusal is a `Conflict` on the namespace.
async fn check_guard(
    guard: &dyn WriteGuard,
    conn: &mut PgConnection,
    thread_id: &str,
    namespace: &str,
    operation: &'static str,
) -> Result<(), Error> {
    match guard.check(conn, thread_id).await {
        Ok(()) => Ok(()),
        Err(Rejected::Fenced { expected, actual }) => {
            tracing::debug!(thread_id, %expected, %actual, operation, "a write guard refused a write");
            Err(Error::Conflict { thread_id: thread_id.to_owned(), namespace: namespace.to_owned(), expected, actual })
        }
        Err(Rejected::Database(source)) => Err(Error::uncommitted(operation)(source)),
    }
}

/// Which try of a put this is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Try {
    First,
    /// A retry: a conflict whose cause is this very record, stored by an earlier try whose
    /// commit was not acknowledged, is then a success.
    Again,
}

/// One try of a put.
async fn put_on(
    conn: &mut PgConnection,
    record: &CheckpointRecord,
    values: &PutValues,
    expected: Option<&CheckpointId>,
    attempt: Try,
) -> Result<(), Error> {
    let query = sqlx::query(if expected.is_some() { sql::PUT_EXPECTING } else { sql::PUT_FIRST })
        .bind(&record.thread_id)
        .bind(&record.namespace)
        .bind(record.checkpoint_id.as_str())
        .bind(record.parent_id.as_ref().map(CheckpointId::as_str))
        .bind(record.step)
        .bind(record.kind.as_str())
        .bind(record.blob.as_slice())
        .bind(&values.metadata)
        .bind(&values.next_nodes)
        .bind(record.created_at_ms);
    let query = match expected {
        Some(expected) => query.bind(expected.as_str()),
        None => query.bind(sql::THREAD_LOCK),
    };
    let duplicate = match query.execute(&mut *conn).await.map_err(Error::statement(PUT)) {
        Ok(done) if done.rows_affected() == 1 => return Ok(()),
        Ok(_) => false,
        // The head matched but the id is stored already: the statement rolled back whole.
        Err(error)
            if error.sqlstate().as_deref() == Some("23505")
                && error.constraint() == Some("dashflow_checkpoints_pkey") =>
        {
            true
        }
        Err(error) => return Err(error),
    };

    // Zero rows (the head was not `expected`) or a duplicate id: nothing was written.
    let actual = if duplicate {
        // The head matched (the statement got as far as the insert), so it is `expected`. Not
        // read back: inside a caller's transaction the failed statement aborted it.
        tracing::debug!(
            thread_id = %record.thread_id,
            checkpoint_id = %record.checkpoint_id,
            "refused a put of a checkpoint id that is already stored"
        );
        expected.map(|id| id.as_str().to_owned())
    } else {
        if attempt == Try::Again && stored_record(conn, record).await?.as_ref() == Some(record) {
            return Ok(());
        }
        sqlx::query_scalar(sql::HEAD)
            .bind(&record.thread_id)
            .bind(&record.namespace)
            .fetch_optional(&mut *conn)
            .await
            .map_err(Error::statement(PUT))?
    };
    // A stored checkpoint is never overwritten: the same id twice means two writers, a
    // `Conflict` like the other backends report.
    Err(Error::Conflict {
        thread_id: record.thread_id.clone(),
        namespace: record.namespace.clone(),
        expected: spell(expected.map(CheckpointId::as_str)),
        actual: spell(actual.as_deref()),
    })
}

/// The stored record with `record`'s thread, namespace and id, if any.
async fn stored_record(conn: &mut PgConnection, record: &CheckpointRecord) -> Result<Option<CheckpointRecord>, Error> {
    let row = sqlx::query(sql::RECORD)
        .bind(&record.thread_id)
        .bind(&record.namespace)
        .bind(record.checkpoint_id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(Error::statement(PUT))?;
    row.map(|row| record_from_row(&record.thread_id, &row, PUT)).transpose()
}

/// Reads a record from a row of `sql::record_columns!`.
fn record_from_row(thread_id: &str, row: &PgRow, operation: &'static str) -> Result<CheckpointRecord, Error> {
    let namespace: String = column(row, "namespace", operation)?;
    let checkpoint_id: String = column(row, "checkpoint_id", operation)?;
    let parent_id: Option<String> = column(row, "parent_id", operation)?;
    let step: i64 = column(row, "step", operation)?;
    let kind: String = column(row, "kind", operation)?;
    let blob: Vec<u8> = column(row, "blob", operation)?;
    let metadata: String = column(row, "metadata", operation)?;
    let next_nodes: String = column(row, "next_nodes", operation)?;
    let created_at_ms: i64 = column(row, "created_at_ms", operation)?;

    let corrupt = |detail: String| Error::Corrupt {
        detail: format!("checkpoint {checkpoint_id} of thread `{thread_id}` (namespace `{namespace}`): {detail}"),
    };
    let parse_id = |id: &str| id.parse::<CheckpointId>().map_err(|error| corrupt(error.to_string()));
    Ok(CheckpointRecord {
        thread_id: thread_id.to_owned(),
        checkpoint_id: parse_id(&checkpoint_id)?,
        parent_id: parent_id.as_deref().map(parse_id).transpose()?,
        step,
        kind: CheckpointKind::parse(&kind).ok_or_else(|| corrupt(format!("unknown kind `{kind}`")))?,
        blob,
        metadata: serde_json::from_str::<Metadata>(&metadata)
            .map_err(|error| corrupt(format!("metadata is not a JSON object: {error}")))?,
        next_nodes: serde_json::from_str::<Vec<String>>(&next_nodes)
            .map_err(|error| corrupt(format!("next nodes are not a JSON list of names: {error}")))?,
        created_at_ms,
        namespace,
    })
}

const PUT_WRITES: &str = "store pending writes";
const LOAD: &str = "load a checkpoint";
const LIST: &str = "list checkpoints";
const DELETE_THREAD: &str = "delete a thread";
const COPY_THREAD: &str = "copy a thread";
const DELETE_BEFORE: &str = "delete old checkpoints";
const DELETE_NAMESPACE: &str = "delete a namespace";
const DELETE_IDLE: &str = "delete idle threads";
const REWRITE: &str = "rewrite a checkpoint as a snapshot";
const LIST_THREADS: &str = "list threads";
const PUT_SCHEMA: &str = "store a state schema";
const GET_SCHEMA: &str = "read a state schema";

#[async_trait]
impl Checkpointer for PostgresCheckpointer {
    async fn put(&self, record: CheckpointRecord, expected_head: Option<&CheckpointId>) -> Result<()> {
        let values = PutValues::new(&record)?;
        let (record, values) = (&record, &values);
        // Idempotent through `Try::Again`: a retry after an unacknowledged commit finds its
        // own record and succeeds instead of reporting a conflict with itself.
        if let Some(guard) = &self.guard {
            let guard = &**guard;
            return self
                .retry
                .run(PUT, Idempotence::Idempotent, |attempt| async move {
                    let mut conn = self.acquire(PUT).await?;
                    // An earlier try may have committed without an acknowledgement: that is
                    // a success, found before the guard, which may have moved on since.
                    if attempt > 1 && stored_record(&mut conn, record).await?.as_ref() == Some(record) {
                        return Ok(());
                    }
                    let mut tx = conn.begin().await.map_err(Error::acquire(PUT))?;
                    check_guard(guard, &mut tx, &record.thread_id, &record.namespace, PUT).await?;
                    put_on(&mut tx, record, values, expected_head, Try::First).await?;
                    tx.commit().await.map_err(Error::statement(PUT))
                })
                .await
                .map_err(Into::into);
        }
        self.retry
            .run(PUT, Idempotence::Idempotent, |attempt| async move {
                let mut conn = self.acquire(PUT).await?;
                put_on(&mut conn, record, values, expected_head, if attempt > 1 { Try::Again } else { Try::First })
                    .await
            })
            .await
            .map_err(Into::into)
    }

    async fn put_batch(&self, records: Vec<(CheckpointRecord, Option<CheckpointId>)>) -> Result<()> {
        // Unguarded, each put commits alone, as the trait's default does; guarded, the batch
        // is one transaction behind one check of the guard.
        let Some(guard) = &self.guard else {
            for (record, expected) in records {
                self.put(record, expected.as_ref()).await?;
            }
            return Ok(());
        };
        let Some((last, _)) = records.last() else { return Ok(()) };
        let values = records.iter().map(|(record, _)| PutValues::new(record)).collect::<Result<Vec<_>, _>>()?;
        let (guard, records, values) = (&**guard, &records, &values);
        self.retry
            .run(PUT_BATCH, Idempotence::Idempotent, |attempt| async move {
                let mut conn = self.acquire(PUT_BATCH).await?;
                // All or nothing: the last record stored means the whole batch committed.
                if attempt > 1 && stored_record(&mut conn, last).await?.as_ref() == Some(last) {
                    return Ok(());
                }
                let mut tx = conn.begin().await.map_err(Error::acquire(PUT_BATCH))?;
                let mut checked: Vec<&str> = Vec::new();
                for ((record, expected), values) in records.iter().zip(values) {
                    if !checked.contains(&record.thread_id.as_str()) {
                        check_guard(guard, &mut tx, &record.thread_id, &record.namespace, PUT_BATCH).await?;
                        checked.push(&record.thread_id);
                    }
                    put_on(&mut tx, record, values, expected.as_ref(), Try::First).await?;
                }
                tx.commit().await.map_err(Error::statement(PUT_BATCH))
            })
            .await
            .map_err(Into::into)
    }

    async fn put_writes(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: &CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        ensure_text(thread_id, "the thread id")?;
        ensure_text(namespace, "the namespace")?;
        // One row per task: the last write of a task wins, in the place of its first.
        let mut slots: HashMap<&str, usize> = HashMap::with_capacity(writes.len());
        let mut unique: Vec<&PendingWrite> = Vec::with_capacity(writes.len());
        for write in &writes {
            ensure_text(&write.task_id, "a task id")?;
            ensure_text(&write.node, "a node name")?;
            match slots.get(write.task_id.as_str()) {
                Some(&slot) => unique[slot] = write,
                None => {
                    slots.insert(&write.task_id, unique.len());
                    unique.push(write);
                }
            }
        }
        let task_ids: Vec<&str> = unique.iter().map(|write| write.task_id.as_str()).collect();
        let nodes: Vec<&str> = unique.iter().map(|write| write.node.as_str()).collect();
        let blobs: Vec<&[u8]> = unique.iter().map(|write| write.blob.as_slice()).collect();
        let (task_ids, nodes, blobs) = (&task_ids, &nodes, &blobs);

        // An upsert: storing the same writes twice is storing them once.
        self.retry
            .run(PUT_WRITES, Idempotence::Idempotent, |_| async move {
                let mut conn = self.acquire(PUT_WRITES).await?;
                if let Some(guard) = &self.guard {
                    let mut tx = conn.begin().await.map_err(Error::acquire(PUT_WRITES))?;
                    check_guard(&**guard, &mut tx, thread_id, namespace, PUT_WRITES).await?;
                    sqlx::query(sql::PUT_WRITES)
                        .bind(thread_id)
                        .bind(namespace)
                        .bind(checkpoint_id.as_str())
                        .bind(task_ids)
                        .bind(nodes)
                        .bind(blobs)
                        .execute(&mut *tx)
                        .await
                        .map_err(Error::uncommitted(PUT_WRITES))?;
                    return tx.commit().await.map_err(Error::statement(PUT_WRITES));
                }
                sqlx::query(sql::PUT_WRITES)
                    .bind(thread_id)
                    .bind(namespace)
                    .bind(checkpoint_id.as_str())
                    .bind(task_ids)
                    .bind(nodes)
                    .bind(blobs)
                    .execute(&mut *conn)
                    .await
                    .map(drop)
                    .map_err(Error::statement(PUT_WRITES))
            })
            .await
            .map_err(Into::into)
    }

    async fn load(
        &self,
        thread_id: &str,
        namespace: &str,
        id: Option<&CheckpointId>,
    ) -> Result<Option<LoadedCheckpoint>> {
        if thread_id.contains('\0') || namespace.contains('\0') {
            // Nothing with such a key can have been stored.
            return Ok(None);
        }
        let rows = self
            .retry
            .run(LOAD, Idempotence::Idempotent, |_| async move {
                let mut conn = self.acquire(LOAD).await?;
                sqlx::query(sql::LOAD)
                    .bind(thread_id)
                    .bind(namespace)
                    .bind(id.map(CheckpointId::as_str))
                    .bind(MAX_CHAIN)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(Error::statement(LOAD))
            })
            .await?;
        loaded_from_rows(thread_id, &rows).map_err(Into::into)
    }

    async fn list(&self, thread_id: &str, options: &ListOptions) -> Result<Vec<CheckpointRecord>> {
        if thread_id.contains('\0') || options.namespace.as_deref().is_some_and(|namespace| namespace.contains('\0')) {
            return Ok(Vec::new());
        }
        let metadata = serde_json::to_string(&options.metadata)
            .map_err(|source| Error::Json { what: "the metadata filter", source })?;
        let limit = options.limit.map(|limit| i64::try_from(limit).unwrap_or(i64::MAX));
        let metadata = &metadata;
        let rows = self
            .retry
            .run(LIST, Idempotence::Idempotent, |_| async move {
                let mut conn = self.acquire(LIST).await?;
                sqlx::query(sql::LIST)
                    .bind(thread_id)
                    .bind(options.namespace.as_deref())
                    .bind(options.before.as_ref().map(CheckpointId::as_str))
                    .bind(metadata)
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(Error::statement(LIST))
            })
            .await?;
        rows.iter().map(|row| record_from_row(thread_id, row, LIST).map_err(Into::into)).collect()
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<()> {
        if thread_id.contains('\0') {
            return Ok(());
        }
        // Deleting what is already gone changes nothing: idempotent.
        self.retry
            .run(DELETE_THREAD, Idempotence::Idempotent, |_| async move {
                let mut conn = self.acquire(DELETE_THREAD).await?;
                let mut tx = conn.begin().await.map_err(Error::acquire(DELETE_THREAD))?;
                lock_thread(&mut tx, thread_id, DELETE_THREAD).await?;
                sqlx::query(sql::DELETE_THREAD)
                    .bind(thread_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::uncommitted(DELETE_THREAD))?;
                tx.commit().await.map_err(Error::statement(DELETE_THREAD))
            })
            .await
            .map_err(Into::into)
    }

    async fn copy_thread(&self, from: &str, to: &str) -> Result<()> {
        if from.contains('\0') {
            // Nothing with such an id can have been stored: copying nothing is done.
            return Ok(());
        }
        ensure_text(to, "the thread id to copy into")?;
        // Not idempotent (a second copy finds the first and conflicts), so it is retried only
        // when the earlier try certainly rolled back.
        self.retry
            .run(COPY_THREAD, Idempotence::Once, |_| async move {
                let mut conn = self.acquire(COPY_THREAD).await?;
                let mut tx = conn.begin().await.map_err(Error::acquire(COPY_THREAD))?;
                // The exclusive thread lock keeps first puts out of `to` until this commits;
                // puts into existing namespaces need a head, and `to` has none.
                sqlx::query(sql::LOCK_THREAD)
                    .bind(sql::THREAD_LOCK)
                    .bind(to)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::uncommitted(COPY_THREAD))?;
                let existing = sqlx::query(sql::HEADS_OF)
                    .bind(to)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(Error::uncommitted(COPY_THREAD))?;
                if let Some(existing) = existing {
                    let namespace: String = column(&existing, "namespace", COPY_THREAD)?;
                    let head: String = column(&existing, "head_id", COPY_THREAD)?;
                    return Err(Error::Conflict {
                        thread_id: to.to_owned(),
                        namespace,
                        expected: spell(None),
                        actual: head,
                    });
                }
                // Copying a thread that does not exist copies nothing, as in the other backends.
                sqlx::query(sql::COPY_THREAD)
                    .bind(from)
                    .bind(to)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::uncommitted(COPY_THREAD))?;
                tx.commit().await.map_err(Error::statement(COPY_THREAD))
            })
            .await
            .map_err(Into::into)
    }

    async fn delete_before(&self, thread_id: &str, namespace: &str, keep_from: &CheckpointId) -> Result<u64> {
        if thread_id.contains('\0') || namespace.contains('\0') {
            return Ok(0);
        }
        // Retried only when certainly rolled back, so that the count stays true.
        self.retry
            .run(DELETE_BEFORE, Idempotence::Once, |_| async move {
                let mut conn = self.acquire(DELETE_BEFORE).await?;
                let mut tx = conn.begin().await.map_err(Error::acquire(DELETE_BEFORE))?;
                if let Some(guard) = &self.guard {
                    check_guard(&**guard, &mut tx, thread_id, namespace, DELETE_BEFORE).await?;
                }
                let deleted = sqlx::query(sql::DELETE_BEFORE)
                    .bind(thread_id)
                    .bind(namespace)
                    .bind(keep_from.as_str())
                    .execute(&mut *tx)
                    .await
                    .map(|done| done.rows_affected())
                    .map_err(Error::uncommitted(DELETE_BEFORE))?;
                tx.commit().await.map_err(Error::statement(DELETE_BEFORE))?;
                Ok(deleted)
            })
            .await
            .map_err(Into::into)
    }

    async fn delete_namespace(&self, thread_id: &str, namespace: &str) -> Result<u64> {
        if thread_id.contains('\0') || namespace.contains('\0') {
            return Ok(0);
        }
        // One statement, so all or nothing; retried only when certainly rolled back, so that
        // the count stays true.
        self.retry
            .run(DELETE_NAMESPACE, Idempotence::Once, |_| async move {
                let mut conn = self.acquire(DELETE_NAMESPACE).await?;
                let mut tx = conn.begin().await.map_err(Error::acquire(DELETE_NAMESPACE))?;
                if let Some(guard) = &self.guard {
                    check_guard(&**guard, &mut tx, thread_id, namespace, DELETE_NAMESPACE).await?;
                }
                let deleted = sqlx::query(sql::DELETE_NAMESPACE)
                    .bind(thread_id)
                    .bind(namespace)
                    .execute(&mut *tx)
                    .await
                    .map(|done| done.rows_affected())
                    .map_err(Error::uncommitted(DELETE_NAMESPACE))?;
                tx.commit().await.map_err(Error::statement(DELETE_NAMESPACE))?;
                Ok(deleted)
            })
            .await
            .map_err(Into::into)
    }

    async fn rewrite_as_snapshot(
        &self,
        thread_id: &str,
        namespace: &str,
        id: &CheckpointId,
        blob: Vec<u8>,
    ) -> Result<()> {
        let not_found = || CheckpointError::NotFound { what: format!("checkpoint {id} of thread `{thread_id}`") };
        if thread_id.contains('\0') || namespace.contains('\0') {
            return Err(not_found());
        }
        let blob = &blob;
        // Writing the same snapshot again changes nothing: safe to retry.
        let changed = self
            .retry
            .run(REWRITE, Idempotence::Idempotent, |_| async move {
                let mut conn = self.acquire(REWRITE).await?;
                let mut tx = conn.begin().await.map_err(Error::acquire(REWRITE))?;
                if let Some(guard) = &self.guard {
                    check_guard(&**guard, &mut tx, thread_id, namespace, REWRITE).await?;
                }
                let changed = sqlx::query(sql::REWRITE_AS_SNAPSHOT)
                    .bind(thread_id)
                    .bind(namespace)
                    .bind(id.as_str())
                    .bind(blob.as_slice())
                    .execute(&mut *tx)
                    .await
                    .map(|done| done.rows_affected())
                    .map_err(Error::uncommitted(REWRITE))?;
                tx.commit().await.map_err(Error::statement(REWRITE))?;
                Ok(changed)
            })
            .await?;
        if changed == 0 { Err(not_found()) } else { Ok(()) }
    }

    async fn list_threads(&self, options: &ThreadListOptions) -> Result<Vec<ThreadSummary>> {
        if options.prefix.as_deref().is_some_and(|prefix| prefix.contains('\0')) {
            return Ok(Vec::new());
        }
        let metadata = serde_json::to_string(&options.metadata)
            .map_err(|source| Error::Json { what: "the metadata filter", source })?;
        let limit = options.limit.map(|limit| i64::try_from(limit).unwrap_or(i64::MAX));
        // A cursor's thread id with NUL sorts after every stored id of its time; cutting it at
        // the NUL keeps the order for stored ids, which cannot hold NUL.
        let after_id = options.after.as_ref().map(|cursor| cursor.thread_id().split('\0').next().unwrap_or_default());
        let (metadata, after_id) = (&metadata, &after_id);
        let rows = self
            .retry
            .run(LIST_THREADS, Idempotence::Idempotent, |_| async move {
                let mut conn = self.acquire(LIST_THREADS).await?;
                sqlx::query(sql::LIST_THREADS)
                    .bind(options.prefix.as_deref())
                    .bind(options.updated_since_ms)
                    .bind(options.updated_before_ms)
                    .bind(options.after.as_ref().map(|cursor| cursor.updated_at_ms()))
                    .bind(*after_id)
                    .bind(metadata)
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(Error::statement(LIST_THREADS))
            })
            .await?;
        rows.iter().map(|row| thread_from_row(row).map_err(Into::into)).collect()
    }

    async fn put_schema(&self, fingerprint: u64, schema: Vec<u8>) -> Result<()> {
        let schema = &schema;
        // Inserting a schema that is there already changes nothing: safe to retry.
        self.retry
            .run(PUT_SCHEMA, Idempotence::Idempotent, |_| async move {
                let mut conn = self.acquire(PUT_SCHEMA).await?;
                sqlx::query(
                    "INSERT INTO dashflow_state_schemas (fingerprint, schema) VALUES ($1, $2) \
                     ON CONFLICT (fingerprint) DO NOTHING",
                )
                .bind(fingerprint.cast_signed())
                .bind(schema)
                .execute(&mut *conn)
                .await
                .map(drop)
                .map_err(Error::statement(PUT_SCHEMA))
            })
            .await
            .map_err(Into::into)
    }

    async fn get_schema(&self, fingerprint: u64) -> Result<Option<Vec<u8>>> {
        self.retry
            .run(GET_SCHEMA, Idempotence::Idempotent, |_| async move {
                let mut conn = self.acquire(GET_SCHEMA).await?;
                sqlx::query_scalar("SELECT schema FROM dashflow_state_schemas WHERE fingerprint = $1")
                    .bind(fingerprint.cast_signed())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(Error::statement(GET_SCHEMA))
            })
            .await
            .map_err(Into::into)
    }

    async fn delete_idle_threads(&self, cutoff_ms: i64) -> Result<Vec<String>> {
        let candidates: Vec<String> = self
            .retry
            .run(DELETE_IDLE, Idempotence::Idempotent, |_| async move {
                let mut conn = self.acquire(DELETE_IDLE).await?;
                sqlx::query_scalar(sql::IDLE_THREADS)
                    .bind(cutoff_ms)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(Error::statement(DELETE_IDLE))
            })
            .await?;
        let mut deleted = Vec::with_capacity(candidates.len());
        for thread_id in candidates {
            let thread = thread_id.as_str();
            // Each thread in its own transaction, re-checked under its locks: a put that
            // lands between the scan and the delete keeps its thread alive.
            let gone = self
                .retry
                .run(DELETE_IDLE, Idempotence::Once, |_| async move {
                    let mut conn = self.acquire(DELETE_IDLE).await?;
                    let mut tx = conn.begin().await.map_err(Error::acquire(DELETE_IDLE))?;
                    let newest = lock_thread(&mut tx, thread, DELETE_IDLE).await?;
                    if newest.is_empty() || newest.iter().any(|&created| created >= cutoff_ms) {
                        return Ok(false);
                    }
                    sqlx::query(sql::DELETE_THREAD)
                        .bind(thread)
                        .execute(&mut *tx)
                        .await
                        .map_err(Error::uncommitted(DELETE_IDLE))?;
                    tx.commit().await.map_err(Error::statement(DELETE_IDLE))?;
                    Ok(true)
                })
                .await?;
            if gone {
                deleted.push(thread_id);
            }
        }
        Ok(deleted)
    }
}

/// Inside a transaction, makes thread `thread_id` still: takes its advisory lock exclusively
/// (no first put into a new namespace can start) and locks its head rows (puts in flight
/// finish first; later ones wait for this transaction). Each is its own statement so that
/// the next sees everything committed before the lock was granted. Returns each namespace's
/// newest `created_at_ms`.
async fn lock_thread(conn: &mut PgConnection, thread_id: &str, operation: &'static str) -> Result<Vec<i64>, Error> {
    sqlx::query(sql::LOCK_THREAD)
        .bind(sql::THREAD_LOCK)
        .bind(thread_id)
        .execute(&mut *conn)
        .await
        .map_err(Error::uncommitted(operation))?;
    let rows = sqlx::query(sql::LOCK_HEADS)
        .bind(thread_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::uncommitted(operation))?;
    rows.iter().map(|row| column(row, "newest_created_at_ms", operation)).collect()
}

/// Builds a [`LoadedCheckpoint`] from the rows of `sql::LOAD` (oldest first).
fn loaded_from_rows(thread_id: &str, rows: &[PgRow]) -> Result<Option<LoadedCheckpoint>, Error> {
    let Some(last) = rows.last() else {
        return Ok(None);
    };
    let chain = rows.iter().map(|row| record_from_row(thread_id, row, LOAD)).collect::<Result<Vec<_>, _>>()?;
    let pending_writes = pending_writes_from_row(last)?;
    // A chain may start at a delta whose parent is gone (pruned): it ends at the oldest record
    // still stored, as in the other backends. A parent that is in the chain already is a
    // cycle, and a chain that hit the depth bound has no end: both are corrupt.
    if let Some(first) = chain.first()
        && first.kind == CheckpointKind::Delta
    {
        let requested = chain.last().map_or_else(String::new, |record| record.checkpoint_id.to_string());
        let cyclic =
            first.parent_id.as_ref().is_some_and(|parent| chain.iter().any(|record| record.checkpoint_id == *parent));
        let endless = chain.len() > usize::try_from(MAX_CHAIN).unwrap_or(usize::MAX);
        if cyclic || endless {
            let detail = if cyclic {
                format!("the parent links of checkpoint {requested} form a cycle")
            } else {
                format!("checkpoint {requested} has no snapshot or root within {MAX_CHAIN} parents")
            };
            return Err(Error::Corrupt {
                detail: format!("thread `{thread_id}` (namespace `{}`): {detail}", first.namespace),
            });
        }
    }
    Ok(Some(LoadedCheckpoint { chain, pending_writes }))
}

/// Reads a thread from a row of `sql::LIST_THREADS`.
fn thread_from_row(row: &PgRow) -> Result<ThreadSummary, Error> {
    let thread_id: String = column(row, "thread_id", LIST_THREADS)?;
    let checkpoint_id: String = column(row, "checkpoint_id", LIST_THREADS)?;
    let metadata: String = column(row, "metadata", LIST_THREADS)?;
    let checkpoints: i64 = column(row, "checkpoints", LIST_THREADS)?;
    let corrupt = |detail: String| Error::Corrupt {
        detail: format!("checkpoint {checkpoint_id} of thread `{thread_id}` (namespace ``): {detail}"),
    };
    Ok(ThreadSummary::new(
        thread_id.clone(),
        column(row, "updated_at_ms", LIST_THREADS)?,
        checkpoint_id.parse::<CheckpointId>().map_err(|error| corrupt(error.to_string()))?,
        column(row, "step", LIST_THREADS)?,
        serde_json::from_str::<Metadata>(&metadata)
            .map_err(|error| corrupt(format!("metadata is not a JSON object: {error}")))?,
        u64::try_from(checkpoints).unwrap_or(0),
    ))
}

fn pending_writes_from_row(row: &PgRow) -> Result<Vec<PendingWrite>, Error> {
    let task_ids: Option<Vec<String>> = column(row, "task_ids", LOAD)?;
    let nodes: Option<Vec<String>> = column(row, "nodes", LOAD)?;
    let blobs: Option<Vec<Vec<u8>>> = column(row, "blobs", LOAD)?;
    let (task_ids, nodes, blobs) = (task_ids.unwrap_or_default(), nodes.unwrap_or_default(), blobs.unwrap_or_default());
    if task_ids.len() != nodes.len() || task_ids.len() != blobs.len() {
        return Err(Error::Corrupt { detail: "pending writes came back with mismatched columns".to_owned() });
    }
    Ok(task_ids
        .into_iter()
        .zip(nodes)
        .zip(blobs)
        .map(|((task_id, node), blob)| PendingWrite { task_id, node, blob })
        .collect())
}

/// Reads one column; a column that does not decode makes the error `Corrupt`.
fn column<'r, T>(row: &'r PgRow, name: &str, operation: &'static str) -> Result<T, Error>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name).map_err(Error::statement(operation))
}
