//! The queue's schema migrations, with their own history table (`dashflow_queue_migrations`),
//! apart from the checkpoint backend's, so that each can move at its own pace.
//!
//! As in the checkpoint backend: every process migrates on connect, all pending migrations in
//! one transaction under a transaction-scoped advisory lock on the schema.

use dashflow_queue::QueueError;
use sqlx::{Connection, PgConnection};

use crate::error::unavailable;

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "run queue", sql: include_str!("../migrations/0001_initial.sql") },
    Migration {
        version: 2,
        name: "submit and finish in one round trip",
        sql: include_str!("../migrations/0002_round_trips.sql"),
    },
    Migration { version: 3, name: "run event streams", sql: include_str!("../migrations/0003_run_events.sql") },
    Migration {
        version: 4,
        name: "submits and notifications that wait for no other commit",
        sql: include_str!("../migrations/0004_submits_and_notifications.sql"),
    },
    Migration {
        version: 5,
        name: "event streams as one row per append",
        sql: include_str!("../migrations/0005_event_rows_per_append.sql"),
    },
];

/// The schema version this build writes.
pub(crate) const LATEST: i64 = 5;

/// `DFQM` in ASCII; the second key is a hash of the schema name.
const MIGRATION_LOCK: i32 = 0x4446_514d;

const OPERATION: &str = "migrate the run queue schema";

pub(crate) async fn migrate(conn: &mut PgConnection) -> Result<(), QueueError> {
    let mut tx = conn.begin().await.map_err(unavailable(OPERATION))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(unavailable(OPERATION))?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS dashflow_queue_migrations (
            version bigint PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await
    .map_err(unavailable(OPERATION))?;
    let current: i64 = sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM dashflow_queue_migrations")
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable(OPERATION))?;
    if current > LATEST {
        return Err(QueueError::Invalid {
            what: "run queue schema",
            detail: format!(
                "the database is at version {current}, newer than this build's {LATEST}; upgrade this process"
            ),
        });
    }
    for migration in MIGRATIONS.iter().filter(|migration| migration.version > current) {
        tracing::info!(version = migration.version, name = migration.name, "applying run queue migration");
        sqlx::raw_sql(migration.sql).execute(&mut *tx).await.map_err(unavailable(OPERATION))?;
        sqlx::query("INSERT INTO dashflow_queue_migrations (version, name) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.name)
            .execute(&mut *tx)
            .await
            .map_err(unavailable(OPERATION))?;
    }
    tx.commit().await.map_err(unavailable(OPERATION))
}
