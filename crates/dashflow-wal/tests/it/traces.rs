//! Trace persistence through the event store: one trace per finished run, in a file and in
//! the WAL, with retention and the `DASHFLOW_TRACE` opt-out.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dashflow_telemetry::{Event, EventCallback, EventKind, RunId, RunIds, RunOutcome};
use dashflow_wal::{
    EventStore, ExecutionTrace, FsyncPolicy, Position, RunFilter, RunStatus, StoreConfig, TraceConfig, TraceRetention,
    TraceStatus, Wal, list_traces, read_trace, write_trace,
};

use crate::common::{config, finished, open, remove_index, root, started, task};

/// A store with its WAL in `dir/wal` and trace files under `dir`.
fn store(dir: &Path) -> EventStore {
    store_with(dir, TraceConfig::files_in(dir))
}

fn store_with(dir: &Path, traces: TraceConfig) -> EventStore {
    EventStore::open(dir.join("wal"), StoreConfig::default().wal(config()).traces(traces)).unwrap()
}

fn traces_dir(dir: &Path) -> PathBuf {
    dir.join(".dashflow/traces")
}

fn send(store: &EventStore, events: &[Event]) {
    events.iter().for_each(|event| store.on_event(event));
}

fn task_started(run: RunIds, step: u64, node: &str, attempt: u32) -> Event {
    Event::now(run, EventKind::TaskStarted { step, node: node.into(), attempt })
}

fn task_finished(run: RunIds, step: u64, node: &str, attempt: u32, error: Option<&str>) -> Event {
    let duration = Duration::from_millis(u64::from(attempt) * 10);
    Event::now(
        run,
        EventKind::TaskFinished { step, node: node.into(), attempt, duration, error: error.map(Into::into) },
    )
}

/// The trace of `run` from its file and from the WAL, which must agree.
fn persisted(dir: &Path, run: RunIds) -> ExecutionTrace {
    let from_file = read_trace(&traces_dir(dir), run.run_id).unwrap().expect("a trace file");
    let wal = open(&dir.join("wal"));
    assert_eq!(wal.trace(run.run_id).unwrap().as_ref(), Some(&from_file), "the WAL record equals the file");
    from_file
}

#[test]
fn a_completed_run_with_a_retried_task_is_traced_with_both_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let run = root();
    send(
        &store,
        &[
            started(run, "triage", Some("ticket-7")),
            task_started(run, 1, "classify", 1),
            task_finished(run, 1, "classify", 1, Some("rate limited")),
            task_started(run, 1, "classify", 2),
            task_finished(run, 1, "classify", 2, None),
            Event::now(
                run,
                EventKind::Routed { step: 1, from: "classify".into(), label: "urgent".into(), target: "page".into() },
            ),
            task_started(run, 2, "page", 1),
            task_finished(run, 2, "page", 1, None),
            finished(run, RunOutcome::Completed, 2, None),
        ],
    );
    store.flush().unwrap();
    assert_eq!((store.stats().traces_written, store.stats().traces_failed), (1, 0));

    let trace = persisted(dir.path(), run);
    assert_eq!(trace.status, TraceStatus::Completed);
    assert_eq!((trace.graph.as_deref(), trace.thread_id.as_deref()), (Some("triage"), Some("ticket-7")));
    assert_eq!(trace.steps, 2);
    assert_eq!(trace.duration, Some(Duration::from_millis(40)));
    let tasks: Vec<_> = trace.tasks.iter().map(|t| (t.step, t.node.as_str(), t.attempts.len())).collect();
    assert_eq!(tasks, [(1, "classify", 2), (2, "page", 1)]);
    let classify = &trace.tasks[0];
    assert_eq!(classify.attempts[0].error.as_deref(), Some("rate limited"));
    assert_eq!(classify.attempts[1].error, None);
    assert_eq!(classify.duration(), Duration::from_millis(30));
    assert_eq!(trace.routes[0].target, "page");
}

