use std::path::Path;
use std::sync::Arc;

use dashflow::RunConfig;
use dashflow_checkpoint::{Checkpointer, ThreadListOptions, ThreadSummary};
use dashflow_checkpoint_postgres::testing::TestDatabase;
use dashflow_checkpoint_sqlite::SqliteCheckpointer;

use crate::common::{block_on, dashflow, support_graph, ticket};

/// The threads the support graph leaves: three that completed (`ticket-1`, `ticket-2`,
/// `user-1`) and one paused before `answer` (`ticket-3`).
async fn run_threads(checkpointer: Arc<dyn Checkpointer>) -> Vec<ThreadSummary> {
    let app = support_graph().with_checkpointer(checkpointer.clone());
    for thread in ["ticket-1", "user-1", "ticket-2"] {
        app.invoke(ticket("refund for march"), RunConfig::thread(thread)).await.unwrap();
    }
    let paused = app.interrupt_before(["answer"]).unwrap();
    paused.invoke(ticket("where is my parcel"), RunConfig::thread("ticket-3")).await.unwrap();
    checkpointer.list_threads(&ThreadListOptions::new()).await.unwrap()
}

fn fill_sqlite(db: &Path) -> Vec<ThreadSummary> {
    block_on(async {
        let checkpointer = SqliteCheckpointer::open(db).await.unwrap();
        run_threads(Arc::new(checkpointer)).await
    })
}

/// The table's rows (split on whitespace) after the header, up to a `more:` line.
fn rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with("more:"))
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect()
}

fn thread_ids(stdout: &str) -> Vec<String> {
    rows(stdout).into_iter().map(|row| row[0].clone()).collect()
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap()
}

#[test]
fn threads_list_shows_every_thread_with_its_latest_checkpoint_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("checkpoints.db");
    let threads = fill_sqlite(&db);
    assert_eq!(threads.len(), 4);
    let db = db.display().to_string();

    let out = dashflow(&["threads", "list", "--db", &db]);
    let text = out.ok();
    let header = text.lines().next().unwrap();
    for column in ["THREAD", "LATEST CHECKPOINT", "STEP", "SOURCE", "CHECKPOINTS", "UPDATED (UTC)"] {
        assert!(header.contains(column), "{column} missing: {header}");
    }
    let rows = rows(text);
    assert_eq!(rows.len(), threads.len(), "{text}");
    for (row, thread) in rows.iter().zip(&threads) {
        assert_eq!(row[0], thread.thread_id, "newest first:\n{text}");
        assert_eq!(row[1], thread.checkpoint_id.to_string());
        assert_eq!(row[2], thread.step.to_string());
        assert_eq!(row[4], thread.checkpoints.to_string());
    }
    assert!(!text.contains("more:"), "a page shorter than the limit is the last:\n{text}");

    // The paused thread stopped a step earlier than the finished ones and has fewer
    // checkpoints.
    let paused = threads.iter().find(|thread| thread.thread_id == "ticket-3").unwrap();
    let done = threads.iter().find(|thread| thread.thread_id == "ticket-1").unwrap();
    assert!(paused.step < done.step && paused.checkpoints < done.checkpoints, "{threads:#?}");
}

#[test]
fn threads_list_filters_by_prefix_time_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("checkpoints.db");
    let threads = fill_sqlite(&db);
    let db = db.display().to_string();

    let out = dashflow(&["threads", "list", "--db", &db, "--prefix", "ticket-"]);
    let expected: Vec<String> =
        threads.iter().map(|thread| thread.thread_id.clone()).filter(|id| id.starts_with("ticket-")).collect();
    assert_eq!(thread_ids(out.ok()), expected);

    let out = dashflow(&["threads", "list", "--db", &db, "--since", "1h"]);
    assert_eq!(thread_ids(out.ok()).len(), threads.len());
    let out = dashflow(&["threads", "list", "--db", &db, "--before", "2000-01-01"]);
    assert!(out.ok().contains("no threads in"), "{out:#?}");
    let out = dashflow(&["threads", "list", "--db", &db, "--since", "2000-01-01", "--before", "1h", "--json"]);
    assert_eq!(json(out.ok())["threads"], serde_json::json!([]), "every thread was updated in the last hour");

    let paused = threads.iter().find(|thread| thread.thread_id == "ticket-3").unwrap();
    let step = format!("step={}", paused.metadata["step"]);
    let out = dashflow(&["threads", "list", "--db", &db, "--metadata", &step]);
    assert_eq!(thread_ids(out.ok()), ["ticket-3"], "only the paused thread stopped at {step}");
    let source = format!("source={}", paused.metadata["source"].as_str().unwrap());
    let out = dashflow(&["threads", "list", "--db", &db, "--metadata", &step, "--metadata", &source, "--json"]);
    let listed = json(out.ok());
    assert_eq!(listed["threads"][0]["thread_id"], "ticket-3");
    assert_eq!(listed["threads"][0]["metadata"], serde_json::to_value(&paused.metadata).unwrap());

    let out = dashflow(&["threads", "list", "--db", &db, "--metadata", "no-equals-sign"]);
    assert_eq!(out.code, 2, "a usage error: {out:#?}");
    assert!(out.stderr.contains("is not KEY=VALUE"), "{out:#?}");
}

