//! B8: runs through the PostgreSQL run queue with 1, 2 and 4 worker processes on this machine,
//! against the same runs in one process without the queue; and the time from SIGKILLing a
//! worker to its run's completion elsewhere. Run by `cargo xtask bench --b8`; needs
//! `DASHFLOW_TEST_POSTGRES_URL` (prints a skip line without it).
//!
//! Prints `metric ID NAME VALUE` lines. Rounds: `b8_workers1`, `b8_workers2`, `b8_workers4`
//! (the defaults: `Sync` checkpoints, event streams on), `b8_nostream_workers2` (no event
//! streams), `b8_async_workers2` (`Async` checkpoints) and `b8_in_process` (the same runs in
//! this process, no queue). Per worker round: `runs_per_sec` (submit of the first to finish of
//! the last), `submits_per_sec` (the submitting tasks alone), `p50_ms` and `p99_ms` (submit to
//! finish, database time), `statements_per_run` (round trips of the submitting client and the
//! workers, counted in the client from sqlx's statement events plus one `BEGIN` per
//! transaction; other load does not change it), split into `submit_statements_per_run` and
//! `worker_statements_per_run`; `xact_per_run` (transactions that wrote: transaction ids the
//! server handed out, every client of the server included), `db_cpu_ms_per_run` (CPU time of
//! the server's processes: its postmaster, its children and the children it reaped),
//! `wal_bytes_per_run`, `worker_cpu_ms_per_run` and `client_cpu_ms_per_run` (this process),
//! `stream_rows_per_run` and `stream_items_per_run` (the rows of `dashflow_run_events` its
//! runs' streams took, one per append, and the items they hold).
//! `b8_in_process` has `runs_per_sec`, `statements_per_run`, `xact_per_run`,
//! `db_cpu_ms_per_run`, `wal_bytes_per_run` and `client_cpu_ms_per_run`; `b8_takeover`,
//! `median_s` and `max_s`. CPU times move with other load on the machine; the counts do not.
//!
//! Flags after `--`: `--quick` (300 runs a round, one takeover), `--runs N`,
//! `--only-workers N` (repeatable; no takeover), `--streams-off` (those rounds without
//! streams), `--no-extra` (without the stream-less, `Async` and in-process rounds),
//! `--only-in-process`, `--keep-schema`, `--slots N` (runs each worker runs at once, and the
//! in-process round's runs at once; 64 by default, so that one worker and the in-process
//! round run as many at a time).
//!
//! The benchmark binary is also the worker: with `--b8-worker URL SCHEMA` it runs one.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, reason = "a benchmark program")]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashflow::distributed::{
    Client, PostgresRunQueue, RegisteredGraph, RunQueue, RunRequest, RunState, Worker, WorkerState,
};
use dashflow::prelude::*;
use dashflow::{CompiledGraph, Durability, PostgresCheckpointer};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Runs at once in each worker process, and in the in-process round (`--slots N`).
static SLOTS: AtomicUsize = AtomicUsize::new(64);

/// Round trips this process made to the database: every statement sqlx reports as an event,
/// plus one `BEGIN` per transaction, which sqlx sends without an event (counted through the
/// transaction's end, `COMMIT` or `ROLLBACK`, which has one).
static STATEMENTS: AtomicU64 = AtomicU64::new(0);

/// Whether an event's `summary` is a transaction's end.
struct EndsTransaction(bool);

impl tracing::field::Visit for EndsTransaction {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "summary" {
            self.0 = value.starts_with("COMMIT") || value.starts_with("ROLLBACK");
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
            let text = format!("{value:?}");
            let text = text.trim_start_matches('"');
            self.0 = text.starts_with("COMMIT") || text.starts_with("ROLLBACK");
        }
    }
}

