//! `put`: conditional on the head, one writer per thread and namespace.

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointId, CheckpointKind, Checkpointer, ListOptions, Metadata};
use serde_json::json;

use crate::Result;
use crate::error::ensure;
use crate::fixture::{
    delta, ensure_chain, ensure_records, line, list, load, load_some, put, put_conflicts, put_expecting, record,
    snapshot,
};

/// A put into an empty thread expects no head (`None`), and its record becomes the head.
pub async fn into_an_empty_thread_expecting_none(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let first = snapshot("t", "", None);
    put(cp, &first, None).await?;
    let loaded = load_some(cp, "t", "", None).await?;
    ensure_chain(&loaded, &[&first], "latest after the first put")
}

/// A put that names the current head succeeds and becomes the new head.
pub async fn with_the_current_head(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let records = line(cp, "t", "", "SDD").await?;
    let loaded = load_some(cp, "t", "", None).await?;
    ensure_chain(&loaded, &[&records[0], &records[1], &records[2]], "latest after three puts")?;
    let listed = list(cp, "t", &ListOptions::new()).await?;
    ensure_records(&listed, &[&records[2], &records[1], &records[0]], "list after three puts")
}

/// A put expecting a head that another put replaced fails with `Conflict` and stores nothing.
pub async fn conflict_when_head_moved(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let records = line(cp, "t", "", "SD").await?;
    let (first, second) = (&records[0], &records[1]);
    let stale = delta("t", "", first);
    put_conflicts(cp, &stale, Some(&first.checkpoint_id), Some(&second.checkpoint_id)).await?;
    let loaded = load_some(cp, "t", "", None).await?;
    ensure_chain(&loaded, &[first, second], "latest after the conflicting put")?;
    let listed = list(cp, "t", &ListOptions::new()).await?;
    ensure_records(&listed, &[second, first], "list after the conflicting put")
}

/// A put expecting `None` (a new thread) on a thread that has checkpoints is a `Conflict`.
pub async fn conflict_when_expecting_none_on_a_non_empty_thread(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let first = snapshot("t", "", None);
    put(cp, &first, None).await?;
    let second = snapshot("t", "", None);
    put_conflicts(cp, &second, None, Some(&first.checkpoint_id)).await?;
    let loaded = load_some(cp, "t", "", None).await?;
    ensure_chain(&loaded, &[&first], "latest after the conflicting put")
}

/// A put expecting some head on an empty thread is a `Conflict` (the actual head is `none`).
pub async fn conflict_when_expecting_a_head_on_an_empty_thread(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let imagined = CheckpointId::new();
    let first = snapshot("t", "", None);
    put_conflicts(cp, &first, Some(&imagined), None).await?;
    ensure!(load(cp, "t", "", None).await?.is_none(), "the thread has a head after a conflicting put into it");
    let listed = list(cp, "t", &ListOptions::new()).await?;
    ensure_records(&listed, &[], "list after the conflicting put")
}

/// A put never overwrites a stored checkpoint: putting an id that exists is a `Conflict`, even
/// when it names the current head, and the stored record keeps its content.
pub async fn conflict_when_the_id_is_already_stored(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let records = line(cp, "t", "", "SD").await?;
    let (first, second) = (&records[0], &records[1]);
    let mut again = delta("t", "", second);
    again.checkpoint_id = first.checkpoint_id.clone();
    put_conflicts_keeping(cp, &again, second).await?;
    let loaded = load_some(cp, "t", "", Some(&first.checkpoint_id)).await?;
    ensure_chain(&loaded, &[first], "the checkpoint whose id was put again")?;
    let latest = load_some(cp, "t", "", None).await?;
    ensure_chain(&latest, &[first, second], "latest after putting a stored id again")
}

/// Like `put_conflicts`, for a record whose id is stored (so it loads, with other content).
async fn put_conflicts_keeping(
    cp: &dyn Checkpointer,
    record: &dashflow_checkpoint::CheckpointRecord,
    head: &dashflow_checkpoint::CheckpointRecord,
) -> Result<()> {
    let result = cp.put(record.clone(), Some(&head.checkpoint_id)).await;
    ensure!(
        matches!(result, Err(ref error) if error.is_conflict()),
        "a put of an id that is already stored returned {result:?}; it must fail with Conflict"
    );
    Ok(())
}

/// Each namespace of a thread has its own head: puts into a subgraph's namespace neither
/// need nor move the parent's head.
pub async fn namespaces_have_independent_heads(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let root = snapshot("t", "", None);
    put(cp, &root, None).await?;
    let child = snapshot("t", "child", None);
    put(cp, &child, None).await?;
    let root_next = delta("t", "", &root);
    put(cp, &root_next, Some(&root)).await?;
    let child_next = delta("t", "child", &child);
    put(cp, &child_next, Some(&child)).await?;
    let crossed = delta("t", "child", &child_next);
    put_conflicts(cp, &crossed, Some(&root_next.checkpoint_id), Some(&child_next.checkpoint_id)).await?;
    ensure_chain(&load_some(cp, "t", "", None).await?, &[&root, &root_next], "latest of the root namespace")?;
    ensure_chain(&load_some(cp, "t", "child", None).await?, &[&child, &child_next], "latest of namespace `child`")
}

