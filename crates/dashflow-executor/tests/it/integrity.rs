//! R25, first half: a changed byte anywhere in a stored blob, checkpoint or pending write,
//! through a real backend (SQLite in a temporary directory), is `Corrupt` naming the thread
//! and the checkpoint, for reads and resumes alike; never a state with altered values.

use std::path::Path;
use std::sync::Arc;

use crate::common::Compiled;
use dashflow_checkpoint::{CheckpointError, CheckpointId, Checkpointer, Codec, ListOptions};
use dashflow_checkpoint_sqlite::SqliteCheckpointer;
use dashflow_executor::{CompiledGraph, Error, RunConfig, RunStatus};
use dashflow_graph::{Command, END, NodeContext, NodeError, START, StateGraph};
use serde_json::json;

use crate::common::{Trail, TrailUpdate};

/// XORs byte `offset` of a stored blob with `mask` through a second connection: `write` names
/// a pending write's id, else the checkpoint's own blob is changed.
fn alter(path: &Path, checkpoint: &CheckpointId, write: Option<&str>, offset: usize, mask: u8) {
    let connection = rusqlite::Connection::open(path).unwrap();
    let (select, update) = match write {
        None => (
            "SELECT blob FROM checkpoints WHERE checkpoint_id = ?1 AND ?2 = ''",
            "UPDATE checkpoints SET blob = ?1 WHERE checkpoint_id = ?2 AND ?3 = ''",
        ),
        Some(_) => (
            "SELECT blob FROM pending_writes WHERE checkpoint_id = ?1 AND task_id = ?2",
            "UPDATE pending_writes SET blob = ?1 WHERE checkpoint_id = ?2 AND task_id = ?3",
        ),
    };
    let key = write.unwrap_or("");
    let mut blob: Vec<u8> =
        connection.query_row(select, rusqlite::params![checkpoint.as_str(), key], |row| row.get(0)).unwrap();
    blob[offset] ^= mask;
    let changed = connection.execute(update, rusqlite::params![blob, checkpoint.as_str(), key]).unwrap();
    assert_eq!(changed, 1);
}

/// The length of a stored blob.
fn blob_len(path: &Path, checkpoint: &CheckpointId, write: Option<&str>) -> usize {
    let connection = rusqlite::Connection::open(path).unwrap();
    let blob: Vec<u8> = match write {
        None => connection.query_row(
            "SELECT blob FROM checkpoints WHERE checkpoint_id = ?1",
            [checkpoint.as_str()],
            |row| row.get(0),
        ),
        Some(write) => connection.query_row(
            "SELECT blob FROM pending_writes WHERE checkpoint_id = ?1 AND task_id = ?2",
            [checkpoint.as_str(), write],
            |row| row.get(0),
        ),
    }
    .unwrap();
    blob.len()
}

/// Asserts that `error` is `Corrupt` naming `thread`, `checkpoint` and, for a pending write,
/// `write`, in its fields and in its message.
fn assert_corrupt_at(error: &Error, thread: &str, checkpoint: &CheckpointId, write: Option<&str>, what: &str) {
    let Error::Checkpoint(inner @ CheckpointError::Corrupt { .. }) = error else {
        panic!("{what}: expected Corrupt, got {error}");
    };
    let at = inner.location().unwrap_or_else(|| panic!("{what}: the error names no blob: {error}"));
    assert_eq!(
        (at.thread_id.as_str(), &at.checkpoint_id, at.write_id.as_deref()),
        (thread, checkpoint, write),
        "{what}"
    );
    let message = error.to_string();
    assert!(message.contains(thread) && message.contains(checkpoint.as_str()), "{what}: {message}");
}

/// START -> note -> END: writes a short string, the kind of value a changed byte would alter.
fn noting(checkpointer: Arc<dyn Checkpointer>, codec: Codec) -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("note", |_: Arc<Trail>| async { Ok(TrailUpdate::default().note("refund".to_owned())) })
        .add_edge(START, "note")
        .add_edge("note", END);
    graph.compiled().unwrap().with_checkpointer(checkpointer).with_codec(codec)
}

#[tokio::test]
async fn every_changed_byte_of_a_stored_checkpoint_is_corrupt_naming_thread_and_checkpoint() {
    for codec in [Codec::Bincode, Codec::Json] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("threads.db");
        let checkpointer: Arc<dyn Checkpointer> = Arc::new(SqliteCheckpointer::open(&path).await.unwrap());
        let app = noting(Arc::clone(&checkpointer), codec);
        let config = RunConfig::thread("ticket-7");
        app.invoke(Trail::default(), config.clone()).await.unwrap();
        let records = checkpointer.list("ticket-7", &ListOptions::new()).await.unwrap();
        let head = records[0].checkpoint_id.clone();
        for record in &records {
            let id = &record.checkpoint_id;
            for offset in 0..blob_len(&path, id, None) {
                alter(&path, id, None, offset, 0x01);
                let what = format!("{codec:?}: byte {offset} of checkpoint {id} changed");
                // The head's chain holds every record of this short thread.
                let error = app.get_state(&config).await.unwrap_err();
                assert_corrupt_at(&error, "ticket-7", id, None, &format!("{what}, get_state"));
                let error = app.resume(Command::new(), config.clone()).await.unwrap_err();
                assert_corrupt_at(&error, "ticket-7", id, None, &format!("{what}, resume"));
                let error = app.get_state_history(&config, None).await.unwrap_err();
                assert_corrupt_at(&error, "ticket-7", id, None, &format!("{what}, history"));
                alter(&path, id, None, offset, 0x01);
            }
        }
        let state = app.get_state(&config).await.unwrap().unwrap();
        assert_eq!((state.state.note.as_str(), state.checkpoint_id), ("refund", head), "{codec:?}");
    }
}

#[tokio::test]
async fn every_changed_byte_of_a_pending_write_is_corrupt_naming_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("threads.db");
    let checkpointer: Arc<dyn Checkpointer> = Arc::new(SqliteCheckpointer::open(&path).await.unwrap());
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("ask", |_: Arc<Trail>, ctx: NodeContext| async move {
            let answer = ctx.interrupt(json!("approve the refund?"))?;
            Ok::<_, NodeError>(TrailUpdate::default().note(answer.to_string()))
        })
        .add_edge(START, "ask")
        .add_edge("ask", END);
    let app = graph.compiled().unwrap().with_checkpointer(Arc::clone(&checkpointer));
    let config = RunConfig::thread("ticket-8");
    let paused = app.invoke(Trail::default(), config.clone()).await.unwrap();
    assert!(matches!(paused.status, RunStatus::Interrupted { .. }));
    let loaded = checkpointer.load("ticket-8", "", None).await.unwrap().unwrap();
    let head = loaded.head().unwrap().checkpoint_id.clone();
    let write = loaded.pending_writes[0].task_id.clone();
    for offset in 0..blob_len(&path, &head, Some(&write)) {
        alter(&path, &head, Some(&write), offset, 0x80);
        let what = format!("byte {offset} of pending write {write} changed");
        let error = app.get_state(&config).await.unwrap_err();
        assert_corrupt_at(&error, "ticket-8", &head, Some(&write), &format!("{what}, get_state"));
        let error = app.resume(Command::resume(json!("yes")), config.clone()).await.unwrap_err();
        assert_corrupt_at(&error, "ticket-8", &head, Some(&write), &format!("{what}, resume"));
        alter(&path, &head, Some(&write), offset, 0x80);
    }
    let done = app.resume(Command::resume(json!("yes")), config).await.unwrap();
    assert_eq!(done.state.note, "\"yes\"");
}
