//! Test support (feature `testing`): a throwaway PostgreSQL schema per test, a PostgreSQL
//! server of a test's own for tests that stop or restart it, and [`together`] for tests of
//! work done in groups.
//!
//! Tests that need a server read its URL from `DASHFLOW_TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`). When it is unset, [`TestDatabase::from_env`]
//! prints a skip line and returns `None`; with `DASHFLOW_TEST_POSTGRES_REQUIRED=1` (as CI
//! sets it) a missing URL or an unreachable server fails the test instead.
//!
//! Each [`TestDatabase`] creates its own schema (`dashflow_test_<ulid>`) and points the
//! `search_path` of every connection it hands out at it, so tests run in parallel on one
//! database without seeing each other's tables. Its connections carry the schema name as
//! `application_name`, so [`TestDatabase::terminate_connections`] kills exactly this test's
//! connections. Dropping it terminates them and drops the schema, even when the test panicked.
//!
//! ```no_run
//! use dashflow_checkpoint::{Checkpointer, ListOptions};
//! use dashflow_checkpoint_postgres::testing::TestDatabase;
//!
//! # async fn a_test() {
//! let Some(db) = TestDatabase::from_env("lists_an_empty_thread").await else { return };
//! let checkpointer = db.checkpointer().await;
//! assert!(checkpointer.list("t", &ListOptions::new()).await.unwrap().is_empty());
//! # }
//! ```
//!
//! Tests that take the server away (R21's server restart) cannot do that to the shared
//! server, which other tests use at the same time. [`TestServer`] runs a cluster of their own
//! in a temporary directory; it needs no URL, prints a skip line when this machine cannot run
//! one (no PostgreSQL binaries, root without a `postgres` user) and fails instead under
//! `DASHFLOW_TEST_POSTGRES_REQUIRED=1`.

mod server;

use std::io::Write as _;
use std::ops::Deref;
use std::time::Duration;

use async_trait::async_trait;
use dashflow_checkpoint::{
    CheckpointId, CheckpointRecord, Checkpointer, ListOptions, LoadedCheckpoint, PendingWrite, Result,
    ThreadListOptions, ThreadSummary,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool};

use crate::PostgresCheckpointer;

pub use server::TestServer;

/// The variable naming the test server.
pub const URL_VAR: &str = "DASHFLOW_TEST_POSTGRES_URL";

/// The variable that, set to `1`, turns a skipped Postgres test into a failed one.
pub const REQUIRED_VAR: &str = "DASHFLOW_TEST_POSTGRES_REQUIRED";

/// The prefix of every schema a [`TestDatabase`] creates.
pub const SCHEMA_PREFIX: &str = "dashflow_test_";

/// Test schemas older than this are left over from killed test runs and dropped.
const STALE_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// A schema of its own on the test server, dropped with this value.
#[derive(Debug)]
pub struct TestDatabase {
    /// Options from the URL, before the schema and application name are set.
    base: PgConnectOptions,
    schema: String,
}

/// Whether `DASHFLOW_TEST_POSTGRES_REQUIRED=1`.
pub fn required() -> bool {
    std::env::var(REQUIRED_VAR).is_ok_and(|value| value.trim() == "1")
}

/// Writes a line to the process's stderr, past the test harness's output capture, so that a
/// skip is visible in a plain `cargo test` run.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

