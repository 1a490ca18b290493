//! Schema migrations on connect: once per schema however many processes start together, and
//! never over a schema a newer build wrote.

use dashflow_checkpoint::{CheckpointError, CheckpointId, CheckpointKind, Checkpointer, ListOptions};
use dashflow_checkpoint_postgres::PostgresCheckpointer;

use crate::support::{database, record};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_together_migrate_the_schema_once() {
    let db = database!("processes_starting_together_migrate_the_schema_once");
    let starts = (0..4).map(|_| {
        let options = db.connect_options();
        tokio::spawn(async move { PostgresCheckpointer::connect_with(options).await })
    });
    let checkpointers: Vec<PostgresCheckpointer> =
        futures::future::join_all(starts).await.into_iter().map(|joined| joined.unwrap().unwrap()).collect();

    let mut admin = db.admin().await;
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM dashflow_schema_migrations ORDER BY version")
        .fetch_all(&mut admin)
        .await
        .unwrap();
    assert_eq!(versions, (1..=PostgresCheckpointer::schema_version()).collect::<Vec<_>>());
    for checkpointer in &checkpointers {
        assert!(checkpointer.list("t", &ListOptions::new()).await.unwrap().is_empty());
    }
    // A later start finds the schema current and changes nothing.
    let again = db.checkpointer().await;
    assert!(again.list("t", &ListOptions::new()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_schema_migrated_by_a_newer_build_is_refused() {
    let db = database!("a_schema_migrated_by_a_newer_build_is_refused");
    drop(db.checkpointer().await);
    let mut admin = db.admin().await;
    sqlx::query("INSERT INTO dashflow_schema_migrations (version, name) VALUES (999, 'from the future')")
        .execute(&mut admin)
        .await
        .unwrap();
    let error = PostgresCheckpointer::from_pool(db.pool().await).await.unwrap_err();
    assert!(matches!(error, CheckpointError::Unavailable { retryable: false, .. }), "{error}");
    let cause = std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default();
    assert!(cause.contains("999"), "{error}: {cause}");
}

#[tokio::test]
async fn the_tables_live_in_the_first_schema_of_the_search_path() {
    let db = database!("the_tables_live_in_the_first_schema_of_the_search_path");
    drop(db.checkpointer().await);
    let mut admin = db.admin().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name",
    )
    .bind(db.schema())
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "dashflow_checkpoint_heads",
            "dashflow_checkpoint_writes",
            "dashflow_checkpoints",
            "dashflow_schema_migrations",
            "dashflow_state_schemas"
        ]
    );
}

#[tokio::test]
async fn a_malformed_url_is_a_permanent_error_and_an_unreachable_server_a_retryable_one() {
    let malformed = PostgresCheckpointer::connect("postgres://[not a host").await.unwrap_err();
    assert!(matches!(malformed, CheckpointError::Unavailable { retryable: false, .. }), "{malformed}");
    // Port 1 on the loopback interface refuses connections (nothing listens there); a short
    // acquire timeout keeps the pool from trying for sqlx's default 30 seconds.
    let options: sqlx::postgres::PgConnectOptions = "postgres://postgres@127.0.0.1:1/nothing".parse().unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(100))
        .connect_lazy_with(options);
    let refused = PostgresCheckpointer::from_pool(pool).await.unwrap_err();
    assert!(refused.is_retryable(), "{refused}");
}

/// The indexes of `table` in the test's schema, each as its definition.
async fn indexes(admin: &mut sqlx::PgConnection, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT regexp_replace(indexdef, ' ON [^ ]+ ', ' ON ') FROM pg_indexes
         WHERE schemaname = current_schema() AND tablename = $1 ORDER BY indexname",
    )
    .bind(table)
    .fetch_all(admin)
    .await
    .unwrap()
}

#[tokio::test]
async fn threads_written_at_version_2_read_list_and_take_puts_after_the_upgrade() {
    let db = database!("threads_written_at_version_2_read_list_and_take_puts_after_the_upgrade");
    let mut admin = db.admin().await;
    // The schema as version 2 left it, with a thread of two checkpoints in it.
    for sql in
        [include_str!("../../migrations/0001_initial.sql"), include_str!("../../migrations/0002_state_schemas.sql")]
    {
        sqlx::raw_sql(sql).execute(&mut admin).await.unwrap();
    }
    sqlx::raw_sql(
        "CREATE TABLE dashflow_schema_migrations (
             version bigint PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO dashflow_schema_migrations (version, name) VALUES (1, 'initial schema'), (2, 'state schemas')",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let first = record("t", "", None, CheckpointKind::Snapshot);
    let second = record("t", "", Some(&first), CheckpointKind::Delta);
    for stored in [&first, &second] {
        sqlx::query(
            "INSERT INTO dashflow_checkpoints
                 (thread_id, namespace, checkpoint_id, parent_id, step, kind, blob, metadata, next_nodes, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10)",
        )
        .bind(&stored.thread_id)
        .bind(&stored.namespace)
        .bind(stored.checkpoint_id.as_str())
        .bind(stored.parent_id.as_ref().map(CheckpointId::as_str))
        .bind(stored.step)
        .bind(stored.kind.as_str())
        .bind(&stored.blob)
        .bind(serde_json::to_string(&stored.metadata).unwrap())
        .bind(serde_json::to_string(&stored.next_nodes).unwrap())
        .bind(stored.created_at_ms)
        .execute(&mut admin)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO dashflow_checkpoint_heads VALUES ('t', '', $1, $2)")
        .bind(second.checkpoint_id.as_str())
        .bind(second.created_at_ms)
        .execute(&mut admin)
        .await
        .unwrap();

    let checkpointer = db.checkpointer().await;
    let loaded = checkpointer.load("t", "", None).await.unwrap().expect("the thread is there");
    assert_eq!(loaded.chain, [first.clone(), second.clone()]);
    let listed = checkpointer.list("t", &ListOptions::new()).await.unwrap();
    assert_eq!(listed, [second.clone(), first.clone()], "newest first");
    let third = record("t", "", Some(&second), CheckpointKind::Delta);
    checkpointer.put(third.clone(), Some(&second.checkpoint_id)).await.unwrap();
    match checkpointer.put(third.clone(), Some(&third.checkpoint_id)).await {
        Err(CheckpointError::Conflict { .. }) => {}
        other => panic!("an id stored already is a Conflict, got {other:?}"),
    }
    assert_eq!(checkpointer.delete_idle_threads(third.created_at_ms + 1).await.unwrap(), ["t"]);
    assert!(checkpointer.load("t", "", None).await.unwrap().is_none());

    // What a put maintains now: one index of checkpoints, in the order `list` walks, and
    // none of the heads besides their key (the head's update stays on its page).
    assert_eq!(
        indexes(&mut admin, "dashflow_checkpoints").await,
        ["CREATE UNIQUE INDEX dashflow_checkpoints_pkey ON USING btree (thread_id, checkpoint_id, namespace)"]
    );
    assert_eq!(
        indexes(&mut admin, "dashflow_checkpoint_heads").await,
        ["CREATE UNIQUE INDEX dashflow_checkpoint_heads_pkey ON USING btree (thread_id, namespace)"]
    );
}
