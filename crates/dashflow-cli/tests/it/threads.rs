use std::path::Path;
use std::sync::Arc;

use dashflow::{CompiledGraph, RunConfig, RunId};
use dashflow_checkpoint::Checkpointer;
use dashflow_checkpoint_postgres::testing::TestDatabase;
use dashflow_checkpoint_sqlite::SqliteCheckpointer;
use dashflow_wal::StoreConfig;

use crate::common::{Home, Ticket, block_on, dashflow, observed, support_graph, ticket};

/// Runs the support graph on thread `ticket-7`, pausing before `answer`, then resumes it.
/// Returns the ids of the two runs.
async fn checkpointed_runs(app: CompiledGraph<Ticket>) -> (RunId, RunId) {
    let app = app.interrupt_before(["answer"]).unwrap();
    let (paused, resumed) = (RunId::new(), RunId::new());
    let result = app.invoke(ticket("refund for march"), RunConfig::thread("ticket-7").run_id(paused)).await.unwrap();
    assert!(matches!(result.status, dashflow::RunStatus::Interrupted { .. }));
    app.resume(dashflow::Command::new(), RunConfig::thread("ticket-7").run_id(resumed)).await.unwrap();
    (paused, resumed)
}

fn fill_sqlite(home: &Home, db: &Path) -> (RunId, RunId) {
    let store = home.store(StoreConfig::default());
    let runs = block_on(async {
        let checkpointer = SqliteCheckpointer::open(db).await.unwrap();
        checkpointed_runs(observed(support_graph(), &store).with_checkpointer(checkpointer)).await
    });
    store.flush().unwrap();
    runs
}

/// Thread `ticket-7`'s checkpoints in `db`, newest first.
fn listed_sqlite(db: &Path) -> Vec<dashflow_checkpoint::CheckpointRecord> {
    block_on(async {
        let checkpointer = SqliteCheckpointer::open(db).await.unwrap();
        checkpointer.list("ticket-7", &Default::default()).await.unwrap()
    })
}

/// The checkpoint table's rows as (step, kind, source, next) after the header.
fn rows(stdout: &str) -> Vec<Vec<String>> {
    stdout.lines().skip(1).map(|line| line.split_whitespace().map(str::to_owned).collect()).collect()
}

#[test]
fn threads_history_lists_checkpoints_newest_first_from_sqlite() {
    let home = Home::new();
    let db = home.path().join("checkpoints.db");
    fill_sqlite(&home, &db);
    let records = listed_sqlite(&db);

    for url in [db.display().to_string(), format!("sqlite://{}", db.display())] {
        let out = dashflow(&["threads", "history", "ticket-7", "--db", &url]);
        let text = out.ok();
        let header = text.lines().next().unwrap();
        for column in ["CHECKPOINT", "PARENT", "STEP", "KIND", "SOURCE", "BLOB", "CREATED (UTC)", "NEXT"] {
            assert!(header.contains(column), "{column} missing: {header}");
        }
        let rows = rows(text);
        assert_eq!(rows.len(), records.len(), "{text}");
        for (row, record) in rows.iter().zip(&records) {
            assert_eq!(row[0], record.checkpoint_id.to_string(), "newest first:\n{text}");
            assert_eq!(row[1], record.parent_id.as_ref().map_or("-".to_owned(), ToString::to_string));
            assert_eq!(row[2], record.step.to_string());
            assert_eq!(row[3], record.kind.as_str());
        }
        assert_eq!(rows[0].last().unwrap(), "(done)", "the newest checkpoint ends the run:\n{text}");
        assert!(
            text.lines().any(|line| line.ends_with("  answer")),
            "the checkpoint before the pause names the next node:\n{text}"
        );
    }
}

