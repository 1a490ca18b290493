//! Looking into a thread: its state now, its history, and edits to it (`update_state`), for
//! the top-level graph and for the subgraph runs checkpointed in the thread's namespaces.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dashflow_checkpoint::{CheckpointId, ListOptions, LoadedCheckpoint, Metadata, PendingWrite, open, seal};
use dashflow_graph::{GraphState, MergeableState, TaskId};

use crate::durable::{CheckpointSettings, Durable, Nesting, Source, checkpoint_error, rebuild};
use crate::evolve::Reader;
use crate::payload::{INTERRUPT, OUTPUT, Position, RESUME, split_write_id};
use crate::run::position_after;
use crate::schema::schema_of;
use crate::subgraph::{Lookup, PARENT_CHECKPOINT, STEP_START, find_run, metadata_id, step_start_of, unfinished};
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
    /// The tasks of the superstep that runs next, in order: one per entry of `next`.
    pub tasks: Vec<SnapshotTask>,
}

/// A task of the superstep that runs next from a checkpoint.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SnapshotTask {
    /// The task's id, `step:node:index`: what `NodeContext::task_id` says when it runs.
    pub id: String,
    /// The node it runs.
    pub node: String,
    /// The value it paused on with `interrupt`, waiting for `Command::resume`; for a subgraph
    /// node, the value its subgraph run paused on. `None` when the task is not paused.
    pub interrupt: Option<serde_json::Value>,
    /// The checkpoint namespace of the unfinished subgraph run under this task (paused at an
    /// interrupt, or stopped by a failure), which the task continues when it runs again from
    /// this checkpoint; `None` for a task that is not a subgraph, has not started its run, or
    /// has finished. Read it with [`CompiledGraph::get_subgraph_state`].
    ///
    /// A namespace belongs to a task id, which repeats when the thread runs again from
    /// `START` or is forked, so it can hold several runs: only a run started from this very
    /// checkpoint's step is named here, never a stale one.
    ///
    /// Filled by `get_state` and `get_subgraph_state`; `get_state_history` leaves it `None`.
    pub subgraph: Option<String>,
    /// The latest checkpoint of that subgraph run: the namespace's latest, unless a later run
    /// of the same task id came after it (the thread was forked back to this checkpoint).
    /// Pass it as `RunConfig::checkpoint_id` to read or edit exactly that run.
    pub subgraph_checkpoint_id: Option<CheckpointId>,
}

