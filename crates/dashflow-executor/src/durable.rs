//! Checkpointing a run: writing each superstep's delta (or a snapshot), the result of each
//! task of a parallel step as it finishes (pending writes), and rebuilding state from a stored
//! chain.
//!
//! The loop's `commit_step` is where a superstep becomes final and is checkpointed. In a step
//! of several tasks (under `Sync` and `Async`), each task stores its result, or its
//! interrupt, as a pending write after the step's starting checkpoint as soon as it finishes,
//! from the task itself while its siblings run (`TaskWriter`): committed before the task
//! reports back under `Sync`, queued behind that checkpoint on the `Async` writer. So a kill,
//! a failure or a pause re-runs only the tasks that had not finished; the step's checkpoint
//! does not store them again, and a lone task's step has only its checkpoint. A resume of the
//! head reuses the stored results; a run forked from a past checkpoint runs the step again.
//! Under `Exit` nothing is stored before the run exits or pauses. Under `Async`, a step that
//! runs subgraph nodes starts only once its starting checkpoint is committed: the subgraph
//! runs write through writers of their own and name that checkpoint. Task ids
//! (`step:node:index`) are stable across re-runs and give nodes an idempotency key.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dashflow_checkpoint::{
    BlobLocation, CheckpointError, CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer, Codec,
    LoadedCheckpoint, Metadata, PendingWrite, now_ms, seal, unseal,
};
use dashflow_graph::GraphState;
use dashflow_telemetry::{EventKind, RunIds};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::evolve::{Migrations, Reader, foreign};
use crate::hub::EventHub;
use crate::payload::{DeltaRef, Position, RESUME, SnapshotRef, StoredWrite, write_id};
use crate::schema::{Fingerprint, StateSchema, schema_of};
use crate::{Durability, Error};

/// How a compiled graph checkpoints: where, in which format, how long delta chains may grow.
#[derive(Clone, Debug)]
pub(crate) struct CheckpointSettings {
    pub(crate) checkpointer: Arc<dyn Checkpointer>,
    pub(crate) codec: Codec,
    /// Most deltas between two snapshots, bounding the replay work of a load.
    pub(crate) max_chain: u32,
    /// Functions from older state types, for threads they wrote.
    pub(crate) migrations: Migrations,
    /// Fingerprints whose schema this process stored (or found unsupported) already.
    pub(crate) stored_schemas: Arc<Mutex<HashSet<u64>>>,
}

/// How checkpoints are written, set on the compiled graph before or after its checkpointer.
#[derive(Clone, Debug)]
pub(crate) struct CheckpointFormat {
    pub(crate) codec: Codec,
    pub(crate) max_chain: u32,
    pub(crate) migrations: Migrations,
}

impl Default for CheckpointFormat {
    fn default() -> Self {
        Self { codec: Codec::default(), max_chain: 1000, migrations: Migrations::default() }
    }
}

impl CheckpointSettings {
    /// Settings for `checkpointer` writing as `format` says.
    pub(crate) fn with_format(checkpointer: Arc<dyn Checkpointer>, format: &CheckpointFormat) -> Self {
        let mut settings = Self {
            checkpointer,
            codec: Codec::default(),
            max_chain: 1000,
            migrations: Migrations::default(),
            stored_schemas: Arc::default(),
        };
        settings.apply(format);
        settings
    }

    /// Writes as `format` says from now on.
    pub(crate) fn apply(&mut self, format: &CheckpointFormat) {
        self.codec = format.codec;
        self.max_chain = format.max_chain.max(1);
        self.migrations = Arc::clone(&format.migrations);
    }

