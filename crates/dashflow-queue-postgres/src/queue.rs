//! [`PostgresRunQueue`]: the [`RunQueue`] trait on PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use dashflow_checkpoint::Checkpointer;
use dashflow_checkpoint_postgres::__private::assuming_an_empty_thread;
use dashflow_checkpoint_postgres::PostgresCheckpointer;
use dashflow_queue::{
    ClaimedRun, Finish, GraphKey, HeartbeatReply, Lease, NewRun, Priority, QueueError, QueueStat, Result, RunFilter,
    RunKind, RunQueue, RunRecord, RunState, RunStreams, SweepReport, Timings, Wakeups, WorkerInfo, WorkerRecord,
    WorkerState,
};
use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row};

use crate::error::{corrupt, unavailable};
use crate::events::PgRunStreams;
use crate::finish::{FINISH, FinishJob, Finisher, Reply as FinishReply, finish_one};
use crate::guard::LeaseGuard;
use crate::notify::{Note, Notifier};
use crate::submit::{Reply as SubmitReply, SubmitJob, Submitter, submit_one};
use crate::{migrate, sql};

/// The run queue in PostgreSQL, in the same database and schema as the checkpoints it fences.
///
/// Cloning is cheap and shares the pool. Each worker's heartbeats go over a connection of
/// their own, never the pool, so a busy pool never looks like a dead worker; that connection
/// also holds the worker's session lock, whose disappearance tells the sweeper at once that a
/// killed worker's socket closed.
#[derive(Clone, Debug)]
pub struct PostgresRunQueue {
    checkpointer: PostgresCheckpointer,
    /// Dedicated heartbeat connections by worker id, taken out while in use.
    heartbeats: Arc<Mutex<HashMap<String, PgConnection>>>,
    /// Sends the notifications of submits, finishes and appends together.
    notifier: Arc<Notifier>,
    /// Makes the submits of concurrent callers in groups.
    submitter: Arc<Submitter>,
    /// Makes the finishes of concurrent runs in groups.
    finisher: Arc<Finisher>,
    /// The runs' event streams, whose appends go in groups too.
    streams: Arc<PgRunStreams>,
    /// Leases (run and epoch) this process claimed as a run's first claim on a thread without
    /// a checkpoint, until their fenced checkpointer is made (it then reads no checkpoint at
    /// the run's start) or the run is let go.
    empty_threads: Arc<Mutex<HashSet<(String, i64)>>>,
}

impl PostgresRunQueue {
    /// The queue next to `checkpointer`'s tables, on its pool; migrates the queue's schema.
    pub async fn new(checkpointer: PostgresCheckpointer) -> Result<Self> {
        let mut conn = checkpointer.pool().acquire().await.map_err(unavailable("migrate the run queue schema"))?;
        migrate::migrate(&mut conn).await?;
        let notifier = Notifier::new(checkpointer.pool().clone());
        let submitter = Submitter::new(checkpointer.pool().clone(), Arc::clone(&notifier));
        let finisher = Arc::new(Finisher::new(checkpointer.pool().clone(), Arc::clone(&notifier)));
        let streams = Arc::new(PgRunStreams::new(checkpointer.pool().clone(), Arc::clone(&notifier)));
        Ok(Self {
            checkpointer,
            heartbeats: Arc::default(),
            notifier,
            submitter,
            finisher,
            streams,
            empty_threads: Arc::default(),
        })
    }

    /// Whether `lease` was a first claim on a thread without a checkpoint; forgets it.
    fn forget_empty_thread(&self, lease: &Lease) -> bool {
        let mut empty = self.empty_threads.lock().unwrap_or_else(PoisonError::into_inner);
        !empty.is_empty() && empty.remove(&(lease.run_id.clone(), lease.epoch))
    }

