//! The checkpoint contract, as `postgres/{group}/{case}` trials (`harness = false`), each on
//! a fresh schema of the server named by `DASHFLOW_TEST_POSTGRES_URL`, dropped when the trial
//! ends. Without the variable the suite prints a skip line and lists every trial as ignored,
//! unless `DASHFLOW_TEST_POSTGRES_REQUIRED=1` makes that a failure.

#![allow(clippy::expect_used, reason = "a test harness reports a broken setup by panicking")]

use std::sync::Arc;

use async_trait::async_trait;
use dashflow_checkpoint::{BlobLocation, Checkpointer};
use dashflow_checkpoint_conformance::{Capabilities, Tamper};
use dashflow_checkpoint_postgres::testing::TestDatabase;
use sqlx::PgPool;

/// Changes stored bytes with a raw SQL `UPDATE` on the checkpointer's own pool.
struct RawSql(PgPool);

impl RawSql {
    async fn alter(&self, sql: &'static str, key: &[&str], offset: usize, mask: u8) -> Result<(), String> {
        let offset = i32::try_from(offset).map_err(|error| error.to_string())?;
        let mut query = sqlx::query(sql).bind(offset).bind(i32::from(mask));
        for value in key {
            query = query.bind(*value);
        }
        let changed = query.execute(&self.0).await.map_err(|error| error.to_string())?.rows_affected();
        if changed == 1 { Ok(()) } else { Err(format!("{changed} rows changed for {key:?}")) }
    }
}

#[async_trait]
impl Tamper for RawSql {
    async fn alter_blob(&self, at: &BlobLocation, offset: usize, mask: u8) -> Result<(), String> {
        let checkpoint = [at.thread_id.as_str(), at.namespace.as_str(), at.checkpoint_id.as_str()];
        match &at.write_id {
            None => {
                self.alter(
                    "UPDATE dashflow_checkpoints SET blob = set_byte(blob, $1, get_byte(blob, $1) # $2) \
                     WHERE thread_id = $3 AND namespace = $4 AND checkpoint_id = $5",
                    &checkpoint,
                    offset,
                    mask,
                )
                .await
            }
            Some(write_id) => {
                self.alter(
                    "UPDATE dashflow_checkpoint_writes SET blob = set_byte(blob, $1, get_byte(blob, $1) # $2) \
                     WHERE thread_id = $3 AND namespace = $4 AND checkpoint_id = $5 AND task_id = $6",
                    &[checkpoint.as_slice(), &[write_id.as_str()]].concat(),
                    offset,
                    mask,
                )
                .await
            }
        }
    }
}

fn main() {
    // One probe up front: skip the whole suite (or fail, when required) if there is no server.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let Some(probe) = runtime.block_on(TestDatabase::from_env("postgres conformance suite")) else {
        // Listed as ignored, so the report shows the suite did not run rather than nothing.
        dashflow_checkpoint_conformance::run(dashflow_checkpoint_conformance::ignored_trials("postgres")).exit();
    };
    drop(probe);
    drop(runtime);

    let mut trials = dashflow_checkpoint_conformance::trials("postgres", Capabilities::all(), || async {
        let database = TestDatabase::from_env("postgres conformance trial")
            .await
            .expect("the server answered the probe but not this trial");
        Arc::new(database.into_checkpointer().await) as Arc<dyn Checkpointer>
    });
    trials.extend(dashflow_checkpoint_conformance::integrity_trials("postgres", || async {
        let database = TestDatabase::from_env("postgres conformance trial")
            .await
            .expect("the server answered the probe but not this trial");
        let checkpointer = database.into_checkpointer().await;
        let tamper = RawSql(checkpointer.pool().clone());
        (Arc::new(checkpointer) as Arc<dyn Checkpointer>, Arc::new(tamper) as Arc<dyn Tamper>)
    }));
    dashflow_checkpoint_conformance::run(trials).exit();
}