#[test]
fn a_failed_run_is_traced_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let run = root();
    send(
        &store,
        &[
            started(run, "g", None),
            task_finished(run, 1, "charge", 1, Some("card declined")),
            finished(run, RunOutcome::Failed, 1, Some("node `charge` failed: card declined")),
        ],
    );
    store.flush().unwrap();
    let trace = persisted(dir.path(), run);
    assert_eq!(trace.status, TraceStatus::Failed);
    assert_eq!(trace.error.as_deref(), Some("node `charge` failed: card declined"));
    assert_eq!(trace.tasks[0].error(), Some("card declined"));
}

#[test]
fn an_interrupted_run_is_traced_with_the_node_that_paused_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let run = root();
    send(
        &store,
        &[
            started(run, "g", Some("t")),
            task(run, 1, "draft"),
            task_finished(run, 2, "approve", 1, Some("the node is waiting for input: \"ship it?\"")),
            finished(run, RunOutcome::Interrupted, 1, None),
        ],
    );
    store.flush().unwrap();
    let trace = persisted(dir.path(), run);
    assert_eq!(trace.status, TraceStatus::Interrupted);
    assert_eq!(trace.error, None);
    let interrupt = trace.interrupt.expect("an interrupt");
    assert_eq!(interrupt.node.as_deref(), Some("approve"));
    assert!(interrupt.message.unwrap().contains("ship it?"));
}

#[test]
fn a_subgraph_run_gets_its_own_trace_naming_its_parent_and_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let outer = root();
    let inner = outer.child(RunId::new());
    let innermost = inner.child(RunId::new());
    send(
        &store,
        &[
            started(outer, "outer", None),
            started(inner, "inner", None),
            started(innermost, "innermost", None),
            task(innermost, 1, "leaf"),
            finished(innermost, RunOutcome::Completed, 1, None),
            finished(inner, RunOutcome::Completed, 1, None),
            task(outer, 1, "sub"),
            finished(outer, RunOutcome::Completed, 1, None),
        ],
    );
    store.flush().unwrap();
    assert_eq!(store.stats().traces_written, 3);
    let trace = persisted(dir.path(), innermost);
    assert_eq!(trace.graph.as_deref(), Some("innermost"));
    assert_eq!(trace.run.parent_run_id, Some(inner.run_id));
    assert_eq!(trace.run.root_run_id, outer.run_id);
    assert_eq!(trace.run.depth, 2);
    assert_eq!(trace.tasks[0].node, "leaf");
    assert_eq!(persisted(dir.path(), outer).tasks[0].node, "sub", "each run has only its own tasks");
}

#[test]
fn a_trace_file_is_whole_json_with_no_temporary_file_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let run = root();
    send(&store, &[started(run, "g", None), task(run, 1, "a"), finished(run, RunOutcome::Completed, 1, None)]);
    store.flush().unwrap();

    let files: Vec<_> = std::fs::read_dir(traces_dir(dir.path())).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files, [OsString::from(format!("{}.json", run.run_id))]);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(traces_dir(dir.path()).join(&files[0])).unwrap()).unwrap();
    assert_eq!(json["status"], "completed");
    assert_eq!(json["run"]["run_id"], run.run_id.to_string());
    assert_eq!(json["tasks"][0]["attempts"][0]["duration_us"], 3000);
    let listed = list_traces(&traces_dir(dir.path())).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].run_id, run.run_id);
}

