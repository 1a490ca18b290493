//! `load`: the latest or a given checkpoint, the chain that rebuilds it, its pending writes.

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointId, CheckpointKind, Checkpointer};

use crate::Result;
use crate::error::{Context, ensure, ensure_eq};
use crate::fixture::{delta, ensure_chain, line, load, load_some, put, record, snapshot, write};

/// `load` without an id returns the head with its chain.
pub async fn latest_is_the_head(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let records = line(cp, "t", "", "SDD").await?;
    let loaded = load_some(cp, "t", "", None).await?;
    ensure!(loaded.head() == Some(&records[2]), "the latest checkpoint is not the last one put");
    ensure_chain(&loaded, &[&records[0], &records[1], &records[2]], "latest")
}

/// `load` with an id returns that checkpoint, not the head.
pub async fn by_id(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let records = line(cp, "t", "", "SSS").await?;
    for record in &records {
        let loaded = load_some(cp, "t", "", Some(&record.checkpoint_id)).await?;
        ensure_chain(&loaded, &[record], "load by id of a snapshot")?;
    }
    Ok(())
}

/// An id the thread does not have loads as `None`, not as an error.
pub async fn unknown_id_is_none(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    line(cp, "t", "", "SD").await?;
    let unknown = CheckpointId::new();
    ensure!(load(cp, "t", "", Some(&unknown)).await?.is_none(), "an unknown checkpoint id loaded as Some");
    Ok(())
}

/// A thread with no checkpoints loads as `None`, latest or by id.
pub async fn unknown_thread_is_none(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let records = line(cp, "t", "", "S").await?;
    ensure!(load(cp, "nobody", "", None).await?.is_none(), "the latest of an unknown thread loaded as Some");
    ensure!(
        load(cp, "nobody", "", Some(&records[0].checkpoint_id)).await?.is_none(),
        "another thread's checkpoint loaded through an unknown thread"
    );
    Ok(())
}

/// A checkpoint is found only in its own namespace.
pub async fn id_of_another_namespace_is_none(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let records = line(cp, "t", "", "S").await?;
    ensure!(
        load(cp, "t", "child", Some(&records[0].checkpoint_id)).await?.is_none(),
        "a root-namespace checkpoint loaded through namespace `child`"
    );
    ensure!(load(cp, "t", "child", None).await?.is_none(), "an empty namespace has a latest checkpoint");
    Ok(())
}

/// The chain starts at the nearest snapshot at or before the checkpoint and lists the deltas
/// after it, oldest first.
pub async fn chain_from_last_snapshot(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let r = line(cp, "t", "", "SDDSDD").await?;
    let latest = load_some(cp, "t", "", None).await?;
    ensure_chain(&latest, &[&r[3], &r[4], &r[5]], "latest of S D D S D D")?;
    let third = load_some(cp, "t", "", Some(&r[2].checkpoint_id)).await?;
    ensure_chain(&third, &[&r[0], &r[1], &r[2]], "third of S D D S D D")?;
    let fifth = load_some(cp, "t", "", Some(&r[4].checkpoint_id)).await?;
    ensure_chain(&fifth, &[&r[3], &r[4]], "fifth of S D D S D D")
}

/// The chain of a snapshot is the snapshot alone.
pub async fn chain_of_a_snapshot_is_the_snapshot_alone(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let r = line(cp, "t", "", "SDDSDS").await?;
    for index in [0, 3, 5] {
        let loaded = load_some(cp, "t", "", Some(&r[index].checkpoint_id)).await?;
        ensure_chain(&loaded, &[&r[index]], &format!("snapshot {index} of S D D S D S"))?;
    }
    Ok(())
}

/// A fork (a record whose parent is in the past) starts a branch; chains follow parent links,
/// not id order, so records of the abandoned branch never appear in the fork's chain.
pub async fn chain_follows_parent_links_across_a_fork(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let r = line(cp, "t", "", "SDDD").await?;
    let fork = delta("t", "", &r[1]);
    put(cp, &fork, Some(&r[3])).await?;
    let after_fork = delta("t", "", &fork);
    put(cp, &after_fork, Some(&fork)).await?;
    let latest = load_some(cp, "t", "", None).await?;
    ensure_chain(&latest, &[&r[0], &r[1], &fork, &after_fork], "latest on a branch forked from the second record")?;
    let abandoned = load_some(cp, "t", "", Some(&r[3].checkpoint_id)).await?;
    ensure_chain(&abandoned, &[&r[0], &r[1], &r[2], &r[3]], "the last record of the abandoned branch")
}

/// A snapshot on another branch is not a base for a fork's chain, even when its id lies
/// between the fork and the fork's parent.
pub async fn chain_ignores_snapshots_of_other_branches(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let r = line(cp, "t", "", "SDSD").await?;
    let fork = delta("t", "", &r[1]);
    put(cp, &fork, Some(&r[3])).await?;
    let loaded = load_some(cp, "t", "", Some(&fork.checkpoint_id)).await?;
    ensure_chain(&loaded, &[&r[0], &r[1], &fork], "a fork from before a snapshot of the other branch")
}

/// Without any snapshot in its lineage, the chain starts at the root (the record without a
/// parent).
pub async fn chain_without_a_snapshot_starts_at_the_root(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let root = record("t", "", None, CheckpointKind::Delta);
    put(cp, &root, None).await?;
    let second = delta("t", "", &root);
    put(cp, &second, Some(&root)).await?;
    let third = delta("t", "", &second);
    put(cp, &third, Some(&second)).await?;
    let loaded = load_some(cp, "t", "", None).await?;
    ensure_chain(&loaded, &[&root, &second, &third], "a line of deltas only")
}

/// Pending writes come back with the checkpoint they were written after (and only with it),
/// in the order stored.
pub async fn pending_writes_come_with_their_checkpoint(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let first = snapshot("t", "", None);
    put(cp, &first, None).await?;
    let second = delta("t", "", &first);
    put(cp, &second, Some(&first)).await?;
    let after_second = vec![write("task-b", "b1"), write("task-a", "a1")];
    cp.put_writes("t", "", &second.checkpoint_id, after_second.clone())
        .await
        .context(|| "put_writes after the head".to_owned())?;
    let latest = load_some(cp, "t", "", None).await?;
    ensure_eq!(latest.pending_writes, after_second, "pending writes of the latest checkpoint");
    let earlier = load_some(cp, "t", "", Some(&first.checkpoint_id)).await?;
    ensure_eq!(earlier.pending_writes, Vec::new(), "pending writes of the checkpoint before them");
    let after_first = vec![write("task-c", "c1")];
    cp.put_writes("t", "", &first.checkpoint_id, after_first.clone())
        .await
        .context(|| "put_writes after an older checkpoint".to_owned())?;
    let earlier = load_some(cp, "t", "", Some(&first.checkpoint_id)).await?;
    ensure_eq!(earlier.pending_writes, after_first, "pending writes of the older checkpoint");
    let latest = load_some(cp, "t", "", Some(&second.checkpoint_id)).await?;
    ensure_eq!(latest.pending_writes, after_second, "pending writes of the head, by id");
    Ok(())
}
