use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashflow_telemetry::{Event, EventKind, EventRef, InterruptReason, RunId, RunIds, RunOutcome};
use serde_json::json;

use super::*;

fn every_kind() -> Vec<EventKind> {
    vec![
        EventKind::GraphDefined {
            graph: "g".into(),
            schema: Arc::new(json!({"nodes": ["a", "b"], "edges": [[1, 2]]})),
        },
        EventKind::RunStarted { graph: "triage".into(), thread_id: None, tags: Vec::new() },
        EventKind::RunStarted { graph: "triage".into(), thread_id: Some("thread-é".into()), tags: Vec::new() },
        EventKind::RunStarted { graph: "triage".into(), thread_id: None, tags: vec!["prod".into(), "user:é".into()] },
        EventKind::RunFinished { outcome: RunOutcome::Completed, steps: 3, duration: Duration::new(1, 5), error: None },
        EventKind::RunFinished {
            outcome: RunOutcome::Failed,
            steps: u64::MAX,
            duration: Duration::new(u64::MAX, 999_999_999),
            error: Some("boom".into()),
        },
        EventKind::RunFinished { outcome: RunOutcome::Interrupted, steps: 0, duration: Duration::ZERO, error: None },
        EventKind::SuperstepStarted { step: 1, nodes: Arc::from([]) },
        EventKind::SuperstepStarted { step: 2, nodes: Arc::from(["a".into(), "".into(), "ü".into()]) },
        EventKind::SuperstepFinished { step: 300, duration: Duration::from_micros(17) },
        EventKind::TaskStarted { step: 1, node: "a".into(), attempt: u32::MAX },
        EventKind::TaskFinished {
            step: 1,
            node: "a".into(),
            attempt: 2,
            duration: Duration::from_nanos(123_456),
            error: Some("retry me".into()),
        },
        EventKind::TaskFinished { step: 1, node: "a".into(), attempt: 1, duration: Duration::ZERO, error: None },
        EventKind::Routed { step: 4, from: "a".into(), label: "again".into(), target: "__end__".into() },
        EventKind::Custom { step: 5, node: "a".into(), value: json!({"progress": 0.5, "note": null}) },
        EventKind::CheckpointCommitted { step: 0, checkpoint_id: "01J0".into(), snapshot: true, bytes: u64::MAX },
        EventKind::CheckpointCommitted { step: 9, checkpoint_id: "".into(), snapshot: false, bytes: 20 },
        EventKind::Interrupted { step: 2, node: "send".into(), reason: InterruptReason::Before, value: None },
        EventKind::Interrupted { step: 0, node: "".into(), reason: InterruptReason::After, value: None },
        EventKind::Interrupted {
            step: 3,
            node: "review".into(),
            reason: InterruptReason::Node,
            value: Some(Arc::new(json!({"question": "approve?"}))),
        },
    ]
}

fn runs() -> Vec<RunIds> {
    let root = RunIds::root(RunId::new());
    let child = root.child(RunId::new());
    let grandchild = child.child(RunId::from_u128(u128::MAX));
    vec![root, child, grandchild, RunIds { depth: u32::MAX, ..grandchild }]
}

#[test]
fn every_event_kind_round_trips_through_the_binary_record() {
    let times = [UNIX_EPOCH, UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789), SystemTime::now()];
    for run in runs() {
        for at in times {
            for kind in every_kind() {
                let event = Event { run, at, kind };
                let mut payload = Vec::new();
                encode_event(&event, &mut payload).unwrap();
                assert_eq!(payload[0], TAG_EVENT_BIN, "{event:?}");
                assert_eq!(decode_event(&payload).unwrap().as_ref(), Some(&event));
                let Payload::Event(decoded) = decode_payload(&payload).unwrap() else { panic!("an event") };
                assert_eq!(*decoded, event);
                let Some(Indexed::Event(indexed)) = decode_indexed(&payload).unwrap() else { panic!("an event") };
                assert_eq!(indexed, event);
            }
        }
    }
}

#[test]
fn binary_records_are_much_smaller_than_json() {
    let run = RunIds::root(RunId::new());
    let event = Event::now(
        run,
        EventKind::TaskFinished {
            step: 7,
            node: "n7".into(),
            attempt: 1,
            duration: Duration::from_micros(3),
            error: None,
        },
    );
    let (mut binary, mut json) = (Vec::new(), Vec::new());
    encode_event(&event, &mut binary).unwrap();
    encode_event_json(&event, &mut json).unwrap();
    assert!(binary.len() * 3 < json.len(), "{} vs {} bytes", binary.len(), json.len());
}