#[test]
fn threads_list_pages_with_the_cursor_it_prints() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("checkpoints.db");
    let threads = fill_sqlite(&db);
    let db = db.display().to_string();
    let everything: Vec<String> = threads.iter().map(|thread| thread.thread_id.clone()).collect();

    // Table pages: each full page ends with the --after value of the next.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..3 {
        let mut args = vec!["threads", "list", "--db", &db, "--limit", "3"];
        if let Some(after) = &after {
            args.extend(["--after", after]);
        }
        let out = dashflow(&args);
        let text = out.ok().to_owned();
        paged.extend(thread_ids(&text));
        after =
            text.lines().find_map(|line| line.strip_prefix("more: --after '")?.strip_suffix('\'')).map(str::to_owned);
        if after.is_none() {
            break;
        }
    }
    assert_eq!(paged, everything);

    // JSON pages carry the cursor as `next`, null on the last page.
    let out = dashflow(&["threads", "list", "--db", &db, "--limit", "2", "--json"]);
    let first = json(out.ok());
    let next = first["next"].as_str().unwrap().to_owned();
    assert_eq!(next, threads[1].cursor().to_string());
    let out = dashflow(&["threads", "list", "--db", &db, "--limit", "2", "--json", "--after", &next]);
    let second = json(out.ok());
    let ids: Vec<&str> = [&first, &second]
        .iter()
        .flat_map(|page| page["threads"].as_array().unwrap())
        .map(|thread| thread["thread_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, everything);
    let out = dashflow(&["threads", "list", "--db", &db, "--limit", "0", "--json"]);
    assert_eq!(json(out.ok())["next"], serde_json::Value::Null, "--limit 0 lists everything on one page");

    let out = dashflow(&["threads", "list", "--db", &db, "--after", "yesterday"]);
    assert_eq!(out.code, 2, "a usage error: {out:#?}");
    assert!(out.stderr.contains("is not a thread cursor"), "{out:#?}");
}

#[test]
fn threads_list_of_a_missing_sqlite_file_fails_without_creating_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nothing-here.db");
    let out = dashflow(&["threads", "list", "--db", &db.display().to_string()]);
    assert!(out.failed().contains(&format!("no checkpoint database at {}", db.display())), "{out:#?}");
    assert!(!db.exists());
}

#[test]
fn threads_list_reads_postgres_when_a_server_is_configured() {
    block_on(async {
        let Some(database) = TestDatabase::from_env("threads_list_reads_postgres_when_a_server_is_configured").await
        else {
            return;
        };
        let threads = run_threads(Arc::new(database.checkpointer().await)).await;
        let url = std::env::var(dashflow_checkpoint_postgres::testing::URL_VAR).unwrap();
        let out = dashflow(&["threads", "list", "--db", &url, "--schema", database.schema()]);
        let ids: Vec<String> = threads.iter().map(|thread| thread.thread_id.clone()).collect();
        assert_eq!(thread_ids(out.ok()), ids, "{}", out.stdout);
        let out = dashflow(&["threads", "list", "--db", &url, "--schema", database.schema(), "--prefix", "user"]);
        assert_eq!(thread_ids(out.ok()), ["user-1"], "{}", out.stdout);
    });
}
