//! Graph schemas stored once per segment: each run's `GraphDefined` is a graph record naming
//! its schema by key, and the schema record is in the same segment, ahead of it. Every
//! reader resolves the key (from the start, from mid-segment, through the index or without
//! one, a segment alone), compaction keeps the schemas its kept runs need, and a schema
//! record that is damaged, undecodable or cut costs its runs only their graph definition,
//! reported, never a panic.

use std::collections::{BTreeMap, HashSet};
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use dashflow_telemetry::{Event, EventKind, RunIds};
use dashflow_wal::__private::{
    Payload, ReadStep, RecordReader, SchemaKey, TAG_GRAPH, TAG_SCHEMA, decode_payload, encode_frame,
};
use dashflow_wal::{
    EventStore, MissingSchema, Position, Retention, RunFilter, StoreConfig, Wal, WalConfig, verify_dir,
};
use serde_json::json;

use crate::common::*;

/// A schema of `nodes` nodes: a few hundred bytes of JSON, like a small graph's.
fn schema(name: &str, nodes: usize) -> Arc<serde_json::Value> {
    let names: Vec<String> = (0..nodes).map(|i| format!("{name}-node-{i}")).collect();
    let edges: Vec<[&String; 2]> = names.windows(2).map(|pair| [&pair[0], &pair[1]]).collect();
    Arc::new(json!({ "name": name, "nodes": names, "edges": edges }))
}

fn graph_defined(run: RunIds, graph: &str, schema: &Arc<serde_json::Value>) -> Event {
    Event::now(run, EventKind::GraphDefined { graph: graph.into(), schema: Arc::clone(schema) })
}

/// A whole run that starts with its graph's definition, as the executor sends it.
fn run_of(run: RunIds, graph: &str, schema: &Arc<serde_json::Value>, steps: u64) -> Vec<Event> {
    let mut events = vec![graph_defined(run, graph, schema)];
    events.extend(whole_run(run, graph, steps));
    events
}

/// One record of a segment, as stored.
#[derive(Debug)]
struct Stored {
    offset: u64,
    len: u64,
    tag: u8,
    payload: Vec<u8>,
}

/// The intact records of segment `seq`.
fn records(dir: &Path, seq: u64) -> Vec<Stored> {
    let bytes = std::fs::read(segment(dir, seq)).unwrap();
    let mut reader = RecordReader::new(Cursor::new(&bytes), 0, bytes.len() as u64, 1 << 24);
    let mut out = Vec::new();
    loop {
        match reader.next_record().unwrap() {
            ReadStep::Record { offset, payload } => {
                out.push(Stored { offset, len: 8 + payload.len() as u64, tag: payload[0], payload: payload.to_vec() })
            }
            ReadStep::Damaged { .. } => {}
            ReadStep::End => return out,
        }
    }
}

fn segments(dir: &Path) -> Vec<u64> {
    let mut seqs: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| entry.unwrap().file_name().to_str()?.strip_suffix(".wal")?.parse().ok())
        .collect();
    seqs.sort_unstable();
    seqs
}

fn key_of(stored: &Stored) -> SchemaKey {
    match decode_payload(&stored.payload).unwrap() {
        Payload::Schema(record) => record.key,
        Payload::Graph(record) => record.key,
        other => panic!("not a schema or graph record: {other:?}"),
    }
}

/// Checks the layout every writer and compaction keeps: in each segment, each graph record's
/// schema record comes before it, and no key twice (for a single writer). Returns how many
/// schema records there are.
fn assert_each_segment_holds_its_schemas_once(dir: &Path) -> usize {
    let mut schema_records = 0;
    for seq in segments(dir) {
        let mut held = Vec::new();
        for stored in records(dir, seq) {
            match stored.tag {
                TAG_SCHEMA => {
                    let key = key_of(&stored);
                    assert!(!held.contains(&key), "segment {seq} holds schema {key} twice");
                    held.push(key);
                    schema_records += 1;
                }
                TAG_GRAPH => {
                    let key = key_of(&stored);
                    assert!(held.contains(&key), "a graph record at {seq}:{} before its schema", stored.offset);
                }
                _ => {}
            }
        }
    }
    schema_records
}

