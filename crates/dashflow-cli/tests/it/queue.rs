//! `dashflow workers list` and `dashflow queue stats` against a PostgreSQL run queue.

use std::sync::Arc;
use std::time::Duration;

use dashflow::distributed::{Client, RegisteredGraph, RunRequest, Worker};
use dashflow::{CompiledGraph, END, NodeError, START, StateGraph};
use dashflow_checkpoint_postgres::testing::TestDatabase;
use dashflow_queue::{
    Finish, GraphKey, NewRun, RunKind, RunQueue, RunState, StreamEntry, Timings, WorkerInfo, WorkerState,
};
use dashflow_queue_postgres::PostgresRunQueue;
use serde_json::json;

use crate::common::{Ticket, TicketUpdate, block_on, command, dashflow};

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

#[test]
fn runs_list_show_cancel_and_retry_over_the_queue_show_workers_attempts_and_queue_latency() {
    block_on(async {
        let test = "runs_list_show_and_cancel_over_the_queue_show_workers_attempts_and_queue_latency";
        let Some(database) = TestDatabase::from_env(test).await else { return };
        let queue = PostgresRunQueue::new(database.checkpointer().await).await.unwrap();
        let key = GraphKey::new("support", "v1", 1);
        let info = WorkerInfo::new("w-1", "host-a", 42, vec!["default".into()], vec![key.clone()], 4);
        queue.register_worker(&info).await.unwrap();
        let runs: Vec<NewRun> = ["done", "busy", "waiting"]
            .iter()
            .map(|t| NewRun::new(key.clone(), *t, RunKind::Invoke, Vec::new()))
            .collect();
        for run in &runs {
            queue.submit(run.clone()).await.unwrap();
        }
        let claimed = queue.claim("w-1", &["default".into()], std::slice::from_ref(&key), 2).await.unwrap();
        let done = claimed.iter().find(|c| c.lease.thread_id == "done").unwrap();
        let busy = claimed.iter().find(|c| c.lease.thread_id == "busy").unwrap();
        queue.finish(&done.lease, Finish::new(RunState::Completed, None)).await.unwrap();
        let streams = queue.streams().unwrap();
        let events = [
            json!({ "kind": { "TaskStarted": { "step": 1, "node": "classify", "attempt": 1 } } }),
            json!({ "kind": { "TaskFinished": { "step": 1, "node": "classify", "attempt": 1, "error": null } } }),
        ];
        let entries: Vec<StreamEntry> = events.into_iter().map(|event| StreamEntry::new(Some(1), event)).collect();
        streams.append(&busy.lease, busy.attempt, &entries).await.unwrap();
        let url = std::env::var(dashflow_checkpoint_postgres::testing::URL_VAR).unwrap();
        let schema = database.schema();

        let out = dashflow(&["runs", "list", "--postgres", &url, "--schema", schema]);
        let stdout = out.ok();
        let header: Vec<&str> = stdout.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            &header[..8],
            ["RUN", "GRAPH", "THREAD", "STATE", "WORKER", "ATTEMPT", "EPOCH", "QUEUED"],
            "{stdout}"
        );
        let row = |thread: &str| -> Vec<String> {
            let line = stdout.lines().find(|line| line.split_whitespace().nth(2) == Some(thread)).unwrap();
            line.split_whitespace().map(str::to_owned).collect()
        };
        let (done_row, busy_row, waiting_row) = (row("done"), row("busy"), row("waiting"));
        assert_eq!(&done_row[3..7], ["completed", "w-1", "1", "1"], "{stdout}");
        assert_eq!(&busy_row[3..6], ["running", "w-1", "1"], "{stdout}");
        assert_eq!(&waiting_row[3..8], ["queued", "-", "0", "-", "-"], "{stdout}");
        // A claimed run shows how long it waited: a duration, not a dash.
        assert!(busy_row[7] != "-" && busy_row[7].chars().next().unwrap().is_ascii_digit(), "{stdout}");

        let out = dashflow(&["runs", "list", "--postgres", &url, "--schema", schema, "--state", "queued", "--json"]);
        let listed: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(listed[0]["thread_id"], "waiting");
        assert_eq!(listed[0]["queue_latency_ms"], serde_json::Value::Null);

        let out = dashflow(&["runs", "show", &busy.lease.run_id, "--postgres", &url, "--schema", schema]);
        let stdout = out.ok();
        assert!(stdout.contains("state     running"), "{stdout}");
        assert!(stdout.contains("worker    w-1"), "{stdout}");
        assert!(stdout.contains(&format!("attempt   1 (fence epoch {})", busy.lease.epoch)), "{stdout}");
        assert!(stdout.contains("events 2 streamed"), "{stdout}");
        assert!(stdout.contains("TaskFinished step=1 node=classify"), "{stdout}");

        let out = dashflow(&["runs", "show", "01NOSUCHRUN", "--postgres", &url, "--schema", schema]);
        assert!(out.failed().contains("no run 01NOSUCHRUN in the queue"), "{out:?}");

        let cancel = |run_id: &str| dashflow(&["runs", "cancel", run_id, "--postgres", &url, "--schema", schema]);
        let waiting_id = &runs[2].run_id;
        assert_eq!(cancel(waiting_id).ok().trim(), format!("run {waiting_id}: cancelled"));
        assert_eq!(queue.get(waiting_id).await.unwrap().unwrap().state, RunState::Cancelled);
        assert!(cancel(&busy.lease.run_id).ok().contains("cancel requested"));
        let reply = queue.heartbeat("w-1", std::slice::from_ref(&busy.lease), &Timings::default()).await.unwrap();
        assert_eq!(reply.cancel, std::slice::from_ref(&busy.lease.run_id), "the worker is asked to stop the run");
        assert!(cancel(&done.lease.run_id).ok().contains("already completed"));

        let retry = |run_id: &str, more: &[&str]| {
            let mut args = vec!["runs", "retry", run_id, "--postgres", &url, "--schema", schema];
            args.extend_from_slice(more);
            dashflow(&args)
        };
        let out = retry(waiting_id, &["--attempts", "2"]);
        assert!(out.ok().starts_with(&format!("run {waiting_id}: queued again, with 2 more attempts")), "{out:?}");
        assert_eq!(queue.get(waiting_id).await.unwrap().unwrap().state, RunState::Queued);
        let out = retry(&done.lease.run_id, &[]);
        assert!(out.failed().contains("it is completed; only failed or cancelled runs are retried"), "{out:?}");
        let none = retry(waiting_id, &["--attempts", "0"]);
        assert!(none.code == 2 && none.stderr.contains("--attempts"), "no attempts is a usage error: {none:?}");
    });
}

