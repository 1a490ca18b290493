use std::io::Cursor;
use std::sync::Arc;

use super::*;
use crate::config::Retention;
use crate::segment::{ReadStep, RecordReader, list_segments};
use crate::testing::{CountingStorage, root, started, task, whole_run};

fn config() -> WalConfig {
    WalConfig::default().retention(Retention::KEEP_ALL)
}

fn counted(policy: FsyncPolicy) -> (tempfile::TempDir, Wal, Arc<CountingStorage>) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(CountingStorage::default());
    let wal = Wal::open(dir.path(), config().fsync(policy).storage(storage.clone())).unwrap();
    (dir, wal, storage)
}

fn segment_bytes(dir: &Path, seq: u64) -> Vec<u8> {
    std::fs::read(segment_path(dir, seq)).unwrap()
}

#[test]
fn the_first_append_creates_segment_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config()).unwrap();
    assert_eq!(wal.end(), Position::START);
    assert!(list_segments(dir.path()).unwrap().is_empty());
    let positions = wal.append(&whole_run(root(), "g", 1)).unwrap();
    assert_eq!(list_segments(dir.path()).unwrap(), vec![1]);
    assert_eq!(positions[0], Position::new(1, 0));
    assert_eq!(wal.end(), Position::new(1, segment_bytes(dir.path(), 1).len() as u64));
}

#[test]
fn positions_point_at_each_record_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config()).unwrap();
    let events = whole_run(root(), "g", 3);
    let positions = wal.append(&events).unwrap();
    let bytes = segment_bytes(dir.path(), 1);
    let mut reader = RecordReader::new(Cursor::new(&bytes), 0, bytes.len() as u64, 1 << 20);
    for (event, at) in events.iter().zip(&positions) {
        let ReadStep::Record { offset, payload } = reader.next_record().unwrap() else { panic!("record expected") };
        assert_eq!(offset, at.offset);
        assert_eq!(crate::record::decode_event(payload).unwrap().as_ref(), Some(event));
    }
    // The batch started a run: a record naming this process follows the events.
    if let Some(process) = ProcessIdentity::current() {
        let ReadStep::Record { payload, .. } = reader.next_record().unwrap() else { panic!("process record expected") };
        let Ok(crate::record::Payload::Process(record)) = crate::record::decode_payload(payload) else {
            panic!("a process record")
        };
        assert_eq!(record, ProcessRecord::new(process, vec![events[0].run.run_id]));
    }
    assert_eq!(reader.next_record().unwrap(), ReadStep::End);
}

#[test]
fn segments_rotate_before_a_record_would_pass_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config().segment_size(200)).unwrap();
    let run = root();
    for step in 0..40 {
        wal.append(&[task(run, step, "n")]).unwrap();
    }
    let segments = list_segments(dir.path()).unwrap();
    assert!(segments.len() > 3, "{segments:?}");
    assert_eq!(segments, (1..=segments.len() as u64).collect::<Vec<_>>());
    for seq in segments {
        let len = segment_bytes(dir.path(), seq).len();
        assert!(len <= 200 && len > 0, "segment {seq} has {len} bytes");
    }
}

#[test]
fn a_batch_spanning_several_segments_splits_at_record_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config().segment_size(200)).unwrap();
    let run = root();
    let events: Vec<_> = (0..40).map(|step| task(run, step, "n")).collect();
    let positions = wal.append(&events).unwrap();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    assert!(positions.last().unwrap().segment > 3);
    assert_eq!(wal.follow(Position::START).poll(usize::MAX).unwrap().len(), 40);
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config().segment_size(100)).unwrap();
    let run = root();
    wal.append(&[task(run, 1, "n")]).unwrap();
    wal.append(&[task(run, 2, &"x".repeat(500))]).unwrap();
    wal.append(&[task(run, 3, "n")]).unwrap();
    assert_eq!(list_segments(dir.path()).unwrap(), vec![1, 2, 3]);
}

#[test]
fn an_oversized_event_is_rejected_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config().max_record_size(1000)).unwrap();
    let run = root();
    let error = wal.append(&[task(run, 1, "small"), started(run, &"x".repeat(2000), None)]).unwrap_err();
    assert!(matches!(error, WalError::RecordTooLarge { max: 1000, .. }), "{error}");
    assert!(list_segments(dir.path()).unwrap().is_empty());
    wal.append(&[task(run, 1, "small")]).unwrap();
}

#[test]
fn fsync_always_syncs_each_batch_once() {
    let (_dir, mut wal, storage) = counted(FsyncPolicy::Always);
    let run = root();
    wal.append(&whole_run(run, "g", 5)).unwrap();
    wal.append(&[task(run, 6, "n")]).unwrap();
    assert_eq!(storage.syncs(), 2);
}

