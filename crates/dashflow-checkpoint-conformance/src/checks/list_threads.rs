//! `list_threads`: the threads a store holds, newest first, filtered and paged.

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointRecord, Checkpointer, ThreadListOptions, ThreadSummary};
use serde_json::json;

use crate::Result;
use crate::error::{Context, ensure, ensure_eq};
use crate::fixture::{delta, put, snapshot};

/// Puts a line of records (`S` snapshot, `D` delta) into `thread`/`namespace`, created at the
/// given times.
async fn aged(
    cp: &dyn Checkpointer,
    thread: &str,
    namespace: &str,
    times: &[i64],
    kinds: &str,
) -> Result<Vec<CheckpointRecord>> {
    let mut records: Vec<CheckpointRecord> = Vec::new();
    for (&created_at_ms, kind) in times.iter().zip(kinds.chars()) {
        let mut next = match (kind, records.last()) {
            ('D', Some(parent)) => delta(thread, namespace, parent),
            (_, parent) => snapshot(thread, namespace, parent),
        };
        next.created_at_ms = created_at_ms;
        put(cp, &next, records.last()).await?;
        records.push(next);
    }
    Ok(records)
}

async fn list_threads(cp: &dyn Checkpointer, options: &ThreadListOptions) -> Result<Vec<ThreadSummary>> {
    cp.list_threads(options).await.context(|| format!("list_threads with {options:?}"))
}

async fn ids(cp: &dyn Checkpointer, options: &ThreadListOptions) -> Result<Vec<String>> {
    Ok(list_threads(cp, options).await?.into_iter().map(|thread| thread.thread_id).collect())
}

fn owned(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|&id| id.to_owned()).collect()
}

/// Threads come newest first by the newest checkpoint of any of their namespaces, each with
/// its root namespace's head (id, step, metadata) and checkpoint count; a thread with
/// checkpoints only in subgraph namespaces is not listed.
pub async fn newest_first_with_the_head_of_the_root_namespace(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let a = aged(cp, "a", "", &[1_000, 2_000, 2_100], "SDD").await?;
    let b = aged(cp, "b", "", &[3_000], "S").await?;
    let c = aged(cp, "c", "", &[1_500], "S").await?;
    aged(cp, "c", "child", &[4_000, 4_100], "SD").await?;
    aged(cp, "only-child", "child", &[5_000], "S").await?;

    let threads = list_threads(cp, &ThreadListOptions::new()).await?;
    let listed: Vec<&str> = threads.iter().map(|thread| thread.thread_id.as_str()).collect();
    ensure_eq!(listed, vec!["c", "b", "a"], "threads, newest first");
    let expected = [(&c[0], 4_100, 1), (&b[0], 3_000, 1), (&a[2], 2_100, 3)];
    for (thread, (head, updated_at_ms, count)) in threads.iter().zip(expected) {
        let what = &thread.thread_id;
        ensure_eq!(thread.checkpoint_id, head.checkpoint_id, "the latest checkpoint of thread `{what}`");
        ensure_eq!(thread.step, head.step, "the step of thread `{what}`");
        ensure_eq!(thread.metadata, head.metadata, "the metadata of thread `{what}`");
        ensure_eq!(thread.updated_at_ms, updated_at_ms, "the update time of thread `{what}`");
        ensure_eq!(thread.checkpoints, count, "the root namespace's checkpoints of thread `{what}`");
    }
    Ok(())
}

/// The latest checkpoint is the head (the last put), not the greatest id: after a fork from
/// the past, the fork is listed.
pub async fn the_latest_checkpoint_is_the_head_after_a_fork(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let line = aged(cp, "t", "", &[1_000, 2_000], "SD").await?;
    let mut fork = delta("t", "", &line[0]);
    fork.created_at_ms = 3_000;
    put(cp, &fork, Some(&line[1])).await?;
    let threads = list_threads(cp, &ThreadListOptions::new()).await?;
    ensure_eq!(threads.len(), 1, "threads listed");
    ensure_eq!(threads[0].checkpoint_id, fork.checkpoint_id, "the latest checkpoint after a fork");
    ensure_eq!(threads[0].step, fork.step, "the step after a fork");
    ensure_eq!(threads[0].checkpoints, 3, "checkpoints of the forked thread");
    Ok(())
}

