use std::io::Cursor;

use super::*;
use crate::frame::{DEFAULT_MAX_RECORD_SIZE, encode};

fn frames(payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for payload in payloads {
        encode(payload, &mut out);
    }
    out
}

fn read_all(bytes: &[u8], max: u32) -> Vec<String> {
    let mut reader = RecordReader::new(Cursor::new(bytes), 0, bytes.len() as u64, max);
    let mut steps = Vec::new();
    loop {
        match reader.next_record().unwrap() {
            ReadStep::Record { offset, payload } => {
                steps.push(format!("{offset}:{}", String::from_utf8_lossy(payload)));
            }
            ReadStep::End => return steps,
            ReadStep::Damaged { offset, damage } => steps.push(format!("{offset}:{damage:?}")),
        }
    }
}

#[test]
fn segment_names_are_twenty_digit_sequence_numbers_that_parse_back() {
    assert_eq!(segment_file_name(1), "00000000000000000001.wal");
    assert_eq!(segment_file_name(u64::MAX), "18446744073709551615.wal");
    for seq in [0, 1, 42, u64::MAX] {
        assert_eq!(parse_segment_name(&segment_file_name(seq)), Some(seq));
    }
}

#[test]
fn other_files_are_not_segments() {
    for name in [
        "LOCK",
        "index.sqlite",
        "1.wal",
        "0000000000000000001.wal",
        "000000000000000000001.wal",
        "00000000000000000001.wal.tmp",
        "0000000000000000000x.wal",
        "+0000000000000000001.wal",
    ] {
        assert_eq!(parse_segment_name(name), None, "{name}");
    }
}

#[test]
fn listing_sorts_segments_numerically_and_ignores_other_files() {
    let dir = tempfile::tempdir().unwrap();
    for seq in [10, 2, 1] {
        std::fs::write(segment_path(dir.path(), seq), b"").unwrap();
    }
    std::fs::write(dir.path().join("LOCK"), b"").unwrap();
    std::fs::create_dir(dir.path().join("compact.tmp")).unwrap();
    assert_eq!(list_segments(dir.path()).unwrap(), vec![1, 2, 10]);
}

#[test]
fn positions_order_by_segment_then_offset() {
    assert!(Position::new(1, 500) < Position::new(2, 0));
    assert!(Position::new(2, 8) < Position::new(2, 9));
    assert!(Position::START <= Position::new(0, 0));
    assert_eq!(Position::new(3, 17).to_string(), "3:17");
}

#[test]
fn the_reader_returns_every_record_with_its_offset_then_the_end() {
    let bytes = frames(&[b"a", b"bb", b"ccc"]);
    assert_eq!(read_all(&bytes, DEFAULT_MAX_RECORD_SIZE), ["0:a", "9:bb", "19:ccc"]);
}

#[test]
fn the_reader_goes_on_after_a_checksum_mismatch() {
    let mut bytes = frames(&[b"a", b"bb", b"ccc"]);
    bytes[9 + HEADER_LEN] ^= 0x01;
    let steps = read_all(&bytes, DEFAULT_MAX_RECORD_SIZE);
    assert_eq!(steps.len(), 3);
    assert!(steps[1].starts_with("9:Checksum"), "{steps:?}");
    assert_eq!(steps[2], "19:ccc");
}

#[test]
fn the_reader_stops_after_damage_that_loses_the_frame_boundary() {
    let mut bytes = frames(&[b"a", b"bb"]);
    bytes.extend_from_slice(&[0; 16]);
    bytes.extend(frames(&[b"after zeros"]));
    assert_eq!(read_all(&bytes, DEFAULT_MAX_RECORD_SIZE), ["0:a", "9:bb", "19:ZeroLength"]);
}

#[test]
fn the_reader_starting_mid_file_reads_from_there() {
    let bytes = frames(&[b"a", b"bb"]);
    let mut reader = RecordReader::new(Cursor::new(&bytes[9..]), 9, bytes.len() as u64, DEFAULT_MAX_RECORD_SIZE);
    assert_eq!(reader.next_record().unwrap(), ReadStep::Record { offset: 9, payload: b"bb" });
    assert_eq!(reader.offset(), 19);
    assert_eq!(reader.next_record().unwrap(), ReadStep::End);
}

#[test]
fn a_hostile_length_allocates_nothing() {
    let mut bytes = u32::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(&[0xEE; 1000]);
    let mut reader = RecordReader::new(Cursor::new(&bytes), 0, bytes.len() as u64, 512);
    assert!(matches!(reader.next_record().unwrap(), ReadStep::Damaged { damage: Damage::TooLarge { .. }, .. }));
    assert_eq!(reader.next_record().unwrap(), ReadStep::End);
    assert_eq!(reader.buffer_capacity(), 0);
}

#[test]
fn a_source_shorter_than_its_stated_length_reads_as_a_truncation() {
    // The file shrank between measuring and reading it.
    let bytes = frames(&[b"abcdef"]);
    let mut reader = RecordReader::new(Cursor::new(&bytes[..10]), 0, bytes.len() as u64, DEFAULT_MAX_RECORD_SIZE);
    assert!(matches!(reader.next_record().unwrap(), ReadStep::Damaged { damage: Damage::TruncatedPayload { .. }, .. }));
    assert_eq!(reader.next_record().unwrap(), ReadStep::End);
}

#[test]
fn opening_a_missing_segment_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(open_reader(dir.path(), 7, 0, DEFAULT_MAX_RECORD_SIZE).unwrap().is_none());
    assert_eq!(file_len(&segment_path(dir.path(), 7)).unwrap(), None);
}
