//! `delete_namespace`: removing the namespace of a subgraph run nothing can reach any more,
//! for retention. The operation is optional: a backend without it declares so, and these
//! trials are ignored for it (see [`crate::Capability`]); a `NotSupported` here fails them.

use std::sync::Arc;

use dashflow_checkpoint::{Checkpointer, ListOptions};

use crate::Result;
use crate::error::{Context, ensure, ensure_eq};
use crate::fixture::{ensure_records, line, list, load, load_some, put, snapshot, write};

/// How many checkpoints went.
async fn delete_namespace(cp: &dyn Checkpointer, thread: &str, namespace: &str) -> Result<u64> {
    cp.delete_namespace(thread, namespace)
        .await
        .context(|| format!("delete_namespace `{namespace}` of thread `{thread}`"))
}

/// The namespace's checkpoints, pending writes and head go, and nothing else: not the
/// thread's other namespaces, not the same namespace of another thread. A later put starts
/// the namespace afresh.
pub async fn removes_one_namespace_and_nothing_else(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let child = line(cp, "t", "child", "SDD").await?;
    cp.put_writes("t", "child", &child[2].checkpoint_id, vec![write("task", "gone")])
        .await
        .context(|| "put_writes".to_owned())?;
    let root = line(cp, "t", "", "SD").await?;
    let sibling = line(cp, "t", "sibling", "S").await?;
    let other = line(cp, "other", "child", "SD").await?;
    let deleted = delete_namespace(cp, "t", "child").await?;
    ensure_eq!(deleted, 3, "checkpoints deleted with the namespace");
    ensure!(load(cp, "t", "child", None).await?.is_none(), "the deleted namespace still loads");
    ensure_records(
        &list(cp, "t", &ListOptions::new().namespace("child")).await?,
        &[],
        "list of the deleted namespace",
    )?;
    ensure_records(
        &list(cp, "t", &ListOptions::new().namespace("")).await?,
        &[&root[1], &root[0]],
        "the root namespace",
    )?;
    ensure_records(
        &list(cp, "t", &ListOptions::new().namespace("sibling")).await?,
        &[&sibling[0]],
        "a sibling namespace",
    )?;
    ensure_records(&list(cp, "other", &ListOptions::new()).await?, &[&other[1], &other[0]], "another thread")?;
    ensure_eq!(delete_namespace(cp, "t", "child").await?, 0, "a second delete_namespace's count");

    // The namespace has no head any more: a put that expects none starts it again, with no
    // pending writes left over.
    let again = snapshot("t", "child", None);
    put(cp, &again, None).await?;
    let loaded = load_some(cp, "t", "child", None).await?;
    ensure!(loaded.pending_writes.is_empty(), "pending writes of the deleted namespace came back");
    Ok(())
}

/// Deleting a namespace the thread does not have (or of a thread that does not exist) deletes
/// nothing.
pub async fn unknown_namespace_deletes_nothing(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let root = line(cp, "t", "", "S").await?;
    ensure_eq!(delete_namespace(cp, "t", "nowhere").await?, 0, "deleted from an unknown namespace");
    ensure_eq!(delete_namespace(cp, "nobody", "child").await?, 0, "deleted from an unknown thread");
    ensure_records(&list(cp, "t", &ListOptions::new()).await?, &[&root[0]], "the thread after deleting nothing")
}