impl TestDatabase {
    /// A fresh schema on the server named by `DASHFLOW_TEST_POSTGRES_URL`, or `None` (after a
    /// skip line naming `test`) when the variable is unset or the server cannot be reached.
    ///
    /// # Panics
    ///
    /// When `DASHFLOW_TEST_POSTGRES_REQUIRED=1` and the URL is unset or the server cannot be
    /// reached; when the URL does not parse; when the schema cannot be created.
    pub async fn from_env(test: &str) -> Option<Self> {
        let url = match std::env::var(URL_VAR) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                if required() {
                    panic!("{test}: {REQUIRED_VAR}=1 but {URL_VAR} is not set; set it to a PostgreSQL URL");
                }
                say(&format!("skipped {test}: {URL_VAR} is not set (set it to a PostgreSQL URL to run this test)"));
                return None;
            }
        };
        let base: PgConnectOptions = match url.parse() {
            Ok(options) => options,
            Err(error) => panic!("{test}: {URL_VAR} is not a PostgreSQL URL: {error}"),
        };
        let admin_options = base.clone().application_name("dashflow_test_admin");
        let mut admin = match PgConnection::connect_with(&admin_options).await {
            Ok(conn) => conn,
            Err(error) if !required() => {
                say(&format!("skipped {test}: cannot reach the PostgreSQL server at {URL_VAR}: {error}"));
                return None;
            }
            Err(error) => panic!("{test}: {REQUIRED_VAR}=1 but the server at {URL_VAR} cannot be reached: {error}"),
        };
        let schema = format!("{SCHEMA_PREFIX}{}", ulid::Ulid::new().to_string().to_lowercase());
        drop_stale_schemas(&mut admin).await;
        let create = format!("CREATE SCHEMA \"{schema}\"");
        if let Err(error) = sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut admin).await {
            panic!("{test}: cannot create test schema {schema}: {error}");
        }
        let _ = admin.close().await;
        Some(Self { base, schema })
    }

    /// The schema's name; also the `application_name` of this test's connections.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Options for a connection into this schema, named by [`TestDatabase::schema`].
    pub fn connect_options(&self) -> PgConnectOptions {
        self.base.clone().options([("search_path", self.schema.as_str())]).application_name(&self.schema)
    }

    /// A small pool into this schema (at most 4 connections: tests run in parallel and the
    /// server's connection limit is shared).
    ///
    /// # Panics
    ///
    /// When the server refuses the connection.
    pub async fn pool(&self) -> PgPool {
        self.pool_with(PgPoolOptions::new().max_connections(4).acquire_timeout(Duration::from_secs(30))).await
    }

    /// A pool into this schema built from `options`.
    ///
    /// # Panics
    ///
    /// When the server refuses the connection.
    pub async fn pool_with(&self, options: PgPoolOptions) -> PgPool {
        match options.connect_with(self.connect_options()).await {
            Ok(pool) => pool,
            Err(error) => panic!("cannot connect to test schema {}: {error}", self.schema),
        }
    }

    /// A checkpointer on a pool of its own in this schema, as another process would have.
    ///
    /// # Panics
    ///
    /// When connecting or migrating fails.
    pub async fn checkpointer(&self) -> PostgresCheckpointer {
        let pool = self.pool().await;
        match PostgresCheckpointer::from_pool(pool).await {
            Ok(checkpointer) => checkpointer,
            Err(error) => panic!("cannot open a checkpointer in test schema {}: {error}", self.schema),
        }
    }

    /// A checkpointer that owns this schema: dropping it (the last `Arc` of it) drops the
    /// schema. For suites whose factories hand out an `Arc<dyn Checkpointer>` per test.
    ///
    /// # Panics
    ///
    /// When connecting or migrating fails.
    pub async fn into_checkpointer(self) -> TestCheckpointer {
        TestCheckpointer { checkpointer: self.checkpointer().await, database: self }
    }

    /// A connection into this schema that [`TestDatabase::terminate_connections`] spares,
    /// for a test to inspect the tables or hold locks against the code under test.
    ///
    /// # Panics
    ///
    /// When the server refuses the connection.
    pub async fn admin(&self) -> PgConnection {
        let options = self
            .base
            .clone()
            .options([("search_path", self.schema.as_str())])
            .application_name(&format!("{}_admin", self.schema));
        match PgConnection::connect_with(&options).await {
            Ok(conn) => conn,
            Err(error) => panic!("cannot connect to test schema {}: {error}", self.schema),
        }
    }

    /// Terminates every server session of this test's pools (`pg_terminate_backend`), as a
    /// crashed server or a network fault would end them; returns how many were signalled.
    ///
    /// # Panics
    ///
    /// When the server refuses the connection that does it.
    pub async fn terminate_connections(&self) -> u64 {
        let mut admin = self.admin().await;
        let killed = match terminate(&mut admin, &self.schema).await {
            Ok(killed) => killed,
            Err(error) => panic!("cannot terminate the connections of test schema {}: {error}", self.schema),
        };
        let _ = admin.close().await;
        killed
    }
}

async fn terminate(conn: &mut PgConnection, application_name: &str) -> Result<u64, sqlx::Error> {
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = $1",
    )
    .bind(application_name)
    .fetch_one(&mut *conn)
    .await?;
    Ok(u64::try_from(killed).unwrap_or_default())
}

/// Drops test schemas whose ULID says they are older than [`STALE_AFTER`]: left behind by
/// test processes that were killed before their drop ran. Best effort.
async fn drop_stale_schemas(conn: &mut PgConnection) {
    let Ok(names) =
        sqlx::query_scalar::<_, String>("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname::text, $1)")
            .bind(SCHEMA_PREFIX)
            .fetch_all(&mut *conn)
            .await
    else {
        return;
    };
    let now = std::time::SystemTime::now();
    for name in names {
        let Some(id) = name.strip_prefix(SCHEMA_PREFIX).and_then(|id| ulid::Ulid::from_string(&id.to_uppercase()).ok())
        else {
            continue;
        };
        let stale = now.duration_since(id.datetime()).is_ok_and(|age| age > STALE_AFTER);
        if stale {
            let drop = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
            let _ = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut *conn).await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (options, schema) = (self.base.clone().application_name("dashflow_test_admin"), self.schema.clone());
        // Drop may run inside the test's runtime (or while unwinding from a panic), where
        // blocking on its futures is not allowed: clean up on a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect_with(&options).await?;
                // Sessions still open in the schema (a pool the test kept, a transaction it
                // left open) would hold locks that the drop waits for.
                terminate(&mut conn, &schema).await?;
                let drop = format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut conn).await?;
                conn.close().await?;
                Ok(())
            })
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => say(&format!("could not drop test schema {}: {error}", self.schema)),
            Err(_) => say(&format!("could not drop test schema {}: the cleanup thread panicked", self.schema)),
        }
    }
}

