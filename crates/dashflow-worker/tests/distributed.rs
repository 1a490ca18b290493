//! Scale-out with real worker processes on the CI PostgreSQL (R23; docs/distributed.md).
//!
//! The test binary is its own worker: with `DASHFLOW_WORKER_CHILD=1` it runs one [`Worker`]
//! against the schema the parent names, until SIGTERM (or SIGKILL). Every node appends a line
//! to a shared ledger file (`O_APPEND`, one short line per execution), which the parent reads
//! together with each thread's checkpoint chain after the trial.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, reason = "tests")]

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use dashflow_checkpoint::{Checkpointer, ListOptions};
use dashflow_checkpoint_postgres::PostgresCheckpointer;
use dashflow_checkpoint_postgres::testing::{TestDatabase, TestServer};
use dashflow_executor::CompiledGraph;
use dashflow_graph::{END, GraphState, NodeContext, NodeError, START, StateGraph};
use dashflow_queue::{RunQueue, RunState, Timings};
use dashflow_queue_postgres::PostgresRunQueue;
use dashflow_telemetry::EventKind;
use dashflow_worker::{Client, RegisteredGraph, RunEvent, RunEvents, RunRequest, Worker};
use libtest_mimic::{Arguments, Failed, Trial};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;

/// The state: what ran, in merge order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Work {
    #[reduce(append)]
    log: Vec<String>,
    #[reduce(add)]
    count: u64,
}

/// What every run must end with, whoever ran it and however often it was taken over.
fn golden() -> Vec<String> {
    ["split", "a", "b", "c", "merge", "polish1", "polish2"].map(String::from).to_vec()
}

struct Env {
    ledger: PathBuf,
    /// A marker file: while it is absent, node `c` hangs (the first worker to reach it is
    /// killed there), and creates it.
    hang_marker: Option<PathBuf>,
    /// A directory of gates: each node waits until a file named after it exists there.
    gates: Option<PathBuf>,
    /// A marker file: while it is absent, node `c` creates it and holds its thread (no await)
    /// until the file `<marker>.release` exists, as a stuck blocking call does.
    block_marker: Option<PathBuf>,
}

type NodeFuture = std::pin::Pin<Box<dyn Future<Output = Result<WorkUpdate, NodeError>> + Send>>;
type TrialFuture = std::pin::Pin<Box<dyn Future<Output = Result<()>>>>;

fn append(ledger: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(ledger).unwrap();
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
}

