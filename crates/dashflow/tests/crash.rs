//! R1 and R13 (across processes) of the shared reliability requirements. R1: a child process
//! runs a multi-step graph with a fan-out and is
//! killed with SIGKILL at a chosen moment (one trial per seed); a new process resumes the
//! thread from the SQLite checkpoints. The final state must equal the uninterrupted run's, and
//! a ledger of node side effects (keyed by each task's idempotency key) shows that no task of
//! a step committed before the kill ran again.
//!
//! The `fanout` trials kill inside a parallel step of unequal tasks (two instant ones, one
//! that yields for a while, one that waits for the parent's word), at every moment the child
//! reports (each node effect, each checkpoint and each task result stored, under `Sync` and
//! `Async`), also inside a subgraph's parallel step, on SQLite and on PostgreSQL (a schema of
//! the trial's own on the server `DASHFLOW_TEST_POSTGRES_URL` names; a skip line without it).
//! Before resuming, the parent reads what the checkpointer stored: no task whose result was
//! stored at the kill may run again.
//!
//! The test binary is its own child: with `DASHFLOW_CRASH_CHILD` set it runs one phase of the
//! workflow and exits (or is killed); otherwise it runs the trials.
#![allow(clippy::expect_used, clippy::print_stdout, reason = "a test harness and its child process")]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use dashflow::checkpoint::{CheckpointRecord, ListOptions, LoadedCheckpoint, PendingWrite};
use dashflow::prelude::*;
use dashflow::{CheckpointId, Checkpointer};
use dashflow_checkpoint_postgres::testing::TestDatabase;
use libtest_mimic::{Arguments, Failed, Trial};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Work {
    #[reduce(append)]
    log: Vec<String>,
    #[reduce(add)]
    rounds: u32,
}

/// Where the child kills itself: at the `n`-th node execution, before or after the node
/// records its side effect.
#[derive(Clone, Copy, Debug)]
struct CrashPoint {
    node_execution: u32,
    after_effect: bool,
}

struct Child {
    ledger: PathBuf,
    crash: Option<CrashPoint>,
    executions: AtomicU32,
}

impl Child {
    /// One node's work: record the effect in the ledger, dying at the crash point.
    fn effect(&self, ctx: &NodeContext, entry: &str) {
        let execution = self.executions.fetch_add(1, Ordering::SeqCst) + 1;
        let crash_here =
            |after: bool| self.crash.is_some_and(|c| c.node_execution == execution && c.after_effect == after);
        if crash_here(false) {
            kill_self();
        }
        let mut ledger =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.ledger).expect("open the ledger");
        // One write per line: appends of a short line are not interleaved or torn by a kill.
        ledger.write_all(format!("{} {entry}\n", ctx.idempotency_key()).as_bytes()).expect("write the ledger");
        drop(ledger);
        if crash_here(true) {
            kill_self();
        }
    }
}

/// SIGKILL to this very process: no destructor, flush or unwinding runs.
fn kill_self() -> ! {
    let pid = std::process::id().to_string();
    let _ = Process::new("kill").args(["-9", &pid]).status();
    // `kill -9` does not return to a killed process; if it failed, dying is still the point.
    std::process::abort()
}

/// START -> split -> {left, middle, right} -> merge -> polish (x3 loop) -> END.
fn workflow(child: Arc<Child>) -> StateGraph<Work> {
    let mut graph = StateGraph::<Work>::named("crash-workflow");
    for name in ["split", "left", "middle", "right", "merge"] {
        let child = Arc::clone(&child);
        graph.add_node(name, move |_: Arc<Work>, ctx: NodeContext| {
            child.effect(&ctx, name);
            async move { Ok(WorkUpdate::default().log(vec![name.to_owned()])) }
        });
    }
    let polisher = Arc::clone(&child);
    graph
        .add_node("polish", move |work: Arc<Work>, ctx: NodeContext| {
            polisher.effect(&ctx, "polish");
            let entry = format!("polish-{}", work.rounds);
            async move { Ok(WorkUpdate::default().log(vec![entry]).rounds(1_u32)) }
        })
        .add_edge(START, "split")
        .add_parallel_edges("split", ["left", "middle", "right"])
        .add_join(["left", "middle", "right"], "merge")
        .add_edge("merge", "polish")
        .add_conditional_edges(
            "polish",
            |w: &Work| if w.rounds < 3 { "again" } else { "done" },
            [("again", "polish"), ("done", END)],
        );
    graph
}

