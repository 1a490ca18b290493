//! [`MemoryCheckpointer`]: DashFlow checkpoints kept in process memory.
//!
//! For tests, examples and runs that need pause/resume and time travel within one process but
//! no durability across restarts. It implements the whole [`Checkpointer`] contract and runs
//! the `dashflow-checkpoint-conformance` suite like every other backend, so code tested against
//! it behaves the same on SQLite or PostgreSQL.
//!
//! All data lives behind one mutex that is held only for the duration of a map operation,
//! never across an `.await`. Clones share the same store, so a test can keep a handle to look
//! inside while a run writes through another.
//!
//! ```
//! use dashflow_checkpoint::{CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer, now_ms};
//! use dashflow_checkpoint_memory::MemoryCheckpointer;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let checkpointer = MemoryCheckpointer::new();
//! let record = CheckpointRecord {
//!     thread_id: "ticket-42".into(),
//!     namespace: String::new(),
//!     checkpoint_id: CheckpointId::new(),
//!     parent_id: None,
//!     step: -1,
//!     kind: CheckpointKind::Snapshot,
//!     blob: b"state".to_vec(),
//!     metadata: Default::default(),
//!     next_nodes: vec!["classify".into()],
//!     created_at_ms: now_ms(),
//! };
//! checkpointer.put(record.clone(), None).await?;
//! let loaded = checkpointer.load("ticket-42", "", None).await?.expect("the thread exists");
//! assert_eq!(loaded.head(), Some(&record));
//! # Ok::<(), dashflow_checkpoint::CheckpointError>(())
//! # }).unwrap();
//! ```
//!
//! Errors are [`dashflow_checkpoint::CheckpointError`] directly: memory cannot be unavailable,
//! so the only failures are `Conflict` and `Corrupt` (a parent cycle), and this crate needs no
//! error type of its own.
//!
//! This crate has no feature flags.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use dashflow_checkpoint::{
    CheckpointError, CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer, ListOptions, LoadedCheckpoint,
    PendingWrite, Result, ThreadListOptions, ThreadSummary,
};
use parking_lot::Mutex;

/// Checkpoints in process memory. Cheap to clone; clones share one store.
#[derive(Clone, Default)]
pub struct MemoryCheckpointer {
    store: Arc<Mutex<Store>>,
}

#[derive(Default)]
struct Store {
    threads: HashMap<String, Thread>,
    /// State schemas by fingerprint.
    schemas: HashMap<u64, Vec<u8>>,
}

impl Store {
    /// Runs `f` on the namespace, made if new. The names are copied only then: a write into a
    /// known namespace, the common case, allocates nothing to find it.
    fn in_namespace<R>(&mut self, thread_id: &str, namespace: &str, f: impl FnOnce(&mut Namespace) -> R) -> R {
        let thread = match self.threads.get_mut(thread_id) {
            Some(thread) => thread,
            None => self.threads.entry(thread_id.to_owned()).or_default(),
        };
        let namespace = match thread.namespaces.get_mut(namespace) {
            Some(namespace) => namespace,
            None => thread.namespaces.entry(namespace.to_owned()).or_default(),
        };
        f(namespace)
    }
}

#[derive(Clone, Default)]
struct Thread {
    namespaces: BTreeMap<String, Namespace>,
}

#[derive(Clone, Default)]
struct Namespace {
    /// The last checkpoint put; with forks this is not necessarily the greatest id.
    head: Option<CheckpointId>,
    checkpoints: BTreeMap<CheckpointId, CheckpointRecord>,
    /// Pending writes by the checkpoint they were written after, in the order stored.
    writes: HashMap<CheckpointId, Vec<PendingWrite>>,
}

impl Thread {
    fn is_empty(&self) -> bool {
        self.namespaces.values().all(|namespace| namespace.checkpoints.is_empty())
    }

    fn newest_created_at_ms(&self) -> Option<i64> {
        self.namespaces.values().flat_map(|namespace| namespace.checkpoints.values()).map(|r| r.created_at_ms).max()
    }