/// Id prefix, update times (since inclusive, before exclusive) and metadata of the latest
/// checkpoint filter, and combine.
pub async fn filters_by_prefix_time_and_metadata(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    aged(cp, "user-1", "", &[1_000], "S").await?;
    aged(cp, "user-2", "", &[2_000, 2_500], "SD").await?;
    aged(cp, "user-10", "", &[3_000], "S").await?;
    aged(cp, "users", "", &[4_000], "S").await?;
    aged(cp, "ticket-1", "", &[5_000], "S").await?;
    // A prefix is matched as text, never as a pattern.
    aged(cp, "user_%", "", &[6_000], "S").await?;

    let by_prefix = ThreadListOptions::new().prefix("user-");
    ensure_eq!(ids(cp, &by_prefix).await?, owned(&["user-10", "user-2", "user-1"]), "threads with prefix `user-`");
    let pattern = ThreadListOptions::new().prefix("user_");
    ensure_eq!(ids(cp, &pattern).await?, owned(&["user_%"]), "threads with prefix `user_`");
    let window = ThreadListOptions::new().updated_since_ms(2_500).updated_before_ms(5_000);
    ensure_eq!(ids(cp, &window).await?, owned(&["users", "user-10", "user-2"]), "threads updated in [2500, 5000)");
    // Every head but user-2's is the input snapshot; user-2's older snapshot matches too, but
    // only the head counts.
    let input = ThreadListOptions::new().metadata("source", json!("input"));
    let expected = owned(&["user_%", "ticket-1", "users", "user-10", "user-1"]);
    ensure_eq!(ids(cp, &input).await?, expected, "threads whose latest checkpoint has source = input");
    let combined = ThreadListOptions::new().prefix("user").metadata("step", json!(0)).updated_before_ms(6_000);
    ensure_eq!(ids(cp, &combined).await?, owned(&["user-2"]), "threads matching every filter");
    let none = ThreadListOptions::new().prefix("nobody");
    ensure_eq!(ids(cp, &none).await?, Vec::<String>::new(), "threads with an unknown prefix");
    Ok(())
}

/// A limit cuts the listing; the cursor of a page's last thread starts the next page, ties of
/// update time included, so the pages together are the whole listing once, in order.
pub async fn pages_by_cursor_and_limit(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    for (thread, at) in [("a", 1_000), ("b", 2_000), ("c", 2_000), ("d", 2_000), ("e", 3_000)] {
        aged(cp, thread, "", &[at], "S").await?;
    }
    let everything = ids(cp, &ThreadListOptions::new()).await?;
    ensure_eq!(everything, owned(&["e", "d", "c", "b", "a"]), "the whole listing");
    ensure_eq!(ids(cp, &ThreadListOptions::new().limit(0)).await?, Vec::<String>::new(), "a listing with limit 0");

    let mut paged = Vec::new();
    let mut options = ThreadListOptions::new().limit(2);
    for page_number in 1..=4 {
        let page = list_threads(cp, &options).await?;
        ensure!(page.len() <= 2, "page {page_number} has {} threads, over its limit of 2", page.len());
        let Some(last) = page.last() else { break };
        options = ThreadListOptions::new().limit(2).after(last.cursor());
        paged.extend(page.into_iter().map(|thread| thread.thread_id));
    }
    ensure_eq!(paged, everything, "the pages of two, together");

    // A cursor combines with the filters.
    let filtered =
        ThreadListOptions::new().updated_before_ms(3_000).after(dashflow_checkpoint::ThreadCursor::new(2_000, "c"));
    ensure_eq!(ids(cp, &filtered).await?, owned(&["b", "a"]), "threads after `c` updated before 3000");
    Ok(())
}

/// A deleted thread is no longer listed, nor one whose root namespace was deleted; an empty
/// store lists nothing.
pub async fn deleted_threads_are_not_listed(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    ensure_eq!(ids(cp, &ThreadListOptions::new()).await?, Vec::<String>::new(), "threads of an empty store");
    aged(cp, "kept", "", &[1_000], "S").await?;
    aged(cp, "deleted", "", &[2_000], "S").await?;
    aged(cp, "rootless", "", &[3_000], "S").await?;
    aged(cp, "rootless", "child", &[3_000], "S").await?;
    cp.delete_thread("deleted").await.context(|| "delete_thread `deleted`".to_owned())?;
    cp.delete_namespace("rootless", "").await.context(|| "delete_namespace `` of `rootless`".to_owned())?;
    ensure_eq!(ids(cp, &ThreadListOptions::new()).await?, owned(&["kept"]), "threads after the deletes");
    Ok(())
}