impl<S: GraphState> CompiledGraph<S> {
    /// The checkpoint settings and thread an inspection needs, or the error naming what is missing.
    fn thread_settings<'a>(
        &'a self,
        config: &'a RunConfig,
        operation: &'static str,
    ) -> Result<(&'a CheckpointSettings, &'a Arc<str>), Error> {
        let settings = self.inner.checkpoints.as_ref().ok_or(Error::NoCheckpointer { operation })?;
        let thread_id = config.thread_id.as_ref().ok_or(Error::NoThread { operation })?;
        Ok((settings, thread_id))
    }

    /// Namespace `namespace` of the thread `config` names.
    fn namespace<'a>(
        &'a self,
        config: &'a RunConfig,
        namespace: &'a str,
        operation: &'static str,
    ) -> Result<Namespace<'a>, Error> {
        let (settings, thread_id) = self.thread_settings(config, operation)?;
        Ok(Namespace { settings, thread_id, namespace })
    }

    /// The thread's state at its latest checkpoint (or `RunConfig::checkpoint_id`); `None`
    /// for a thread without checkpoints. Its tasks name the namespaces of subgraph runs paused
    /// under them, for [`CompiledGraph::get_subgraph_state`].
    pub async fn get_state(&self, config: &RunConfig) -> Result<Option<StateSnapshot<S>>, Error> {
        let at = self.namespace(config, "", "get_state")?;
        match at.load(config.checkpoint_id.as_ref()).await? {
            Some(loaded) => at.snapshot(&loaded).await.map(Some),
            None => Ok(None),
        }
    }

    /// The thread's checkpoints, newest first, each with its state (at most `limit`).
    pub async fn get_state_history(
        &self,
        config: &RunConfig,
        limit: Option<usize>,
    ) -> Result<Vec<StateSnapshot<S>>, Error> {
        self.namespace(config, "", "get_state_history")?.history(limit).await
    }

    /// Applies `update` to the thread's state as a new checkpoint, as if node `as_node` had
    /// written it (the next nodes are then that node's successors); without `as_node` the
    /// next nodes stay as they were, and so do their pending interrupts: a `resume` still
    /// answers them. From `RunConfig::checkpoint_id`, this forks history. Returns the new
    /// checkpoint's id.
    pub async fn update_state(
        &self,
        config: &RunConfig,
        update: S::Update,
        as_node: Option<&str>,
    ) -> Result<CheckpointId, Error> {
        let at = self.namespace(config, "", "update_state")?;
        let base = at.base(config.checkpoint_id.as_ref()).await?;
        let (mut state, position) = rebuild::<S>(at.settings, &base.loaded).await?;
        state.apply(update.clone());
        let Some(name) = as_node else {
            return at.write(&base, &state, &update, &position, Pending::Keep).await;
        };
        let graph = &self.inner.graph;
        let node = graph
            .node_id(name)
            .ok_or_else(|| Error::UnknownTarget { node: "update_state".into(), target: name.to_owned() })?;
        let position = position_after(graph, &state, node, position)?;
        at.write(&base, &state, &update, &position, Pending::Discard).await
    }

    /// The state of the subgraph run checkpointed in `namespace` of the thread, as a snapshot
    /// of its own state type `C`: `app.get_subgraph_state::<Research>(&config, ns)`.
    ///
    /// Under a checkpointed parent, each subgraph run checkpoints in its own namespace of the
    /// parent's thread: the parent task's id (`"2:research:0"`), below the parent's namespace
    /// for deeper levels (`"2:research:0|1:search:0"`). [`SnapshotTask::subgraph`] names the
    /// namespace of each unfinished subgraph run under a pending task, in the parent's
    /// snapshot and in each subgraph's snapshot in turn, so nested subgraphs are read the same way.
    /// Each checkpoint of a subgraph run names the parent checkpoint its task's step started
    /// from in its metadata, under `parent_checkpoint`.
    ///
    /// This is a method of the parent, typed by the caller, because the namespace belongs to
    /// the parent's thread and was written with the parent's checkpointer (the child graph
    /// needs none of its own), while the parent knows its nodes only as functions, not the
    /// state type a subgraph node runs on. A wrong `C` is a
    /// `CheckpointError::VersionMismatch` (every blob carries its state's schema fingerprint), never
    /// garbage; an unknown namespace is [`Error::SubgraphNotFound`].
    ///
    /// `RunConfig::checkpoint_id`, when set, names a checkpoint of that namespace (one of
    /// [`CompiledGraph::get_subgraph_state_history`]) instead of its latest.
    pub async fn get_subgraph_state<C: GraphState>(
        &self,
        config: &RunConfig,
        namespace: &str,
    ) -> Result<StateSnapshot<C>, Error> {
        let at = self.namespace(config, namespace, "get_subgraph_state")?;
        let from = config.checkpoint_id.as_ref();
        let loaded = at.load(from).await?.ok_or_else(|| at.not_found(from))?;
        at.snapshot(&loaded).await
    }

    /// The checkpoints of the subgraph runs in `namespace` of the thread, newest first, each
    /// with its state as `C` (at most `limit`). See [`CompiledGraph::get_subgraph_state`].
    ///
    /// A namespace holds every run of its parent task id: the thread run again from `START`,
    /// or forked, runs the task id again, and a run that does not continue an unfinished run
    /// of its own parent step starts a new one. Each run begins with a checkpoint of source
    /// `input` whose parent is the previous run's last checkpoint, and its checkpoints carry
    /// the same `parent_checkpoint` metadata.
    pub async fn get_subgraph_state_history<C: GraphState>(
        &self,
        config: &RunConfig,
        namespace: &str,
        limit: Option<usize>,
    ) -> Result<Vec<StateSnapshot<C>>, Error> {
        let at = self.namespace(config, namespace, "get_subgraph_state_history")?;
        let history = at.history(limit).await?;
        if history.is_empty() {
            return Err(at.not_found(None));
        }
        Ok(history)
    }

    /// Applies `update` to the state of the unfinished subgraph run in `namespace` of the
    /// thread (its latest checkpoint, or `RunConfig::checkpoint_id` of that namespace) as a
    /// new checkpoint of that namespace. When the parent resumes, the subgraph continues from
    /// the edited state; its next nodes and pending interrupts stay as they were, so
    /// `Command::resume` still answers them. A subgraph on the parent's own state type hands
    /// the edit to the parent with the rest of its run's update.
    ///
    /// Unlike [`CompiledGraph::update_state`] there is no `as_node`: routing as a node of the
    /// subgraph needs the subgraph's graph, which the parent does not hold. A run that has
    /// finished is [`Error::SubgraphFinished`], since nothing would read the edit; an unknown
    /// namespace is [`Error::SubgraphNotFound`]. Returns the new checkpoint's id.
    pub async fn update_subgraph_state<C: MergeableState>(
        &self,
        config: &RunConfig,
        namespace: &str,
        update: C::Update,
    ) -> Result<CheckpointId, Error> {
        let at = self.namespace(config, namespace, "update_subgraph_state")?;
        let base = at.base(config.checkpoint_id.as_ref()).await?;
        if !unfinished(&base.loaded) {
            return Err(Error::SubgraphFinished {
                thread_id: at.thread_id.to_string(),
                namespace: namespace.to_owned(),
            });
        }
        let (mut state, mut position) = rebuild::<C>(at.settings, &base.loaded).await?;
        state.apply(update.clone());
        position.composed = Some(at.compose::<C>(position.composed.as_deref(), update.clone())?);
        at.write(&base, &state, &update, &position, Pending::Keep).await
    }
}

