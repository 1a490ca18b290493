use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, Sender, channel};

use dashflow_telemetry::{EventKind, RunOutcome};

use super::*;
use crate::config::Retention;
use crate::runs::{RunFilter, RunStatus};
use crate::storage::Storage;
use crate::testing::{finished, root, started, task, whole_run};

/// No retention, and trace records in the WAL but no trace files.
fn config() -> StoreConfig {
    StoreConfig::default().wal(WalConfig::default().retention(Retention::KEEP_ALL)).traces(TraceConfig::wal_only())
}

fn reopen(dir: &Path) -> Wal {
    Wal::open(dir, WalConfig::default().retention(Retention::KEEP_ALL)).unwrap()
}

#[test]
fn flush_makes_every_event_handed_over_before_it_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path(), config()).unwrap();
    let run = root();
    for event in whole_run(run, "g", 10) {
        store.on_event(&event);
    }
    store.flush().unwrap();
    assert_eq!(
        store.stats(),
        StoreStats { written: 12, dropped: 0, failed: 0, traces_written: 1, traces_failed: 0, traces_skipped: 0 }
    );
    // The store's own writer still holds the WAL open; a reader opens it alongside.
    let wal = reopen(dir.path());
    assert_eq!(wal.run_events(run.run_id).unwrap(), whole_run_events_of(&wal, run));
    assert_eq!(wal.run(run.run_id).unwrap().unwrap().status, RunStatus::Completed);
}

fn whole_run_events_of(wal: &Wal, run: dashflow_telemetry::RunIds) -> Vec<Event> {
    wal.follow(crate::Position::START)
        .poll(usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.run == run)
        .collect()
}

#[test]
fn dropping_the_store_writes_what_is_still_queued() {
    let dir = tempfile::tempdir().unwrap();
    let run = root();
    {
        let store = EventStore::open(dir.path(), config()).unwrap();
        for event in whole_run(run, "g", 50) {
            store.on_event(&event);
        }
    }
    assert_eq!(reopen(dir.path()).run_events(run.run_id).unwrap().len(), 52);
}

#[test]
fn close_writes_everything_and_reports_success() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path(), config()).unwrap();
    let run = root();
    store.on_event(&started(run, "g", None));
    store.on_event(&finished(run, RunOutcome::Completed, 0, None));
    store.close().unwrap();
    assert_eq!(reopen(dir.path()).list_runs(&RunFilter::all()).unwrap().len(), 1);
}

/// Blocks every append until the test sends a go-ahead, and says when one is waiting.
#[derive(Debug)]
struct Gate {
    entered: Mutex<Sender<()>>,
    release: Mutex<Receiver<()>>,
}

impl Storage for Gate {
    fn append(&self, file: &mut File, buf: &[u8]) -> io::Result<()> {
        self.entered.lock().unwrap().send(()).unwrap();
        self.release.lock().unwrap().recv().unwrap();
        file.write_all(buf)
    }
}

#[test]
fn a_full_queue_drops_and_counts_events_instead_of_blocking_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let (entered_tx, entered) = channel();
    let (release, release_rx) = channel();
    let gate = Arc::new(Gate { entered: Mutex::new(entered_tx), release: Mutex::new(release_rx) });
    let wal = WalConfig::default().retention(Retention::KEEP_ALL).storage(gate);
    let store = EventStore::open(dir.path(), config().wal(wal).capacity(2).max_batch(1)).unwrap();
    let run = root();
    store.on_event(&task(run, 1, "n"));
    // The writer holds event 1 inside the gate; the queue has room for two more.
    entered.recv().unwrap();
    for step in 2..=10 {
        store.on_event(&task(run, step, "n"));
    }
    assert_eq!(store.stats().dropped, 7);
    for _ in 0..3 {
        release.send(()).unwrap();
    }
    store.flush().unwrap();
    assert_eq!(
        store.stats(),
        // Behind as it was, the writer did not start a trace of the run either.
        StoreStats { written: 3, dropped: 7, failed: 0, traces_written: 0, traces_failed: 0, traces_skipped: 1 }
    );
    drop(release);
}

