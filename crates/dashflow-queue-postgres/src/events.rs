//! [`PgRunStreams`]: the event streams of runs in `dashflow_run_events`, appended by each
//! run's owner under its fence, read by any process (docs/distributed.md).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashflow_checkpoint_postgres::__private::{self as gather, Gatherer};
use dashflow_queue::{Lease, QueueError, Result, RunStreams, StreamEntry, StreamItem, Wake, Wakeups};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::mpsc;

use crate::error::{corrupt, unavailable};
use crate::grouped;
use crate::notify::{Note, Notifier};

/// Appends a batch after the run's last item as one row, only while the thread's fence epoch
/// is the lease's: one statement, so one implicit transaction. The fence row is read `FOR
/// SHARE`, as a checkpoint write's is: a change of owner waits for an append in flight, and an
/// append after it stores nothing. The numbers come from the stream itself (the last row's
/// first number and count, read backwards through the key), so a new owner continues where the
/// former one stopped. The items are one JSON array stored as the text it is (`json`); the
/// run's ids are the row's columns.
const APPEND: &str = "
WITH fence AS (SELECT epoch FROM dashflow_thread_fences WHERE thread_id = $2 AND epoch = $3 FOR SHARE)
INSERT INTO dashflow_run_events (run_id, seq, n_items, epoch, attempt, steps, payloads)
SELECT $1,
       coalesce((SELECT l.seq + l.n_items FROM dashflow_run_events l WHERE l.run_id = $1 ORDER BY l.seq DESC LIMIT 1), 1),
       cardinality($5::bigint[]), $3, $4, $5, $6::json
FROM fence
RETURNING seq + n_items - 1";

/// [`APPEND`] for the batches of runs of distinct threads in one statement (one commit): the
/// columns as arrays (each batch's steps as the text of an array); a row per batch stored,
/// with its run and last number. The fence rows are read in the order of their threads.
const APPEND_MANY: &str = "
WITH a AS MATERIALIZED (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::int[], $5::text[], $6::text[])
        AS a(run_id, thread_id, epoch, attempt, steps, payloads)),
fence AS MATERIALIZED (
    SELECT f.thread_id, f.epoch FROM dashflow_thread_fences f JOIN a ON f.thread_id = a.thread_id AND f.epoch = a.epoch
    ORDER BY f.thread_id FOR SHARE OF f)
INSERT INTO dashflow_run_events (run_id, seq, n_items, epoch, attempt, steps, payloads)
SELECT a.run_id,
       coalesce((SELECT l.seq + l.n_items FROM dashflow_run_events l WHERE l.run_id = a.run_id ORDER BY l.seq DESC LIMIT 1), 1),
       cardinality(a.steps::bigint[]), a.epoch, a.attempt, a.steps::bigint[], a.payloads::json
FROM a JOIN fence ON fence.thread_id = a.thread_id AND fence.epoch = a.epoch
RETURNING run_id, seq + n_items - 1 AS last";

/// The most batches one statement appends.
const MOST: usize = 64;

/// The rows holding items `$2 ..= $3`: from the row that holds item `$2` (the last row starting
/// at or before it) to the last row starting at or before `$3`. Each comes with the highest
/// step an earlier attempt's items reached, which marks its items of that step or before as
/// `rerun`.
const READ: &str = "
SELECT e.seq, e.n_items, e.epoch, e.attempt, e.steps, e.payloads::text AS payloads,
       (extract(epoch FROM e.at) * 1000)::bigint AS at_ms,
       (SELECT max(s.step) FROM dashflow_run_events p, unnest(p.steps) AS s(step)
        WHERE p.run_id = e.run_id AND p.epoch < e.epoch) AS rerun_through
FROM dashflow_run_events e
WHERE e.run_id = $1
  AND e.seq >= coalesce((SELECT max(f.seq) FROM dashflow_run_events f WHERE f.run_id = $1 AND f.seq <= $2), $2)
  AND e.seq <= $3
