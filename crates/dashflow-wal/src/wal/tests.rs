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

mod run_blocks {
    use std::time::{Duration, UNIX_EPOCH};

    use dashflow_telemetry::{Event, EventRef};

    use super::*;
    use crate::record::{Payload, RUN_BLOCK_LIMIT, TAG_RUN_EVENTS, decode_events, decode_payload};
    use crate::testing::finished;

    /// Appends `events` as the event store does: consecutive events of a run in one block.
    fn append_blocks(wal: &mut Wal, events: &[Event]) -> Vec<Position> {
        let records: Vec<Record<'_>> = events.iter().map(|event| Record::Event(EventRef::Whole(event))).collect();
        wal.append_records(&records, Framing::RunBlocks).unwrap().positions
    }

    /// Every record of segment `seq`: its offset and payload.
    fn records_of(dir: &Path, seq: u64) -> Vec<(u64, Vec<u8>)> {
        let bytes = segment_bytes(dir, seq);
        let mut reader = RecordReader::new(Cursor::new(&bytes), 0, bytes.len() as u64, 1 << 20);
        let mut records = Vec::new();
        while let ReadStep::Record { offset, payload } = reader.next_record().unwrap() {
            records.push((offset, payload.to_vec()));
        }
        records
    }

    fn read_all(wal: &Wal) -> Vec<Event> {
        wal.follow(Position::START).poll(usize::MAX).unwrap().into_iter().map(|(_, event)| event).collect()
    }

    fn at(event: Event, nanos_after_epoch: u64) -> Event {
        Event { at: UNIX_EPOCH + Duration::from_nanos(nanos_after_epoch), ..event }
    }

