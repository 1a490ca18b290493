#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;
use std::time::Duration;

use dashflow_telemetry::{DeltaKind, Event, EventKind, InterruptReason, RunId, RunIds, RunOutcome, StateDelta};

use super::*;

fn publisher() -> Publisher {
    Publisher { id: "01JTEST".into(), name: "1@host".into() }
}

#[test]
fn every_event_kind_round_trips_through_the_schema() {
    let parent = RunIds::root(RunId::new());
    let run = parent.child(RunId::new());
    let at = std::time::SystemTime::now();
    let kinds = vec![
        EventKind::GraphDefined { graph: "g".into(), schema: Arc::new(serde_json::json!({"nodes": ["a"]})) },
        EventKind::RunStarted { graph: "g".into(), thread_id: Some("t".into()), tags: vec!["x".into()] },
        EventKind::SuperstepStarted { step: 1, nodes: Arc::from([Arc::from("a"), Arc::from("b")]) },
        EventKind::TaskStarted { step: 1, node: "a".into(), attempt: 1 },
        EventKind::TaskFinished {
            step: 1,
            node: "a".into(),
            attempt: 2,
            duration: Duration::from_nanos(1_500_123),
            error: Some("boom".into()),
        },
        EventKind::Routed { step: 1, from: "a".into(), label: "yes".into(), target: "b".into() },
        EventKind::SuperstepFinished { step: 1, duration: Duration::from_nanos(2_500_001) },
        EventKind::CheckpointCommitted { step: 1, checkpoint_id: "c1".into(), snapshot: true, bytes: 42 },
        EventKind::Custom { step: 1, node: "a".into(), value: serde_json::json!({"token": "hi"}) },
        EventKind::Interrupted {
            step: 1,
            node: "b".into(),
            reason: InterruptReason::Node,
            value: Some(Arc::new(serde_json::json!(1))),
        },
        EventKind::RunFinished {
            outcome: RunOutcome::Interrupted,
            steps: 1,
            duration: Duration::from_micros(9),
            error: None,
        },
    ];
    for (n, kind) in kinds.into_iter().enumerate() {
        let event = Event::at(run, at, kind);
        let bytes = encode(&publisher(), n as u64 + 1, &Arc::from("g"), &event).unwrap();
        let received = decode(7, 0, &bytes).unwrap();
        assert_eq!(received.event(), Some(&event));
        assert_eq!(received.run, run);
        assert_eq!((received.stream_sequence, received.seq, &*received.graph), (7, n as u64 + 1, "g"));
        assert_eq!(received.publisher, publisher());
    }
}

#[test]
fn the_documented_example_message_decodes() {
    let run = RunId::new();
    let text = format!(
        r#"{{"v":1,"publisher":{{"id":"01JF3","name":"4242@worker-7"}},"seq":3,"graph":"tickets",
        "run":{{"id":"{run}","parent":null,"root":"{run}","depth":0}},"at_ns":1765030000123456789,
        "event":{{"type":"task_finished","step":2,"node":"billing","attempt":1,"duration_ns":1834000,"error":null}},
        "added_later":true}}"#
    );
    let received = decode(1, 0, text.as_bytes()).unwrap();
    assert!(matches!(received.event().unwrap().kind, EventKind::TaskFinished { step: 2, attempt: 1, .. }));
    assert_eq!(received.event().unwrap().run, RunIds::root(run));
}

#[test]
fn another_schema_version_or_a_foreign_message_is_refused_by_name() {
    let error = decode(5, 0, br#"{"v":3}"#).unwrap_err();
    assert!(error.to_string().contains("schema version 3"), "{error}");
    let error = decode(6, 0, b"hello").unwrap_err();
    assert!(error.to_string().contains("message 6"), "{error}");
}

#[test]
fn deltas_round_trip_as_version_2_and_events_stay_version_1() {
    let run = RunIds::root(RunId::new());
    let at = std::time::SystemTime::UNIX_EPOCH + Duration::from_nanos(1_765_030_000_123_456_789);
    let update = serde_json::json!({ "findings": ["invoice overdue"] });
    let delta = StateDelta::new(run, at, 2, DeltaKind::Update, Arc::new(update.clone()));
    let (bytes, error) = encode_delta(&publisher(), 5, &Arc::from("tickets"), &delta);
    assert_eq!(error, None);
    let bytes = bytes.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["v"], 2);
    assert_eq!(json["delta"]["kind"], "update");
    let received = decode(9, 0, &bytes).unwrap();
    assert_eq!((received.seq, received.run), (5, run));
    let got = received.delta().unwrap();
    assert_eq!((got.step, got.kind, got.at), (2, DeltaKind::Update, at));
    assert_eq!(got.value, Ok(update));
    let event = Event::at(run, at, EventKind::TaskStarted { step: 1, node: "a".into(), attempt: 1 });
    let bytes = encode(&publisher(), 1, &Arc::from("tickets"), &event).unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["v"], 1, "event messages are unchanged");
}

#[test]
fn the_documented_delta_example_decodes_and_reads_as_the_type_asked_for() {
    let run = RunId::new();
    let text = format!(
        r#"{{"v":2,"publisher":{{"id":"01JF3","name":"4242@worker-7"}},"seq":5,"graph":"tickets",
        "run":{{"id":"{run}","parent":null,"root":"{run}","depth":0}},"at_ns":1765030000123456789,
        "delta":{{"step":2,"kind":"update","value":{{"findings":["invoice overdue"]}}}}}}"#
    );
    let received = decode(1, 0, text.as_bytes()).unwrap();
    #[derive(serde::Deserialize)]
    struct Update {
        findings: Vec<String>,
    }
    let update: Update = received.delta().unwrap().decode().unwrap();
    assert_eq!(update.findings, ["invoice overdue"]);
    let error = received.delta().unwrap().decode::<u32>().unwrap_err().to_string();
    assert!(error.contains("step 2") && error.contains("u32"), "{error}");
}

/// A value whose `Serialize` refuses human-readable formats (JSON), as some do.
struct NotJson;

impl serde::Serialize for NotJson {
    fn serialize<S: serde::Serializer>(&self, _serializer: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("no JSON for this one"))
    }
}

#[test]
fn a_delta_that_cannot_be_written_is_sent_with_the_reason_instead() {
    let run = RunIds::root(RunId::new());
    let delta = StateDelta::new(run, std::time::SystemTime::now(), 3, DeltaKind::Snapshot, Arc::new(NotJson));
    let (bytes, error) = encode_delta(&publisher(), 1, &Arc::from("g"), &delta);
    let error = error.unwrap();
    assert!(error.contains("NotJson") && error.contains("no JSON for this one"), "{error}");
    let received = decode(1, 0, &bytes.unwrap()).unwrap();
    let got = received.delta().unwrap();
    assert_eq!(got.value, Err(error));
    assert!(got.decode::<serde_json::Value>().unwrap_err().to_string().contains("no JSON for this one"));
}