    /// Stores `schema` in the database once per process, before the first blob that carries
    /// its fingerprint, so that a later build whose state changed can read the blob.
    async fn store_schema(&self, schema: &StateSchema) -> Result<(), Error> {
        let Some(encoded) = &schema.encoded else { return Ok(()) };
        if self.stored_schemas.lock().contains(&schema.fingerprint) {
            return Ok(());
        }
        match self.checkpointer.put_schema(schema.fingerprint, encoded.clone()).await {
            Ok(()) | Err(CheckpointError::NotSupported { .. }) => {}
            Err(error) => return Err(checkpoint_error(error)),
        }
        self.stored_schemas.lock().insert(schema.fingerprint);
        Ok(())
    }
}

/// Why a checkpoint was written, stored in its metadata under `source`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source {
    Input,
    Loop,
    Update,
    Exit,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Loop => "loop",
            Self::Update => "update",
            Self::Exit => "exit",
        }
    }
}

/// Turns a backend error into the executor's, naming a busy thread as such.
pub(crate) fn checkpoint_error(error: CheckpointError) -> Error {
    match error {
        CheckpointError::Conflict { thread_id, .. } => Error::ThreadBusy { thread_id },
        other => Error::Checkpoint(other),
    }
}

/// The pending writes of a checkpoint, decoded and grouped by task id.
pub(crate) struct Restored<S: GraphState> {
    pub(crate) outputs: HashMap<String, StoredWrite<S, S::Update>>,
    pub(crate) interrupts: HashMap<String, serde_json::Value>,
    pub(crate) resumes: HashMap<String, Vec<serde_json::Value>>,
}

impl<S: GraphState> Default for Restored<S> {
    fn default() -> Self {
        Self { outputs: HashMap::new(), interrupts: HashMap::new(), resumes: HashMap::new() }
    }
}

impl<S: GraphState> Restored<S> {
    /// Decodes the pending writes of `loaded`'s head.
    pub(crate) async fn decode(settings: &CheckpointSettings, loaded: &LoadedCheckpoint) -> Result<Self, Error> {
        Reader::<S>::for_loaded(settings, loaded).await?.restored(loaded)
    }
}

/// Rebuilds the state and position of the last record of `loaded`: the snapshot first, then
/// every delta applied in order; blobs of older shapes of the state are read as `S` when
/// they can be (see `evolve`).
pub(crate) async fn rebuild<S: GraphState>(
    settings: &CheckpointSettings,
    loaded: &LoadedCheckpoint,
) -> Result<(S, Position<S>), Error> {
    Reader::<S>::for_loaded(settings, loaded).await?.rebuild(loaded, Some(settings.codec))
}

/// Where `record`'s blob is stored, for errors about it.
pub(crate) fn location(record: &CheckpointRecord) -> BlobLocation {
    BlobLocation::checkpoint(&record.thread_id, &record.namespace, &record.checkpoint_id)
}

/// What a subgraph run started from a durable run needs to checkpoint under it.
#[derive(Clone, Debug)]
pub(crate) struct Nesting {
    pub(crate) settings: CheckpointSettings,
    pub(crate) namespace: String,
    pub(crate) durability: Durability,
}

impl Nesting {
    /// The namespace of the subgraph run of task `task_id`: one per task, below this one.
    pub(crate) fn child_namespace(&self, task_id: &str) -> String {
        if self.namespace.is_empty() { task_id.to_owned() } else { format!("{}|{task_id}", self.namespace) }
    }
}

/// Writes one run's checkpoints in order, each conditional on the previous one.
pub(crate) struct Durable {
    settings: CheckpointSettings,
    pub(crate) thread_id: Arc<str>,
    namespace: String,
    durability: Durability,
    run_id: String,
    /// The lineage parent of the next checkpoint.
    parent: Option<CheckpointId>,
    /// The head the storage must have for the next put to succeed.
    expected_head: Option<CheckpointId>,
    deltas_since_snapshot: u32,
    delta_bytes_since_snapshot: usize,
    last_snapshot_bytes: usize,
    /// Metadata every checkpoint written from now on carries, besides `source` and `step`
    /// (see `subgraph::PARENT_CHECKPOINT` and `subgraph::STEP_START`); empty for most runs.
    tags: Metadata,
    writer: Option<AsyncWriter>,
    /// Who hears `CheckpointCommitted`, when anyone listens.
    observer: Option<CommitObserver>,
    /// The state's schema fingerprint, looked up once.
    fingerprint: Fingerprint,
    /// Whether the state's schema is known to be in the database.
    schema_stored: bool,
    /// The fingerprints of the chain this run continues: if any is not the state's, the next
    /// checkpoint is a snapshot, so the chain is of one shape again.
    continued: Vec<u64>,
}

