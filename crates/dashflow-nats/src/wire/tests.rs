#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;
use std::time::Duration;

use dashflow_telemetry::{Event, EventKind, InterruptReason, RunId, RunIds, RunOutcome};

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
        assert_eq!(received.event, event);
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
    assert!(matches!(received.event.kind, EventKind::TaskFinished { step: 2, attempt: 1, .. }));
    assert_eq!(received.event.run, RunIds::root(run));
}

#[test]
fn another_schema_version_or_a_foreign_message_is_refused_by_name() {
    let error = decode(5, 0, br#"{"v":2}"#).unwrap_err();
    assert!(error.to_string().contains("schema version 2"), "{error}");
    let error = decode(6, 0, b"hello").unwrap_err();
    assert!(error.to_string().contains("message 6"), "{error}");
}
