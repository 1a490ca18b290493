//! Event builders and file helpers shared by the tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dashflow_telemetry::{Event, EventKind, RunId, RunIds, RunOutcome};
use dashflow_wal::__private::{encode_event, encode_frame};
use dashflow_wal::segment_file_name;
use dashflow_wal::{Position, Retention, Wal, WalConfig};

pub(crate) fn root() -> RunIds {
    RunIds::root(RunId::new())
}

pub(crate) fn started(run: RunIds, graph: &str, thread: Option<&str>) -> Event {
    Event::now(run, EventKind::RunStarted { graph: graph.into(), thread_id: thread.map(Into::into), tags: Vec::new() })
}

pub(crate) fn task(run: RunIds, step: u64, node: &str) -> Event {
    Event::now(
        run,
        EventKind::TaskFinished {
            step,
            node: node.into(),
            attempt: 1,
            duration: Duration::from_millis(3),
            error: None,
        },
    )
}

pub(crate) fn finished(run: RunIds, outcome: RunOutcome, steps: u64, error: Option<&str>) -> Event {
    Event::now(
        run,
        EventKind::RunFinished { outcome, steps, duration: Duration::from_millis(40), error: error.map(Into::into) },
    )
}

/// A whole run: start, one task per step, finish.
pub(crate) fn whole_run(run: RunIds, graph: &str, steps: u64) -> Vec<Event> {
    let mut events = vec![started(run, graph, None)];
    events.extend((1..=steps).map(|step| task(run, step, "node")));
    events.push(finished(run, RunOutcome::Completed, steps, None));
    events
}

/// The process records `batches` appends that start runs add to the log: one each where the
/// writer knows its identity (Linux), none elsewhere.
pub(crate) fn process_records(batches: u64) -> u64 {
    if cfg!(target_os = "linux") { batches } else { 0 }
}

/// The default configuration without retention, so old test events are kept.
pub(crate) fn config() -> WalConfig {
    WalConfig::default().retention(Retention::KEEP_ALL)
}

pub(crate) fn open(dir: &Path) -> Wal {
    Wal::open(dir, config()).unwrap()
}

pub(crate) fn segment(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_file_name(seq))
}

/// Every event in the WAL, read straight from the segments (no index involved).
pub(crate) fn all_events(wal: &Wal) -> Vec<Event> {
    wal.follow(Position::START).poll(usize::MAX).unwrap().into_iter().map(|(_, event)| event).collect()
}

/// The frames of `events`, as the writer would append them.
pub(crate) fn frames(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        let mut payload = Vec::new();
        encode_event(event, &mut payload).unwrap();
        encode_frame(&payload, &mut out);
    }
    out
}

/// Appends raw bytes to a segment file, as a writer that died half-way would have.
pub(crate) fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

/// Copies the files of `from` (not subdirectories) into `to`.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Removes the index so the next open rebuilds it from the segments.
pub(crate) fn remove_index(dir: &Path) {
    for name in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
}
