//! R6 (the last record cut at every byte offset) and R7 (a flipped bit in the tail record,
//! then in a sealed segment). R24 replaced R7's expectation for damage that is not a torn
//! tail: it is no longer an error but is skipped, set aside and reported; `damage.rs` tests
//! that across every byte class, these tests the cases R7 named.

use std::path::Path;

use dashflow_telemetry::{Event, RunIds, RunOutcome};
use dashflow_wal::{Damage, DamagedRange, Position, Wal};

use crate::common::*;

/// A WAL with one run of five records appended one by one; returns the run, its events, and
/// where the last record starts.
fn fixture(dir: &Path) -> (RunIds, Vec<Event>, usize) {
    let run = root();
    let events = whole_run(run, "g", 3);
    let mut wal = open(dir);
    let mut last = Position::START;
    for event in &events {
        last = wal.append(std::slice::from_ref(event)).unwrap()[0];
    }
    wal.close().unwrap();
    (run, events, last.offset as usize)
}

/// A copy of `fixture` whose only segment holds `bytes`, with or without its index.
fn damaged_copy(fixture: &Path, bytes: &[u8], keep_index: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(fixture, dir.path());
    std::fs::write(segment(dir.path(), 1), bytes).unwrap();
    if !keep_index {
        remove_index(dir.path());
    }
    dir
}

/// The recovered WAL holds exactly `expected` (segments and index agree) and takes appends.
fn assert_recovered_and_writable(mut wal: Wal, run: RunIds, expected: &[Event]) {
    assert_eq!(all_events(&wal), expected);
    assert_eq!(wal.run_events(run.run_id).unwrap(), expected);
    assert_eq!(wal.run(run.run_id).unwrap().unwrap().events, expected.len() as u64);
    let after = finished(run, RunOutcome::Failed, 3, Some("appended after recovery"));
    wal.append(std::slice::from_ref(&after)).unwrap();
    let dir = wal.dir().to_owned();
    drop(wal);
    let wal = open(&dir);
    let mut expected = expected.to_vec();
    expected.push(after);
    assert_eq!(all_events(&wal), expected);
    assert!(wal.verify().unwrap().is_clean());
}

#[test]
fn cutting_the_last_record_at_every_byte_offset_keeps_every_earlier_record_and_later_appends_work() {
    let fixture_dir = tempfile::tempdir().unwrap();
    let (run, events, last) = fixture(fixture_dir.path());
    let bytes = std::fs::read(segment(fixture_dir.path(), 1)).unwrap();
    for cut in last..bytes.len() {
        // Half the cuts keep the index (now ahead of the segment), half rebuild it.
        let dir = damaged_copy(fixture_dir.path(), &bytes[..cut], cut % 2 == 0);
        {
            let wal = open(dir.path());
            let recovery = wal.recovery();
            match &recovery.truncated {
                Some(torn) => {
                    assert!(cut > last, "cut {cut}: nothing was torn");
                    assert_eq!((torn.offset, torn.bytes), (last as u64, (cut - last) as u64), "cut {cut}");
                    assert!(torn.damage.is_truncation(), "cut {cut}: {:?}", torn.damage);
                }
                None => assert_eq!(cut, last, "cut {cut}: the torn tail was not reported"),
            }
            assert_eq!(std::fs::metadata(segment(dir.path(), 1)).unwrap().len(), last as u64, "cut {cut}");
            assert_recovered_and_writable(wal, run, &events[..4]);
        }
    }
}

#[test]
fn a_flipped_bit_anywhere_in_the_last_record_is_treated_as_a_torn_tail() {
    let fixture_dir = tempfile::tempdir().unwrap();
    let (run, events, last) = fixture(fixture_dir.path());
    let bytes = std::fs::read(segment(fixture_dir.path(), 1)).unwrap();
    for at in last..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 1 << (at % 8);
        // With the index kept, the index has seen the record: open checks it all the same.
        let dir = damaged_copy(fixture_dir.path(), &damaged, at % 2 == 0);
        {
            let wal = open(dir.path());
            let torn = wal.recovery().truncated.as_ref().unwrap_or_else(|| panic!("byte {at}: not cut"));
            assert_eq!(torn.offset, last as u64, "byte {at}");
            assert_recovered_and_writable(wal, run, &events[..4]);
        }
    }
}

