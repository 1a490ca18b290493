//! R8: hostile length fields (huge, zero-filled tail, truncated header): no huge allocation,
//! no panic.

use std::io::Cursor;
use std::path::Path;

use dashflow_wal::__private::{ReadStep, RecordReader};
use dashflow_wal::{Damage, Wal};

use crate::common::*;

/// A WAL with one whole run; returns its events and the segment's length.
fn one_run(dir: &Path) -> (dashflow_telemetry::RunIds, Vec<dashflow_telemetry::Event>, u64) {
    let run = root();
    let events = whole_run(run, "g", 2);
    open(dir).append(&events).unwrap();
    (run, events, std::fs::metadata(segment(dir, 1)).unwrap().len())
}

fn header(len: u32, crc: u32) -> Vec<u8> {
    [len.to_le_bytes(), crc.to_le_bytes()].concat()
}

/// Appends `tail` to the only segment, reopens, and checks the tail was cut as `damage`.
fn assert_tail_is_cut(tail: &[u8], expect: impl Fn(&Damage) -> bool) {
    let dir = tempfile::tempdir().unwrap();
    let (run, events, len) = one_run(dir.path());
    append_bytes(&segment(dir.path(), 1), tail);
    let mut wal = open(dir.path());
    let torn = wal.recovery().truncated.clone().expect("the tail is cut");
    assert_eq!((torn.offset, torn.bytes), (len, tail.len() as u64));
    assert!(expect(&torn.damage), "{:?}", torn.damage);
    assert_eq!(std::fs::metadata(segment(dir.path(), 1)).unwrap().len(), len);
    assert_eq!(wal.run_events(run.run_id).unwrap(), events);
    wal.append(&[task(run, 9, "later")]).unwrap();
    assert_eq!(all_events(&wal).len(), events.len() + 1);
}

#[test]
fn a_length_of_u32_max_at_the_tail_is_cut_without_allocating_it() {
    let mut tail = header(u32::MAX, 0xDEAD_BEEF);
    tail.extend_from_slice(b"a few bytes");
    assert_tail_is_cut(&tail, |d| matches!(d, Damage::TooLarge { len: u32::MAX, .. }));
}

#[test]
fn a_length_within_the_maximum_but_past_the_end_of_the_file_is_a_torn_tail() {
    let mut tail = header(1000, 0);
    tail.extend_from_slice(&[1; 10]);
    assert_tail_is_cut(&tail, |d| matches!(d, Damage::TruncatedPayload { len: 1000, available: 10 }));
}

#[test]
fn a_zero_filled_tail_is_a_torn_tail() {
    // Preallocated space, or data blocks a crash left unwritten.
    assert_tail_is_cut(&[0; 4096], |d| *d == Damage::ZeroLength);
}

#[test]
fn a_truncated_header_is_a_torn_tail() {
    for len in 1..8 {
        assert_tail_is_cut(&header(12, 0)[..len], |d| matches!(d, Damage::TruncatedHeader { .. }));
    }
}

#[test]
fn a_length_above_the_maximum_record_size_in_a_sealed_segment_is_set_aside_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (run, events, len) = one_run(dir.path());
    // A length of 2 KiB, with 2 KiB of bytes behind it, against a maximum of 1 KiB.
    let mut hostile = header(2048, 0);
    hostile.extend_from_slice(&[7; 2048]);
    append_bytes(&segment(dir.path(), 1), &hostile);
    std::fs::write(segment(dir.path(), 2), b"").unwrap();
    remove_index(dir.path());
    let wal = Wal::open(dir.path(), config().max_record_size(1024)).unwrap();
    let damaged = &wal.recovery().damaged;
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    let range = &damaged[0];
    assert_eq!((range.offset, range.len, range.torn_tail), (len, hostile.len() as u64, false));
    assert!(matches!(range.damage, Damage::TooLarge { len: 2048, max: 1024 }), "{range:?}");
    let copy = range.quarantined.as_ref().expect("a writer keeps the bytes aside");
    assert_eq!(std::fs::read(copy).unwrap(), hostile);
    assert_eq!(wal.run_events(run.run_id).unwrap(), events);
}

#[test]
fn the_reader_never_holds_more_than_the_largest_record_it_returned() {
    let events = whole_run(root(), "g", 3);
    let mut bytes = frames(&events);
    let largest = bytes.len(); // an upper bound on any one record
    bytes.extend(header(u32::MAX, 0));
    bytes.extend(header(100_000_000, 0));
    let mut reader = RecordReader::new(Cursor::new(&bytes), 0, bytes.len() as u64, 16 << 20);
    let mut records = 0;
    loop {
        match reader.next_record().unwrap() {
            ReadStep::Record { .. } => records += 1,
            ReadStep::Damaged { damage, .. } => {
                assert!(matches!(damage, Damage::TooLarge { .. }));
            }
            ReadStep::End => break,
        }
    }
    assert_eq!(records, events.len());
    assert!(reader.buffer_capacity() <= largest, "{} bytes held", reader.buffer_capacity());
}
