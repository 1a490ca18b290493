//! Reading the blobs of a loaded checkpoint as the current state type, whatever shape of the
//! state wrote them.
//!
//! The fast path is a blob of the current fingerprint: decoded directly. A blob of another
//! fingerprint is read by its writer's shape (stored per database with `put_schema`) into a
//! self-describing value tree and deserialized as the current type by field name, so fields
//! added with a default (an `Option`, or `#[serde(default)]`) take it; that is allowed only
//! when every other part of the shape is unchanged ([`Schema::changes_since`]). Any other
//! change is a `VersionMismatch` naming it and the migration to register: a function from the
//! old state type ([`CompiledGraph::with_migration`]), which reads the old blobs as that type.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use dashflow_checkpoint::shape::{Change, ChangeKind, Schema};
use dashflow_checkpoint::{
    BlobLocation, CheckpointError, CheckpointKind, CheckpointRecord, Codec, LoadedCheckpoint, open, seal, unseal,
};
use dashflow_graph::GraphState;
use serde::de::DeserializeOwned;

use crate::durable::{CheckpointSettings, Restored, location};
use crate::payload::{Delta, INTERRUPT, OUTPUT, Position, RESUME, Snapshot, StoredTask, StoredWrite, split_write_id};
use crate::schema::{StateSchema, schema_of};
use crate::{CompiledGraph, Error};

/// Which root of a [`StateSchema`]'s schema a blob holds.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Root {
    State = 0,
    Update = 1,
    Snapshot = 2,
    Delta = 3,
    Write = 4,
}

/// Where the migration to write is documented, for error messages.
const MIGRATION_HINT: &str = "register a migration from the old state type with \
    `CompiledGraph::with_migration::<OldState>(|old| new)` (docs/guide.md, \"Changing the state type\")";

/// A function from an older state type to the current one, type-erased for storage in the
/// checkpoint settings.
pub(crate) type Migrations = Arc<Vec<Arc<dyn Any + Send + Sync>>>;

type RebuildFn<S> = dyn Fn(&LoadedCheckpoint) -> Result<(S, Position<S>), Error> + Send + Sync;
type WriteFn<S> =
    dyn Fn(&[u8]) -> Result<Option<StoredWrite<S, <S as GraphState>::Update>>, CheckpointError> + Send + Sync;

/// How checkpoints written with the state type of fingerprint `from` become `S`.
pub(crate) struct Migration<S: GraphState> {
    from: u64,
    from_name: &'static str,
    rebuild: Box<RebuildFn<S>>,
    write: Box<WriteFn<S>>,
}

impl<S: GraphState> fmt::Debug for Migration<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration").field("from", &self.from_name).finish()
    }
}

impl<S: GraphState> Migration<S> {
    fn new<Old: GraphState>(migrate: impl Fn(Old) -> S + Send + Sync + 'static) -> Self {
        let migrate = Arc::new(migrate);
        let from = schema_of::<Old>().fingerprint;
        let convert = Arc::clone(&migrate);
        let rebuild = move |loaded: &LoadedCheckpoint| {
            let (old, position) = Reader::<Old>::current().rebuild(loaded, None)?;
            let frontier = position
                .frontier
                .into_iter()
                .map(|task| StoredTask {
                    node: task.node,
                    input: task.input.map(|input| Arc::new(convert(Arc::unwrap_or_clone(input)))),
                })
                .collect();
            // A subgraph run's composed update is of the old type and cannot be converted;
            // the run's parent then receives only the updates made after the migration.
            let position = Position { step: position.step, frontier, join_seen: position.join_seen, composed: None };
            Ok((convert(old), position))
        };
        let write = move |blob: &[u8]| {
            // Finished tasks' results are of the old update type: those tasks run again.
            Ok(match open::<StoredWrite<Old, Old::Update>>(blob, from)? {
                StoredWrite::Output { .. } => None,
                StoredWrite::Interrupt { value } => Some(StoredWrite::Interrupt { value }),
                StoredWrite::Resume { values } => Some(StoredWrite::Resume { values }),
            })
        };
        Self { from, from_name: std::any::type_name::<Old>(), rebuild: Box::new(rebuild), write: Box::new(write) }
    }
}