/// Where `CheckpointCommitted` events go: the run's hub, under the run's ids.
#[derive(Clone)]
pub(crate) struct CommitObserver {
    hub: Arc<EventHub>,
    run: RunIds,
}

impl CommitObserver {
    async fn committed(&self, commit: Committed) {
        self.hub.emit(self.run, commit.event()).await;
    }

    /// Reports the checkpoints of one commit together.
    async fn committed_all(&self, commits: Vec<Committed>) {
        self.hub.emit_all(self.run, commits.into_iter().map(Committed::event)).await;
    }
}

/// What a `CheckpointCommitted` event reports of a record, kept while the record is written.
struct Committed {
    step: u64,
    id: Arc<str>,
    kind: CheckpointKind,
    bytes: u64,
}

impl Committed {
    fn event(self) -> EventKind {
        EventKind::CheckpointCommitted {
            step: self.step,
            checkpoint_id: self.id,
            snapshot: self.kind == CheckpointKind::Snapshot,
            bytes: self.bytes,
        }
    }

    fn of(record: &CheckpointRecord) -> Self {
        Self {
            step: u64::try_from(record.step).unwrap_or(0),
            id: Arc::from(record.checkpoint_id.as_str()),
            kind: record.kind,
            bytes: record.blob.len() as u64,
        }
    }
}

impl Durable {
    pub(crate) fn new(
        settings: CheckpointSettings,
        thread_id: Arc<str>,
        durability: Durability,
        run_id: String,
        parent: Option<CheckpointId>,
        expected_head: Option<CheckpointId>,
    ) -> Self {
        Self {
            settings,
            thread_id,
            namespace: String::new(),
            durability,
            run_id,
            parent,
            expected_head,
            deltas_since_snapshot: 0,
            delta_bytes_since_snapshot: 0,
            last_snapshot_bytes: 0,
            tags: Metadata::new(),
            writer: None,
            observer: None,
            fingerprint: Fingerprint::default(),
            schema_stored: false,
            continued: Vec::new(),
        }
    }

    /// Reports each committed checkpoint to `hub` as run `run`'s, if anyone listens.
    pub(crate) fn observed_by(mut self, hub: &Arc<EventHub>, run: RunIds) -> Self {
        if hub.interest().checkpoints {
            self.observer = Some(CommitObserver { hub: Arc::clone(hub), run });
        }
        self
    }

    /// Writes into `namespace` of the thread instead of the top-level one (`""`).
    pub(crate) fn in_namespace(mut self, namespace: String) -> Self {
        self.namespace = namespace;
        self
    }

    /// The checkpoint settings, namespace and durability, for runs nested in this one.
    pub(crate) fn nesting(&self) -> Nesting {
        Nesting { settings: self.settings.clone(), namespace: self.namespace.clone(), durability: self.durability }
    }

    /// Continues the snapshot bookkeeping of the chain a run starts from, so that a run
    /// continuing a thread writes deltas, not a fresh snapshot of a state that is on disk.
    pub(crate) fn continuing(mut self, chain: &LoadedCheckpoint) -> Self {
        self.continued = chain
            .chain
            .iter()
            .filter_map(|record| unseal(&record.blob).ok())
            .map(|sealed| sealed.fingerprint)
            .collect();
        let mut records = chain.chain.iter();
        if let Some(snapshot) = records.next() {
            self.last_snapshot_bytes = snapshot.blob.len();
            for delta in records {
                self.deltas_since_snapshot += 1;
                self.delta_bytes_since_snapshot += delta.blob.len();
            }
        }
        self
    }

