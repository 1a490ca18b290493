//! Wrappers of the memory backend that each break one rule of the contract.

use std::collections::HashMap;

use async_trait::async_trait;
use dashflow_checkpoint::{
    CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer, ListOptions, LoadedCheckpoint, PendingWrite, Result,
    ThreadListOptions, ThreadSummary,
};
use dashflow_checkpoint_memory::MemoryCheckpointer;
use tokio::sync::Mutex;

/// The one rule a [`Broken`] checkpointer breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// None: an honest pass-through, the control group.
    Honest,
    /// Puts against whatever the head is, ignoring the head the writer expects.
    IgnoresExpectedHead,
    /// Lists oldest first.
    ListsOldestFirst,
    /// Builds chains from the nearest snapshot by id order instead of following parent links.
    ChainsByIdOrder,
    /// Accepts pending writes and forgets them.
    DropsPendingWrites,
    /// Loses the last byte of blobs over 64 KiB.
    TruncatesLargeBlobs,
    /// Copies over a thread that has checkpoints instead of refusing.
    CopiesOverNonEmptyThreads,
    /// Prunes `keep_from` along with the older checkpoints.
    DeletesKeepFromToo,
    /// Marks a rewritten checkpoint a snapshot but keeps its old blob.
    RewritesTheKindOnly,
    /// Serves every blob as it was first put, hiding later changes of the stored bytes.
    ServesBlobsAsFirstPut,
    /// Replaces a stored schema when the same fingerprint is stored again.
    ReplacesSchemas,
    /// Keeps the default of every optional operation (`NotSupported`) while its harness
    /// declares them all.
    LacksOptionalOperations,
    /// Lists threads oldest first.
    ListsThreadsOldestFirst,
}

/// The memory backend with one [`Fault`].
#[derive(Debug)]
pub(crate) struct Broken {
    inner: MemoryCheckpointer,
    fault: Fault,
    first_put: Mutex<HashMap<CheckpointId, Vec<u8>>>,
    replaced: Mutex<HashMap<u64, Vec<u8>>>,
}

impl Broken {
    pub(crate) fn new(fault: Fault) -> Self {
        Self { inner: MemoryCheckpointer::new(), fault, first_put: Mutex::default(), replaced: Mutex::default() }
    }

    /// `NotSupported` for an optional `operation` under [`Fault::LacksOptionalOperations`].
    fn lacking(&self, operation: &'static str) -> Result<()> {
        if self.fault == Fault::LacksOptionalOperations {
            return Err(dashflow_checkpoint::CheckpointError::NotSupported { operation });
        }
        Ok(())
    }

    /// The memory backend's testing hook, for the integrity checks.
    pub(crate) fn hook(&self) -> MemoryCheckpointer {
        self.inner.clone()
    }

    async fn namespace_oldest_first(&self, thread_id: &str, namespace: &str) -> Result<Vec<CheckpointRecord>> {
        let mut records = self.inner.list(thread_id, &ListOptions::new().namespace(namespace)).await?;
        records.reverse();
        Ok(records)
    }
}

const LARGE: usize = 64 * 1024;

#[async_trait]
impl Checkpointer for Broken {
    async fn put(&self, mut record: CheckpointRecord, expected_head: Option<&CheckpointId>) -> Result<()> {
        match self.fault {
            Fault::IgnoresExpectedHead => {
                let head = self.inner.load(&record.thread_id, &record.namespace, None).await?;
                let head = head.and_then(|loaded| loaded.head().map(|record| record.checkpoint_id.clone()));
                self.inner.put(record, head.as_ref()).await
            }
            Fault::TruncatesLargeBlobs => {
                if record.blob.len() > LARGE {
                    record.blob.pop();
                }
                self.inner.put(record, expected_head).await
            }
            Fault::ServesBlobsAsFirstPut => {
                self.first_put.lock().await.insert(record.checkpoint_id.clone(), record.blob.clone());
                self.inner.put(record, expected_head).await
            }
            _ => self.inner.put(record, expected_head).await,
        }
    }

    async fn put_writes(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: &CheckpointId,
        mut writes: Vec<PendingWrite>,
    ) -> Result<()> {
        match self.fault {
            Fault::DropsPendingWrites => Ok(()),
            Fault::TruncatesLargeBlobs => {
                for write in writes.iter_mut().filter(|write| write.blob.len() > LARGE) {
                    write.blob.pop();
                }
                self.inner.put_writes(thread_id, namespace, checkpoint_id, writes).await
            }
            _ => self.inner.put_writes(thread_id, namespace, checkpoint_id, writes).await,
        }
    }

