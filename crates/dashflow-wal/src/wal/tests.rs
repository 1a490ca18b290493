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
    wal.append(&[started(run, "g", None)]).unwrap();
    wal.append(&[started(run, &"x".repeat(500), None)]).unwrap();
    wal.append(&[task(run, 1, "n")]).unwrap();
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