    /// The thread as `list_threads` shows it; `None` without a head in the root namespace.
    fn summary(&self, thread_id: &str) -> Option<ThreadSummary> {
        let root = self.namespaces.get("")?;
        let head = root.checkpoints.get(root.head.as_ref()?)?;
        let checkpoints = u64::try_from(root.checkpoints.len()).unwrap_or(u64::MAX);
        Some(ThreadSummary::new(
            thread_id.to_owned(),
            self.newest_created_at_ms()?,
            head.checkpoint_id.clone(),
            head.step,
            head.metadata.clone(),
            checkpoints,
        ))
    }

    fn retarget(&mut self, thread_id: &str) {
        for record in self.namespaces.values_mut().flat_map(|namespace| namespace.checkpoints.values_mut()) {
            record.thread_id = thread_id.to_owned();
        }
    }
}

impl Namespace {
    /// The chain that rebuilds `id`: follows parent links back to the nearest snapshot (or
    /// the oldest record still stored), then returns it oldest first.
    fn chain(&self, thread_id: &str, id: &CheckpointId) -> Result<Option<Vec<CheckpointRecord>>> {
        let Some(mut record) = self.checkpoints.get(id) else { return Ok(None) };
        let mut chain = vec![record.clone()];
        while record.kind == CheckpointKind::Delta {
            let Some(parent) = record.parent_id.as_ref().and_then(|parent| self.checkpoints.get(parent)) else {
                break;
            };
            if chain.len() > self.checkpoints.len() {
                return Err(CheckpointError::corrupt(format!(
                    "the parent links of checkpoint {id} of thread `{thread_id}` form a cycle"
                )));
            }
            chain.push(parent.clone());
            record = parent;
        }
        chain.reverse();
        Ok(Some(chain))
    }
}

fn spell(id: Option<&CheckpointId>) -> String {
    id.map_or_else(|| "none".to_owned(), ToString::to_string)
}