/// The graph records of segment `seq`: the run each names.
fn graph_runs_in(dir: &Path, seq: u64) -> Vec<RunIds> {
    records(dir, seq)
        .iter()
        .filter(|stored| stored.tag == TAG_GRAPH)
        .map(|stored| match decode_payload(&stored.payload).unwrap() {
            Payload::Graph(record) => record.run,
            _ => unreachable!(),
        })
        .collect()
}

/// Writes `runs` runs alternating between two graphs, one append per run, into segments of
/// `segment_size` bytes. Returns each run with its events.
fn fixture(dir: &Path, segment_size: u64, runs: usize) -> Vec<(RunIds, Vec<Event>)> {
    let (a, b) = (schema("a", 12), schema("b", 7));
    let mut wal = Wal::open(dir, config().segment_size(segment_size)).unwrap();
    let written = (0..runs)
        .map(|i| {
            let run = root();
            let events = if i % 2 == 0 { run_of(run, "a", &a, 3) } else { run_of(run, "b", &b, 2) };
            wal.append(&events).unwrap();
            (run, events)
        })
        .collect();
    wal.close().unwrap();
    written
}

fn without_graph(events: &[Event]) -> Vec<Event> {
    events.iter().filter(|event| !matches!(event.kind, EventKind::GraphDefined { .. })).cloned().collect()
}

#[test]
fn each_segment_holds_each_schema_its_runs_name_once_ahead_of_them_and_readers_resolve_it() {
    let dir = tempfile::tempdir().unwrap();
    let written = fixture(dir.path(), 4 * 1024, 40);
    let seqs = segments(dir.path());
    assert!(seqs.len() >= 4, "{seqs:?}");
    let schema_records = assert_each_segment_holds_its_schemas_once(dir.path());
    // Two graphs, at most two schema records per segment: not one per run.
    assert!(schema_records <= 2 * seqs.len() && schema_records < written.len() / 2, "{schema_records}");

    let wal = Wal::open_read_only(dir.path(), config()).unwrap();
    for (run, events) in &written {
        assert_eq!(&wal.run_events(run.run_id).unwrap(), events);
    }
    let all: Vec<Event> = written.iter().flat_map(|(_, events)| events.clone()).collect();
    assert_eq!(all_events(&wal), all);
    assert!(wal.missing_schemas().is_empty() && wal.damage().is_empty());
    let report = verify_dir(dir.path(), &config()).unwrap();
    assert!(report.is_clean() && report.missing_schemas.is_empty(), "{report:?}");
}

#[test]
fn readers_that_start_after_the_schema_record_resolve_it_with_or_without_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let graph = schema("g", 20);
    let mut wal = open(dir.path());
    let (first, second) = (root(), root());
    wal.append(&run_of(first, "g", &graph, 2)).unwrap();
    let after_first = wal.end();
    let events = run_of(second, "g", &graph, 2);
    wal.append(&events).unwrap();
    drop(wal);
    // The second run's segment holds one schema record, the first run's.
    assert_eq!(records(dir.path(), 1).iter().filter(|stored| stored.tag == TAG_SCHEMA).count(), 1);

    let wal = Wal::open_read_only(dir.path(), config()).unwrap();
    let mut follower = wal.follow(after_first);
    let read: Vec<Event> = follower.poll(usize::MAX).unwrap().into_iter().map(|(_, event)| event).collect();
    assert_eq!(read, events);
    assert!(follower.take_missing_schemas().is_empty() && follower.take_damage().is_empty());
    assert_eq!(wal.run_events(second.run_id).unwrap(), events);
    drop(wal);

    // A rebuilt index, and a reader that finds no note of the schema in it.
    remove_index(dir.path());
    let wal = open(dir.path());
    assert!(wal.recovery().rebuilt);
    assert_eq!(wal.run_events(second.run_id).unwrap(), events);
    assert_eq!(wal.trace(second.run_id).unwrap().unwrap().graph.as_deref(), Some("g"));
    assert!(wal.missing_schemas().is_empty());
}