/// Threads are independent: a put into one thread neither needs nor moves another's head.
pub async fn threads_have_independent_heads(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let one = line(cp, "t1", "", "SD").await?;
    let two = line(cp, "t2", "", "SDD").await?;
    put_conflicts(cp, &delta("t2", "", &two[2]), Some(&one[1].checkpoint_id), Some(&two[2].checkpoint_id)).await?;
    ensure_chain(&load_some(cp, "t1", "", None).await?, &[&one[0], &one[1]], "latest of thread t1")?;
    ensure_chain(&load_some(cp, "t2", "", None).await?, &[&two[0], &two[1], &two[2]], "latest of thread t2")
}

/// A fork continues from a past checkpoint (its parent) but expects the current head: the
/// head check is about the writer, the parent about lineage.
pub async fn fork_names_a_past_parent_and_expects_the_head(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let records = line(cp, "t", "", "SDD").await?;
    let fork = delta("t", "", &records[0]);
    put_conflicts(cp, &fork, Some(&records[0].checkpoint_id), Some(&records[2].checkpoint_id)).await?;
    put(cp, &fork, Some(&records[2])).await?;
    let loaded = load_some(cp, "t", "", None).await?;
    ensure_chain(&loaded, &[&records[0], &fork], "latest after a fork from the first checkpoint")
}

/// The head is the checkpoint put last, even when its id sorts before the previous head's (ids
/// from hosts with skewed clocks): `load` of the latest and the head check both follow it.
pub async fn head_is_the_last_put_not_the_greatest_id(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let (early, late) = (CheckpointId::new(), CheckpointId::new());
    let mut first = snapshot("t", "", None);
    first.checkpoint_id = late;
    put(cp, &first, None).await?;
    let mut second = snapshot("t", "", Some(&first));
    second.checkpoint_id = early;
    put(cp, &second, Some(&first)).await?;
    ensure_chain(&load_some(cp, "t", "", None).await?, &[&second], "latest after putting a smaller id last")?;
    let third = delta("t", "", &second);
    put_conflicts(cp, &third, Some(&first.checkpoint_id), Some(&second.checkpoint_id)).await?;
    put(cp, &third, Some(&second)).await?;
    ensure_chain(&load_some(cp, "t", "", None).await?, &[&second, &third], "latest after continuing the smaller id")
}

/// Every field of a record comes back as it was put, through `load` and `list`.
pub async fn stores_every_field(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let first = snapshot("t", "", None);
    put(cp, &first, None).await?;
    let mut second = record("t", "", Some(&first), CheckpointKind::Delta);
    second.step = 41;
    second.created_at_ms = 1_700_000_000_123;
    second.next_nodes = vec!["billing".into(), "account".into(), "ünïcode ✓".into(), String::new()];
    second.metadata = Metadata::from_iter([
        ("source".to_owned(), json!("update")),
        ("writes".to_owned(), json!({"billing": {"amount": 12.5, "ok": true, "tags": ["a", "b"]}, "none": null})),
        ("step".to_owned(), json!(41)),
        ("big".to_owned(), json!(9_007_199_254_740_993_i64)),
        ("negative".to_owned(), json!(-7)),
        ("naïve key ✓".to_owned(), json!("quote \" and backslash \\")),
    ]);
    second.blob = b"\x00\x01binary\xff\xfe".to_vec();
    put(cp, &second, Some(&first)).await?;
    let loaded = load_some(cp, "t", "", Some(&second.checkpoint_id)).await?;
    ensure_chain(&loaded, &[&first, &second], "load of a record with every field set")?;
    let listed = list(cp, "t", &ListOptions::new()).await?;
    ensure_records(&listed, &[&second, &first], "list of a record with every field set")
}

/// Thread ids and namespaces are opaque strings: quotes, slashes, `%`, `_`, unicode and the
/// empty string all round-trip and stay distinct.
pub async fn odd_thread_and_namespace_names_round_trip(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let names = [
        ("it's \"quoted\"", ""),
        ("per%cent_under", "parent:child|1"),
        ("ünïcode/✓ thread", "ns with spaces"),
        ("", "empty thread id"),
        ("t", " "),
    ];
    let mut stored = Vec::new();
    for (thread, namespace) in names {
        let records = line(cp, thread, namespace, "SD").await?;
        stored.push(records);
    }
    for ((thread, namespace), records) in names.iter().zip(&stored) {
        let loaded = load_some(cp, thread, namespace, None).await?;
        ensure_chain(&loaded, &[&records[0], &records[1]], &format!("latest of thread `{thread}` ns `{namespace}`"))?;
        let listed = list(cp, thread, &ListOptions::new()).await?;
        ensure_records(&listed, &[&records[1], &records[0]], &format!("list of thread `{thread}`"))?;
    }
    let next = delta("t", " ", &stored[4][1]);
    put_expecting(cp, &next, Some(&stored[4][1].checkpoint_id)).await?;
    ensure!(load(cp, "t", "", None).await?.is_none(), "namespace ` ` and namespace `` were mixed up");
    Ok(())
}
