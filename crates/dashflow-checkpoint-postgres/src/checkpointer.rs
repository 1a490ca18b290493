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
use crate::group::{GroupCommit, PutJob, Reply};
use crate::guard::WriteGuard;
use crate::migrate;
use crate::retry::{Idempotence, RetryPolicy};
use crate::sql::{self, Writes};

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
    /// Checked inside every write (see [`PostgresCheckpointer::guarded`]).
    guard: Option<WriteGuard>,
    /// Fingerprints of the state schemas this pool stored, shared by clones and guarded
    /// checkpointers: a schema is never deleted, so storing it again is a wasted round trip
    /// (a worker's every run gets a checkpointer of its own, whose executor stores it again).
    stored_schemas: Arc<std::sync::Mutex<std::collections::HashSet<u64>>>,
    /// Stores the puts of this pool's concurrent writers a group at a time, shared by clones
    /// and guarded checkpointers.
    group: Arc<GroupCommit>,
    /// Set while the guard's thread is known to have no checkpoint (its lease was granted on
    /// a thread without one, and nothing was written since): the first load of its root
    /// namespace answers without reading. Cleared by that load and by any write.
    empty: Option<Arc<std::sync::atomic::AtomicBool>>,
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
        let group = Arc::new(GroupCommit::new(pool.clone()));
        Ok(Self { pool, retry, guard: None, stored_schemas: Arc::default(), group, empty: None })
    }

    /// A checkpointer on the same pool whose every write (put, batch, pending writes,
    /// snapshot rewrites, deletions of old checkpoints and namespaces) checks `guard`'s fence
    /// epoch in the write's own statement, still one round trip; a write whose epoch is not the
    /// thread's, or that goes to another thread, is a `Conflict` and stores nothing. Deleting
    /// the guard's thread and copying into it check the epoch in their own transaction, a
    /// `Conflict` too when it moved; deleting or copying into another thread, and deleting
    /// idle threads, are `OutsideFence` and touch nothing. Replaces
    /// any guard this one had. The run queue hands such a checkpointer, guarded by the lease's
    /// fence epoch, to each run a worker holds.
    #[must_use]
    pub fn guarded(&self, guard: WriteGuard) -> Self {
        Self {
            pool: self.pool.clone(),
            retry: self.retry,
            guard: Some(guard),
            stored_schemas: Arc::clone(&self.stored_schemas),
            group: Arc::clone(&self.group),
            empty: None,
        }
    }

    /// This guarded checkpointer, told that its guard's thread has no checkpoint: the first
    /// load of its root namespace answers `None` without reading, until anything is written.
    /// Only for a guard granted on a thread seen without a checkpoint, with no earlier owner
    /// that could have written since (the run queue's first claim of a run): were one stored
    /// after all, the run's first put, which expects no head, would be a `Conflict`.
    pub(crate) fn assuming_an_empty_thread(mut self) -> Self {
        if self.guard.is_some() {
            self.empty = Some(Arc::new(std::sync::atomic::AtomicBool::new(true)));
        }
        self
    }

    /// Whether `thread_id` is the guard's thread and known to be empty; the answer is given
    /// once.
    fn known_empty(&self, thread_id: &str) -> bool {
        match (&self.empty, &self.guard) {
            (Some(empty), Some(guard)) if guard.thread_id() == thread_id => {
                empty.swap(false, std::sync::atomic::Ordering::Relaxed)
            }
            _ => false,
        }
    }

    /// The guard every write checks, if any.
    pub fn guard(&self) -> Option<&WriteGuard> {
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
    /// Nothing is retried, the caller owns the transaction. A `Conflict` (the head moved, or
    /// the id is stored already) stores nothing and leaves the transaction usable; any other
    /// error aborts it. At `REPEATABLE READ` or `SERIALIZABLE`
    /// a lost race surfaces as a retryable serialization failure instead of a `Conflict`;
    /// either way at most one writer advances the head.
    pub async fn put_in(
        conn: &mut PgConnection,
        record: &CheckpointRecord,
        expected_head: Option<&CheckpointId>,
    ) -> Result<()> {
        let values = PutValues::new(record)?;
        put_on(conn, Fenced::not(), record, &values, expected_head, Try::First).await?.into_result().map_err(Into::into)
    }

    async fn acquire(&self, operation: &'static str) -> Result<PoolConnection<Postgres>, Error> {
        self.pool.acquire().await.map_err(Error::acquire(operation))
    }

    /// How this checkpointer's deletion of or copy into thread `thread_id` is fenced; one of
    /// another thread than the guard's is refused as `OutsideFence`: it is beyond what the
    /// guard covers, and belongs to an unguarded checkpointer.
    fn fenced_thread(&self, thread_id: &str, operation: &'static str) -> Result<Fenced<'_>, CheckpointError> {
        match &self.guard {
            Some(guard) if guard.thread_id() != thread_id => Err(CheckpointError::OutsideFence {
                operation,
                target: format!("thread `{thread_id}`"),
                fenced_thread: guard.thread_id().to_owned(),
            }),
            _ => self.fenced(thread_id, "").map_err(Into::into),
        }
    }

    /// How this checkpointer's writes to `thread_id` are fenced; a write to another thread
    /// than the guard's is refused here, without a round trip.
    fn fenced(&self, thread_id: &str, namespace: &str) -> Result<Fenced<'_>, Error> {
        if let Some(empty) = &self.empty {
            empty.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        match &self.guard {
            None => Ok(Fenced::not()),
            Some(guard) if guard.thread_id() != thread_id => Err(Error::Conflict {
                thread_id: thread_id.to_owned(),
                namespace: namespace.to_owned(),
                expected: format!("a lease on thread `{}`", guard.thread_id()),
                actual: format!("a write to thread `{thread_id}`"),
            }),
            Some(guard) => Ok(Fenced { writes: &guard.table().writes, epoch: Some(guard.epoch()) }),
        }
    }
}

/// The write statements a call uses and the epoch it binds as their last parameter: unguarded,
/// or fenced by the checkpointer's [`WriteGuard`].
#[derive(Clone, Copy)]
pub(crate) struct Fenced<'a> {
    pub(crate) writes: &'a Arc<Writes>,
    pub(crate) epoch: Option<i64>,
}