/// One namespace of a thread: `""` for the top-level graph, else a subgraph run's.
#[derive(Clone, Copy)]
struct Namespace<'a> {
    settings: &'a CheckpointSettings,
    thread_id: &'a Arc<str>,
    namespace: &'a str,
}

/// The checkpoint an update applies to, and the head it must not race with.
struct Base {
    loaded: LoadedCheckpoint,
    head_id: Option<CheckpointId>,
}

/// What happens to the pending interrupts (and answers so far) of the checkpoint an update
/// applies to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The same tasks run next: their interrupts still wait for an answer.
    Keep,
    /// The next tasks are new ones: nothing of the old ones is pending.
    Discard,
}

impl Namespace<'_> {
    async fn load(&self, id: Option<&CheckpointId>) -> Result<Option<LoadedCheckpoint>, Error> {
        self.settings.checkpointer.load(self.thread_id, self.namespace, id).await.map_err(checkpoint_error)
    }

    /// The error for a checkpoint (or any checkpoint) this namespace does not have.
    fn not_found(&self, checkpoint_id: Option<&CheckpointId>) -> Error {
        let thread_id = self.thread_id.to_string();
        let checkpoint_id = checkpoint_id.map(ToString::to_string);
        if self.namespace.is_empty() {
            Error::ThreadNotFound { thread_id, checkpoint_id }
        } else {
            Error::SubgraphNotFound { thread_id, namespace: self.namespace.to_owned(), checkpoint_id }
        }
    }

    /// The snapshot of `loaded`, with the namespace of the unfinished subgraph run under each
    /// of its tasks.
    async fn snapshot<T: GraphState>(&self, loaded: &LoadedCheckpoint) -> Result<StateSnapshot<T>, Error> {
        let mut snapshot = snapshot_of::<T>(self.settings, loaded).await?;
        if snapshot.tasks.is_empty() {
            return Ok(snapshot);
        }
        // The rule a subgraph run names its namespace by.
        let nesting = Nesting {
            settings: self.settings.clone(),
            namespace: self.namespace.to_owned(),
            durability: Durability::Sync,
        };
        // The step these tasks run in, when the run continues from `loaded`, starts under this.
        let step_start = step_start_of(loaded)?;
        let finished = finished_tasks(loaded);
        for task in snapshot.tasks.iter_mut().filter(|task| !finished.contains(task.id.as_str())) {
            let namespace = nesting.child_namespace(&task.id);
            // The same test a re-run task applies before it continues its subgraph run.
            let checkpointer = &*self.settings.checkpointer;
            let found =
                find_run(checkpointer, self.thread_id, &namespace, step_start.as_ref(), Lookup::BehindHead).await?;
            if let Some(run) = found.run.filter(unfinished) {
                task.subgraph_checkpoint_id = run.head().map(|record| record.checkpoint_id.clone());
                task.subgraph = Some(namespace);
            }
        }
        Ok(snapshot)
    }

    /// The namespace's checkpoints, newest first, each with its state (at most `limit`).
    async fn history<T: GraphState>(&self, limit: Option<usize>) -> Result<Vec<StateSnapshot<T>>, Error> {
        let mut options = ListOptions::new().namespace(self.namespace);
        if let Some(limit) = limit {
            options = options.limit(limit);
        }
        let records = self.settings.checkpointer.list(self.thread_id, &options).await.map_err(checkpoint_error)?;
        let mut history = Vec::with_capacity(records.len());
        for record in records {
            let id = Some(&record.checkpoint_id);
            let loaded = self.load(id).await?.ok_or_else(|| self.not_found(id))?;
            history.push(snapshot_of(self.settings, &loaded).await?);
        }
        Ok(history)
    }

    /// Loads the checkpoint an update applies to: `from`, else the head.
    async fn base(&self, from: Option<&CheckpointId>) -> Result<Base, Error> {
        let head = self.load(None).await?;
        let head_id = head.as_ref().and_then(LoadedCheckpoint::head).map(|record| record.checkpoint_id.clone());
        let target = match from {
            Some(id) => self.load(Some(id)).await?,
            None => head,
        };
        let loaded = target.ok_or_else(|| self.not_found(from))?;
        Ok(Base { loaded, head_id })
    }

    /// Writes `state`, made by applying `update` to `base`, as a new checkpoint after it.
    async fn write<T: GraphState>(
        &self,
        base: &Base,
        state: &T,
        update: &T::Update,
        position: &Position<T>,
        pending: Pending,
    ) -> Result<CheckpointId, Error> {
        let target_id = base.loaded.head().map(|record| record.checkpoint_id.clone());
        let mut durable = Durable::new(
            self.settings.clone(),
            Arc::clone(self.thread_id),
            Durability::Sync,
            String::new(),
            target_id,
            base.head_id.clone(),
        )
        .in_namespace(self.namespace.to_owned());
        if let Some(record) = base.loaded.head() {
            // The edit stays in the subgraph run it edits, and, when the same tasks run next,
            // in the parent step their subgraph runs started under.
            durable.tag(PARENT_CHECKPOINT, metadata_id(record, PARENT_CHECKPOINT)?.as_ref());
            if pending == Pending::Keep {
                durable.tag(STEP_START, step_start_of(&base.loaded)?.as_ref());
            }
        }
        let id = durable.commit(Source::Update, state, Some(update), position).await?;
        let kept: Vec<PendingWrite> = match pending {
            Pending::Keep => base.loaded.pending_writes.iter().filter(|write| awaits_answer(write)).cloned().collect(),
            Pending::Discard => Vec::new(),
        };
        if !kept.is_empty() {
            // Interrupts and answers are keyed by task id, which the new checkpoint shares.
            durable.put_writes(kept).await?;
        }
        Ok(id)
    }

    /// Folds `update` into the sealed update of a subgraph run so far, so that a subgraph on
    /// its parent's state hands an edit of its state to the parent too. Subgraphs with their
    /// own state type never read it.
    fn compose<T: MergeableState>(&self, composed: Option<&[u8]>, update: T::Update) -> Result<Vec<u8>, Error> {
        let update = match composed {
            Some(blob) => {
                let mut composed: T::Update = open(blob, schema_of::<T>().fingerprint).map_err(Error::Checkpoint)?;
                T::merge(&mut composed, update);
                composed
            }
            None => update,
        };
        seal(self.settings.codec, schema_of::<T>().fingerprint, &update).map_err(Error::Checkpoint)
    }
}

