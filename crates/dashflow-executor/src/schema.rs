//! The shape of what a graph's checkpoints store, traced once per state type, and the
//! fingerprint every blob of that state carries.
//!
//! The schema's roots are the state, its update, and the three blob payloads (snapshot,
//! delta, pending write), so that a change anywhere in them, nested types included, changes
//! the fingerprint. The state's reducers are part of it too: a stored update means something
//! else under another reducer.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use dashflow_checkpoint::CheckpointError;
use dashflow_checkpoint::shape::Schema;
use dashflow_graph::GraphState;
use parking_lot::Mutex;

use crate::payload::{Delta, Snapshot, StoredWrite};

/// What the checkpoints of one state type are checked against.
#[derive(Debug)]
pub(crate) struct StateSchema {
    /// The fingerprint every blob of this state carries.
    pub(crate) fingerprint: u64,
    /// The traced shapes (roots: state, update, snapshot, delta, pending write); `None` when
    /// the state could not be traced, and its fingerprint is then its declaration's.
    pub(crate) schema: Option<Schema>,
    /// `schema` as stored in the database (JSON), when traced.
    pub(crate) encoded: Option<Vec<u8>>,
    /// Why tracing failed, for messages.
    pub(crate) untraced: Option<CheckpointError>,
}

impl StateSchema {
    fn trace<S: GraphState>() -> Self {
        let traced = Schema::builder()
            .root::<S>()
            .and_then(|builder| builder.root::<S::Update>())
            .and_then(|builder| builder.root::<Snapshot<S>>())
            .and_then(|builder| builder.root::<Delta<S, S::Update>>())
            .and_then(|builder| builder.root::<StoredWrite<S, S::Update>>())
            .map(|builder| builder.finish(S::REDUCERS));
        match traced {
            Ok(schema) => Self {
                fingerprint: schema.fingerprint(),
                encoded: serde_json::to_vec(&schema).ok(),
                schema: Some(schema),
                untraced: None,
            },
            Err(error) => Self::untraced::<S>(error),
        }
    }

    /// A state whose shape cannot be traced: its declaration stands in for the shape, stable
    /// across builds, though blind to nested types.
    fn untraced<S: GraphState>(error: CheckpointError) -> Self {
        let declaration = match S::DECLARATION {
            "" => std::any::type_name::<S>(),
            declared => declared,
        };
        let text = format!("untraced;{declaration};{}", S::REDUCERS);
        let fingerprint = text
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
        Self { fingerprint, schema: None, encoded: None, untraced: Some(error) }
    }
}

/// The schema of `S`, traced on first use.
pub(crate) fn schema_of<S: GraphState>() -> Arc<StateSchema> {
    static SCHEMAS: OnceLock<Mutex<HashMap<TypeId, Arc<StateSchema>>>> = OnceLock::new();
    let mut schemas = SCHEMAS.get_or_init(Mutex::default).lock();
    Arc::clone(schemas.entry(TypeId::of::<S>()).or_insert_with(|| {
        // A `Deserialize` that panics on a placeholder value makes the state untraceable, not
        // the run fail.
        let traced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(StateSchema::trace::<S>));
        Arc::new(traced.unwrap_or_else(|_| {
            StateSchema::untraced::<S>(CheckpointError::Untraceable {
                type_name: std::any::type_name::<S>().to_owned(),
                detail: "its `Deserialize` panicked on a placeholder value".to_owned(),
            })
        }))
    }))
}

/// `S`'s fingerprint, remembered after the first lookup: for code that seals many blobs.
#[derive(Debug, Default)]
pub(crate) struct Fingerprint(OnceLock<(TypeId, Arc<StateSchema>)>);

impl Fingerprint {
    pub(crate) fn of<S: GraphState>(&self) -> u64 {
        match self.0.get() {
            Some((type_id, schema)) if *type_id == TypeId::of::<S>() => schema.fingerprint,
            Some(_) => schema_of::<S>().fingerprint,
            None => self.0.get_or_init(|| (TypeId::of::<S>(), schema_of::<S>())).1.fingerprint,
        }
    }

    /// The schema looked up first, if any.
    pub(crate) fn schema(&self) -> Option<Arc<StateSchema>> {
        self.0.get().map(|(_, schema)| Arc::clone(schema))
    }
}