impl Fenced<'_> {
    /// Unguarded writes.
    fn not() -> Fenced<'static> {
        Fenced { writes: &sql::UNGUARDED, epoch: None }
    }

    /// Binds the epoch, when fenced, after the statement's own parameters.
    fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        match self.epoch {
            Some(epoch) => query.bind(epoch),
            None => query,
        }
    }

    /// In a transaction that writes thread `thread_id` as a whole (deletes it, copies into
    /// it): reads the thread's epoch `FOR SHARE` and checks it, as a write statement's own
    /// fence does, before the transaction takes the thread's locks; the epoch cannot move
    /// until the transaction ends. Unguarded, it reads nothing.
    async fn hold(self, conn: &mut PgConnection, thread_id: &str, operation: &'static str) -> Result<(), Error> {
        let Some(lookup) = &self.writes.lookup else { return Ok(()) };
        let found: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(Arc::clone(lookup)))
            .bind(thread_id)
            .fetch_optional(conn)
            .await
            .map_err(Error::uncommitted(operation))?;
        self.check(found, thread_id, "")
    }

    /// Whether the epoch a write found (`found`) let it through; a `Conflict` naming both when
    /// not. Unguarded writes always pass.
    fn check(self, found: Option<i64>, thread_id: &str, namespace: &str) -> Result<(), Error> {
        match self.epoch {
            Some(epoch) if found != Some(epoch) => {
                let actual = found.map_or_else(|| "no fence".to_owned(), |found| format!("epoch {found}"));
                tracing::debug!(thread_id, namespace, epoch, %actual, "a fenced write was refused");
                Err(Error::Conflict {
                    thread_id: thread_id.to_owned(),
                    namespace: namespace.to_owned(),
                    expected: format!("lease epoch {epoch}"),
                    actual,
                })
            }
            _ => Ok(()),
        }
    }
}

/// What a write statement of [`Writes`] reports: the fence epoch it found and the rows it
/// changed.
async fn written(
    query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    conn: &mut PgConnection,
) -> Result<(Option<i64>, i64), sqlx::Error> {
    let row = query.fetch_one(conn).await?;
    Ok((row.try_get("fence")?, row.try_get("changed")?))
}

/// The encoded columns of a record, computed once for every try of a put.
pub(crate) struct PutValues {
    pub(crate) metadata: String,
    pub(crate) next_nodes: String,
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

/// Which try of a put this is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Try {
    First,
    /// A retry: a conflict whose cause is this very record, stored by an earlier try whose
    /// commit was not acknowledged, is then a success.
    Again,
}

/// How a put that reached the database ended.
pub(crate) enum Put {
    Stored,
    /// Refused with a `Conflict` (the head moved, the id is stored, or the fence moved):
    /// nothing was stored, and an open transaction is still usable.
    Refused(Error),
}