    #[test]
    fn a_runs_consecutive_events_share_one_record_and_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), config()).unwrap();
        wal.process = None;
        let (a, b) = (root(), root());
        let base = 1_700_000_000_123_456_789;
        // Times one nanosecond apart, a second apart, and equal: deltas of every size.
        let events = vec![
            at(started(a, "g", Some("t")), base),
            at(task(a, 1, "x"), base + 1),
            at(task(a, 2, "y"), base + 1_000_000_001),
            at(started(b, "g", None), base + 1_000_000_001),
            at(task(b, 1, "x"), base + 1_000_000_002),
            at(finished(a, dashflow_telemetry::RunOutcome::Completed, 2, None), base + 3_000_000_000),
        ];
        let positions = append_blocks(&mut wal, &events);
        let records = records_of(dir.path(), 1);
        // A's first three, B's two, then A's last on its own (a block of one is a plain record).
        assert_eq!(records.len(), 3, "{records:?}");
        assert_eq!(records[0].1[0], TAG_RUN_EVENTS);
        assert_eq!(records[1].1[0], TAG_RUN_EVENTS);
        assert_ne!(records[2].1[0], TAG_RUN_EVENTS);
        assert_eq!(decode_events(&records[0].1).unwrap(), events[..3]);
        assert!(matches!(decode_payload(&records[1].1).unwrap(), Payload::Events(read) if read == events[3..5]));
        // Each event's position is its record's.
        let offsets: Vec<u64> = positions.iter().map(|position| position.offset).collect();
        let starts: Vec<u64> = records.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(offsets, [starts[0], starts[0], starts[0], starts[1], starts[1], starts[2]]);
        assert_eq!(read_all(&wal), events);
        assert_eq!(wal.run_events(a.run_id).unwrap(), [&events[..3], &events[5..]].concat());
        // The index learned from the block what a rebuild from the segments learns.
        let (run_a, run_b) = (wal.run(a.run_id).unwrap().unwrap(), wal.run(b.run_id).unwrap().unwrap());
        assert_eq!((run_a.events, run_a.steps, run_b.events), (4, 2, 2));
        let report = wal.rebuild_index().unwrap();
        assert_eq!(report.replayed, 3);
        assert_eq!(wal.run(a.run_id).unwrap().unwrap(), run_a);
        assert_eq!(wal.run(b.run_id).unwrap().unwrap(), run_b);
    }

    #[test]
    fn an_event_earlier_than_the_one_before_it_starts_the_next_block() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), config()).unwrap();
        wal.process = None;
        let run = root();
        let base = 1_700_000_000_000_000_000;
        let events =
            vec![at(task(run, 1, "x"), base + 50), at(task(run, 2, "x"), base + 60), at(task(run, 3, "x"), base + 10)];
        append_blocks(&mut wal, &events);
        assert_eq!(records_of(dir.path(), 1).len(), 2);
        assert_eq!(read_all(&wal), events);
    }

    #[test]
    fn a_block_stops_growing_at_its_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), config()).unwrap();
        wal.process = None;
        let run = root();
        let name = "n".repeat(100);
        let events: Vec<Event> = (0..1_000).map(|step| task(run, step, &name)).collect();
        append_blocks(&mut wal, &events);
        let records = records_of(dir.path(), 1);
        assert!(records.len() > 1, "{} records", records.len());
        for (_, payload) in &records {
            assert!(payload.len() <= RUN_BLOCK_LIMIT, "a block of {} bytes", payload.len());
        }
        assert_eq!(read_all(&wal), events);
    }

    #[test]
    fn a_changed_byte_inside_a_block_loses_that_block_and_nothing_around_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), config()).unwrap();
        wal.process = None;
        let (a, b, c) = (root(), root(), root());
        let events: Vec<Event> =
            [a, b, c].iter().flat_map(|&run| (1..=4).map(move |step| task(run, step, "n"))).collect();
        append_blocks(&mut wal, &events);
        drop(wal);
        let records = records_of(dir.path(), 1);
        assert_eq!(records.len(), 3);
        // A byte in the middle of B's block, past its ids and base time.
        let (offset, payload) = &records[1];
        let path = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(*offset as usize) + crate::frame::HEADER_LEN + payload.len() / 2 + 8] ^= 0x10;
        std::fs::write(&path, bytes).unwrap();
        let report = crate::verify_dir(dir.path(), &config()).unwrap();
        assert_eq!(report.damaged.len(), 1, "{report:?}");
        assert_eq!(report.damaged[0].offset, *offset);
        let wal = Wal::open_read_only(dir.path(), config()).unwrap();
        let read = read_all(&wal);
        assert_eq!(read, [&events[..4], &events[8..]].concat());
    }

    #[test]
    fn a_block_body_changed_anywhere_or_cut_anywhere_is_an_error_or_other_events_never_a_panic() {
        let run = root();
        let base = 1_700_000_000_000_000_000;
        let events = [
            at(started(run, "g", Some("t")), base),
            at(task(run, 1, "x"), base + 7),
            at(finished(run, dashflow_telemetry::RunOutcome::Failed, 1, Some("boom")), base + 9),
        ];
        let refs: Vec<EventRef<'_>> = events.iter().map(EventRef::Whole).collect();
        let mut payload = Vec::new();
        let count = crate::record::encode_run_block(refs.iter().copied(), RUN_BLOCK_LIMIT, &mut payload);
        assert_eq!(count, 3);
        assert_eq!(decode_events(&payload).unwrap(), events);
        for len in 1..payload.len() {
            assert!(decode_events(&payload[..len]).is_err(), "a prefix of {len} bytes decoded");
        }
        let mut longer = payload.clone();
        longer.push(0);
        assert!(decode_events(&longer).is_err(), "a trailing byte decoded");
        for index in 1..payload.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut changed = payload.clone();
                changed[index] ^= flip;
                if let Ok(read) = decode_events(&changed) {
                    assert_ne!(read, events, "byte {index} changed by {flip:#x} read back the same events");
                }
            }
        }
        // The tag alone, and ids without a first event.
        assert!(decode_events(&[TAG_RUN_EVENTS]).is_err());
        assert!(decode_events(&payload[..1 + 1 + 16 + 1]).is_err());
        // The count follows the tag, flags, run id, depth, and the base time (five bytes of
        // seconds, one of nanoseconds): zero, one more, and more than the body could hold.
        let count_at = 1 + 1 + 16 + 1 + 5 + 1;
        assert_eq!(payload[count_at..count_at + 4], 3u32.to_le_bytes());
        for count in [0, 4, u32::MAX] {
            let mut changed = payload.clone();
            changed[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
            assert!(decode_events(&changed).is_err(), "a count of {count} decoded");
        }
        // An event before the Unix epoch cannot open a block: nothing is written.
        let before_epoch = Event { at: UNIX_EPOCH - Duration::from_secs(1), ..task(run, 1, "x") };
        let mut out = vec![7];
        let count =
            crate::record::encode_run_block([EventRef::Whole(&before_epoch), refs[1]], RUN_BLOCK_LIMIT, &mut out);
        assert_eq!((count, out), (0, vec![7]));
    }

    /// Appends a run's batch as the event store does: its events where they lie, each lone
    /// step's start folded into its task's end.
    fn append_batch(wal: &mut Wal, batch: &dashflow_telemetry::EventBatch) {
        let mut records = Vec::new();
        crate::store::push_folded_refs(&mut records, batch);
        wal.append_records(&records, Framing::RunBlocks).unwrap();
    }

    #[test]
    fn a_blocks_step_events_counted_at_once_index_what_a_rebuild_indexes() {
        use dashflow_telemetry::__private::{NodeNames, RunContext};
        use dashflow_telemetry::clock::{RunClock, Tick};

        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), config()).unwrap();
        wal.process = None;
        let (run, other) = (root(), root());
        let labels = [vec![vec![Arc::from("again")]], vec![]];
        let names = Arc::new(NodeNames::new(["a", "b"].map(Arc::from)).with_labels(labels));
        let context = RunContext::new(run, RunClock::new(), Arc::clone(&names));
        let other_context = RunContext::new(other, RunClock::new(), names);
        let ticks: Vec<Tick> = (0..8).map(|_| Tick::now()).collect();
        let mut batch = dashflow_telemetry::EventBatch::new();
        batch.push_event(started(run, "g", Some("t")));
        // A lone step folded into its end with its routing decision, a start and end apart,
        // a decision of its own, a step numbered lower than one before (a resumed thread's
        // numbers are not the batch's order), a failed attempt kept whole, and another run's
        // steps in between, which end the first block.
        batch.push_end_routed(&context, (1, 0), (ticks[0], ticks[1]), (0, 0, 0), true);
        batch.push_step_started(&context, 7, 1, ticks[1]);
        batch.push_task_finished(&context, (7, 1, 1), (ticks[1], ticks[2]), None);
        batch.push_routed(&context, 7, (0, 0, 1), ticks[2]);
        batch.push_step_started(&other_context, 1, 0, ticks[2]);
        batch.push_task_finished(&other_context, (1, 0, 1), (ticks[2], ticks[3]), None);
        batch.push_step_started(&context, 3, 1, ticks[3]);
        batch.push_task_finished(&context, (3, 1, 1), (ticks[3], ticks[4]), Some("boom".to_owned()));
        batch.push_task_finished(&context, (3, 1, 2), (ticks[4], ticks[5]), None);
        append_batch(&mut wal, &batch);
        // Before its end says how many steps the run took, its step events tell.
        assert_eq!(wal.run(run.run_id).unwrap().unwrap().steps, 7);
        let mut end = dashflow_telemetry::EventBatch::new();
        end.push_event(finished(run, dashflow_telemetry::RunOutcome::Completed, 7, None));
        append_batch(&mut wal, &end);

        let indexed = [wal.run(run.run_id).unwrap().unwrap(), wal.run(other.run_id).unwrap().unwrap()];
        let segments = wal.index.segment_rows().unwrap();
        // The run's start and end, two decisions and four task ends (a failed attempt and its
        // retry among them), each lone step's start folded into its task's end.
        assert_eq!((indexed[0].steps, indexed[0].events), (7, 8), "{indexed:?}");
        assert_eq!((indexed[1].steps, indexed[1].events), (1, 1), "{indexed:?}");
        assert_eq!(segments.iter().map(|row| row.1).sum::<i64>(), 9, "{segments:?}");
        assert_eq!(wal.run_events(run.run_id).unwrap().len(), 8);
        wal.rebuild_index().unwrap();
        assert_eq!([wal.run(run.run_id).unwrap().unwrap(), wal.run(other.run_id).unwrap().unwrap()], indexed);
        assert_eq!(wal.index.segment_rows().unwrap(), segments);
    }
}

