//! Looking into a thread: its state now, its history, and edits to it (`update_state`).

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointId, ListOptions, LoadedCheckpoint, Metadata};
use dashflow_graph::GraphState;

use crate::durable::{CheckpointSettings, Durable, Restored, Source, checkpoint_error, rebuild};
use crate::run::position_after;
use crate::{CompiledGraph, Durability, Error, RunConfig};

/// A thread's state at one checkpoint.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StateSnapshot<S> {
    /// The state.
    pub state: S,
    /// The nodes that run next; empty when the run is complete.
    pub next: Vec<String>,
    /// The checkpoint.
    pub checkpoint_id: CheckpointId,
    /// The checkpoint it continues from.
    pub parent_id: Option<CheckpointId>,
    /// The superstep it was taken after.
    pub step: i64,
    /// Its metadata (`source`: input, loop, update or exit; `step`; ...).
    pub metadata: Metadata,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Pending interrupts: (task id, the value the node passed to `interrupt`).
    pub interrupts: Vec<(String, serde_json::Value)>,
}

impl<S: GraphState> CompiledGraph<S> {
    fn thread_settings<'a>(
        &'a self,
        config: &'a RunConfig,
        operation: &'static str,
    ) -> Result<(&'a CheckpointSettings, &'a Arc<str>), Error> {
        let settings = self.inner.checkpoints.as_ref().ok_or(Error::NoCheckpointer { operation })?;
        let thread_id = config.thread_id.as_ref().ok_or(Error::NoThread { operation })?;
        Ok((settings, thread_id))
    }

    async fn load_target(
        &self,
        config: &RunConfig,
        operation: &'static str,
    ) -> Result<Option<LoadedCheckpoint>, Error> {
        let (settings, thread_id) = self.thread_settings(config, operation)?;
        settings.checkpointer.load(thread_id, "", config.checkpoint_id.as_ref()).await.map_err(checkpoint_error)
    }

    /// The thread's state at its latest checkpoint (or `RunConfig::checkpoint_id`); `None`
    /// for a thread without checkpoints.
    pub async fn get_state(&self, config: &RunConfig) -> Result<Option<StateSnapshot<S>>, Error> {
        match self.load_target(config, "get_state").await? {
            Some(loaded) => snapshot_of(&loaded).map(Some),
            None => Ok(None),
        }
    }

    /// The thread's checkpoints, newest first, each with its state (at most `limit`).
    pub async fn get_state_history(
        &self,
        config: &RunConfig,
        limit: Option<usize>,
    ) -> Result<Vec<StateSnapshot<S>>, Error> {
        let (settings, thread_id) = self.thread_settings(config, "get_state_history")?;
        let mut options = ListOptions::new().namespace("");
        if let Some(limit) = limit {
            options = options.limit(limit);
        }
        let records = settings.checkpointer.list(thread_id, &options).await.map_err(checkpoint_error)?;
        let mut history = Vec::with_capacity(records.len());
        for record in records {
            let loaded = settings
                .checkpointer
                .load(thread_id, "", Some(&record.checkpoint_id))
                .await
                .map_err(checkpoint_error)?
                .ok_or_else(|| Error::ThreadNotFound {
                    thread_id: thread_id.to_string(),
                    checkpoint_id: Some(record.checkpoint_id.to_string()),
                })?;
            history.push(snapshot_of(&loaded)?);
        }
        Ok(history)
    }

    /// Applies `update` to the thread's state as a new checkpoint, as if node `as_node` had
    /// written it (the next nodes are then that node's successors); without `as_node` the
    /// next nodes stay as they were. From `RunConfig::checkpoint_id`, this forks history.
    /// Returns the new checkpoint's id.
    pub async fn update_state(
        &self,
        config: &RunConfig,
        update: S::Update,
        as_node: Option<&str>,
    ) -> Result<CheckpointId, Error> {
        let (settings, thread_id) = self.thread_settings(config, "update_state")?;
        let checkpointer = &settings.checkpointer;
        let head = checkpointer.load(thread_id, "", None).await.map_err(checkpoint_error)?;
        let head_id = head.as_ref().and_then(LoadedCheckpoint::head).map(|record| record.checkpoint_id.clone());
        let target = match &config.checkpoint_id {
            Some(id) => checkpointer.load(thread_id, "", Some(id)).await.map_err(checkpoint_error)?,
            None => head,
        };
        let loaded = target.ok_or_else(|| Error::ThreadNotFound {
            thread_id: thread_id.to_string(),
            checkpoint_id: config.checkpoint_id.as_ref().map(ToString::to_string),
        })?;
        let (mut state, position) = rebuild::<S>(&loaded)?;
        let target_id = loaded.head().map(|record| record.checkpoint_id.clone());
        state.apply(update.clone());
        let position = match as_node {
            Some(name) => {
                let graph = &self.inner.graph;
                let node = graph
                    .node_id(name)
                    .ok_or_else(|| Error::UnknownTarget { node: "update_state".into(), target: name.to_owned() })?;
                position_after(graph, &state, node, position)?
            }
            None => position,
        };
        let mut durable =
            Durable::new(settings.clone(), Arc::clone(thread_id), Durability::Sync, String::new(), target_id, head_id);
        durable.commit(Source::Update, &state, Some(&update), &position).await
    }
}

fn snapshot_of<S: GraphState>(loaded: &LoadedCheckpoint) -> Result<StateSnapshot<S>, Error> {
    let (state, _) = rebuild::<S>(loaded)?;
    let restored = Restored::<S>::decode(&loaded.pending_writes)?;
    let record =
        loaded.head().ok_or_else(|| Error::ThreadNotFound { thread_id: String::new(), checkpoint_id: None })?;
    let mut interrupts: Vec<_> = restored.interrupts.into_iter().collect();
    interrupts.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(StateSnapshot {
        state,
        next: record.next_nodes.clone(),
        checkpoint_id: record.checkpoint_id.clone(),
        parent_id: record.parent_id.clone(),
        step: record.step,
        metadata: record.metadata.clone(),
        created_at_ms: record.created_at_ms,
        interrupts,
    })
}