#[test]
fn json_event_records_of_earlier_versions_still_decode() {
    for run in runs() {
        for kind in every_kind() {
            let event = Event::now(run, kind);
            let mut payload = Vec::new();
            encode_event_json(&event, &mut payload).unwrap();
            assert_eq!(payload[0], TAG_EVENT_JSON);
            assert_eq!(decode_event(&payload).unwrap().as_ref(), Some(&event));
            assert!(matches!(decode_payload(&payload).unwrap(), Payload::Event(e) if *e == event));
        }
    }
}

#[test]
fn an_event_before_the_epoch_is_written_as_json() {
    let run = RunIds::root(RunId::new());
    let at = UNIX_EPOCH - Duration::from_secs(1);
    let event = Event { run, at, kind: EventKind::SuperstepFinished { step: 1, duration: Duration::ZERO } };
    let mut payload = Vec::new();
    // JSON cannot hold it either (serde rejects times before the epoch): an encode error,
    // never a wrong record.
    match encode_event(&event, &mut payload) {
        Ok(()) => {
            assert_eq!(payload[0], TAG_EVENT_JSON);
            assert_eq!(decode_event(&payload).unwrap().as_ref(), Some(&event));
        }
        Err(WalError::Encode { .. }) => {}
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn truncated_or_extended_binary_records_are_errors_not_panics() {
    let run = RunIds::root(RunId::new()).child(RunId::new());
    for kind in every_kind() {
        let mut payload = Vec::new();
        encode_event(&Event::now(run, kind), &mut payload).unwrap();
        for len in 0..payload.len() {
            if len == 0 {
                continue;
            }
            assert!(decode_event(&payload[..len]).is_err(), "a prefix of {len} bytes decoded");
        }
        payload.push(0);
        assert!(decode_event(&payload).is_err(), "trailing bytes decoded");
    }
}

#[test]
fn malformed_binary_fields_are_errors() {
    let run = RunIds::root(RunId::new());
    let event = Event::now(run, EventKind::TaskStarted { step: 1, node: "a".into(), attempt: 1 });
    let mut payload = Vec::new();
    encode_event(&event, &mut payload).unwrap();
    // Unknown flags.
    let mut bad = payload.clone();
    bad[1] = 0x80;
    assert!(decode_event(&bad).is_err());
    // An unknown kind: the byte after the ids, depth and time.
    let kind_at = payload.iter().rposition(|&b| b == 5).unwrap();
    let mut bad = payload.clone();
    bad[kind_at] = 200;
    assert!(decode_event(&bad).is_err());
    // A varint that never ends.
    let mut bad = payload[..18].to_vec();
    bad.extend_from_slice(&[0xff; 11]);
    assert!(decode_event(&bad).is_err());
}

#[test]
fn a_schema_record_round_trips_and_is_keyed_by_a_hash_of_its_text() {
    let schema = json!({"nodes": ["a", "b"], "edges": [["a", "b"]]});
    let mut payload = Vec::new();
    let key = encode_schema(&schema, &mut payload);
    assert_eq!(payload[0], TAG_SCHEMA);
    assert_eq!(key, SchemaKey::of(serde_json::to_string(&schema).unwrap().as_bytes()));
    let Payload::Schema(record) = decode_payload(&payload).unwrap() else { panic!("not a schema record") };
    assert_eq!((record.key, &*record.schema), (key, &schema));
    assert!(matches!(decode_indexed(&payload).unwrap(), Some(Indexed::Schema(indexed)) if indexed == key));
    // The same text, the same key; another text, another.
    let mut again = Vec::new();
    assert_eq!(encode_schema(&schema.clone(), &mut again), key);
    assert_ne!(encode_schema(&json!({"nodes": ["a"]}), &mut Vec::new()), key);
}

#[test]
fn a_schema_record_whose_text_no_longer_matches_its_key_is_an_error() {
    let mut payload = Vec::new();
    encode_schema(&json!({"nodes": ["a", "b"]}), &mut payload);
    // A changed byte of the text (still JSON), of the key, a cut, an extension.
    let text_at = payload.iter().position(|&b| b == b'a').unwrap();
    for changed in [
        {
            let mut p = payload.clone();
            p[text_at] = b'c';
            p
        },
        {
            let mut p = payload.clone();
            p[3] ^= 1;
            p
        },
        payload[..payload.len() - 1].to_vec(),
        [&payload[..], b" "].concat(),
        payload[..10].to_vec(),
    ] {
        assert!(decode_payload(&changed).is_err(), "{changed:?} decoded");
        assert!(read_events(&changed).is_err());
    }
}

#[test]
fn a_graph_record_round_trips_and_names_its_schema_by_key() {
    let schema = Arc::new(json!({"nodes": ["a"]}));
    let key = encode_schema(&schema, &mut Vec::new());
    for run in runs() {
        let record = GraphRecord { run, at: UNIX_EPOCH + Duration::new(1_700_000_000, 5), graph: "g".into(), key };
        let mut payload = Vec::new();
        assert!(encode_graph(&record, &mut payload));
        assert_eq!(payload[0], TAG_GRAPH);
        assert!(matches!(decode_payload(&payload).unwrap(), Payload::Graph(decoded) if decoded == record));
        assert!(matches!(read_events(&payload).unwrap(), Read::Graph(decoded) if decoded == record));
        assert!(
            matches!(decode_indexed(&payload).unwrap(), Some(Indexed::Graph(ids, at)) if ids == run && at == record.at)
        );
        let event = record.clone().into_event(Arc::clone(&schema));
        assert_eq!(event.kind, EventKind::GraphDefined { graph: "g".into(), schema: Arc::clone(&schema) });
        // Every cut and every extension is an error, never a panic.
        for len in 1..payload.len() {
            assert!(decode_payload(&payload[..len]).is_err(), "a prefix of {len} bytes decoded");
        }
        assert!(decode_payload(&[&payload[..], &[0]].concat()).is_err());
    }
    // Before the Unix epoch there is no graph record: nothing is written.
    let record = GraphRecord { run: runs()[0], at: UNIX_EPOCH - Duration::from_secs(1), graph: "g".into(), key };
    let mut out = vec![9];
    assert!(!encode_graph(&record, &mut out));
    assert_eq!(out, [9]);
}

#[test]
fn the_writer_stores_a_graph_defined_as_a_graph_record_and_each_schema_once() {
    let run = RunIds::root(RunId::new());
    let first = Arc::new(json!({"nodes": ["a"]}));
    let same = Arc::new(json!({"nodes": ["a"]}));
    let second = Arc::new(json!({"nodes": ["b", "c"]}));
    let mut cache = SchemaCache::default();
    let mut keys = Vec::new();
    for schema in [&first, &first, &second, &same] {
        let event = Event::now(run, EventKind::GraphDefined { graph: "g".into(), schema: Arc::clone(schema) });
        let mut payload = Vec::new();
        let key = encode_event_ref(&EventRef::Whole(&event), &mut payload, &mut cache, u32::MAX).unwrap().unwrap();
        let Payload::Graph(record) = decode_payload(&payload).unwrap() else { panic!("not a graph record") };
        assert_eq!(record.key, key);
        assert_eq!(record.into_event(Arc::clone(schema)), event);
        // The framed schema record the cache holds for the key decodes to the schema.
        let framed = cache.frame(key).unwrap();
        let Payload::Schema(stored) = decode_payload(&framed[crate::frame::HEADER_LEN..]).unwrap() else {
            panic!("not a schema record")
        };
        assert_eq!((stored.key, &stored.schema), (key, schema));
        keys.push(key);
    }
    // One key per distinct schema, whichever `Arc` holds it.
    assert_eq!(keys[0], keys[1]);
    assert_eq!(keys[0], keys[3]);
    assert_ne!(keys[0], keys[2]);
    // Which segment holds which key.
    assert!(!cache.is_written(1, keys[0]));
    cache.mark_written(1, keys[0]);
    assert!(cache.is_written(1, keys[0]) && !cache.is_written(1, keys[2]) && !cache.is_written(2, keys[0]));
    cache.mark_written(2, keys[2]);
    assert!(!cache.is_written(1, keys[0]), "a new segment holds none of the old one's schemas");
}

#[test]
fn a_schema_larger_than_the_maximum_record_size_has_no_record_and_its_runs_a_graph_record() {
    let run = RunIds::root(RunId::new());
    let schema = Arc::new(json!({"nodes": ["a".repeat(100)]}));
    let mut cache = SchemaCache::default();
    let event = Event::now(run, EventKind::GraphDefined { graph: "g".into(), schema });
    let mut payload = Vec::new();
    let key = encode_event_ref(&EventRef::Whole(&event), &mut payload, &mut cache, 64).unwrap().unwrap();
    assert!(cache.frame(key).is_none());
    assert!(matches!(decode_payload(&payload).unwrap(), Payload::Graph(_)));
}

fn process_record(runs: usize) -> ProcessRecord {
    let process = crate::testing::some_process();
    ProcessRecord::new(process, (0..runs).map(|_| RunId::new()).collect())
}

#[test]
fn process_records_round_trip() {
    for runs in [0, 1, 7] {
        let record = process_record(runs);
        let mut payload = Vec::new();
        encode_process(&record, &mut payload);
        assert_eq!(payload[0], TAG_PROCESS);
        assert!(matches!(decode_payload(&payload).unwrap(), Payload::Process(decoded) if decoded == record));
        assert!(matches!(decode_indexed(&payload).unwrap(), Some(Indexed::Process(decoded)) if decoded == record));
        // Not an event, and not unknown to readers of events.
        assert_eq!(decode_event(&payload).unwrap(), None);
        assert!(matches!(read_events(&payload).unwrap(), Read::Other));
    }
}

#[test]
fn truncated_or_extended_process_records_are_errors_not_panics() {
    let mut payload = Vec::new();
    encode_process(&process_record(2), &mut payload);
    for len in 1..payload.len() {
        assert!(decode_payload(&payload[..len]).is_err(), "a prefix of {len} bytes decoded");
    }
    payload.push(0);
    assert!(decode_payload(&payload).is_err(), "trailing bytes decoded");
}

#[test]
fn a_process_record_of_a_later_layout_is_skipped_as_unknown() {
    let mut payload = Vec::new();
    encode_process(&process_record(1), &mut payload);
    payload[1] = 2;
    assert!(matches!(decode_payload(&payload).unwrap(), Payload::Unknown { tag: TAG_PROCESS }));
    assert!(decode_indexed(&payload).unwrap().is_none());
}

#[test]
fn the_runs_a_process_record_can_name_fit_in_the_maximum_record_size() {
    let process = crate::testing::some_process();
    for max in [200, 1000, 16 * 1024 * 1024] {
        let capacity = process_record_capacity(&process, max);
        let record = ProcessRecord::new(process.clone(), (0..capacity).map(|_| RunId::new()).collect());
        let mut payload = Vec::new();
        encode_process(&record, &mut payload);
        assert!(payload.len() <= max as usize, "{} bytes for at most {max}", payload.len());
    }
    assert_eq!(process_record_capacity(&process, 10), 1, "at least one, refused when framed");
}

#[test]
fn an_event_read_where_it_lies_in_a_batch_encodes_to_the_bytes_of_the_built_event() {
    use dashflow_telemetry::__private::{NodeNames, RunContext};
    use dashflow_telemetry::EventBatch;
    use dashflow_telemetry::clock::{RunClock, Tick};

    let parent = RunIds::root(RunId::new());
    let labels = [vec![vec![Arc::from("next"), Arc::from("done")]], vec![]];
    let names = Arc::new(NodeNames::new(["a", "b"].map(Arc::from)).with_labels(labels));
    let mut batch = EventBatch::new();
    // A root run and a subgraph run (parent and root in the header), and an unknown node.
    for run in [parent, parent.child(RunId::new())] {
        let context = RunContext::new(run, RunClock::new(), Arc::clone(&names));
        let (t0, t1) = (Tick::now(), Tick::now());
        batch.push_event(Event::now(
            run,
            EventKind::RunStarted { graph: "g".into(), thread_id: None, tags: Vec::new() },
        ));
        batch.push_step_started(&context, 1, 0, t0);
        batch.push_task_finished(&context, (1, 0, 1), (t0, t1), None);
        batch.push_routed(&context, 1, (0, 1, 1), t1);
        batch.push_routed(&context, 2, (1, 0, 0), t1);
        batch.push_step_started(&context, 3, 7, t1);
        batch.push_task_finished(&context, (3, 1, 2), (t0, t1), Some("boom".into()));
    }
    let refs: Vec<EventRef<'_>> = batch.refs().collect();
    assert_eq!(refs.len(), 14);
    assert!(refs.iter().any(|event| matches!(event, EventRef::Routed { .. })));
    let mut cache = SchemaCache::default();
    for event in &refs {
        let built = event.to_event();
        let (mut read, mut fresh) = (Vec::new(), Vec::new());
        assert_eq!(encode_event_ref(event, &mut read, &mut cache, u32::MAX).unwrap(), None);
        encode_event(&built, &mut fresh).unwrap();
        assert_eq!(read, fresh, "{built:?}");
        assert_eq!(decode_event(&read).unwrap(), Some(built));
    }
}
