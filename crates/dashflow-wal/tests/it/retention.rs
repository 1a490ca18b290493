//! Retention by age and by total size.

use std::time::{Duration, SystemTime};

use dashflow_telemetry::{Event, RunIds};
use dashflow_wal::{Position, Retention, RunFilter, Wal};

use crate::common::*;

/// Runs of four events each; segments of 1000 bytes hold three records.
fn append_runs(wal: &mut Wal, count: usize, at: SystemTime) -> Vec<RunIds> {
    (0..count)
        .map(|_| {
            let run = root();
            let events: Vec<Event> = whole_run(run, "g", 2).into_iter().map(|event| Event { at, ..event }).collect();
            wal.append(&events).unwrap();
            run
        })
        .collect()
}

fn total_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn retention_by_size_removes_the_oldest_sealed_segments_whenever_one_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let config = config().segment_size(200).retention(Retention::new(None, Some(600)));
    let mut wal = Wal::open(dir.path(), config).unwrap();
    let runs = append_runs(&mut wal, 8, SystemTime::now());

    assert!(total_bytes(dir.path()) <= 3000 + 1000, "{} bytes", total_bytes(dir.path()));
    assert!(!segment(dir.path(), 1).exists());
    let kept = wal.list_runs(&RunFilter::all()).unwrap();
    assert!(kept.len() < runs.len());
    assert!(wal.run(runs[0].run_id).unwrap().is_none(), "the oldest run is gone from the index");
    assert!(kept.iter().any(|r| r.ids.run_id == runs[7].run_id));
    // Every run the index still lists can be read from what is left.
    for run in &kept {
        let events = wal.run_events(run.ids.run_id).unwrap();
        assert_eq!(events.len() as u64, run.events);
        assert_eq!(run.partial, events.len() < 4);
    }
}

#[test]
fn retention_by_age_removes_segments_whose_newest_record_is_older_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let day = Duration::from_secs(86_400);
    let config = config().segment_size(200).retention(Retention::new(Some(day), None));
    let mut wal = Wal::open(dir.path(), config).unwrap();
    let now = SystemTime::now();
    let old = append_runs(&mut wal, 3, now - 10 * day);
    let new = append_runs(&mut wal, 3, now);

    // Sealing applied retention already; nothing old remains in whole segments of old runs.
    for run in &old[..2] {
        assert!(wal.run(run.run_id).unwrap().is_none());
    }
    for run in &new {
        assert_eq!(wal.run_events(run.run_id).unwrap().len(), 4);
    }
    // Ten days on, everything but the active segment has aged out.
    let report = wal.apply_retention(now + 10 * day).unwrap();
    assert!(report.segments_removed > 0);
    let remaining: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".wal"))
        .collect();
    assert_eq!(remaining.len(), 1, "only the active segment is left");
    assert!(segment(dir.path(), wal.end().segment).exists());
}

#[test]
fn the_active_segment_is_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    let config = config().segment_size(200).retention(Retention::new(Some(Duration::ZERO), Some(0)));
    let mut wal = Wal::open(dir.path(), config).unwrap();
    append_runs(&mut wal, 4, SystemTime::now() - Duration::from_secs(60));
    wal.apply_retention(SystemTime::now()).unwrap();
    let end = wal.end();
    assert!(segment(dir.path(), end.segment).exists());
    assert!(!segment(dir.path(), end.segment - 1).exists());
    // A task, not a start: a start brings a process record, which may fill the segment and
    // seal it, and this retention removes every sealed segment at once.
    let run = root();
    wal.append(&[task(run, 1, "n")]).unwrap();
    assert_eq!(wal.run_events(run.run_id).unwrap().len(), 1);
}

#[test]
fn keep_all_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config().segment_size(200)).unwrap();
    append_runs(&mut wal, 4, SystemTime::UNIX_EPOCH);
    let report = wal.apply_retention(SystemTime::now()).unwrap();
    assert_eq!(report.segments_removed, 0);
    assert!(segment(dir.path(), 1).exists());
}

#[test]
fn segments_deleted_before_the_index_was_updated_are_forgotten_on_open() {
    // Retention deletes the files first; a crash before the index update leaves stale rows.
    let dir = tempfile::tempdir().unwrap();
    let runs = {
        let mut wal = Wal::open(dir.path(), config().segment_size(200)).unwrap();
        append_runs(&mut wal, 4, SystemTime::now())
    };
    std::fs::remove_file(segment(dir.path(), 1)).unwrap();
    std::fs::remove_file(segment(dir.path(), 2)).unwrap();
    let wal = Wal::open(dir.path(), config().segment_size(200)).unwrap();
    assert!(wal.run(runs[0].run_id).unwrap().is_none());
    for run in wal.list_runs(&RunFilter::all()).unwrap() {
        assert!(run.first >= Position::new(3, 0));
        wal.run_events(run.ids.run_id).unwrap();
    }
}
