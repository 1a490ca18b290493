//! Operating a queue: drain a worker, and the health figures of the queue's tables that
//! decide whether it keeps its speed (dead tuples, and the oldest snapshot that keeps vacuum
//! from removing them).

use dashflow_queue::{QueueError, Result};
use sqlx::Row;

use crate::PostgresRunQueue;
use crate::error::{corrupt, unavailable};

/// One of the queue's tables, as PostgreSQL's statistics see it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableHealth {
    /// The table.
    pub table: String,
    /// Rows in use.
    pub live_tuples: i64,
    /// Rows deleted or updated and not yet vacuumed: they slow every scan of the table.
    pub dead_tuples: i64,
    /// Milliseconds since it was last vacuumed (by autovacuum or by hand), if ever.
    pub vacuumed_ms_ago: Option<i64>,
}

impl TableHealth {
    /// Dead rows as a share of all rows, in percent.
    pub fn dead_percent(&self) -> f64 {
        let total = self.live_tuples + self.dead_tuples;
        if total == 0 { 0.0 } else { 100.0 * self.dead_tuples as f64 / total as f64 }
    }
}

/// The oldest snapshot the server keeps: vacuum can remove no row that became dead after it,
/// in any table, so a long transaction anywhere makes the queue's tables bloat.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct XminHorizon {
    /// Who holds it: `backend <pid>` (with its application name), `prepared <gid>` or
    /// `slot <name>`.
    pub holder: String,
    /// How many transactions old it is.
    pub age: i64,
    /// How long the holder's transaction has been open, in milliseconds, when known.
    pub open_ms: Option<i64>,
}

/// The health of a queue's tables.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueHealth {
    /// The queue's tables, by name.
    pub tables: Vec<TableHealth>,
    /// The oldest snapshot held on the server (other than by this query), if any.
    pub oldest_xmin: Option<XminHorizon>,
}

const TABLES: &str = "
SELECT relname::text AS table_name, n_live_tup AS live, n_dead_tup AS dead,
       (extract(epoch FROM now() - greatest(last_autovacuum, last_vacuum)) * 1000)::bigint AS vacuumed_ms_ago
FROM pg_stat_user_tables
WHERE schemaname = current_schema()
  AND relname IN ('dashflow_runs', 'dashflow_thread_fences', 'dashflow_workers', 'dashflow_tenant_clocks',
                  'dashflow_run_events')
ORDER BY relname";

const OLDEST_XMIN: &str = "
SELECT holder, age, open_ms FROM (
    SELECT 'backend ' || pid || coalesce(' (' || nullif(application_name, '') || ')', '') AS holder,
           age(backend_xmin)::bigint AS age,
           (extract(epoch FROM now() - xact_start) * 1000)::bigint AS open_ms
    FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid()
    UNION ALL
    SELECT 'prepared ' || gid, age(transaction)::bigint, (extract(epoch FROM now() - prepared) * 1000)::bigint
    FROM pg_prepared_xacts
    UNION ALL
    SELECT 'slot ' || slot_name, age(xmin)::bigint, NULL FROM pg_replication_slots WHERE xmin IS NOT NULL
) held ORDER BY age DESC LIMIT 1";

const DRAIN: &str =
    "UPDATE dashflow_workers SET draining = true WHERE worker_id = $1 AND stopped_at IS NULL RETURNING worker_id";

const HEALTH_OP: &str = "read the queue tables' health";
const DRAIN_OP: &str = "drain a worker";

impl PostgresRunQueue {
    /// Asks worker `worker_id` to drain: it claims nothing more from now on, and at its next
    /// heartbeat it stops as on SIGTERM (finishes what it holds within its grace period,
    /// releases the rest, deregisters). `NotFound` when no running worker has that id.
    pub async fn drain_worker(&self, worker_id: &str) -> Result<()> {
        let found: Option<String> = sqlx::query_scalar(DRAIN)
            .bind(worker_id)
            .fetch_optional(self.pool())
            .await
            .map_err(unavailable(DRAIN_OP))?;
        match found {
            Some(_) => Ok(()),
            None => Err(QueueError::NotFound { what: format!("running worker {worker_id}") }),
        }
    }

    /// Dead and live rows of the queue's tables, and the oldest snapshot on the server.
    pub async fn health(&self) -> Result<QueueHealth> {
        let mut conn = self.pool().acquire().await.map_err(unavailable(HEALTH_OP))?;
        let rows = sqlx::query(TABLES).fetch_all(&mut *conn).await.map_err(unavailable(HEALTH_OP))?;
        let column = |name: &str| corrupt(format!("column `{name}` of pg_stat_user_tables"));
        let tables = rows
            .iter()
            .map(|row| {
                Ok(TableHealth {
                    table: row.try_get("table_name").map_err(|_| column("relname"))?,
                    live_tuples: row.try_get("live").map_err(|_| column("n_live_tup"))?,
                    dead_tuples: row.try_get("dead").map_err(|_| column("n_dead_tup"))?,
                    vacuumed_ms_ago: row.try_get("vacuumed_ms_ago").map_err(|_| column("last_autovacuum"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let oldest = sqlx::query(OLDEST_XMIN).fetch_optional(&mut *conn).await.map_err(unavailable(HEALTH_OP))?;
        let column = |name: &str| corrupt(format!("column `{name}` of the xmin horizon"));
        let oldest_xmin = oldest
            .map(|row| {
                Ok::<_, QueueError>(XminHorizon {
                    holder: row.try_get("holder").map_err(|_| column("holder"))?,
                    age: row.try_get("age").map_err(|_| column("age"))?,
                    open_ms: row.try_get("open_ms").map_err(|_| column("open_ms"))?,
                })
            })
            .transpose()?;
        Ok(QueueHealth { tables, oldest_xmin })
    }
}