/// Counts sqlx's statement events and nothing else.
struct CountStatements;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountStatements {
    fn register_callsite(&self, metadata: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        if metadata.target() == "sqlx::query" {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        metadata.target() == "sqlx::query"
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut ends = EndsTransaction(false);
        event.record(&mut ends);
        STATEMENTS.fetch_add(if ends.0 { 2 } else { 1 }, Ordering::Relaxed);
    }
}

fn count_statements() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(CountStatements)).unwrap();
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Counter {
    #[reduce(add)]
    counter: u64,
}

/// Ten nodes in a line; each adds 1, or sleeps first when `slow` (for the takeover).
fn chain(name: &str, slow: bool) -> CompiledGraph<Counter> {
    let mut graph = StateGraph::<Counter>::named(name);
    let names: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
    for node in &names {
        graph.add_node(node.as_str(), move |_: Arc<Counter>| async move {
            if slow {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Ok(CounterUpdate::default().counter(1u64))
        });
    }
    graph.add_edge(START, names[0].as_str());
    for pair in names.windows(2) {
        graph.add_edge(pair[0].as_str(), pair[1].as_str());
    }
    graph.add_edge(names[9].as_str(), END);
    // No observers: B8 measures the queue and the checkpoints, as B4 does the database.
    CompiledGraph::new(graph.build().unwrap())
}

fn graphs() -> (RegisteredGraph<Counter>, RegisteredGraph<Counter>) {
    (
        RegisteredGraph::new("b8", "v1", chain("b8", false)),
        RegisteredGraph::new("b8_slow", "v1", chain("b8_slow", true)),
    )
}

fn options(url: &str, schema: &str) -> PgConnectOptions {
    url.parse::<PgConnectOptions>().unwrap().options([("search_path", schema)])
}

async fn queue(url: &str, schema: &str) -> PostgresRunQueue {
    let checkpointer = PostgresCheckpointer::connect_with(options(url, schema)).await.unwrap();
    PostgresRunQueue::new(checkpointer).await.unwrap()
}

fn child(url: &str, schema: &str, streams: Streams) {
    count_statements();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // SIGUSR1 asks for the statement count so far, before the worker registers (the
        // signal's default action would end the process).
        let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).unwrap();
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "statements {}", STATEMENTS.load(Ordering::Relaxed));
                let _ = out.flush();
            }
        });
        let queue: Arc<dyn RunQueue> = Arc::new(queue(url, schema).await);
        let (fast, slow) = graphs();
        let mut builder = Worker::builder(queue)
            .graph(fast)
            .graph(slow)
            .slots(SLOTS.load(Ordering::Relaxed))
            .grace(Duration::from_secs(5));
        if streams == Streams::Off {
            builder = builder.without_event_streams();
        }
        let worker = builder.build().unwrap();
        worker.run(dashflow::distributed::shutdown_signal()).await.unwrap();
    });
}

/// Worker processes, killed when dropped (a failed round must not leave them running).
struct Workers(Vec<Child>);

/// The statement counts each worker reported (one list per worker, in order).
type Reports = Arc<Mutex<Vec<Vec<u64>>>>;

/// Reads the `statements N` lines of each worker's stdout.
fn collect_reports(children: &mut [Child]) -> Reports {
    let reports: Reports = Arc::new(Mutex::new(vec![Vec::new(); children.len()]));
    for (index, child) in children.iter_mut().enumerate() {
        let stdout = child.stdout.take().unwrap();
        let reports = Arc::clone(&reports);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("statements ").and_then(|n| n.parse().ok()) {
                    reports.lock().unwrap()[index].push(n);
                }
            }
        });
    }
    reports
}

