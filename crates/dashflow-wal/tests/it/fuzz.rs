//! R12: arbitrary bytes into the record reader, and into segment files that are then opened:
//! no panic, bounded memory.

use std::io::Cursor;

use dashflow_wal::__private::{Decoded, ReadStep, RecordReader, decode_frame, decode_payload};
use dashflow_wal::{Position, Wal};
use proptest::prelude::*;

use crate::common::*;

const MAX_RECORD: u32 = 4096;

/// The tags of records with a binary body.
const BINARY_TAGS: [u8; 4] = [
    dashflow_wal::__private::TAG_EVENT_BIN,
    dashflow_wal::__private::TAG_RUN_EVENTS,
    dashflow_wal::__private::TAG_GRAPH,
    dashflow_wal::__private::TAG_SCHEMA,
];

/// Bytes that are mostly garbage, sometimes with intact frames and plausible headers mixed in,
/// so the reader gets past the first header often enough to be exercised.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let chunk = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<u8>(), 1..200).prop_map(|payload| {
            let mut out = Vec::new();
            dashflow_wal::__private::encode_frame(&payload, &mut out);
            out
        }),
        (any::<u32>(), any::<u32>()).prop_map(|(len, crc)| [len.to_le_bytes(), crc.to_le_bytes()].concat()),
        (0u32..300, any::<u32>()).prop_map(|(len, crc)| [len.to_le_bytes(), crc.to_le_bytes()].concat()),
        Just(vec![0; 16]),
        // Framed binary event, run block, graph and schema records with a garbled body, so
        // the decoders see plausible tags, flags, ids and lengths.
        (prop::sample::select(BINARY_TAGS.to_vec()), prop::collection::vec(any::<u8>(), 0..120)).prop_map(
            |(tag, body)| {
                let mut out = Vec::new();
                dashflow_wal::__private::encode_frame(&[&[tag][..], &body].concat(), &mut out);
                out
            }
        ),
    ];
    prop::collection::vec(chunk, 0..12).prop_map(|chunks| chunks.concat())
}

/// A real binary event, graph or schema record with some bytes changed, cut or added.
fn mutated_binary_record() -> impl Strategy<Value = Vec<u8>> {
    let graph = (".{0,12}", any::<u64>()).prop_map(|(graph, secs)| {
        let schema = serde_json::json!({ "nodes": [graph.clone()] });
        let key = dashflow_wal::__private::encode_schema(&schema, &mut Vec::new());
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs % (1 << 40));
        let record = dashflow_wal::__private::GraphRecord::new(root(), at, graph.into(), key);
        let mut payload = Vec::new();
        assert!(dashflow_wal::__private::encode_graph(&record, &mut payload));
        payload
    });
    let schema = ".{0,40}".prop_map(|name| {
        let mut payload = Vec::new();
        dashflow_wal::__private::encode_schema(&serde_json::json!({ "nodes": [name] }), &mut payload);
        payload
    });
    let event =
        (0u64..1000, ".{0,12}", prop::option::of(".{0,12}"), any::<u32>()).prop_map(|(step, node, error, attempt)| {
            let kind = dashflow_telemetry::EventKind::TaskFinished {
                step,
                node: node.as_str().into(),
                attempt,
                duration: std::time::Duration::from_micros(step),
                error,
            };
            let mut payload = Vec::new();
            dashflow_wal::__private::encode_event(&dashflow_telemetry::Event::now(root(), kind), &mut payload).unwrap();
            payload
        });
    (
        prop_oneof![event, graph, schema],
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
        0usize..3,
    )
        .prop_map(|(mut payload, changes, cut, mode)| {
            for (at, byte) in changes {
                let i = at.index(payload.len());
                payload[i] = byte;
            }
            match mode {
                0 => payload.truncate(cut.index(payload.len()).max(1)),
                1 => payload.extend_from_slice(&[0x80; 9]),
                _ => {}
            }
            payload
        })
}

proptest! {
    #[test]
    fn decoding_mutated_binary_event_records_never_panics(payload in mutated_binary_record()) {
        let _ = decode_payload(&payload);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in hostile_bytes()) {
        match decode_frame(&bytes, MAX_RECORD) {
            Decoded::Record(payload) => {
                prop_assert!(payload.len() <= MAX_RECORD as usize);
                let _ = decode_payload(payload);
            }
            Decoded::End => prop_assert!(bytes.is_empty()),
            Decoded::Damaged(_) => {}
        }
    }

    #[test]
    fn reading_arbitrary_bytes_terminates_without_panicking_in_bounded_memory(bytes in hostile_bytes()) {
        let mut reader = RecordReader::new(Cursor::new(&bytes), 0, bytes.len() as u64, MAX_RECORD);
        // Every record consumes at least one header, and every damaged range ends at a record
        // (or at the end): at most one range per record.
        let mut steps = 0;
        loop {
            steps += 1;
            prop_assert!(steps <= bytes.len() / 4 + 2, "the reader does not advance");
            match reader.next_record().unwrap() {
                ReadStep::Record { payload, .. } => {
                    let _ = decode_payload(payload);
                }
                ReadStep::Damaged { offset, len, .. } => prop_assert!(len > 0 && offset + len <= bytes.len() as u64),
                ReadStep::End => break,
            }
        }
        prop_assert!(reader.buffer_capacity() <= MAX_RECORD as usize);
        prop_assert!(reader.offset() <= bytes.len() as u64);
    }
}

proptest! {
    // Each case opens an SQLite index: fewer, larger cases.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_last_segment_ending_in_arbitrary_bytes_keeps_every_intact_record(tail in hostile_bytes()) {
        let dir = tempfile::tempdir().unwrap();
        let events = whole_run(root(), "g", 2);
        open(dir.path()).append(&events).unwrap();
        append_bytes(&segment(dir.path(), 1), &tail);
        // Damage is never a reason to refuse the log (R24).
        let mut wal = Wal::open(dir.path(), config().max_record_size(MAX_RECORD)).unwrap();
        let read = all_events(&wal);
        prop_assert_eq!(&read[..events.len()], &events[..]);
        wal.append(&[task(root(), 1, "after")]).unwrap();
        prop_assert_eq!(all_events(&wal).len(), read.len() + 1);
    }

    #[test]
    fn a_sealed_segment_of_arbitrary_bytes_is_read_around_its_damage(bytes in hostile_bytes()) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segment(dir.path(), 1), &bytes).unwrap();
        std::fs::write(segment(dir.path(), 2), b"").unwrap();
        let mut wal = Wal::open(dir.path(), config().max_record_size(MAX_RECORD)).unwrap();
        let report = wal.verify().unwrap();
        let mut follower = wal.follow(Position::START);
        follower.poll(usize::MAX).unwrap();
        prop_assert_eq!(follower.take_damage().len(), report.damaged.len());
        wal.repair().unwrap();
        prop_assert!(wal.verify().unwrap().damaged.is_empty());
        prop_assert_eq!(wal.verify().unwrap().records, report.records);
    }
}