#[test]
fn a_burst_handed_over_at_once_is_written_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path(), config().max_batch(3)).unwrap();
    let run = root();
    let events = whole_run(run, "g", 10);
    store.send_batch(events[..5].to_vec());
    store.send_batch(Vec::new());
    store.on_event(&events[5]);
    store.send_batch(events[6..].to_vec());
    store.flush().unwrap();
    assert_eq!(store.stats().written, events.len() as u64);
    assert_eq!(store.stats().dropped, 0);
    assert_eq!(reopen(dir.path()).run_events(run.run_id).unwrap(), events);
}

#[test]
fn a_burst_the_queue_cannot_take_is_dropped_whole_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (entered_tx, entered) = channel();
    let (release, release_rx) = channel();
    let gate = Arc::new(Gate { entered: Mutex::new(entered_tx), release: Mutex::new(release_rx) });
    let wal = WalConfig::default().retention(Retention::KEEP_ALL).storage(gate);
    let store = EventStore::open(dir.path(), config().wal(wal).capacity(4).max_batch(1)).unwrap();
    let run = root();
    store.on_event(&task(run, 1, "n"));
    // The writer holds event 1 inside the gate; the queue has room for four more.
    entered.recv().unwrap();
    store.send_batch((2..=4).map(|step| task(run, step, "n")).collect());
    store.send_batch((5..=6).map(|step| task(run, step, "n")).collect());
    assert_eq!(store.stats().dropped, 2, "a burst is taken whole or not at all");
    store.on_event(&task(run, 7, "n"));
    assert_eq!(store.stats().dropped, 2);
    for _ in 0..5 {
        release.send(()).unwrap();
    }
    store.flush().unwrap();
    assert_eq!(store.stats().written, 5);
    let steps: Vec<u64> = reopen(dir.path())
        .run_events(run.run_id)
        .unwrap()
        .iter()
        .map(|event| match event.kind {
            EventKind::TaskFinished { step, .. } => step,
            _ => 0,
        })
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4, 7]);
    drop(release);
}

#[derive(Debug)]
struct BrokenSync;

impl Storage for BrokenSync {
    fn sync(&self, _file: &File) -> io::Result<()> {
        Err(io::Error::other("disk on fire"))
    }
}

#[test]
fn a_failed_fsync_is_reported_by_flush_and_by_every_later_flush() {
    let dir = tempfile::tempdir().unwrap();
    let wal = WalConfig::default().retention(Retention::KEEP_ALL).storage(Arc::new(BrokenSync));
    let store = EventStore::open(dir.path(), config().wal(wal)).unwrap();
    let run = root();
    store.on_event(&started(run, "g", None));
    let error = store.flush().unwrap_err();
    assert!(matches!(error, WalError::Poisoned { action: "fsync", .. }), "{error}");
    assert!(dashflow_telemetry::Report(&error).to_string().contains("disk on fire"), "{error}");
    store.on_event(&task(run, 1, "n"));
    assert!(matches!(store.flush().unwrap_err(), WalError::Poisoned { .. }));
    assert!(matches!(store.flush().unwrap_err(), WalError::Poisoned { .. }), "even with nothing new to write");
    assert_eq!(store.stats().failed, 2);
    assert_eq!(store.stats().written, 0);
    assert!(store.close().is_err());
}