#[test]
fn a_segment_read_alone_holds_every_schema_its_runs_name() {
    let dir = tempfile::tempdir().unwrap();
    let written = fixture(dir.path(), 4 * 1024, 40);
    let seqs = segments(dir.path());
    let middle = seqs[seqs.len() / 2];
    let runs_there: HashSet<RunIds> = graph_runs_in(dir.path(), middle).into_iter().collect();
    assert!(!runs_there.is_empty());

    let alone = tempfile::tempdir().unwrap();
    std::fs::copy(segment(dir.path(), middle), segment(alone.path(), 1)).unwrap();
    let mut follower = dashflow_wal::Follower::new(alone.path(), Position::START, 1 << 24);
    let read = follower.poll(usize::MAX).unwrap();
    assert!(follower.take_missing_schemas().is_empty());
    let defined: Vec<&Event> =
        read.iter().map(|(_, event)| event).filter(|e| matches!(e.kind, EventKind::GraphDefined { .. })).collect();
    assert_eq!(defined.len(), runs_there.len());
    for event in defined {
        let (_, events) = written.iter().find(|(run, _)| *run == event.run).unwrap();
        assert_eq!(event, &events[0]);
    }
}

/// Where segment `seq`'s first schema record is, and the runs whose graph records there name it.
fn first_schema_in(dir: &Path, seq: u64) -> (Stored, Vec<RunIds>) {
    let stored = records(dir, seq);
    let schema = stored.into_iter().find(|stored| stored.tag == TAG_SCHEMA).unwrap();
    let key = key_of(&schema);
    let runs = records(dir, seq)
        .into_iter()
        .filter(|stored| stored.tag == TAG_GRAPH && key_of(stored) == key)
        .map(|stored| match decode_payload(&stored.payload).unwrap() {
            Payload::Graph(record) => record.run,
            _ => unreachable!(),
        })
        .collect();
    (schema, runs)
}

/// Checks what every reader says when the runs `lost` lost their graph definition and nothing
/// else: their events less `GraphDefined`, every other run whole, each loss reported.
fn assert_only_graph_definitions_lost(dir: &Path, written: &[(RunIds, Vec<Event>)], lost: &[RunIds]) {
    let lost_ids: BTreeMap<_, _> = lost.iter().map(|run| (run.run_id, ())).collect();
    let expected = |run: &RunIds, events: &[Event]| {
        if lost_ids.contains_key(&run.run_id) { without_graph(events) } else { events.to_vec() }
    };
    let wal = Wal::open_read_only(dir, config()).unwrap();
    for (run, events) in written {
        assert_eq!(wal.run_events(run.run_id).unwrap(), expected(run, events), "run {}", run.run_id);
    }
    let reported: BTreeMap<_, _> = wal.missing_schemas().into_iter().map(|m| (m.run.run_id, m)).collect();
    assert_eq!(reported.keys().collect::<Vec<_>>(), lost_ids.keys().collect::<Vec<_>>());

    let mut follower = wal.follow(Position::START);
    let read: Vec<Event> = follower.poll(usize::MAX).unwrap().into_iter().map(|(_, event)| event).collect();
    let all: Vec<Event> = written.iter().flat_map(|(run, events)| expected(run, events)).collect();
    assert_eq!(read, all);
    let followed: Vec<MissingSchema> = follower.take_missing_schemas();
    assert_eq!(followed.len(), lost.len());
    for missing in &followed {
        assert!(lost_ids.contains_key(&missing.run.run_id));
        assert_eq!(missing, &reported[&missing.run.run_id]);
        let text = missing.to_string();
        assert!(text.contains(&missing.run.run_id.to_string()) && text.contains("is lost"), "{text}");
    }
    let report = verify_dir(dir, &config()).unwrap();
    assert_eq!(report.missing_schemas.len(), lost.len(), "{report:?}");
}