    async fn load(
        &self,
        thread_id: &str,
        namespace: &str,
        id: Option<&CheckpointId>,
    ) -> Result<Option<LoadedCheckpoint>> {
        let Some(mut honest) = self.inner.load(thread_id, namespace, id).await? else { return Ok(None) };
        if self.fault == Fault::ServesBlobsAsFirstPut {
            let first_put = self.first_put.lock().await;
            for record in &mut honest.chain {
                if let Some(blob) = first_put.get(&record.checkpoint_id) {
                    record.blob.clone_from(blob);
                }
            }
        }
        if self.fault != Fault::ChainsByIdOrder {
            return Ok(Some(honest));
        }
        let Some(target) = honest.head().map(|record| record.checkpoint_id.clone()) else { return Ok(Some(honest)) };
        let mut records = self.namespace_oldest_first(thread_id, namespace).await?;
        records.retain(|record| record.checkpoint_id <= target);
        let start = records.iter().rposition(|record| record.kind == CheckpointKind::Snapshot).unwrap_or(0);
        Ok(Some(LoadedCheckpoint { chain: records.split_off(start), pending_writes: honest.pending_writes }))
    }

    async fn list(&self, thread_id: &str, options: &ListOptions) -> Result<Vec<CheckpointRecord>> {
        if self.fault != Fault::ListsOldestFirst {
            return self.inner.list(thread_id, options).await;
        }
        let mut unlimited = options.clone();
        unlimited.limit = None;
        let mut records = self.inner.list(thread_id, &unlimited).await?;
        records.reverse();
        records.truncate(options.limit.unwrap_or(usize::MAX));
        Ok(records)
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<()> {
        self.inner.delete_thread(thread_id).await
    }

    async fn copy_thread(&self, from: &str, to: &str) -> Result<()> {
        if self.fault == Fault::CopiesOverNonEmptyThreads {
            self.inner.delete_thread(to).await?;
        }
        self.inner.copy_thread(from, to).await
    }

    async fn delete_before(&self, thread_id: &str, namespace: &str, keep_from: &CheckpointId) -> Result<u64> {
        if self.fault != Fault::DeletesKeepFromToo {
            return self.inner.delete_before(thread_id, namespace, keep_from).await;
        }
        let records = self.namespace_oldest_first(thread_id, namespace).await?;
        let next = records.iter().map(|record| &record.checkpoint_id).find(|id| *id > keep_from);
        self.inner.delete_before(thread_id, namespace, next.unwrap_or(keep_from)).await
    }

    async fn delete_idle_threads(&self, cutoff_ms: i64) -> Result<Vec<String>> {
        self.inner.delete_idle_threads(cutoff_ms).await
    }

    async fn delete_namespace(&self, thread_id: &str, namespace: &str) -> Result<u64> {
        self.lacking("delete_namespace")?;
        self.inner.delete_namespace(thread_id, namespace).await
    }

    async fn list_threads(&self, options: &ThreadListOptions) -> Result<Vec<ThreadSummary>> {
        self.lacking("list_threads")?;
        if self.fault != Fault::ListsThreadsOldestFirst {
            return self.inner.list_threads(options).await;
        }
        let mut unpaged = options.clone();
        (unpaged.limit, unpaged.after) = (None, None);
        let mut threads = self.inner.list_threads(&unpaged).await?;
        threads.reverse();
        if let Some(after) = &options.after {
            let start = threads.iter().position(|thread| thread.cursor() == *after).map_or(0, |at| at + 1);
            threads.drain(..start);
        }
        threads.truncate(options.limit.unwrap_or(usize::MAX));
        Ok(threads)
    }

    async fn put_schema(&self, fingerprint: u64, schema: Vec<u8>) -> Result<()> {
        self.lacking("put_schema")?;
        match self.fault {
            // Keeps the last schema stored for a fingerprint instead of the first.
            Fault::ReplacesSchemas => {
                self.replaced.lock().await.insert(fingerprint, schema);
                Ok(())
            }
            _ => self.inner.put_schema(fingerprint, schema).await,
        }
    }

    async fn get_schema(&self, fingerprint: u64) -> Result<Option<Vec<u8>>> {
        self.lacking("get_schema")?;
        match self.fault {
            Fault::ReplacesSchemas => Ok(self.replaced.lock().await.get(&fingerprint).cloned()),
            _ => self.inner.get_schema(fingerprint).await,
        }
    }

    async fn rewrite_as_snapshot(
        &self,
        thread_id: &str,
        namespace: &str,
        id: &CheckpointId,
        blob: Vec<u8>,
    ) -> Result<()> {
        self.lacking("rewrite_as_snapshot")?;
        let blob = if self.fault == Fault::RewritesTheKindOnly {
            let loaded = self.inner.load(thread_id, namespace, Some(id)).await?;
            loaded.and_then(|loaded| loaded.head().map(|record| record.blob.clone())).unwrap_or(blob)
        } else {
            blob
        };
        self.inner.rewrite_as_snapshot(thread_id, namespace, id, blob).await
    }
}
