//! Records, checks and SQL probes the tests share.

use dashflow_checkpoint::{CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer, Metadata, now_ms};
use serde_json::json;
use sqlx::PgConnection;

/// A fresh schema for the named test, or a skip (`return`) when no server is configured.
macro_rules! database {
    ($test:literal) => {
        match dashflow_checkpoint_postgres::testing::TestDatabase::from_env($test).await {
            Some(database) => database,
            None => return,
        }
    };
}
pub(crate) use database;

/// A record of `kind` in `thread`/`namespace` continuing from `parent`, with a fresh id and
/// content (blob, metadata, next nodes) that no other record shares.
pub(crate) fn record(
    thread: &str,
    namespace: &str,
    parent: Option<&CheckpointRecord>,
    kind: CheckpointKind,
) -> CheckpointRecord {
    let checkpoint_id = CheckpointId::new();
    let step = parent.map_or(-1, |parent| parent.step + 1);
    let mut metadata = Metadata::new();
    metadata.insert("source".into(), json!(if parent.is_none() { "input" } else { "loop" }));
    metadata.insert("step".into(), json!(step));
    CheckpointRecord {
        thread_id: thread.into(),
        namespace: namespace.into(),
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

/// Puts a straight line of records into an empty namespace: `S` a snapshot, `D` a delta.
pub(crate) async fn line(
    checkpointer: &dyn Checkpointer,
    thread: &str,
    namespace: &str,
    kinds: &str,
) -> Vec<CheckpointRecord> {
    let mut records: Vec<CheckpointRecord> = Vec::new();
    for kind in kinds.chars() {
        let kind = if kind == 'S' { CheckpointKind::Snapshot } else { CheckpointKind::Delta };
        let parent = records.last();
        let next = record(thread, namespace, parent, kind);
        checkpointer.put(next.clone(), parent.map(|parent| &parent.checkpoint_id)).await.unwrap();
        records.push(next);
    }
    records
}

/// `len` deterministic bytes covering every byte value.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_be_bytes()[0]
        })
        .collect()
}

/// The committed head of a namespace, read directly from the table.
pub(crate) async fn committed_head(conn: &mut PgConnection, thread: &str, namespace: &str) -> Option<String> {
    sqlx::query_scalar("SELECT head_id FROM dashflow_checkpoint_heads WHERE thread_id = $1 AND namespace = $2")
        .bind(thread)
        .bind(namespace)
        .fetch_optional(conn)
        .await
        .unwrap()
}

/// Whether a checkpoint row is committed, read directly from the table.
pub(crate) async fn committed_record(conn: &mut PgConnection, thread: &str, id: &CheckpointId) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM dashflow_checkpoints WHERE thread_id = $1 AND checkpoint_id = $2)")
        .bind(thread)
        .bind(id.as_str())
        .fetch_one(conn)
        .await
        .unwrap()
}

/// Follows parent links from `head` through `records` and checks that they form one line
/// that holds every record: no record is the parent of two others, none is left over.
pub(crate) fn assert_linear(records: &[CheckpointRecord], head: &CheckpointId) {
    use std::collections::HashMap;
    let by_id: HashMap<&CheckpointId, &CheckpointRecord> =
        records.iter().map(|record| (&record.checkpoint_id, record)).collect();
    let mut children: HashMap<&CheckpointId, usize> = HashMap::new();
    for record in records {
        if let Some(parent) = &record.parent_id {
            *children.entry(parent).or_default() += 1;
        }
    }
    assert!(children.values().all(|&count| count == 1), "history forked: {children:?}");
    let mut walked = 0;
    let mut cursor = Some(head);
    while let Some(id) = cursor {
        let record = by_id.get(id).unwrap_or_else(|| panic!("the chain from the head reaches missing checkpoint {id}"));
        walked += 1;
        cursor = record.parent_id.as_ref();
    }
    assert_eq!(walked, records.len(), "records off the head's line");
}

/// Inserts, in an open transaction on `blocker`, a row with `record`'s key, so that a put of
/// `record` waits on it inside its own statement (after moving the head).
pub(crate) async fn hold_key_of(blocker: &mut PgConnection, record: &CheckpointRecord) {
    sqlx::query("BEGIN").execute(&mut *blocker).await.unwrap();
    sqlx::query(
        "INSERT INTO dashflow_checkpoints
            (thread_id, namespace, checkpoint_id, parent_id, step, kind, blob, metadata, next_nodes, created_at_ms)
         VALUES ($1, $2, $3, NULL, 0, 'snapshot', '', '{}', '[]', 0)",
    )
    .bind(&record.thread_id)
    .bind(&record.namespace)
    .bind(record.checkpoint_id.as_str())
    .execute(&mut *blocker)
    .await
    .unwrap();
}

/// The server session named `application_name` that waits on a lock, once there is one.
/// Polls `pg_stat_activity`: the server does not announce it.
pub(crate) async fn session_waiting_on_a_lock(observer: &mut PgConnection, application_name: &str) -> i32 {
    for _ in 0..100_000 {
        let waiting: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock' LIMIT 1",
        )
        .bind(application_name)
        .fetch_optional(&mut *observer)
        .await
        .unwrap();
        if let Some(pid) = waiting {
            return pid;
        }
    }
    panic!("the put never waited on the held key");
}