#[test]
fn a_changed_byte_in_a_schema_record_costs_its_runs_only_their_graph_definition() {
    let dir = tempfile::tempdir().unwrap();
    let written = fixture(dir.path(), 4 * 1024, 40);
    let (schema, lost) = first_schema_in(dir.path(), 2);
    assert!(!lost.is_empty());
    let path = segment(dir.path(), 2);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(schema.offset + schema.len / 2) as usize] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();

    assert_only_graph_definitions_lost(dir.path(), &written, &lost);
    let report = verify_dir(dir.path(), &config()).unwrap();
    assert_eq!(report.damaged.len(), 1);
    assert_eq!((report.damaged[0].offset, report.damaged[0].records), (schema.offset, Some(1)));
    assert!(!report.is_clean());

    // Repair sets the damage aside and writes the schema back from a segment that holds it.
    let mut wal = open(dir.path());
    let repaired = wal.repair().unwrap();
    assert_eq!((repaired.damaged.len(), repaired.schemas_restored), (1, 1));
    drop(wal);
    assert_only_graph_definitions_lost(dir.path(), &written, &[]);
    assert!(verify_dir(dir.path(), &config()).unwrap().is_clean());
    assert_each_segment_holds_its_schemas_once(dir.path());
}

#[test]
fn a_damaged_schema_record_no_other_segment_holds_costs_its_runs_their_graph_definition_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = fixture(dir.path(), 4 * 1024, 20);
    // A graph that only one run in one segment uses.
    let rare = schema("rare", 9);
    let run = root();
    let events = run_of(run, "rare", &rare, 1);
    let mut wal = Wal::open(dir.path(), config().segment_size(4 * 1024)).unwrap();
    wal.append(&events).unwrap();
    written.push((run, events));
    let seq = wal.end().segment;
    // More runs after it, so its segment is sealed.
    while wal.end().segment == seq {
        let other = root();
        let events = run_of(other, "b", &schema("b", 7), 2);
        wal.append(&events).unwrap();
        written.push((other, events));
    }
    drop(wal);
    let stored = records(dir.path(), seq);
    let rare_key = SchemaKey::of(serde_json::to_string(&*rare).unwrap().as_bytes());
    let record = stored.iter().find(|s| s.tag == TAG_SCHEMA && key_of(s) == rare_key).unwrap();
    let path = segment(dir.path(), seq);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(record.offset + record.len - 3) as usize] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    assert_only_graph_definitions_lost(dir.path(), &written, &[run]);

    let mut wal = open(dir.path());
    let repaired = wal.repair().unwrap();
    assert_eq!((repaired.damaged.len(), repaired.schemas_restored), (1, 0));
    drop(wal);
    assert_only_graph_definitions_lost(dir.path(), &written, &[run]);
    let report = verify_dir(dir.path(), &config()).unwrap();
    assert!(report.is_clean() && report.missing_schemas.len() == 1, "{report:?}");
}

#[test]
fn a_schema_record_that_checks_out_but_does_not_match_its_key_is_undecodable_and_costs_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let written = fixture(dir.path(), 4 * 1024, 40);
    let (schema, lost) = first_schema_in(dir.path(), 3);
    // The text changed and the frame's checksum made to match: only the key tells.
    let mut payload = schema.payload.clone();
    let at = payload.iter().rposition(|&b| b == b'-').unwrap();
    payload[at] = b'_';
    let mut frame = Vec::new();
    encode_frame(&payload, &mut frame);
    let path = segment(dir.path(), 3);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.splice(schema.offset as usize..(schema.offset + schema.len) as usize, frame);
    std::fs::write(&path, &bytes).unwrap();

    assert_only_graph_definitions_lost(dir.path(), &written, &lost);
    let report = verify_dir(dir.path(), &config()).unwrap();
    assert_eq!(report.undecodable.len(), 1);
    assert_eq!(report.undecodable[0].offset, schema.offset);
}

