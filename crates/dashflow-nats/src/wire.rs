//! The message schema, version 2: one JSON object per event, and, from publishers asked to
//! (`NatsBuilder::state_deltas`), one per state delta.
//!
//! ```json
//! {
//!   "v": 1,
//!   "publisher": { "id": "01JF3...", "name": "4242@worker-7" },
//!   "seq": 3,
//!   "graph": "tickets",
//!   "run": { "id": "01JF4...", "parent": null, "root": "01JF4...", "depth": 0 },
//!   "at_ns": 1765030000123456789,
//!   "event": { "type": "task_finished", "step": 2, "node": "billing", "attempt": 1,
//!              "duration_ns": 1834000, "error": null }
//! }
//! ```
//!
//! - `v`: the schema version of the message. Event messages are the same as in version 1 and
//!   still say `1`, so version-1 readers keep reading them; delta messages (below) say `2`,
//!   which a version-1 reader refuses by name rather than misreading. A consumer refuses
//!   versions it does not know by name ([`Error::UnknownVersion`]); fields may be added within
//!   a version, so a consumer ignores fields it does not know.
//! - `publisher`: which sink published it: `id` is unique per sink (a ULID made when it starts),
//!   `name` says where it runs (`{pid}@{host}` unless set).
//! - `seq`: 1, 2, 3, ... per run and publisher, in the order the run emitted its events and
//!   deltas (one count for both): a re-sent message is stored after later ones, and `seq`
//!   restores the order (the consumer does, within a window: see `Follow::reorder_window`);
//!   a number that never arrives is a message lost (given up at shutdown, or removed by the
//!   stream's limits). Events dropped under backpressure never got a number.
//! - `graph`: the graph the run belongs to (`?` when the sink missed the run's start).
//! - `run`: the run's ids (ULIDs): its own, its parent's for a subgraph run, the outermost
//!   run's, and its depth.
//! - `at_ns`: when it happened, nanoseconds since the Unix epoch. Durations (`duration_ns`)
//!   are nanoseconds too: both read back exactly.
//! - `event.type` is one of `graph_defined` (`graph`, `schema`), `run_started` (`graph`,
//!   `thread_id`, `tags`), `run_finished` (`outcome`: `completed`/`failed`/`interrupted`,
//!   `steps`, `duration_ns`, `error`), `superstep_started` (`step`, `nodes`),
//!   `superstep_finished` (`step`, `duration_ns`), `task_started` (`step`, `node`, `attempt`),
//!   `task_finished` (`step`, `node`, `attempt`, `duration_ns`, `error`), `routed` (`step`,
//!   `from`, `label`, `target`), `checkpoint_committed` (`step`, `checkpoint_id`, `snapshot`,
//!   `bytes`), `interrupted` (`step`, `node`, `reason`: `before`/`after`/`node`, `value`),
//!   `custom` (`step`, `node`, `value`).
//!
//! # State deltas (version 2)
//!
//! A publisher asked for them sends, on the run's subject and in its `seq` order, the state the
//! run starts from and each superstep's merged update (see
//! [`StateDelta`]):
//!
//! ```json
//! {
//!   "v": 2,
//!   "publisher": { "id": "01JF3...", "name": "4242@worker-7" },
//!   "seq": 5,
//!   "graph": "tickets",
//!   "run": { "id": "01JF4...", "parent": null, "root": "01JF4...", "depth": 0 },
//!   "at_ns": 1765030000123456789,
//!   "delta": { "step": 2, "kind": "update", "value": { "findings": ["invoice overdue"] } }
//! }
//! ```
//!
//! - `delta.kind`: `snapshot` (the whole state the run starts from: step 0 for a fresh run,
//!   the step it continues from for a resumed one; it replaces what a reader had for the
//!   run's thread, which `run_started` names) or `update` (the step's merged update, of the
//!   graph's update type: apply it with the graph's reducers).
//! - `delta.value`: the state or update as its serde `Serialize` writes it in JSON. When it
//!   cannot be written (a map with keys that are not strings, a `Serialize` that refuses),
//!   the message carries `delta.error` (why) and no `value`: a reader then knows the thread's
//!   state cannot be rebuilt from here on, until the next snapshot.
//! - Every message without `delta` has `event`.
//!
//! Each message also carries the header `Nats-Msg-Id: {publisher id}-{n}`, so that a message
//! re-sent after a lost acknowledgement is stored once (JetStream's duplicate window).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use std::time::SystemTime;