#[test]
fn the_wal_trace_record_is_found_by_run_by_scan_and_after_an_index_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), TraceConfig::wal_only());
    let (one, two) = (root(), root());
    send(&store, &[started(one, "g", None), started(two, "g", None), finished(one, RunOutcome::Completed, 0, None)]);
    store.flush().unwrap();
    send(&store, &[finished(two, RunOutcome::Failed, 0, Some("x"))]);
    store.flush().unwrap();
    assert!(!traces_dir(dir.path()).exists(), "no files with a WAL-only config");
    drop(store);

    let wal_dir = dir.path().join("wal");
    let wal = open(&wal_dir);
    let summary = wal.run(one.run_id).unwrap().unwrap();
    assert!(summary.trace.is_some_and(|at| at > summary.last), "the trace follows the run's events");
    let scanned: Vec<_> = wal.traces(Position::START).map(|t| t.unwrap().1).collect();
    assert_eq!(
        scanned.iter().map(|t| (t.run, t.status)).collect::<Vec<_>>(),
        [(one, TraceStatus::Completed), (two, TraceStatus::Failed)]
    );
    assert_eq!(wal.trace(two.run_id).unwrap().as_ref(), Some(&scanned[1]));
    // Readers of events step over trace records without calling them unknown.
    let mut follower = wal.follow(Position::START);
    assert_eq!(follower.poll(100).unwrap().len(), 4);
    assert_eq!(follower.skipped(), 0);
    assert_eq!(wal.run_events(one.run_id).unwrap().len(), 2);
    assert!(wal.verify().unwrap().is_clean());
    drop(wal);

    remove_index(&wal_dir);
    let rebuilt = open(&wal_dir);
    assert_eq!(rebuilt.trace(one.run_id).unwrap().map(|t| t.status), Some(TraceStatus::Completed));
    assert_eq!(RunStatus::from(scanned[1].status), rebuilt.run(two.run_id).unwrap().unwrap().status);
}

#[test]
fn compaction_keeps_trace_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config().segment_size(600).fsync(FsyncPolicy::Never)).unwrap();
    let mut runs = Vec::new();
    for _ in 0..4 {
        let run = root();
        let events = [started(run, "g", None), finished(run, RunOutcome::Completed, 0, None)];
        wal.append(&events).unwrap();
        wal.append_trace(&ExecutionTrace::from_events(&events).unwrap()).unwrap();
        runs.push(run);
    }
    assert!(wal.end().segment > 2, "several segments to compact");
    wal.compact().unwrap();
    assert_eq!(wal.traces(Position::START).count(), 4);
    for run in runs {
        assert!(wal.trace(run.run_id).unwrap().is_some());
    }
}

#[test]
fn a_run_that_never_finishes_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let run = root();
    send(&store, &[started(run, "g", None), task(run, 1, "a")]);
    store.flush().unwrap();
    drop(store);
    assert!(list_traces(&traces_dir(dir.path())).unwrap().is_empty());
    let wal = open(&dir.path().join("wal"));
    assert_eq!(wal.trace(run.run_id).unwrap(), None);
    assert_eq!(wal.run(run.run_id).unwrap().unwrap().status, RunStatus::Running);
    assert_eq!(wal.traces(Position::START).count(), 0);
}

#[test]
fn dashflow_trace_off_writes_no_trace_files_and_no_trace_records() {
    let dir = tempfile::tempdir().unwrap();
    let home = OsString::from(dir.path());
    let vars = |name: &str| match name {
        "DASHFLOW_HOME" | "DASHFLOW_TRACE_DIR" => Some(home.clone()),
        "DASHFLOW_TRACE" => Some(OsString::from("0")),
        _ => None,
    };
    let store = EventStore::global_from(vars).unwrap().unwrap();
    assert_eq!(store.traces_dir(), None);
    let run = root();
    send(&store, &[started(run, "g", None), finished(run, RunOutcome::Failed, 0, Some("x"))]);
    store.flush().unwrap();

    assert!(!traces_dir(dir.path()).exists());
    let wal = open(store.dir());
    assert_eq!(wal.run(run.run_id).unwrap().unwrap().status, RunStatus::Failed, "events still go to the WAL");
    assert_eq!(wal.traces(Position::START).count(), 0, "no trace record");
    assert_eq!(store.stats().traces_written, 0);
    // Reading still gives the trace, built from the events.
    let trace = wal.trace(run.run_id).unwrap().expect("the run finished");
    assert_eq!((trace.status, trace.error.as_deref()), (TraceStatus::Failed, Some("x")));
}

