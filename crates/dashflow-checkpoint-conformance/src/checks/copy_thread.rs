//! `copy_thread`: a whole thread into an empty one (forking a conversation).

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointError, CheckpointId, CheckpointRecord, Checkpointer, ListOptions};

use crate::Result;
use crate::error::{Context, ensure, ensure_eq};
use crate::fixture::{
    contract, delta, ensure_chain, ensure_records, in_thread, line, list, load_some, put, put_conflicts, snapshot,
    write,
};

async fn copy_thread(cp: &dyn Checkpointer, from: &str, to: &str) -> Result<()> {
    cp.copy_thread(from, to).await.context(|| format!("copy_thread from `{from}` to `{to}`"))
}

/// Builds a source thread with a fork, two namespaces and pending writes; returns the root
/// namespace's records (the fork last) and the child's.
async fn source(cp: &dyn Checkpointer) -> Result<(Vec<CheckpointRecord>, Vec<CheckpointRecord>)> {
    let mut root = line(cp, "from", "", "SDD").await?;
    let fork = delta("from", "", &root[1]);
    put(cp, &fork, Some(&root[2])).await?;
    root.push(fork);
    let child = line(cp, "from", "child", "SD").await?;
    cp.put_writes("from", "", &root[3].checkpoint_id, vec![write("task-1", "one"), write("task-2", "two")])
        .await
        .context(|| "put_writes into the source".to_owned())?;
    cp.put_writes("from", "child", &child[0].checkpoint_id, vec![write("task-3", "three")])
        .await
        .context(|| "put_writes into the source's child namespace".to_owned())?;
    Ok((root, child))
}

/// The copy has every checkpoint (rewritten to the new thread id), every namespace's head and
/// every pending write of the source.
pub async fn copies_checkpoints_and_writes(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let (root, child) = source(cp).await?;
    copy_thread(cp, "from", "to").await?;
    let source_list = list(cp, "from", &ListOptions::new()).await?;
    let expected: Vec<CheckpointRecord> = source_list.iter().map(|record| in_thread(record, "to")).collect();
    ensure_records(
        &list(cp, "to", &ListOptions::new()).await?,
        &expected.iter().collect::<Vec<_>>(),
        "list of the copy",
    )?;
    let latest = load_some(cp, "to", "", None).await?;
    let chain = [&root[0], &root[1], &root[3]].map(|record| in_thread(record, "to"));
    ensure_chain(&latest, &chain.iter().collect::<Vec<_>>(), "latest of the copy (a forked line)")?;
    ensure_eq!(
        latest.pending_writes,
        vec![write("task-1", "one"), write("task-2", "two")],
        "pending writes of the copy"
    );
    let abandoned = load_some(cp, "to", "", Some(&root[2].checkpoint_id)).await?;
    let chain = [&root[0], &root[1], &root[2]].map(|record| in_thread(record, "to"));
    ensure_chain(&abandoned, &chain.iter().collect::<Vec<_>>(), "the abandoned branch in the copy")?;
    let child_latest = load_some(cp, "to", "child", None).await?;
    let chain = [&child[0], &child[1]].map(|record| in_thread(record, "to"));
    ensure_chain(&child_latest, &chain.iter().collect::<Vec<_>>(), "latest of the copy's child namespace")?;
    let child_first = load_some(cp, "to", "child", Some(&child[0].checkpoint_id)).await?;
    ensure_eq!(
        child_first.pending_writes,
        vec![write("task-3", "three")],
        "pending writes of the copy's child namespace"
    );
    Ok(())
}

/// After a copy, writing either thread leaves the other as it was: the copy has its own
/// heads (continuing from the source's head) and its own records.
pub async fn copy_and_source_are_independent(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let (root, _) = source(cp).await?;
    copy_thread(cp, "from", "to").await?;
    let in_copy = delta("to", "", &in_thread(&root[3], "to"));
    put(cp, &in_copy, Some(&root[3])).await?;
    let in_source = delta("from", "", &root[3]);
    put(cp, &in_source, Some(&root[3])).await?;
    let copy_latest = load_some(cp, "to", "", None).await?;
    ensure!(copy_latest.head() == Some(&in_copy), "the copy's head is not the copy's last put");
    let source_latest = load_some(cp, "from", "", None).await?;
    ensure!(source_latest.head() == Some(&in_source), "the source's head is not the source's last put");
    cp.delete_thread("from").await.context(|| "delete_thread of the source".to_owned())?;
    let copy_latest = load_some(cp, "to", "", None).await?;
    ensure!(copy_latest.head() == Some(&in_copy), "deleting the source changed the copy");
    Ok(())
}

/// The copy's head is the source's head (its last put), even when that is not its greatest id.
pub async fn copies_the_head_not_the_greatest_id(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let (early, late) = (CheckpointId::new(), CheckpointId::new());
    let mut first = snapshot("from", "", None);
    first.checkpoint_id = late;
    put(cp, &first, None).await?;
    let mut second = snapshot("from", "", Some(&first));
    second.checkpoint_id = early;
    put(cp, &second, Some(&first)).await?;
    copy_thread(cp, "from", "to").await?;
    let latest = load_some(cp, "to", "", None).await?;
    ensure_chain(&latest, &[&in_thread(&second, "to")], "latest of a copy whose head has the smaller id")?;
    let next = delta("to", "", &latest.chain[0]);
    put_conflicts(cp, &next, Some(&first.checkpoint_id), Some(&second.checkpoint_id)).await?;
    put(cp, &next, Some(&second)).await
}

/// Copying into a thread that has checkpoints is a `Conflict` and changes neither thread.
pub async fn conflict_when_target_not_empty(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let from = line(cp, "from", "", "SD").await?;
    let to = line(cp, "to", "", "S").await?;
    match cp.copy_thread("from", "to").await {
        Err(CheckpointError::Conflict { thread_id, .. }) => {
            ensure_eq!(thread_id, "to", "the thread named by the Conflict of copy_thread");
        }
        other => {
            return Err(contract(format!("copy_thread into a non-empty thread returned {other:?}; expected Conflict")));
        }
    }
    ensure_records(
        &list(cp, "to", &ListOptions::new()).await?,
        &[&to[0]],
        "list of the target after the refused copy",
    )?;
    ensure_records(
        &list(cp, "from", &ListOptions::new()).await?,
        &[&from[1], &from[0]],
        "list of the source after the refused copy",
    )
}