const THREAD: &str = "crash-thread";

/// R13 across processes: START -> work -> END, paused before `work`. In a contending child,
/// `work` announces itself on stdout and waits for a line on stdin, so the parent can hold
/// two processes inside the same step before either commits.
fn contended(gate: bool) -> StateGraph<Work> {
    let mut graph = StateGraph::<Work>::named("contended");
    graph
        .add_node("work", move |_: Arc<Work>| async move {
            if gate {
                println!("entered");
                let _ = std::io::stdout().flush();
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
            }
            Ok(WorkUpdate::default().log(vec![format!("work by {}", std::process::id())]))
        })
        .add_edge(START, "work")
        .add_edge("work", END);
    graph
}

const CONTENDED: &str = "contended-thread";

/// A contending child: resumes the paused thread; exit 3 means the thread was busy.
fn contend_main(db: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let app = contended(true).compile()?.with_checkpointer(SqliteCheckpointer::open(db).await?);
        let config = RunConfig::thread(CONTENDED).durability(Durability::Sync);
        match app.resume(Command::new(), config).await {
            Ok(result) => {
                println!("done {}", serde_json::to_string(&result.state)?);
                Ok(())
            }
            Err(dashflow::Error::ThreadBusy { .. }) => {
                println!("busy");
                std::process::exit(3)
            }
            Err(error) => Err(error.into()),
        }
    })
}

fn r13_trial() -> Trial {
    Trial::test("r13/two_processes_resuming_one_thread_let_exactly_one_advance", || {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let db = dir.path().join("checkpoints.db");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let app = contended(false)
                .compile()
                .map_err(|e| e.to_string())?
                .with_checkpointer(SqliteCheckpointer::open(&db).await.map_err(|e| e.to_string())?)
                .interrupt_before(["work"])
                .map_err(|e| e.to_string())?;
            app.invoke(Work::default(), RunConfig::thread(CONTENDED)).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        })?;
        let spawn = || {
            Process::new(std::env::current_exe().map_err(|e| e.to_string())?)
                .env("DASHFLOW_CRASH_CHILD", "contend")
                .env("DASHFLOW_CRASH_DB", &db)
                .env("DASHFLOW_HOME", db.with_extension("home"))
                .env("DASHFLOW_TRACE", "0")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start a contender: {e}"))
        };
        let mut children = [spawn()?, spawn()?];
        // Both are inside `work` (each loaded the same head) before either may finish.
        let mut readers = Vec::new();
        for child in &mut children {
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let mut reader = std::io::BufReader::new(stdout);
            let mut line = String::new();
            std::io::BufRead::read_line(&mut reader, &mut line).map_err(|e| e.to_string())?;
            if line.trim() != "entered" {
                return Err(format!("a contender said {line:?} instead of entering the step").into());
            }
            readers.push(reader);
        }
        for child in &mut children {
            let mut stdin = child.stdin.take().ok_or("no stdin")?;
            stdin.write_all(b"go\n").map_err(|e| e.to_string())?;
        }
        let mut outcomes = Vec::new();
        for (child, mut reader) in children.into_iter().zip(readers) {
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut reader, &mut rest).map_err(|e| e.to_string())?;
            let status = child.wait_with_output().map_err(|e| e.to_string())?.status;
            outcomes.push((status.code(), rest.trim().to_owned()));
        }
        let advanced = outcomes.iter().filter(|(code, out)| *code == Some(0) && out.starts_with("done")).count();
        let busy = outcomes.iter().filter(|(code, out)| *code == Some(3) && out == "busy").count();
        if (advanced, busy) != (1, 1) {
            return Err(format!("expected one winner and one busy thread, got {outcomes:?}").into());
        }
        // History never forks: the input checkpoint and one step.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let records = runtime.block_on(async {
            let db = SqliteCheckpointer::open(&db).await.map_err(|e| e.to_string())?;
            db.list(CONTENDED, &dashflow::checkpoint::ListOptions::new()).await.map_err(|e| e.to_string())
        })?;
        if records.len() != 2 || records[0].parent_id.as_ref() != Some(&records[1].checkpoint_id) {
            return Err(format!("the thread's history is not one linear step: {} records", records.len()).into());
        }
        Ok(())
    })
}

