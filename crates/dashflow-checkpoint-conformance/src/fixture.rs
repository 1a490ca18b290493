//! Records and operations the checks share, with failure messages that name what went wrong.

use dashflow_checkpoint::{
    CheckpointError, CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer, ListOptions, LoadedCheckpoint,
    Metadata, PendingWrite, now_ms,
};
use serde_json::json;

use crate::error::{Context, ensure};
use crate::{Error, Result};

/// A snapshot record with distinct content, continuing from `parent` (a fresh line when `None`).
pub(crate) fn snapshot(thread: &str, namespace: &str, parent: Option<&CheckpointRecord>) -> CheckpointRecord {
    record(thread, namespace, parent, CheckpointKind::Snapshot)
}

/// A delta record with distinct content, continuing from `parent`.
pub(crate) fn delta(thread: &str, namespace: &str, parent: &CheckpointRecord) -> CheckpointRecord {
    record(thread, namespace, Some(parent), CheckpointKind::Delta)
}

/// A record of `kind` with a fresh id, whose blob, metadata and next nodes all differ from
/// every other record's, so that a backend mixing up rows is caught.
pub(crate) fn record(
    thread: &str,
    namespace: &str,
    parent: Option<&CheckpointRecord>,
    kind: CheckpointKind,
) -> CheckpointRecord {
    let checkpoint_id = CheckpointId::new();
    let step = parent.map_or(-1, |parent| parent.step + 1);
    let mut metadata = Metadata::new();
    metadata.insert("source".to_owned(), json!(if parent.is_none() { "input" } else { "loop" }));
    metadata.insert("step".to_owned(), json!(step));
    CheckpointRecord {
        thread_id: thread.to_owned(),
        namespace: namespace.to_owned(),
        blob: format!("{} {checkpoint_id}", kind.as_str()).into_bytes(),
        next_nodes: vec![format!("node-{step}")],
        checkpoint_id,
        parent_id: parent.map(|parent| parent.checkpoint_id.clone()),
        step,
        kind,
        metadata,
        created_at_ms: now_ms(),
    }
}

/// A pending write of `task_id` with content that names it.
pub(crate) fn write(task_id: &str, content: &str) -> PendingWrite {
    PendingWrite { task_id: task_id.to_owned(), node: format!("node-of-{task_id}"), blob: content.as_bytes().to_vec() }
}

/// A short, readable name of a record for failure messages: kind, step and id.
pub(crate) fn label(record: &CheckpointRecord) -> String {
    let kind = match record.kind {
        CheckpointKind::Snapshot => "snapshot",
        CheckpointKind::Delta => "delta",
    };
    format!("{kind}(step {}, {}, ns `{}`)", record.step, record.checkpoint_id, record.namespace)
}

fn labels<'r>(records: impl IntoIterator<Item = &'r CheckpointRecord>) -> Vec<String> {
    records.into_iter().map(label).collect()
}

fn spell(id: Option<&CheckpointId>) -> String {
    id.map_or_else(|| "none".to_owned(), ToString::to_string)
}

/// Puts `record` expecting `expected` as the head; any error fails the check.
pub(crate) async fn put(
    checkpointer: &dyn Checkpointer,
    record: &CheckpointRecord,
    expected: Option<&CheckpointRecord>,
) -> Result<()> {
    put_expecting(checkpointer, record, expected.map(|record| &record.checkpoint_id)).await
}

/// Puts `record` expecting the head `expected`; any error fails the check.
pub(crate) async fn put_expecting(
    checkpointer: &dyn Checkpointer,
    record: &CheckpointRecord,
    expected: Option<&CheckpointId>,
) -> Result<()> {
    checkpointer.put(record.clone(), expected).await.context(|| {
        format!("put of {} into thread `{}` expecting head {}", label(record), record.thread_id, spell(expected))
    })
}

/// Puts a straight line of records into an empty namespace, each continuing from and
/// expecting the previous one; `kinds` spells them, `S` for a snapshot and `D` for a delta.
pub(crate) async fn line(
    checkpointer: &dyn Checkpointer,
    thread: &str,
    namespace: &str,
    kinds: &str,
) -> Result<Vec<CheckpointRecord>> {
    let mut records: Vec<CheckpointRecord> = Vec::new();
    for kind in kinds.chars() {
        let parent = records.last();
        let kind = if kind == 'S' { CheckpointKind::Snapshot } else { CheckpointKind::Delta };
        let next = record(thread, namespace, parent, kind);
        put(checkpointer, &next, parent).await?;
        records.push(next);
    }
    Ok(records)
}