impl<S: GraphState> CompiledGraph<S> {
    /// Reads threads written with the older state type `Old` by converting each with
    /// `migrate`: their states (the latest, and any in history that is read) and the inputs of
    /// pending `Send` tasks. Paused runs stay paused and their interrupts still wait for their
    /// answer; tasks that had finished in an unfinished step run again, since their results
    /// are of the old update type. The next checkpoint written is a full snapshot of the new
    /// type. Set before or after the checkpointer; register one per older type.
    ///
    /// Keep `Old` as it was (its fields, their types and reducers; its name may change):
    /// checkpoints are matched to it by the fingerprint of its shape. Adding a field that has
    /// a default needs no migration: see docs/guide.md, "Changing the state type".
    pub fn with_migration<Old: GraphState>(self, migrate: impl Fn(Old) -> S + Send + Sync + 'static) -> Self {
        let migration: Arc<dyn Any + Send + Sync> = Arc::new(Migration::<S>::new(migrate));
        self.configure(|inner| {
            inner.set_format(|format| {
                let mut migrations = format.migrations.as_ref().clone();
                migrations.push(migration);
                format.migrations = Arc::new(migrations);
            });
        })
    }
}

/// How the blobs of one loaded checkpoint are read as `S`.
pub(crate) struct Reader<S: GraphState> {
    ours: Arc<StateSchema>,
    /// Older shapes met in the blobs, by fingerprint, each readable as `S`.
    evolved: HashMap<u64, Arc<Schema>>,
    /// The migration of the chain's state type, when one was registered for it.
    migration: Option<Arc<dyn Any + Send + Sync>>,
    _state: std::marker::PhantomData<fn() -> S>,
}

impl<S: GraphState> Reader<S> {
    /// A reader of blobs of `S`'s own fingerprint only.
    fn current() -> Self {
        Self { ours: schema_of::<S>(), evolved: HashMap::new(), migration: None, _state: std::marker::PhantomData }
    }

    /// A reader for every blob of `loaded`: looks up the schema of each fingerprint that is
    /// not `S`'s, and refuses (naming the blob and what changed) any it cannot read.
    pub(crate) async fn for_loaded(settings: &CheckpointSettings, loaded: &LoadedCheckpoint) -> Result<Self, Error> {
        let mut reader = Self::current();
        let mut foreign: Vec<(u64, BlobLocation)> = Vec::new();
        let head = loaded.head();
        let blobs = loaded.chain.iter().map(|record| (&record.blob, location(record))).chain(
            loaded.pending_writes.iter().filter_map(|write| {
                let head = head?;
                let at =
                    BlobLocation::pending_write(&head.thread_id, &head.namespace, &head.checkpoint_id, &write.task_id);
                Some((&write.blob, at))
            }),
        );
        for (blob, at) in blobs {
            let sealed = unseal(blob).map_err(|error| Error::Checkpoint(error.at(|| at.clone())))?;
            if sealed.fingerprint != reader.ours.fingerprint
                && !foreign.iter().any(|(seen, _)| *seen == sealed.fingerprint)
            {
                foreign.push((sealed.fingerprint, at));
            }
        }
        for (fingerprint, at) in foreign {
            let migration = settings.migrations.iter().find(|migration| {
                migration.downcast_ref::<Migration<S>>().is_some_and(|migration| migration.from == fingerprint)
            });
            if let Some(migration) = migration {
                reader.migration = Some(Arc::clone(migration));
                continue;
            }
            let schema = reader.stored_schema(settings, fingerprint).await.map_err(|detail| mismatch(detail, &at))?;
            reader.evolved.insert(fingerprint, schema);
        }
        Ok(reader)
    }

