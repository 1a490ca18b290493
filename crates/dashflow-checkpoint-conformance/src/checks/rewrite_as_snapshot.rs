//! `rewrite_as_snapshot`: folding a delta chain into a snapshot in place, for retention.
//! The operation is optional: a backend without it declares so, and these trials are ignored
//! for it (see [`crate::Capability`]); a `NotSupported` here fails them.

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointError, CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer, ListOptions};

use crate::Result;
use crate::error::Context;
use crate::fixture::{contract, delta, ensure_chain, ensure_records, line, list, load_some, put};

async fn rewrite(cp: &dyn Checkpointer, record: &CheckpointRecord, blob: &[u8]) -> Result<()> {
    cp.rewrite_as_snapshot(&record.thread_id, &record.namespace, &record.checkpoint_id, blob.to_vec())
        .await
        .context(|| format!("rewrite_as_snapshot of {}", record.checkpoint_id))
}

/// The checkpoint becomes a snapshot with the new blob and keeps its id, parent, step,
/// metadata and next nodes; chains through it now start there, and the head is unchanged.
pub async fn turns_a_delta_into_a_snapshot_in_place(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let r = line(cp, "t", "", "SDDD").await?;
    rewrite(cp, &r[2], b"folded state").await?;
    let folded = CheckpointRecord { kind: CheckpointKind::Snapshot, blob: b"folded state".to_vec(), ..r[2].clone() };
    ensure_chain(&load_some(cp, "t", "", Some(&r[2].checkpoint_id)).await?, &[&folded], "the rewritten checkpoint")?;
    let latest = load_some(cp, "t", "", None).await?;
    ensure_chain(&latest, &[&folded, &r[3]], "latest after rewriting its parent")?;
    let listed = list(cp, "t", &ListOptions::new()).await?;
    ensure_records(&listed, &[&r[3], &folded, &r[1], &r[0]], "list after the rewrite")?;
    let next = delta("t", "", &r[3]);
    put(cp, &next, Some(&r[3])).await
}

/// Rewriting a checkpoint the thread does not have is `NotFound` and creates nothing.
pub async fn unknown_checkpoint_is_not_found(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let r = line(cp, "t", "", "SD").await?;
    let mut unknown = r[1].clone();
    unknown.checkpoint_id = CheckpointId::new();
    let result = cp.rewrite_as_snapshot("t", "", &unknown.checkpoint_id, b"x".to_vec()).await;
    match result {
        Err(CheckpointError::NotFound { .. }) => {}
        other => {
            return Err(contract(format!(
                "rewrite_as_snapshot of an unknown id returned {other:?}; expected NotFound"
            )));
        }
    }
    ensure_records(&list(cp, "t", &ListOptions::new()).await?, &[&r[1], &r[0]], "list after rewriting an unknown id")
}