#[test]
fn the_global_store_is_one_per_directory() {
    let home = tempfile::tempdir().unwrap();
    let home_path = OsString::from(home.path());
    let vars = |name: &str| ["DASHFLOW_HOME", "DASHFLOW_TRACE_DIR"].contains(&name).then(|| home_path.clone());
    let first = EventStore::global_from(vars).unwrap().unwrap();
    let second = EventStore::global_from(vars).unwrap().unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(first.dir(), home.path().join("wal"));
    assert_eq!(first.traces_dir(), Some(home.path().join(".dashflow/traces").as_path()));
    // Nobody sees the process's store's errors: it reports on stderr, whatever logging is set up.
    assert!(matches!(first.exit.report, FailureReport::Stderr), "{:?}", first.exit.report);
    let run = root();
    first.on_event(&started(run, "g", None));
    first.flush().unwrap();
    assert_eq!(reopen(&home.path().join("wal")).list_runs(&RunFilter::all()).unwrap().len(), 1);
}

#[test]
fn the_global_store_is_absent_when_dashflow_wal_is_off() {
    let vars = |name: &str| (name == "DASHFLOW_WAL").then(|| OsString::from("0"));
    assert!(EventStore::global_from(vars).unwrap().is_none());
}

#[test]
fn a_store_can_be_registered_as_an_event_callback() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EventStore::open(dir.path(), config()).unwrap());
    let callback: Arc<dyn EventCallback> = store.clone();
    callback.on_event(&started(root(), "g", None));
    store.flush().unwrap();
    assert_eq!(store.stats().written, 1);
}

#[test]
fn a_zero_capacity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(EventStore::open(dir.path(), config().capacity(0)), Err(WalError::InvalidConfig { .. })));
}

#[test]
fn a_store_opened_with_the_default_configuration_persists_no_traces() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(store.traces_dir(), None);
    let run = root();
    store.on_event(&started(run, "g", None));
    store.on_event(&finished(run, RunOutcome::Completed, 0, None));
    store.flush().unwrap();
    assert_eq!((store.stats().traces_written, store.stats().traces_failed), (0, 0));
    let wal = reopen(dir.path());
    assert_eq!(wal.traces(crate::Position::START).count(), 0, "no trace record");
    // The trace is still there to read: built from the run's events.
    let trace = wal.trace(run.run_id).unwrap().expect("the run finished");
    assert_eq!((trace.status, trace.graph.as_deref()), (crate::TraceStatus::Completed, Some("g")));
}

#[test]
fn a_run_finished_in_a_batch_gets_its_trace_record_right_after_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path(), config()).unwrap();
    let run = root();
    for event in whole_run(run, "g", 3) {
        store.on_event(&event);
    }
    store.flush().unwrap();
    let wal = reopen(dir.path());
    let summary = wal.run(run.run_id).unwrap().unwrap();
    let trace = wal.trace(run.run_id).unwrap().unwrap();
    assert_eq!(trace.tasks.len(), 3);
    assert_eq!(summary.trace.map(|at| at > summary.last), Some(true));
    assert_eq!(store.stats().traces_written, 1);
}

#[test]
fn the_default_store_syncs_at_most_once_a_second_and_the_environment_can_change_that() {
    assert_eq!(StoreConfig::default().wal.fsync, FsyncPolicy::Interval(Duration::from_secs(1)));
    let read = |value: Option<&str>| {
        fsync_from_env(&|name: &str| {
            assert_eq!(name, "DASHFLOW_WAL_FSYNC");
            value.map(OsString::from)
        })
    };
    assert_eq!(read(None), Ok(None));
    assert_eq!(read(Some("always")), Ok(Some(FsyncPolicy::Always)));
    assert_eq!(read(Some(" Never ")), Ok(Some(FsyncPolicy::Never)));
    assert_eq!(read(Some("250")), Ok(Some(FsyncPolicy::Interval(Duration::from_millis(250)))));
    assert_eq!(read(Some("sometimes")), Err("sometimes".to_owned()));
}

