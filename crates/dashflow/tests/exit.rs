//! R27: a program that finishes its runs and exits, without calling anything, leaves every
//! run `completed` and every event in the log; a log that cannot be written is reported once
//! and fails nothing.
//!
//! Each trial runs this binary again as the program under test, with a home, working
//! directory and `HOME` of its own in a temporary directory, and reads what it left behind.
//! The program prints, for each run, how many events a sink with the log's interest saw
//! (`emitted RUN COUNT`): the log must hold exactly those.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, reason = "a test harness, outside `#[test]`")]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use dashflow::prelude::*;
use dashflow::telemetry::{EventBatch, EventCallback, Interest, RunId, RunIds};
use dashflow::wal::{EventStore, FailureReport, RunFilter, RunStatus, Storage, StoreConfig, Wal, WalConfig};
use libtest_mimic::{Arguments, Failed, Trial};
use tempfile::TempDir;

/// Set, to the scenario's name, in the program under test.
const CHILD: &str = "DASHFLOW_EXIT_TEST_CHILD";

// ---- The program under test ----

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Count {
    #[reduce(add)]
    n: u64,
}

/// Counts each run's events as the log's own sink sees them: fed from the same batches,
/// with the same interest.
struct Emitted {
    interest: Interest,
    runs: Mutex<HashMap<RunId, usize>>,
}

impl EventCallback for Emitted {
    fn on_event(&self, event: &Event) {
        *self.runs.lock().unwrap().entry(event.run.run_id).or_default() += 1;
    }

    fn interest(&self) -> Interest {
        self.interest
    }

    fn batches(&self) -> bool {
        true
    }

    /// Counts what the log stores of a batch: all but a one-task step's start that its
    /// task's first end directly follows in the batch (stored in that end).
    fn on_batch(&self, batch: &EventBatch) {
        let events: Vec<Event> = batch.events().filter(|event| self.interest.covers(&event.kind)).collect();
        let mut runs = self.runs.lock().unwrap();
        for (index, event) in events.iter().enumerate() {
            if events.get(index + 1).is_some_and(|next| starts_lone_task_of(event, next)) {
                continue;
            }
            *runs.entry(event.run.run_id).or_default() += 1;
        }
    }
}

/// Whether `start` is the start of a one-task step whose task's first attempt `end` ends.
fn starts_lone_task_of(start: &Event, end: &Event) -> bool {
    match (&start.kind, &end.kind) {
        (
            EventKind::SuperstepStarted { step, nodes },
            EventKind::TaskFinished { step: ended, node, attempt: 1, .. },
        ) => start.run.run_id == end.run.run_id && step == ended && matches!(&**nodes, [only] if only == node),
        _ => false,
    }
}

/// A disk whose writes never return.
#[derive(Debug)]
struct StuckDisk;

impl Storage for StuckDisk {
    fn append(&self, _file: &mut std::fs::File, _buf: &[u8]) -> std::io::Result<()> {
        loop {
            // Woken when the store wants its writer: still stuck.
            std::thread::park();
        }
    }
}

/// `inc` around its own conditional edge until `n` reaches `rounds`.
fn counting(rounds: u64, emitted: &Arc<Emitted>) -> CompiledGraph<Count> {
    let mut graph = StateGraph::<Count>::named("counting");
    graph
        .add_node("inc", |_: Arc<Count>| async { Ok(CountUpdate::default().n(1_u64)) })
        .add_edge(START, "inc")
        .add_conditional_edges(
            "inc",
            move |state: &Count| if state.n < rounds { "again" } else { "done" },
            [("again", "inc"), ("done", END)],
        );
    graph.compile().unwrap().with_shared_callback(Arc::clone(emitted) as Arc<dyn EventCallback>)
}

/// Three parallel tasks and a join.
fn fan_out(emitted: &Arc<Emitted>) -> CompiledGraph<Count> {
    let mut graph = StateGraph::<Count>::named("fan-out");
    for node in ["a", "b", "c", "join"] {
        graph.add_node(node, |_: Arc<Count>| async { Ok(CountUpdate::default().n(1_u64)) });
    }
    graph.add_parallel_edges(START, ["a", "b", "c"]).add_join(["a", "b", "c"], "join").add_edge("join", END);
    graph.compile().unwrap().with_shared_callback(Arc::clone(emitted) as Arc<dyn EventCallback>)
}