#[test]
fn a_segment_whose_schema_record_was_cut_reads_without_those_graph_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let written = fixture(dir.path(), 4 * 1024, 40);
    let (schema, lost) = first_schema_in(dir.path(), 2);
    let path = segment(dir.path(), 2);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.drain(schema.offset as usize..(schema.offset + schema.len) as usize);
    std::fs::write(&path, &bytes).unwrap();
    // The index's positions of segment 2 moved: rebuild it, as `wal repair` would.
    remove_index(dir.path());
    drop(open(dir.path()));

    assert_only_graph_definitions_lost(dir.path(), &written, &lost);
    let report = verify_dir(dir.path(), &config()).unwrap();
    assert!(report.is_clean(), "no damage: the record is gone, not damaged");
}

#[test]
fn compaction_keeps_the_schema_records_its_kept_runs_need_and_no_others() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (schema("a", 12), schema("b", 7));
    let mut written = Vec::new();
    {
        let mut wal = Wal::open(dir.path(), config().segment_size(2 * 1024)).unwrap();
        for i in 0..30 {
            let run = root();
            // Graph b only in the first runs: its schema goes with them.
            let events = if i < 4 && i % 2 == 1 { run_of(run, "b", &b, 1) } else { run_of(run, "a", &a, 2) };
            wal.append(&events).unwrap();
            written.push((run, events));
        }
    }
    // Retention takes the first two segments.
    let removed: HashSet<RunIds> = [1, 2].iter().flat_map(|&seq| records_runs(dir.path(), seq)).collect::<HashSet<_>>();
    std::fs::remove_file(segment(dir.path(), 1)).unwrap();
    std::fs::remove_file(segment(dir.path(), 2)).unwrap();
    // Bigger segments now, so compaction merges.
    let mut wal = Wal::open(dir.path(), config().segment_size(16 * 1024)).unwrap();
    let report = wal.compact().unwrap();
    assert!(report.segments_after < report.segments_before, "{report:?}");
    assert!(report.schemas_after < report.schemas_before, "{report:?}");
    let schema_records = assert_each_segment_holds_its_schemas_once(dir.path());
    // The active segment is left as it was.
    let active = *segments(dir.path()).last().unwrap();
    let in_active = records(dir.path(), active).iter().filter(|stored| stored.tag == TAG_SCHEMA).count();
    assert_eq!((schema_records - in_active) as u64, report.schemas_after);
    // Every kept run reads whole; graph b's schema is gone with its runs.
    let kept: Vec<&(RunIds, Vec<Event>)> = written.iter().filter(|(run, _)| !removed.contains(run)).collect();
    for (run, events) in &kept {
        if let Some(summary) = wal.run(run.run_id).unwrap() {
            assert_eq!(&wal.run_events(summary.ids.run_id).unwrap(), events);
        }
    }
    let b_key = SchemaKey::of(serde_json::to_string(&*b).unwrap().as_bytes());
    for seq in segments(dir.path()) {
        assert!(records(dir.path(), seq).iter().all(|s| s.tag != TAG_SCHEMA || key_of(s) != b_key));
    }
    assert!(wal.missing_schemas().is_empty());
    let verified = wal.verify().unwrap();
    assert!(verified.is_clean() && verified.missing_schemas.is_empty(), "{verified:?}");
}

/// The runs with any record in segment `seq`.
fn records_runs(dir: &Path, seq: u64) -> Vec<RunIds> {
    records(dir, seq)
        .iter()
        .filter_map(|stored| match decode_payload(&stored.payload).unwrap() {
            Payload::Graph(record) => Some(record.run),
            Payload::Event(event) => Some(event.run),
            _ => None,
        })
        .collect()
}