#[test]
fn a_writer_behind_skips_the_traces_of_runs_starting_meanwhile_and_keeps_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let (entered_tx, entered) = channel();
    let (release, release_rx) = channel();
    let gate = Arc::new(Gate { entered: Mutex::new(entered_tx), release: Mutex::new(release_rx) });
    let wal = WalConfig::default().retention(Retention::KEEP_ALL).storage(gate);
    let store = EventStore::open(dir.path(), config().wal(wal).capacity(16).max_batch(64)).unwrap();
    let (early, late, after) = (root(), root(), root());
    store.on_event(&started(early, "g", None));
    // The writer holds the first run's start inside the gate, tracing it; meanwhile a whole
    // run and the first run's end pile up: more than a quarter of the queue.
    entered.recv().unwrap();
    let piled = whole_run(late, "g", 3);
    store.send_batch(piled.clone());
    store.on_event(&finished(early, RunOutcome::Completed, 0, None));
    release.send(()).unwrap();
    // The pile is the writer's next batch.
    entered.recv().unwrap();
    release.send(()).unwrap();
    store.flush().unwrap();
    // Caught up: a short run is traced again.
    let short = vec![started(after, "g", None), finished(after, RunOutcome::Completed, 0, None)];
    store.send_batch(short);
    entered.recv().unwrap();
    release.send(()).unwrap();
    store.flush().unwrap();

    let stats = store.stats();
    assert_eq!((stats.written, stats.dropped), (piled.len() as u64 + 4, 0), "{stats:?}");
    assert_eq!((stats.traces_written, stats.traces_skipped), (2, 1), "{stats:?}");
    assert_eq!(reopen(dir.path()).run_events(late.run_id).unwrap(), piled, "the skipped run's events are all kept");
    drop(release);
}

#[test]
fn a_compact_batch_is_stored_like_the_events_it_stands_for_without_building_them() {
    use dashflow_telemetry::__private::{NodeNames, RunContext};
    use dashflow_telemetry::clock::{RunClock, Tick};

    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path(), config()).unwrap();
    let run = root();
    let labels = [vec![vec![Arc::from("next")]], vec![]];
    let names = Arc::new(NodeNames::new(["a", "b"].map(Arc::from)).with_labels(labels));
    let context = RunContext::new(run, RunClock::new(), names);
    let events = whole_run(run, "g", 0);
    let mut batch = EventBatch::new();
    batch.push_event(events[0].clone());
    let (t0, t1) = (Tick::now(), Tick::now());
    batch.push_step_started(&context, 1, 0, t0);
    batch.push_task_finished(&context, (1, 0, 1), (t0, t1), None);
    batch.push_routed(&context, 1, (0, 0, 1), t1);
    // Not stored: the store asks for no task starts.
    batch.push_event(Event::now(run, EventKind::TaskStarted { step: 2, node: "b".into(), attempt: 1 }));
    batch.push_task_finished(&context, (2, 1, 1), (t1, t1), Some("boom".to_owned()));
    batch.push_event(events.last().unwrap().clone());
    let expected: Vec<Event> = batch
        .events()
        .filter(|event| !matches!(event.kind, EventKind::TaskStarted { .. } | EventKind::SuperstepStarted { .. }))
        .collect();
    assert_eq!(batch.events().count(), 7);
    assert_eq!(expected.len(), 5, "the lone step's start is stored in its task's end");

    store.take_batch(batch);
    store.flush().unwrap();
    assert_eq!(store.stats().written, 5);
    // The run's events went into the log in run blocks: the entries, on the run's clock, in
    // one (the whole events here were stamped by the system clock, and a block starts again
    // where a time goes back).
    let bytes = std::fs::read(crate::segment::segment_path(dir.path(), 1)).unwrap();
    let mut reader = crate::segment::RecordReader::new(io::Cursor::new(&bytes), 0, bytes.len() as u64, 1 << 20);
    let (mut read, mut largest_block) = (Vec::new(), 0);
    while let crate::segment::ReadStep::Record { payload, .. } = reader.next_record().unwrap() {
        let events = crate::record::decode_events(payload).unwrap();
        if payload[0] == crate::record::TAG_RUN_EVENTS {
            largest_block = largest_block.max(events.len());
        }
        read.extend(events);
    }
    assert_eq!(read, expected);
    assert!(largest_block >= 3, "the two task ends and the routing decision share a block: {largest_block}");
    let mut wal = reopen(dir.path());
    assert_eq!(wal.run_events(run.run_id).unwrap(), expected);
    // The index learned from the entries what it learns from the events they stand for.
    let indexed = wal.run(run.run_id).unwrap().unwrap();
    assert_eq!((indexed.steps, indexed.events), (2, 5));
    wal.rebuild_index().unwrap();
    assert_eq!(wal.run(run.run_id).unwrap().unwrap(), indexed);
}