/// The child: `run` starts the thread, `resume` continues it; both print the final state.
fn child_main(phase: &str) -> anyhow::Result<()> {
    let db = PathBuf::from(std::env::var("DASHFLOW_CRASH_DB")?);
    let ledger = PathBuf::from(std::env::var("DASHFLOW_CRASH_LEDGER")?);
    let crash = std::env::var("DASHFLOW_CRASH_AT").ok().map(|spec| {
        let (n, after) = spec.split_once(':').unwrap_or((&spec, "before"));
        CrashPoint { node_execution: n.parse().unwrap_or(1), after_effect: after == "after" }
    });
    let child = Arc::new(Child { ledger, crash, executions: AtomicU32::new(0) });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let app = workflow(child).compile()?.with_checkpointer(SqliteCheckpointer::open(&db).await?);
        let config = RunConfig::thread(THREAD).durability(Durability::Sync);
        let result = match phase {
            "run" => app.invoke(Work::default(), config).await?,
            _ => app.resume(Command::new(), config).await?,
        };
        println!("{}", serde_json::to_string(&result.state)?);
        Ok(())
    })
}

fn spawn_child(phase: &str, dir: &Path, crash_at: Option<&str>) -> Result<(ExitStatus, String), Failed> {
    let mut child = Process::new(std::env::current_exe().map_err(|e| e.to_string())?);
    child
        .env("DASHFLOW_CRASH_CHILD", phase)
        .env("DASHFLOW_CRASH_DB", dir.join("checkpoints.db"))
        .env("DASHFLOW_CRASH_LEDGER", dir.join("ledger.txt"))
        .env("DASHFLOW_HOME", dir.join("home"))
        .env("DASHFLOW_TRACE", "0");
    if let Some(spec) = crash_at {
        child.env("DASHFLOW_CRASH_AT", spec);
    }
    let output = child.output().map_err(|e| format!("cannot start the child: {e}"))?;
    Ok((output.status, String::from_utf8_lossy(&output.stdout).trim().to_owned()))
}

/// The ledger's task keys, one per recorded effect.
fn ledger(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("ledger.txt"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// The step of the thread's last checkpoint, read by a fresh process's view of the database.
fn committed_step(dir: &Path) -> Result<i64, Failed> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let db = SqliteCheckpointer::open(dir.join("checkpoints.db")).await.map_err(|e| e.to_string())?;
        let records =
            db.list(THREAD, &dashflow::checkpoint::ListOptions::new().limit(1)).await.map_err(|e| e.to_string())?;
        Ok(records.first().map_or(-1, |record| record.step))
    })
}

fn trial(crash_at: &'static str, expected: String) -> Trial {
    Trial::test(format!("sigkill/{}", crash_at.replace(':', "_")), move || {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (status, _) = spawn_child("run", dir.path(), Some(crash_at))?;
        if status.success() {
            return Err(format!("the child finished instead of dying at {crash_at}").into());
        }
        let committed = committed_step(dir.path())?;
        let before_resume = ledger(dir.path());
        let (status, resumed) = spawn_child("resume", dir.path(), None)?;
        if !status.success() {
            return Err(format!("the resuming process failed: {status}").into());
        }
        if resumed != expected {
            return Err(format!("resumed state {resumed}\n differs from {expected}").into());
        }
        // Tasks of committed steps ran exactly once; a task of the step in flight at the kill
        // may have run twice (at least once), never more.
        let after = ledger(dir.path());
        for key in &after {
            let runs = after.iter().filter(|k| *k == key).count();
            let step: i64 =
                key.split('/').nth(1).and_then(|t| t.split(':').next()).and_then(|s| s.parse().ok()).unwrap_or(-1);
            let limit = if step <= committed { 1 } else { 2 };
            if runs > limit {
                return Err(format!("task {key} ran {runs} times (committed through step {committed})").into());
            }
        }
        if after.len() <= before_resume.len() && committed < 7 {
            return Err("the resume ran nothing although the run was cut short".into());
        }
        Ok(())
    })
}

// R1 inside a parallel step: the `fanout` trials.

/// Where the parallel step lives: in the graph itself, or in a subgraph node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Flat,
    Nested,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Self::Flat => "flat",
            Self::Nested => "nested",
        }
    }

    /// The namespace a node's checkpoints and pending writes live in.
    fn namespace(self, node: &str) -> &'static str {
        match (self, node) {
            (Self::Nested, "split" | "fast_a" | "fast_b" | "medium" | "slow" | "merge") => SUB_NAMESPACE,
            _ => "",
        }
    }
}