/// Asks every worker for its statement count and returns their sum.
async fn worker_statements(children: &[Child], reports: &Reports) -> u64 {
    let seen: Vec<usize> = reports.lock().unwrap().iter().map(Vec::len).collect();
    for child in children {
        Command::new("kill").args(["-USR1", &child.id().to_string()]).status().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        {
            let reports = reports.lock().unwrap();
            if reports.iter().zip(&seen).all(|(got, before)| got.len() > *before) {
                return reports.iter().map(|got| got.last().copied().unwrap_or(0)).sum();
            }
        }
        assert!(Instant::now() < deadline, "the workers did not report their statement counts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether runs stream their events to `dashflow_run_events` (the default) or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Streams {
    On,
    Off,
}

fn spawn_workers(url: &str, schema: &str, count: usize, streams: Streams) -> Vec<Child> {
    let streams = match streams {
        Streams::On => "streams",
        Streams::Off => "no-streams",
    };
    (0..count)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--b8-worker", url, schema, streams, &SLOTS.load(Ordering::Relaxed).to_string()])
                .env("DASHFLOW_WAL", "0")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect()
}

fn stop(mut workers: Workers) {
    for worker in &mut workers.0 {
        let _ = Command::new("kill").args(["-TERM", &worker.id().to_string()]).status();
        let _ = worker.wait();
    }
}

async fn wait_live(queue: &PostgresRunQueue, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while queue.workers().await.unwrap().iter().filter(|w| w.state == WorkerState::Live).count() < count {
        assert!(Instant::now() < deadline, "the workers did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CPU seconds so far of the database server: its postmaster, every live child of it and every
/// child it reaped, found from the admin connection's backend (so another PostgreSQL server on
/// the same machine is not counted). Every `postgres` process of the machine when the server is
/// not on this machine's `/proc` (then other servers' work is counted too).
async fn postgres_cpu(admin: &mut PgConnection) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *admin).await.unwrap();
    let postmaster =
        proc_stat(backend as u32).and_then(|fields| fields.get(1).and_then(|ppid| ppid.parse::<u32>().ok()));
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Some(fields) = proc_stat(pid) else { continue };
        let field = |n: usize| fields.get(n).and_then(|value| value.parse::<u64>().ok()).unwrap_or(0);
        // After `)`: state is field 0, ppid 1, utime 11, stime 12, cutime 13, cstime 14.
        match postmaster {
            Some(postmaster) if pid == postmaster => total += field(11) + field(12) + field(13) + field(14),
            Some(postmaster) if fields.get(1).and_then(|ppid| ppid.parse::<u32>().ok()) == Some(postmaster) => {
                total += field(11) + field(12);
            }
            Some(_) => {}
            None if is_postgres(pid) => total += field(11) + field(12),
            None => {}
        }
    }
    total as f64 / ticks
}

/// CPU seconds so far of processes `pids` (user and system time).
fn cpu_of(pids: impl IntoIterator<Item = u32>) -> f64 {
    let ticks: u64 = pids
        .into_iter()
        .filter_map(proc_stat)
        .map(|fields| {
            let field = |n: usize| fields.get(n).and_then(|value| value.parse::<u64>().ok()).unwrap_or(0);
            field(11) + field(12)
        })
        .sum();
    ticks as f64 / 100.0
}

/// The fields of `/proc/PID/stat` after the command's `)`.
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn is_postgres(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(head, _)| head.ends_with("(postgres")))
        .unwrap_or(false)
}

/// The server's WAL position, in bytes.
async fn wal_lsn(admin: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint").fetch_one(&mut *admin).await.unwrap()
}

/// The server's next transaction id: the difference over a round counts the transactions that
/// wrote (each flushes the WAL at its commit), the server's own and every client's. Unlike
/// `pg_stat_database`'s commit counter, it is exact at once (backends report their counters
/// up to seconds late).
async fn write_transactions(admin: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
        .fetch_one(&mut *admin)
        .await
        .unwrap()
}