    /// Connects to `url`, migrates the checkpoint and queue schemas.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::new(PostgresCheckpointer::connect(url).await?).await
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        self.checkpointer.pool()
    }

    /// The schema version this build writes.
    pub fn schema_version() -> i64 {
        migrate::LATEST
    }

    /// The unfenced checkpointer, as its concrete type.
    pub fn postgres_checkpointer(&self) -> &PostgresCheckpointer {
        &self.checkpointer
    }

    /// Closes worker `worker_id`'s heartbeat connection, and with it its session lock; the
    /// next heartbeat opens a new one. What a network fault does to that connection.
    pub async fn close_heartbeat_session(&self, worker_id: &str) {
        let kept = self.heartbeats.lock().unwrap_or_else(PoisonError::into_inner).remove(worker_id);
        if let Some(conn) = kept {
            let _closed = conn.close().await;
        }
    }

    async fn conn(&self, operation: &'static str) -> Result<sqlx::pool::PoolConnection<Postgres>> {
        self.pool().acquire().await.map_err(unavailable(operation))
    }

    /// The worker's heartbeat connection, connected (and its session lock taken) if needed.
    async fn heartbeat_conn(&self, worker_id: &str) -> Result<PgConnection> {
        let kept = self.heartbeats.lock().unwrap_or_else(PoisonError::into_inner).remove(worker_id);
        if let Some(conn) = kept {
            return Ok(conn);
        }
        let options = self.pool().connect_options();
        let mut conn = PgConnection::connect_with(&options).await.map_err(unavailable(HEARTBEAT))?;
        // Best effort: without the lock the sweeper takes the slower lease path for this worker.
        let locked: Option<bool> = sqlx::query_scalar(sql::TAKE_WORKER_LOCK)
            .bind(sql::WORKER_LOCK)
            .bind(worker_id)
            .fetch_optional(&mut conn)
            .await
            .map_err(unavailable(HEARTBEAT))?;
        if locked != Some(true) {
            tracing::debug!(worker_id, "the worker's heartbeat session could not take its session lock");
        }
        Ok(conn)
    }
}

const SUBMIT: &str = "submit a run";
const REGISTER: &str = "register a worker";
const STOP: &str = "stop a worker";
const HEARTBEAT: &str = "heartbeat";
const CLAIM: &str = "claim runs";
const RELEASE: &str = "release a run";
const GIVE_UP: &str = "give up a stuck run";
const CANCEL: &str = "cancel a run";
const RETRY: &str = "retry a run";
const SWEEP: &str = "sweep dead workers";
const READ: &str = "read the run queue";

fn parse_state(text: &str) -> Result<RunState> {
    RunState::parse(text).ok_or_else(|| corrupt(format!("unknown run state `{text}`")))
}

fn column<'r, T>(row: &'r PgRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name).map_err(|error| corrupt(format!("column `{name}`: {error}")))
}

fn run_from_row(row: &PgRow) -> Result<RunRecord> {
    let graph_key: String = column(row, "graph_key")?;
    let kind: String = column(row, "kind")?;
    Ok(RunRecord {
        run_id: column(row, "run_id")?,
        queue: column(row, "queue")?,
        graph_key: GraphKey::parse(&graph_key).ok_or_else(|| corrupt(format!("graph key `{graph_key}`")))?,
        thread_id: column(row, "thread_id")?,
        tenant: column(row, "tenant")?,
        priority: Priority::from_level(column(row, "priority")?),
        state: parse_state(&column::<String>(row, "state")?)?,
        kind: RunKind::parse(&kind).ok_or_else(|| corrupt(format!("unknown run kind `{kind}`")))?,
        attempt: column(row, "attempt")?,
        worker_id: column(row, "worker_id")?,
        lease_epoch: column(row, "lease_epoch")?,
        cancel_requested: column(row, "cancel_requested")?,
        checkpoint_id: column(row, "checkpoint_id")?,
        error: column(row, "error")?,
        created_at_ms: column(row, "created_at_ms")?,
        started_at_ms: column(row, "started_at_ms")?,
        finished_at_ms: column(row, "finished_at_ms")?,
    })
}

