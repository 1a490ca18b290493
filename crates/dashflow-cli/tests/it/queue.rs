//! `dashflow workers list` and `dashflow queue stats` against a PostgreSQL run queue.

use dashflow_checkpoint_postgres::testing::TestDatabase;
use dashflow_queue::{GraphKey, NewRun, RunKind, RunQueue, Timings, WorkerInfo};
use dashflow_queue_postgres::PostgresRunQueue;

use crate::common::{block_on, dashflow};

#[test]
fn workers_list_and_queue_stats_show_the_queue_and_warn_of_graphs_no_worker_has() {
    block_on(async {
        let test = "workers_list_and_queue_stats_show_the_queue_and_warn_of_graphs_no_worker_has";
        let Some(database) = TestDatabase::from_env(test).await else { return };
        let queue = PostgresRunQueue::new(database.checkpointer().await).await.unwrap();
        let (have, lack) = (GraphKey::new("support", "v1", 1), GraphKey::new("support", "v2", 2));
        let info = WorkerInfo::new("w-1", "host-a", 42, vec!["default".into()], vec![have.clone()], 4).version("1.2.3");
        queue.register_worker(&info).await.unwrap();
        queue.heartbeat("w-1", &[], &Timings::default()).await.unwrap();
        for (key, thread) in [(&have, "a"), (&have, "b"), (&lack, "c")] {
            queue.submit(NewRun::new(key.clone(), thread, RunKind::Invoke, Vec::new())).await.unwrap();
        }
        queue.claim("w-1", &["default".into()], std::slice::from_ref(&have), 1).await.unwrap();
        let url = std::env::var(dashflow_checkpoint_postgres::testing::URL_VAR).unwrap();
        let schema = database.schema();

        let out = dashflow(&["workers", "list", "--db", &url, "--schema", schema]);
        let lines: Vec<&str> = out.ok().lines().collect();
        assert!(lines[0].starts_with("WORKER"), "{}", out.stdout);
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            (row[0], row[1], row[2], row[3], row[5], *row.last().unwrap()),
            ("w-1", "host-a", "42", "1.2.3", "4", "live"),
            "{}",
            out.stdout
        );

        let out = dashflow(&["queue", "stats", "--db", &url, "--schema", schema]);
        let stdout = out.ok();
        let rows: Vec<Vec<&str>> = stdout.lines().skip(1).map(|line| line.split_whitespace().collect()).collect();
        let count = |state: &str| rows.iter().find(|row| row.get(2) == Some(&state)).map(|row| row[3]);
        assert_eq!(count("queued"), Some("2"), "{stdout}");
        assert_eq!(count("running"), Some("1"), "{stdout}");
        assert!(
            stdout.contains(&format!("warning: runs of graph {lack} are queued and no live worker has that graph")),
            "{stdout}"
        );
        assert!(!stdout.contains(&format!("graph {have} are queued")), "{stdout}");

        let out = dashflow(&["workers", "list", "--db", &url, "--schema", schema, "--json"]);
        let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
        assert_eq!(json[0]["worker_id"], "w-1");
        assert_eq!(json[0]["state"], "live");
    });
}