impl Put {
    fn into_result(self) -> Result<(), Error> {
        match self {
            Self::Stored => Ok(()),
            Self::Refused(error) => Err(error),
        }
    }
}

/// A statement of [`Writes`], sharing its text (sqlx prepares it once per connection).
fn write_query<'q>(sql: &Arc<str>) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sqlx::AssertSqlSafe(Arc::clone(sql)))
}

/// What the one statement of a chain did.
enum Chain {
    /// Every record is stored.
    Stored,
    /// Nothing is stored (not a chain, a moved head or fence, an id stored before).
    NotStored,
    /// The statement failed: it may have committed.
    InDoubt,
}

/// Puts `records` with one statement ([`Writes::put_chain`], or [`Writes::put_first_chain`]
/// into an empty namespace) when they are a chain: two or more of one namespace, each after
/// the first expecting the one before.
async fn put_chain(
    checkpointer: &PostgresCheckpointer,
    fenced: Fenced<'_>,
    records: &[(CheckpointRecord, Option<CheckpointId>)],
    values: &[PutValues],
) -> Chain {
    let Some(((first, expected), rest)) = records.split_first() else { return Chain::NotStored };
    let chained = !rest.is_empty()
        && records.windows(2).all(|pair| {
            let ((before, _), (after, expects)) = (&pair[0], &pair[1]);
            after.thread_id == first.thread_id
                && after.namespace == first.namespace
                && expects.as_ref() == Some(&before.checkpoint_id)
        });
    if !chained {
        return Chain::NotStored;
    }
    let Ok(mut conn) = checkpointer.acquire(PUT_BATCH).await else { return Chain::NotStored };
    let column =
        |f: &dyn Fn(&CheckpointRecord) -> &str| records.iter().map(|(record, _)| f(record)).collect::<Vec<_>>();
    let statement = if expected.is_some() { &fenced.writes.put_chain } else { &fenced.writes.put_first_chain };
    let query = write_query(statement)
        .bind(&first.thread_id)
        .bind(&first.namespace)
        .bind(column(&|record| record.checkpoint_id.as_str()))
        .bind(records.iter().map(|(record, _)| record.parent_id.as_ref().map(CheckpointId::as_str)).collect::<Vec<_>>())
        .bind(records.iter().map(|(record, _)| record.step).collect::<Vec<_>>())
        .bind(column(&|record| record.kind.as_str()))
        .bind(records.iter().map(|(record, _)| record.blob.as_slice()).collect::<Vec<_>>())
        .bind(values.iter().map(|values| values.metadata.as_str()).collect::<Vec<_>>())
        .bind(values.iter().map(|values| values.next_nodes.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|(record, _)| record.created_at_ms).collect::<Vec<_>>());
    let query = match expected {
        Some(expected) => query.bind(expected.as_str()),
        None => query.bind(sql::THREAD_LOCK),
    };
    match written(fenced.bind(query), &mut conn).await {
        Ok((_, changed)) if usize::try_from(changed).ok() == Some(records.len()) => Chain::Stored,
        Ok(_) => Chain::NotStored,
        Err(error) => {
            tracing::debug!(records = records.len(), %error, "a chain of puts failed; each put goes alone");
            Chain::InDoubt
        }
    }
}