    /// The schema of `fingerprint`, if its blobs can be read as `S`; else why not.
    async fn stored_schema(&self, settings: &CheckpointSettings, fingerprint: u64) -> Result<Arc<Schema>, String> {
        let written = format!("written by another shape of the state (schema {fingerprint:016x})");
        let Some(ours) = &self.ours.schema else {
            let reason = match &self.ours.untraced {
                Some(CheckpointError::Untraceable { detail, .. }) => format!(": {detail}"),
                Some(other) => format!(": {other}"),
                None => String::new(),
            };
            return Err(format!(
                "{written}; the current state type's shape cannot be traced{reason}, so only checkpoints of the \
                 same declaration can be read; {MIGRATION_HINT}"
            ));
        };
        let stored = match settings.checkpointer.get_schema(fingerprint).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(format!(
                    "{written}, which this database does not describe (written before schemas were stored, or \
                     copied from another database); {MIGRATION_HINT}"
                ));
            }
            Err(CheckpointError::NotSupported { .. }) => {
                return Err(format!("{written}; this checkpointer stores no state schemas; {MIGRATION_HINT}"));
            }
            Err(error) => return Err(format!("{written}; its schema could not be read: {error}")),
        };
        let stored: Schema = serde_json::from_slice(&stored)
            .map_err(|error| format!("{written}; its stored schema does not parse: {error}"))?;
        let mut changes = ours.changes_since(&stored, Root::State as usize);
        if changes.is_empty() {
            // The state is unchanged: what changed is the update type or the blob payloads.
            changes = ours.changes_since(&stored, Root::Update as usize);
            changes.iter_mut().for_each(|change| change.path = format!("update.{}", change.path));
        }
        let refused: Vec<String> =
            changes.iter().filter(|change| !change.is_compatible()).map(Change::to_string).collect();
        if !refused.is_empty() {
            return Err(format!("{written}: {}; {MIGRATION_HINT}", refused.join("; ")));
        }
        Ok(Arc::new(stored))
    }

    /// Decodes `blob` as `T`, root `root` of the schema.
    fn open<T: DeserializeOwned>(&self, blob: &[u8], root: Root, at: &dyn Fn() -> BlobLocation) -> Result<T, Error> {
        let located = |error: CheckpointError| Error::Checkpoint(error.at(at));
        let sealed = unseal(blob).map_err(located)?;
        if sealed.fingerprint == self.ours.fingerprint {
            return sealed.decode().map_err(located);
        }
        let Some(stored) = self.evolved.get(&sealed.fingerprint) else {
            return Err(located(CheckpointError::version_mismatch(format!(
                "state schema {:016x}, expected {:016x}; {MIGRATION_HINT}",
                sealed.fingerprint, self.ours.fingerprint
            ))));
        };
        let value = stored.decode_value(root as usize, sealed.codec, sealed.payload).map_err(located)?;
        serde_json::from_value(value).map_err(|error| {
            let added = match &self.ours.schema {
                Some(ours) => ours
                    .changes_since(stored, Root::State as usize)
                    .into_iter()
                    .filter(|change| matches!(change.kind, ChangeKind::Added { optional: false }))
                    .map(|change| format!("`{}`", change.path))
                    .collect::<Vec<_>>(),
                None => Vec::new(),
            };
            let hint = if added.is_empty() {
                String::new()
            } else {
                format!(
                    "; fields added since then need a default (an `Option`, or `#[serde(default)]`): {}",
                    added.join(", ")
                )
            };
            located(CheckpointError::version_mismatch(format!(
                "written by another shape of the state (schema {:016x}), which cannot be read as the current one: \
                 {error}{hint}; or {MIGRATION_HINT}",
                sealed.fingerprint
            )))
        })
    }

    fn migration(&self) -> Option<&Migration<S>> {
        self.migration.as_ref().and_then(|migration| migration.downcast_ref::<Migration<S>>())
    }

    /// Whether `blob` was written by the state type the migration reads.
    fn migrated(&self, blob: &[u8]) -> bool {
        self.migration().is_some_and(|migration| unseal(blob).is_ok_and(|sealed| sealed.fingerprint == migration.from))
    }

    /// Rebuilds the state and position of the last record of `loaded`: the snapshot first,
    /// then every delta applied in order. With `codec`, a subgraph run's composed update
    /// written by an older shape is sealed again in the current one.
    pub(crate) fn rebuild(&self, loaded: &LoadedCheckpoint, codec: Option<Codec>) -> Result<(S, Position<S>), Error> {
        let mut records = loaded.chain.iter();
        let first = records
            .next()
            .ok_or_else(|| Error::Checkpoint(CheckpointError::corrupt("the checkpoint chain is empty")))?;
        if first.kind != CheckpointKind::Snapshot {
            let error = CheckpointError::corrupt("the checkpoint chain does not start with a snapshot");
            return Err(Error::Checkpoint(error.at(|| location(first))));
        }
        if let Some(migration) = self.migration()
            && self.migrated(&first.blob)
        {
            return (migration.rebuild)(loaded);
        }
        let at = |record: &CheckpointRecord| {
            let record = record.clone();
            move || location(&record)
        };
        let Snapshot { mut state, mut position } = self.open::<Snapshot<S>>(&first.blob, Root::Snapshot, &at(first))?;
        for record in records {
            match record.kind {
                CheckpointKind::Delta => {
                    let delta: Delta<S, S::Update> = self.open(&record.blob, Root::Delta, &at(record))?;
                    if let Some(update) = delta.update {
                        state.apply(update);
                    }
                    position = delta.position;
                }
                CheckpointKind::Snapshot => {
                    let snapshot: Snapshot<S> = self.open(&record.blob, Root::Snapshot, &at(record))?;
                    state = snapshot.state;
                    position = snapshot.position;
                }
            }
        }
        if let (Some(codec), Some(composed), Some(head)) = (codec, &position.composed, loaded.head()) {
            let sealed = unseal(composed).map_err(|error| Error::Checkpoint(error.at(|| location(head))))?;
            if sealed.fingerprint != self.ours.fingerprint {
                let update: S::Update = self.open(composed, Root::Update, &at(head))?;
                position.composed = Some(seal(codec, self.ours.fingerprint, &update).map_err(Error::Checkpoint)?);
            }
        }
        Ok((state, position))
    }

    /// Decodes the pending writes of `loaded`'s head.
    pub(crate) fn restored(&self, loaded: &LoadedCheckpoint) -> Result<Restored<S>, Error> {
        let mut restored = Restored::default();
        let Some(head) = loaded.head() else { return Ok(restored) };
        for write in &loaded.pending_writes {
            let Some((task_id, kind)) = split_write_id(&write.task_id) else { continue };
            let at =
                || BlobLocation::pending_write(&head.thread_id, &head.namespace, &head.checkpoint_id, &write.task_id);
            let decoded: StoredWrite<S, S::Update> = match self.migration() {
                Some(migration) if self.migrated(&write.blob) => {
                    match (migration.write)(&write.blob).map_err(|error| Error::Checkpoint(error.at(at)))? {
                        Some(decoded) => decoded,
                        None => continue,
                    }
                }
                _ => self.open(&write.blob, Root::Write, &at)?,
            };
            match (kind, decoded) {
                (OUTPUT, output @ StoredWrite::Output { .. }) => {
                    restored.outputs.insert(task_id.to_owned(), output);
                }
                (INTERRUPT, StoredWrite::Interrupt { value }) => {
                    restored.interrupts.insert(task_id.to_owned(), value);
                }
                (RESUME, StoredWrite::Resume { values }) => {
                    restored.resumes.insert(task_id.to_owned(), values);
                }
                _ => {
                    let error = CheckpointError::corrupt("the pending write does not hold what its id says");
                    return Err(Error::Checkpoint(error.at(at)));
                }
            }
        }
        Ok(restored)
    }
}

fn mismatch(detail: String, at: &BlobLocation) -> Error {
    Error::Checkpoint(CheckpointError::version_mismatch(detail).at(|| at.clone()))
}

/// Whether any of `fingerprints` is not `S`'s: a run continuing such a chain writes a full
/// snapshot next, so the chain is of one shape again.
pub(crate) fn foreign<S: GraphState>(fingerprints: &[u64]) -> bool {
    !fingerprints.is_empty() && {
        let ours = schema_of::<S>().fingerprint;
        fingerprints.iter().any(|fingerprint| *fingerprint != ours)
    }
}
