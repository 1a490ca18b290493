//! Blobs come back byte-exact: empty, binary, large.

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointRecord, Checkpointer, ListOptions, PendingWrite};

use crate::Result;
use crate::error::{Context, ensure, ensure_eq};
use crate::fixture::{contract, label, list, load_some, noise, put, snapshot};

/// Puts a snapshot with `blob`, then checks it byte for byte through `load` and `list`.
async fn round_trip(cp: &dyn Checkpointer, thread: &str, blob: Vec<u8>) -> Result<CheckpointRecord> {
    let mut record = snapshot(thread, "", None);
    record.blob = blob;
    put(cp, &record, None).await?;
    let loaded = load_some(cp, thread, "", Some(&record.checkpoint_id)).await?;
    let head = loaded.head().ok_or_else(|| contract(format!("load of {} returned an empty chain", label(&record))))?;
    ensure_same_bytes(&head.blob, &record.blob, "blob through load")?;
    let listed = list(cp, thread, &ListOptions::new()).await?;
    ensure_eq!(listed.len(), 1, "number of checkpoints listed");
    ensure_same_bytes(&listed[0].blob, &record.blob, "blob through list")?;
    Ok(record)
}

/// Compares bytes without printing a megabyte on failure.
fn ensure_same_bytes(actual: &[u8], expected: &[u8], what: &str) -> Result<()> {
    if actual == expected {
        return Ok(());
    }
    let first_difference =
        actual.iter().zip(expected).position(|(a, b)| a != b).unwrap_or(actual.len().min(expected.len()));
    Err(contract(format!(
        "{what}: {} bytes came back for {} stored, first difference at byte {first_difference}",
        actual.len(),
        expected.len()
    )))
}

/// Every byte value, NUL and invalid UTF-8 included, round-trips.
pub async fn byte_exact(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let mut blob: Vec<u8> = (0..=255).collect();
    blob.extend((0..=255).rev());
    blob.extend_from_slice(b"\0\0trailing NULs\0\0");
    round_trip(checkpointer.as_ref(), "t", blob).await.map(drop)
}

/// An empty blob comes back empty (not missing, not `NULL`).
pub async fn empty(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    round_trip(checkpointer.as_ref(), "t", Vec::new()).await.map(drop)
}

/// A 1 MiB blob of noise round-trips byte-exact.
pub async fn one_mib(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    round_trip(checkpointer.as_ref(), "t", noise(1 << 20, 42)).await.map(drop)
}

/// Pending-write blobs round-trip byte-exact too: empty, binary and 1 MiB.
pub async fn pending_write_blobs_round_trip(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let record = round_trip(cp, "t", b"state".to_vec()).await?;
    let writes = vec![
        PendingWrite { task_id: "empty".into(), node: "a".into(), blob: Vec::new() },
        PendingWrite { task_id: "binary".into(), node: "b".into(), blob: (0..=255).collect() },
        PendingWrite { task_id: "large".into(), node: "c".into(), blob: noise(1 << 20, 7) },
    ];
    cp.put_writes("t", "", &record.checkpoint_id, writes.clone()).await.context(|| "put_writes".to_owned())?;
    let loaded = load_some(cp, "t", "", None).await?;
    ensure_eq!(loaded.pending_writes.len(), writes.len(), "number of pending writes");
    for (actual, expected) in loaded.pending_writes.iter().zip(&writes) {
        ensure!(
            actual.task_id == expected.task_id && actual.node == expected.node,
            "pending write of task `{}` came back as task `{}` of node `{}`",
            expected.task_id,
            actual.task_id,
            actual.node
        );
        ensure_same_bytes(&actual.blob, &expected.blob, &format!("blob of pending write `{}`", expected.task_id))?;
    }
    Ok(())
}