const FAN_THREAD: &str = "fanout-thread";
/// The nested shape's subgraph run: task `sub` of the parent's step 2.
const SUB_NAMESPACE: &str = "2:sub:0";
/// The parallel step's tasks whose results the parent waits for before it lets `slow` finish.
const FAST: [&str; 2] = ["2:fast_a:0", "2:fast_b:1"];

/// Appends `key node` to the ledger and syncs it before the node returns, then tells the
/// parent.
fn record_effect(ledger: &Path, key: &str, node: &str) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(ledger).expect("open the ledger");
    file.write_all(format!("{key} {node}\n").as_bytes()).expect("write the ledger");
    file.sync_all().expect("sync the ledger");
    println!("effect {key}");
}

/// split -> {fast_a, fast_b, medium, slow} -> merge: `medium` yields a while before it
/// finishes, `slow` waits for a line on stdin (the parent sends it once `fast_a` and `fast_b`
/// are stored), so the step always has finished and running tasks at once.
fn add_fan(graph: &mut StateGraph<Work>, ledger: &Arc<PathBuf>) {
    for name in ["split", "fast_a", "fast_b", "merge"] {
        let ledger = Arc::clone(ledger);
        graph.add_node(name, move |_: Arc<Work>, ctx: NodeContext| {
            record_effect(&ledger, &ctx.idempotency_key(), name);
            async move { Ok(WorkUpdate::default().log(vec![name.to_owned()])) }
        });
    }
    let medium_ledger = Arc::clone(ledger);
    let slow_ledger = Arc::clone(ledger);
    graph
        .add_node("medium", move |_: Arc<Work>, ctx: NodeContext| {
            let ledger = Arc::clone(&medium_ledger);
            async move {
                for _ in 0..200 {
                    tokio::task::yield_now().await;
                }
                record_effect(&ledger, &ctx.idempotency_key(), "medium");
                Ok(WorkUpdate::default().log(vec!["medium".to_owned()]))
            }
        })
        .add_node("slow", move |_: Arc<Work>, ctx: NodeContext| {
            let ledger = Arc::clone(&slow_ledger);
            async move {
                println!("started {}", ctx.idempotency_key());
                let _ = tokio::task::spawn_blocking(|| std::io::stdin().lock().read_line(&mut String::new())).await;
                record_effect(&ledger, &ctx.idempotency_key(), "slow");
                Ok(WorkUpdate::default().log(vec!["slow".to_owned()]))
            }
        })
        .add_edge(START, "split")
        .add_parallel_edges("split", ["fast_a", "fast_b", "medium", "slow"])
        .add_join(["fast_a", "fast_b", "medium", "slow"], "merge");
}

/// Flat: START -> split -> {fast_a, fast_b, medium, slow} -> merge -> polish (x2) -> END.
/// Nested: START -> prepare -> sub (the fan as a subgraph) -> polish (x2) -> END.
fn fanout(shape: Shape, ledger: &Arc<PathBuf>) -> anyhow::Result<StateGraph<Work>> {
    let mut graph = StateGraph::<Work>::named("fanout");
    let last = match shape {
        Shape::Flat => {
            add_fan(&mut graph, ledger);
            "merge"
        }
        Shape::Nested => {
            let mut sub = StateGraph::<Work>::named("fan");
            add_fan(&mut sub, ledger);
            sub.add_edge("merge", END);
            let prepare_ledger = Arc::clone(ledger);
            graph
                .add_node("prepare", move |_: Arc<Work>, ctx: NodeContext| {
                    record_effect(&prepare_ledger, &ctx.idempotency_key(), "prepare");
                    async move { Ok(WorkUpdate::default().log(vec!["prepare".to_owned()])) }
                })
                .add_node("sub", sub.compile()?)
                .add_edge(START, "prepare")
                .add_edge("prepare", "sub");
            "sub"
        }
    };
    let polish_ledger = Arc::clone(ledger);
    graph
        .add_node("polish", move |work: Arc<Work>, ctx: NodeContext| {
            record_effect(&polish_ledger, &ctx.idempotency_key(), "polish");
            let entry = format!("polish-{}", work.rounds);
            async move { Ok(WorkUpdate::default().log(vec![entry]).rounds(1_u32)) }
        })
        .add_edge(last, "polish")
        .add_conditional_edges(
            "polish",
            |w: &Work| if w.rounds < 2 { "again" } else { "done" },
            [("again", "polish"), ("done", END)],
        );
    Ok(graph)
}

