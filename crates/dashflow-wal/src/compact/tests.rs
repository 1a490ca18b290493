use super::*;
use crate::config::{Retention, WalConfig};
use crate::runs::RunFilter;
use crate::segment::Position;
use crate::testing::{root, some_process, whole_run};

fn config() -> WalConfig {
    WalConfig::default().retention(Retention::KEEP_ALL).segment_size(330)
}

/// A WAL of small segments whose first one retention then removes, so compaction has records
/// to drop (the rest of the run cut in half) and segments to merge.
fn wal_with_a_cut_run() -> (tempfile::TempDir, Vec<dashflow_telemetry::Event>) {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config()).unwrap();
    // The layout below (the first segment ends inside the second run) needs records of
    // known sizes.
    wal.process = Some(some_process());
    let mut all = Vec::new();
    for _ in 0..6 {
        let events = whole_run(root(), "g", 2);
        wal.append(&events).unwrap();
        all.extend(events);
    }
    std::fs::remove_file(segment_path(dir.path(), 1)).unwrap();
    (dir, all)
}

fn events_in(dir: &Path) -> Vec<dashflow_telemetry::Event> {
    Wal::open(dir, config())
        .unwrap()
        .follow(Position::START)
        .poll(usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

#[test]
fn a_compaction_interrupted_after_its_plan_was_committed_is_finished_on_open() {
    let (dir, _) = wal_with_a_cut_run();
    let expected = {
        let mut wal = Wal::open(dir.path(), config()).unwrap();
        let report = wal.prepare_compaction().unwrap();
        assert!(report.records_dropped > 0, "{report:?}");
        // What compaction will leave: everything except the cut run's records.
        let cut: Vec<_> =
            wal.list_runs(&RunFilter::all()).unwrap().into_iter().filter(|r| r.partial).map(|r| r.ids.run_id).collect();
        assert_eq!(cut.len(), 1);
        let all = wal.follow(Position::START).poll(usize::MAX).unwrap();
        all.into_iter().map(|(_, e)| e).filter(|e| !cut.contains(&e.run.run_id)).collect::<Vec<_>>()
    };
    // Crash in the middle of finishing: output 0 was moved into place, the rest was not.
    let tmp = dir.path().join(TMP_DIR);
    let first_input: u64 = std::fs::read_to_string(tmp.join(PLAN)).unwrap().lines().nth(1).unwrap().parse().unwrap();
    std::fs::remove_file(segment_path(dir.path(), first_input)).unwrap();
    std::fs::rename(tmp.join("0.out"), segment_path(dir.path(), first_input)).unwrap();

    let wal = Wal::open(dir.path(), config()).unwrap();
    assert!(!tmp.exists());
    assert!(wal.verify().unwrap().is_clean());
    assert!(wal.list_runs(&RunFilter::all()).unwrap().iter().all(|r| !r.partial));
    drop(wal);
    assert_eq!(events_in(dir.path()), expected);
}

#[test]
fn a_compaction_interrupted_before_its_plan_was_committed_is_discarded_on_open() {
    let (dir, _) = wal_with_a_cut_run();
    let before = events_in(dir.path());
    {
        let mut wal = Wal::open(dir.path(), config()).unwrap();
        wal.prepare_compaction().unwrap();
    }
    std::fs::remove_file(dir.path().join(TMP_DIR).join(PLAN)).unwrap();
    assert_eq!(events_in(dir.path()), before);
    assert!(!dir.path().join(TMP_DIR).exists());
}

#[test]
fn an_unreadable_plan_is_an_error_that_names_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(TMP_DIR)).unwrap();
    std::fs::write(dir.path().join(TMP_DIR).join(PLAN), "not a number\n").unwrap();
    let error = Wal::open(dir.path(), config()).unwrap_err();
    assert!(matches!(&error, WalError::BadCompactionPlan { path } if path.ends_with("compact.tmp/PLAN")), "{error}");
}

#[test]
fn compaction_drops_the_run_blocks_of_a_run_whose_start_is_gone_and_keeps_the_others() {
    use crate::wal::{Framing, Record};
    use dashflow_telemetry::EventRef;

    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    {
        let mut wal = Wal::open(dir.path(), config()).unwrap();
        wal.process = Some(some_process());
        for _ in 0..6 {
            // Each run in two batches, as a run longer than one hand-over is: two blocks.
            let events = whole_run(root(), "g", 4);
            for half in events.chunks(3) {
                let records: Vec<Record<'_>> = half.iter().map(|event| Record::Event(EventRef::Whole(event))).collect();
                wal.append_records(&records, Framing::RunBlocks).unwrap();
            }
            all.extend(events);
        }
    }
    let segments = crate::segment::list_segments(dir.path()).unwrap();
    assert!(segments.len() > 3, "{segments:?}");
    // Retention took the first segment: the run whose start was there lost it.
    std::fs::remove_file(segment_path(dir.path(), 1)).unwrap();
    let before = events_in(dir.path());
    let mut wal = Wal::open(dir.path(), config()).unwrap();
    let cut: Vec<_> =
        wal.list_runs(&RunFilter::all()).unwrap().into_iter().filter(|r| r.partial).map(|r| r.ids.run_id).collect();
    assert_eq!(cut.len(), 1, "one run lost its start");
    let report = wal.compact().unwrap();
    assert!(report.records_dropped > 0, "{report:?}");
    drop(wal);
    let expected: Vec<_> = before.into_iter().filter(|event| !cut.contains(&event.run.run_id)).collect();
    assert_eq!(events_in(dir.path()), expected);
    // Every run that kept its start kept all of its events.
    let kept_start: Vec<_> = expected
        .iter()
        .filter(|event| matches!(event.kind, dashflow_telemetry::EventKind::RunStarted { .. }))
        .map(|event| event.run.run_id)
        .collect();
    assert!(kept_start.len() >= 4, "{kept_start:?}");
    let complete: Vec<_> = all.into_iter().filter(|event| kept_start.contains(&event.run.run_id)).collect();
    assert_eq!(complete, expected);
}