/// A report destination that keeps every line.
fn collecting() -> (FailureReport, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    (FailureReport::Callback(Arc::new(move |line: &str| sink.lock().unwrap().push(line.to_owned()))), lines)
}

/// A disk that is full: every write fails after writing half its bytes.
#[derive(Debug)]
struct FullDisk;

impl Storage for FullDisk {
    fn append(&self, file: &mut File, buf: &[u8]) -> io::Result<()> {
        file.write_all(&buf[..buf.len() / 2])?;
        Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"))
    }
}

#[test]
fn the_flush_at_exit_writes_what_every_open_store_still_holds() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stores = [EventStore::open(one.path(), config()).unwrap(), EventStore::open(two.path(), config()).unwrap()];
    let runs = [root(), root()];
    for (store, run) in stores.iter().zip(runs) {
        store.send_batch(whole_run(run, "g", 20));
    }
    // What the `atexit` handler runs; no `flush` of either store.
    exit::flush_all(Duration::from_secs(60));
    for (dir, run) in [one.path(), two.path()].into_iter().zip(runs) {
        let wal = reopen(dir);
        assert_eq!(wal.run_events(run.run_id).unwrap(), whole_run_events_of(&wal, run));
        assert_eq!(wal.run_events(run.run_id).unwrap().len(), 22);
        assert_eq!(wal.run(run.run_id).unwrap().unwrap().status, RunStatus::Completed);
    }
    // The writers go on after it: a store that outlives a flush at exit keeps working.
    let late = root();
    stores[0].send_batch(whole_run(late, "g", 1));
    assert!(stores[0].flush_within(Duration::from_secs(60)));
    assert_eq!(reopen(one.path()).run_events(late.run_id).unwrap().len(), 3);
}

#[test]
fn the_flush_at_exit_does_not_wait_for_a_writer_that_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path(), config()).unwrap();
    let link = Arc::clone(&store.exit);
    store.close().unwrap();
    // A deadlock would return `TimedOut`, a minute later.
    assert_eq!(link.flush_until(Instant::now() + Duration::from_secs(60)), exit::ExitFlush::WriterGone);
}

#[test]
fn the_flush_at_exit_gives_up_on_a_stuck_disk_at_its_deadline_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (entered_tx, entered) = channel();
    let (release, release_rx) = channel();
    let gate = Arc::new(Gate { entered: Mutex::new(entered_tx), release: Mutex::new(release_rx) });
    let (report, lines) = collecting();
    let wal = WalConfig::default().retention(Retention::KEEP_ALL).storage(gate);
    let store = EventStore::open(dir.path(), config().wal(wal).report(report)).unwrap();
    store.on_event(&task(root(), 1, "n"));
    // The writer is inside the append and cannot come out before the release below.
    entered.recv().unwrap();
    exit::flush_all(Duration::from_millis(10));
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(&dir.path().display().to_string()) && lines[0].contains("did not finish writing"));
    assert!(!store.flush_within(Duration::from_millis(10)), "still stuck");
    release.send(()).unwrap();
    store.close().unwrap();
}