/// The child's checkpointer, telling the parent on stdout about each checkpoint and each
/// pending write once it is committed.
#[derive(Debug)]
struct Announcing(Arc<dyn Checkpointer>);

#[async_trait]
impl Checkpointer for Announcing {
    async fn put(&self, record: CheckpointRecord, expected: Option<&CheckpointId>) -> dashflow::checkpoint::Result<()> {
        let (namespace, step) = (record.namespace.clone(), record.step);
        self.0.put(record, expected).await?;
        println!("checkpoint {namespace}|{step}");
        Ok(())
    }
    async fn put_batch(
        &self,
        records: Vec<(CheckpointRecord, Option<CheckpointId>)>,
    ) -> dashflow::checkpoint::Result<()> {
        let announced: Vec<String> =
            records.iter().map(|(record, _)| format!("checkpoint {}|{}", record.namespace, record.step)).collect();
        self.0.put_batch(records).await?;
        for line in announced {
            println!("{line}");
        }
        Ok(())
    }
    async fn put_writes(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: &CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> dashflow::checkpoint::Result<()> {
        let ids: Vec<String> = writes.iter().map(|write| write.task_id.clone()).collect();
        self.0.put_writes(thread_id, namespace, checkpoint_id, writes).await?;
        for id in ids {
            println!("writes {namespace}|{id}");
        }
        Ok(())
    }
    async fn load(
        &self,
        thread_id: &str,
        namespace: &str,
        id: Option<&CheckpointId>,
    ) -> dashflow::checkpoint::Result<Option<LoadedCheckpoint>> {
        self.0.load(thread_id, namespace, id).await
    }
    async fn list(
        &self,
        thread_id: &str,
        options: &ListOptions,
    ) -> dashflow::checkpoint::Result<Vec<CheckpointRecord>> {
        self.0.list(thread_id, options).await
    }
    async fn delete_thread(&self, thread_id: &str) -> dashflow::checkpoint::Result<()> {
        self.0.delete_thread(thread_id).await
    }
    async fn copy_thread(&self, from: &str, to: &str) -> dashflow::checkpoint::Result<()> {
        self.0.copy_thread(from, to).await
    }
    async fn delete_before(
        &self,
        thread_id: &str,
        namespace: &str,
        keep_from: &CheckpointId,
    ) -> dashflow::checkpoint::Result<u64> {
        self.0.delete_before(thread_id, namespace, keep_from).await
    }
    async fn rewrite_as_snapshot(
        &self,
        thread_id: &str,
        namespace: &str,
        id: &CheckpointId,
        blob: Vec<u8>,
    ) -> dashflow::checkpoint::Result<()> {
        self.0.rewrite_as_snapshot(thread_id, namespace, id, blob).await
    }
    async fn delete_namespace(&self, thread_id: &str, namespace: &str) -> dashflow::checkpoint::Result<u64> {
        self.0.delete_namespace(thread_id, namespace).await
    }
    async fn delete_idle_threads(&self, cutoff_ms: i64) -> dashflow::checkpoint::Result<Vec<String>> {
        self.0.delete_idle_threads(cutoff_ms).await
    }
}

/// A `fanout` child: `fanout-run` starts the thread, `fanout-resume` continues it; both
/// print the final state last.
fn fanout_main(phase: &str) -> anyhow::Result<()> {
    let db = PathBuf::from(std::env::var("DASHFLOW_CRASH_DB")?);
    let ledger = Arc::new(PathBuf::from(std::env::var("DASHFLOW_CRASH_LEDGER")?));
    let shape = match std::env::var("DASHFLOW_CRASH_SHAPE")?.as_str() {
        "nested" => Shape::Nested,
        _ => Shape::Flat,
    };
    let durability = match std::env::var("DASHFLOW_CRASH_DURABILITY")?.as_str() {
        "async" => Durability::Async,
        _ => Durability::Sync,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let checkpointer: Arc<dyn Checkpointer> = match std::env::var("DASHFLOW_CRASH_PG_SCHEMA") {
            // The parent's test schema on the test server, as another process sees it.
            Ok(schema) => {
                let url = std::env::var("DASHFLOW_TEST_POSTGRES_URL")?;
                let options: sqlx::postgres::PgConnectOptions = url.parse()?;
                let options = options.options([("search_path", schema.as_str())]);
                Arc::new(dashflow_checkpoint_postgres::PostgresCheckpointer::connect_with(options).await?)
            }
            Err(_) => Arc::new(SqliteCheckpointer::open(&db).await?),
        };
        let checkpointer = Announcing(checkpointer);
        let app = fanout(shape, &ledger)?.compile()?.with_checkpointer(checkpointer);
        let config = RunConfig::thread(FAN_THREAD).durability(durability);
        let result = match phase {
            "fanout-run" => app.invoke(Work::default(), config).await?,
            _ => match app.resume(Command::new(), config.clone()).await {
                // Under `Async` a kill can come before the first checkpoint is committed:
                // there is nothing to resume, and the work starts over.
                Err(dashflow::Error::ThreadNotFound { .. }) => app.invoke(Work::default(), config).await?,
                result => result?,
            },
        };
        println!("state {}", serde_json::to_string(&result.state)?);
        Ok(())
    })
}