async fn round(
    url: &str,
    schema: &str,
    workers: usize,
    (durability, streams): (Durability, Streams),
    runs: usize,
    admin: &mut PgConnection,
) {
    let id = match (durability, streams) {
        (Durability::Sync, Streams::On) => format!("b8_workers{workers}"),
        (Durability::Sync, Streams::Off) => format!("b8_nostream_workers{workers}"),
        (_, Streams::On) => format!("b8_async_workers{workers}"),
        (_, Streams::Off) => format!("b8_async_nostream_workers{workers}"),
    };
    let mut children = Workers(spawn_workers(url, schema, workers, streams));
    let reports = collect_reports(&mut children.0);
    let queue = Arc::new(queue(url, schema).await);
    wait_live(&queue, workers).await;
    let (fast, _) = graphs();
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>);
    let (xact_before, cpu_before, wal_before) =
        (write_transactions(admin).await, postgres_cpu(admin).await, wal_lsn(admin).await);
    let workers_before = worker_statements(&children.0, &reports).await;
    let pids: Vec<u32> = children.0.iter().map(Child::id).collect();
    let (worker_cpu_before, client_cpu_before) = (cpu_of(pids.iter().copied()), cpu_of([std::process::id()]));
    // The end of the round is heard, as a client waiting for its runs hears it: the finishes'
    // notifications, with a count of the round's finished runs only when none came for a
    // while (a notification is a hint). Polling that count instead cost the database a scan a
    // poll, which the round's database time charged to the runs.
    let mut finishes = sqlx::postgres::PgListener::connect(url).await.unwrap();
    finishes.listen("dashflow_done").await.unwrap();
    let submit_before = STATEMENTS.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut submitters = Vec::new();
    for part in 0..8 {
        let (client, fast, id) = (client.clone(), fast.clone(), id.clone());
        submitters.push(tokio::spawn(async move {
            let mut run_ids = Vec::new();
            for n in (part..runs).step_by(8) {
                let mut request =
                    RunRequest::invoke(Counter::default()).thread(format!("{id}-{n}")).durability(durability);
                if streams == Streams::Off {
                    request = request.without_event_stream();
                }
                run_ids.push(client.submit(&fast, request).await.unwrap().0);
            }
            run_ids
        }));
    }
    let mut waiting = std::collections::HashSet::new();
    for submitter in submitters {
        waiting.extend(submitter.await.unwrap());
    }
    let submitted_in = started.elapsed().as_secs_f64();
    let submit_statements = STATEMENTS.load(Ordering::Relaxed) - submit_before;
    while !waiting.is_empty() {
        match tokio::time::timeout(Duration::from_secs(1), finishes.recv()).await {
            Ok(notification) => {
                waiting.remove(notification.unwrap().payload());
            }
            Err(_quiet) => {
                let done: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM dashflow_runs WHERE thread_id LIKE $1 AND state = 'completed'",
                )
                .bind(format!("{id}-%"))
                .fetch_one(&mut *admin)
                .await
                .unwrap();
                if done as usize >= runs {
                    break;
                }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(600), "{id}: runs did not finish");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = postgres_cpu(admin).await - cpu_before;
    let wal = wal_lsn(admin).await - wal_before;
    let worker_cpu = cpu_of(pids.iter().copied()) - worker_cpu_before;
    let client_cpu = cpu_of([std::process::id()]) - client_cpu_before;
    let worker_statements = worker_statements(&children.0, &reports).await - workers_before;
    let xact = write_transactions(admin).await - xact_before;
    // The owner appends a run's events before it finishes the run: its stream is complete.
    let (stream_rows, stream_items): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(e.n_items), 0)::bigint FROM dashflow_run_events e
         JOIN dashflow_runs r ON r.run_id = e.run_id WHERE r.thread_id LIKE $1",
    )
    .bind(format!("{id}-%"))
    .fetch_one(&mut *admin)
    .await
    .unwrap();
    let (p50, p99): (f64, f64) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)
         FROM (SELECT extract(epoch FROM finished_at - created_at) * 1000 AS ms FROM dashflow_runs
               WHERE thread_id LIKE $1) AS latencies",
    )
    .bind(format!("{id}-%"))
    .fetch_one(&mut *admin)
    .await
    .unwrap();
    stop(children);
    println!("metric {id} runs_per_sec {:.1}", runs as f64 / elapsed);
    println!("metric {id} submits_per_sec {:.1}", runs as f64 / submitted_in);
    println!("metric {id} p50_ms {p50:.1}");
    println!("metric {id} p99_ms {p99:.1}");
    println!("metric {id} xact_per_run {:.2}", xact as f64 / runs as f64);
    println!("metric {id} db_cpu_ms_per_run {:.3}", cpu * 1000.0 / runs as f64);
    println!("metric {id} wal_bytes_per_run {:.0}", wal as f64 / runs as f64);
    println!("metric {id} worker_cpu_ms_per_run {:.3}", worker_cpu * 1000.0 / runs as f64);
    println!("metric {id} client_cpu_ms_per_run {:.3}", client_cpu * 1000.0 / runs as f64);
    let per_run = |n: u64| n as f64 / runs as f64;
    println!("metric {id} statements_per_run {:.2}", per_run(submit_statements + worker_statements));
    println!("metric {id} submit_statements_per_run {:.2}", per_run(submit_statements));
    println!("metric {id} worker_statements_per_run {:.2}", per_run(worker_statements));
    println!("metric {id} stream_rows_per_run {:.2}", stream_rows as f64 / runs as f64);
    println!("metric {id} stream_items_per_run {:.2}", stream_items as f64 / runs as f64);
}