use dashflow_telemetry::{DeltaKind, Event, EventKind, InterruptReason, RunId, RunIds, RunOutcome, StateDelta};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The newest schema version this crate writes and reads (it reads every older one too).
pub const SCHEMA_VERSION: u32 = 2;

/// The version event messages carry: unchanged since version 1.
const EVENT_VERSION: u32 = 1;

/// Who published a message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Publisher {
    /// Unique per publishing sink: a ULID made when it started.
    pub id: String,
    /// Where it runs: `{pid}@{host}` unless the sink was given a name.
    pub name: String,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Message {
    pub(crate) v: u32,
    pub(crate) publisher: Publisher,
    pub(crate) seq: u64,
    pub(crate) graph: Arc<str>,
    pub(crate) run: WireRun,
    pub(crate) at_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) event: Option<WireEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) delta: Option<WireDelta>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct WireDelta {
    step: u64,
    kind: DeltaKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Only `v`, read first so that another version is refused by name rather than by a field
/// it lacks.
#[derive(Deserialize)]
struct Version {
    v: u32,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct WireRun {
    id: String,
    parent: Option<String>,
    root: String,
    depth: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum WireEvent {
    GraphDefined {
        graph: Arc<str>,
        schema: Arc<serde_json::Value>,
    },
    RunStarted {
        graph: Arc<str>,
        thread_id: Option<Arc<str>>,
        #[serde(default)]
        tags: Vec<Arc<str>>,
    },
    RunFinished {
        outcome: String,
        steps: u64,
        duration_ns: u64,
        error: Option<String>,
    },
    SuperstepStarted {
        step: u64,
        nodes: Vec<Arc<str>>,
    },
    SuperstepFinished {
        step: u64,
        duration_ns: u64,
    },
    TaskStarted {
        step: u64,
        node: Arc<str>,
        attempt: u32,
    },
    TaskFinished {
        step: u64,
        node: Arc<str>,
        attempt: u32,
        duration_ns: u64,
        error: Option<String>,
    },
    Routed {
        step: u64,
        from: Arc<str>,
        label: Arc<str>,
        target: Arc<str>,
    },
    CheckpointCommitted {
        step: u64,
        checkpoint_id: Arc<str>,
        snapshot: bool,
        bytes: u64,
    },
    Interrupted {
        step: u64,
        node: Arc<str>,
        reason: String,
        value: Option<Arc<serde_json::Value>>,
    },
    Custom {
        step: u64,
        node: Arc<str>,
        value: serde_json::Value,
    },
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl WireEvent {
    /// The wire form of `kind`; `None` for a kind this version of the schema does not name.
    fn from_kind(kind: &EventKind) -> Option<Self> {
        Some(match kind {
            EventKind::GraphDefined { graph, schema } => {
                Self::GraphDefined { graph: Arc::clone(graph), schema: Arc::clone(schema) }
            }
            EventKind::RunStarted { graph, thread_id, tags } => {
                Self::RunStarted { graph: Arc::clone(graph), thread_id: thread_id.clone(), tags: tags.clone() }
            }
            EventKind::RunFinished { outcome, steps, duration, error } => Self::RunFinished {
                outcome: outcome.to_string(),
                steps: *steps,
                duration_ns: nanos(*duration),
                error: error.clone(),
            },
            EventKind::SuperstepStarted { step, nodes } => {
                Self::SuperstepStarted { step: *step, nodes: nodes.to_vec() }
            }
            EventKind::SuperstepFinished { step, duration } => {
                Self::SuperstepFinished { step: *step, duration_ns: nanos(*duration) }
            }
            EventKind::TaskStarted { step, node, attempt } => {
                Self::TaskStarted { step: *step, node: Arc::clone(node), attempt: *attempt }
            }
            EventKind::TaskFinished { step, node, attempt, duration, error } => Self::TaskFinished {
                step: *step,
                node: Arc::clone(node),
                attempt: *attempt,
                duration_ns: nanos(*duration),
                error: error.clone(),
            },
            EventKind::Routed { step, from, label, target } => Self::Routed {
                step: *step,
                from: Arc::clone(from),
                label: Arc::clone(label),
                target: Arc::clone(target),
            },
            EventKind::CheckpointCommitted { step, checkpoint_id, snapshot, bytes } => Self::CheckpointCommitted {
                step: *step,
                checkpoint_id: Arc::clone(checkpoint_id),
                snapshot: *snapshot,
                bytes: *bytes,
            },
            EventKind::Interrupted { step, node, reason, value } => Self::Interrupted {
                step: *step,
                node: Arc::clone(node),
                reason: reason.to_string(),
                value: value.clone(),
            },
            EventKind::Custom { step, node, value } => {
                Self::Custom { step: *step, node: Arc::clone(node), value: value.clone() }
            }
            _ => return None,
        })
    }

    fn into_kind(self) -> Result<EventKind, String> {
        Ok(match self {
            Self::GraphDefined { graph, schema } => EventKind::GraphDefined { graph, schema },
            Self::RunStarted { graph, thread_id, tags } => EventKind::RunStarted { graph, thread_id, tags },
            Self::RunFinished { outcome, steps, duration_ns, error } => EventKind::RunFinished {
                outcome: match outcome.as_str() {
                    "completed" => RunOutcome::Completed,
                    "failed" => RunOutcome::Failed,
                    "interrupted" => RunOutcome::Interrupted,
                    other => return Err(format!("unknown run outcome `{other}`")),
                },
                steps,
                duration: Duration::from_nanos(duration_ns),
                error,
            },
            Self::SuperstepStarted { step, nodes } => EventKind::SuperstepStarted { step, nodes: nodes.into() },
            Self::SuperstepFinished { step, duration_ns } => {
                EventKind::SuperstepFinished { step, duration: Duration::from_nanos(duration_ns) }
            }
            Self::TaskStarted { step, node, attempt } => EventKind::TaskStarted { step, node, attempt },
            Self::TaskFinished { step, node, attempt, duration_ns, error } => {
                EventKind::TaskFinished { step, node, attempt, duration: Duration::from_nanos(duration_ns), error }
            }
            Self::Routed { step, from, label, target } => EventKind::Routed { step, from, label, target },
            Self::CheckpointCommitted { step, checkpoint_id, snapshot, bytes } => {
                EventKind::CheckpointCommitted { step, checkpoint_id, snapshot, bytes }
            }
            Self::Interrupted { step, node, reason, value } => EventKind::Interrupted {
                step,
                node,
                reason: match reason.as_str() {
                    "before" => InterruptReason::Before,
                    "after" => InterruptReason::After,
                    "node" => InterruptReason::Node,
                    other => return Err(format!("unknown interrupt reason `{other}`")),
                },
                value,
            },
            Self::Custom { step, node, value } => EventKind::Custom { step, node, value },
        })
    }
}

fn wire_run(run: &RunIds) -> WireRun {
    WireRun {
        id: run.run_id.to_string(),
        parent: run.parent_run_id.map(|id| id.to_string()),
        root: run.root_run_id.to_string(),
        depth: run.depth,
    }
}

fn at_ns(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map(nanos).unwrap_or(0)
}

/// Encodes one event; `None` for a kind the schema does not name.
pub(crate) fn encode(publisher: &Publisher, seq: u64, graph: &Arc<str>, event: &Event) -> Option<Vec<u8>> {
    let wire = WireEvent::from_kind(&event.kind)?;
    let message = Message {
        v: EVENT_VERSION,
        publisher: publisher.clone(),
        seq,
        graph: Arc::clone(graph),
        run: wire_run(&event.run),
        at_ns: at_ns(event.at),
        event: Some(wire),
        delta: None,
    };
    serde_json::to_vec(&message).ok()
}

/// Encodes one state delta, serializing its value here; a value that JSON cannot hold is
/// sent as the reason, which is returned too.
pub(crate) fn encode_delta(
    publisher: &Publisher,
    seq: u64,
    graph: &Arc<str>,
    delta: &StateDelta,
) -> (Option<Vec<u8>>, Option<String>) {
    let (value, error) = match delta.to_json() {
        Ok(value) => (Some(value), None),
        Err(error) => (None, Some(format!("{} cannot be written as JSON: {error}", delta.value.type_name()))),
    };
    let message = Message {
        v: SCHEMA_VERSION,
        publisher: publisher.clone(),
        seq,
        graph: Arc::clone(graph),
        run: wire_run(&delta.run),
        at_ns: at_ns(delta.at),
        event: None,
        delta: Some(WireDelta { step: delta.step, kind: delta.kind, value, error: error.clone() }),
    };
    (serde_json::to_vec(&message).ok(), error)
}

/// What a message holds.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Item {
    /// A run's event.
    Event(Event),
    /// A run's state as it starts, or a superstep's merged update (see [`Delta`]); only from
    /// a consumer that asked for them (`Follow::state_deltas`).
    Delta(Delta),
    /// Messages of the run that never arrived within the consumer's reorder window (see
    /// `Follow::reorder_window`): `seq` of [`Received`] is the first missing, `count` how
    /// many. A message that arrives after its gap was reported is yielded when it comes.
    Gap {
        /// How many consecutive `seq` numbers are missing.
        count: u64,
    },
}

/// A state delta as read from the stream: the JSON of a state or an update.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Delta {
    /// When the run handed it over.
    pub at: SystemTime,
    /// The step the snapshot stands at, or the step whose merged update it is.
    pub step: u64,
    /// A whole state or an update.
    pub kind: DeltaKind,
    /// The state or update as JSON, or why the publisher could not write it.
    pub value: std::result::Result<serde_json::Value, String>,
}

impl Delta {
    /// The value as `T` (the graph's state type for a snapshot, its update type for an
    /// update).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        let value =
            self.value.as_ref().map_err(|reason| Error::BadDelta { step: self.step, reason: reason.clone() })?;
        T::deserialize(value).map_err(|error| Error::BadDelta {
            step: self.step,
            reason: format!("not a {}: {error}", std::any::type_name::<T>()),
        })
    }
}

/// One message as read from the stream: an event, a state delta, or a gap the consumer found.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Received {
    /// Its position in the stream (JetStream's stream sequence): where to replay from.
    pub stream_sequence: u64,
    /// Messages after this one that the consumer had yet to deliver when it sent this one:
    /// 0 means the reader has caught up with the stream (for now).
    pub pending: u64,
    /// Who published it.
    pub publisher: Publisher,
    /// Its number among its run's messages from this publisher, from 1.
    pub seq: u64,
    /// The graph of its run.
    pub graph: Arc<str>,
    /// The run.
    pub run: RunIds,
    /// What it holds.
    pub item: Item,
}

