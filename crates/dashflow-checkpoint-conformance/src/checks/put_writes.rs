//! `put_writes`: results of finished tasks of an unfinished superstep.

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointId, Checkpointer, PendingWrite};

use crate::Result;
use crate::error::{Context, ensure, ensure_eq};
use crate::fixture::{line, load_some, write};

async fn put_writes(
    cp: &dyn Checkpointer,
    thread: &str,
    namespace: &str,
    id: &CheckpointId,
    writes: &[PendingWrite],
) -> Result<()> {
    cp.put_writes(thread, namespace, id, writes.to_vec())
        .await
        .context(|| format!("put_writes of {} writes after {id} in thread `{thread}` ns `{namespace}`", writes.len()))
}

/// A later write of a task replaces its earlier one; other tasks' writes stay.
pub async fn same_task_id_replaces(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let records = line(cp, "t", "", "S").await?;
    let id = &records[0].checkpoint_id;
    put_writes(cp, "t", "", id, &[write("task-1", "first"), write("task-2", "other")]).await?;
    put_writes(cp, "t", "", id, &[write("task-1", "second")]).await?;
    let loaded = load_some(cp, "t", "", None).await?;
    let writes = &loaded.pending_writes;
    ensure_eq!(writes.len(), 2, "number of pending writes after task-1 wrote twice: {writes:?}");
    let task_1: Vec<&PendingWrite> = writes.iter().filter(|w| w.task_id == "task-1").collect();
    ensure!(task_1 == [&write("task-1", "second")], "task-1's second write did not replace its first: {writes:?}");
    ensure!(writes.contains(&write("task-2", "other")), "task-2's write went missing: {writes:?}");
    Ok(())
}

/// Writes come back in the order they were stored, across calls.
pub async fn order_is_kept(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let records = line(cp, "t", "", "S").await?;
    let id = &records[0].checkpoint_id;
    let first = [write("zeta", "1"), write("alpha", "2"), write("mid", "3")];
    let second = [write("beta", "4"), write("aaa", "5")];
    put_writes(cp, "t", "", id, &first).await?;
    put_writes(cp, "t", "", id, &second).await?;
    let loaded = load_some(cp, "t", "", None).await?;
    let expected: Vec<PendingWrite> = first.iter().chain(&second).cloned().collect();
    ensure_eq!(loaded.pending_writes, expected, "pending writes stored in two calls");
    Ok(())
}

/// Writes belong to their namespace: a subgraph's writes do not show in the parent's load.
pub async fn namespaces_are_separate(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let root = line(cp, "t", "", "S").await?;
    let child = line(cp, "t", "child", "S").await?;
    let child_writes = [write("child-task", "c")];
    put_writes(cp, "t", "child", &child[0].checkpoint_id, &child_writes).await?;
    let root_writes = [write("root-task", "r")];
    put_writes(cp, "t", "", &root[0].checkpoint_id, &root_writes).await?;
    ensure_eq!(load_some(cp, "t", "", None).await?.pending_writes, root_writes.to_vec(), "root namespace's writes");
    ensure_eq!(
        load_some(cp, "t", "child", None).await?.pending_writes,
        child_writes.to_vec(),
        "namespace `child`'s writes"
    );
    Ok(())
}