#[test]
fn compaction_gives_a_segment_that_lost_its_schema_record_the_one_another_segment_holds() {
    let dir = tempfile::tempdir().unwrap();
    let written = fixture(dir.path(), 4 * 1024, 40);
    let (schema, lost) = first_schema_in(dir.path(), 2);
    let path = segment(dir.path(), 2);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(schema.offset + schema.len / 2) as usize] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    assert_only_graph_definitions_lost(dir.path(), &written, &lost);

    let mut wal = open(dir.path());
    let report = wal.compact().unwrap();
    assert_eq!(report.damaged_ranges, 1);
    drop(wal);
    assert_only_graph_definitions_lost(dir.path(), &written, &[]);
    assert_each_segment_holds_its_schemas_once(dir.path());
}

#[test]
fn two_writers_sharing_a_directory_each_make_sure_a_segment_holds_the_schemas_its_runs_name() {
    let dir = tempfile::tempdir().unwrap();
    let graph = schema("g", 10);
    let mut a = Wal::open(dir.path(), config().segment_size(3 * 1024)).unwrap();
    let mut b = Wal::open(dir.path(), config().segment_size(3 * 1024)).unwrap();
    let mut written = Vec::new();
    for i in 0..30 {
        let run = root();
        let events = run_of(run, "g", &graph, 2);
        if i % 3 == 0 {
            b.append(&events).unwrap()
        } else {
            a.append(&events).unwrap()
        };
        written.push((run, events));
    }
    drop((a, b));
    assert!(segments(dir.path()).len() > 3);
    assert_only_graph_definitions_lost(dir.path(), &written, &[]);
}

#[test]
fn a_log_with_graph_definitions_inline_as_earlier_versions_wrote_them_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let run = root();
    let events = run_of(run, "g", &schema("g", 5), 2);
    append_bytes(&segment(dir.path(), 1), &frames(&events));
    let wal = open(dir.path());
    assert_eq!(wal.run_events(run.run_id).unwrap(), events);
    assert_eq!(all_events(&wal), events);
    // Compaction keeps them as they are.
    assert_eq!(wal.verify().unwrap().missing_schemas, Vec::new());
}

#[test]
fn a_schema_larger_than_the_maximum_record_size_costs_its_runs_only_their_graph_definition() {
    let dir = tempfile::tempdir().unwrap();
    let small = config().max_record_size(512);
    let mut wal = Wal::open(dir.path(), small.clone()).unwrap();
    let run = root();
    let events = run_of(run, "big", &schema("big", 40), 2);
    wal.append(&events).unwrap();
    assert_eq!(wal.run_events(run.run_id).unwrap(), without_graph(&events));
    assert_eq!(wal.missing_schemas().len(), 1);
    assert_eq!(wal.list_runs(&RunFilter::all()).unwrap()[0].events, events.len() as u64);
}

#[test]
fn the_event_store_writes_each_schema_once_per_segment_and_its_runs_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let graph = schema("g", 60);
    let schema_len = serde_json::to_vec(&*graph).unwrap().len() as u64;
    let config = StoreConfig::default().wal(WalConfig::default().retention(Retention::KEEP_ALL));
    let store = EventStore::open(dir.path(), config).unwrap();
    let mut written = Vec::new();
    for _ in 0..50 {
        let run = root();
        let events = run_of(run, "g", &graph, 3);
        store.send_batch(events.clone());
        written.push((run, events));
    }
    store.flush().unwrap();
    let bytes: u64 =
        segments(dir.path()).iter().map(|&seq| std::fs::metadata(segment(dir.path(), seq)).unwrap().len()).sum();
    assert!(bytes < 2 * schema_len + 50 * 300, "{bytes} bytes for 50 runs of a {schema_len}-byte schema");
    assert_only_graph_definitions_lost(dir.path(), &written, &[]);
}
