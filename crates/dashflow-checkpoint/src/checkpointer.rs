//! The `Checkpointer` trait every backend implements.

use std::fmt;

use async_trait::async_trait;

use crate::{
    CheckpointId, CheckpointRecord, ListOptions, LoadedCheckpoint, PendingWrite, Result, ThreadListOptions,
    ThreadSummary,
};

/// Durable storage of checkpoints, over bytes.
///
/// Object-safe: runs hold an `Arc<dyn Checkpointer>`. Backends never see graph or state
/// types; they store records as given and answer the questions below. The contract, checked
/// for every backend by `dashflow-checkpoint-conformance`:
///
/// - A put names the head it expects (`None` for an empty thread/namespace). If another
///   writer moved the head, the put fails with `Conflict` and stores nothing: one writer per
///   thread, across tasks, processes and hosts.
/// - A put is atomic: after a crash either the whole record is visible or none of it.
/// - `list` returns newest first (by checkpoint id).
#[async_trait]
pub trait Checkpointer: Send + Sync + fmt::Debug + 'static {
    /// Stores `record` as the new head of its thread and namespace, if the head is still
    /// `expected_head`.
    async fn put(&self, record: CheckpointRecord, expected_head: Option<&CheckpointId>) -> Result<()>;

    /// Stores `records` in order, each as [`Checkpointer::put`] would with its expected head;
    /// stops at the first failure and returns it, keeping the records before it. Backends
    /// that can commit several records at once (one transaction) override it; the `Async`
    /// durability writer hands over everything queued in one call.
    async fn put_batch(&self, records: Vec<(CheckpointRecord, Option<CheckpointId>)>) -> Result<()> {
        for (record, expected) in records {
            self.put(record, expected.as_ref()).await?;
        }
        Ok(())
    }

    /// Stores writes of tasks that finished after checkpoint `checkpoint_id` while their
    /// superstep as a whole did not; later writes with the same task id replace earlier ones.
    async fn put_writes(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: &CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<()>;

    /// The checkpoint `id` (the head when `None`) with the chain of records needed to rebuild
    /// it and its pending writes; `None` when the thread, namespace or id does not exist.
    async fn load(
        &self,
        thread_id: &str,
        namespace: &str,
        id: Option<&CheckpointId>,
    ) -> Result<Option<LoadedCheckpoint>>;

    /// Checkpoints of a thread, newest first.
    async fn list(&self, thread_id: &str, options: &ListOptions) -> Result<Vec<CheckpointRecord>>;

    /// Deletes a thread: every namespace, checkpoint and pending write.
    async fn delete_thread(&self, thread_id: &str) -> Result<()>;

    /// Copies every checkpoint and pending write of thread `from` into the empty thread `to`
    /// (`Conflict` if `to` has checkpoints).
    async fn copy_thread(&self, from: &str, to: &str) -> Result<()>;

    /// Deletes the checkpoints of a thread's namespace older than `keep_from`, and their
    /// pending writes; returns how many checkpoints went. Used after a snapshot was written at
    /// `keep_from`, so nothing still needed is lost.
    async fn delete_before(&self, thread_id: &str, namespace: &str, keep_from: &CheckpointId) -> Result<u64>;

    /// Replaces the blob of checkpoint `id` with `blob`, a snapshot of the same state and
    /// position, and marks it a snapshot: the checkpoint's id, parent, step and metadata stay.
    /// Retention calls it before deleting what the checkpoint's delta chain needed. Backends
    /// that cannot do it keep the default, and retention then keeps more checkpoints instead.
    async fn rewrite_as_snapshot(
        &self,
        thread_id: &str,
        namespace: &str,
        id: &CheckpointId,
        blob: Vec<u8>,
    ) -> Result<()> {
        let _ = (thread_id, namespace, id, blob);
        Err(crate::CheckpointError::NotSupported { operation: "rewrite_as_snapshot" })
    }

    /// Deletes one namespace of a thread: its checkpoints, pending writes and head; returns
    /// how many checkpoints went. Retention calls it for the namespaces of subgraph runs that
    /// no kept checkpoint of their parent can reach. Backends that cannot do it keep the
    /// default, and retention then keeps those namespaces' newest checkpoints instead.
    async fn delete_namespace(&self, thread_id: &str, namespace: &str) -> Result<u64> {
        let _ = (thread_id, namespace);
        Err(crate::CheckpointError::NotSupported { operation: "delete_namespace" })
    }

    /// Stores `schema`, the encoded shape of the state type whose blobs carry `fingerprint`, so
    /// that a later build whose state type changed can read those blobs (see
    /// `dashflow_checkpoint::shape`). A fingerprint names one schema: storing it again is a
    /// no-op. Schemas belong to the database, not to a thread, and are never deleted. Backends
    /// that cannot store them keep the default, and a changed state type then cannot read old
    /// threads (a `VersionMismatch` that says so).
    async fn put_schema(&self, fingerprint: u64, schema: Vec<u8>) -> Result<()> {
        let _ = (fingerprint, schema);
        Err(crate::CheckpointError::NotSupported { operation: "put_schema" })
    }

    /// The schema stored for `fingerprint` by [`Checkpointer::put_schema`], if any.
    async fn get_schema(&self, fingerprint: u64) -> Result<Option<Vec<u8>>> {
        let _ = fingerprint;
        Err(crate::CheckpointError::NotSupported { operation: "get_schema" })
    }

    /// Whether a write ([`Checkpointer::put`], [`Checkpointer::put_writes`]) finishes without
    /// I/O, as in an in-memory store. `Async` durability then writes on the run's own task,
    /// in order, instead of handing each write to a writer task of the run's: for such a
    /// backend the hand-over costs more than the write. Backends that wait on a disk or a
    /// server keep the default, `false`.
    fn writes_without_io(&self) -> bool {
        false
    }

    /// Deletes every thread whose newest checkpoint was created before `cutoff_ms`
    /// (milliseconds since the Unix epoch); returns their ids.
    async fn delete_idle_threads(&self, cutoff_ms: i64) -> Result<Vec<String>>;

    /// The threads that have a checkpoint in their root namespace, newest first, filtered and
    /// paged by `options` (see [`ThreadListOptions`]). Backends that cannot list threads keep
    /// the default, which fails with `NotSupported`: an empty list would claim there are none.
    async fn list_threads(&self, options: &ThreadListOptions) -> Result<Vec<ThreadSummary>> {
        let _ = options;
        Err(crate::CheckpointError::NotSupported { operation: "list_threads" })
    }
}

