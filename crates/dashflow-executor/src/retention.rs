//! Retention: pruning a thread to its last checkpoints, and deleting idle threads.

use std::collections::BTreeSet;
use std::time::Duration;

use dashflow_checkpoint::{CheckpointError, CheckpointId, Checkpointer, ListOptions, now_ms, seal};
use dashflow_graph::GraphState;

use crate::durable::{checkpoint_error, rebuild};
use crate::payload::SnapshotRef;
use crate::schema::schema_of;
use crate::{CompiledGraph, Error};

/// Checkpoints read per page while looking for subgraph namespaces.
const PAGE: usize = 512;

/// The subgraph namespaces of `thread_id` with checkpoints older than `cut`, read a page at a
/// time (a long thread's old checkpoints need not fit in memory at once).
async fn subgraph_namespaces_before(
    checkpointer: &dyn Checkpointer,
    thread_id: &str,
    cut: &CheckpointId,
) -> Result<BTreeSet<String>, Error> {
    let mut namespaces = BTreeSet::new();
    let mut before = cut.clone();
    loop {
        let options = ListOptions::new().before(before.clone()).limit(PAGE);
        let page = checkpointer.list(thread_id, &options).await.map_err(checkpoint_error)?;
        namespaces.extend(page.iter().filter(|record| !record.namespace.is_empty()).map(|r| r.namespace.clone()));
        match page.last() {
            Some(oldest) if page.len() == PAGE => before = oldest.checkpoint_id.clone(),
            _ => return Ok(namespaces),
        }
    }
}

/// Prunes a subgraph namespace at the parent's cut: a namespace with nothing newer (only runs
/// of deleted steps) goes whole, head included; otherwise what is older than the cut goes.
async fn prune_namespace(
    checkpointer: &dyn Checkpointer,
    thread_id: &str,
    namespace: &str,
    keep_from: &CheckpointId,
) -> Result<u64, Error> {
    let options = ListOptions::new().namespace(namespace).limit(1);
    let newest = checkpointer.list(thread_id, &options).await.map_err(checkpoint_error)?;
    if newest.first().is_some_and(|newest| newest.checkpoint_id < *keep_from) {
        match checkpointer.delete_namespace(thread_id, namespace).await {
            Ok(deleted) => return Ok(deleted),
            // The backend keeps each namespace's head: delete what it allows.
            Err(CheckpointError::NotSupported { .. }) => {}
            Err(error) => return Err(checkpoint_error(error)),
        }
    }
    checkpointer.delete_before(thread_id, namespace, keep_from).await.map_err(checkpoint_error)
}

impl<S: GraphState> CompiledGraph<S> {
    /// Keeps the newest `keep_last` checkpoints of a thread (at least one) and deletes the
    /// older ones with their pending writes; returns how many went.
    ///
    /// A kept checkpoint stored as a delta whose chain reaches back past the cut is first
    /// rewritten in place as a snapshot (the deltas are folded into it), so every kept
    /// checkpoint still loads. A backend that cannot rewrite keeps the older checkpoints its
    /// chains need instead.
    ///
    /// Subgraph namespaces are pruned at the same cut: a subgraph run checkpoints only while
    /// its parent's step runs, between the parent checkpoint the step started from and the
    /// next one, so the subgraph checkpoints older than the oldest kept parent checkpoint
    /// belong to runs of deleted parent steps (no resume or fork can reach them again), and
    /// the runs of kept steps are kept whole.
    pub async fn prune_thread(&self, thread_id: &str, keep_last: usize) -> Result<u64, Error> {
        let settings = self.inner.checkpoints.as_ref().ok_or(Error::NoCheckpointer { operation: "prune_thread" })?;
        let checkpointer = &settings.checkpointer;
        let options = ListOptions::new().namespace("").limit(keep_last.max(1));
        let kept = checkpointer.list(thread_id, &options).await.map_err(checkpoint_error)?;
        let Some(oldest_kept) = kept.last() else { return Ok(0) };
        let mut keep_from = oldest_kept.checkpoint_id.clone();
        let cut = keep_from.clone();
        // Oldest first: once one is a snapshot, the chains of newer ones stop there.
        for record in kept.iter().rev() {
            let loaded = checkpointer
                .load(thread_id, "", Some(&record.checkpoint_id))
                .await
                .map_err(checkpoint_error)?
                .ok_or_else(|| not_found(thread_id, &record.checkpoint_id))?;
            let Some(first) = loaded.chain.first() else { continue };
            if first.checkpoint_id >= cut {
                continue;
            }
            let (state, position) = rebuild::<S>(settings, &loaded).await?;
            let blob =
                seal(settings.codec, schema_of::<S>().fingerprint, &SnapshotRef { state: &state, position: &position })
                    .map_err(Error::Checkpoint)?;
            match checkpointer.rewrite_as_snapshot(thread_id, "", &record.checkpoint_id, blob).await {
                Ok(()) => {}
                Err(CheckpointError::NotSupported { .. }) => keep_from = keep_from.min(first.checkpoint_id.clone()),
                Err(error) => return Err(checkpoint_error(error)),
            }
        }
        let mut deleted = checkpointer.delete_before(thread_id, "", &keep_from).await.map_err(checkpoint_error)?;
        for namespace in subgraph_namespaces_before(checkpointer.as_ref(), thread_id, &keep_from).await? {
            deleted += prune_namespace(checkpointer.as_ref(), thread_id, &namespace, &keep_from).await?;
        }
        Ok(deleted)
    }

    /// Deletes every thread whose newest checkpoint is older than `idle_for`; returns their
    /// ids.
    pub async fn delete_idle_threads(&self, idle_for: Duration) -> Result<Vec<String>, Error> {
        let settings =
            self.inner.checkpoints.as_ref().ok_or(Error::NoCheckpointer { operation: "delete_idle_threads" })?;
        let idle_ms = i64::try_from(idle_for.as_millis()).unwrap_or(i64::MAX);
        settings.checkpointer.delete_idle_threads(now_ms().saturating_sub(idle_ms)).await.map_err(checkpoint_error)
    }
}

fn not_found(thread_id: &str, id: &CheckpointId) -> Error {
    Error::ThreadNotFound { thread_id: thread_id.to_owned(), checkpoint_id: Some(id.to_string()) }
}