fn emitted_sink() -> Arc<Emitted> {
    // The interest of the log's sink, so this counts what the log is handed; when the log is
    // off (it cannot be opened), any interest does.
    let interest = EventStore::global().ok().flatten().map_or(Interest::ALL, |store| store.interest());
    Arc::new(Emitted { interest, runs: Mutex::new(HashMap::new()) })
}

/// A tight loop of short runs, concurrent long runs, parallel steps, and runs on another
/// thread with a runtime of its own; each is checked to complete.
async fn workload(emitted: &Arc<Emitted>) {
    let short = counting(3, emitted);
    for _ in 0..1000 {
        let result = short.invoke(Count::default(), RunConfig::new()).await.unwrap();
        assert_eq!(result.state.n, 3);
    }
    let long = counting(40, emitted);
    let parallel = fan_out(emitted);
    let mut runs = Vec::new();
    for _ in 0..8 {
        let long = long.clone();
        runs.push(tokio::spawn(
            async move { long.invoke(Count::default(), RunConfig::new().recursion_limit(50)).await },
        ));
    }
    for _ in 0..100 {
        let parallel = parallel.clone();
        runs.push(tokio::spawn(async move { parallel.invoke(Count::default(), RunConfig::new()).await }));
    }
    let elsewhere = std::thread::spawn({
        let short = short.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            for _ in 0..100 {
                runtime.block_on(short.invoke(Count::default(), RunConfig::new())).unwrap();
            }
        }
    });
    for run in futures::future::join_all(runs).await {
        assert_eq!(run.unwrap().unwrap().status, dashflow::RunStatus::Completed);
    }
    elsewhere.join().unwrap();
}