#[test]
fn workers_drain_lets_a_worker_finish_its_run_and_claim_no_more() {
    block_on(async {
        let test = "workers_drain_lets_a_worker_finish_its_run_and_claim_no_more";
        let Some(database) = TestDatabase::from_env(test).await else { return };
        let queue = Arc::new(PostgresRunQueue::new(database.checkpointer().await).await.unwrap());
        let (open, gate) = tokio::sync::watch::channel(false);
        let mut graph = StateGraph::<Ticket>::new();
        graph
            .add_node("hold", move |_: Arc<Ticket>| {
                let mut gate = gate.clone();
                async move {
                    gate.wait_for(|open| *open).await.map_err(|_| NodeError::msg("the test dropped the gate"))?;
                    Ok::<_, NodeError>(TicketUpdate::default().reply("held".to_owned()))
                }
            })
            .add_edge(START, "hold")
            .add_edge("hold", END);
        let graph = RegisteredGraph::new("hold", "v1", CompiledGraph::new(graph.build().unwrap()));
        let worker = Worker::builder(Arc::clone(&queue) as Arc<dyn RunQueue>)
            .graph(graph.clone())
            .worker_id("drained")
            .timings(Timings::short())
            .build()
            .unwrap();
        let running = tokio::spawn(worker.run(std::future::pending()));
        let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>).with_poll_interval(Duration::from_millis(50));
        let (held, _) = client.submit(&graph, RunRequest::invoke(Ticket::default()).thread("held")).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while queue.get(&held).await.unwrap().unwrap().state != RunState::Running {
            assert!(tokio::time::Instant::now() < deadline, "the worker never claimed the run");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let url = std::env::var(dashflow_checkpoint_postgres::testing::URL_VAR).unwrap();
        let schema = database.schema();
        let out = dashflow(&["workers", "drain", "drained", "--postgres", &url, "--schema", schema]);
        assert!(out.ok().contains("worker drained is draining"), "{out:?}");
        let drained_at: f64 =
            sqlx::query_scalar("SELECT extract(epoch FROM now())::float8").fetch_one(queue.pool()).await.unwrap();
        let (later, _) = client.submit(&graph, RunRequest::invoke(Ticket::default()).thread("later")).await.unwrap();
        let out = dashflow(&["workers", "list", "--db", &url, "--schema", schema]);
        assert!(out.ok().lines().nth(1).unwrap().ends_with("draining"), "{out:?}");
        // A heartbeat after the drain tells the worker; its run is still held at its gate.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let beat: f64 = sqlx::query_scalar(
                "SELECT extract(epoch FROM heartbeat_at)::float8 FROM dashflow_workers WHERE worker_id = 'drained'",
            )
            .fetch_one(queue.pool())
            .await
            .unwrap();
            if beat > drained_at {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the worker never heart-beat after the drain");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!running.is_finished(), "the worker stopped before finishing the run it held");
        open.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), running).await.unwrap().unwrap().unwrap();
        assert_eq!(queue.get(&held).await.unwrap().unwrap().state, RunState::Completed);
        assert_eq!(queue.get(&later).await.unwrap().unwrap().state, RunState::Queued, "a draining worker claimed");
        let workers = queue.workers().await.unwrap();
        assert_eq!(workers[0].state, WorkerState::Stopped);
        let out = dashflow(&["workers", "drain", "drained", "--postgres", &url, "--schema", schema]);
        assert!(out.failed().contains("running worker drained was not found"), "{out:?}");
    });
}

