//! The checkpoint contract, as `sqlite/{group}/{case}` trials (`harness = false`), each on a
//! fresh database file in a temporary directory removed at the end.
#![allow(clippy::expect_used, reason = "a test binary reports a failed setup by panicking")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashflow_checkpoint::Checkpointer;
use dashflow_checkpoint_sqlite::SqliteCheckpointer;

fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory for the databases");
    let root = Arc::new(dir.path().to_owned());
    let counter = Arc::new(AtomicUsize::new(0));
    let trials = dashflow_checkpoint_conformance::trials("sqlite", move || {
        let path = root.join(format!("trial-{}.db", counter.fetch_add(1, Ordering::Relaxed)));
        async move {
            let checkpointer = SqliteCheckpointer::open(&path).await.expect("a fresh database opens");
            Arc::new(checkpointer) as Arc<dyn Checkpointer>
        }
    });
    let conclusion = dashflow_checkpoint_conformance::run(trials);
    drop(dir);
    conclusion.exit();
}
