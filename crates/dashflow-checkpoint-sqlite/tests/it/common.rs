//! Records for the tests.

use dashflow_checkpoint::{CheckpointId, CheckpointKind, CheckpointRecord, Metadata, now_ms};
use serde_json::json;

/// A record continuing from `parent` (a snapshot starting the thread when `None`, else a
/// delta) with a blob of `blob_len` bytes that differ from every other record's.
pub(crate) fn record(thread: &str, parent: Option<&CheckpointRecord>, blob_len: usize) -> CheckpointRecord {
    let checkpoint_id = CheckpointId::new();
    let step = parent.map_or(-1, |parent| parent.step + 1);
    let seed = checkpoint_id.as_str().bytes().fold(0u8, |acc, byte| acc.wrapping_mul(31).wrapping_add(byte));
    CheckpointRecord {
        thread_id: thread.to_owned(),
        namespace: String::new(),
        parent_id: parent.map(|parent| parent.checkpoint_id.clone()),
        step,
        kind: if parent.is_none() { CheckpointKind::Snapshot } else { CheckpointKind::Delta },
        blob: (0..blob_len).map(|index| seed.wrapping_add(index as u8)).collect(),
        metadata: Metadata::from_iter([("source".to_owned(), json!("loop")), ("step".to_owned(), json!(step))]),
        next_nodes: vec!["node".to_owned()],
        created_at_ms: now_ms(),
        checkpoint_id,
    }
}
