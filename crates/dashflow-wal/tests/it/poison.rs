//! R10: once a write or fsync fails, the WAL refuses every later append with the original
//! cause, and reopening recovers.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashflow_telemetry::EventCallback;
use dashflow_wal::{EventStore, Storage, StoreConfig, Wal, WalError};

use crate::common::*;

/// A disk that fails on request.
#[derive(Debug, Default)]
struct FlakyDisk {
    fail_sync: AtomicBool,
    fail_write: AtomicBool,
}

impl Storage for FlakyDisk {
    fn append(&self, file: &mut File, buf: &[u8]) -> io::Result<()> {
        if self.fail_write.load(Ordering::SeqCst) {
            // Half the bytes make it, as when the disk fills up mid-write.
            file.write_all(&buf[..buf.len() / 2])?;
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"));
        }
        file.write_all(buf)
    }

    fn sync(&self, file: &File) -> io::Result<()> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::other("EIO from fsync"));
        }
        file.sync_data()
    }
}

fn poisoned_by<'e>(error: &'e WalError, action: &str) -> &'e io::Error {
    match error {
        WalError::Poisoned { action: a, source, .. } if *a == action => source,
        other => panic!("expected Poisoned by {action}, got {other}"),
    }
}

#[test]
fn a_failed_fsync_poisons_the_wal_and_every_later_append_fails_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(FlakyDisk::default());
    let mut wal = Wal::open(dir.path(), config().storage(disk.clone())).unwrap();
    let run = root();
    wal.append(&[started(run, "g", None)]).unwrap();

    disk.fail_sync.store(true, Ordering::SeqCst);
    let error = wal.append(&[task(run, 1, "n")]).unwrap_err();
    assert!(poisoned_by(&error, "fsync").to_string().contains("EIO from fsync"));
    assert!(error.to_string().contains("reopen"), "{error}");

    // The disk works again, the WAL still refuses: the unsynced pages may be gone.
    disk.fail_sync.store(false, Ordering::SeqCst);
    let error = wal.append(&[task(run, 2, "n")]).unwrap_err();
    assert!(poisoned_by(&error, "fsync").to_string().contains("EIO from fsync"));
    assert!(matches!(wal.sync(), Err(WalError::Poisoned { .. })));
    assert!(wal.poisoned().is_some());
    assert!(matches!(wal.close(), Err(WalError::Poisoned { .. })));
}

#[test]
fn a_failed_write_poisons_the_wal_and_reopening_cuts_the_partial_record() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(FlakyDisk::default());
    let mut wal = Wal::open(dir.path(), config().storage(disk.clone())).unwrap();
    let run = root();
    let before = whole_run(run, "g", 2);
    wal.append(&before).unwrap();
    disk.fail_write.store(true, Ordering::SeqCst);
    let error = wal.append(&[task(run, 3, "n")]).unwrap_err();
    assert_eq!(poisoned_by(&error, "write").kind(), io::ErrorKind::StorageFull);
    disk.fail_write.store(false, Ordering::SeqCst);
    assert!(matches!(wal.append(&[task(run, 4, "n")]), Err(WalError::Poisoned { action: "write", .. })));
    drop(wal);

    let mut wal = open(dir.path());
    assert!(wal.recovery().truncated.is_some(), "the half-written record is cut");
    assert_eq!(wal.run_events(run.run_id).unwrap(), before);
    wal.append(&[task(run, 5, "n")]).unwrap();
    assert_eq!(all_events(&wal).len(), before.len() + 1);
}

#[test]
fn a_failed_fsync_when_sealing_a_segment_poisons_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(FlakyDisk::default());
    let mut wal =
        Wal::open(dir.path(), config().segment_size(200).fsync(dashflow_wal::FsyncPolicy::Never).storage(disk.clone()))
            .unwrap();
    let run = root();
    wal.append(&[task(run, 1, "n")]).unwrap();
    disk.fail_sync.store(true, Ordering::SeqCst);
    // No sync is due under `Never` until a segment fills up and is sealed.
    let mut step = 2;
    let error = loop {
        match wal.append(&[task(run, step, "n")]) {
            Ok(_) => step += 1,
            Err(error) => break error,
        }
        assert!(step < 100, "the segment was never sealed");
    };
    poisoned_by(&error, "fsync");
    assert!(wal.append(&[task(run, 100, "n")]).is_err());
}

#[test]
fn the_event_store_reports_a_failed_fsync_at_flush_instead_of_pretending_success() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(FlakyDisk::default());
    let store = EventStore::open(dir.path(), StoreConfig::default().wal(config().storage(disk.clone()))).unwrap();
    let run = root();
    store.on_event(&started(run, "g", None));
    store.flush().unwrap();

    disk.fail_sync.store(true, Ordering::SeqCst);
    store.on_event(&task(run, 1, "n"));
    poisoned_by(&store.flush().unwrap_err(), "fsync");
    disk.fail_sync.store(false, Ordering::SeqCst);
    store.on_event(&task(run, 2, "n"));
    poisoned_by(&store.flush().unwrap_err(), "fsync");
    let stats = store.stats();
    assert_eq!((stats.written, stats.failed), (1, 2));
}
