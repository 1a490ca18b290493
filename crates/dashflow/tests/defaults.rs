//! The default observers end to end, through `dashflow::CompileExt::compile`: the process's
//! write-ahead log under `DASHFLOW_HOME` gets every event of every run, concurrent runs
//! included, and `live_runs()` names the step a run waits in.
//!
//! Without the libtest harness: `main` runs the trials in a child process whose
//! `DASHFLOW_HOME` points at a directory of its own and whose working directory is an empty
//! one, with no `DASHFLOW_TRACE_DIR`.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, reason = "a test harness, outside `#[test]`")]

use std::sync::Mutex;

use dashflow::prelude::*;
use dashflow::wal::{RunStatus, Wal, WalConfig};
use libtest_mimic::{Arguments, Failed, Trial};
use tokio::sync::oneshot;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Count {
    #[reduce(add)]
    n: u64,
}

/// `inc` around its own conditional edge until `n` reaches `rounds`.
fn counting(rounds: u64) -> CompiledGraph<Count> {
    let mut graph = StateGraph::<Count>::named("counting");
    graph
        .add_node("inc", |_: Arc<Count>| async { Ok(CountUpdate::default().n(1_u64)) })
        .add_edge(START, "inc")
        .add_conditional_edges(
            "inc",
            move |state: &Count| if state.n < rounds { "again" } else { "done" },
            [("again", "inc"), ("done", END)],
        );
    both_crates_in_scope::compile(graph)
}

/// Everything of the facade and of the executor in scope at once: `compile()` still means one
/// method (this would not build if the executor had a `compile` of its own).
mod both_crates_in_scope {
    use dashflow::prelude::*;
    #[allow(unused_imports, reason = "in scope to collide with the prelude, not to be used")]
    use dashflow_executor::*;

