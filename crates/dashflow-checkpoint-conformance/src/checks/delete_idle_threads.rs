//! `delete_idle_threads`: retention by the age of a thread's newest checkpoint.

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointRecord, Checkpointer, ListOptions};

use crate::Result;
use crate::error::{Context, ensure, ensure_eq};
use crate::fixture::{ensure_records, list, load, put, snapshot};

/// Puts a line of snapshots into `thread`/`namespace` created at the given times.
async fn aged(cp: &dyn Checkpointer, thread: &str, namespace: &str, times: &[i64]) -> Result<Vec<CheckpointRecord>> {
    let mut records: Vec<CheckpointRecord> = Vec::new();
    for &created_at_ms in times {
        let mut next = snapshot(thread, namespace, records.last());
        next.created_at_ms = created_at_ms;
        put(cp, &next, records.last()).await?;
        records.push(next);
    }
    Ok(records)
}

async fn delete_idle_threads(cp: &dyn Checkpointer, cutoff_ms: i64) -> Result<Vec<String>> {
    let mut deleted =
        cp.delete_idle_threads(cutoff_ms).await.context(|| format!("delete_idle_threads({cutoff_ms})"))?;
    deleted.sort();
    Ok(deleted)
}

/// Threads whose newest checkpoint (in any namespace) was created before the cutoff go and
/// are returned; a thread with a checkpoint at or after the cutoff stays whole.
pub async fn by_cutoff(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    aged(cp, "old", "", &[1_000, 2_000]).await?;
    aged(cp, "old", "child", &[2_500]).await?;
    let busy_child = aged(cp, "busy-child", "", &[1_000]).await?;
    aged(cp, "busy-child", "child", &[5_000]).await?;
    let at_cutoff = aged(cp, "at-cutoff", "", &[1_000, 3_000]).await?;
    let fresh = aged(cp, "fresh", "", &[5_000]).await?;
    aged(cp, "older", "", &[10]).await?;
    let deleted = delete_idle_threads(cp, 3_000).await?;
    ensure_eq!(deleted, vec!["old".to_owned(), "older".to_owned()], "threads deleted as idle before 3000 ms");
    ensure!(load(cp, "old", "", None).await?.is_none(), "an idle thread still loads");
    ensure!(load(cp, "old", "child", None).await?.is_none(), "an idle thread's child namespace still loads");
    ensure_records(&list(cp, "old", &ListOptions::new()).await?, &[], "list of a deleted idle thread")?;
    let listed = list(cp, "busy-child", &ListOptions::new().namespace("")).await?;
    ensure_records(&listed, &[&busy_child[0]], "the old root namespace of a thread with a fresh child")?;
    let listed = list(cp, "at-cutoff", &ListOptions::new()).await?;
    ensure_records(&listed, &[&at_cutoff[1], &at_cutoff[0]], "a thread whose newest checkpoint is at the cutoff")?;
    ensure_records(&list(cp, "fresh", &ListOptions::new()).await?, &[&fresh[0]], "a fresh thread")
}

/// Nothing goes when every thread is newer than the cutoff.
pub async fn none_when_all_are_fresh(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let kept = aged(cp, "t", "", &[5_000]).await?;
    ensure_eq!(delete_idle_threads(cp, 4_999).await?, Vec::<String>::new(), "threads deleted when all are fresh");
    ensure_records(&list(cp, "t", &ListOptions::new()).await?, &[&kept[0]], "list of a fresh thread")
}