    /// Sets `key` to `value` in the metadata of the checkpoints written from now on; `None`
    /// removes it.
    pub(crate) fn tag(&mut self, key: &str, value: Option<&CheckpointId>) {
        match value {
            Some(id) => self.tags.insert(key.to_owned(), id.as_str().into()),
            None => self.tags.remove(key),
        };
    }

    /// Names this run in the metadata of every checkpoint it writes from now on (`run_id`):
    /// a run that answered an interrupt marks what it went on to write, so that a retry of
    /// the same run (a distributed takeover) sees the answer was used and does not answer
    /// again.
    pub(crate) fn tag_run(&mut self) {
        self.tags.insert("run_id".to_owned(), self.run_id.clone().into());
    }

    /// The last checkpoint this run wrote (or continued from).
    pub(crate) fn head(&self) -> Option<&CheckpointId> {
        self.parent.as_ref()
    }

    pub(crate) fn durability(&self) -> Durability {
        self.durability
    }

    /// Whether the next commit should be a snapshot: when the deltas since the last one
    /// outweigh it (so bytes written stay proportional to updates), or the chain is long.
    fn wants_snapshot(&self) -> bool {
        self.parent.is_none()
            || self.deltas_since_snapshot >= self.settings.max_chain
            || self.delta_bytes_since_snapshot >= self.last_snapshot_bytes
    }

    /// Writes the checkpoint after a superstep: the merged update as a delta, or the whole
    /// state when a snapshot is due.
    pub(crate) async fn commit<S: GraphState>(
        &mut self,
        source: Source,
        state: &S,
        update: Option<&S::Update>,
        position: &Position<S>,
    ) -> Result<CheckpointId, Error> {
        let foreign = foreign::<S>(&self.continued);
        let snapshot =
            update.is_none() && matches!(source, Source::Input | Source::Exit) || self.wants_snapshot() || foreign;
        let codec = self.settings.codec;
        self.store_schema::<S>().await?;
        let (kind, blob) = if snapshot {
            let blob =
                seal(codec, self.fingerprint.of::<S>(), &SnapshotRef { state, position }).map_err(Error::Checkpoint)?;
            self.last_snapshot_bytes = blob.len();
            self.continued.clear();
            self.deltas_since_snapshot = 0;
            self.delta_bytes_since_snapshot = 0;
            (CheckpointKind::Snapshot, blob)
        } else {
            let blob =
                seal(codec, self.fingerprint.of::<S>(), &DeltaRef { update, position }).map_err(Error::Checkpoint)?;
            self.deltas_since_snapshot += 1;
            self.delta_bytes_since_snapshot += blob.len();
            (CheckpointKind::Delta, blob)
        };
        self.put(source, position, kind, blob).await
    }

    async fn put<S>(
        &mut self,
        source: Source,
        position: &Position<S>,
        kind: CheckpointKind,
        blob: Vec<u8>,
    ) -> Result<CheckpointId, Error> {
        let id = CheckpointId::new();
        let mut metadata = self.tags.clone();
        metadata.insert("source".into(), source.as_str().into());
        metadata.insert("step".into(), position.step.into());
        // A retried distributed run finds its own input or update by run id, and does not
        // apply it twice.
        if matches!(source, Source::Input | Source::Update) {
            metadata.insert("run_id".into(), self.run_id.clone().into());
        }
        let record = CheckpointRecord {
            thread_id: String::from(&*self.thread_id),
            namespace: self.namespace.clone(),
            checkpoint_id: id.clone(),
            parent_id: self.parent.clone(),
            step: i64::try_from(position.step).unwrap_or(i64::MAX),
            kind,
            blob,
            metadata,
            next_nodes: position.frontier.iter().map(|task| String::from(&*task.node)).collect(),
            created_at_ms: now_ms(),
        };
        let expected = self.expected_head.replace(id.clone());
        self.parent = Some(id.clone());
        match self.durability {
            // A write without I/O is cheaper done here than handed to a writer task.
            Durability::Async if !self.settings.checkpointer.writes_without_io() => {
                self.async_writer().send(record, expected).await?;
            }
            _ => {
                let committed = self.observer.as_ref().map(|_| Committed::of(&record));
                self.settings.checkpointer.put(record, expected.as_ref()).await.map_err(checkpoint_error)?;
                if let (Some(observer), Some(committed)) = (&self.observer, committed) {
                    observer.committed(committed).await;
                }
            }
        }
        Ok(id)
    }