fn node(name: &'static str, env: &Arc<Env>) -> impl Fn(Arc<Work>, NodeContext) -> NodeFuture + Send + Sync + 'static {
    let env = Arc::clone(env);
    move |_, ctx| {
        let env = Arc::clone(&env);
        Box::pin(async move {
            let key = ctx.idempotency_key();
            append(&env.ledger, &format!("start {key} {} {}", std::process::id(), dashflow_checkpoint::now_ms()));
            if let Some(gates) = &env.gates {
                // The node's own barrier, which the test opens.
                while !gates.join(name).exists() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            if name == "c"
                && let Some(marker) = &env.hang_marker
                && !marker.exists()
            {
                std::fs::write(marker, b"").unwrap();
                append(&env.ledger, &format!("hang {key} {}", std::process::id()));
                std::future::pending::<()>().await;
            }
            if name == "c"
                && let Some(marker) = &env.block_marker
                && !marker.exists()
            {
                std::fs::write(marker, b"").unwrap();
                append(&env.ledger, &format!("block {key} {}", std::process::id()));
                while !marker.with_extension("release").exists() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            // Work that takes a while, so that kills land inside supersteps.
            tokio::time::sleep(Duration::from_millis(5 + fastrand::u64(..40))).await;
            append(&env.ledger, &format!("done {key} {} {}", std::process::id(), dashflow_checkpoint::now_ms()));
            Ok(WorkUpdate::default().log(vec![name.to_owned()]).count(1u64))
        })
    }
}

fn graph(env: &Arc<Env>) -> CompiledGraph<Work> {
    let mut graph = StateGraph::<Work>::new();
    graph
        .add_node("split", node("split", env))
        .add_node("a", node("a", env))
        .add_node("b", node("b", env))
        .add_node("c", node("c", env))
        .add_node("merge", node("merge", env))
        .add_node("polish1", node("polish1", env))
        .add_node("polish2", node("polish2", env))
        .add_edge(START, "split")
        .add_parallel_edges("split", ["a", "b", "c"])
        .add_join(["a", "b", "c"], "merge")
        .add_edge("merge", "polish1")
        .add_edge("polish1", "polish2")
        .add_edge("polish2", END);
    CompiledGraph::new(graph.build().unwrap())
}

fn registered(env: &Arc<Env>, version: &str) -> RegisteredGraph<Work> {
    RegisteredGraph::new("work", version, graph(env))
}

fn connect_options(url: &str, schema: &str) -> PgConnectOptions {
    let options: PgConnectOptions = url.parse().unwrap();
    options.options([("search_path", schema)]).application_name(schema)
}

async fn queue_at(url: &str, schema: &str) -> Result<PostgresRunQueue> {
    let checkpointer = PostgresCheckpointer::connect_with(connect_options(url, schema)).await?;
    Ok(PostgresRunQueue::new(checkpointer).await?)
}

/// The child: one worker until SIGTERM.
fn child() -> Result<()> {
    let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let (url, schema, ledger, version) = (
        var("DASHFLOW_WORKER_URL")?,
        var("DASHFLOW_WORKER_SCHEMA")?,
        var("DASHFLOW_WORKER_LEDGER")?,
        var("DASHFLOW_WORKER_VERSION")?,
    );
    let hang_marker = std::env::var("DASHFLOW_WORKER_HANG").ok().map(PathBuf::from);
    let gates = std::env::var("DASHFLOW_WORKER_GATES").ok().map(PathBuf::from);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let block_marker = std::env::var("DASHFLOW_WORKER_BLOCK").ok().map(PathBuf::from);
    let env = Arc::new(Env { ledger: PathBuf::from(ledger), hang_marker, gates, block_marker });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let queue: Arc<dyn RunQueue> = Arc::new(queue_at(&url, &schema).await?);
        // A slower heartbeat for tests that need a worker to be slow to notice a reclaim.
        let timings = match std::env::var("DASHFLOW_WORKER_HEARTBEAT_MS") {
            Ok(ms) => {
                let every = Duration::from_millis(ms.parse()?);
                Timings::short().heartbeat(every).lease(every * 4).self_fence_margin(every / 2)
            }
            Err(_) => Timings::short(),
        };
        let mut worker = Worker::builder(queue).graph(registered(&env, &version)).slots(4).timings(timings);
        if let Ok(ms) = std::env::var("DASHFLOW_WORKER_STUCK_GRACE_MS") {
            worker = worker.stuck_grace(Duration::from_millis(ms.parse()?));
        }
        let worker = worker.grace(Duration::from_secs(5)).build()?;
        append(&env.ledger, &format!("worker {} {}", worker.id(), std::process::id()));
        // The ledger learns when this worker fences itself, with the time.
        let counters = worker.counters();
        let ledger = env.ledger.clone();
        tokio::spawn(async move {
            let mut fenced = 0;
            loop {
                let now = dashflow_worker::WorkerCounters::get(&counters.self_fenced);
                if now > fenced {
                    fenced = now;
                    append(&ledger, &format!("self-fenced {} {}", std::process::id(), dashflow_checkpoint::now_ms()));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        worker.run(dashflow_worker::shutdown_signal()).await?;
        append(&env.ledger, &format!("stopped {}", std::process::id()));
        Ok(())
    })
}

/// One trial's world: a schema, a ledger, and the worker processes it started.
struct Cluster {
    db: Option<TestDatabase>,
    server: Option<TestServer>,
    schema: String,
    url: String,
    dir: tempfile::TempDir,
    workers: Vec<Child>,
    queue: Arc<PostgresRunQueue>,
}

impl Cluster {
    async fn new(test: &str) -> Option<Self> {
        let db = TestDatabase::from_env(test).await?;
        let url = std::env::var(dashflow_checkpoint_postgres::testing::URL_VAR).unwrap();
        let schema = db.schema().to_owned();
        let queue = Arc::new(queue_at(&url, &schema).await.unwrap());
        Some(Self {
            db: Some(db),
            server: None,
            schema,
            url,
            dir: tempfile::tempdir().unwrap(),
            workers: Vec::new(),
            queue,
        })
    }

    /// A cluster on a PostgreSQL server of its own, which the test may pause.
    async fn on_private_server(test: &str) -> Option<Self> {
        let server = TestServer::create(test).await?;
        let url = server.url();
        let schema = "public".to_owned();
        let queue = Arc::new(queue_at(&url, &schema).await.unwrap());
        Some(Self {
            db: None,
            server: Some(server),
            schema,
            url,
            dir: tempfile::tempdir().unwrap(),
            workers: Vec::new(),
            queue,
        })
    }

    fn ledger(&self) -> PathBuf {
        self.dir.path().join("ledger")
    }

    fn start_worker(&mut self, version: &str, hang: bool) -> usize {
        let hang_marker = self.dir.path().join("hang-marker");
        self.start_worker_with(version, &self.url.clone(), |process| {
            if hang {
                process.env("DASHFLOW_WORKER_HANG", &hang_marker);
            }
        })
    }

    /// A worker connecting to `url`, its command adjusted by `adjust` (more variables).
    fn start_worker_with(&mut self, version: &str, url: &str, adjust: impl FnOnce(&mut Process)) -> usize {
        let log = std::fs::File::create(self.dir.path().join(format!("worker-{}.log", self.workers.len()))).unwrap();
        let mut process = Process::new(std::env::current_exe().unwrap());
        process
            .env("DASHFLOW_WORKER_CHILD", "1")
            .env("DASHFLOW_WORKER_URL", url)
            .env("DASHFLOW_WORKER_SCHEMA", &self.schema)
            .env("DASHFLOW_WORKER_LEDGER", self.ledger())
            .env("DASHFLOW_WORKER_VERSION", version)
            .env("DASHFLOW_HOME", self.dir.path().join("home"))
            .env("DASHFLOW_WAL", "0")
            .env("RUST_LOG", "dashflow_worker=debug,dashflow_queue_postgres=info")
            .stdout(Stdio::null())
            .stderr(log);
        adjust(&mut process);
        self.workers.push(process.spawn().unwrap());
        self.workers.len() - 1
    }

    fn kill(&mut self, index: usize) {
        let _ = self.workers[index].kill();
        let _ = self.workers[index].wait();
    }

    fn signal(&self, index: usize, signal: &str) {
        let pid = self.workers[index].id().to_string();
        let _ = Process::new("kill").args([signal, &pid]).status();
    }

    fn worker_log(&self, index: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("worker-{index}.log"))).unwrap_or_default()
    }

    fn terminate(&mut self, index: usize) {
        let pid = self.workers[index].id().to_string();
        let _ = Process::new("kill").args(["-TERM", &pid]).status();
    }

    fn ledger_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.ledger()).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// Waits (bounded) until `ready` holds of the ledger.
    async fn until_ledger(&self, what: &str, ready: impl Fn(&[String]) -> bool) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !ready(&self.ledger_lines()) {
            ensure!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Waits (bounded) until worker `worker_id` has heart-beat once: it then has a lease, and
    /// its heartbeat session holds its lock.
    async fn until_heart_beat(&self, worker_id: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let beat: bool =
                sqlx::query_scalar("SELECT heartbeat_at > started_at FROM dashflow_workers WHERE worker_id = $1")
                    .bind(worker_id)
                    .fetch_one(self.queue.pool())
                    .await?;
            if beat {
                return Ok(());
            }
            ensure!(tokio::time::Instant::now() < deadline, "worker {worker_id} never heart-beat");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn client(&self) -> Client {
        Client::new(Arc::clone(&self.queue) as Arc<dyn RunQueue>).with_poll_interval(Duration::from_millis(50))
    }

    /// Checks every thread's checkpoint chain: one parent chain, consecutive steps, the input
    /// stored once; and the final state is the golden one.
    async fn check_history(&self, threads: &[String]) -> Result<()> {
        let checkpointer = self.queue.checkpointer();
        for thread in threads {
            let mut records = checkpointer.list(thread, &ListOptions::new().namespace("")).await?;
            records.reverse();
            ensure!(!records.is_empty(), "thread {thread} has no checkpoints");
            for pair in records.windows(2) {
                ensure!(
                    pair[1].parent_id.as_ref() == Some(&pair[0].checkpoint_id),
                    "thread {thread}: checkpoint {} does not continue {} (a fork or a lost step)",
                    pair[1].checkpoint_id,
                    pair[0].checkpoint_id
                );
                ensure!(
                    pair[1].step == pair[0].step + 1,
                    "thread {thread}: steps {} then {}",
                    pair[0].step,
                    pair[1].step
                );
            }
            let inputs = records.iter().filter(|r| r.metadata.get("source") == Some(&"input".into())).count();
            ensure!(inputs == 1, "thread {thread}: its input was stored {inputs} times");
        }
        Ok(())
    }

    async fn final_log(&self, graph: &RegisteredGraph<Work>, run_id: &str) -> Result<Vec<String>> {
        let finished = self.client().wait_for_state(graph, run_id, Duration::from_secs(60)).await?;
        ensure!(
            finished.run.state == RunState::Completed,
            "run {run_id} ended {:?}: {:?}",
            finished.run.state,
            finished.run.error
        );
        Ok(finished.state.context("a completed run has a state")?.state.log)
    }

    fn worker_logs(&self) -> String {
        let mut out = String::new();
        for index in 0..self.workers.len() {
            let log = std::fs::read_to_string(self.dir.path().join(format!("worker-{index}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            out.push_str(&format!(
                "--- worker {index} ---\n{}\n",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            let _ = worker.kill();
            let _ = worker.wait();
        }
    }
}

/// The pid of a worker with a task started and not finished (the latest such start).
fn open_task_pid(lines: &[String]) -> Option<u32> {
    let mut open: Vec<(String, String)> = Vec::new();
    for line in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.first() {
            Some(&"start") => open.push((parts[1].to_owned(), parts[2].to_owned())),
            Some(&"done") => open.retain(|(key, pid)| !(key == parts[1] && pid == parts[2])),
            _ => {}
        }
    }
    open.last().and_then(|(_, pid)| pid.parse().ok())
}

/// Executions of each (thread, task) key in the ledger.
fn executions(lines: &[String]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in lines {
        if let Some(rest) = line.strip_prefix("start ") {
            let key = rest.split(' ').next().unwrap_or_default().to_owned();
            *counts.entry(key).or_default() += 1;
        }
    }
    counts
}

fn trial(name: &'static str, body: fn(&'static str) -> TrialFuture) -> Trial {
    Trial::test(name, move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(body(name)).map_err(|error| Failed::from(format!("{error:#}")))
    })
}

/// A worker SIGKILLed while one task of a parallel step hangs: the next worker re-runs only
/// that task, from the step's checkpoint and its siblings' stored results.
async fn takeover_reruns_only_the_unfinished_task(test: &'static str) -> Result<()> {
    let Some(mut cluster) = Cluster::new(test).await else { return Ok(()) };
    let env = Arc::new(Env { ledger: cluster.ledger(), hang_marker: None, gates: None, block_marker: None });
    let graph = registered(&env, "v1");
    let first = cluster.start_worker("v1", true);
    let (run_id, _) = cluster.client().submit(&graph, RunRequest::invoke(Work::default()).thread("t")).await?;
    cluster.until_ledger("c to hang", |lines| lines.iter().any(|l| l.starts_with("hang "))).await?;
    // a and b finished; wait until both results are stored before the kill.
    let checkpointer = cluster.queue.checkpointer();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let loaded = checkpointer.load("t", "", None).await?.context("the thread has checkpoints")?;
        if loaded.pending_writes.len() >= 2 {
            break;
        }
        ensure!(tokio::time::Instant::now() < deadline, "a's and b's results were never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill(first);
    cluster.start_worker("v1", true);
    let log = cluster.final_log(&graph, &run_id).await.with_context(|| cluster.worker_logs())?;
    ensure!(log == golden(), "final state {log:?}");
    let counts = executions(&cluster.ledger_lines());
    for (key, count) in &counts {
        let expected = if key.contains(":c:") { 2 } else { 1 };
        ensure!(*count == expected, "{key} ran {count} times, expected {expected}; ledger: {counts:?}");
    }
    let run = cluster.queue.get(&run_id).await?.context("the run exists")?;
    ensure!(run.attempt == 2, "the run took {} attempts", run.attempt);
    cluster.check_history(&["t".to_owned()]).await
}

/// R23 over seeds: three workers, runs submitted, a random worker SIGKILLed at seeded random
/// times and restarted; every run completes with the golden state, no committed step is lost
/// or duplicated, and no input is applied twice. Seeds 0 to 2, or those `KILL_SEEDS_VAR` names.
async fn killed_workers_lose_no_step_over_seeds(test: &'static str) -> Result<()> {
    for seed in kill_seeds()? {
        killed_workers_seed(test, seed).await.with_context(|| format!("seed {seed}"))?;
    }
    Ok(())
}

/// The seeds of `killed_workers_lose_no_step_over_seeds`: a count (`20`, seeds 0 to 19) or a
/// range (`100..600`, for a longer chaos run by hand). CI runs 20.
const KILL_SEEDS_VAR: &str = "DASHFLOW_TEST_KILL_SEEDS";

fn kill_seeds() -> Result<std::ops::Range<u64>> {
    let Ok(text) = std::env::var(KILL_SEEDS_VAR) else { return Ok(0..3) };
    let parsed = match text.trim().split_once("..") {
        Some((from, to)) => from.trim().parse().ok().zip(to.trim().parse().ok()).map(|(from, to)| from..to),
        None => text.trim().parse().ok().map(|count| 0..count),
    };
    match parsed {
        Some(seeds) if !seeds.is_empty() => Ok(seeds),
        _ => bail!("{KILL_SEEDS_VAR}={text:?}: give a count of seeds (20) or a range of them (100..600)"),
    }
}

async fn killed_workers_seed(test: &'static str, seed: u64) -> Result<()> {
    let Some(mut cluster) = Cluster::new(test).await else { return Ok(()) };
    let mut rng = fastrand::Rng::with_seed(seed);
    let env = Arc::new(Env { ledger: cluster.ledger(), hang_marker: None, gates: None, block_marker: None });
    let graph = registered(&env, "v1");
    for _ in 0..3 {
        cluster.start_worker("v1", false);
    }
    let client = cluster.client();
    let threads: Vec<String> = (0..20).map(|n| format!("t{n}")).collect();
    let mut runs = Vec::new();
    for thread in &threads {
        runs.push(client.submit(&graph, RunRequest::invoke(Work::default()).thread(thread.as_str())).await?.0);
    }
    // Each kill waits for a seeded number of task starts, then kills the worker of a task
    // that started and has not finished: always in the middle of a superstep.
    let mut starts = 0;
    for _ in 0..3 {
        starts += 4 + rng.usize(..20);
        let wanted = starts;
        cluster
            .until_ledger("tasks to start", |lines| lines.iter().filter(|l| l.starts_with("start ")).count() >= wanted)
            .await?;
        let pid = open_task_pid(&cluster.ledger_lines()).context("no task in flight to kill")?;
        let victim = cluster.workers.iter().position(|w| w.id() == pid).context("the pid is a worker")?;
        cluster.kill(victim);
        cluster.start_worker("v1", false);
    }
    for run_id in &runs {
        let log = cluster.final_log(&graph, run_id).await.with_context(|| cluster.worker_logs())?;
        ensure!(log == golden(), "run {run_id}: final state {log:?}");
    }
    cluster.check_history(&threads).await?;
    let mut taken_over = 0;
    for run_id in &runs {
        taken_over += usize::from(cluster.queue.get(run_id).await?.context("run")?.attempt > 1);
    }
    ensure!(taken_over >= 3, "only {taken_over} runs were taken over by another worker");
    let reruns: usize = executions(&cluster.ledger_lines()).values().map(|n| n - 1).sum();
    println!("seed {seed}: {taken_over} runs taken over, {reruns} task executions repeated");
    // A task whose step was committed before it started again was re-run wrongly.
    let checkpointer = cluster.queue.checkpointer();
    let lines = cluster.ledger_lines();
    for thread in &threads {
        let records = checkpointer.list(thread, &ListOptions::new().namespace("")).await?;
        let committed: BTreeMap<i64, i64> = records.iter().map(|r| (r.step, r.created_at_ms)).collect();
        for line in lines.iter().filter(|l| l.starts_with(&format!("start {thread}/"))) {
            let parts: Vec<&str> = line.split(' ').collect();
            let (key, at) = (parts[1], parts[3].parse::<i64>()?);
            let step: i64 =
                key.split('/').nth(1).and_then(|task| task.split(':').next()).context("task id")?.parse()?;
            if let Some(&done) = committed.get(&step) {
                ensure!(at <= done, "{key} started at {at}, after its step was committed at {done}");
            }
        }
    }
    Ok(())
}

/// SIGTERM: the worker stops claiming, lets its runs finish within the grace period (heart-
/// beating meanwhile), and deregisters.
async fn sigterm_finishes_running_runs_and_deregisters(test: &'static str) -> Result<()> {
    let Some(mut cluster) = Cluster::new(test).await else { return Ok(()) };
    let env = Arc::new(Env { ledger: cluster.ledger(), hang_marker: None, gates: None, block_marker: None });
    let graph = registered(&env, "v1");
    let worker = cluster.start_worker("v1", false);
    let (run_id, _) = cluster.client().submit(&graph, RunRequest::invoke(Work::default()).thread("t")).await?;
    cluster.until_ledger("the run to start", |lines| lines.iter().any(|l| l.starts_with("start t/"))).await?;
    cluster.terminate(worker);
    let status = tokio::task::spawn_blocking(move || {
        let status = cluster.workers[worker].wait();
        (cluster, status)
    });
    let (cluster, status) = tokio::time::timeout(Duration::from_secs(30), status).await??;
    ensure!(status?.success(), "the worker did not exit cleanly");
    let run = cluster.queue.get(&run_id).await?.context("run")?;
    ensure!(run.state == RunState::Completed, "run ended {:?} ({:?})", run.state, run.error);
    let workers = cluster.queue.workers().await?;
    ensure!(workers.iter().all(|w| w.state == dashflow_queue::WorkerState::Stopped), "workers: {workers:?}");
    Ok(())
}

/// A worker refuses a graph it does not have: runs of another version stay queued until a
/// worker of that version comes.
async fn a_worker_never_runs_another_graph_version(test: &'static str) -> Result<()> {
    let Some(mut cluster) = Cluster::new(test).await else { return Ok(()) };
    let env = Arc::new(Env { ledger: cluster.ledger(), hang_marker: None, gates: None, block_marker: None });
    let (v1, v2) = (registered(&env, "v1"), registered(&env, "v2"));
    cluster.start_worker("v1", false);
    let client = cluster.client();
    let (old, _) = client.submit(&v1, RunRequest::invoke(Work::default()).thread("old")).await?;
    let (new, _) = client.submit(&v2, RunRequest::invoke(Work::default()).thread("new")).await?;
    ensure!(cluster.final_log(&v1, &old).await? == golden());
    ensure!(cluster.queue.get(&new).await?.context("run")?.state == RunState::Queued, "a v1 worker ran a v2 run");
    cluster.start_worker("v2", false);
    ensure!(cluster.final_log(&v2, &new).await? == golden());
    Ok(())
}

/// Cancel while running: the worker stops the run at its next heartbeat and ends it
/// `cancelled`; a queued run is cancelled at once.
async fn cancel_stops_a_running_run(test: &'static str) -> Result<()> {
    let Some(mut cluster) = Cluster::new(test).await else { return Ok(()) };
    let env = Arc::new(Env { ledger: cluster.ledger(), hang_marker: None, gates: None, block_marker: None });
    let graph = registered(&env, "v1");
    cluster.start_worker("v1", true);
    let client = cluster.client();
    let (run_id, _) = client.submit(&graph, RunRequest::invoke(Work::default()).thread("t")).await?;
    cluster.until_ledger("c to hang", |lines| lines.iter().any(|l| l.starts_with("hang "))).await?;
    ensure!(client.cancel(&run_id).await? == RunState::Running);
    let run = client.wait(&run_id, Duration::from_secs(30)).await?;
    ensure!(run.state == RunState::Cancelled, "run ended {:?}", run.state);
    Ok(())
}

/// `pg_terminate_backend` on every connection of the workers, again and again: runs finish
/// with the golden state and the history checker passes.
async fn terminated_connections_lose_no_step(test: &'static str) -> Result<()> {
    let Some(mut cluster) = Cluster::new(test).await else { return Ok(()) };
    let env = Arc::new(Env { ledger: cluster.ledger(), hang_marker: None, gates: None, block_marker: None });
    let graph = registered(&env, "v1");
    cluster.start_worker("v1", false);
    cluster.start_worker("v1", false);
    let client = cluster.client();
    let threads: Vec<String> = (0..6).map(|n| format!("t{n}")).collect();
    let mut runs = Vec::new();
    for thread in &threads {
        runs.push(client.submit(&graph, RunRequest::invoke(Work::default()).thread(thread.as_str())).await?.0);
    }
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        cluster.db.as_ref().context("a shared-server cluster")?.terminate_connections().await;
    }
    // The parent's own pool lost its connections too; it reconnects on use.
    for run_id in &runs {
        let log = cluster.final_log(&graph, run_id).await.with_context(|| cluster.worker_logs())?;
        ensure!(log == golden(), "run {run_id}: final state {log:?}");
    }
    cluster.check_history(&threads).await
}

/// A slow-but-alive worker (SIGSTOP past its lease): its run is taken over; when it wakes, it
/// learns it lost the lease, and none of its late writes lands.
async fn a_paused_worker_is_fenced_when_it_wakes(test: &'static str) -> Result<()> {
    let Some(mut cluster) = Cluster::new(test).await else { return Ok(()) };
    let env = Arc::new(Env { ledger: cluster.ledger(), hang_marker: None, gates: None, block_marker: None });
    let graph = registered(&env, "v1");
    let slow = cluster.start_worker("v1", false);
    cluster.until_ledger("the worker to start", |lines| lines.iter().any(|l| l.starts_with("worker "))).await?;
    let (run_id, _) = cluster.client().submit(&graph, RunRequest::invoke(Work::default()).thread("t")).await?;
    cluster.until_ledger("a task to start", |lines| lines.iter().any(|l| l.starts_with("start t/"))).await?;
    cluster.signal(slow, "-STOP");
    cluster.start_worker("v1", false);
    let log = cluster.final_log(&graph, &run_id).await.with_context(|| cluster.worker_logs())?;
    let run = cluster.queue.get(&run_id).await?.context("run")?;
    ensure!(run.attempt >= 2, "the run was not taken over (attempt {})", run.attempt);
    cluster.signal(slow, "-CONT");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(cluster.worker_log(slow).contains("lease lost")
        || cluster.worker_log(slow).contains("sweeper stopped this worker"))
    {
        ensure!(tokio::time::Instant::now() < deadline, "the woken worker never noticed:\n{}", cluster.worker_logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(log == golden(), "final state {log:?}");
    cluster.check_history(&["t".to_owned()]).await?;
    // After waking it works normally again.
    let (next, _) = cluster.client().submit(&graph, RunRequest::invoke(Work::default()).thread("t2")).await?;
    ensure!(cluster.final_log(&graph, &next).await? == golden());
    Ok(())
}

/// The database paused for twice the lease: every worker fences itself (stops its runs), then
/// releases them when the database answers; the sweeper does not reclaim everything at once;
/// every run finishes and the history checker passes.
async fn a_paused_database_makes_workers_fence_themselves(test: &'static str) -> Result<()> {
    let Some(mut cluster) = Cluster::on_private_server(test).await else { return Ok(()) };
    let env = Arc::new(Env { ledger: cluster.ledger(), hang_marker: None, gates: None, block_marker: None });
    let graph = registered(&env, "v1");
    let first = cluster.start_worker("v1", false);
    cluster.start_worker("v1", false);
    let client = cluster.client();
    let threads: Vec<String> = (0..8).map(|n| format!("t{n}")).collect();
    let mut runs = Vec::new();
    for thread in &threads {
        runs.push(client.submit(&graph, RunRequest::invoke(Work::default()).thread(thread.as_str())).await?.0);
    }
    cluster
        .until_ledger("tasks to start", |lines| lines.iter().filter(|l| l.starts_with("start ")).count() >= 6)
        .await?;
    let server = cluster.server.as_ref().context("a private server")?;
    server.pause();
    // Twice the lease (1.5 s in the workers' short timings): they must fence themselves.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cluster.worker_log(first).contains("cannot heartbeat before the lease ends") {
        if tokio::time::Instant::now() >= deadline {
            server.resume();
            bail!("the worker never fenced itself:\n{}", cluster.worker_logs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.resume();
    for run_id in &runs {
        let log = cluster.final_log(&graph, run_id).await.with_context(|| cluster.worker_logs())?;
        ensure!(log == golden(), "run {run_id}: final state {log:?}");
    }
    ensure!(cluster.worker_log(first).contains("releasing the runs stopped while fenced"), "{}", cluster.worker_logs());
    cluster.check_history(&threads).await
}

/// A worker process whose node holds its thread (no await) past the run's timeout and the
/// stuck grace: the worker gives the run up (its attempt charged, the fence bumped), stops,
/// and its process exits with `StuckRun` once the node lets go; another worker process finishes
/// the run in its second attempt, and the stuck task's work never lands.
async fn a_stuck_worker_gives_its_run_up_and_another_finishes_it(test: &'static str) -> Result<()> {
    let Some(mut cluster) = Cluster::new(test).await else { return Ok(()) };
    let env = Arc::new(Env { ledger: cluster.ledger(), hang_marker: None, gates: None, block_marker: None });
    let graph = registered(&env, "v1");
    let marker = cluster.dir.path().join("block-marker");
    let stuck = cluster.start_worker_with("v1", &cluster.url.clone(), |process| {
        process.env("DASHFLOW_WORKER_BLOCK", &marker).env("DASHFLOW_WORKER_STUCK_GRACE_MS", "300");
    });
    let request = RunRequest::invoke(Work::default()).thread("t").timeout(Duration::from_secs(5));
    let (run_id, _) = cluster.client().submit(&graph, request).await?;
    cluster.until_ledger("c to block its thread", |lines| lines.iter().any(|l| l.starts_with("block "))).await?;
    let rescuer = cluster.start_worker("v1", false);
    let log = cluster.final_log(&graph, &run_id).await.with_context(|| cluster.worker_logs())?;
    ensure!(log == golden(), "run {run_id}: final state {log:?}");
    let run = cluster.queue.get(&run_id).await?.context("the run")?;
    ensure!(run.attempt == 2, "the run took {} attempts: {run:?}", run.attempt);
    ensure!(
        cluster.worker_log(stuck).contains("a run is stuck past its timeout"),
        "the stuck worker never gave its run up:\n{}",
        cluster.worker_logs()
    );
    // The node lets go: the stuck worker's process ends, naming the run, and writes nothing.
    std::fs::write(marker.with_extension("release"), b"")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = cluster.workers[stuck].try_wait()? {
            break status;
        }
        ensure!(tokio::time::Instant::now() < deadline, "the stuck worker never exited:\n{}", cluster.worker_logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    ensure!(!status.success(), "the stuck worker exited with {status}");
    ensure!(cluster.worker_log(stuck).contains(&run_id), "{}", cluster.worker_logs());
    let lines = cluster.ledger_lines();
    let (key, pid) = lines
        .iter()
        .find_map(|line| {
            let parts: Vec<&str> = line.strip_prefix("block ")?.split(' ').collect();
            Some((parts.first()?.to_string(), parts.get(1)?.to_string()))
        })
        .context("the block line")?;
    ensure!(
        !lines
            .iter()
            .any(|line| *line == format!("done {key} {pid}") || line.starts_with(&format!("done {key} {pid} "))),
        "the stuck task finished on the stuck worker"
    );
    ensure!(cluster.worker_log(rescuer).contains("worker started"), "{}", cluster.worker_logs());
    cluster.check_history(&["t".to_owned()]).await
}

/// Makes a worker's nodes wait at the gates in `gates`.
fn gated(process: &mut Process, gates: &Path) {
    process.env("DASHFLOW_WORKER_GATES", gates);
}

/// Opens node `name`'s gate.
fn open_gate(gates: &Path, name: &str) {
    std::fs::write(gates.join(name), b"").unwrap();
}

/// The node a task event names, with its kind.
fn task_event(event: &RunEvent) -> Option<(&'static str, &str)> {
    match &event.event()?.kind {
        EventKind::TaskStarted { node, .. } => Some(("started", node)),
        EventKind::TaskFinished { node, .. } => Some(("finished", node)),
        _ => None,
    }
}

/// Reads `events` into `seen` until `ready` holds of what was seen (bounded).
async fn follow_until(
    events: &mut RunEvents,
    seen: &mut Vec<RunEvent>,
    what: &str,
    ready: impl Fn(&[RunEvent]) -> bool,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !ready(seen) {
        let next = tokio::time::timeout_at(deadline, events.next()).await;
        match next.with_context(|| format!("timed out following the run, waiting for {what}"))?? {
            Some(event) => seen.push(event),
            None => bail!("the run's stream ended before {what}"),
        }
    }
    Ok(())
}

/// Reads `events` to their end (bounded).
async fn follow_to_end(events: &mut RunEvents, seen: &mut Vec<RunEvent>) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(event) =
        tokio::time::timeout_at(deadline, events.next()).await.context("the stream never ended")??
    {
        seen.push(event);
    }
    Ok(())
}

/// Another process follows a run live while its nodes wait at barriers; a follower that
/// re-attaches after item N gets exactly the items after N; the worker is SIGKILLed in the
/// middle of a parallel step and the worker that takes over continues the same stream: no
/// number twice, no gap, and the step it runs again is marked as a re-run, so that the steps
/// a follower counts are each step once.
async fn a_followed_run_streams_live_and_continues_across_a_takeover(test: &'static str) -> Result<()> {
    let Some(mut cluster) = Cluster::new(test).await else { return Ok(()) };
    let gates = cluster.dir.path().join("gates");
    std::fs::create_dir(&gates)?;
    let env =
        Arc::new(Env { ledger: cluster.ledger(), hang_marker: None, gates: Some(gates.clone()), block_marker: None });
    let graph = registered(&env, "v1");
    let url = cluster.url.clone();
    let first = cluster.start_worker_with("v1", &url, |process| gated(process, &gates));
    let client = cluster.client();
    let (run_id, _) = client.submit(&graph, RunRequest::invoke(Work::default()).thread("t")).await?;
    let mut events = client.follow(&run_id)?;
    let mut seen = Vec::new();

    // split waits at its gate: its start reaches this process while the run is running.
    follow_until(&mut events, &mut seen, "split to start", |seen| {
        seen.iter().any(|e| task_event(e) == Some(("started", "split")))
    })
    .await?;
    let run = cluster.queue.get(&run_id).await?.context("run")?;
    ensure!(run.state == RunState::Running, "the run is {} while split waits at its gate", run.state);
    ensure!(
        !seen.iter().any(|e| task_event(e) == Some(("finished", "split"))),
        "split finished before its gate opened"
    );
    let reattach_after = seen.last().context("an event")?.seq;

    // split, a and b finish; c waits at its gate, where its worker is killed.
    for name in ["split", "a", "b"] {
        open_gate(&gates, name);
    }
    follow_until(&mut events, &mut seen, "a, b to finish and c to start", |seen| {
        ["a", "b"].iter().all(|node| seen.iter().any(|e| task_event(e) == Some(("finished", node))))
            && seen.iter().any(|e| task_event(e) == Some(("started", "c")))
    })
    .await?;
    let checkpointer = cluster.queue.checkpointer();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while checkpointer.load("t", "", None).await?.context("the thread has checkpoints")?.pending_writes.len() < 2 {
        ensure!(tokio::time::Instant::now() < deadline, "a's and b's results were never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A second follower re-attaches mid-run and reads on, concurrently, to the end.
    let mut reattached = client.follow_from(&run_id, reattach_after)?;
    let second = tokio::spawn(async move {
        let mut seen = Vec::new();
        follow_to_end(&mut reattached, &mut seen).await.map(|()| seen)
    });
    cluster.kill(first);
    for name in ["c", "merge", "polish1", "polish2"] {
        open_gate(&gates, name);
    }
    cluster.start_worker_with("v1", &url, |process| gated(process, &gates));
    follow_to_end(&mut events, &mut seen).await.with_context(|| cluster.worker_logs())?;
    ensure!(cluster.final_log(&graph, &run_id).await? == golden());
    cluster.check_history(&["t".to_owned()]).await?;

    let seqs: Vec<i64> = seen.iter().map(|e| e.seq).collect();
    ensure!(seqs == (1..=seen.len() as i64).collect::<Vec<_>>(), "not numbered 1, 2, 3, ...: {seqs:?}");
    ensure!(seen.windows(2).all(|pair| pair[0].epoch <= pair[1].epoch), "an earlier attempt's item after a later one");
    let attempts: Vec<i32> = seen.iter().map(|e| e.attempt).collect();
    ensure!(attempts.first() == Some(&1) && attempts.last() == Some(&2), "attempts {attempts:?}");
    // Each step counted once: the repeated step is marked.
    let steps: Vec<u64> = seen
        .iter()
        .filter(|e| !e.rerun)
        .filter_map(|e| match &e.event()?.kind {
            EventKind::SuperstepStarted { step, .. } if e.event()?.run.depth == 0 => Some(*step),
            _ => None,
        })
        .collect();
    ensure!(steps == [1, 2, 3, 4, 5], "steps a follower counts as new: {steps:?}");
    let retried: Vec<(&str, &str, bool)> = seen
        .iter()
        .filter(|e| e.attempt == 2)
        .filter_map(|e| task_event(e).map(|(what, node)| (what, node, e.rerun)))
        .filter(|(what, _, _)| *what == "started")
        .collect();
    ensure!(
        retried
            == [
                ("started", "c", true),
                ("started", "merge", false),
                ("started", "polish1", false),
                ("started", "polish2", false)
            ],
        "tasks the second attempt started: {retried:?}"
    );
    ensure!(
        matches!(seen.last().and_then(RunEvent::event).map(|e| &e.kind), Some(EventKind::RunFinished { .. })),
        "the stream does not end with the run's end"
    );
    let rest = second.await??;
    let expected: Vec<_> = seen.iter().filter(|e| e.seq > reattach_after).cloned().collect();
    ensure!(
        rest == expected,
        "a re-attached follower read {} items, expected the {} after {reattach_after}",
        rest.len(),
        expected.len()
    );
    Ok(())
}

/// D2, a forced double claim: right after the live owner's heartbeat session is cut, a
/// sweeper with a lease and heartbeat of 0 takes it for dead and re-queues its run (the wrong
/// reclaim a sweeper bug or a manual edit could make). The former owner finishes its task and
/// tries to commit: its writes are fenced and its finish refused; the new owner re-runs only
/// that task; the checker finds one chain.
async fn a_forced_double_claim_lets_only_the_new_owner_commit(test: &'static str) -> Result<()> {
    let Some(mut cluster) = Cluster::new(test).await else { return Ok(()) };
    let gates = cluster.dir.path().join("gates");
    std::fs::create_dir(&gates)?;
    let env =
        Arc::new(Env { ledger: cluster.ledger(), hang_marker: None, gates: Some(gates.clone()), block_marker: None });
    let graph = registered(&env, "v1");
    let url = cluster.url.clone();
    // A slow heartbeat: the owner finishes its task long before it could learn of the reclaim.
    let old = cluster.start_worker_with("v1", &url, |process| {
        gated(process, &gates);
        process.env("DASHFLOW_WORKER_HEARTBEAT_MS", "2000");
    });
    let (run_id, _) = cluster.client().submit(&graph, RunRequest::invoke(Work::default()).thread("t")).await?;
    for name in ["split", "b", "c"] {
        open_gate(&gates, name);
    }
    cluster
        .until_ledger("b and c to finish while a waits", |lines| {
            ["done t/2:b:", "done t/2:c:", "start t/2:a:"].iter().all(|p| lines.iter().any(|l| l.starts_with(p)))
        })
        .await?;
    let checkpointer = cluster.queue.checkpointer();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while checkpointer.load("t", "", None).await?.context("the thread has checkpoints")?.pending_writes.len() < 2 {
        ensure!(tokio::time::Instant::now() < deadline, "b's and c's results were never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = cluster.queue.get(&run_id).await?.context("run")?;
    let owner = before.worker_id.clone().context("a running run has a worker")?;
    cluster.until_heart_beat(&owner).await?;
    // Cut the owner's heartbeat session, and sweep with L = 0 before it reconnects.
    let zero = Timings::short().lease(Duration::ZERO).heartbeat(Duration::ZERO);
    let mut admin = cluster.db.as_ref().context("a shared-server cluster")?.admin().await;
    let mut reclaimed = false;
    let mut cuts = 0;
    for _ in 0..50 {
        cuts += 1;
        sqlx::query(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l
             JOIN dashflow_workers w ON l.objid = w.lock_key::oid
             WHERE l.locktype = 'advisory' AND l.classid = x'4446574b'::int::oid AND l.objsubid = 2
               AND w.worker_id = $1 AND l.granted",
        )
        .bind(&owner)
        .execute(&mut admin)
        .await?;
        let report = cluster.queue.sweep(&zero).await?;
        if report.runs.iter().any(|(id, state)| *id == run_id && *state == RunState::Queued) {
            reclaimed = true;
            break;
        }
    }
    ensure!(reclaimed, "the forced sweep never re-queued the live worker's run");
    println!("the forced sweep re-queued the live worker's run after {cuts} cut(s) of its heartbeat session");
    // The former owner finishes a and tries to commit the step under its old epoch.
    open_gate(&gates, "a");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cluster.worker_log(old).contains("lease lost: another worker owns the run") {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the former owner's commit was not refused:\n{}",
            cluster.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for name in ["merge", "polish1", "polish2"] {
        open_gate(&gates, name);
    }
    cluster.start_worker_with("v1", &url, |process| gated(process, &gates));
    let log = cluster.final_log(&graph, &run_id).await.with_context(|| cluster.worker_logs())?;
    ensure!(log == golden(), "final state {log:?}");
    cluster.check_history(&["t".to_owned()]).await?;
    let run = cluster.queue.get(&run_id).await?.context("run")?;
    ensure!(run.attempt == 2 && run.worker_id.as_deref() != Some(owner.as_str()), "run {run:?}");
    let old_pid = cluster.workers[old].id().to_string();
    let lines = cluster.ledger_lines();
    ensure!(
        lines.iter().any(|l| l.starts_with("done t/2:a:") && l.split(' ').nth(2) == Some(old_pid.as_str())),
        "the former owner never finished a"
    );
    ensure!(
        !lines.iter().any(|l| l.starts_with("start t/3:") && l.split(' ').nth(2) == Some(old_pid.as_str())),
        "the former owner committed step 2 and went on"
    );
    let counts = executions(&lines);
    for (key, count) in &counts {
        let expected = if key.contains(":a:") { 2 } else { 1 };
        ensure!(*count == expected, "{key} ran {count} times, expected {expected}; ledger: {counts:?}");
    }
    Ok(())
}

/// A TCP proxy between one worker and PostgreSQL that forwards bytes until it is cut, then
/// holds them without forwarding or closing anything (a partition: no reset, just silence),
/// until it heals.
struct Partition {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Partition {
    async fn start(upstream: String) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (cut, open) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { continue };
                let (from_client, to_client) = client.into_split();
                let (from_server, to_server) = server.into_split();
                tokio::spawn(Self::pump(from_client, to_server, open.clone()));
                tokio::spawn(Self::pump(from_server, to_client, open.clone()));
            }
        });
        Ok(Self { port, cut })
    }

    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut cut: tokio::sync::watch::Receiver<bool>,
    ) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut buffer = vec![0; 16 * 1024];
        loop {
            if cut.wait_for(|cut| !*cut).await.is_err() {
                return;
            }
            let read = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            // Bytes read as the link is cut are held until it heals.
            if cut.wait_for(|cut| !*cut).await.is_err() || to.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    }

    /// `url` with its host and port replaced by this proxy's.
    fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority.rsplit_once('@').map(|(user, _)| format!("{user}@")).unwrap_or_default();
        format!("{scheme}://{user}127.0.0.1:{}/{path}", self.port)
    }

    fn upstream(url: &str) -> String {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or(rest);
        let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        if host.contains(':') { host.to_owned() } else { format!("{host}:5432") }
    }
}

/// D6, a partition: one worker's connections to PostgreSQL go through a proxy that goes
/// silent (no reset) while the worker holds runs. The cut-off worker fences itself before its
/// lease expires, another worker takes its runs over and finishes them, and when the link
/// heals the former owner comes back without having written anything more.
async fn a_partitioned_worker_fences_itself_before_its_lease_ends(test: &'static str) -> Result<()> {
    let Some(mut cluster) = Cluster::new(test).await else { return Ok(()) };
    let gates = cluster.dir.path().join("gates");
    std::fs::create_dir(&gates)?;
    let env =
        Arc::new(Env { ledger: cluster.ledger(), hang_marker: None, gates: Some(gates.clone()), block_marker: None });
    let graph = registered(&env, "v1");
    let partition = Partition::start(Partition::upstream(&cluster.url)).await?;
    let cut_off = cluster.start_worker_with("v1", &partition.url(&cluster.url), |process| gated(process, &gates));
    let client = cluster.client();
    let threads = ["t1".to_owned(), "t2".to_owned()];
    let mut runs = Vec::new();
    for thread in &threads {
        runs.push(client.submit(&graph, RunRequest::invoke(Work::default()).thread(thread.as_str())).await?.0);
    }
    let cut_pid = cluster.workers[cut_off].id().to_string();
    cluster
        .until_ledger("both runs to start on the worker behind the proxy", |lines| {
            threads.iter().all(|t| lines.iter().any(|l| l.starts_with(&format!("start {t}/1:split"))))
        })
        .await?;
    let url = cluster.url.clone();
    let rescuer = cluster.start_worker_with("v1", &url, |process| gated(process, &gates));
    let rescuer_pid = cluster.workers[rescuer].id().to_string();
    cluster
        .until_ledger("the second worker to start", |lines| {
            lines.iter().any(|l| l.starts_with("worker ") && l.ends_with(&format!(" {rescuer_pid}")))
        })
        .await?;
    let owner = cluster.queue.get(&runs[0]).await?.context("run")?.worker_id.context("held")?;
    // Its lease comes from a heartbeat through the proxy.
    cluster.until_heart_beat(&owner).await?;
    partition.cut.send(true)?;
    cluster
        .until_ledger("the cut-off worker to fence itself", |lines| {
            lines.iter().any(|l| l.starts_with(&format!("self-fenced {cut_pid} ")))
        })
        .await
        .with_context(|| cluster.worker_logs())?;
    for name in ["split", "a", "b", "c", "merge", "polish1", "polish2"] {
        open_gate(&gates, name);
    }
    for run_id in &runs {
        let log = cluster.final_log(&graph, run_id).await.with_context(|| cluster.worker_logs())?;
        ensure!(log == golden(), "run {run_id}: final state {log:?}");
        let run = cluster.queue.get(run_id).await?.context("run")?;
        ensure!(run.attempt == 2 && run.worker_id.as_deref() != Some(owner.as_str()), "run {run:?}");
    }
    // It fenced itself before the lease its last heartbeat got ran out (read before the link
    // heals and it registers again; both clocks are this machine's: the database's `now()`
    // and the worker's wall clock).
    let fenced_at: i64 = cluster
        .ledger_lines()
        .iter()
        .find_map(|l| l.strip_prefix(&format!("self-fenced {cut_pid} ")).and_then(|at| at.parse().ok()))
        .context("the self-fence line")?;
    let lease_end: i64 = sqlx::query_scalar(
        "SELECT (extract(epoch FROM lease_expires_at) * 1000)::bigint FROM dashflow_workers WHERE worker_id = $1",
    )
    .bind(&owner)
    .fetch_one(cluster.queue.pool())
    .await?;
    ensure!(fenced_at < lease_end, "fenced itself at {fenced_at}, after its lease ended at {lease_end}");
    println!("the cut-off worker fenced itself {} ms before its lease ended", lease_end - fenced_at);
    // Healed: the former owner hears the database again; what it held is someone else's.
    partition.cut.send(false)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cluster.worker_log(cut_off).contains("database reachable again") {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the healed worker never came back:\n{}",
            cluster.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.check_history(&threads).await?;
    let lines = cluster.ledger_lines();
    ensure!(
        !lines.iter().any(|l| l.starts_with("done ") && l.split(' ').nth(2) == Some(cut_pid.as_str())),
        "the cut-off worker finished a task"
    );
    Ok(())
}

fn main() -> Result<()> {
    if std::env::var("DASHFLOW_WORKER_CHILD").is_ok() {
        if let Err(error) = child() {
            eprintln!("worker child failed: {error:#}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let args = Arguments::from_args();
    let trials = vec![
        trial("takeover_reruns_only_the_unfinished_task", |t| Box::pin(takeover_reruns_only_the_unfinished_task(t))),
        trial("killed_workers_lose_no_step_over_seeds", |t| Box::pin(killed_workers_lose_no_step_over_seeds(t))),
        trial("sigterm_finishes_running_runs_and_deregisters", |t| {
            Box::pin(sigterm_finishes_running_runs_and_deregisters(t))
        }),
        trial("a_worker_never_runs_another_graph_version", |t| Box::pin(a_worker_never_runs_another_graph_version(t))),
        trial("cancel_stops_a_running_run", |t| Box::pin(cancel_stops_a_running_run(t))),
        trial("terminated_connections_lose_no_step", |t| Box::pin(terminated_connections_lose_no_step(t))),
        trial("a_paused_worker_is_fenced_when_it_wakes", |t| Box::pin(a_paused_worker_is_fenced_when_it_wakes(t))),
        trial("a_followed_run_streams_live_and_continues_across_a_takeover", |t| {
            Box::pin(a_followed_run_streams_live_and_continues_across_a_takeover(t))
        }),
        trial("a_forced_double_claim_lets_only_the_new_owner_commit", |t| {
            Box::pin(a_forced_double_claim_lets_only_the_new_owner_commit(t))
        }),
        trial("a_partitioned_worker_fences_itself_before_its_lease_ends", |t| {
            Box::pin(a_partitioned_worker_fences_itself_before_its_lease_ends(t))
        }),
        trial("a_paused_database_makes_workers_fence_themselves", |t| {
            Box::pin(a_paused_database_makes_workers_fence_themselves(t))
        }),
        trial("a_stuck_worker_gives_its_run_up_and_another_finishes_it", |t| {
            Box::pin(a_stuck_worker_gives_its_run_up_and_another_finishes_it(t))
        }),
    ];
    libtest_mimic::run(&args, trials).exit()
}
