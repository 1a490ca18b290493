//! Errors name their cause: each error's own message says what failed and where, its causes
//! follow through `source()`, and a report (`dashflow::Report`, anyhow's `{:#}`) names the
//! root cause exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::error::Error as StdError;

use dashflow::prelude::{Deserialize, GraphState, NodeError, RunConfig, START, Serialize, StateGraph};
use dashflow::{PostgresCheckpointer, Report, SqliteCheckpointer};

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Counter {
    count: u32,
}

/// Every message of the chain, outermost first.
fn chain(error: &(dyn StdError + 'static)) -> Vec<String> {
    let mut messages = vec![error.to_string()];
    let mut cause = error.source();
    while let Some(next) = cause {
        messages.push(next.to_string());
        cause = next.source();
    }
    messages
}

/// Asserts that the report of `error` names `place` and names each of `causes` exactly once,
/// and that no link of its chain repeats what a link below it says.
fn assert_names_once(error: &(dyn StdError + 'static), place: &str, causes: &[&str]) -> String {
    let report = Report(error).to_string();
    assert!(report.contains(place), "`{place}` should be named in: {report}");
    for text in causes {
        assert_eq!(report.matches(text).count(), 1, "`{text}` should appear once in: {report}");
    }
    let links = chain(error);
    for (index, link) in links.iter().enumerate() {
        for below in &links[index + 1..] {
            assert!(!link.contains(below.as_str()), "`{link}` repeats its cause `{below}`");
        }
    }
    report
}

/// A directory path that no user, root included, can create: it lies under a regular file.
fn path_under_a_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    file.join("sub")
}

#[tokio::test]
async fn a_checkpoint_database_that_cannot_be_created_names_its_path_and_the_system_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_under_a_file(&dir).join("checkpoints.db");
    let error = SqliteCheckpointer::open(&path).await.unwrap_err();
    assert_names_once(&error, &path.display().to_string(), &["Not a directory"]);
}

#[test]
fn a_log_that_cannot_be_created_names_its_path_and_the_system_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_under_a_file(&dir).join("wal");
    let error = dashflow::wal::Wal::open(&path, dashflow::wal::WalConfig::default()).unwrap_err();
    assert_names_once(&error, &path.display().to_string(), &["Not a directory"]);
}

#[tokio::test]
async fn a_failed_node_names_the_node_and_its_own_error_once() {
    let mut graph = StateGraph::<Counter>::new();
    graph
        .add_node("charge", |_: std::sync::Arc<Counter>| async {
            Err::<CounterUpdate, _>(NodeError::permanent_msg("card declined by the issuer"))
        })
        .add_edge(START, "charge")
        .add_edge("charge", dashflow::END);
    let app = dashflow::CompiledGraph::new(graph.build().unwrap());
    let error = app.invoke(Counter::default(), RunConfig::default()).await.unwrap_err();
    let report = assert_names_once(&error, "node `charge` failed", &["card declined by the issuer"]);
    assert!(report.starts_with("node `charge` failed at step"), "{report}");
}

#[tokio::test]
async fn postgres_on_a_closed_port_fails_at_once_with_the_refusal() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let error = PostgresCheckpointer::connect(&format!("postgres://postgres@127.0.0.1:{port}/test")).await.unwrap_err();
    assert!(error.is_retryable(), "a server that is down may come up: {error:?}");
    assert_names_once(&error, &format!("127.0.0.1:{port}"), &["Connection refused"]);
}

#[tokio::test]
async fn a_checkpoint_write_that_fails_under_a_run_names_the_database_and_the_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoints.db");
    // A database capped below what the run writes: SQLite itself refuses the write.
    let options = dashflow::SqliteOptions::new().max_size_bytes(16 * 1024);
    let checkpointer = SqliteCheckpointer::open_with(&path, options).await.unwrap();
    let mut graph = StateGraph::<Notes>::new();
    graph
        .add_node("write", |_: std::sync::Arc<Notes>| async {
            Ok::<_, NodeError>(NotesUpdate::default().text("x".repeat(64 * 1024)))
        })
        .add_edge(START, "write")
        .add_edge("write", dashflow::END);
    let app = dashflow::CompiledGraph::new(graph.build().unwrap()).with_checkpointer(checkpointer);
    let error = app.invoke(Notes::default(), RunConfig::thread("t-full")).await.unwrap_err();
    assert!(matches!(error, dashflow::Error::Checkpoint(_)), "{error:?}");
    assert_names_once(&error, &format!("`{}`", path.display()), &["database or disk is full"]);
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Notes {
    text: String,
}