impl MemoryCheckpointer {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `alter` on the stored blob of checkpoint `id` (or, with `write_id`, of that
    /// pending write after it), in place; returns whether the blob exists. For tests that
    /// damage stored bytes, as the conformance suite's integrity checks do.
    #[doc(hidden)]
    pub fn alter_stored_blob(
        &self,
        thread_id: &str,
        namespace: &str,
        id: &CheckpointId,
        write_id: Option<&str>,
        alter: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let mut store = self.store.lock();
        let Some(namespace) = store.threads.get_mut(thread_id).and_then(|thread| thread.namespaces.get_mut(namespace))
        else {
            return false;
        };
        let blob = match write_id {
            None => namespace.checkpoints.get_mut(id).map(|record| &mut record.blob),
            Some(write_id) => namespace
                .writes
                .get_mut(id)
                .and_then(|writes| writes.iter_mut().find(|write| write.task_id == write_id))
                .map(|write| &mut write.blob),
        };
        blob.map(alter).is_some()
    }

    fn put_sync(&self, record: CheckpointRecord, expected_head: Option<&CheckpointId>) -> Result<()> {
        let mut store = self.store.lock();
        let namespace =
            store.threads.get(&record.thread_id).and_then(|thread| thread.namespaces.get(&record.namespace));
        let head = namespace.and_then(|namespace| namespace.head.as_ref());
        let exists = namespace.is_some_and(|namespace| namespace.checkpoints.contains_key(&record.checkpoint_id));
        // A stored checkpoint is never overwritten: the same id twice means two writers.
        if head != expected_head || exists {
            return Err(CheckpointError::Conflict {
                thread_id: record.thread_id,
                namespace: record.namespace,
                expected: spell(expected_head),
                actual: spell(head),
            });
        }
        // As `Store::in_namespace` does, written out: the record moves in while its names
        // are the keys looked up.
        let thread = match store.threads.get_mut(&record.thread_id) {
            Some(thread) => thread,
            None => store.threads.entry(record.thread_id.clone()).or_default(),
        };
        let namespace = match thread.namespaces.get_mut(&record.namespace) {
            Some(namespace) => namespace,
            None => thread.namespaces.entry(record.namespace.clone()).or_default(),
        };
        namespace.head = Some(record.checkpoint_id.clone());
        namespace.checkpoints.insert(record.checkpoint_id.clone(), record);
        Ok(())
    }

    fn put_writes_sync(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: &CheckpointId,
        writes: Vec<PendingWrite>,
    ) {
        let mut store = self.store.lock();
        store.in_namespace(thread_id, namespace, |namespace| {
            let stored = namespace.writes.entry(checkpoint_id.clone()).or_default();
            for write in writes {
                // A task's later write replaces its earlier one in place, keeping the stored order.
                match stored.iter_mut().find(|existing| existing.task_id == write.task_id) {
                    Some(existing) => *existing = write,
                    None => stored.push(write),
                }
            }
        });
    }

    fn load_sync(
        &self,
        thread_id: &str,
        namespace: &str,
        id: Option<&CheckpointId>,
    ) -> Result<Option<LoadedCheckpoint>> {
        let store = self.store.lock();
        let Some(namespace) = store.threads.get(thread_id).and_then(|thread| thread.namespaces.get(namespace)) else {
            return Ok(None);
        };
        let Some(id) = id.or(namespace.head.as_ref()) else { return Ok(None) };
        let Some(chain) = namespace.chain(thread_id, id)? else { return Ok(None) };
        let pending_writes = namespace.writes.get(id).cloned().unwrap_or_default();
        Ok(Some(LoadedCheckpoint { chain, pending_writes }))
    }

    fn list_sync(&self, thread_id: &str, options: &ListOptions) -> Vec<CheckpointRecord> {
        let store = self.store.lock();
        let Some(thread) = store.threads.get(thread_id) else { return Vec::new() };
        let mut records: Vec<&CheckpointRecord> = thread
            .namespaces
            .iter()
            .filter(|(name, _)| options.namespace.as_ref().is_none_or(|wanted| wanted == *name))
            .flat_map(|(_, namespace)| namespace.checkpoints.values())
            .filter(|record| options.matches(record))
            .collect();
        records.sort_unstable_by(|a, b| b.checkpoint_id.cmp(&a.checkpoint_id));
        records.into_iter().take(options.limit.unwrap_or(usize::MAX)).cloned().collect()
    }

    fn copy_thread_sync(&self, from: &str, to: &str) -> Result<()> {
        let mut store = self.store.lock();
        if let Some(target) = store.threads.get(to).filter(|thread| !thread.is_empty()) {
            let (namespace, head) = target
                .namespaces
                .iter()
                .find_map(|(name, namespace)| namespace.head.as_ref().map(|head| (name.clone(), spell(Some(head)))))
                .unwrap_or_default();
            return Err(CheckpointError::Conflict {
                thread_id: to.to_owned(),
                namespace,
                expected: spell(None),
                actual: head,
            });
        }
        let Some(mut copy) = store.threads.get(from).cloned() else { return Ok(()) };
        copy.retarget(to);
        store.threads.insert(to.to_owned(), copy);
        Ok(())
    }

    fn delete_before_sync(&self, thread_id: &str, namespace: &str, keep_from: &CheckpointId) -> u64 {
        let mut store = self.store.lock();
        let Some(namespace) = store.threads.get_mut(thread_id).and_then(|thread| thread.namespaces.get_mut(namespace))
        else {
            return 0;
        };
        // The head is never pruned, even if a fork left it with an older id than `keep_from`.
        let head = namespace.head.clone();
        let doomed = |id: &CheckpointId| id < keep_from && Some(id) != head.as_ref();
        let before = namespace.checkpoints.len();
        namespace.checkpoints.retain(|id, _| !doomed(id));
        namespace.writes.retain(|id, _| !doomed(id));
        u64::try_from(before - namespace.checkpoints.len()).unwrap_or(u64::MAX)
    }

    fn delete_idle_threads_sync(&self, cutoff_ms: i64) -> Vec<String> {
        let mut store = self.store.lock();
        let idle: HashSet<String> = store
            .threads
            .iter()
            .filter(|(_, thread)| thread.newest_created_at_ms().is_some_and(|newest| newest < cutoff_ms))
            .map(|(id, _)| id.clone())
            .collect();
        store.threads.retain(|id, _| !idle.contains(id));
        let mut idle: Vec<String> = idle.into_iter().collect();
        idle.sort_unstable();
        idle
    }
}

impl fmt::Debug for MemoryCheckpointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `try_lock`: formatting must never wait on (or deadlock with) a writer.
        let threads = self.store.try_lock().map(|store| store.threads.len());
        f.debug_struct("MemoryCheckpointer").field("threads", &threads).finish()
    }
}