#[test]
fn queue_stats_reports_dead_rows_and_the_oldest_xmin() {
    block_on(async {
        let test = "queue_stats_reports_dead_rows_and_the_oldest_xmin";
        let Some(database) = TestDatabase::from_env(test).await else { return };
        let queue = PostgresRunQueue::new(database.checkpointer().await).await.unwrap();
        let key = GraphKey::new("support", "v1", 1);
        for n in 0..30 {
            queue.submit(NewRun::new(key.clone(), format!("t{n}"), RunKind::Invoke, Vec::new())).await.unwrap();
        }
        // Twenty dead rows (too few for autovacuum to remove them first), reported at once.
        let mut conn = database.admin().await;
        sqlx::query("SELECT set_config('search_path', $1, false)")
            .bind(database.schema())
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("DELETE FROM dashflow_runs WHERE run_id IN (SELECT run_id FROM dashflow_runs LIMIT 20)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("SELECT pg_stat_force_next_flush()").execute(&mut conn).await.unwrap();
        // A snapshot held open, then transactions after it.
        let mut holder = database.admin().await;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ").execute(&mut holder).await.unwrap();
        sqlx::query("SELECT count(*) FROM pg_class").execute(&mut holder).await.unwrap();
        for _ in 0..3 {
            sqlx::query("SELECT txid_current()").execute(&mut conn).await.unwrap();
        }
        let held_age: i64 =
            sqlx::query_scalar("SELECT age(backend_xmin)::bigint FROM pg_stat_activity WHERE pid = pg_backend_pid()")
                .fetch_one(&mut holder)
                .await
                .unwrap();
        let url = std::env::var(dashflow_checkpoint_postgres::testing::URL_VAR).unwrap();
        let schema = database.schema();

        let out = dashflow(&["queue", "stats", "--db", &url, "--schema", schema]);
        let stdout = out.ok();
        let runs_row: Vec<&str> =
            stdout.lines().find(|line| line.starts_with("dashflow_runs ")).unwrap().split_whitespace().collect();
        // Live rows count what other sessions reported so far (statistics lag); dead rows are
        // this session's, reported at once. Twenty dead rows are a share but no burden: no
        // warning (autovacuum leaves small tables be).
        assert_eq!(runs_row[2], "20", "{stdout}");
        assert!(!stdout.contains("rows of dashflow_runs"), "{stdout}");
        let xmin = stdout.lines().find(|line| line.starts_with("oldest xmin: ")).unwrap();
        let age: i64 = xmin["oldest xmin: ".len()..].split(' ').next().unwrap().parse().unwrap();
        assert!(age >= held_age && held_age >= 3, "{xmin} (our snapshot is {held_age} transactions old)");

        let out = dashflow(&["queue", "stats", "--db", &url, "--schema", schema, "--json"]);
        let report: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
        let runs_table = report["tables"].as_array().unwrap().iter().find(|t| t["table"] == "dashflow_runs").unwrap();
        assert_eq!(runs_table["dead_tuples"], 20);
        assert!(report["oldest_xmin"]["age"].as_i64().unwrap() >= held_age);
        assert_eq!(report["runs"][0]["state"], "queued");
        // Twelve hundred more dead rows, most of the table: now a warning. (The snapshot held
        // above keeps autovacuum from removing them meanwhile.)
        for n in 30..1230 {
            queue.submit(NewRun::new(key.clone(), format!("t{n}"), RunKind::Invoke, Vec::new())).await.unwrap();
        }
        sqlx::query("DELETE FROM dashflow_runs WHERE run_id IN (SELECT run_id FROM dashflow_runs LIMIT 1200)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("SELECT pg_stat_force_next_flush()").execute(&mut conn).await.unwrap();
        let out = dashflow(&["queue", "stats", "--db", &url, "--schema", schema]);
        let warning = out.ok().lines().find(|line| line.contains(" rows of dashflow_runs (")).unwrap_or_default();
        // 1,220 unless autovacuum removed the twenty older ones meanwhile.
        let dead: i64 =
            warning.strip_prefix("warning: ").and_then(|rest| rest.split(' ').next()?.parse().ok()).unwrap_or(0);
        assert!(dead >= 1200, "{out:?}");
        sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    });
}

/// Waits for `child` to exit by itself, at most `limit`; kills it past that.
fn exit_within(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            child.kill().unwrap();
            panic!("`dashflow runs follow` did not end with its run within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn runs_follow_prints_a_running_runs_stream_as_it_grows_and_ends_with_the_run() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;

    block_on(async {
        let test = "runs_follow_prints_a_running_runs_stream_as_it_grows_and_ends_with_the_run";
        let Some(database) = TestDatabase::from_env(test).await else { return };
        let queue = PostgresRunQueue::new(database.checkpointer().await).await.unwrap();
        let key = GraphKey::new("support", "v1", 1);
        let info = WorkerInfo::new("w-1", "host-a", 42, vec!["default".into()], vec![key.clone()], 4);
        queue.register_worker(&info).await.unwrap();
        queue.submit(NewRun::new(key.clone(), "followed", RunKind::Invoke, Vec::new())).await.unwrap();
        let claimed = queue.claim("w-1", &["default".into()], std::slice::from_ref(&key), 1).await.unwrap();
        let run = &claimed[0];
        let streams = queue.streams().unwrap();
        let task = |step: i64, node: &str| {
            StreamEntry::new(
                Some(step),
                json!({ "kind": { "TaskFinished": { "step": step, "node": node, "attempt": 1, "error": null } } }),
            )
        };
        streams.append(&run.lease, run.attempt, &[task(1, "classify"), task(2, "draft")]).await.unwrap();
        let url = std::env::var(dashflow_checkpoint_postgres::testing::URL_VAR).unwrap();
        let schema = database.schema();
        let run_id = run.lease.run_id.as_str();

        // An interval far past the test's bound: the new item and the run's end reach the
        // follower through the queue's notifications.
        let mut child = command()
            .args(["runs", "follow", run_id, "--postgres", &url, "--schema", schema, "--interval-ms", "600000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut notice = String::new();
        BufReader::new(child.stderr.take().unwrap()).read_line(&mut notice).unwrap();
        assert_eq!(notice.trim(), format!("following run {run_id} (running); it ends when the run does"));
        // What the stream held when it started, before anything more is appended.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = [String::new(), String::new()];
        for line in &mut first {
            stdout.read_line(line).unwrap();
        }
        assert!(first[0].contains("TaskFinished step=1 node=classify"), "{first:?}");
        assert!(first[1].contains("TaskFinished step=2 node=draft"), "{first:?}");

        streams.append(&run.lease, run.attempt, &[task(3, "review")]).await.unwrap();
        queue.finish(&run.lease, Finish::new(RunState::Completed, None)).await.unwrap();
        let status = exit_within(&mut child, Duration::from_secs(30));
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        assert!(status.success(), "{rest}");
        let rest: Vec<&str> = rest.lines().collect();
        assert_eq!(rest.len(), 2, "{rest:?}");
        assert!(rest[0].contains("TaskFinished step=3 node=review"), "{rest:?}");
        assert_eq!(rest[1], format!("run {run_id}: completed"));

        // Following again after the items seen: only what was not, and the end, as JSON.
        let out =
            dashflow(&["runs", "follow", run_id, "--postgres", &url, "--schema", schema, "--after", "2", "--json"]);
        let lines: Vec<serde_json::Value> = out.ok().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{}", out.stdout);
        assert_eq!((lines[0]["seq"].as_i64(), lines[0]["attempt"].as_i64()), (Some(3), Some(run.attempt.into())));
        assert_eq!(lines[0]["item"]["kind"]["TaskFinished"]["node"], "review");
        assert_eq!(lines[1], json!({ "run_id": run_id, "state": "completed", "error": null }));

        let out = dashflow(&["runs", "follow", "01NOSUCHRUN", "--postgres", &url, "--schema", schema]);
        assert!(out.failed().contains("no run 01NOSUCHRUN in the queue"), "{out:?}");
    });
}
