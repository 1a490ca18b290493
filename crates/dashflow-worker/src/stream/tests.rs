use std::sync::Arc;

use dashflow_queue::StreamItem;
use dashflow_telemetry::{Event, EventKind, RunId, RunIds};

use super::{RunEvent, Streamed, compact, root_ids};

fn custom(run: RunIds) -> Event {
    Event::now(run, EventKind::Custom { step: 3, node: Arc::from("n"), value: serde_json::json!({ "token": "hi" }) })
}

fn item(payload: serde_json::Value) -> StreamItem {
    StreamItem { seq: 1, epoch: 1, attempt: 1, step: Some(3), rerun: false, at_ms: 0, payload }
}

#[test]
fn a_runs_own_events_are_stored_without_its_ids_and_read_back_whole() {
    let run_id = RunId::new();
    let root = root_ids(&run_id.to_string());
    assert_eq!(root, Some(RunIds::root(run_id)));
    let event = custom(RunIds::root(run_id));
    let stored = compact(&event, root.as_ref()).unwrap();
    assert!(stored.get("run").is_none(), "{stored}");
    assert_eq!(RunEvent::from_item(item(stored), root.as_ref()).item, Streamed::Event(event));
}

#[test]
fn subgraph_events_and_items_stored_with_ids_keep_theirs() {
    let run_id = RunId::new();
    let root = root_ids(&run_id.to_string());
    let nested = custom(RunIds::root(run_id).child(RunId::new()));
    let stored = compact(&nested, root.as_ref()).unwrap();
    assert!(stored.get("run").is_some());
    assert_eq!(RunEvent::from_item(item(stored), root.as_ref()).item, Streamed::Event(nested));
    // Written before the stream stored ids once per row: read as it is.
    let old = custom(RunIds::root(run_id));
    let stored = serde_json::to_value(&old).unwrap();
    assert_eq!(RunEvent::from_item(item(stored), root.as_ref()).item, Streamed::Event(old));
    // Not an event: left alone.
    let note = serde_json::json!({ "lost": 4 });
    assert_eq!(RunEvent::from_item(item(note), root.as_ref()).item, Streamed::Lost(4));
    let other = serde_json::json!({ "something": "new" });
    assert_eq!(RunEvent::from_item(item(other.clone()), root.as_ref()).item, Streamed::Other(other));
    // An item of a newer worker that looks like an event but is none stays as it was stored.
    let newer = serde_json::json!({ "kind": { "FromTheFuture": {} } });
    assert_eq!(RunEvent::from_item(item(newer.clone()), root.as_ref()).item, Streamed::Other(newer));
}