/// Several sealed segments of small runs; returns the runs with their positions and events.
fn sealed_fixture(dir: &Path) -> Vec<(RunIds, Vec<Position>, Vec<Event>)> {
    let mut wal = Wal::open(dir, config().segment_size(400)).unwrap();
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let run = root();
            let events = whole_run(run, "g", 2);
            (run, wal.append(&events).unwrap(), events)
        })
        .collect();
    assert!(wal.end().segment >= 3);
    runs
}

#[test]
fn a_flipped_bit_in_a_sealed_segment_loses_only_that_record_and_is_reported_with_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let runs = sealed_fixture(dir.path());
    let (victim, positions, events) = &runs[0];
    let damaged_at = positions[1];
    assert_eq!(damaged_at.segment, 1);
    let path = segment(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[damaged_at.offset as usize + 20] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let mut expected = events.clone();
    expected.remove(1);

    let is_the_damage = |range: &DamagedRange| {
        range.segment == path
            && range.offset == damaged_at.offset
            && range.len == positions[2].offset - damaged_at.offset
            && range.records == Some(1)
            && matches!(range.damage, Damage::Checksum { .. })
    };
    // The index has the run: reading it skips the damaged record and reports it.
    let wal = Wal::open(dir.path(), config().segment_size(400)).unwrap();
    assert_eq!(wal.run_events(victim.run_id).unwrap(), expected);
    let damage = wal.damage();
    assert!(damage.len() == 1 && is_the_damage(&damage[0]), "{damage:?}");
    let message = damage[0].to_string();
    assert!(message.contains("00000000000000000001.wal") && message.contains(&format!("byte {}", damaged_at.offset)));
    // Other runs stay readable.
    assert_eq!(wal.run_events(runs[5].0.run_id).unwrap().len(), 4);
    // Verify lists it as lost data, not as a torn tail.
    let report = wal.verify().unwrap();
    assert!(report.damaged.len() == 1 && is_the_damage(&report.damaged[0]), "{report:?}");
    assert!(!report.damaged[0].torn_tail);
    drop(wal);
    // Rebuilding the index reads every segment, keeps every other record and sets the damaged
    // one aside.
    remove_index(dir.path());
    let wal = Wal::open(dir.path(), config()).unwrap();
    let damaged = &wal.recovery().damaged;
    assert!(damaged.len() == 1 && is_the_damage(&damaged[0]), "{damaged:?}");
    let copy = damaged[0].quarantined.clone().unwrap();
    let range = damaged_at.offset as usize..positions[2].offset as usize;
    assert_eq!(std::fs::read(copy).unwrap(), bytes[range]);
    assert_eq!(wal.run_events(victim.run_id).unwrap(), expected);
    assert_eq!(wal.run(victim.run_id).unwrap().unwrap().events, 3);
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "a sealed segment is not changed by opening");
}

#[test]
fn damage_followed_by_intact_records_in_the_last_segment_keeps_them_and_appends_go_to_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let run = root();
    let events = whole_run(run, "g", 3);
    let positions = open(dir.path()).append(&events).unwrap();
    let path = segment(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[positions[2].offset as usize + 30] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let mut wal = Wal::open(dir.path(), config()).unwrap();
    let recovery = wal.recovery().clone();
    assert_eq!(recovery.truncated, None, "nothing is cut");
    assert_eq!(recovery.damaged.len(), 1, "{recovery:?}");
    assert_eq!(recovery.damaged[0].offset, positions[2].offset);
    assert_eq!(recovery.new_segment, Some(2));
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
    let mut expected = events.clone();
    expected.remove(2);
    assert_eq!(wal.run_events(run.run_id).unwrap(), expected);
    let after = finished(run, RunOutcome::Failed, 3, Some("after the damage"));
    assert_eq!(wal.append(std::slice::from_ref(&after)).unwrap()[0], Position::new(2, 0));
    expected.push(after);
    assert_eq!(all_events(&wal), expected);
}

#[test]
fn a_truncated_sealed_segment_is_reported_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    sealed_fixture(dir.path());
    let path = segment(dir.path(), 2);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 5).unwrap();
    remove_index(dir.path());
    let wal = Wal::open(dir.path(), config()).unwrap();
    let damaged = &wal.recovery().damaged;
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert!(damaged[0].segment == path && damaged[0].damage.is_truncation() && !damaged[0].torn_tail);
    assert_eq!(damaged[0].offset + damaged[0].len, len - 5, "the damage runs to the segment's end");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len - 5, "a sealed segment is never cut");
}