#[test]
fn fsync_every_n_syncs_once_n_records_are_unsynced() {
    let (_dir, mut wal, storage) = counted(FsyncPolicy::EveryN(3));
    let run = root();
    wal.append(&[task(run, 1, "n"), task(run, 2, "n")]).unwrap();
    assert_eq!(storage.syncs(), 0);
    wal.append(&[task(run, 3, "n")]).unwrap();
    assert_eq!(storage.syncs(), 1);
    wal.append(&[task(run, 4, "n")]).unwrap();
    assert_eq!(storage.syncs(), 1);
    wal.close().unwrap();
    assert_eq!(storage.syncs(), 2, "close syncs what the policy left");
}

#[test]
fn fsync_interval_of_zero_syncs_every_batch_and_a_long_one_waits() {
    let (_dir, mut wal, storage) = counted(FsyncPolicy::Interval(std::time::Duration::ZERO));
    wal.append(&[task(root(), 1, "n")]).unwrap();
    assert_eq!(storage.syncs(), 1);
    let (_dir, mut wal, storage) = counted(FsyncPolicy::Interval(std::time::Duration::from_secs(3600)));
    wal.append(&[task(root(), 1, "n")]).unwrap();
    assert_eq!(storage.syncs(), 0);
    wal.sync().unwrap();
    assert_eq!(storage.syncs(), 1);
}

#[test]
fn fsync_never_syncs_only_when_a_segment_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(CountingStorage::default());
    let mut wal =
        Wal::open(dir.path(), config().fsync(FsyncPolicy::Never).segment_size(120).storage(storage.clone())).unwrap();
    let run = root();
    wal.append(&[task(run, 1, "n")]).unwrap();
    assert_eq!(storage.syncs(), 0);
    for step in 2..10 {
        wal.append(&[task(run, step, "n")]).unwrap();
    }
    let sealed = list_segments(dir.path()).unwrap().len() - 1;
    assert!(sealed > 0);
    assert_eq!(storage.syncs(), sealed);
    wal.close().unwrap();
    assert_eq!(storage.syncs(), sealed, "close does not sync under Never");
}

#[test]
fn an_invalid_configuration_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (config, text) in [
        (config().max_record_size(0), "max_record_size"),
        (config().segment_size(8), "segment_size"),
        (config().fsync(FsyncPolicy::EveryN(0)), "EveryN"),
    ] {
        let error = Wal::open(dir.path(), config).unwrap_err();
        assert!(matches!(error, WalError::InvalidConfig { .. }) && error.to_string().contains(text), "{error}");
    }
}

#[test]
fn appending_nothing_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config()).unwrap();
    assert!(wal.append(&[]).unwrap().is_empty());
    assert!(list_segments(dir.path()).unwrap().is_empty());
}

/// Runs whose process died: written with the identity of a process that is gone, they read
/// `abandoned`; runs of a live process stay `running`.
#[cfg(target_os = "linux")]
mod abandoned {
    use dashflow_telemetry::{RunIds, RunOutcome};

    use super::*;
    use crate::index::system_time_to_ms;
    use crate::runs::{RunFilter, RunStatus};
    use crate::testing::{dead_process, finished, reap, spawn_child};

    fn ids(wal: &Wal, filter: RunFilter) -> Vec<RunId> {
        wal.list_runs(&filter).unwrap().into_iter().map(|run| run.ids.run_id).collect()
    }

    /// Appends `events` as if `process` had written them.
    fn append_as(wal: &mut Wal, process: &ProcessIdentity, events: &[Event]) {
        let me = wal.process.replace(process.clone());
        wal.append(events).unwrap();
        wal.process = me;
    }