    fn async_writer(&mut self) -> &mut AsyncWriter {
        // Borrowed, not cloned: only the first checkpoint of a run starts the writer.
        let (settings, observer) = (&self.settings, &self.observer);
        let (thread_id, namespace) = (&self.thread_id, &self.namespace);
        self.writer.get_or_insert_with(|| {
            let ids = (Arc::clone(thread_id), namespace.clone());
            AsyncWriter::start(Arc::clone(&settings.checkpointer), observer.clone(), ids)
        })
    }

    /// Waits until every checkpoint queued so far is committed; reports the first failure.
    pub(crate) async fn flush(&mut self) -> Result<(), Error> {
        match self.writer.take() {
            Some(writer) => writer.finish().await,
            None => Ok(()),
        }
    }

    /// Stores the outputs of tasks that finished in a step that did not complete, after every
    /// queued checkpoint (the writes refer to the head).
    pub(crate) async fn put_writes(&mut self, writes: Vec<PendingWrite>) -> Result<(), Error> {
        if writes.is_empty() {
            return Ok(());
        }
        self.flush().await?;
        if !self.schema_stored
            && let Some(schema) = self.fingerprint.schema()
        {
            self.settings.store_schema(&schema).await?;
            self.schema_stored = true;
        }
        let Some(head) = self.parent.clone() else { return Ok(()) };
        self.settings
            .checkpointer
            .put_writes(&self.thread_id, &self.namespace, &head, writes)
            .await
            .map_err(checkpoint_error)
    }

    /// Gives `answer` to every pending interrupt of `restored` (after the answers they were
    /// given before) and stores the answers, so a crash before they are used loses none.
    pub(crate) async fn answer_interrupts<S: GraphState>(
        &mut self,
        restored: &mut Restored<S>,
        answer: &serde_json::Value,
    ) -> Result<(), Error> {
        let mut writes = Vec::new();
        for task_id in restored.interrupts.keys() {
            let values = restored.resumes.entry(task_id.clone()).or_default();
            values.push(answer.clone());
            let node = task_id.split(':').nth(1).unwrap_or_default();
            let write: StoredWrite<S, S::Update> = StoredWrite::Resume { values: values.clone() };
            writes.push(self.pending_write::<S>(task_id, node, RESUME, &write)?);
        }
        self.put_writes(writes).await
    }

    /// Seals `value` with this run's codec and `S`'s schema hash.
    pub(crate) fn seal<S: GraphState, T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, Error> {
        seal(self.settings.codec, self.fingerprint.of::<S>(), value).map_err(Error::Checkpoint)
    }

    /// Encodes one pending write of task `task_id`.
    pub(crate) fn pending_write<S: GraphState>(
        &self,
        task_id: &str,
        node: &str,
        kind: &str,
        write: &StoredWrite<S, S::Update>,
    ) -> Result<PendingWrite, Error> {
        encode_write::<S, _>(self.settings.codec, self.fingerprint.of::<S>(), task_id, node, kind, write)
    }

