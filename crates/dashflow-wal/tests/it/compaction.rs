//! Compaction: dropping what retention cut and merging small segments.

use std::time::SystemTime;

use dashflow_wal::{Retention, RunFilter, Wal};

use crate::common::*;

fn segment_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".wal"))
        .count()
}

#[test]
fn compaction_drops_the_rest_of_runs_cut_by_retention_and_keeps_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config().segment_size(120)).unwrap();
    let runs: Vec<_> = (0..5)
        .map(|_| {
            let run = root();
            wal.append(&whole_run(run, "g", 2)).unwrap();
            run
        })
        .collect();
    // Retention takes the first segment: the first run loses its start.
    std::fs::remove_file(segment(dir.path(), 1)).unwrap();
    drop(wal);
    let mut wal = Wal::open(dir.path(), config().segment_size(120)).unwrap();
    assert!(wal.run(runs[0].run_id).unwrap().unwrap().partial);
    let left_of_cut_run = events_of(&wal, runs[0]).len() as u64;
    assert!(left_of_cut_run > 0);

    let report = wal.compact().unwrap();
    // The run's process record follows its last event, so it is not in the removed segment
    // either, and goes with the run.
    assert_eq!(report.records_dropped, left_of_cut_run + process_records(1));
    assert!(report.bytes_after < report.bytes_before);
    assert!(wal.run(runs[0].run_id).unwrap().is_none());
    for run in &runs[1..] {
        assert_eq!(wal.run_events(run.run_id).unwrap(), events_of(&wal, *run));
        assert_eq!(wal.run(run.run_id).unwrap().unwrap().events, 4);
    }
    assert!(wal.verify().unwrap().is_clean());
    // Appends go on where they were.
    let later = root();
    wal.append(&whole_run(later, "g", 1)).unwrap();
    assert_eq!(wal.run_events(later.run_id).unwrap().len(), 3);
}

fn events_of(wal: &Wal, run: dashflow_telemetry::RunIds) -> Vec<dashflow_telemetry::Event> {
    all_events(wal).into_iter().filter(|e| e.run == run).collect()
}

#[test]
fn compaction_merges_small_segments_into_fewer_full_ones() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let mut wal = Wal::open(dir.path(), config().segment_size(140)).unwrap();
        for _ in 0..4 {
            wal.append(&whole_run(root(), "g", 2)).unwrap();
        }
        all_events(&wal)
    };
    let segments_before = segment_count(dir.path());
    // A larger segment size now: the old two-record segments can be merged.
    let mut wal = Wal::open(dir.path(), config().segment_size(800)).unwrap();
    let report = wal.compact().unwrap();
    assert_eq!(report.records_dropped, 0);
    assert!(report.segments_after < report.segments_before, "{report:?}");
    assert!(segment_count(dir.path()) < segments_before);
    assert_eq!(all_events(&wal), before);
    assert_eq!(wal.list_runs(&RunFilter::all()).unwrap().len(), 4);
    assert!(wal.verify().unwrap().is_clean());
}

#[test]
fn compaction_with_nothing_to_drop_or_merge_leaves_the_segments_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config().segment_size(200)).unwrap();
    for _ in 0..3 {
        wal.append(&whole_run(root(), "g", 2)).unwrap();
    }
    let before: Vec<_> = (1..=wal.end().segment).map(|seq| std::fs::read(segment(dir.path(), seq)).unwrap()).collect();
    let report = wal.compact().unwrap();
    assert_eq!(report.segments_after, report.segments_before);
    assert_eq!(report.bytes_after, report.bytes_before);
    let after: Vec<_> = (1..=wal.end().segment).map(|seq| std::fs::read(segment(dir.path(), seq)).unwrap()).collect();
    assert_eq!(before, after);
}

#[test]
fn compaction_after_retention_by_size_frees_the_space_of_cut_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = config().segment_size(200).retention(Retention::new(None, Some(500)));
    let mut wal = Wal::open(dir.path(), config).unwrap();
    for _ in 0..6 {
        wal.append(&whole_run(root(), "g", 2)).unwrap();
    }
    wal.apply_retention(SystemTime::now()).unwrap();
    let (partial, whole): (Vec<_>, Vec<_>) =
        wal.list_runs(&RunFilter::all()).unwrap().into_iter().partition(|r| r.partial);
    let report = wal.compact().unwrap();
    // Process records of removed runs may go too, so records can be dropped without a cut run.
    assert!(partial.is_empty() || report.records_dropped > 0, "{report:?}");
    assert!(wal.list_runs(&RunFilter::all()).unwrap().iter().all(|r| !r.partial));
    for run in &whole {
        assert_eq!(wal.run_events(run.ids.run_id).unwrap().len(), 4, "a whole run lost events");
    }
}
