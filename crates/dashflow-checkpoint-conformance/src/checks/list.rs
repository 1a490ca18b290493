//! `list`: a thread's checkpoints, newest first, filtered.

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointRecord, Checkpointer, ListOptions};
use serde_json::json;

use crate::Result;
use crate::fixture::{ensure_records, line, list, put, snapshot};

/// Newest first, every field as stored.
pub async fn newest_first(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let r = line(cp, "t", "", "SDDSD").await?;
    let listed = list(cp, "t", &ListOptions::new()).await?;
    ensure_records(&listed, &[&r[4], &r[3], &r[2], &r[1], &r[0]], "list of five checkpoints")
}

/// Without a namespace filter, every namespace's checkpoints come back, merged newest first.
pub async fn newest_first_across_namespaces(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let root = snapshot("t", "", None);
    put(cp, &root, None).await?;
    let child = snapshot("t", "child", None);
    put(cp, &child, None).await?;
    let root_next = snapshot("t", "", Some(&root));
    put(cp, &root_next, Some(&root)).await?;
    let listed = list(cp, "t", &ListOptions::new()).await?;
    ensure_records(&listed, &[&root_next, &child, &root], "list of two namespaces")
}

/// `before` keeps only checkpoints older than the given id.
pub async fn before(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let r = line(cp, "t", "", "SDDD").await?;
    let listed = list(cp, "t", &ListOptions::new().before(r[2].checkpoint_id.clone())).await?;
    ensure_records(&listed, &[&r[1], &r[0]], "list before the third checkpoint")?;
    let listed = list(cp, "t", &ListOptions::new().before(r[0].checkpoint_id.clone())).await?;
    ensure_records(&listed, &[], "list before the first checkpoint")
}

/// `limit` keeps the newest `limit` checkpoints.
pub async fn limit(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let r = line(cp, "t", "", "SDDD").await?;
    ensure_records(&list(cp, "t", &ListOptions::new().limit(2)).await?, &[&r[3], &r[2]], "list with limit 2")?;
    ensure_records(&list(cp, "t", &ListOptions::new().limit(1)).await?, &[&r[3]], "list with limit 1")?;
    ensure_records(&list(cp, "t", &ListOptions::new().limit(0)).await?, &[], "list with limit 0")?;
    let all: Vec<&CheckpointRecord> = r.iter().rev().collect();
    ensure_records(&list(cp, "t", &ListOptions::new().limit(100)).await?, &all, "list with limit 100")
}

/// A metadata filter keeps checkpoints whose metadata has every given entry, with JSON
/// equality (the number `1` is not the string `"1"`).
pub async fn metadata_filter(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let mut records: Vec<CheckpointRecord> = Vec::new();
    let tags = [("input", "a"), ("loop", "a"), ("loop", "b"), ("update", "a"), ("loop", "a")];
    for (index, (source, writer)) in tags.into_iter().enumerate() {
        let mut next = snapshot("t", "", records.last());
        next.metadata.insert("source".into(), json!(source));
        next.metadata.insert("writer".into(), json!(writer));
        next.metadata.insert("nested".into(), json!({"index": index, "even": index % 2 == 0}));
        put(cp, &next, records.last()).await?;
        records.push(next);
    }
    let r = &records;
    let by_source = list(cp, "t", &ListOptions::new().metadata("source", "loop")).await?;
    ensure_records(&by_source, &[&r[4], &r[2], &r[1]], "list with source = loop")?;
    let by_two = list(cp, "t", &ListOptions::new().metadata("source", "loop").metadata("writer", "a")).await?;
    ensure_records(&by_two, &[&r[4], &r[1]], "list with source = loop and writer = a")?;
    let by_nested = list(cp, "t", &ListOptions::new().metadata("nested", json!({"index": 3, "even": false}))).await?;
    ensure_records(&by_nested, &[&r[3]], "list with a nested object value")?;
    let by_number = list(cp, "t", &ListOptions::new().metadata("step", 1)).await?;
    ensure_records(&by_number, &[&r[2]], "list with step = 1 (a number)")?;
    let by_string = list(cp, "t", &ListOptions::new().metadata("step", "1")).await?;
    ensure_records(&by_string, &[], "list with step = \"1\" (a string)")?;
    let by_missing = list(cp, "t", &ListOptions::new().metadata("absent", "x")).await?;
    ensure_records(&by_missing, &[], "list with a key no checkpoint has")
}

/// A namespace filter keeps one namespace (`""` is the root's, not "all").
pub async fn namespace_filter(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let root = line(cp, "t", "", "SD").await?;
    let child = line(cp, "t", "child", "SD").await?;
    let grandchild = line(cp, "t", "child|grandchild", "S").await?;
    let listed = list(cp, "t", &ListOptions::new().namespace("child")).await?;
    ensure_records(&listed, &[&child[1], &child[0]], "list of namespace `child`")?;
    let listed = list(cp, "t", &ListOptions::new().namespace("")).await?;
    ensure_records(&listed, &[&root[1], &root[0]], "list of the root namespace")?;
    let listed = list(cp, "t", &ListOptions::new().namespace("child|grandchild")).await?;
    ensure_records(&listed, &[&grandchild[0]], "list of namespace `child|grandchild`")?;
    let listed = list(cp, "t", &ListOptions::new().namespace("nowhere")).await?;
    ensure_records(&listed, &[], "list of a namespace without checkpoints")
}

/// The limit counts checkpoints that pass every filter, not rows scanned.
pub async fn filters_combine_before_the_limit(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let mut records: Vec<CheckpointRecord> = Vec::new();
    for index in 0..8 {
        let mut next = snapshot("t", "", records.last());
        next.metadata.insert("parity".into(), json!(if index % 2 == 0 { "even" } else { "odd" }));
        put(cp, &next, records.last()).await?;
        records.push(next);
    }
    let other_namespace = line(cp, "t", "other", "SS").await?;
    let r = &records;
    let options =
        ListOptions::new().namespace("").metadata("parity", "even").before(r[6].checkpoint_id.clone()).limit(2);
    ensure_records(
        &list(cp, "t", &options).await?,
        &[&r[4], &r[2]],
        "list of even checkpoints before the 7th, limit 2",
    )?;
    let options = ListOptions::new().metadata("source", "input").limit(3);
    ensure_records(
        &list(cp, "t", &options).await?,
        &[&other_namespace[0], &r[0]],
        "list of input checkpoints of all namespaces, limit 3",
    )
}

/// A thread without checkpoints lists as empty, not as an error.
pub async fn unknown_thread_is_empty(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    line(cp, "t", "", "S").await?;
    ensure_records(&list(cp, "nobody", &ListOptions::new()).await?, &[], "list of an unknown thread")
}

/// Thread ids match exactly: no prefix, pattern (`%`, `_`) or case-insensitive matching.
pub async fn thread_ids_match_exactly(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let abc = line(cp, "abc", "", "S").await?;
    let pattern = line(cp, "a_c", "", "S").await?;
    let long = line(cp, "abcd", "", "S").await?;
    ensure_records(&list(cp, "abc", &ListOptions::new()).await?, &[&abc[0]], "list of thread `abc`")?;
    ensure_records(&list(cp, "a_c", &ListOptions::new()).await?, &[&pattern[0]], "list of thread `a_c`")?;
    ensure_records(&list(cp, "abcd", &ListOptions::new()).await?, &[&long[0]], "list of thread `abcd`")?;
    ensure_records(&list(cp, "a%", &ListOptions::new()).await?, &[], "list of thread `a%`")?;
    ensure_records(&list(cp, "ABC", &ListOptions::new()).await?, &[], "list of thread `ABC`")
}