    /// What the tasks of the next step use to store their results as they finish, so that a
    /// crash, a failure or a pause re-runs only the tasks that had not finished. `None` under
    /// `Exit` durability (nothing is stored before the run exits) and before the run's first
    /// checkpoint (the writes would belong to none). The state's schema is in the database by
    /// then: stored by this run's first checkpoint, or when it resumed (`store_schema`).
    pub(crate) fn task_writer<S: GraphState>(&mut self) -> Option<Arc<TaskWriter>> {
        if self.durability == Durability::Exit {
            return None;
        }
        let checkpoint = self.parent.clone()?;
        let queue = match self.durability {
            Durability::Async => {
                let writer = self.async_writer();
                Some((writer.tx.clone(), Arc::clone(&writer.failure)))
            }
            _ => None,
        };
        Some(Arc::new(TaskWriter {
            checkpointer: Arc::clone(&self.settings.checkpointer),
            codec: self.settings.codec,
            fingerprint: self.fingerprint.of::<S>(),
            thread_id: Arc::clone(&self.thread_id),
            namespace: self.namespace.clone(),
            checkpoint,
            queue,
        }))
    }

    /// Stores `S`'s schema before the first blob of it is written.
    pub(crate) async fn store_schema<S: GraphState>(&mut self) -> Result<(), Error> {
        if !self.schema_stored {
            self.settings.store_schema(&schema_of::<S>()).await?;
            self.schema_stored = true;
        }
        Ok(())
    }

    /// The first failure of a background write so far, without waiting.
    pub(crate) fn background_error(&self) -> Option<Error> {
        self.writer.as_ref().and_then(AsyncWriter::error)
    }
}

/// Encodes one pending write of task `task_id`, whose update may be borrowed (`U` is then
/// `&S::Update`, which encodes as the update itself).
fn encode_write<S: GraphState, U: serde::Serialize>(
    codec: Codec,
    fingerprint: u64,
    task_id: &str,
    node: &str,
    kind: &str,
    write: &StoredWrite<S, U>,
) -> Result<PendingWrite, Error> {
    let blob = seal(codec, fingerprint, write).map_err(Error::Checkpoint)?;
    Ok(PendingWrite { task_id: write_id(task_id, kind), node: node.to_owned(), blob })
}

/// Stores the results of one step's tasks as each finishes, after the checkpoint the step
/// started from: at once under `Sync` (on the task's own thread, while its siblings run), or
/// through the run's `Async` writer, queued behind that checkpoint.
pub(crate) struct TaskWriter {
    checkpointer: Arc<dyn Checkpointer>,
    codec: Codec,
    /// The state's schema fingerprint, stored in the database before this writer was made.
    fingerprint: u64,
    thread_id: Arc<str>,
    namespace: String,
    checkpoint: CheckpointId,
    /// The `Async` writer's queue and where it reports a failure.
    queue: Option<(mpsc::Sender<Queued>, Failure)>,
}

impl TaskWriter {
    /// Encodes and stores one write of task `task_id`; returns once it is committed (`Sync`)
    /// or queued (`Async`).
    pub(crate) async fn store<S: GraphState, U: serde::Serialize>(
        &self,
        task_id: &str,
        node: &str,
        kind: &str,
        write: &StoredWrite<S, U>,
    ) -> Result<(), Error> {
        let write = encode_write::<S, U>(self.codec, self.fingerprint, task_id, node, kind, write)?;
        match &self.queue {
            None => self
                .checkpointer
                .put_writes(&self.thread_id, &self.namespace, &self.checkpoint, vec![write])
                .await
                .map_err(checkpoint_error),
            Some((tx, failure)) => {
                let queued = Queued::Writes { checkpoint: self.checkpoint.clone(), writes: vec![write] };
                if tx.send(queued).await.is_err() {
                    // The writer stopped after a failure; report it.
                    return Err(failure.lock().clone().unwrap_or(Error::CheckpointWriterStopped));
                }
                Ok(())
            }
        }
    }
}

/// What the `Async` writer commits, in the order it was queued.
enum Queued {
    /// A checkpoint and the head it expects.
    Checkpoint(CheckpointRecord, Option<CheckpointId>),
    /// Results of tasks of the step after `checkpoint`.
    Writes { checkpoint: CheckpointId, writes: Vec<PendingWrite> },
}