/// How long a `fanout` child may print nothing before the parent calls it stalled. Reached only
/// when something the parent waits for never happens; a healthy child prints many lines a
/// millisecond.
const STALLED: std::time::Duration = std::time::Duration::from_secs(60);

/// When the parent kills a `fanout` child.
#[derive(Clone, Copy, Debug)]
enum Kill {
    Never,
    /// Right after reading the child's `n`-th line (1-based).
    AtLine(usize),
    /// Once `fast_a` and `fast_b` are stored and `slow` runs: instead of letting `slow` finish.
    InsteadOfRelease,
}

/// What a `fanout` child printed, and whether it was killed.
struct Drive {
    lines: Vec<String>,
    status: ExitStatus,
    killed: bool,
}

/// Runs one `fanout` child to its end or to `kill`. `slow` is let go once it runs and the
/// results of `fast_a` and `fast_b` are stored, in this process or (`stored`) before it.
fn drive(
    phase: &str,
    dir: &Path,
    (shape, durability, schema): (Shape, Durability, Option<&str>),
    kill: Kill,
    stored: &HashSet<String>,
) -> Result<Drive, Failed> {
    let mut child = Process::new(std::env::current_exe().map_err(|e| e.to_string())?);
    if let Some(schema) = schema {
        child.env("DASHFLOW_CRASH_PG_SCHEMA", schema);
    }
    let mut child = child
        .env("DASHFLOW_CRASH_CHILD", phase)
        .env("DASHFLOW_CRASH_DB", dir.join("checkpoints.db"))
        .env("DASHFLOW_CRASH_LEDGER", dir.join("ledger.txt"))
        .env("DASHFLOW_CRASH_SHAPE", shape.name())
        .env("DASHFLOW_CRASH_DURABILITY", if durability == Durability::Async { "async" } else { "sync" })
        .env("DASHFLOW_TRACE", "0")
        .env("DASHFLOW_WAL", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the child: {e}"))?;
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut fast_done: HashSet<String> =
        FAST.iter().filter(|task| stored.contains(**task)).map(|t| (*t).to_owned()).collect();
    let (mut slow_running, mut killed) = (false, false);
    let mut lines = Vec::new();
    // A reader thread, so that a child that stops making progress (a result the parent waits
    // for never comes) fails the trial instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = match rx.recv_timeout(STALLED) {
            Ok(line) => line.map_err(|e| e.to_string())?,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the child made no progress for {STALLED:?} (slow running: {slow_running}, fast tasks stored: \
                     {fast_done:?}); its output so far: {lines:?}"
                )
                .into());
            }
        };
        if line.starts_with("started ") {
            slow_running = true;
        }
        if let Some((_, id)) = line.strip_prefix("writes ").and_then(|rest| rest.split_once('|'))
            && let Some(task) = id.strip_suffix("#output")
            && FAST.contains(&task)
        {
            fast_done.insert(task.to_owned());
        }
        lines.push(line);
        if matches!(kill, Kill::AtLine(n) if n == lines.len()) {
            child.kill().map_err(|e| e.to_string())?;
            killed = true;
            break;
        }
        if slow_running && fast_done.len() == FAST.len() && stdin.is_some() {
            if matches!(kill, Kill::InsteadOfRelease) {
                child.kill().map_err(|e| e.to_string())?;
                killed = true;
                break;
            }
            let mut release = stdin.take().ok_or("no stdin")?;
            release.write_all(b"go\n").map_err(|e| e.to_string())?;
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    Ok(Drive { lines, status, killed })
}

/// What the checkpointer holds for the thread after a kill: per namespace, the step of the
/// head and the tasks whose results are stored after it.
struct Stored {
    committed: HashMap<&'static str, i64>,
    outputs: HashMap<&'static str, HashSet<String>>,
}