fn claimed_from_row(row: &PgRow, worker_id: &str) -> Result<ClaimedRun> {
    let graph_key: String = column(row, "graph_key")?;
    let kind: String = column(row, "kind")?;
    let config: String = column(row, "config")?;
    let input: Option<Vec<u8>> = column(row, "input")?;
    Ok(ClaimedRun {
        lease: Lease {
            run_id: column(row, "run_id")?,
            thread_id: column(row, "thread_id")?,
            worker_id: worker_id.to_owned(),
            epoch: column(row, "lease_epoch")?,
        },
        graph_key: GraphKey::parse(&graph_key).ok_or_else(|| corrupt(format!("graph key `{graph_key}`")))?,
        kind: RunKind::parse(&kind).ok_or_else(|| corrupt(format!("unknown run kind `{kind}`")))?,
        input: input.unwrap_or_default(),
        config: serde_json::from_str(&config).map_err(|error| corrupt(format!("run config: {error}")))?,
        attempt: column(row, "attempt")?,
        first_claim: column(row, "first_claim")?,
        queue: column(row, "queue")?,
        tenant: column(row, "tenant")?,
        waited: Duration::from_millis(u64::try_from(column::<i64>(row, "waited_ms")?).unwrap_or(0)),
    })
}

/// Takes the thread's advisory lock for the rest of the transaction on `conn`: ends, releases
/// and cancels of one thread's runs go one at a time.
async fn lock_thread(conn: &mut PgConnection, thread_id: &str, operation: &'static str) -> Result<()> {
    sqlx::query(sql::LOCK_THREAD)
        .bind(sql::THREAD_LOCK)
        .bind(thread_id)
        .execute(conn)
        .await
        .map(drop)
        .map_err(unavailable(operation))
}

/// Moves the thread's fence past `lease`'s epoch, so that nothing written under it lands.
async fn bump_fence(conn: &mut PgConnection, lease: &Lease, operation: &'static str) -> Result<()> {
    sqlx::query(sql::BUMP_FENCE)
        .bind(&lease.thread_id)
        .bind(lease.epoch)
        .execute(conn)
        .await
        .map(drop)
        .map_err(unavailable(operation))
}

/// In a release's or give-up's transaction, once it left the run in `state`: a run that
/// ended (cancelled, or failed at its last attempt) frees its thread, whose oldest pending run
/// is promoted; whether one was.
async fn promote_if_ended(
    conn: &mut PgConnection,
    lease: &Lease,
    state: RunState,
    operation: &'static str,
) -> Result<bool> {
    if !state.is_terminal() {
        return Ok(false);
    }
    let promoted =
        sqlx::query(sql::PROMOTE).bind(&lease.thread_id).execute(conn).await.map_err(unavailable(operation))?;
    Ok(promoted.rows_affected() > 0)
}

/// What a release or give-up announces after its commit: an ended run is done (as a finish
/// announces it), a run queued again (or promoted) is work.
fn announcement(lease: &Lease, state: RunState, promoted: bool) -> Vec<Note> {
    match (state.is_terminal(), promoted) {
        (true, false) => vec![Note::Done(lease.run_id.clone())],
        (true, true) => vec![Note::Done(lease.run_id.clone()), Note::Wake],
        (false, _) => vec![Note::Wake],
    }
}

fn lease_lost(lease: &Lease, why: &str) -> QueueError {
    QueueError::LeaseLost { run_id: lease.run_id.clone(), epoch: lease.epoch, why: why.to_owned() }
}

#[async_trait]
impl RunQueue for PostgresRunQueue {
    async fn submit(&self, run: NewRun) -> Result<RunState> {
        run.validate()?;
        let config = serde_json::to_string(&run.config).map_err(|error| QueueError::Invalid {
            what: "run config",
            detail: format!("cannot be written as JSON: {error}"),
        })?;
        // Made with the submits of other threads waiting meanwhile (see `submit`), or alone:
        // the start tag first, in a transaction that holds the tenant's clock for moments; then
        // the submit, under the thread's lock, in one round trip.
        let job = Arc::new(SubmitJob { run, config });
        if let SubmitReply::Done(outcome) = self.submitter.submit(Arc::clone(&job)).await {
            return outcome;
        }
        let mut conn = self.conn(SUBMIT).await?;
        let (state, queued) = submit_one(&mut conn, &job).await?;
        if queued {
            drop(conn);
            self.notifier.send(vec![Note::Wake]).await;
        }
        Ok(state)
    }

