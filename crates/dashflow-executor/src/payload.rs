//! What the executor puts inside checkpoint blobs and pending writes.
//!
//! Backends see only bytes; these types are the executor's own format, sealed in the
//! versioned envelope of `dashflow-checkpoint` (codec, format version, state schema hash).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One task of a frontier, as stored: its node and, for a `Send`, its own input.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredTask<S> {
    pub(crate) node: Arc<str>,
    pub(crate) input: Option<Arc<S>>,
}

/// Where a run stands after a checkpoint: the next frontier and the progress of joins.
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: serde::de::DeserializeOwned"))]
pub(crate) struct Position<S> {
    pub(crate) step: u64,
    pub(crate) frontier: Vec<StoredTask<S>>,
    pub(crate) join_seen: Vec<Vec<bool>>,
    /// For a subgraph run sharing its parent's state: every update of the run so far, folded
    /// into one and sealed, so a resumed child still hands its parent the whole run's update.
    pub(crate) composed: Option<Vec<u8>>,
}

/// A snapshot blob: the whole state and the position.
#[derive(Serialize)]
pub(crate) struct SnapshotRef<'a, S> {
    pub(crate) state: &'a S,
    pub(crate) position: &'a Position<S>,
}

/// A delta blob: one superstep's merged update (none when no task wrote) and the position.
#[derive(Serialize)]
pub(crate) struct DeltaRef<'a, S, U> {
    pub(crate) update: Option<&'a U>,
    pub(crate) position: &'a Position<S>,
}

/// The owned twins of the blob types, field for field (bincode is positional).
#[derive(Deserialize)]
#[serde(bound(deserialize = "S: serde::de::DeserializeOwned"))]
pub(crate) struct Snapshot<S> {
    pub(crate) state: S,
    pub(crate) position: Position<S>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "S: serde::de::DeserializeOwned, U: serde::de::DeserializeOwned"))]
pub(crate) struct Delta<S, U> {
    pub(crate) update: Option<U>,
    pub(crate) position: Position<S>,
}

/// Where a finished task wanted to go: a node (or `END`), or a `Send` with its input.
#[derive(Serialize, Deserialize)]
pub(crate) enum StoredGoto<S> {
    Node(Arc<str>),
    Send(Arc<str>, Arc<S>),
}

/// What a pending write holds.
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "S: Serialize, U: Serialize",
    deserialize = "S: serde::de::DeserializeOwned, U: serde::de::DeserializeOwned"
))]
pub(crate) enum StoredWrite<S, U> {
    /// A task that finished while a sibling failed or paused: its result, reused on resume.
    Output { update: Option<U>, gotos: Vec<StoredGoto<S>> },
    /// A task that paused with `interrupt(value)`.
    Interrupt {
        #[serde(with = "json_text")]
        value: serde_json::Value,
    },
    /// Answers given to a task's interrupts so far, in order.
    Resume {
        #[serde(with = "json_texts")]
        values: Vec<serde_json::Value>,
    },
}

/// JSON values travel as JSON text: binary codecs cannot encode a self-describing value.
mod json_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &serde_json::Value, serializer: S) -> Result<S::Ok, S::Error> {
        value.to_string().serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<serde_json::Value, D::Error> {
        let text = String::deserialize(deserializer)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

mod json_texts {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(values: &[serde_json::Value], serializer: S) -> Result<S::Ok, S::Error> {
        values.iter().map(ToString::to_string).collect::<Vec<_>>().serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<serde_json::Value>, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        texts.iter().map(|text| serde_json::from_str(text).map_err(serde::de::Error::custom)).collect()
    }
}

/// Suffixes that keep a task's kinds of pending write apart (a put with the same id replaces).
pub(crate) const OUTPUT: &str = "output";
pub(crate) const INTERRUPT: &str = "interrupt";
pub(crate) const RESUME: &str = "resume";

/// The pending-write id of `kind` for task `task_id`.
pub(crate) fn write_id(task_id: &str, kind: &str) -> String {
    format!("{task_id}#{kind}")
}

/// Splits a pending-write id into task id and kind.
pub(crate) fn split_write_id(id: &str) -> Option<(&str, &str)> {
    id.rsplit_once('#')
}