mod schemas {
    use dashflow_telemetry::{Event, EventKind};
    use serde_json::json;

    use super::*;
    use crate::record::{Payload, TAG_GRAPH, TAG_SCHEMA, decode_payload};

    fn graph_defined(run: dashflow_telemetry::RunIds, schema: &Arc<serde_json::Value>) -> Event {
        Event::now(run, EventKind::GraphDefined { graph: "g".into(), schema: Arc::clone(schema) })
    }

    /// Each record of segment `seq`: offset and payload.
    fn records_of(dir: &Path, seq: u64) -> Vec<(u64, Vec<u8>)> {
        let bytes = segment_bytes(dir, seq);
        let mut reader = RecordReader::new(Cursor::new(&bytes), 0, bytes.len() as u64, u32::MAX);
        let mut out = Vec::new();
        while let ReadStep::Record { offset, payload } = reader.next_record().unwrap() {
            out.push((offset, payload.to_vec()));
        }
        out
    }

    #[test]
    fn a_schema_record_goes_with_the_first_graph_record_of_each_segment_even_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(json!({"nodes": (0..20).map(|i| format!("node-{i}")).collect::<Vec<_>>()}));
        let mut wal = Wal::open(dir.path(), config().segment_size(700)).unwrap();
        // Batches of several runs: rotations fall between a batch's records.
        let mut positions = Vec::new();
        for _ in 0..6 {
            let mut batch = Vec::new();
            for _ in 0..3 {
                let run = root();
                batch.push(graph_defined(run, &schema));
                batch.extend(whole_run(run, "g", 1));
            }
            let at = wal.append(&batch).unwrap();
            let graphs = batch.iter().zip(at).filter(|(e, _)| matches!(e.kind, EventKind::GraphDefined { .. }));
            positions.extend(graphs.map(|(_, at)| at));
        }
        let segments = list_segments(dir.path()).unwrap();
        assert!(segments.len() > 3, "{segments:?}");
        for seq in segments {
            let records = records_of(dir.path(), seq);
            let tags: Vec<u8> = records.iter().map(|(_, payload)| payload[0]).collect();
            let first_graph = tags.iter().position(|&tag| tag == TAG_GRAPH);
            let schemas: Vec<usize> =
                tags.iter().enumerate().filter(|&(_, &tag)| tag == TAG_SCHEMA).map(|(i, _)| i).collect();
            match first_graph {
                // Right before the first graph record, and only there.
                Some(first) => assert_eq!(schemas, [first - 1], "segment {seq}: {tags:?}"),
                None => assert!(schemas.is_empty(), "segment {seq}: {tags:?}"),
            }
            // The index notes where it is.
            if let Some(&at) = schemas.first() {
                let Payload::Schema(record) = decode_payload(&records[at].1).unwrap() else { panic!() };
                assert_eq!(wal.index.schema_offset(seq, record.key).unwrap(), Some(records[at].0));
            }
        }
        // The positions returned are those of the graph records, not of the schema records.
        for at in positions {
            let records = records_of(dir.path(), at.segment);
            let (_, payload) = records.iter().find(|(offset, _)| *offset == at.offset).unwrap();
            assert_eq!(payload[0], TAG_GRAPH);
        }
    }

    #[test]
    fn retention_and_a_cleared_index_forget_where_schema_records_were() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(json!({"nodes": ["a", "b"]}));
        let mut wal = Wal::open(dir.path(), config().segment_size(200)).unwrap();
        for _ in 0..4 {
            let run = root();
            wal.append(&[graph_defined(run, &schema), started(run, "g", None)]).unwrap();
        }
        let key = crate::record::SchemaKey::of(serde_json::to_string(&*schema).unwrap().as_bytes());
        assert!(wal.index.schema_offset(1, key).unwrap().is_some());
        wal.index.forget_segments_before(2).unwrap();
        assert_eq!(wal.index.schema_offset(1, key).unwrap(), None);
        assert!(wal.index.schema_offset(2, key).unwrap().is_some());
        wal.index.clear().unwrap();
        assert_eq!(wal.index.schema_offset(2, key).unwrap(), None);
        // A rebuild reads them back from the segments.
        wal.rebuild_index().unwrap();
        assert!(wal.index.schema_offset(2, key).unwrap().is_some());
    }
}
