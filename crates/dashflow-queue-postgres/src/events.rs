//! [`PgRunStreams`]: the event streams of runs in `dashflow_run_events`, appended by each
//! run's owner under its fence, read by any process (docs/distributed.md).

use std::time::Duration;

use async_trait::async_trait;
use dashflow_queue::{Lease, QueueError, Result, RunStreams, StreamEntry, StreamItem, Wake, Wakeups};
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use tokio::sync::mpsc;

use crate::error::{corrupt, unavailable};

/// Appends a batch after the run's last item, only while the thread's fence epoch is the
/// lease's: one statement, so one implicit transaction. The fence row is read `FOR SHARE`, as
/// a checkpoint write's is: a change of owner waits for an append in flight, and an append
/// after it stores nothing. The numbers come from the stream itself, so a new owner continues
/// where the former one stopped. Payloads are stored as the text they are (`json`).
const APPEND: &str = "
WITH fence AS (SELECT epoch FROM dashflow_thread_fences WHERE thread_id = $2 AND epoch = $3 FOR SHARE),
base AS (SELECT coalesce(max(seq), 0) AS last FROM dashflow_run_events WHERE run_id = $1)
INSERT INTO dashflow_run_events (run_id, seq, epoch, attempt, step, payload)
SELECT $1, base.last + e.n, $3, $4, e.step, e.payload::json
FROM fence, base, unnest($5::bigint[], $6::text[]) WITH ORDINALITY AS e(step, payload, n)
RETURNING seq";

/// Items after a number, each marked `rerun` when an earlier attempt had reached its step.
const READ: &str = "
SELECT e.seq, e.epoch, e.attempt, e.step, e.payload::text AS payload,
       (extract(epoch FROM e.at) * 1000)::bigint AS at_ms,
       coalesce(e.step <= (SELECT max(p.step) FROM dashflow_run_events p
                           WHERE p.run_id = e.run_id AND p.epoch < e.epoch), false) AS rerun
FROM dashflow_run_events e WHERE e.run_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3";

/// Streams of runs that ended long enough ago, or whose run row is gone. It starts from the
/// streams (runs still running or recently ended), never from the runs' whole history: one
/// probe of `dashflow_runs` per stream.
const TRIM: &str = "
DELETE FROM dashflow_run_events e
USING (SELECT s.run_id FROM (SELECT DISTINCT run_id FROM dashflow_run_events) s
       WHERE NOT EXISTS (SELECT 1 FROM dashflow_runs r
                         WHERE r.run_id = s.run_id
                           AND (r.finished_at IS NULL OR r.finished_at >= now() - make_interval(secs => $1)))) ended
WHERE e.run_id = ended.run_id";

/// Sent after the append's commit, never inside it: PostgreSQL commits notifying transactions
/// one at a time, each holding a lock of the whole database until its commit is on disk.
const NOTIFY: &str = "SELECT pg_notify('dashflow_events', $1)";

const APPEND_OP: &str = "append to a run's event stream";
const READ_OP: &str = "read a run's event stream";
const TRIM_OP: &str = "trim ended runs' event streams";
const LISTEN_OP: &str = "listen for run events";

/// The run event streams of a [`PostgresRunQueue`](crate::PostgresRunQueue)'s database
/// (its `streams()`).
#[derive(Clone, Debug)]
pub struct PgRunStreams {
    pool: PgPool,
}

impl PgRunStreams {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl RunStreams for PgRunStreams {
    async fn append(&self, lease: &Lease, attempt: i32, entries: &[StreamEntry]) -> Result<i64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let steps: Vec<Option<i64>> = entries.iter().map(|entry| entry.step).collect();
        let mut payloads = Vec::with_capacity(entries.len());
        for entry in entries {
            let text = serde_json::to_string(&entry.payload).map_err(|error| QueueError::Invalid {
                what: "stream entry",
                detail: format!("cannot be written as JSON: {error}"),
            })?;
            // PostgreSQL's JSON cannot hold a NUL character, even escaped.
            payloads.push(text.replace("\\u0000", "\\ufffd"));
        }
        let mut conn = self.pool.acquire().await.map_err(unavailable(APPEND_OP))?;
        let seqs: Vec<i64> = sqlx::query_scalar(APPEND)
            .bind(&lease.run_id)
            .bind(&lease.thread_id)
            .bind(lease.epoch)
            .bind(attempt)
            .bind(&steps)
            .bind(&payloads)
            .fetch_all(&mut *conn)
            .await
            .map_err(unavailable(APPEND_OP))?;
        let Some(&last) = seqs.iter().max() else {
            return Err(QueueError::LeaseLost {
                run_id: lease.run_id.clone(),
                epoch: lease.epoch,
                why: "the thread's fence epoch moved on: another worker owns the run's stream".into(),
            });
        };
        // Once per batch, and the owner batches. A lost notification is a hint lost: followers
        // poll as well.
        if let Err(error) = sqlx::query(NOTIFY).bind(&lease.run_id).execute(&mut *conn).await {
            tracing::debug!(%error, run_id = %lease.run_id, "notifying followers failed; they poll");
        }
        Ok(last)
    }

    async fn read(&self, run_id: &str, after_seq: i64, limit: usize) -> Result<Vec<StreamItem>> {
        if run_id.contains('\0') {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(READ)
            .bind(run_id)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable(READ_OP))?;
        rows.iter()
            .map(|row| {
                let get = |name: &str| corrupt(format!("column `{name}` of dashflow_run_events"));
                let payload: String = row.try_get("payload").map_err(|_| get("payload"))?;
                Ok(StreamItem {
                    seq: row.try_get("seq").map_err(|_| get("seq"))?,
                    epoch: row.try_get("epoch").map_err(|_| get("epoch"))?,
                    attempt: row.try_get("attempt").map_err(|_| get("attempt"))?,
                    step: row.try_get("step").map_err(|_| get("step"))?,
                    rerun: row.try_get("rerun").map_err(|_| get("rerun"))?,
                    at_ms: row.try_get("at_ms").map_err(|_| get("at_ms"))?,
                    payload: serde_json::from_str(&payload)
                        .map_err(|error| corrupt(format!("a stream item of run {run_id}: {error}")))?,
                })
            })
            .collect()
    }

    async fn trim(&self, ended_before: Duration) -> Result<u64> {
        let done = sqlx::query(TRIM)
            .bind(ended_before.as_secs_f64())
            .execute(&self.pool)
            .await
            .map_err(unavailable(TRIM_OP))?;
        Ok(done.rows_affected())
    }

    async fn wakeups(&self) -> Result<Option<Box<dyn Wakeups>>> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(unavailable(LISTEN_OP))?;
        listener.listen("dashflow_events").await.map_err(unavailable(LISTEN_OP))?;
        // Hints only: a burst beyond it is covered by the reader's polling.
        let (send, received) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let heard = tokio::select! {
                    () = send.closed() => return,
                    heard = listener.try_recv() => heard,
                };
                let wake = match heard {
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
