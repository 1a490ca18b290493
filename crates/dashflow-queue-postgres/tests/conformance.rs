//! The run-queue contract, as `postgres/{group}/{case}` trials (`harness = false`), each on a
//! fresh schema of the server named by `DASHFLOW_TEST_POSTGRES_URL`, dropped when the trial
//! ends. Without the variable the suite prints a skip line and lists every trial as ignored,
//! unless `DASHFLOW_TEST_POSTGRES_REQUIRED=1` makes that a failure. Lease times are the
//! database's clock: the trials let time pass by waiting between polls.

#![allow(clippy::expect_used, reason = "a test harness reports a broken setup by panicking")]

use std::sync::Arc;

use dashflow_checkpoint_postgres::testing::TestDatabase;
use dashflow_queue::RunQueue;
use dashflow_queue_conformance::{Capabilities, RealTime, TestQueue};
use dashflow_queue_postgres::PostgresRunQueue;

fn main() {
    // One probe up front: skip the whole suite (or fail, when required) if there is no server.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let Some(probe) = runtime.block_on(TestDatabase::from_env("postgres queue conformance suite")) else {
        // Listed as ignored, so the report shows the suite did not run rather than nothing.
        dashflow_queue_conformance::run(dashflow_queue_conformance::ignored_trials("postgres")).exit();
    };
    drop(probe);
    drop(runtime);

    let trials = dashflow_queue_conformance::trials("postgres", Capabilities::all(), || async {
        let database = TestDatabase::from_env("postgres queue conformance trial")
            .await
            .expect("the server answered the probe but not this trial");
        let queue = PostgresRunQueue::new(database.checkpointer().await).await.expect("the queue's schema migrates");
        // The schema is dropped after the queue (and its pool) when the trial ends.
        TestQueue::new(Arc::new(queue) as Arc<dyn RunQueue>, Arc::new(RealTime)).keeping(database)
    });
    dashflow_queue_conformance::run(trials).exit();
}
