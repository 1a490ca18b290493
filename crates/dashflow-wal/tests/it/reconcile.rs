//! R11: a crash between the segment append and the index insert; on reopen the index matches
//! the segments. The crash is simulated by appending frames to a segment directly, which is
//! exactly what a writer leaves behind when it dies after its write and before its index
//! transaction.

use dashflow_telemetry::RunOutcome;
use dashflow_wal::{RunFilter, RunStatus, RunSummary, Wal};

use crate::common::*;

/// Every run of `wal`, and the same list after rebuilding the index from the segments.
fn runs_and_rebuilt(wal: &mut Wal) -> (Vec<RunSummary>, Vec<RunSummary>) {
    let runs = wal.list_runs(&RunFilter::all()).unwrap();
    wal.rebuild_index().unwrap();
    (runs, wal.list_runs(&RunFilter::all()).unwrap())
}

#[test]
fn records_appended_without_an_index_update_are_indexed_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (root(), root());
    open(dir.path()).append(&whole_run(a, "g", 2)).unwrap();
    let unindexed = [started(b, "late", Some("t-9")), task(b, 1, "n"), finished(b, RunOutcome::Failed, 1, Some("x"))];
    append_bytes(&segment(dir.path(), 1), &frames(&unindexed));

    let mut wal = open(dir.path());
    assert_eq!(wal.recovery().replayed, 3);
    assert!(!wal.recovery().rebuilt);
    let b_run = wal.run(b.run_id).unwrap().expect("the crashed writer's run is indexed");
    assert_eq!(b_run.status, RunStatus::Failed);
    assert_eq!(b_run.thread_id.as_deref(), Some("t-9"));
    assert_eq!(wal.run_events(b.run_id).unwrap(), unindexed);
    let (runs, rebuilt) = runs_and_rebuilt(&mut wal);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs, rebuilt);
}

#[test]
fn a_crash_after_rotating_to_a_new_segment_is_reconciled() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (root(), root());
    let mut wal = Wal::open(dir.path(), config().segment_size(400)).unwrap();
    wal.append(&whole_run(a, "g", 4)).unwrap();
    let next = wal.end().segment + 1;
    drop(wal);
    append_bytes(&segment(dir.path(), next), &frames(&whole_run(b, "g", 1)));

    let mut wal = Wal::open(dir.path(), config().segment_size(400)).unwrap();
    assert_eq!(wal.recovery().replayed, 3);
    assert_eq!(wal.end().segment, next);
    assert_eq!(wal.run(b.run_id).unwrap().unwrap().first.segment, next);
    let (runs, rebuilt) = runs_and_rebuilt(&mut wal);
    assert_eq!(runs, rebuilt);
}

#[test]
fn a_running_writer_indexes_what_another_writer_left_unindexed_before_its_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let (mine, theirs) = (root(), root());
    let mut wal = open(dir.path());
    wal.append(&[started(mine, "g", None)]).unwrap();
    // Another process appends and dies before indexing.
    append_bytes(&segment(dir.path(), 1), &frames(&whole_run(theirs, "other", 1)));
    wal.append(&[finished(mine, RunOutcome::Completed, 0, None)]).unwrap();

    assert_eq!(wal.run(theirs.run_id).unwrap().unwrap().graph.as_deref(), Some("other"));
    assert_eq!(wal.run_events(mine.run_id).unwrap().len(), 2);
    let (runs, rebuilt) = runs_and_rebuilt(&mut wal);
    assert_eq!(runs, rebuilt);
}

#[test]
fn an_index_ahead_of_the_segments_is_rebuilt() {
    // A machine crash under a lax fsync policy can keep the index's commit and lose the
    // segment's tail.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (root(), root());
    let mut wal = open(dir.path());
    wal.append(&whole_run(a, "g", 1)).unwrap();
    let cut = wal.end().offset;
    wal.append(&whole_run(b, "g", 1)).unwrap();
    drop(wal);
    std::fs::OpenOptions::new().write(true).open(segment(dir.path(), 1)).unwrap().set_len(cut).unwrap();

    let mut wal = open(dir.path());
    assert!(wal.recovery().rebuilt);
    assert!(wal.run(b.run_id).unwrap().is_none());
    assert_eq!(wal.run(a.run_id).unwrap().unwrap().status, RunStatus::Completed);
    let (runs, rebuilt) = runs_and_rebuilt(&mut wal);
    assert_eq!(runs, rebuilt);
}

#[test]
fn a_deleted_index_is_rebuilt_identically() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let mut wal = Wal::open(dir.path(), config().segment_size(600)).unwrap();
        for i in 0..8 {
            let run = root();
            wal.append(&[started(run, &format!("g{}", i % 3), Some("t"))]).unwrap();
            wal.append(&[task(run, 1, "n"), finished(run, RunOutcome::Completed, 1, None)]).unwrap();
        }
        wal.list_runs(&RunFilter::all()).unwrap()
    };
    remove_index(dir.path());
    let wal = Wal::open(dir.path(), config().segment_size(600)).unwrap();
    assert!(wal.recovery().rebuilt);
    // Three events per run, and the process record of each batch that started one.
    assert_eq!(wal.recovery().replayed, 24 + process_records(8));
    assert_eq!(wal.list_runs(&RunFilter::all()).unwrap(), before);
}

#[test]
fn an_unreadable_index_file_is_replaced_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let run = root();
    let before = {
        let mut wal = open(dir.path());
        wal.append(&whole_run(run, "g", 2)).unwrap();
        wal.list_runs(&RunFilter::all()).unwrap()
    };
    remove_index(dir.path());
    std::fs::write(dir.path().join("index.sqlite"), vec![0xA5; 4096]).unwrap();
    let wal = open(dir.path());
    assert!(wal.recovery().rebuilt);
    assert_eq!(wal.list_runs(&RunFilter::all()).unwrap(), before);
}