    async fn register_worker(&self, worker: &WorkerInfo) -> Result<()> {
        worker.validate()?;
        let keys: Vec<&str> = worker.graph_keys.iter().map(GraphKey::as_str).collect();
        let mut conn = self.conn(REGISTER).await?;
        sqlx::query(sql::REGISTER)
            .bind(&worker.worker_id)
            .bind(&worker.host)
            .bind(worker.pid)
            .bind(&worker.version)
            .bind(&worker.queues)
            .bind(&keys)
            .bind(worker.slots)
            .execute(&mut *conn)
            .await
            .map_err(unavailable(REGISTER))?;
        Ok(())
    }

    async fn stop_worker(&self, worker_id: &str) -> Result<()> {
        let mut conn = self.conn(STOP).await?;
        sqlx::query(sql::STOP_WORKER).bind(worker_id).execute(&mut *conn).await.map_err(unavailable(STOP))?;
        // Closing the heartbeat session releases the session lock.
        let kept = self.heartbeats.lock().unwrap_or_else(PoisonError::into_inner).remove(worker_id);
        if let Some(conn) = kept {
            let _closed = conn.close().await;
        }
        Ok(())
    }

    async fn heartbeat(&self, worker_id: &str, runs: &[Lease], timings: &Timings) -> Result<HeartbeatReply> {
        let mut conn = self.heartbeat_conn(worker_id).await?;
        let run_ids: Vec<&str> = runs.iter().map(|lease| lease.run_id.as_str()).collect();
        let epochs: Vec<i64> = runs.iter().map(|lease| lease.epoch).collect();
        // A failed heartbeat drops its connection (not put back): the next one reconnects.
        let rows = sqlx::query(sql::HEARTBEAT)
            .bind(worker_id)
            .bind(timings.lease.as_secs_f64())
            .bind(&run_ids)
            .bind(&epochs)
            .fetch_all(&mut conn)
            .await
            .map_err(unavailable(HEARTBEAT))?;
        self.heartbeats.lock().unwrap_or_else(PoisonError::into_inner).insert(worker_id.to_owned(), conn);
        let mut reply = HeartbeatReply::default();
        for row in &rows {
            reply.alive = column::<i64>(row, "alive")? > 0;
            reply.draining = column(row, "draining")?;
            let Some(run_id) = column::<Option<String>>(row, "run_id")? else { continue };
            if column::<bool>(row, "ended")? {
                reply.ended.push(run_id);
            } else if !column::<bool>(row, "held")? {
                reply.lost.push(run_id);
            } else if column::<bool>(row, "cancel")? {
                reply.cancel.push(run_id);
            }
        }
        Ok(reply)
    }

