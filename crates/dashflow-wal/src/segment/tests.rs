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
            ReadStep::Damaged { offset, len, damage, records, to_end } => {
                steps.push(format!("{offset}+{len}:{damage:?}:{records:?}:{to_end}"));
            }
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
    assert!(steps[1].starts_with("9+10:Checksum"), "{steps:?}");
    assert!(steps[1].ends_with(":Some(1):false"), "{steps:?}");
    assert_eq!(steps[2], "19:ccc");
}

#[test]
fn the_reader_resynchronises_after_damage_that_loses_the_frame_boundary() {
    let mut bytes = frames(&[b"a", b"bb"]);
    bytes.extend_from_slice(&[0; 16]);
    bytes.extend(frames(&[b"after zeros"]));
    assert_eq!(
        read_all(&bytes, DEFAULT_MAX_RECORD_SIZE),
        ["0:a", "9:bb", "19+16:ZeroLength:None:false", "35:after zeros"]
    );
}

#[test]
fn a_flipped_length_bit_loses_only_its_record_and_counts_it() {
    for bit in 0..32 {
        let mut bytes = frames(&[b"first", b"second record", b"third"]);
        let at = 13 + bit / 8;
        bytes[at] ^= 1 << (bit % 8);
        let steps = read_all(&bytes, 1024);
        assert_eq!(steps.len(), 3, "bit {bit}: {steps:?}");
        assert_eq!(steps[0], "0:first", "bit {bit}");
        assert!(steps[1].starts_with("13+21:"), "bit {bit}: {steps:?}");
        // The payload still matches the stored checksum: exactly one record was lost.
        assert!(steps[1].ends_with(":Some(1):false"), "bit {bit}: {steps:?}");
        assert_eq!(steps[2], "34:third", "bit {bit}");
    }
}

#[test]
fn damage_with_nothing_intact_after_it_runs_to_the_end() {
    let mut bytes = frames(&[b"a", b"bb"]);
    let len = bytes.len();
    bytes[len - 1] ^= 0x01;
    let steps = read_all(&bytes, DEFAULT_MAX_RECORD_SIZE);
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert!(steps[1].starts_with("9+10:Checksum") && steps[1].ends_with(":Some(1):true"), "{steps:?}");
}

#[test]
fn a_frame_inside_a_damaged_payload_is_found_only_if_its_checksum_matches() {
    // A payload that holds bytes looking like a header with a plausible length but a wrong
    // checksum: the reader does not stop there.
    let mut inner = 4u32.to_le_bytes().to_vec();
    inner.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
    inner.extend_from_slice(b"abcd");
    let mut bytes = frames(&[b"a", &inner, b"after"]);
    bytes[9] ^= 0x80; // the second frame's length
    let steps = read_all(&bytes, 1024);
    assert_eq!(steps[2], format!("{}:after", 9 + HEADER_LEN + inner.len()), "{steps:?}");
    assert_eq!(steps.len(), 3, "{steps:?}");
}

#[test]
fn a_cut_inside_a_record_loses_only_that_record() {
    let bytes = frames(&[b"one", b"the second record", b"three"]);
    // Bytes 20..25 of the second record's payload are gone.
    let cut: Vec<u8> = [&bytes[..20], &bytes[25..]].concat();
    let steps = read_all(&cut, 1024);
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert_eq!(steps[0], "0:one");
    assert!(steps[1].starts_with("11+20:"), "{steps:?}");
    assert_eq!(steps[2], "31:three");
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