async fn in_process(url: &str, schema: &str, runs: usize, admin: &mut PgConnection) {
    let checkpointer = PostgresCheckpointer::connect_with(options(url, schema)).await.unwrap();
    let app = chain("b8", false).with_checkpointer(checkpointer);
    let (xact_before, cpu_before, wal_before) =
        (write_transactions(admin).await, postgres_cpu(admin).await, wal_lsn(admin).await);
    let before = STATEMENTS.load(Ordering::Relaxed);
    let own_cpu_before = cpu_of([std::process::id()]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    let at_once = SLOTS.load(Ordering::Relaxed);
    for part in 0..at_once {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            for n in (part..runs).step_by(at_once) {
                let config = RunConfig::thread(format!("b8_in_process-{n}")).durability(Durability::Sync);
                let result = app.invoke(Counter::default(), config).await.unwrap();
                assert_eq!(result.state.counter, 10);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let own_cpu = cpu_of([std::process::id()]) - own_cpu_before;
    let statements = STATEMENTS.load(Ordering::Relaxed) - before;
    let cpu = postgres_cpu(admin).await - cpu_before;
    let wal = wal_lsn(admin).await - wal_before;
    let xact = write_transactions(admin).await - xact_before;
    let per_run = |n: f64| n / runs as f64;
    println!("metric b8_in_process runs_per_sec {:.1}", runs as f64 / elapsed);
    println!("metric b8_in_process xact_per_run {:.2}", per_run(xact as f64));
    println!("metric b8_in_process db_cpu_ms_per_run {:.3}", per_run(cpu * 1000.0));
    println!("metric b8_in_process wal_bytes_per_run {:.0}", per_run(wal as f64));
    println!("metric b8_in_process client_cpu_ms_per_run {:.3}", per_run(own_cpu * 1000.0));
    println!("metric b8_in_process statements_per_run {:.2}", per_run(statements as f64));
}

/// SIGKILL the worker holding a slow run; time until another worker finished it.
async fn takeover(url: &str, schema: &str, rounds: usize) {
    let mut children = Workers(spawn_workers(url, schema, 2, Streams::On));
    let queue = Arc::new(queue(url, schema).await);
    wait_live(&queue, 2).await;
    let (_, slow) = graphs();
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>).with_poll_interval(Duration::from_millis(20));
    let mut times = Vec::new();
    for round in 0..rounds {
        let request = RunRequest::invoke(Counter::default()).thread(format!("b8_takeover-{round}"));
        let (run_id, _) = client.submit(&slow, request).await.unwrap();
        let owner = loop {
            let run = queue.get(&run_id).await.unwrap().unwrap();
            if run.state == RunState::Running {
                break run.worker_id.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        tokio::time::sleep(Duration::from_millis(900)).await;
        let pid = queue.workers().await.unwrap().into_iter().find(|w| w.info.worker_id == owner).unwrap().info.pid;
        let index = children.0.iter().position(|c| c.id() as i32 == pid).unwrap();
        let mut victim = children.0.remove(index);
        let killed = Instant::now();
        victim.kill().unwrap();
        victim.wait().unwrap();
        let run = client.wait(&run_id, Duration::from_secs(120)).await.unwrap();
        assert_eq!(run.state, RunState::Completed);
        times.push(killed.elapsed().as_secs_f64());
        children.0.extend(spawn_workers(url, schema, 1, Streams::On));
        wait_live(&queue, 2).await;
    }
    stop(children);
    times.sort_by(f64::total_cmp);
    println!("metric b8_takeover median_s {:.2}", times[times.len() / 2]);
    println!("metric b8_takeover max_s {:.2}", times[times.len() - 1]);
}

fn set_slots(arg: Option<&String>) {
    if let Some(slots) = arg {
        SLOTS.store(slots.parse().expect("--slots takes a number"), Ordering::Relaxed);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--b8-worker") {
        let streams =
            if args.get(at + 3).map(String::as_str) == Some("no-streams") { Streams::Off } else { Streams::On };
        set_slots(args.get(at + 4));
        child(&args[at + 1], &args[at + 2], streams);
        return;
    }
    let Ok(url) = std::env::var("DASHFLOW_TEST_POSTGRES_URL") else {
        println!("skipped B8: DASHFLOW_TEST_POSTGRES_URL is not set (a PostgreSQL URL to run the queue on)");
        return;
    };
    count_statements();
    set_slots(args.windows(2).find(|pair| pair[0] == "--slots").map(|pair| &pair[1]));
    let quick = std::env::args().any(|arg| arg == "--quick");
    let runs = args
        .windows(2)
        .find(|pair| pair[0] == "--runs")
        .and_then(|pair| pair[1].parse().ok())
        .unwrap_or(if quick { 300 } else { 2_000 });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let schema = format!("dashflow_b8_{}", std::process::id());
        let mut admin = PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}; SET search_path TO {schema}")))
            .execute(&mut admin)
            .await
            .unwrap();
        // `--only-workers N` (repeatable): just those rounds, without the takeover (for a quick look).
        let only: Vec<usize> = args
            .windows(2)
            .filter(|pair| pair[0] == "--only-workers")
            .filter_map(|pair| pair[1].parse().ok())
            .collect();
        let in_process_only = args.iter().any(|arg| arg == "--only-in-process");
        let rounds = match (in_process_only, only.is_empty()) {
            (true, _) => vec![],
            (false, true) => vec![1, 2, 4],
            (false, false) => only.clone(),
        };
        // `--streams-off`: the rounds above without event streams; `--no-extra`: without the
        // rounds below (for profiling one kind of round).
        let streams = if args.iter().any(|arg| arg == "--streams-off") { Streams::Off } else { Streams::On };
        for workers in rounds {
            round(&url, &schema, workers, (Durability::Sync, streams), runs, &mut admin).await;
        }
        if !in_process_only && !args.iter().any(|arg| arg == "--no-extra") {
            // Without event streams: what streaming a run's events costs.
            round(&url, &schema, 2, (Durability::Sync, Streams::Off), runs, &mut admin).await;
            // `Async` checkpoints: written while the next step runs, still fenced, and the run
            // finishes only once they are committed.
            round(&url, &schema, 2, (Durability::Async, Streams::On), runs, &mut admin).await;
            in_process(&url, &schema, runs, &mut admin).await;
        }
        if in_process_only {
            in_process(&url, &schema, runs, &mut admin).await;
        } else if only.is_empty() {
            takeover(&url, &schema, if quick { 1 } else { 3 }).await;
        }
        // `--keep-schema`: leave the tables for a look afterwards.
        if args.iter().any(|arg| arg == "--keep-schema") {
            println!("kept schema {schema}");
        } else {
            sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&mut admin).await.unwrap();
        }
    });
}
