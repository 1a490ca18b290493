//! Several writers sharing one WAL directory, as processes sharing `~/.dashflow` do. Each
//! `Wal` holds its own lock file handle, so two of them in one process exclude each other
//! exactly as two processes would.

use std::collections::HashMap;

use dashflow_telemetry::RunId;
use dashflow_wal::{RunFilter, Wal};

use crate::common::*;

#[test]
fn two_writers_taking_turns_lose_no_records_and_keep_one_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Wal::open(dir.path(), config().segment_size(240)).unwrap();
    let mut b = Wal::open(dir.path(), config().segment_size(240)).unwrap();
    let (run_a, run_b) = (root(), root());
    let (events_a, events_b) = (whole_run(run_a, "a", 8), whole_run(run_b, "b", 8));
    for (ea, eb) in events_a.iter().zip(&events_b) {
        a.append(std::slice::from_ref(ea)).unwrap();
        b.append(std::slice::from_ref(eb)).unwrap();
    }
    // Both writers rotated segments the other had been writing, and still appended at the end.
    assert!(b.end().segment > 3);
    let reader = open(dir.path());
    assert_eq!(reader.run_events(run_a.run_id).unwrap(), events_a);
    assert_eq!(reader.run_events(run_b.run_id).unwrap(), events_b);
    assert_eq!(all_events(&reader).len(), 20);
    assert_eq!(reader.list_runs(&RunFilter::all()).unwrap().len(), 2);
    let report = reader.verify().unwrap();
    assert!(report.is_clean() && report.index_up_to_date == Some(true), "{report:?}");
}

#[test]
fn writers_on_two_threads_lose_no_records() {
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<_> = (0..2).map(|_| root()).collect();
    std::thread::scope(|scope| {
        for &run in &runs {
            let path = dir.path();
            scope.spawn(move || {
                let mut wal = Wal::open(path, config().segment_size(800)).unwrap();
                for batch in 0..25 {
                    wal.append(&[task(run, batch * 2, "n"), task(run, batch * 2 + 1, "n")]).unwrap();
                }
            });
        }
    });
    let reader = open(dir.path());
    let mut per_run: HashMap<RunId, Vec<u64>> = HashMap::new();
    for event in all_events(&reader) {
        if let dashflow_telemetry::EventKind::TaskFinished { step, .. } = event.kind {
            per_run.entry(event.run.run_id).or_default().push(step);
        }
    }
    for run in &runs {
        assert_eq!(per_run[&run.run_id], (0..50).collect::<Vec<_>>(), "each writer's records stay in order");
        assert_eq!(reader.run(run.run_id).unwrap().unwrap().events, 50);
    }
    assert!(reader.verify().unwrap().is_clean());
}