/// A [`PostgresCheckpointer`] together with the [`TestDatabase`] it lives in, which is dropped
/// (and its schema with it) when this is. Derefs to the checkpointer.
#[derive(Debug)]
pub struct TestCheckpointer {
    checkpointer: PostgresCheckpointer,
    database: TestDatabase,
}

impl TestCheckpointer {
    /// The schema this checkpointer writes to.
    pub fn database(&self) -> &TestDatabase {
        &self.database
    }
}

impl Deref for TestCheckpointer {
    type Target = PostgresCheckpointer;

    fn deref(&self) -> &PostgresCheckpointer {
        &self.checkpointer
    }
}

#[async_trait]
impl Checkpointer for TestCheckpointer {
    async fn put(&self, record: CheckpointRecord, expected_head: Option<&CheckpointId>) -> Result<()> {
        self.checkpointer.put(record, expected_head).await
    }

    async fn put_writes(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: &CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<()> {
        self.checkpointer.put_writes(thread_id, namespace, checkpoint_id, writes).await
    }

    async fn load(
        &self,
        thread_id: &str,
        namespace: &str,
        id: Option<&CheckpointId>,
    ) -> Result<Option<LoadedCheckpoint>> {
        self.checkpointer.load(thread_id, namespace, id).await
    }

    async fn list(&self, thread_id: &str, options: &ListOptions) -> Result<Vec<CheckpointRecord>> {
        self.checkpointer.list(thread_id, options).await
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<()> {
        self.checkpointer.delete_thread(thread_id).await
    }

    async fn copy_thread(&self, from: &str, to: &str) -> Result<()> {
        self.checkpointer.copy_thread(from, to).await
    }

    async fn delete_before(&self, thread_id: &str, namespace: &str, keep_from: &CheckpointId) -> Result<u64> {
        self.checkpointer.delete_before(thread_id, namespace, keep_from).await
    }

    async fn delete_namespace(&self, thread_id: &str, namespace: &str) -> Result<u64> {
        self.checkpointer.delete_namespace(thread_id, namespace).await
    }

    async fn delete_idle_threads(&self, cutoff_ms: i64) -> Result<Vec<String>> {
        self.checkpointer.delete_idle_threads(cutoff_ms).await
    }

    async fn put_schema(&self, fingerprint: u64, schema: Vec<u8>) -> Result<()> {
        self.checkpointer.put_schema(fingerprint, schema).await
    }

    async fn get_schema(&self, fingerprint: u64) -> Result<Option<Vec<u8>>> {
        self.checkpointer.get_schema(fingerprint).await
    }

    async fn put_batch(&self, records: Vec<(CheckpointRecord, Option<CheckpointId>)>) -> Result<()> {
        self.checkpointer.put_batch(records).await
    }

    async fn rewrite_as_snapshot(
        &self,
        thread_id: &str,
        namespace: &str,
        id: &CheckpointId,
        blob: Vec<u8>,
    ) -> Result<()> {
        self.checkpointer.rewrite_as_snapshot(thread_id, namespace, id, blob).await
    }

    async fn list_threads(&self, options: &ThreadListOptions) -> Result<Vec<ThreadSummary>> {
        self.checkpointer.list_threads(options).await
    }
}

/// Polls each of `calls` once, then waits for them all, in order: on a current-thread runtime
/// every call hands its work to the pool's task (group commit, submits, finishes, appends,
/// notifications) before that task first runs, so the work waiting together is exactly the
/// test's.
///
/// # Panics
///
/// When a call finishes at its first poll: it did not wait for a group.
pub async fn together<F: std::future::Future + ?Sized>(mut calls: Vec<std::pin::Pin<Box<F>>>) -> Vec<F::Output> {
    let waker = std::task::Waker::noop();
    for call in &mut calls {
        let polled = call.as_mut().poll(&mut std::task::Context::from_waker(waker));
        assert!(polled.is_pending(), "a call finished before its group was made");
    }
    let mut outcomes = Vec::with_capacity(calls.len());
    for call in calls {
        outcomes.push(call.await);
    }
    outcomes
}