ORDER BY e.seq";

/// Streams of runs that ended long enough ago, or whose run row is gone; returns how many
/// items went. It starts from the streams (runs still running or recently ended), never from
/// the runs' whole history: one probe of `dashflow_runs` per stream.
const TRIM: &str = "
WITH gone AS (
    DELETE FROM dashflow_run_events e
    USING (SELECT s.run_id FROM (SELECT DISTINCT run_id FROM dashflow_run_events) s
           WHERE NOT EXISTS (SELECT 1 FROM dashflow_runs r
                             WHERE r.run_id = s.run_id
                               AND (r.finished_at IS NULL OR r.finished_at >= now() - make_interval(secs => $1)))) ended
    WHERE e.run_id = ended.run_id
    RETURNING e.n_items)
SELECT coalesce(sum(n_items), 0)::bigint FROM gone";

/// Sent after the append's commit, never inside it: PostgreSQL commits notifying transactions
/// one at a time, each holding a lock of the whole database until its commit is on disk.
const APPEND_OP: &str = "append to a run's event stream";
const READ_OP: &str = "read a run's event stream";
const TRIM_OP: &str = "trim ended runs' event streams";
const LISTEN_OP: &str = "listen for run events";

/// The run event streams of a [`PostgresRunQueue`](crate::PostgresRunQueue)'s database
/// (its `streams()`). The appends of concurrent runs share statements: the pool's appender
/// task stores every batch waiting (of distinct threads) with one statement and one commit,
/// each under its own run's fence, and announces them together. A group the server refuses
/// is appended again a batch at a time by the callers; one whose connection broke reports that
/// failure to each append, as a lone append would.
#[derive(Clone, Debug)]
pub struct PgRunStreams {
    pool: PgPool,
    notifier: Arc<Notifier>,
    appender: Arc<Gatherer<Arc<AppendJob>, Reply>>,
}

/// A batch to append.
struct AppendJob {
    lease: Lease,
    attempt: i32,
    steps: Vec<Option<i64>>,
    payloads: String,
}

/// How the appender answers an append: the number of the batch's last item, or why not.
type Reply = grouped::Reply<i64>;

type Waiting = gather::Waiting<Arc<AppendJob>, Reply>;

impl PgRunStreams {
    pub(crate) fn new(pool: PgPool, notifier: Arc<Notifier>) -> Self {
        let (appending, announcing) = (pool.clone(), Arc::clone(&notifier));
        let appender = Gatherer::new(take_group, move |group| {
            let (pool, notifier) = (appending.clone(), Arc::clone(&announcing));
            async move { append_group(&pool, &notifier, group).await }
        });
        Self { pool, notifier, appender: Arc::new(appender) }
    }
}

fn lease_lost(lease: &Lease) -> QueueError {
    QueueError::LeaseLost {
        run_id: lease.run_id.clone(),
        epoch: lease.epoch,
        why: "the thread's fence epoch moved on: another worker owns the run's stream".into(),
    }
}

/// Appends `job` alone on `conn`.
async fn append_one(conn: &mut PgConnection, job: &AppendJob) -> Result<i64> {
    let last: Option<i64> = sqlx::query_scalar(APPEND)
        .bind(&job.lease.run_id)
        .bind(&job.lease.thread_id)
        .bind(job.lease.epoch)
        .bind(job.attempt)
        .bind(&job.steps)
        .bind(&job.payloads)
        .fetch_optional(conn)
        .await
        .map_err(unavailable(APPEND_OP))?;
    last.ok_or_else(|| lease_lost(&job.lease))
}

/// The first waiting batch and every later one of another thread, up to [`MOST`], in arrival
/// order; the rest keep their places (a run's batches are stored in the order they came).
fn take_group(waiting: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    gather::take_group(waiting, MOST, |_, _| true, |a, b| a.job.lease.thread_id == b.job.lease.thread_id)
}