#[async_trait]
impl Checkpointer for MemoryCheckpointer {
    async fn put(&self, record: CheckpointRecord, expected_head: Option<&CheckpointId>) -> Result<()> {
        self.put_sync(record, expected_head)
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
        self.put_writes_sync(thread_id, namespace, checkpoint_id, writes);
        Ok(())
    }

    async fn load(
        &self,
        thread_id: &str,
        namespace: &str,
        id: Option<&CheckpointId>,
    ) -> Result<Option<LoadedCheckpoint>> {
        self.load_sync(thread_id, namespace, id)
    }

    async fn list(&self, thread_id: &str, options: &ListOptions) -> Result<Vec<CheckpointRecord>> {
        Ok(self.list_sync(thread_id, options))
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<()> {
        self.store.lock().threads.remove(thread_id);
        Ok(())
    }

    async fn copy_thread(&self, from: &str, to: &str) -> Result<()> {
        self.copy_thread_sync(from, to)
    }

    async fn delete_before(&self, thread_id: &str, namespace: &str, keep_from: &CheckpointId) -> Result<u64> {
        Ok(self.delete_before_sync(thread_id, namespace, keep_from))
    }

    async fn delete_namespace(&self, thread_id: &str, namespace: &str) -> Result<u64> {
        let mut store = self.store.lock();
        let Some(thread) = store.threads.get_mut(thread_id) else { return Ok(0) };
        let removed = thread.namespaces.remove(namespace).map_or(0, |namespace| namespace.checkpoints.len());
        if thread.namespaces.is_empty() {
            store.threads.remove(thread_id);
        }
        Ok(u64::try_from(removed).unwrap_or(u64::MAX))
    }

    async fn delete_idle_threads(&self, cutoff_ms: i64) -> Result<Vec<String>> {
        Ok(self.delete_idle_threads_sync(cutoff_ms))
    }

    async fn list_threads(&self, options: &ThreadListOptions) -> Result<Vec<ThreadSummary>> {
        let summaries = {
            let store = self.store.lock();
            let wanted = |id: &String| options.prefix.as_ref().is_none_or(|prefix| id.starts_with(prefix.as_str()));
            store
                .threads
                .iter()
                .filter(|(id, _)| wanted(id))
                .filter_map(|(id, thread)| thread.summary(id))
                .collect::<Vec<_>>()
        };
        Ok(options.apply(summaries))
    }

    async fn put_schema(&self, fingerprint: u64, schema: Vec<u8>) -> Result<()> {
        self.store.lock().schemas.entry(fingerprint).or_insert(schema);
        Ok(())
    }

    async fn get_schema(&self, fingerprint: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.store.lock().schemas.get(&fingerprint).cloned())
    }

    async fn rewrite_as_snapshot(
        &self,
        thread_id: &str,
        namespace: &str,
        id: &CheckpointId,
        blob: Vec<u8>,
    ) -> Result<()> {
        let mut store = self.store.lock();
        let record = store
            .threads
            .get_mut(thread_id)
            .and_then(|thread| thread.namespaces.get_mut(namespace))
            .and_then(|namespace| namespace.checkpoints.get_mut(id))
            .ok_or_else(|| CheckpointError::NotFound { what: format!("checkpoint {id} of thread `{thread_id}`") })?;
        record.kind = CheckpointKind::Snapshot;
        record.blob = blob;
        Ok(())
    }
}