#[test]
fn a_log_that_cannot_be_written_is_reported_once_and_flush_still_returns_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let (report, lines) = collecting();
    let wal = WalConfig::default().retention(Retention::KEEP_ALL).storage(Arc::new(FullDisk));
    let store = EventStore::open(dir.path(), config().wal(wal).report(report)).unwrap();
    for _ in 0..3 {
        store.send_batch(whole_run(root(), "g", 2));
        assert!(store.flush_within(Duration::from_secs(60)), "a broken disk is not a stuck one");
        assert!(matches!(store.flush(), Err(WalError::Poisoned { action: "write", .. })));
    }
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(!lines[0].contains('\n'));
    for needed in [dir.path().display().to_string(), "no space left on device".into(), "DASHFLOW_WAL=0".into()] {
        assert!(lines[0].contains(&needed), "{needed:?} missing from {:?}", lines[0]);
    }
    assert_eq!(store.stats().failed, 12);
}

#[test]
fn trace_files_that_cannot_be_written_are_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    // A trace directory under a regular file fails for every user, root included.
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let (report, lines) = collecting();
    let traces = TraceConfig::files_in(file.join("sub"));
    let store = EventStore::open(dir.path().join("wal"), config().traces(traces).report(report)).unwrap();
    for _ in 0..3 {
        store.send_batch(whole_run(root(), "g", 2));
        store.flush().unwrap();
    }
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(&file.display().to_string()) && lines[0].contains("DASHFLOW_TRACE=0"), "{lines:?}");
    assert_eq!((store.stats().written, store.stats().traces_failed), (12, 3));
}

#[test]
fn a_report_names_the_whole_cause_once() {
    let error = WalError::io("create", "/x/file/sub/wal", io::Error::other("Not a directory"));
    let line = report::cannot_open(&error);
    assert_eq!(line.matches("Not a directory").count(), 1, "{line}");
    assert!(line.contains("/x/file/sub/wal") && line.ends_with("DASHFLOW_WAL=0 to turn the log off"), "{line}");
}

#[test]
fn a_full_queue_keeps_the_start_and_end_of_the_runs_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let (entered_tx, entered) = channel();
    let (release, release_rx) = channel();
    let gate = Arc::new(Gate { entered: Mutex::new(entered_tx), release: Mutex::new(release_rx) });
    let wal = WalConfig::default().retention(Retention::KEEP_ALL).storage(gate);
    let store = EventStore::open(dir.path(), config().wal(wal).capacity(4).max_batch(64)).unwrap();
    store.on_event(&task(root(), 1, "n"));
    // The writer holds that event inside the gate; no run of 12 events fits in the queue.
    entered.recv().unwrap();
    let runs = [root(), root(), root()];
    for run in runs {
        store.send_batch(whole_run(run, "g", 10));
    }
    // One event alone is dropped too, unless it starts or ends a run.
    store.on_event(&task(runs[0], 11, "n"));
    assert_eq!(store.stats().dropped, 3 * 10 + 1);
    // One go-ahead per append: the event in the gate, then the kept events, in one batch or
    // a few.
    for _ in 0..8 {
        release.send(()).unwrap();
    }
    store.flush().unwrap();
    let wal = reopen(dir.path());
    for run in runs {
        let kinds: Vec<_> = wal.run_events(run.run_id).unwrap().into_iter().map(|event| event.kind).collect();
        assert!(matches!(kinds.as_slice(), [EventKind::RunStarted { .. }, EventKind::RunFinished { .. }]), "{kinds:?}");
        let summary = wal.run(run.run_id).unwrap().unwrap();
        assert_eq!((summary.status, summary.steps), (RunStatus::Completed, 10));
    }
    assert_eq!(store.stats().written, 1 + 3 * 2);
    drop(release);
}

#[test]
fn the_default_store_queues_64_ki_events_and_writes_4_096_a_batch() {
    let config = StoreConfig::default();
    assert_eq!((config.capacity, config.max_batch), (64 * 1024, 4096));
}