/// One try of a put: one statement, fenced or not, that moves the head and stores the record.
pub(crate) async fn put_on(
    conn: &mut PgConnection,
    fenced: Fenced<'_>,
    record: &CheckpointRecord,
    values: &PutValues,
    expected: Option<&CheckpointId>,
    attempt: Try,
) -> Result<Put, Error> {
    let statement = if expected.is_some() { &fenced.writes.put_expecting } else { &fenced.writes.put_first };
    let query = write_query(statement)
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
    let (fence, changed) = match written(fenced.bind(query), conn).await.map_err(Error::statement(PUT)) {
        Ok(written) => written,
        // The id is stored, though the statement's `NOT EXISTS` did not see it (committed
        // meanwhile by a writer that moved no head this put waited for). The statement rolled
        // back whole, and aborted a caller's transaction: nothing is read back here.
        Err(error)
            if error.sqlstate().as_deref() == Some("23505")
                && error.constraint() == Some("dashflow_checkpoints_pkey") =>
        {
            tracing::debug!(
                thread_id = %record.thread_id,
                checkpoint_id = %record.checkpoint_id,
                "refused a put of a checkpoint id that is already stored"
            );
            return Err(Error::Conflict {
                thread_id: record.thread_id.clone(),
                namespace: record.namespace.clone(),
                expected: spell(expected.map(CheckpointId::as_str)),
                actual: format!("checkpoint {} stored already", record.checkpoint_id),
            });
        }
        Err(error) => return Err(error),
    };
    if changed == 1 {
        return Ok(Put::Stored);
    }
    // Nothing was written. An earlier try whose commit was not acknowledged may have stored
    // this very record: that is a success, whatever the fence or the head say now.
    if attempt == Try::Again && stored_record(conn, record).await?.as_ref() == Some(record) {
        return Ok(Put::Stored);
    }
    if let Err(fenced_out) = fenced.check(fence, &record.thread_id, &record.namespace) {
        return Ok(Put::Refused(fenced_out));
    }
    // The head was not `expected`, or the id is stored already (a stored checkpoint is never
    // overwritten: the same id twice means two writers). Read after the fact, on the slow
    // path only: the statement's own snapshot may predate the put that moved the head.
    let actual: Option<String> = sqlx::query_scalar(sql::HEAD)
        .bind(&record.thread_id)
        .bind(&record.namespace)
        .fetch_optional(&mut *conn)
        .await
        .map_err(Error::statement(PUT))?;
    Ok(Put::Refused(Error::Conflict {
        thread_id: record.thread_id.clone(),
        namespace: record.namespace.clone(),
        expected: spell(expected.map(CheckpointId::as_str)),
        actual: spell(actual.as_deref()),
    }))
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
        let fenced = self.fenced(&record.thread_id, &record.namespace)?;
        let values = PutValues::new(&record)?;
        // A put shares a statement and a commit with the puts of other threads waiting
        // meanwhile (see `group`).
        let job = Arc::new(PutJob {
            record,
            values,
            expected: expected_head.cloned(),
            writes: Arc::clone(fenced.writes),
            epoch: fenced.epoch,
        });
        let after = match self.group.put(Arc::clone(&job)).await {
            Reply::Done(result) => return result.map_err(Into::into),
            Reply::Alone { after } => after,
        };
        let (record, values) = (&job.record, &job.values);
        // Idempotent through `Try::Again`: a retry after an unacknowledged commit finds its
        // own record and succeeds instead of reporting a conflict with itself.
        self.retry
            .run_after(after, PUT, Idempotence::Idempotent, |attempt| async move {
                let mut conn = self.acquire(PUT).await?;
                let attempt = if attempt > 1 { Try::Again } else { Try::First };
                put_on(&mut conn, fenced, record, values, expected_head, attempt).await?.into_result()
            })
            .await
            .map_err(Into::into)
    }

    async fn put_batch(&self, mut records: Vec<(CheckpointRecord, Option<CheckpointId>)>) -> Result<()> {
        // One transaction, one commit. A refused put stops the batch and commits the puts
        // before it, as the trait asks; a fenced batch holds the fence (`FOR SHARE`) from its
        // first put to its commit, so only its first put can find the epoch moved.
        if records.len() <= 1 {
            // A lone record (what an `Async` writer that keeps up hands over) is a put, and
            // joins the puts of other runs waiting on this pool.
            return match records.pop() {
                Some((record, expected)) => self.put(record, expected.as_ref()).await,
                None => Ok(()),
            };
        }
        let fenced = records
            .iter()
            .map(|(record, _)| self.fenced(&record.thread_id, &record.namespace))
            .collect::<Result<Vec<_>, _>>()?;
        let values = records.iter().map(|(record, _)| PutValues::new(record)).collect::<Result<Vec<_>, _>>()?;
        // A chain (what a run's `Async` writer hands over) goes in one statement; whatever it
        // does not store goes the long way below, which reports what each put did.
        let chain = match put_chain(self, fenced[0], &records, &values).await {
            Chain::Stored => return Ok(()),
            Chain::NotStored => Try::First,
            Chain::InDoubt => Try::Again,
        };
        let (fenced, records, values) = (&fenced, &records, &values);
        self.retry
            .run(PUT_BATCH, Idempotence::Idempotent, |attempt| async move {
                let mut conn = self.acquire(PUT_BATCH).await?;
                // A retry may follow a commit that was not acknowledged: each put then finds its
                // own record, and the batch goes on after it.
                let attempt = if attempt > 1 { Try::Again } else { chain };
                let mut tx = conn.begin().await.map_err(Error::acquire(PUT_BATCH))?;
                for (((record, expected), values), fenced) in records.iter().zip(values).zip(fenced) {
                    if let Put::Refused(error) =
                        put_on(&mut tx, *fenced, record, values, expected.as_ref(), attempt).await?
                    {
                        tx.commit().await.map_err(Error::statement(PUT_BATCH))?;
                        return Err(error);
                    }
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
        let fenced = self.fenced(thread_id, namespace)?;
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
                let query = write_query(&fenced.writes.put_writes)
                    .bind(thread_id)
                    .bind(namespace)
                    .bind(checkpoint_id.as_str())
                    .bind(task_ids)
                    .bind(nodes)
                    .bind(blobs);
                let (fence, _) = written(fenced.bind(query), &mut conn).await.map_err(Error::statement(PUT_WRITES))?;
                fenced.check(fence, thread_id, namespace)
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
        if id.is_none() && namespace.is_empty() && self.known_empty(thread_id) {
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
        let fenced = self.fenced_thread(thread_id, "delete_thread")?;
        if thread_id.contains('\0') {
            return Ok(());
        }
        // Deleting what is already gone changes nothing: idempotent.
        self.retry
            .run(DELETE_THREAD, Idempotence::Idempotent, |_| async move {
                let mut conn = self.acquire(DELETE_THREAD).await?;
                let mut tx = conn.begin().await.map_err(Error::acquire(DELETE_THREAD))?;
                fenced.hold(&mut tx, thread_id, DELETE_THREAD).await?;
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

    /// Guarded, it copies into the guard's thread only, fenced like a put (the source is only
    /// read, so it may be any thread).
    async fn copy_thread(&self, from: &str, to: &str) -> Result<()> {
        let fenced = self.fenced_thread(to, "copy_thread")?;
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
                fenced.hold(&mut tx, to, COPY_THREAD).await?;
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
        let fenced = self.fenced(thread_id, namespace)?;
        // One statement, so all or nothing; retried only when certainly rolled back, so that
        // the count stays true.
        let deleted = self
            .retry
            .run(DELETE_BEFORE, Idempotence::Once, |_| async move {
                let mut conn = self.acquire(DELETE_BEFORE).await?;
                let query =
                    write_query(&fenced.writes.delete_before).bind(thread_id).bind(namespace).bind(keep_from.as_str());
                let (fence, deleted) =
                    written(fenced.bind(query), &mut conn).await.map_err(Error::statement(DELETE_BEFORE))?;
                fenced.check(fence, thread_id, namespace)?;
                Ok(deleted)
            })
            .await?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }

    async fn delete_namespace(&self, thread_id: &str, namespace: &str) -> Result<u64> {
        if thread_id.contains('\0') || namespace.contains('\0') {
            return Ok(0);
        }
        let fenced = self.fenced(thread_id, namespace)?;
        // One statement, so all or nothing; retried only when certainly rolled back, so that
        // the count stays true.
        let deleted = self
            .retry
            .run(DELETE_NAMESPACE, Idempotence::Once, |_| async move {
                let mut conn = self.acquire(DELETE_NAMESPACE).await?;
                let query = write_query(&fenced.writes.delete_namespace).bind(thread_id).bind(namespace);
                let (fence, deleted) =
                    written(fenced.bind(query), &mut conn).await.map_err(Error::statement(DELETE_NAMESPACE))?;
                fenced.check(fence, thread_id, namespace)?;
                Ok(deleted)
            })
            .await?;
        Ok(u64::try_from(deleted).unwrap_or(0))
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
        let fenced = self.fenced(thread_id, namespace)?;
        let blob = &blob;
        // Writing the same snapshot again changes nothing: safe to retry.
        let changed = self
            .retry
            .run(REWRITE, Idempotence::Idempotent, |_| async move {
                let mut conn = self.acquire(REWRITE).await?;
                let query = write_query(&fenced.writes.rewrite_as_snapshot)
                    .bind(thread_id)
                    .bind(namespace)
                    .bind(id.as_str())
                    .bind(blob.as_slice());
                let (fence, changed) =
                    written(fenced.bind(query), &mut conn).await.map_err(Error::statement(REWRITE))?;
                fenced.check(fence, thread_id, namespace)?;
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
        let stored = || self.stored_schemas.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if stored().contains(&fingerprint) {
            return Ok(());
        }
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
            .await?;
        stored().insert(fingerprint);
        Ok(())
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

    /// Guarded, it is refused (`OutsideFence`): it would delete threads the guard does not
    /// cover.
    async fn delete_idle_threads(&self, cutoff_ms: i64) -> Result<Vec<String>> {
        if let Some(guard) = &self.guard {
            return Err(CheckpointError::OutsideFence {
                operation: "delete_idle_threads",
                target: "idle threads".to_owned(),
                fenced_thread: guard.thread_id().to_owned(),
            });
        }
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