/// A shared checkpointer is a checkpointer: `Arc<SqliteCheckpointer>` (or
/// `Arc<dyn Checkpointer>`) goes wherever one is taken, and every call reaches the shared one,
/// its own overrides of the optional operations included.
#[async_trait]
impl<T: Checkpointer + ?Sized> Checkpointer for std::sync::Arc<T> {
    async fn put(&self, record: CheckpointRecord, expected_head: Option<&CheckpointId>) -> Result<()> {
        (**self).put(record, expected_head).await
    }

    async fn put_batch(&self, records: Vec<(CheckpointRecord, Option<CheckpointId>)>) -> Result<()> {
        (**self).put_batch(records).await
    }

    fn writes_without_io(&self) -> bool {
        (**self).writes_without_io()
    }

    async fn put_writes(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: &CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<()> {
        (**self).put_writes(thread_id, namespace, checkpoint_id, writes).await
    }

    async fn load(
        &self,
        thread_id: &str,
        namespace: &str,
        id: Option<&CheckpointId>,
    ) -> Result<Option<LoadedCheckpoint>> {
        (**self).load(thread_id, namespace, id).await
    }

    async fn list(&self, thread_id: &str, options: &ListOptions) -> Result<Vec<CheckpointRecord>> {
        (**self).list(thread_id, options).await
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<()> {
        (**self).delete_thread(thread_id).await
    }

    async fn copy_thread(&self, from: &str, to: &str) -> Result<()> {
        (**self).copy_thread(from, to).await
    }

    async fn delete_before(&self, thread_id: &str, namespace: &str, keep_from: &CheckpointId) -> Result<u64> {
        (**self).delete_before(thread_id, namespace, keep_from).await
    }

    async fn rewrite_as_snapshot(
        &self,
        thread_id: &str,
        namespace: &str,
        id: &CheckpointId,
        blob: Vec<u8>,
    ) -> Result<()> {
        (**self).rewrite_as_snapshot(thread_id, namespace, id, blob).await
    }

    async fn delete_namespace(&self, thread_id: &str, namespace: &str) -> Result<u64> {
        (**self).delete_namespace(thread_id, namespace).await
    }

    async fn put_schema(&self, fingerprint: u64, schema: Vec<u8>) -> Result<()> {
        (**self).put_schema(fingerprint, schema).await
    }

    async fn get_schema(&self, fingerprint: u64) -> Result<Option<Vec<u8>>> {
        (**self).get_schema(fingerprint).await
    }

    async fn delete_idle_threads(&self, cutoff_ms: i64) -> Result<Vec<String>> {
        (**self).delete_idle_threads(cutoff_ms).await
    }

    async fn list_threads(&self, options: &ThreadListOptions) -> Result<Vec<ThreadSummary>> {
        (**self).list_threads(options).await
    }
}