#[test]
fn dashflow_trace_dir_moves_the_trace_files_of_the_global_store() {
    let (home, base) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (home_var, base_var) = (OsString::from(home.path()), OsString::from(base.path()));
    let vars = |name: &str| match name {
        "DASHFLOW_HOME" => Some(home_var.clone()),
        "DASHFLOW_TRACE_DIR" => Some(base_var.clone()),
        _ => None,
    };
    let store = EventStore::global_from(vars).unwrap().unwrap();
    let run = root();
    send(&store, &[started(run, "g", None), finished(run, RunOutcome::Completed, 0, None)]);
    store.flush().unwrap();
    assert!(read_trace(&traces_dir(base.path()), run.run_id).unwrap().is_some());
}

#[test]
fn retention_keeps_only_the_newest_trace_files_on_open_and_while_writing() {
    let dir = tempfile::tempdir().unwrap();
    let traces = traces_dir(dir.path());
    // Left by an earlier process: five traces, two more than the limit.
    let mut old: Vec<_> = (0..5)
        .map(|_| {
            let run = root();
            let events = [started(run, "g", None), finished(run, RunOutcome::Completed, 0, None)];
            write_trace(&traces, &ExecutionTrace::from_events(&events).unwrap()).unwrap();
            run.run_id
        })
        .collect();
    old.sort();
    let config = TraceConfig::files_in(dir.path()).retention(TraceRetention::new(Some(3), None)).retention_every(2);
    let store = store_with(dir.path(), config);
    store.flush().unwrap();
    let listed = |dir: &Path| list_traces(dir).unwrap().into_iter().map(|f| f.run_id).collect::<Vec<_>>();
    assert_eq!(listed(&traces), [old[4], old[3], old[2]], "pruned when the store opened");

    // Two more runs trigger a pass: the three newest of all seven remain.
    let mut all = old;
    for _ in 0..2 {
        let run = root();
        send(&store, &[started(run, "g", None), finished(run, RunOutcome::Completed, 0, None)]);
        all.push(run.run_id);
    }
    store.flush().unwrap();
    all.sort();
    assert_eq!(listed(&traces), [all[6], all[5], all[4]]);
}

#[test]
fn a_trace_too_large_for_a_wal_record_still_gets_its_file_and_the_events_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let wal = config().max_record_size(2_000);
    let config = StoreConfig::default().wal(wal).traces(TraceConfig::files_in(dir.path()));
    let store = EventStore::open(dir.path().join("wal"), config).unwrap();
    let run = root();
    send(&store, &[started(run, "g", None)]);
    for step in 1..=40 {
        send(&store, &[task(run, step, "a-node-with-a-long-name")]);
    }
    send(&store, &[finished(run, RunOutcome::Completed, 40, None)]);
    store.flush().unwrap();
    let stats = store.stats();
    assert_eq!((stats.written, stats.failed, stats.traces_failed), (42, 0, 1));
    assert_eq!(read_trace(&traces_dir(dir.path()), run.run_id).unwrap().unwrap().tasks.len(), 40);
    let wal = open(&dir.path().join("wal"));
    assert_eq!(wal.traces(Position::START).count(), 0, "the record was too large to write");
    // The trace is read from the events instead, whole.
    assert_eq!(wal.trace(run.run_id).unwrap().unwrap().tasks.len(), 40);
    assert_eq!(wal.run(run.run_id).unwrap().unwrap().status, RunStatus::Completed);
}

#[test]
fn run_filter_still_lists_runs_with_traces() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let run = root();
    send(&store, &[started(run, "g", None), finished(run, RunOutcome::Completed, 0, None)]);
    store.flush().unwrap();
    let wal = open(&dir.path().join("wal"));
    let runs = wal.list_runs(&RunFilter::all()).unwrap();
    assert_eq!(runs.len(), 1);
    assert!(runs[0].trace.is_some());
}