impl Stored {
    /// Reads the SQLite database in `dir`, or the PostgreSQL test schema `database`.
    fn read(dir: &Path, database: Option<&TestDatabase>) -> Result<Self, Failed> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let db: Arc<dyn Checkpointer> = match database {
                Some(database) => Arc::new(database.checkpointer().await),
                None => {
                    Arc::new(SqliteCheckpointer::open(dir.join("checkpoints.db")).await.map_err(|e| e.to_string())?)
                }
            };
            let (mut committed, mut outputs) = (HashMap::new(), HashMap::new());
            for namespace in ["", SUB_NAMESPACE] {
                let loaded = db.load(FAN_THREAD, namespace, None).await.map_err(|e| e.to_string())?;
                let step = loaded.as_ref().and_then(LoadedCheckpoint::head).map_or(-1, |record| record.step);
                let done: HashSet<String> = loaded
                    .iter()
                    .flat_map(|loaded| &loaded.pending_writes)
                    .filter_map(|write| write.task_id.strip_suffix("#output").map(str::to_owned))
                    .collect();
                committed.insert(namespace, step);
                outputs.insert(namespace, done);
            }
            Ok(Self { committed, outputs })
        })
    }

    /// Whether the result of task `task_id` of `node` was stored: its step committed, or its
    /// output stored after the head. In the nested shape, the whole subgraph run is stored
    /// once the parent's step that ran it is committed.
    fn holds(&self, shape: Shape, node: &str, task_id: &str) -> bool {
        let namespace = shape.namespace(node);
        let step: i64 = task_id.split(':').next().and_then(|step| step.parse().ok()).unwrap_or(i64::MAX);
        step <= self.committed[namespace]
            || self.outputs[namespace].contains(task_id)
            || (namespace == SUB_NAMESPACE && self.committed[""] >= 2)
    }
}

/// The ledger's entries as (task id, node), one per recorded effect. A key names the thread,
/// then in the nested shape the subgraph's parent task (`2:sub:0|`), then the task: each shape
/// has one run of the fan, so the task id alone tells its tasks apart.
fn fan_ledger(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("ledger.txt"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (key, node) = line.split_once(' ')?;
            let task = key.split_once('/')?.1;
            let task = task.rsplit_once('|').map_or(task, |(_, task)| task);
            Some((task.to_owned(), node.to_owned()))
        })
        .collect()
}

/// Where the `fanout` trials store checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    /// A schema of the trial's own on the server `DASHFLOW_TEST_POSTGRES_URL` names.
    Postgres,
}

fn fanout_trial(backend: Backend, shape: Shape, durability: Durability, kill: Kill, expected: String) -> Trial {
    let point = match kill {
        Kill::AtLine(n) => format!("kill_at_line_{n:02}"),
        _ => "kill_with_fast_tasks_stored_and_slow_running".to_owned(),
    };
    let prefix = if backend == Backend::Postgres { "r1/fanout-postgres" } else { "r1/fanout" };
    let name = format!("{prefix}/{}/{durability:?}/{point}", shape.name()).to_lowercase();
    Trial::test(name.clone(), move || {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        // The schema lives as long as the trial; without a server the trial says so and passes
        // (`DASHFLOW_TEST_POSTGRES_REQUIRED=1` makes that a failure).
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
                match runtime.block_on(TestDatabase::from_env(&name)) {
                    Some(database) => Some(database),
                    None => return Ok(()),
                }
            }
        };
        let modes = (shape, durability, database.as_ref().map(TestDatabase::schema));
        let first = drive("fanout-run", dir.path(), modes, kill, &HashSet::new())?;
        if !first.killed {
            return Err(format!("the child finished ({}) instead of dying at {kill:?}", first.status).into());
        }
        let stored = Stored::read(dir.path(), database.as_ref())?;
        let before: Vec<(String, String)> = fan_ledger(dir.path());
        let fan_namespace = shape.namespace("fast_a");
        let resumed = drive("fanout-resume", dir.path(), modes, Kill::Never, &stored.outputs[fan_namespace])?;
        if !resumed.status.success() {
            return Err(format!("the resuming process failed: {}", resumed.status).into());
        }
        let state = resumed.lines.last().and_then(|line| line.strip_prefix("state ")).unwrap_or_default();
        if state != expected {
            return Err(format!("resumed state {state}\n differs from {expected}").into());
        }
        let after = fan_ledger(dir.path());
        let mut runs: HashMap<&(String, String), usize> = HashMap::new();
        for entry in &after {
            *runs.entry(entry).or_default() += 1;
        }
        for ((task, node), count) in runs {
            if stored.holds(shape, node, task) && count != 1 {
                return Err(format!(
                    "task {task} ({node}) ran {count} times although its result was stored at the kill \
                     (ledger before the resume: {before:?})"
                )
                .into());
            }
            if count > 2 {
                return Err(format!("task {task} ({node}) ran {count} times").into());
            }
        }
        // The resume stores no result the killed run had stored.
        for line in &resumed.lines {
            if let Some((namespace, id)) = line.strip_prefix("writes ").and_then(|rest| rest.split_once('|'))
                && let Some(task) = id.strip_suffix("#output")
                && stored.outputs.get(namespace).is_some_and(|done| done.contains(task))
            {
                return Err(format!("the resume stored the result of {task} in `{namespace}` again").into());
            }
        }
        if matches!(kill, Kill::InsteadOfRelease) {
            // The quick tasks had finished and were stored long before the kill: they ran
            // once, and `slow`, killed while it waited, ran once to its end.
            for task in FAST {
                if !stored.outputs[fan_namespace].contains(task) {
                    return Err(format!("{task} was not stored although the parent saw it stored").into());
                }
            }
            let slow = after.iter().filter(|(_, node)| node == "slow").count();
            if slow != 1 {
                return Err(format!("`slow` recorded {slow} effects").into());
            }
        }
        Ok(())
    })
}