impl Received {
    /// The event, if it holds one.
    pub fn event(&self) -> Option<&Event> {
        match &self.item {
            Item::Event(event) => Some(event),
            _ => None,
        }
    }

    /// The state delta, if it holds one.
    pub fn delta(&self) -> Option<&Delta> {
        match &self.item {
            Item::Delta(delta) => Some(delta),
            _ => None,
        }
    }
}

/// Decodes one message's payload.
pub(crate) fn decode(stream_sequence: u64, pending: u64, payload: &[u8]) -> Result<Received> {
    let bad = |reason: String| Error::BadMessage { stream_sequence, reason };
    let Version { v } = serde_json::from_slice(payload).map_err(|error| bad(error.to_string()))?;
    if !(1..=SCHEMA_VERSION).contains(&v) {
        return Err(Error::UnknownVersion { stream_sequence, version: v });
    }
    let message: Message = serde_json::from_slice(payload).map_err(|error| bad(error.to_string()))?;
    let id = |text: &str| text.parse::<RunId>().map_err(|error| bad(format!("run id `{text}`: {error}")));
    let run = RunIds {
        run_id: id(&message.run.id)?,
        parent_run_id: message.run.parent.as_deref().map(id).transpose()?,
        root_run_id: id(&message.run.root)?,
        depth: message.run.depth,
    };
    let at = UNIX_EPOCH + Duration::from_nanos(message.at_ns);
    let item = match (message.event, message.delta) {
        (Some(event), _) => Item::Event(Event::at(run, at, event.into_kind().map_err(bad)?)),
        (None, Some(WireDelta { step, kind, value, error })) => {
            let value = match (value, error) {
                (Some(value), _) => Ok(value),
                (None, error) => Err(error.unwrap_or_else(|| "the delta carries no value".to_owned())),
            };
            Item::Delta(Delta { at, step, kind, value })
        }
        (None, None) => return Err(bad("it has neither `event` nor `delta`".to_owned())),
    };
    Ok(Received {
        stream_sequence,
        pending,
        publisher: message.publisher,
        seq: message.seq,
        graph: message.graph,
        run,
        item,
    })
}

#[cfg(test)]
mod tests;