    pub(super) fn compile(graph: StateGraph<super::Count>) -> CompiledGraph<super::Count> {
        graph.compile().unwrap()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn wal() -> Wal {
    let home = std::env::var_os("DASHFLOW_HOME").unwrap();
    Wal::open(std::path::Path::new(&home).join("wal"), WalConfig::default()).unwrap()
}

/// Counts of the event kinds of `events`: (task ends, routing decisions, runs finished).
fn kinds(events: &[Event]) -> (usize, usize, usize) {
    let count = |wanted: fn(&EventKind) -> bool| events.iter().filter(|event| wanted(&event.kind)).count();
    (
        count(|kind| matches!(kind, EventKind::TaskFinished { .. })),
        count(|kind| matches!(kind, EventKind::Routed { .. })),
        count(|kind| matches!(kind, EventKind::RunFinished { .. })),
    )
}

fn concurrent_runs_all_reach_the_log_whole() -> Result<(), Failed> {
    let runtime = runtime();
    let app = counting(50);
    let ids = runtime.block_on(async {
        let runs = (0..8).map(|_| {
            let app = app.clone();
            let config = RunConfig::new().recursion_limit(100);
            tokio::spawn(async move { app.invoke(Count::default(), config).await.unwrap().run_id })
        });
        futures::future::join_all(runs).await.into_iter().map(Result::unwrap).collect::<Vec<_>>()
    });
    dashflow::flush_observers();
    let store = dashflow::wal::EventStore::global()?.ok_or("the log is on")?;
    if store.stats().dropped > 0 {
        return Err(format!("the queue dropped events of 8 short runs: {:?}", store.stats()).into());
    }
    let wal = wal();
    for id in ids {
        let events = wal.run_events(id)?;
        // 50 steps: an end each, a decision after each, one run end; each step's start is
        // folded into its one task's end.
        if kinds(&events) != (50, 50, 1) {
            return Err(format!("run {id}: {:?}", kinds(&events)).into());
        }
        if events.windows(2).any(|pair| pair[0].at > pair[1].at) {
            return Err(format!("run {id}: times go backwards").into());
        }
        let summary = wal.run(id)?.ok_or("the run is indexed")?;
        if summary.status != RunStatus::Completed || summary.steps != 50 {
            return Err(format!("run {id}: {:?} after {} steps", summary.status, summary.steps).into());
        }
    }
    // (The other trial's run may be live meanwhile: only these runs are checked.)
    if dashflow::live_runs().iter().any(|run| &*run.graph == "counting") {
        return Err("finished runs are still live".into());
    }
    Ok(())
}

fn a_run_waiting_in_a_node_is_live_there_and_in_the_log() -> Result<(), Failed> {
    let (entered_tx, entered) = oneshot::channel::<()>();
    let (release, release_rx) = oneshot::channel::<()>();
    let gate = Arc::new(Mutex::new(Some((entered_tx, release_rx))));
    let mut graph = StateGraph::<Count>::named("waiting");
    graph
        .add_node("first", |_: Arc<Count>| async { Ok(CountUpdate::default().n(1_u64)) })
        .add_node("slow", move |_: Arc<Count>| {
            let gate = gate.lock().unwrap().take();
            async move {
                let (entered, release) = gate.expect("`slow` runs once");
                entered.send(()).unwrap();
                release.await.unwrap();
                Ok(CountUpdate::default().n(1_u64))
            }
        })
        .add_edge(START, "first")
        .add_edge("first", "slow")
        .add_edge("slow", END);
    let app = graph.compile().unwrap();
    // One thread: once `slow` says it entered, its run has gone on to wait (the node's next
    // await) before this test looks. On several threads the test could look in between,
    // before the run has handed anything over.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let run = runtime.spawn(async move { app.invoke(Count::default(), RunConfig::new()).await });
    runtime.block_on(entered)?;

    let live = dashflow::live_runs();
    let waiting = live.iter().find(|run| &*run.graph == "waiting").ok_or("the waiting run is live")?;
    let running: Vec<&str> = waiting.running.iter().map(|node| &**node).collect();
    if (waiting.step, running.as_slice()) != (2, ["slow"].as_slice()) {
        return Err(format!("live view: step {} running {running:?}", waiting.step).into());
    }
    // Handed to the log when the run began to wait: a follower sees the step.
    dashflow::flush_observers();
    let events = wal().run_events(waiting.run.run_id)?;
    let started = events.iter().any(|event| matches!(&event.kind, EventKind::SuperstepStarted { step: 2, nodes } if nodes.len() == 1 && &*nodes[0] == "slow"));
    if !started {
        return Err(format!("the log lacks the waiting step: {events:?}").into());
    }

    release.send(()).map_err(|()| "the run is gone")?;
    runtime.block_on(run)??;
    Ok(())
}

fn compile_lists_its_default_observers_and_drops_them_on_request() -> Result<(), Failed> {
    let app = counting(1);
    let home = std::env::var_os("DASHFLOW_HOME").unwrap();
    let log = format!("event log in {}", std::path::Path::new(&home).join("wal").display());
    let names: Vec<(String, bool)> =
        app.observers().iter().map(|observer| (observer.name().into_owned(), observer.is_default())).collect();
    if names != [("live runs".to_owned(), true), (log.clone(), true)] {
        return Err(format!("default observers: {names:?}").into());
    }
    let seen = Arc::new(Mutex::new(0_usize));
    let counter = Arc::clone(&seen);
    let mine = app.with_callback(move |_: &Event| *counter.lock().unwrap() += 1).without_default_observers();
    if mine.observers().len() != 1 || mine.observers()[0].is_default() {
        return Err(format!("after without_default_observers: {:?}", mine.observers()).into());
    }
    let run = runtime().block_on(mine.invoke(Count::default(), RunConfig::new()))?;
    dashflow::flush_observers();
    if wal().run(run.run_id)?.is_some() {
        return Err("a graph without default observers logged its run".into());
    }
    if dashflow::live_runs().iter().any(|live| live.run.run_id == run.run_id) {
        return Err("a graph without default observers is in live_runs".into());
    }
    if *seen.lock().unwrap() == 0 {
        return Err("the graph's own callback heard nothing".into());
    }
    Ok(())
}

fn runs_write_nothing_into_the_working_directory_and_keep_their_trace_in_the_log() -> Result<(), Failed> {
    let run = runtime().block_on(counting(3).invoke(Count::default(), RunConfig::new()))?;
    dashflow::flush_observers();
    let cwd = std::env::current_dir()?;
    let written: Vec<_> =
        std::fs::read_dir(&cwd)?.map(|entry| entry.map(|entry| entry.file_name())).collect::<Result<_, _>>()?;
    if !written.is_empty() {
        return Err(format!("a run wrote into the working directory {}: {written:?}", cwd.display()).into());
    }
    let trace = wal().trace(run.run_id)?.ok_or("the run's trace is in the log")?;
    if trace.tasks.len() != 3 {
        return Err(format!("the trace has {} tasks, not 3", trace.tasks.len()).into());
    }
    Ok(())
}

/// Set in the child process that runs the trials.
const CHILD: &str = "DASHFLOW_DEFAULTS_TEST_CHILD";

/// Set (to a home that must stay empty) in the child process that checks that a graph run
/// without its default observers touches no file.
const QUIET_CHILD: &str = "DASHFLOW_DEFAULTS_TEST_QUIET";

/// In a process of its own (the log opens once per process): a graph compiled, stripped of
/// its default observers and run, and one compiled and never run, create no home.
fn without_default_observers_no_file_is_ever_written() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .current_dir(dir.path())
        .env(QUIET_CHILD, "1")
        .env("DASHFLOW_HOME", &home)
        .env_remove("DASHFLOW_TRACE_DIR")
        .env_remove("DASHFLOW_WAL")
        .status()
        .unwrap();
    assert!(status.success(), "the quiet child failed: {status}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert!(left.is_empty(), "a graph without default observers wrote {left:?}");
}

fn quiet_child() {
    let never_run = counting(1);
    assert!(never_run.observers().iter().any(|observer| observer.name().starts_with("event log in ")));
    let app = counting(3).without_default_observers();
    let result = runtime().block_on(app.invoke(Count::default(), RunConfig::new())).unwrap();
    assert_eq!(result.state.n, 3);
    dashflow::flush_observers();
}

fn main() {
    if std::env::var_os(QUIET_CHILD).is_some() {
        quiet_child();
        return;
    }
    if std::env::var_os(CHILD).is_none() {
        without_default_observers_no_file_is_ever_written();
        // The parent: runs this binary again with a home of its own (the event store reads
        // the environment once, and setting it in-process would need `unsafe`).
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(std::env::args_os().skip(1))
            .current_dir(&work)
            .env(CHILD, "1")
            .env("DASHFLOW_HOME", dir.path().join("home"))
            .env_remove("DASHFLOW_TRACE_DIR")
            .env_remove("DASHFLOW_WAL")
            .env_remove("DASHFLOW_TRACE")
            .status()
            .unwrap();
        drop(dir);
        std::process::exit(status.code().unwrap_or(1));
    }
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test("concurrent_runs_all_reach_the_log_whole", concurrent_runs_all_reach_the_log_whole),
        Trial::test(
            "a_run_waiting_in_a_node_is_live_there_and_in_the_log",
            a_run_waiting_in_a_node_is_live_there_and_in_the_log,
        ),
        Trial::test(
            "compile_lists_its_default_observers_and_drops_them_on_request",
            compile_lists_its_default_observers_and_drops_them_on_request,
        ),
        Trial::test(
            "runs_write_nothing_into_the_working_directory_and_keep_their_trace_in_the_log",
            runs_write_nothing_into_the_working_directory_and_keep_their_trace_in_the_log,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}
