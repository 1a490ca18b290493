//! `delete_before`: pruning a namespace after a snapshot.

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointId, Checkpointer, ListOptions};

use crate::Result;
use crate::error::{Context, ensure, ensure_eq};
use crate::fixture::{ensure_chain, ensure_records, line, list, load, load_some, write};

async fn delete_before(cp: &dyn Checkpointer, thread: &str, namespace: &str, keep_from: &CheckpointId) -> Result<u64> {
    cp.delete_before(thread, namespace, keep_from)
        .await
        .context(|| format!("delete_before {keep_from} in thread `{thread}` ns `{namespace}`"))
}

/// Checkpoints older than `keep_from` go (and the count says how many); `keep_from` and newer
/// stay, load with their chains and keep their pending writes.
pub async fn keeps_keep_from_and_newer(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let r = line(cp, "t", "", "SDDSD").await?;
    cp.put_writes("t", "", &r[1].checkpoint_id, vec![write("old", "gone")])
        .await
        .context(|| "put_writes".to_owned())?;
    let kept_writes = vec![write("new", "kept")];
    cp.put_writes("t", "", &r[4].checkpoint_id, kept_writes.clone()).await.context(|| "put_writes".to_owned())?;
    let deleted = delete_before(cp, "t", "", &r[3].checkpoint_id).await?;
    ensure_eq!(deleted, 3, "number of checkpoints deleted before the fourth of five");
    for record in &r[..3] {
        ensure!(
            load(cp, "t", "", Some(&record.checkpoint_id)).await?.is_none(),
            "checkpoint {} older than keep_from still loads",
            record.checkpoint_id
        );
    }
    ensure_chain(&load_some(cp, "t", "", Some(&r[3].checkpoint_id)).await?, &[&r[3]], "the kept snapshot")?;
    let latest = load_some(cp, "t", "", None).await?;
    ensure_chain(&latest, &[&r[3], &r[4]], "latest after delete_before")?;
    ensure_eq!(latest.pending_writes, kept_writes, "pending writes of a kept checkpoint");
    ensure_records(&list(cp, "t", &ListOptions::new()).await?, &[&r[4], &r[3]], "list after delete_before")?;
    ensure_eq!(delete_before(cp, "t", "", &r[3].checkpoint_id).await?, 0, "a second delete_before's count");
    Ok(())
}

/// Only the given thread and namespace are pruned.
pub async fn other_namespaces_and_threads_are_untouched(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let child = line(cp, "t", "child", "SD").await?;
    let other = line(cp, "other", "", "SD").await?;
    let root = line(cp, "t", "", "SDS").await?;
    ensure_eq!(
        delete_before(cp, "t", "", &root[2].checkpoint_id).await?,
        2,
        "checkpoints deleted in the root namespace"
    );
    let listed = list(cp, "t", &ListOptions::new().namespace("child")).await?;
    ensure_records(&listed, &[&child[1], &child[0]], "list of namespace `child` after pruning the root namespace")?;
    let listed = list(cp, "other", &ListOptions::new()).await?;
    ensure_records(&listed, &[&other[1], &other[0]], "list of another thread after pruning")
}

/// Pruning a thread that does not exist deletes nothing.
pub async fn unknown_thread_deletes_nothing(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let r = line(cp, "t", "", "SD").await?;
    ensure_eq!(
        delete_before(cp, "nobody", "", &r[1].checkpoint_id).await?,
        0,
        "checkpoints deleted of an unknown thread"
    );
    ensure_records(&list(cp, "t", &ListOptions::new()).await?, &[&r[1], &r[0]], "list after pruning an unknown thread")
}