fn report(emitted: &Emitted) {
    for (run, count) in emitted.runs.lock().unwrap().iter() {
        println!("emitted {run} {count}");
    }
    // Every run has ended and handed its events over: nothing is dropped after this.
    if let Some(store) = EventStore::global().ok().flatten() {
        println!("dropped {}", store.stats().dropped);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Says when a run's task `fast` has ended, as the log's sink sees it: fed from the same
/// hand-over of the run's events.
struct FastEnded(std::sync::atomic::AtomicBool);

impl EventCallback for FastEnded {
    fn on_event(&self, event: &Event) {
        if matches!(&event.kind, EventKind::TaskFinished { node, .. } if &**node == "fast") {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn batches(&self) -> bool {
        true
    }
}

/// A run cut short inside a parallel step: `fast` has finished, `wait` waits forever. Started
/// on `runtime`, a one-thread runtime driven here only until the log has been handed the
/// end of `fast`.
fn start_stuck_run(runtime: &tokio::runtime::Runtime) -> RunId {
    let mut graph = StateGraph::<Count>::named("stuck");
    graph
        .add_node("fast", |_: Arc<Count>| async { Ok(CountUpdate::default().n(1_u64)) })
        .add_node("wait", |_: Arc<Count>| async {
            futures::future::pending::<()>().await;
            Ok(CountUpdate::default())
        })
        .add_parallel_edges(START, ["fast", "wait"])
        .add_edge("fast", END)
        .add_edge("wait", END);
    let ended = Arc::new(FastEnded(std::sync::atomic::AtomicBool::new(false)));
    let app = graph.compile().unwrap().with_shared_callback(Arc::clone(&ended) as Arc<dyn EventCallback>);
    runtime.spawn(async move { app.invoke(Count::default(), RunConfig::new()).await });
    // Each turn lets the run's tasks go on until they all wait; no clock involved.
    let mut turns = 0;
    while !ended.0.load(std::sync::atomic::Ordering::SeqCst) {
        runtime.block_on(tokio::task::yield_now());
        turns += 1;
        assert!(turns < 100_000, "`fast` never ended");
    }
    let live = dashflow::live_runs();
    live.iter().find(|run| &*run.graph == "stuck").unwrap().run.run_id
}

fn child(scenario: &str) {
    match scenario {
        // Returns from `main`, no flush anywhere.
        "return" => {
            let emitted = emitted_sink();
            runtime().block_on(workload(&emitted));
            report(&emitted);
        }
        // `std::process::exit(0)` from a runtime worker, with a run still waiting in a node.
        "exit" => {
            let emitted = emitted_sink();
            let runtime = runtime();
            runtime.block_on(workload(&emitted));
            let waiting = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let stuck = start_stuck_run(&waiting);
            println!("unfinished {stuck}");
            report(&emitted);
            runtime.block_on(async { tokio::spawn(async { std::process::exit(0) }).await.unwrap() });
            unreachable!("the process has exited");
        }
        // A test binary: the harness runs the trials on its threads and ends the process.
        "harness" => {
            let emitted = emitted_sink();
            let trials = (0..3)
                .map(|index| {
                    let emitted = Arc::clone(&emitted);
                    Trial::test(format!("workload_{index}"), move || {
                        runtime().block_on(workload(&emitted));
                        Ok(())
                    })
                })
                .collect();
            let arguments = Arguments { test_threads: Some(2), ..Arguments::default() };
            let conclusion = libtest_mimic::run(&arguments, trials);
            report(&emitted);
            conclusion.exit();
        }
        // `DASHFLOW_HOME` cannot be created: the runs complete and the program succeeds.
        "unwritable" => {
            let emitted = emitted_sink();
            runtime().block_on(workload(&emitted));
            dashflow::flush_observers();
            assert!(EventStore::global().is_err(), "the home is unwritable");
            dashflow::flush_observers();
            println!("completed {}", emitted.runs.lock().unwrap().len());
        }
        // Returns from `main` holding a store of its own, opened first, whose disk never
        // finishes a write: the process still exits, and the process's store is written.
        "stuck" => {
            static STUCK: OnceLock<EventStore> = OnceLock::new();
            let config = StoreConfig::default()
                .wal(WalConfig::default().storage(Arc::new(StuckDisk)))
                .report(FailureReport::Stderr);
            let stuck = STUCK.get_or_init(|| EventStore::open("../stuck", config).unwrap());
            let run = RunIds::root(RunId::new());
            stuck.on_event(&Event::now(
                run,
                EventKind::RunStarted { graph: "stuck".into(), thread_id: None, tags: Vec::new() },
            ));
            let emitted = emitted_sink();
            runtime().block_on(workload(&emitted));
            report(&emitted);
        }
        other => panic!("unknown scenario {other}"),
    }
}

// ---- The trials ----

/// Runs `scenario` as a child with `DASHFLOW_HOME` = `home`, its working directory and `HOME`
/// in `dir`, trace files in `traces` (`None`: the default, the working directory).
fn run_child(scenario: &str, dir: &Path, home: &Path, traces: Option<&Path>) -> Output {
    let (cwd, user) = (dir.join("cwd"), dir.join("user"));
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(&user).unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .env(CHILD, scenario)
        .env("DASHFLOW_HOME", home)
        .env("HOME", &user)
        .current_dir(&cwd)
        .env_remove("DASHFLOW_WAL")
        .env_remove("DASHFLOW_TRACE")
        .env_remove("DASHFLOW_WAL_FSYNC")
        .env_remove("DASHFLOW_TRACE_DIR")
        .env_remove("RUST_LOG");
    if let Some(traces) = traces {
        command.env("DASHFLOW_TRACE_DIR", traces);
    }
    command.output().unwrap()
}

/// What the child said on stdout: `(word, rest)` for each line.
fn said<'a>(output: &'a Output, word: &str) -> Vec<&'a str> {
    let stdout = std::str::from_utf8(&output.stdout).unwrap();
    stdout.lines().filter_map(|line| line.strip_prefix(word)?.strip_prefix(' ')).collect()
}

/// Runs of one [`workload`]: 1,100 short, 8 long and 100 parallel ones.
const WORKLOAD_RUNS: usize = 1208;

/// Runs `scenario`, which runs `workloads` workloads and succeeds with nothing on stderr,
/// and checks the log: every run the program finished is `completed` with exactly the events
/// it emitted. Returns the log, and the directory that holds it.
fn every_finished_run_is_in_the_log_whole(scenario: &str, workloads: usize) -> Result<(TempDir, Wal), Failed> {
    every_finished_run_is_in_the_log_whole_and(scenario, workloads, |stderr| stderr.trim().is_empty())
}

/// [`every_finished_run_is_in_the_log_whole`] with what stderr must hold.
fn every_finished_run_is_in_the_log_whole_and(
    scenario: &str,
    workloads: usize,
    stderr_ok: impl Fn(&str) -> bool,
) -> Result<(TempDir, Wal), Failed> {
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    let output = run_child(scenario, dir.path(), &home, Some(&dir.path().join("traces")));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() || !stderr_ok(&stderr) {
        return Err(format!("the program failed ({}) or said: {stderr}", output.status).into());
    }
    let emitted: HashMap<RunId, usize> = said(&output, "emitted")
        .into_iter()
        .map(|line| {
            let (run, count) = line.split_once(' ').unwrap();
            (run.parse().unwrap(), count.parse().unwrap())
        })
        .collect();
    if emitted.len() != workloads * WORKLOAD_RUNS {
        return Err(format!("the program reported {} runs", emitted.len()).into());
    }
    // The queue cannot drop what fits in it, so the log must hold every event.
    let total: usize = emitted.values().sum();
    if total >= StoreConfig::default().capacity {
        return Err(format!("the workload ({total} events) could overflow the queue: make it smaller").into());
    }
    if said(&output, "dropped") != ["0"] {
        return Err(format!("the store dropped events: {:?}", said(&output, "dropped")).into());
    }

    let wal = Wal::open(home.join("wal"), WalConfig::default())?;
    let unfinished: Vec<RunId> = said(&output, "unfinished").iter().map(|run| run.parse().unwrap()).collect();
    for summary in wal.list_runs(&RunFilter::all())? {
        let run = summary.ids.run_id;
        if unfinished.contains(&run) {
            continue;
        }
        if summary.status != RunStatus::Completed {
            return Err(format!("run {run} reads {:?}", summary.status).into());
        }
        let Some(&count) = emitted.get(&run) else { return Err(format!("run {run} was not run").into()) };
        let stored = wal.run_events(run)?.len();
        if stored != count {
            return Err(format!("run {run}: {stored} events in the log of {count} emitted").into());
        }
    }
    let listed = wal.list_runs(&RunFilter::all())?.len();
    if listed != emitted.len() + unfinished.len() {
        return Err(format!("{listed} runs in the log, {} run", emitted.len() + unfinished.len()).into());
    }
    Ok((dir, wal))
}

fn runs_finished_before_main_returns_are_all_completed_with_every_event() -> Result<(), Failed> {
    every_finished_run_is_in_the_log_whole("return", 1).map(drop)
}

fn runs_finished_before_process_exit_are_all_completed_and_a_run_cut_short_is_abandoned() -> Result<(), Failed> {
    let (_dir, wal) = every_finished_run_is_in_the_log_whole("exit", 1)?;
    // The run cut short inside its parallel step: abandoned, not completed, with the step's
    // start and the end of the task that finished in it.
    let cut_short: Vec<_> = wal
        .list_runs(&RunFilter::all())?
        .into_iter()
        .filter(|summary| summary.graph.as_deref() == Some("stuck"))
        .collect();
    let [summary] = cut_short.as_slice() else {
        return Err(format!("{} runs cut short in the log", cut_short.len()).into());
    };
    if summary.status != RunStatus::Abandoned {
        return Err(format!("the run cut short by the exit reads {:?}", summary.status).into());
    }
    let events = wal.run_events(summary.ids.run_id)?;
    let step_started = events
        .iter()
        .any(|event| matches!(&event.kind, EventKind::SuperstepStarted { step: 1, nodes } if nodes.len() == 2));
    let fast_ended =
        events.iter().any(|event| matches!(&event.kind, EventKind::TaskFinished { node, .. } if &**node == "fast"));
    if !(step_started && fast_ended) {
        return Err(format!("the run cut short lacks its step or its finished task: {events:?}").into());
    }
    Ok(())
}

fn runs_of_a_test_binary_are_all_completed_with_every_event_when_its_harness_ends() -> Result<(), Failed> {
    every_finished_run_is_in_the_log_whole("harness", 3).map(drop)
}

fn a_stuck_disk_delays_the_exit_by_the_limit_only_and_is_reported_once() -> Result<(), Failed> {
    // The docs promise this bound.
    if EventStore::EXIT_FLUSH_LIMIT != std::time::Duration::from_secs(5) {
        return Err(format!("the limit is {:?}, the docs say 5 s", EventStore::EXIT_FLUSH_LIMIT).into());
    }
    // A hang here is the failure this guards against.
    every_finished_run_is_in_the_log_whole_and("stuck", 1, |stderr| {
        let lines: Vec<&str> = stderr.lines().collect();
        lines.len() == 1 && lines[0].contains("`../stuck` did not finish writing within 5 s")
    })
    .map(drop)
}

fn an_unwritable_home_is_reported_once_and_the_program_still_succeeds() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    // A home under a regular file cannot be created, by root either.
    let file = dir.path().join("file");
    std::fs::write(&file, b"")?;
    let home = file.join("sub");
    let output = run_child("unwritable", dir.path(), &home, None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("the program failed ({}): {stderr}", output.status).into());
    }
    if said(&output, "completed") != [WORKLOAD_RUNS.to_string()] {
        return Err(format!("runs completed: {:?}", said(&output, "completed")).into());
    }
    let lines: Vec<&str> = stderr.lines().collect();
    let wal_dir = home.join("wal").display().to_string();
    let one_report = lines.len() == 1
        && lines[0].contains(&wal_dir)
        && lines[0].matches("Not a directory").count() == 1
        && lines[0].contains("DASHFLOW_WAL=0");
    if !one_report {
        return Err(format!("expected one line naming `{wal_dir}` and the cause, got: {stderr}").into());
    }
    // Nothing written anywhere else: not in the working directory (trace files), not in
    // `$HOME/.dashflow`, not next to the file.
    let mut entries: Vec<String> =
        std::fs::read_dir(dir.path())?.map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect();
    entries.sort();
    let empty = |path: &Path| std::fs::read_dir(path).map(|mut entries| entries.next().is_none()).unwrap_or(false);
    if entries != ["cwd", "file", "user"]
        || !empty(&dir.path().join("cwd"))
        || !empty(&dir.path().join("user"))
        || std::fs::metadata(&file)?.len() != 0
    {
        return Err(format!("something was written: {entries:?}").into());
    }
    Ok(())
}

fn main() {
    if let Ok(scenario) = std::env::var(CHILD) {
        child(&scenario);
        return;
    }
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test(
            "runs_finished_before_main_returns_are_all_completed_with_every_event",
            runs_finished_before_main_returns_are_all_completed_with_every_event,
        ),
        Trial::test(
            "runs_finished_before_process_exit_are_all_completed_and_a_run_cut_short_is_abandoned",
            runs_finished_before_process_exit_are_all_completed_and_a_run_cut_short_is_abandoned,
        ),
        Trial::test(
            "runs_of_a_test_binary_are_all_completed_with_every_event_when_its_harness_ends",
            runs_of_a_test_binary_are_all_completed_with_every_event_when_its_harness_ends,
        ),
        Trial::test(
            "a_stuck_disk_delays_the_exit_by_the_limit_only_and_is_reported_once",
            a_stuck_disk_delays_the_exit_by_the_limit_only_and_is_reported_once,
        ),
        Trial::test(
            "an_unwritable_home_is_reported_once_and_the_program_still_succeeds",
            an_unwritable_home_is_reported_once_and_the_program_still_succeeds,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}