/// The tasks whose output a checkpoint's pending writes hold: they do not run again.
fn finished_tasks(loaded: &LoadedCheckpoint) -> HashSet<&str> {
    loaded
        .pending_writes
        .iter()
        .filter_map(|write| split_write_id(&write.task_id))
        .filter_map(|(task_id, kind)| (kind == OUTPUT).then_some(task_id))
        .collect()
}

/// Whether a pending write is an interrupt, or an answer to one: state of the next tasks that
/// an edit of the state does not change. Finished tasks' outputs are not: they read the old state.
fn awaits_answer(write: &PendingWrite) -> bool {
    matches!(split_write_id(&write.task_id), Some((_, INTERRUPT | RESUME)))
}

async fn snapshot_of<S: GraphState>(
    settings: &CheckpointSettings,
    loaded: &LoadedCheckpoint,
) -> Result<StateSnapshot<S>, Error> {
    let reader = Reader::<S>::for_loaded(settings, loaded).await?;
    let (state, position) = reader.rebuild(loaded, Some(settings.codec))?;
    let restored = reader.restored(loaded)?;
    let record =
        loaded.head().ok_or_else(|| Error::ThreadNotFound { thread_id: String::new(), checkpoint_id: None })?;
    let tasks = tasks_of(&position, &restored.interrupts);
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
        tasks,
    })
}

/// The tasks of the step after `position`, with the ids the run will give them.
fn tasks_of<S>(position: &Position<S>, interrupts: &HashMap<String, serde_json::Value>) -> Vec<SnapshotTask> {
    let step = position.step + 1;
    (0..)
        .zip(&position.frontier)
        .map(|(index, task)| {
            let id = TaskId { step, node: task.node.clone(), index }.to_string();
            SnapshotTask {
                interrupt: interrupts.get(&id).cloned(),
                id,
                node: task.node.to_string(),
                subgraph: None,
                subgraph_checkpoint_id: None,
            }
        })
        .collect()
}
