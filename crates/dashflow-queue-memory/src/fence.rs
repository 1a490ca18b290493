//! The fenced checkpointer a run's owner writes through.

use std::sync::Arc;

use async_trait::async_trait;
use dashflow_checkpoint::{
    CheckpointError, CheckpointId, CheckpointRecord, Checkpointer, ListOptions, LoadedCheckpoint, PendingWrite, Result,
    ThreadListOptions, ThreadSummary,
};
use dashflow_queue::Lease;
use tokio::sync::MutexGuard;

use crate::queue::{Shared, State};

/// The queue's memory checkpointer, fenced by one lease: every write (put, batch, pending
/// writes, snapshot rewrite, deletion of old checkpoints, of a namespace or of the thread, a
/// copy into the thread) checks that the thread's fence epoch is still the lease's while
/// holding the queue's lock, and writes under that same lock, so no change of owner comes
/// between the check and the write. A stale epoch, or a put or pending write to another
/// thread, is a `Conflict` and stores nothing; deleting or copying into another thread, and
/// deleting idle threads, is `OutsideFence`: as on PostgreSQL.
pub(crate) struct FencedCheckpointer {
    shared: Arc<Shared>,
    thread_id: String,
    epoch: i64,
}

impl std::fmt::Debug for FencedCheckpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FencedCheckpointer").field("thread_id", &self.thread_id).field("epoch", &self.epoch).finish()
    }
}

impl FencedCheckpointer {
    pub(crate) fn new(shared: Arc<Shared>, lease: &Lease) -> Self {
        Self { shared, thread_id: lease.thread_id.clone(), epoch: lease.epoch }
    }

    /// Refuses a whole-thread operation on another thread than the lease's: it is beyond
    /// what the lease fences, and belongs to the unfenced checkpointer.
    fn within(&self, thread_id: &str, operation: &'static str) -> Result<()> {
        if thread_id == self.thread_id {
            return Ok(());
        }
        Err(CheckpointError::OutsideFence {
            operation,
            target: format!("thread `{thread_id}`"),
            fenced_thread: self.thread_id.clone(),
        })
    }

    /// The queue's lock, once the write to `thread_id`/`namespace` is found to be the lease
    /// holder's; the caller writes before dropping it.
    async fn fence(&self, thread_id: &str, namespace: &str) -> Result<MutexGuard<'_, State>> {
        if thread_id != self.thread_id {
            return Err(CheckpointError::Conflict {
                thread_id: thread_id.to_owned(),
                namespace: namespace.to_owned(),
                expected: format!("a lease on thread `{}`", self.thread_id),
                actual: format!("a write to thread `{thread_id}`"),
            });
        }
        let state = self.shared.state.lock().await;
        match state.fences.get(thread_id) {
            Some(epoch) if *epoch == self.epoch => Ok(state),
            found => Err(CheckpointError::Conflict {
                thread_id: thread_id.to_owned(),
                namespace: namespace.to_owned(),
                expected: format!("lease epoch {}", self.epoch),
                actual: found.map_or_else(|| "no fence".to_owned(), |epoch| format!("epoch {epoch}")),
            }),
        }
    }
}

#[async_trait]
impl Checkpointer for FencedCheckpointer {
    async fn put(&self, record: CheckpointRecord, expected_head: Option<&CheckpointId>) -> Result<()> {
        let _fenced = self.fence(&record.thread_id, &record.namespace).await?;
        self.shared.checkpointer.put(record, expected_head).await
    }

    async fn put_batch(&self, records: Vec<(CheckpointRecord, Option<CheckpointId>)>) -> Result<()> {
        // One check for the batch: nothing can move the fence while the lock is held.
        let Some((first, _)) = records.first() else { return Ok(()) };
        if let Some((stray, _)) = records.iter().find(|(record, _)| record.thread_id != self.thread_id) {
            // Refused before any lock: the lease is for another thread.
            return self.fence(&stray.thread_id, &stray.namespace).await.map(drop);
        }
        let _fenced = self.fence(&first.thread_id, &first.namespace).await?;
        self.shared.checkpointer.put_batch(records).await
    }

    fn writes_without_io(&self) -> bool {
        true
    }

    async fn put_writes(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: &CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<()> {
        let _fenced = self.fence(thread_id, namespace).await?;
        self.shared.checkpointer.put_writes(thread_id, namespace, checkpoint_id, writes).await
    }

    async fn load(
        &self,
        thread_id: &str,
        namespace: &str,
        id: Option<&CheckpointId>,
    ) -> Result<Option<LoadedCheckpoint>> {
        self.shared.checkpointer.load(thread_id, namespace, id).await
    }

    async fn list(&self, thread_id: &str, options: &ListOptions) -> Result<Vec<CheckpointRecord>> {
        self.shared.checkpointer.list(thread_id, options).await
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<()> {
        self.within(thread_id, "delete_thread")?;
        let _fenced = self.fence(thread_id, "").await?;
        self.shared.checkpointer.delete_thread(thread_id).await
    }

    /// Copies into the lease's thread only, fenced like a put (the source is only read, so it
    /// may be any thread); a copy into another thread is refused.
    async fn copy_thread(&self, from: &str, to: &str) -> Result<()> {
        self.within(to, "copy_thread")?;
        let _fenced = self.fence(to, "").await?;
        self.shared.checkpointer.copy_thread(from, to).await
    }

    async fn delete_before(&self, thread_id: &str, namespace: &str, keep_from: &CheckpointId) -> Result<u64> {
        let _fenced = self.fence(thread_id, namespace).await?;
        self.shared.checkpointer.delete_before(thread_id, namespace, keep_from).await
    }

    async fn rewrite_as_snapshot(
        &self,
        thread_id: &str,
        namespace: &str,
        id: &CheckpointId,
        blob: Vec<u8>,
    ) -> Result<()> {
        let _fenced = self.fence(thread_id, namespace).await?;
        self.shared.checkpointer.rewrite_as_snapshot(thread_id, namespace, id, blob).await
    }

    async fn delete_namespace(&self, thread_id: &str, namespace: &str) -> Result<u64> {
        let _fenced = self.fence(thread_id, namespace).await?;
        self.shared.checkpointer.delete_namespace(thread_id, namespace).await
    }

    async fn put_schema(&self, fingerprint: u64, schema: Vec<u8>) -> Result<()> {
        self.shared.checkpointer.put_schema(fingerprint, schema).await
    }

    async fn get_schema(&self, fingerprint: u64) -> Result<Option<Vec<u8>>> {
        self.shared.checkpointer.get_schema(fingerprint).await
    }

    async fn delete_idle_threads(&self, _cutoff_ms: i64) -> Result<Vec<String>> {
        Err(CheckpointError::OutsideFence {
            operation: "delete_idle_threads",
            target: "idle threads".to_owned(),
            fenced_thread: self.thread_id.clone(),
        })
    }

    async fn list_threads(&self, options: &ThreadListOptions) -> Result<Vec<ThreadSummary>> {
        self.shared.checkpointer.list_threads(options).await
    }
}
