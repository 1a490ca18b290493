//! The embedded schema migrations and how they are applied.
//!
//! A hand-rolled ordered list rather than `sqlx::migrate!`: the macro needs sqlx's `macros`
//! feature (a second build of the driver as a proc-macro dependency) and sqlx's migrator keeps
//! its history in `_sqlx_migrations`, the table the application's own sqlx migrations use in
//! the same schema, where each migrator would report the other's versions as unknown. Ours
//! live in `dashflow_schema_migrations`.
//!
//! Every process migrates on connect. All pending migrations and their history rows are
//! applied in one transaction that first takes a transaction-scoped advisory lock on the
//! schema: concurrent processes on many hosts serialize on it, the second sees the first's
//! versions and applies nothing, and a process that dies mid-way leaves no partial schema
//! (PostgreSQL DDL is transactional) and no lock behind. A migration that cannot run in a
//! transaction (`CREATE INDEX CONCURRENTLY`) would need its own step.

use sqlx::{Connection, PgConnection, PgPool};

use crate::error::Error;
use crate::retry::{Idempotence, RetryPolicy};

/// One step of the schema.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// The migrations, oldest first; versions increase by one.
const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial schema", sql: include_str!("../migrations/0001_initial.sql") },
    Migration { version: 2, name: "state schemas", sql: include_str!("../migrations/0002_state_schemas.sql") },
    Migration { version: 3, name: "cheaper puts", sql: include_str!("../migrations/0003_cheaper_puts.sql") },
];

/// The schema version this build writes.
pub(crate) const LATEST: i64 = 3;

/// The first key of the advisory lock that serializes migrations of one schema (the second
/// is a hash of the schema name). `DFMG` in ASCII.
const MIGRATION_LOCK: i32 = 0x4446_4d47;

const OPERATION: &str = "migrate the checkpoint schema";

/// Brings the schema that `pool`'s connections use (their `search_path`) to [`LATEST`].
pub(crate) async fn migrate(pool: &PgPool, retry: &RetryPolicy) -> Result<(), Error> {
    // Migrating is idempotent: a try that committed is seen by the next, which does nothing.
    retry
        .run(OPERATION, Idempotence::Idempotent, |_| async {
            let mut conn = pool.acquire().await.map_err(Error::acquire(OPERATION))?;
            migrate_connection(&mut conn).await
        })
        .await
}

async fn migrate_connection(conn: &mut PgConnection) -> Result<(), Error> {
    // The common case, a schema already at this version, takes no lock and runs no DDL (so a
    // role without CREATE on the schema can use a schema that an administrator migrated).
    if let Some(current) = applied_version(conn).await? {
        if current == LATEST {
            return Ok(());
        }
        if current > LATEST {
            return Err(Error::SchemaTooNew { found: current, known: LATEST });
        }
    }

    let mut tx = conn.begin().await.map_err(Error::acquire(OPERATION))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(Error::uncommitted(OPERATION))?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS dashflow_schema_migrations (
            version     bigint PRIMARY KEY,
            name        text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )",
    )
    .execute(&mut *tx)
    .await
    .map_err(Error::uncommitted(OPERATION))?;
    // Read again under the lock: another process may have migrated while this one waited.
    let current: i64 = sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM dashflow_schema_migrations")
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::uncommitted(OPERATION))?;
    if current > LATEST {
        return Err(Error::SchemaTooNew { found: current, known: LATEST });
    }
    for migration in MIGRATIONS.iter().filter(|migration| migration.version > current) {
        tracing::info!(version = migration.version, name = migration.name, "applying checkpoint schema migration");
        sqlx::raw_sql(migration.sql).execute(&mut *tx).await.map_err(Error::uncommitted(OPERATION))?;
        sqlx::query("INSERT INTO dashflow_schema_migrations (version, name) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.name)
            .execute(&mut *tx)
            .await
            .map_err(Error::uncommitted(OPERATION))?;
    }
    tx.commit().await.map_err(Error::statement(OPERATION))
}

/// The applied version, or `None` when the schema has no migration history yet.
async fn applied_version(conn: &mut PgConnection) -> Result<Option<i64>, Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('dashflow_schema_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::statement(OPERATION))?;
    if !exists {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM dashflow_schema_migrations")
        .fetch_one(&mut *conn)
        .await
        .map(Some)
        .map_err(Error::statement(OPERATION))
}

#[cfg(test)]
mod tests;
