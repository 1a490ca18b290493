//! `delete_thread`: every namespace, checkpoint and pending write of one thread.

use std::sync::Arc;

use dashflow_checkpoint::{Checkpointer, ListOptions};

use crate::Result;
use crate::error::{Context, ensure, ensure_eq};
use crate::fixture::{ensure_chain, ensure_records, line, list, load, load_some, put, snapshot, write};

async fn delete_thread(cp: &dyn Checkpointer, thread: &str) -> Result<()> {
    cp.delete_thread(thread).await.context(|| format!("delete_thread of `{thread}`"))
}

/// After `delete_thread` nothing of the thread loads or lists, and it starts afresh: the
/// next put expects no head.
pub async fn removes_everything(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let root = line(cp, "t", "", "SDD").await?;
    let child = line(cp, "t", "child", "SD").await?;
    cp.put_writes("t", "", &root[2].checkpoint_id, vec![write("task", "w")])
        .await
        .context(|| "put_writes".to_owned())?;
    delete_thread(cp, "t").await?;
    ensure!(load(cp, "t", "", None).await?.is_none(), "the root namespace has a head after delete_thread");
    ensure!(load(cp, "t", "child", None).await?.is_none(), "namespace `child` has a head after delete_thread");
    for record in root.iter().chain(&child) {
        ensure!(
            load(cp, "t", &record.namespace, Some(&record.checkpoint_id)).await?.is_none(),
            "checkpoint {} still loads after delete_thread",
            record.checkpoint_id
        );
    }
    ensure_records(&list(cp, "t", &ListOptions::new()).await?, &[], "list after delete_thread")?;
    let fresh = snapshot("t", "", None);
    put(cp, &fresh, None).await?;
    let loaded = load_some(cp, "t", "", None).await?;
    ensure_chain(&loaded, &[&fresh], "latest of a deleted thread written again")?;
    ensure_eq!(loaded.pending_writes, Vec::new(), "pending writes of a deleted thread written again");
    Ok(())
}

/// Other threads keep their checkpoints, heads and pending writes.
pub async fn other_threads_are_untouched(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    line(cp, "doomed", "", "SD").await?;
    let kept = line(cp, "kept", "", "SD").await?;
    let writes = vec![write("task", "kept")];
    cp.put_writes("kept", "", &kept[1].checkpoint_id, writes.clone()).await.context(|| "put_writes".to_owned())?;
    delete_thread(cp, "doomed").await?;
    let loaded = load_some(cp, "kept", "", None).await?;
    ensure_chain(&loaded, &[&kept[0], &kept[1]], "latest of another thread")?;
    ensure_eq!(loaded.pending_writes, writes, "pending writes of another thread");
    ensure_records(&list(cp, "kept", &ListOptions::new()).await?, &[&kept[1], &kept[0]], "list of another thread")
}

/// Deleting a thread that does not exist succeeds and changes nothing.
pub async fn unknown_thread_is_a_no_op(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let kept = line(cp, "t", "", "S").await?;
    delete_thread(cp, "nobody").await?;
    ensure_records(&list(cp, "t", &ListOptions::new()).await?, &[&kept[0]], "list after deleting an unknown thread")
}

/// Thread ids match exactly: deleting `a_c` leaves `abc` and `a_cd`.
pub async fn thread_ids_match_exactly(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let abc = line(cp, "abc", "", "S").await?;
    let longer = line(cp, "a_cd", "", "S").await?;
    line(cp, "a_c", "", "S").await?;
    delete_thread(cp, "a_c").await?;
    delete_thread(cp, "a%").await?;
    delete_thread(cp, "ABC").await?;
    ensure_records(&list(cp, "abc", &ListOptions::new()).await?, &[&abc[0]], "list of `abc` after deleting `a_c`")?;
    ensure_records(
        &list(cp, "a_cd", &ListOptions::new()).await?,
        &[&longer[0]],
        "list of `a_cd` after deleting `a_c`",
    )?;
    ensure_records(&list(cp, "a_c", &ListOptions::new()).await?, &[], "list of the deleted `a_c`")
}