#[test]
fn threads_history_marks_a_checkpoint_whose_blob_changed_and_names_it_on_stderr() {
    let home = Home::new();
    let db = home.path().join("checkpoints.db");
    fill_sqlite(&home, &db);
    let records = listed_sqlite(&db);
    // One byte in the middle of an older checkpoint's blob, as bit rot would change it.
    let damaged = &records[1];
    {
        let connection = rusqlite::Connection::open(&db).unwrap();
        let mut blob: Vec<u8> = connection
            .query_row(
                "SELECT blob FROM checkpoints WHERE thread_id = 'ticket-7' AND checkpoint_id = ?1",
                [damaged.checkpoint_id.to_string()],
                |row| row.get(0),
            )
            .unwrap();
        let middle = blob.len() / 2;
        blob[middle] ^= 0x20;
        let changed = connection
            .execute(
                "UPDATE checkpoints SET blob = ?1 WHERE thread_id = 'ticket-7' AND checkpoint_id = ?2",
                rusqlite::params![blob, damaged.checkpoint_id.to_string()],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    let url = db.display().to_string();

    let out = dashflow(&["threads", "history", "ticket-7", "--db", &url]);
    let text = out.ok();
    assert!(text.lines().next().unwrap().ends_with("CHECKSUM"), "{text}");
    for (row, record) in rows(text).iter().zip(&records) {
        let expected = if record.checkpoint_id == damaged.checkpoint_id { "DAMAGED" } else { "ok" };
        assert_eq!(row.last().map(String::as_str), Some(expected), "{text}");
    }
    let warnings: Vec<&str> = out.stderr.lines().filter(|line| line.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].contains(&damaged.checkpoint_id.to_string()) && warnings[0].contains("ticket-7"),
        "{}",
        out.stderr
    );

    let json = dashflow(&["threads", "history", "ticket-7", "--db", &url, "--json"]);
    let listed: Vec<serde_json::Value> = serde_json::from_str(json.ok()).unwrap();
    let marked: Vec<&str> = listed
        .iter()
        .filter(|record| record.get("damaged").is_some())
        .map(|record| record["checkpoint_id"].as_str().unwrap())
        .collect();
    assert_eq!(marked, [damaged.checkpoint_id.to_string()]);
}

#[test]
fn threads_history_json_has_every_record_field_but_the_state() {
    let home = Home::new();
    let db = home.path().join("checkpoints.db");
    fill_sqlite(&home, &db);
    let out =
        dashflow(&["threads", "history", "ticket-7", "--db", &db.display().to_string(), "--limit", "2", "--json"]);
    let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    let records = json.as_array().unwrap();
    assert_eq!(records.len(), 2);
    let newest = &records[0];
    assert_eq!(newest["thread_id"], "ticket-7");
    assert_eq!(newest["next_nodes"], serde_json::json!([]));
    assert!(newest["blob_bytes"].as_u64().unwrap() > 0);
    assert!(newest["metadata"]["source"].is_string());
    assert!(newest.get("blob").is_none());
}

#[test]
fn an_interrupted_run_shows_where_it_paused() {
    let home = Home::new();
    let db = home.path().join("checkpoints.db");
    let (paused, _) = fill_sqlite(&home, &db);
    let out = home.dashflow(&["runs", "show", &paused.to_string()]);
    let text = out.ok();
    assert!(text.contains("status    interrupted"), "{text}");
    assert!(
        text.trim_end().ends_with("⏸ interrupted before answer after step 2; resuming the thread continues the run"),
        "{text}"
    );
}

#[test]
fn threads_history_of_an_unknown_thread_fails() {
    let home = Home::new();
    let db = home.path().join("checkpoints.db");
    fill_sqlite(&home, &db);
    let out = dashflow(&["threads", "history", "ticket-8", "--db", &db.display().to_string()]);
    assert!(out.failed().contains("thread `ticket-8` has no checkpoints in"), "{out:#?}");
}

#[test]
fn threads_history_of_a_missing_sqlite_file_fails_without_creating_it() {
    let home = Home::new();
    let db = home.path().join("nothing-here.db");
    let out = dashflow(&["threads", "history", "t", "--db", &db.display().to_string()]);
    assert!(out.failed().contains(&format!("no checkpoint database at {}", db.display())), "{out:#?}");
    assert!(!db.exists());
    let out = dashflow(&["threads", "history", "t", "--db", &db.display().to_string(), "--schema", "s"]);
    assert!(out.failed().contains("--schema applies to PostgreSQL only"), "{out:#?}");
}

#[test]
fn threads_history_reads_postgres_when_a_server_is_configured() {
    block_on(async {
        let Some(database) = TestDatabase::from_env("threads_history_reads_postgres_when_a_server_is_configured").await
        else {
            return;
        };
        let checkpointer = Arc::new(database.checkpointer().await);
        checkpointed_runs(support_graph().with_checkpointer(checkpointer.clone())).await;
        let records = checkpointer.list("ticket-7", &Default::default()).await.unwrap();
        let url = std::env::var(dashflow_checkpoint_postgres::testing::URL_VAR).unwrap();

        let out = dashflow(&["threads", "history", "ticket-7", "--db", &url, "--schema", database.schema()]);
        let table = rows(out.ok());
        assert_eq!(table.len(), records.len(), "{}", out.stdout);
        assert_eq!(table[0][0], records[0].checkpoint_id.to_string());
        assert_eq!(table[0].last().unwrap(), "(done)");

        // The schema can also be chosen in the URL.
        let separator = if url.contains('?') { '&' } else { '?' };
        let in_url = format!("{url}{separator}options=-csearch_path%3D{}", database.schema());
        let out = dashflow(&["threads", "history", "ticket-7", "--db", &in_url]);
        assert_eq!(rows(out.ok()).len(), table.len(), "{}", out.stdout);
    });
}