    async fn claim(
        &self,
        worker_id: &str,
        queues: &[String],
        graphs: &[GraphKey],
        limit: usize,
    ) -> Result<Vec<ClaimedRun>> {
        if limit == 0 || graphs.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = graphs.iter().map(GraphKey::as_str).collect();
        let mut conn = self.conn(CLAIM).await?;
        let rows = sqlx::query(sql::CLAIM)
            .bind(worker_id)
            .bind(queues)
            .bind(&keys)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *conn)
            .await
            .map_err(unavailable(CLAIM))?;
        let claimed = rows.iter().map(|row| claimed_from_row(row, worker_id)).collect::<Result<Vec<_>>>()?;
        let empty: Vec<(String, i64)> = rows
            .iter()
            .zip(&claimed)
            .filter(|(row, _)| row.try_get::<bool, _>("empty_thread").unwrap_or(false))
            .map(|(_, run)| (run.lease.run_id.clone(), run.lease.epoch))
            .collect();
        if !empty.is_empty() {
            self.empty_threads.lock().unwrap_or_else(PoisonError::into_inner).extend(empty);
        }
        Ok(claimed)
    }

    async fn finish(&self, lease: &Lease, finish: Finish) -> Result<()> {
        if !finish.state.is_terminal() {
            return Err(QueueError::Invalid {
                what: "finish state",
                detail: format!("`{}` is not a terminal state", finish.state),
            });
        }
        self.forget_empty_thread(lease);
        let job = Arc::new(FinishJob { lease: lease.clone(), finish });
        if let FinishReply::Done(result) = self.finisher.finish(Arc::clone(&job)).await {
            return result;
        }
        let mut conn = self.conn(FINISH).await?;
        let ended = finish_one(&mut conn, &job).await?;
        drop(conn);
        let notes = ended.notes(&job);
        if !notes.is_empty() {
            self.notifier.send(notes).await;
        }
        ended.result(&job)
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<()> {
        self.forget_empty_thread(lease);
        let mut conn = self.conn(RELEASE).await?;
        let mut tx = conn.begin().await.map_err(unavailable(RELEASE))?;
        lock_thread(&mut tx, &lease.thread_id, RELEASE).await?;
        let state: Option<String> = sqlx::query_scalar(sql::RELEASE)
            .bind(&lease.run_id)
            .bind(lease.epoch)
            .bind(reason)
            .bind(&lease.thread_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable(RELEASE))?;
        let Some(state) = state else {
            return Err(lease_lost(lease, "the run was claimed, swept or cancelled since"));
        };
        let state = parse_state(&state)?;
        bump_fence(&mut tx, lease, RELEASE).await?;
        let promoted = promote_if_ended(&mut tx, lease, state, RELEASE).await?;
        tx.commit().await.map_err(unavailable(RELEASE))?;
        drop(conn);
        self.notifier.send(announcement(lease, state, promoted)).await;
        Ok(())
    }

    async fn give_up(&self, lease: &Lease, reason: &str) -> Result<RunState> {
        self.forget_empty_thread(lease);
        let mut conn = self.conn(GIVE_UP).await?;
        let mut tx = conn.begin().await.map_err(unavailable(GIVE_UP))?;
        lock_thread(&mut tx, &lease.thread_id, GIVE_UP).await?;
        let state: Option<String> = sqlx::query_scalar(sql::GIVE_UP)
            .bind(&lease.run_id)
            .bind(lease.epoch)
            .bind(reason)
            .bind(&lease.thread_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable(GIVE_UP))?;
        let Some(state) = state else {
            return Err(lease_lost(lease, "the run was claimed, swept, released or cancelled since"));
        };
        let state = parse_state(&state)?;
        bump_fence(&mut tx, lease, GIVE_UP).await?;
        let promoted = promote_if_ended(&mut tx, lease, state, GIVE_UP).await?;
        tx.commit().await.map_err(unavailable(GIVE_UP))?;
        drop(conn);
        self.notifier.send(announcement(lease, state, promoted)).await;
        Ok(state)
    }

    async fn cancel(&self, run_id: &str) -> Result<RunState> {
        let Some(run) = self.get(run_id).await? else {
            return Err(QueueError::NotFound { what: format!("run {run_id}") });
        };
        if run.state.is_terminal() {
            return Ok(run.state);
        }
        let mut conn = self.conn(CANCEL).await?;
        let mut tx = conn.begin().await.map_err(unavailable(CANCEL))?;
        lock_thread(&mut tx, &run.thread_id, CANCEL).await?;
        let waiting =
            sqlx::query(sql::CANCEL_WAITING).bind(run_id).execute(&mut *tx).await.map_err(unavailable(CANCEL))?;
        let ended = if waiting.rows_affected() > 0 {
            let promoted = sqlx::query(sql::PROMOTE)
                .bind(&run.thread_id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable(CANCEL))?
                .rows_affected();
            Some(promoted > 0)
        } else {
            sqlx::query(sql::CANCEL_RUNNING).bind(run_id).execute(&mut *tx).await.map_err(unavailable(CANCEL))?;
            None
        };
        tx.commit().await.map_err(unavailable(CANCEL))?;
        drop(conn);
        if let Some(promoted) = ended {
            let done = Note::Done(run_id.to_owned());
            self.notifier.send(if promoted { vec![done, Note::Wake] } else { vec![done] }).await;
        }
        Ok(self.get(run_id).await?.map_or(RunState::Cancelled, |run| run.state))
    }

    async fn retry(&self, run_id: &str, attempts: i32) -> Result<RunState> {
        let Some(run) = self.get(run_id).await? else {
            return Err(QueueError::NotFound { what: format!("run {run_id}") });
        };
        run.retryable(attempts)?;
        let mut conn = self.conn(RETRY).await?;
        let mut tx = conn.begin().await.map_err(unavailable(RETRY))?;
        lock_thread(&mut tx, &run.thread_id, RETRY).await?;
        let later: Option<String> = sqlx::query_scalar(sql::LATER_RUN)
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable(RETRY))?;
        if let Some(later) = later {
            return Err(QueueError::moved_on(run_id, &later, &run.thread_id));
        }
        let queued = sqlx::query(sql::RETRY)
            .bind(run_id)
            .bind(attempts)
            .execute(&mut *tx)
            .await
            .map_err(unavailable(RETRY))?
            .rows_affected();
        if queued == 0 {
            let why = "it changed while it was being retried; look at it again".to_owned();
            return Err(QueueError::NotRetryable { run_id: run_id.to_owned(), why });
        }
        tx.commit().await.map_err(unavailable(RETRY))?;
        drop(conn);
        self.notifier.send(vec![Note::Wake]).await;
        Ok(RunState::Queued)
    }

    async fn sweep(&self, timings: &Timings) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        let mut conn = self.conn(SWEEP).await?;
        let mut tx = conn.begin().await.map_err(unavailable(SWEEP))?;
        let locked: bool = sqlx::query_scalar(sql::TRY_SWEEP_LOCK)
            .bind(sql::SWEEP_LOCK)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable(SWEEP))?;
        if !locked {
            return Ok(report);
        }
        report.swept = true;
        // The backoff after a lost attempt scales with the heartbeat: about one beat to a
        // second by default, a few milliseconds in tests.
        let backoff_unit = (timings.heartbeat.as_secs_f64() / 2.0).min(1.0);
        let rows = sqlx::query(sql::SWEEP)
            .bind(timings.lease.as_secs_f64())
            .bind(timings.heartbeat.as_secs_f64())
            .bind(sql::WORKER_LOCK)
            .bind(backoff_unit)
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable(SWEEP))?;
        for row in &rows {
            let what: String = column(row, "what")?;
            let id: String = column(row, "id")?;
            if what == "worker" {
                report.workers_stopped.push(id);
            } else {
                report.runs.push((id, parse_state(&column::<String>(row, "state")?)?));
            }
        }
        tx.commit().await.map_err(unavailable(SWEEP))?;
        let mut notes = Vec::new();
        if report.runs.iter().any(|(_, state)| *state == RunState::Queued) {
            notes.push(Note::Wake);
        }
        // Runs the sweep ended (failed, cancelled) are done, as after a finish; their threads'
        // pending runs are promoted below, which wakes the workers.
        for (run_id, _) in report.runs.iter().filter(|(_, state)| state.is_terminal()) {
            notes.push(Note::Done(run_id.clone()));
        }
        if !report.workers_stopped.is_empty() {
            tracing::info!(workers = ?report.workers_stopped, runs = ?report.runs, "swept dead workers");
        }
        // Apart, so that a race with a submit (a unique violation) cannot undo the reclaim.
        report.promoted =
            sqlx::query(sql::PROMOTE_ALL).execute(&mut *conn).await.map(|done| done.rows_affected()).unwrap_or_else(
                |error| {
                    tracing::debug!(%error, "promoting pending runs failed; the next sweep tries again");
                    0
                },
            );
        drop(conn);
        if report.promoted > 0 {
            notes.push(Note::Wake);
        }
        if !notes.is_empty() {
            self.notifier.send(notes).await;
        }
        Ok(report)
    }

    async fn get(&self, run_id: &str) -> Result<Option<RunRecord>> {
        if run_id.contains('\0') {
            return Ok(None);
        }
        let mut conn = self.conn(READ).await?;
        let row = sqlx::query(sql::GET).bind(run_id).fetch_optional(&mut *conn).await.map_err(unavailable(READ))?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let limit = i64::try_from(filter.limit.unwrap_or(100)).unwrap_or(i64::MAX);
        let mut conn = self.conn(READ).await?;
        let rows = sqlx::query(sql::LIST)
            .bind(filter.state.map(RunState::as_str))
            .bind(filter.thread_id.as_deref())
            .bind(limit)
            .fetch_all(&mut *conn)
            .await
            .map_err(unavailable(READ))?;
        rows.iter().map(run_from_row).collect()
    }

    async fn stats(&self) -> Result<Vec<QueueStat>> {
        let mut conn = self.conn(READ).await?;
        let rows = sqlx::query(sql::STATS).fetch_all(&mut *conn).await.map_err(unavailable(READ))?;
        rows.iter()
            .map(|row| {
                Ok(QueueStat {
                    queue: column(row, "queue")?,
                    priority: Priority::from_level(column(row, "priority")?),
                    state: parse_state(&column::<String>(row, "state")?)?,
                    count: column(row, "count")?,
                    oldest_wait_ms: column(row, "oldest_wait_ms")?,
                })
            })
            .collect()
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>> {
        let mut conn = self.conn(READ).await?;
        let rows = sqlx::query(sql::WORKERS).fetch_all(&mut *conn).await.map_err(unavailable(READ))?;
        rows.iter()
            .map(|row| {
                let keys: Vec<String> = column(row, "graph_keys")?;
                let graph_keys = keys
                    .iter()
                    .map(|key| GraphKey::parse(key).ok_or_else(|| corrupt(format!("graph key `{key}`"))))
                    .collect::<Result<Vec<_>>>()?;
                let info = WorkerInfo::new(
                    column::<String>(row, "worker_id")?,
                    column::<String>(row, "host")?,
                    column(row, "pid")?,
                    column(row, "queues")?,
                    graph_keys,
                    column(row, "slots")?,
                )
                .version(column::<String>(row, "version")?);
                let state = if column(row, "stopped")? {
                    WorkerState::Stopped
                } else if column(row, "draining")? {
                    WorkerState::Draining
                } else if column(row, "expired")? {
                    WorkerState::Stale
                } else {
                    WorkerState::Live
                };
                Ok(WorkerRecord {
                    info,
                    running: column(row, "running")?,
                    heartbeat_age_ms: column(row, "heartbeat_age_ms")?,
                    state,
                })
            })
            .collect()
    }

    fn fenced_checkpointer(&self, lease: &Lease) -> Arc<dyn Checkpointer> {
        let guard = LeaseGuard { thread_id: lease.thread_id.clone(), epoch: lease.epoch };
        let checkpointer = self.checkpointer.guarded(guard.write_guard());
        if self.forget_empty_thread(lease) {
            return Arc::new(assuming_an_empty_thread(checkpointer));
        }
        Arc::new(checkpointer)
    }

    fn checkpointer(&self) -> Arc<dyn Checkpointer> {
        Arc::new(self.checkpointer.clone())
    }

    async fn wakeups(&self) -> Result<Option<Box<dyn Wakeups>>> {
        const LISTEN: &str = "listen for wake-ups";
        let mut conn = self.conn(LISTEN).await?;
        let schema: String =
            sqlx::query_scalar(sql::SCHEMA).fetch_one(&mut *conn).await.map_err(unavailable(LISTEN))?;
        drop(conn);
        let wakeups = crate::listen::listen(self.pool(), schema).await.map_err(unavailable(LISTEN))?;
        Ok(Some(Box::new(wakeups)))
    }

    fn streams(&self) -> Option<Arc<dyn RunStreams>> {
        Some(Arc::clone(&self.streams) as Arc<dyn RunStreams>)
    }
}
