//! R21 end to end: a graph run on `PostgresCheckpointer` while its server restarts.
//!
//! Each test runs a PostgreSQL server of its own (`testing::TestServer`), since the shared
//! test server must not be restarted under other tests; without PostgreSQL binaries the tests
//! print a skip line, which `DASHFLOW_TEST_POSTGRES_REQUIRED=1` turns into a failure. A node
//! restarts or stops the server in the middle of the run; the run must then finish (the pool
//! reconnects) or fail with a retryable checkpoint error and resume, and either way end in the
//! uninterrupted run's state with each committed task run once.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashflow::PostgresCheckpointer;
use dashflow::prelude::*;
use dashflow_checkpoint_postgres::testing::TestServer;
use sqlx::postgres::PgPoolOptions;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Work {
    #[reduce(append)]
    log: Vec<String>,
}

/// What the third node does to the server the first time it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outage {
    /// Nothing: the uninterrupted run.
    None,
    /// Stops the server and starts it again before the node returns.
    Restart,
    /// Stops the server and leaves it down.
    Stop,
}

/// Node side effects, keyed by each task's idempotency key.
type Ledger = Arc<Mutex<Vec<String>>>;

const NODES: [&str; 4] = ["one", "two", "three", "four"];

/// A run that fails on a stopped server has not failed after this long: it hangs. Generous:
/// the pool gives up after its acquire timeout.
const HANG: Duration = Duration::from_secs(60);

/// START -> one -> two -> three -> four -> END; `three` causes `outage` once.
fn chain(server: &Arc<TestServer>, ledger: &Ledger, outage: Outage) -> StateGraph<Work> {
    let mut graph = StateGraph::<Work>::named("restart-chain");
    let fired = Arc::new(AtomicBool::new(false));
    for name in NODES {
        let (server, ledger, fired) = (Arc::clone(server), Arc::clone(ledger), Arc::clone(&fired));
        graph.add_node(name, move |_: Arc<Work>, ctx: NodeContext| {
            ledger.lock().unwrap().push(ctx.idempotency_key());
            let (server, fired) = (Arc::clone(&server), Arc::clone(&fired));
            async move {
                if name == "three" && outage != Outage::None && !fired.swap(true, Ordering::SeqCst) {
                    server.stop().await;
                    if outage == Outage::Restart {
                        server.start().await;
                    }
                }
                Ok(WorkUpdate::default().log(vec![name.to_owned()]))
            }
        });
    }
    graph
        .add_edge(START, "one")
        .add_edge("one", "two")
        .add_edge("two", "three")
        .add_edge("three", "four")
        .add_edge("four", END);
    graph
}

/// The graph on a checkpointer whose pool waits two seconds for a connection.
async fn app(server: &Arc<TestServer>, ledger: &Ledger, outage: Outage) -> CompiledGraph<Work> {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(server.connect_options())
        .await
        .unwrap();
    let checkpointer = PostgresCheckpointer::from_pool(pool).await.unwrap();
    // Without the default observers: nothing here needs a WAL or traces.
    CompiledGraph::new(chain(server, ledger, outage).build().unwrap()).with_checkpointer(checkpointer)
}

/// The final state of a run without outage, on a thread of its own.
async fn uninterrupted(server: &Arc<TestServer>) -> Work {
    let app = app(server, &Ledger::default(), Outage::None).await;
    let config = RunConfig::thread("reference").durability(Durability::Sync);
    app.invoke(Work::default(), config).await.unwrap().state
}

/// How often each task ran.
fn runs(ledger: &Ledger) -> HashMap<String, usize> {
    let mut runs = HashMap::new();
    for key in ledger.lock().unwrap().iter() {
        *runs.entry(key.clone()).or_default() += 1;
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_server_restarts_mid_run_finishes_with_the_uninterrupted_state() {
    let Some(server) =
        TestServer::create("a_run_whose_server_restarts_mid_run_finishes_with_the_uninterrupted_state").await
    else {
        return;
    };
    let server = Arc::new(server);
    let expected = uninterrupted(&server).await;
    let ledger = Ledger::default();
    let app = app(&server, &ledger, Outage::Restart).await;

    let config = RunConfig::thread("restarted").durability(Durability::Sync);
    let result = tokio::time::timeout(HANG, app.invoke(Work::default(), config.clone())).await.expect("the run hangs");
    assert_eq!(result.unwrap().state, expected);
    // The checkpoints after the restart were written through the same pool, and every task
    // ran once.
    assert_eq!(app.get_state(&config).await.unwrap().unwrap().state, expected);
    let runs = runs(&ledger);
    assert_eq!(runs.len(), NODES.len());
    assert!(runs.values().all(|&count| count == 1), "{runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_server_stops_mid_run_fails_retryably_and_resumes_to_the_uninterrupted_state() {
    let Some(server) =
        TestServer::create("a_run_whose_server_stops_mid_run_fails_retryably_and_resumes_to_the_uninterrupted_state")
            .await
    else {
        return;
    };
    let server = Arc::new(server);
    let expected = uninterrupted(&server).await;
    let ledger = Ledger::default();
    let app = app(&server, &ledger, Outage::Stop).await;

    let config = RunConfig::thread("stopped").durability(Durability::Sync);
    let failed = tokio::time::timeout(HANG, app.invoke(Work::default(), config.clone())).await.expect("the run hangs");
    match failed {
        Err(dashflow::Error::Checkpoint(error)) => assert!(error.is_retryable(), "not retryable: {error}"),
        other => panic!("expected a retryable checkpoint error, got {other:?}"),
    }

    server.start().await;
    // The same graph and pool resume the thread from its last committed checkpoint.
    let resumed = app.resume(Command::new(), config.clone()).await.unwrap();
    assert_eq!(resumed.state, expected);
    assert_eq!(app.get_state(&config).await.unwrap().unwrap().state, expected);
    // Tasks of steps committed before the outage ran once; only the step in flight ran again.
    let runs = runs(&ledger);
    assert_eq!(runs.len(), NODES.len());
    let again: Vec<&String> = runs.iter().filter(|&(_, &count)| count > 1).map(|(key, _)| key).collect();
    assert!(again.len() == 1 && again[0].contains(":three:"), "{runs:?}");
    assert!(runs.values().all(|&count| count <= 2), "{runs:?}");
}
