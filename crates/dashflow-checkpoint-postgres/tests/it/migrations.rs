//! Schema migrations on connect: once per schema however many processes start together, and
//! never over a schema a newer build wrote.

use dashflow_checkpoint::{CheckpointError, Checkpointer, ListOptions};
use dashflow_checkpoint_postgres::PostgresCheckpointer;

use crate::support::database;

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
