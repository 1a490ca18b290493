//! R1 and R13 (across processes) of `shared/RELIABILITY.md`. R1: a child process runs a multi-step graph with a fan-out and is
//! killed with SIGKILL at a chosen moment (one trial per seed); a new process resumes the
//! thread from the SQLite checkpoints. The final state must equal the uninterrupted run's, and
//! a ledger of node side effects (keyed by each task's idempotency key) shows that no task of
//! a step committed before the kill ran again.
//!
//! The test binary is its own child: with `DASHFLOW_CRASH_CHILD` set it runs one phase of the
//! workflow and exits (or is killed); otherwise it runs the trials.
#![allow(clippy::expect_used, clippy::print_stdout, reason = "a test harness and its child process")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use dashflow::Checkpointer;
use dashflow::prelude::*;
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
                .interrupt_before(["work"]);
            app.invoke(Work::default(), RunConfig::thread(CONTENDED)).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        })?;
        let spawn = || {
            Process::new(std::env::current_exe().map_err(|e| e.to_string())?)
                .env("DASHFLOW_CRASH_CHILD", "contend")
                .env("DASHFLOW_CRASH_DB", &db)
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

fn main() {
    if let Ok(phase) = std::env::var("DASHFLOW_CRASH_CHILD") {
        let outcome = match phase.as_str() {
            "contend" => std::env::var("DASHFLOW_CRASH_DB")
                .map_err(anyhow::Error::from)
                .and_then(|db| contend_main(Path::new(&db))),
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
    libtest_mimic::run(&arguments, trials).exit();
}
