//! The checkpoint contract, as `postgres/{group}/{case}` trials (`harness = false`), each on
//! a fresh schema of the server named by `DASHFLOW_TEST_POSTGRES_URL`, dropped when the trial
//! ends. Without the variable the suite prints a skip line and passes, unless
//! `DASHFLOW_TEST_POSTGRES_REQUIRED=1` makes that a failure.

#![allow(clippy::expect_used, reason = "a test harness reports a broken setup by panicking")]

use std::sync::Arc;

use dashflow_checkpoint::Checkpointer;
use dashflow_checkpoint_postgres::testing::TestDatabase;

fn main() {
    // One probe up front: skip the whole suite (or fail, when required) if there is no server.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let Some(probe) = runtime.block_on(TestDatabase::from_env("postgres conformance suite")) else { return };
    drop(probe);
    drop(runtime);

    let trials = dashflow_checkpoint_conformance::trials("postgres", || async {
        let database = TestDatabase::from_env("postgres conformance trial")
            .await
            .expect("the server answered the probe but not this trial");
        Arc::new(database.into_checkpointer().await) as Arc<dyn Checkpointer>
    });
    dashflow_checkpoint_conformance::run(trials).exit();
}