/// Where the `Async` writer keeps its first failure.
type Failure = Arc<Mutex<Option<Error>>>;

/// `Async` durability: a task that commits queued checkpoints in order while the run goes on.
struct AsyncWriter {
    tx: mpsc::Sender<Queued>,
    task: JoinHandle<()>,
    failure: Failure,
}

/// Commits a batch of checkpoints and reports each to `observer`.
async fn commit_batch(
    checkpointer: &dyn Checkpointer,
    observer: Option<&CommitObserver>,
    batch: Vec<(CheckpointRecord, Option<CheckpointId>)>,
) -> Result<(), CheckpointError> {
    let committed: Vec<Committed> = match observer {
        Some(_) => batch.iter().map(|(record, _)| Committed::of(record)).collect(),
        None => Vec::new(),
    };
    checkpointer.put_batch(batch).await?;
    if let Some(observer) = observer {
        observer.committed_all(committed).await;
    }
    Ok(())
}

impl AsyncWriter {
    /// Checkpoints queued but not yet committed; a full queue makes the run wait.
    const QUEUE: usize = 256;

    fn start(
        checkpointer: Arc<dyn Checkpointer>,
        observer: Option<CommitObserver>,
        (thread_id, namespace): (Arc<str>, String),
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Queued>(Self::QUEUE);
        let failure = Arc::new(Mutex::new(None));
        let failed = Arc::clone(&failure);
        let task = tokio::spawn(async move {
            let mut queued = Vec::new();
            while let Some(first) = rx.recv().await {
                // Everything queued meanwhile is committed together: consecutive checkpoints
                // in one batch (one transaction, not one each), consecutive writes after one
                // checkpoint in one call, in the order they were queued.
                queued.push(first);
                while queued.len() < Self::QUEUE {
                    match rx.try_recv() {
                        Ok(next) => queued.push(next),
                        Err(_) => break,
                    }
                }
                let mut items = queued.drain(..).peekable();
                while let Some(item) = items.next() {
                    let result = match item {
                        Queued::Checkpoint(record, expected) => {
                            let mut batch = vec![(record, expected)];
                            while let Some(Queued::Checkpoint(record, expected)) =
                                items.next_if(|item| matches!(item, Queued::Checkpoint(..)))
                            {
                                batch.push((record, expected));
                            }
                            commit_batch(&*checkpointer, observer.as_ref(), batch).await
                        }
                        Queued::Writes { checkpoint, mut writes } => {
                            let same = |item: &Queued| matches!(item, Queued::Writes { checkpoint: next, .. } if *next == checkpoint);
                            while let Some(Queued::Writes { writes: more, .. }) = items.next_if(same) {
                                writes.extend(more);
                            }
                            checkpointer.put_writes(&thread_id, &namespace, &checkpoint, writes).await
                        }
                    };
                    if let Err(error) = result {
                        *failed.lock() = Some(checkpoint_error(error));
                        // Later records chain onto the failed one; writing them would fork history.
                        return;
                    }
                }
            }
        });
        Self { tx, task, failure }
    }

    async fn send(&mut self, record: CheckpointRecord, expected: Option<CheckpointId>) -> Result<(), Error> {
        if let Some(error) = self.error() {
            return Err(error);
        }
        if self.tx.send(Queued::Checkpoint(record, expected)).await.is_err() {
            // The writer stopped after a failure; report it.
            return Err(self.error().unwrap_or(Error::CheckpointWriterStopped));
        }
        Ok(())
    }

    fn error(&self) -> Option<Error> {
        self.failure.lock().clone()
    }

    async fn finish(self) -> Result<(), Error> {
        drop(self.tx);
        if self.task.await.is_err() {
            return Err(Error::CheckpointWriterStopped);
        }
        match self.failure.lock().take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