/// The uninterrupted `fanout` run of `shape`: its final state and how many lines it prints.
fn fanout_reference(shape: Shape, durability: Durability) -> (String, usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let run = drive("fanout-run", dir.path(), (shape, durability, None), Kill::Never, &HashSet::new())
        .expect("the reference fanout child");
    assert!(run.status.success(), "the uninterrupted fanout run failed: {}", run.status);
    let state = run.lines.last().and_then(|line| line.strip_prefix("state ")).expect("a final state").to_owned();
    (state, run.lines.len())
}

fn fanout_trials() -> Vec<Trial> {
    let mut trials = Vec::new();
    for shape in [Shape::Flat, Shape::Nested] {
        for durability in [Durability::Sync, Durability::Async] {
            // The final state does not depend on the backend, nor the lines the child prints.
            let (expected, lines) = fanout_reference(shape, durability);
            for backend in [Backend::Sqlite, Backend::Postgres] {
                trials.push(fanout_trial(backend, shape, durability, Kill::InsteadOfRelease, expected.clone()));
                // Every moment the child reports, but the last (the final state); every other
                // one on the shared PostgreSQL server, where each trial sets up a schema.
                let step = if backend == Backend::Postgres { 2 } else { 1 };
                for line in (1..lines).step_by(step) {
                    trials.push(fanout_trial(backend, shape, durability, Kill::AtLine(line), expected.clone()));
                }
            }
        }
    }
    trials
}

fn main() {
    if let Ok(phase) = std::env::var("DASHFLOW_CRASH_CHILD") {
        let outcome = match phase.as_str() {
            "contend" => std::env::var("DASHFLOW_CRASH_DB")
                .map_err(anyhow::Error::from)
                .and_then(|db| contend_main(Path::new(&db))),
            "fanout-run" | "fanout-resume" => fanout_main(&phase),
            _ => child_main(&phase),
        };
        if let Err(error) = outcome {
            eprintln!("child failed: {error:#}");
            std::process::exit(2);
        }
        return;
    }
    let arguments = Arguments::from_args();
    // The uninterrupted run, in a process of its own, gives the expected final state.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (status, expected) = spawn_child("run", dir.path(), None).expect("the reference child");
    assert!(status.success(), "the uninterrupted run failed: {status}");
    // 8 node executions in all (split, 3 branches, merge, 3 polish rounds); kill at each,
    // before and after its side effect.
    let points: Vec<&'static str> = vec![
        "1:before", "1:after", "2:before", "2:after", "3:after", "4:before", "4:after", "5:before", "5:after",
        "6:before", "6:after", "7:after", "8:before", "8:after",
    ];
    let mut trials: Vec<Trial> = points.into_iter().map(|point| trial(point, expected.clone())).collect();
    trials.push(r13_trial());
    trials.extend(fanout_trials());
    libtest_mimic::run(&arguments, trials).exit();
}