async fn append_group(pool: &PgPool, notifier: &Notifier, group: Vec<Waiting>) {
    let Some((group, outcomes)) = grouped::make(
        pool,
        APPEND_OP,
        group,
        async |conn, job: &Arc<AppendJob>| append_one(conn, job).await,
        append_many,
    )
    .await
    else {
        return;
    };
    // Once per batch, and the owner batches. A lost notification is a hint lost: followers
    // poll as well.
    let notes: Vec<Note> = group
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(waiting, _)| Note::Events(waiting.job.lease.run_id.clone()))
        .collect();
    if !notes.is_empty() {
        notifier.send(notes).await;
    }
    for (waiting, outcome) in group.into_iter().zip(outcomes) {
        waiting.answer(Reply::Done(outcome));
    }
}

/// The batches of `group` in one statement: each one's last number, or a lost lease, in the
/// group's order.
async fn append_many(conn: &mut PgConnection, group: &[Waiting]) -> std::result::Result<Vec<Result<i64>>, sqlx::Error> {
    let jobs: Vec<&AppendJob> = group.iter().map(|waiting| &*waiting.job).collect();
    let steps: Vec<String> = jobs.iter().map(|job| array_text(&job.steps)).collect();
    let rows = sqlx::query(APPEND_MANY)
        .bind(jobs.iter().map(|job| job.lease.run_id.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|job| job.lease.thread_id.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|job| job.lease.epoch).collect::<Vec<_>>())
        .bind(jobs.iter().map(|job| job.attempt).collect::<Vec<_>>())
        .bind(&steps)
        .bind(jobs.iter().map(|job| job.payloads.as_str()).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?;
    let mut stored = Vec::with_capacity(rows.len());
    for row in &rows {
        stored.push((row.try_get::<String, _>("run_id")?, row.try_get::<i64, _>("last")?));
    }
    Ok(jobs
        .iter()
        .map(|job| {
            stored
                .iter()
                .find(|(run_id, _)| *run_id == job.lease.run_id)
                .map(|(_, last)| *last)
                .ok_or_else(|| lease_lost(&job.lease))
        })
        .collect())
}

/// `steps` as the text of a PostgreSQL array.
fn array_text(steps: &[Option<i64>]) -> String {
    let items: Vec<String> =
        steps.iter().map(|step| step.map_or_else(|| "NULL".to_owned(), |step| step.to_string())).collect();
    format!("{{{}}}", items.join(","))
}

#[async_trait]
impl RunStreams for PgRunStreams {
    async fn append(&self, lease: &Lease, attempt: i32, entries: &[StreamEntry]) -> Result<i64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let steps: Vec<Option<i64>> = entries.iter().map(|entry| entry.step).collect();
        let job = Arc::new(AppendJob { lease: lease.clone(), attempt, steps, payloads: json_array(entries)? });
        if let Reply::Done(result) = self.appender.call(Arc::clone(&job)).await.unwrap_or(Reply::Alone) {
            return result;
        }
        let mut conn = self.pool.acquire().await.map_err(unavailable(APPEND_OP))?;
        let last = append_one(&mut conn, &job).await?;
        drop(conn);
        self.notifier.send(vec![Note::Events(lease.run_id.clone())]).await;
        Ok(last)
    }

    async fn read(&self, run_id: &str, after_seq: i64, limit: usize) -> Result<Vec<StreamItem>> {
        if run_id.contains('\0') || limit == 0 {
            return Ok(Vec::new());
        }
        // Items are numbered from 1: reading after a negative number reads from the start.
        let after_seq = after_seq.max(0);
        let first = after_seq.saturating_add(1);
        let last = after_seq.saturating_add(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = sqlx::query(READ)
            .bind(run_id)
            .bind(first)
            .bind(last)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable(READ_OP))?;
        let mut items = Vec::with_capacity(limit.min(256));
        for row in &rows {
            let get = |name: &str| corrupt(format!("column `{name}` of dashflow_run_events"));
            let seq: i64 = row.try_get("seq").map_err(|_| get("seq"))?;
            let count: i32 = row.try_get("n_items").map_err(|_| get("n_items"))?;
            let epoch: i64 = row.try_get("epoch").map_err(|_| get("epoch"))?;
            let attempt: i32 = row.try_get("attempt").map_err(|_| get("attempt"))?;
            let at_ms: i64 = row.try_get("at_ms").map_err(|_| get("at_ms"))?;
            let rerun_through: Option<i64> = row.try_get("rerun_through").map_err(|_| get("rerun_through"))?;
            let steps: Vec<Option<i64>> = row.try_get("steps").map_err(|_| get("steps"))?;
            let payloads: String = row.try_get("payloads").map_err(|_| get("payloads"))?;
            let payloads: Vec<serde_json::Value> = serde_json::from_str(&payloads)
                .map_err(|error| corrupt(format!("the stream items of run {run_id} from {seq}: {error}")))?;
            if usize::try_from(count).ok() != Some(payloads.len()) || steps.len() != payloads.len() {
                return Err(corrupt(format!(
                    "the stream row of run {run_id} from item {seq} says {count} items but holds {} with {} steps",
                    payloads.len(),
                    steps.len()
                )));
            }
            for ((item_seq, step), payload) in (seq..).zip(steps).zip(payloads) {
                if item_seq < first {
                    continue;
                }
                if items.len() == limit {
                    return Ok(items);
                }
                items.push(StreamItem {
                    seq: item_seq,
                    epoch,
                    attempt,
                    step,
                    rerun: step.zip(rerun_through).is_some_and(|(step, through)| step <= through),
                    at_ms,
                    payload,
                });
            }
        }
        Ok(items)
    }

    async fn trim(&self, ended_before: Duration) -> Result<u64> {
        let items: i64 = sqlx::query_scalar(TRIM)
            .bind(ended_before.as_secs_f64())
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable(TRIM_OP))?;
        Ok(u64::try_from(items).unwrap_or(0))
    }

    async fn wakeups(&self) -> Result<Option<Box<dyn Wakeups>>> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(unavailable(LISTEN_OP))?;
        listener.listen_all(["dashflow_events", "dashflow_done"]).await.map_err(unavailable(LISTEN_OP))?;
        // Hints only: a burst beyond it is covered by the reader's polling.
        let (send, received) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let heard = tokio::select! {
                    () = send.closed() => return,
                    heard = listener.try_recv() => heard,
                };
                let wake = match heard {
                    Ok(Some(notification)) if notification.channel() == "dashflow_done" => {
                        Wake::Done(notification.payload().to_owned())
                    }
                    Ok(Some(notification)) => Wake::Events(notification.payload().to_owned()),
                    Ok(None) => Wake::Missed,
                    Err(error) => {
                        tracing::debug!(%error, "listening for run events failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Wake::Missed
                    }
                };
                if let Err(mpsc::error::TrySendError::Closed(_)) = send.try_send(wake) {
                    return;
                }
            }
        });
        Ok(Some(Box::new(EventWakeups { received })))
    }
}

/// The entries' payloads as one JSON array, in order.
fn json_array(entries: &[StreamEntry]) -> Result<String> {
    let payloads: Vec<&serde_json::Value> = entries.iter().map(|entry| &entry.payload).collect();
    let text = serde_json::to_string(&payloads).map_err(|error| QueueError::Invalid {
        what: "stream entry",
        detail: format!("cannot be written as JSON: {error}"),
    })?;
    // PostgreSQL's JSON cannot hold a NUL character, even escaped.
    Ok(text.replace("\\u0000", "\\ufffd"))
}

#[derive(Debug)]
struct EventWakeups {
    received: mpsc::Receiver<Wake>,
}

#[async_trait]
impl Wakeups for EventWakeups {
    async fn next(&mut self) -> Option<Wake> {
        self.received.recv().await
    }
}