    #[test]
    fn a_run_whose_process_is_gone_is_abandoned_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), config()).unwrap();
        let (dead, live) = (root(), root());
        let dead_process = dead_process();
        let last = task(dead, 1, "n");
        append_as(&mut wal, &dead_process, &[started(dead, "g", Some("t-1")), last.clone()]);
        wal.append(&[started(live, "g", None)]).unwrap();

        let run = wal.run(dead.run_id).unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Abandoned);
        assert_eq!(run.process, Some(dead_process));
        assert_eq!(run.last_event_at.map(system_time_to_ms), Some(system_time_to_ms(last.at)));
        assert_eq!((run.ended_at, run.duration), (None, None));
        assert_eq!(wal.run(live.run_id).unwrap().unwrap().status, RunStatus::Running);
        assert_eq!(ids(&wal, RunFilter::all().status(RunStatus::Running)), vec![live.run_id]);
        assert_eq!(ids(&wal, RunFilter::all().status(RunStatus::Abandoned)), vec![dead.run_id]);
        assert_eq!(ids(&wal, RunFilter::all().status(RunStatus::Abandoned).limit(1)), vec![dead.run_id]);
    }

    #[test]
    fn a_run_of_a_live_process_stays_running_until_the_process_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), config()).unwrap();
        let run = root();
        let child = spawn_child();
        let process = crate::process::identity_of(child.id()).unwrap();
        append_as(&mut wal, &process, &[started(run, "g", None)]);
        for _ in 0..2 {
            assert_eq!(wal.run(run.run_id).unwrap().unwrap().status, RunStatus::Running);
            assert_eq!(ids(&wal, RunFilter::all().status(RunStatus::Running)), vec![run.run_id]);
            assert!(ids(&wal, RunFilter::all().status(RunStatus::Abandoned)).is_empty());
        }
        reap(child);
        assert_eq!(wal.run(run.run_id).unwrap().unwrap().status, RunStatus::Abandoned);
        assert!(ids(&wal, RunFilter::all().status(RunStatus::Running)).is_empty());
    }

    #[test]
    fn the_current_process_records_itself_and_its_runs_stay_running() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), config()).unwrap();
        let run = root();
        wal.append(&[started(run, "g", None), task(run, 1, "n")]).unwrap();
        let summary = wal.run(run.run_id).unwrap().unwrap();
        assert_eq!(summary.status, RunStatus::Running);
        assert_eq!(summary.process, ProcessIdentity::current());
        assert!(summary.process.is_some());
        // Another reader of the directory agrees.
        let reader = Wal::open(dir.path(), config()).unwrap();
        assert_eq!(ids(&reader, RunFilter::all().status(RunStatus::Running)), vec![run.run_id]);
    }

    #[test]
    fn an_abandoned_run_that_records_its_end_after_all_takes_its_real_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), config()).unwrap();
        let run = root();
        append_as(&mut wal, &dead_process(), &[started(run, "g", None)]);
        assert_eq!(wal.run(run.run_id).unwrap().unwrap().status, RunStatus::Abandoned);
        wal.append(&[finished(run, RunOutcome::Failed, 1, Some("late"))]).unwrap();
        let summary = wal.run(run.run_id).unwrap().unwrap();
        assert_eq!(summary.status, RunStatus::Failed);
        assert_eq!(summary.error.as_deref(), Some("late"));
        assert!(ids(&wal, RunFilter::all().status(RunStatus::Abandoned)).is_empty());
    }

    #[test]
    fn abandoned_runs_are_found_again_after_the_index_is_rebuilt_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), config()).unwrap();
        let (dead, live) = (root(), root());
        append_as(&mut wal, &dead_process(), &[started(dead, "g", None)]);
        wal.append(&[started(live, "g", None)]).unwrap();
        let before = wal.list_runs(&RunFilter::all()).unwrap();
        wal.rebuild_index().unwrap();
        assert_eq!(wal.list_runs(&RunFilter::all()).unwrap(), before);
        drop(wal);
        for name in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
            let _ = std::fs::remove_file(dir.path().join(name));
        }
        let wal = Wal::open(dir.path(), config()).unwrap();
        assert_eq!(wal.list_runs(&RunFilter::all()).unwrap(), before);
        assert_eq!(ids(&wal, RunFilter::all().status(RunStatus::Abandoned)), vec![dead.run_id]);
    }

    #[test]
    fn a_run_without_a_process_record_stays_running() {
        // What logs written before process records existed hold, and what a writer that
        // cannot know its identity writes.
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), config()).unwrap();
        wal.process = None;
        let run = root();
        wal.append(&[started(run, "g", None)]).unwrap();
        let summary = wal.run(run.run_id).unwrap().unwrap();
        assert_eq!((summary.status, summary.process), (RunStatus::Running, None));
    }

    #[test]
    fn a_batch_starting_many_runs_names_them_in_as_many_process_records_as_the_record_size_needs() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), config().max_record_size(400)).unwrap();
        let runs: Vec<RunIds> = (0..50).map(|_| root()).collect();
        let events: Vec<Event> = runs.iter().map(|&run| started(run, "g", None)).collect();
        append_as(&mut wal, &dead_process(), &events);
        let abandoned = ids(&wal, RunFilter::all().status(RunStatus::Abandoned));
        assert_eq!(abandoned.len(), runs.len());
        let bytes = segment_bytes(dir.path(), 1);
        let mut reader = RecordReader::new(Cursor::new(&bytes), 0, bytes.len() as u64, 400);
        let mut process_records = 0;
        while let ReadStep::Record { payload, .. } = reader.next_record().unwrap() {
            process_records += usize::from(payload[0] == crate::record::TAG_PROCESS);
        }
        assert!(process_records > 1, "{process_records} process records");
        assert!(wal.verify().unwrap().is_clean());
    }
}