/// Puts `record` expecting `expected`, which must fail with a `Conflict` that reports
/// `actual` as the head; then checks that the record was not stored.
pub(crate) async fn put_conflicts(
    checkpointer: &dyn Checkpointer,
    record: &CheckpointRecord,
    expected: Option<&CheckpointId>,
    actual: Option<&CheckpointId>,
) -> Result<()> {
    let result = checkpointer.put(record.clone(), expected).await;
    let what =
        format!("put of {} expecting head {} while the head is {}", label(record), spell(expected), spell(actual));
    match result {
        Ok(()) => return Err(contract(format!("{what} succeeded; it must fail with Conflict"))),
        Err(CheckpointError::Conflict {
            thread_id,
            namespace,
            expected: reported_expected,
            actual: reported_actual,
        }) => {
            let wanted = (record.thread_id.clone(), record.namespace.clone(), spell(expected), spell(actual));
            let got = (thread_id, namespace, reported_expected, reported_actual);
            ensure!(
                got == wanted,
                "{what} returned Conflict with (thread, namespace, expected, actual) = {got:?}; expected {wanted:?}"
            );
        }
        Err(other) => return Err(contract(format!("{what} returned `{other}`; it must fail with Conflict"))),
    }
    ensure!(
        load(checkpointer, &record.thread_id, &record.namespace, Some(&record.checkpoint_id)).await?.is_none(),
        "{what} failed with Conflict but stored the record anyway"
    );
    Ok(())
}

/// Loads, failing the check on an error.
pub(crate) async fn load(
    checkpointer: &dyn Checkpointer,
    thread: &str,
    namespace: &str,
    id: Option<&CheckpointId>,
) -> Result<Option<LoadedCheckpoint>> {
    checkpointer
        .load(thread, namespace, id)
        .await
        .context(|| format!("load of checkpoint {} of thread `{thread}` namespace `{namespace}`", spell(id)))
}

/// Loads a checkpoint that must exist.
pub(crate) async fn load_some(
    checkpointer: &dyn Checkpointer,
    thread: &str,
    namespace: &str,
    id: Option<&CheckpointId>,
) -> Result<LoadedCheckpoint> {
    load(checkpointer, thread, namespace, id).await?.ok_or_else(|| {
        contract(format!(
            "load of checkpoint {} of thread `{thread}` namespace `{namespace}` returned None, but it was stored",
            id.map_or_else(|| "latest".to_owned(), ToString::to_string)
        ))
    })
}

/// Lists, failing the check on an error.
pub(crate) async fn list(
    checkpointer: &dyn Checkpointer,
    thread: &str,
    options: &ListOptions,
) -> Result<Vec<CheckpointRecord>> {
    checkpointer.list(thread, options).await.context(|| format!("list of thread `{thread}` with {options:?}"))
}

/// Checks that `records` are exactly `expected`, in order and field by field.
pub(crate) fn ensure_records(actual: &[CheckpointRecord], expected: &[&CheckpointRecord], what: &str) -> Result<()> {
    let (got, wanted) = (labels(actual), labels(expected.iter().copied()));
    ensure!(got == wanted, "{what}: expected {wanted:#?}, got {got:#?}");
    for (actual, expected) in actual.iter().zip(expected) {
        if let Some(field) = differing_field(actual, expected) {
            return Err(contract(format!("{what}: {} came back with a different `{field}`", label(expected))));
        }
    }
    Ok(())
}

/// Checks that a loaded checkpoint's chain is exactly `expected`, oldest first.
pub(crate) fn ensure_chain(loaded: &LoadedCheckpoint, expected: &[&CheckpointRecord], what: &str) -> Result<()> {
    ensure_records(&loaded.chain, expected, &format!("{what} (chain, oldest first)"))
}

/// The first field in which two records differ, if any.
pub(crate) fn differing_field(actual: &CheckpointRecord, expected: &CheckpointRecord) -> Option<&'static str> {
    [
        ("thread_id", actual.thread_id == expected.thread_id),
        ("namespace", actual.namespace == expected.namespace),
        ("checkpoint_id", actual.checkpoint_id == expected.checkpoint_id),
        ("parent_id", actual.parent_id == expected.parent_id),
        ("step", actual.step == expected.step),
        ("kind", actual.kind == expected.kind),
        ("blob", actual.blob == expected.blob),
        ("metadata", actual.metadata == expected.metadata),
        ("next_nodes", actual.next_nodes == expected.next_nodes),
        ("created_at_ms", actual.created_at_ms == expected.created_at_ms),
    ]
    .into_iter()
    .find_map(|(field, same)| (!same).then_some(field))
}

/// `record` as it must come back from a copy into `thread`.
pub(crate) fn in_thread(record: &CheckpointRecord, thread: &str) -> CheckpointRecord {
    CheckpointRecord { thread_id: thread.to_owned(), ..record.clone() }
}

/// A contract violation found outside an `ensure!`.
#[track_caller]
pub(crate) fn contract(message: String) -> Error {
    let location = std::panic::Location::caller();
    Error::Contract { message, location: format!("{}:{}", location.file(), location.line()) }
}

/// `len` deterministic bytes that cover every byte value and look random.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            // xorshift64*: deterministic, so a failure reproduces.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_be_bytes()[0]
        })
        .collect()
}
