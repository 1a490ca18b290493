//! What a checkpointer stores.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{BlobLocation, CheckpointError, CheckpointId, unseal};

/// Whether a record's blob holds a whole state or one step's update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointKind {
    /// The whole state (and the run's position).
    Snapshot,
    /// One superstep's merged update, to replay onto the previous checkpoint.
    Delta,
}

impl CheckpointKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot",
            Self::Delta => "delta",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "snapshot" => Some(Self::Snapshot),
            "delta" => Some(Self::Delta),
            _ => None,
        }
    }
}

/// Free-form, filterable facts about a checkpoint (source, step, run id, writer node, ...).
pub type Metadata = BTreeMap<String, serde_json::Value>;

/// One checkpoint of one thread.
///
/// Backends store every field as given and never look inside `blob`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The thread (conversation, job) it belongs to.
    pub thread_id: String,
    /// `""` for the top-level graph; a subgraph's checkpoints use their own namespace.
    pub namespace: String,
    /// This checkpoint.
    pub checkpoint_id: CheckpointId,
    /// The checkpoint this one continues from (its lineage; a fork's parent is in the past).
    pub parent_id: Option<CheckpointId>,
    /// The superstep it was taken after (`-1` for the input before the first step).
    pub step: i64,
    /// Snapshot or delta.
    pub kind: CheckpointKind,
    /// The encoded content, sealed in the envelope of [`crate::seal`].
    pub blob: Vec<u8>,
    /// Filterable facts.
    pub metadata: Metadata,
    /// The nodes that run next from here; empty when the run is complete.
    pub next_nodes: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// The result of one finished task of a superstep that did not complete as a whole: stored
/// so that resuming re-runs only the tasks that failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingWrite {
    /// The task's id (stable across re-executions of the step).
    pub task_id: String,
    /// The task's node.
    pub node: String,
    /// The encoded task result.
    pub blob: Vec<u8>,
}

/// A checkpoint and everything needed to rebuild it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedCheckpoint {
    /// The nearest snapshot at or before the requested checkpoint, then every delta after it,
    /// oldest first; the last record is the requested checkpoint.
    pub chain: Vec<CheckpointRecord>,
    /// Writes of tasks that finished after the requested checkpoint, in the order stored.
    pub pending_writes: Vec<PendingWrite>,
}

impl CheckpointRecord {
    /// Where this record's blob is stored, for errors about it.
    pub fn location(&self) -> BlobLocation {
        BlobLocation::checkpoint(&self.thread_id, &self.namespace, &self.checkpoint_id)
    }

    /// Checks that the blob is a whole, unchanged DashFlow blob (see [`crate::unseal`]); a
    /// changed byte is `Corrupt` naming this record's thread and checkpoint.
    pub fn verify(&self) -> Result<(), CheckpointError> {
        unseal(&self.blob).map(drop).map_err(|error| error.at(|| self.location()))
    }
}

impl LoadedCheckpoint {
    /// The requested checkpoint (the chain's last record).
    pub fn head(&self) -> Option<&CheckpointRecord> {
        self.chain.last()
    }

    /// Checks every blob, the chain's and the pending writes' (see [`crate::unseal`]); the
    /// first changed byte found is `Corrupt` naming its thread, checkpoint and pending write.
    pub fn verify(&self) -> Result<(), CheckpointError> {
        self.chain.iter().try_for_each(CheckpointRecord::verify)?;
        let Some(head) = self.head() else { return Ok(()) };
        for write in &self.pending_writes {
            unseal(&write.blob).map_err(|error| {
                error.at(|| {
                    BlobLocation::pending_write(&head.thread_id, &head.namespace, &head.checkpoint_id, &write.task_id)
                })
            })?;
        }
        Ok(())
    }
}

/// Which checkpoints `list` returns.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ListOptions {
    /// Only this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// Only checkpoints older than this one.
    pub before: Option<CheckpointId>,
    /// At most this many.
    pub limit: Option<usize>,
    /// Only checkpoints whose metadata has all these entries.
    pub metadata: Metadata,
}

impl ListOptions {
    /// Everything, newest first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only `namespace`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Only checkpoints older than `id`.
    pub fn before(mut self, id: CheckpointId) -> Self {
        self.before = Some(id);
        self
    }

    /// At most `limit`.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Only checkpoints whose metadata has `key` = `value`.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Whether `record` passes the namespace, before and metadata filters (not the limit);
    /// for backends that filter in memory.
    pub fn matches(&self, record: &CheckpointRecord) -> bool {
        self.namespace.as_ref().is_none_or(|ns| *ns == record.namespace)
            && self.before.as_ref().is_none_or(|before| record.checkpoint_id < *before)
            && self.metadata.iter().all(|(key, value)| record.metadata.get(key) == Some(value))
    }
}
