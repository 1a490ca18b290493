//! The message schema, version 1: one JSON object per event.
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
//! - `v`: the schema version. A consumer refuses other versions by name
//!   ([`Error::UnknownVersion`]); fields may be added within a
//!   version, so a consumer ignores fields it does not know.
//! - `publisher`: which sink published it: `id` is unique per sink (a ULID made when it starts),
//!   `name` says where it runs (`{pid}@{host}` unless set).
//! - `seq`: 1, 2, 3, ... per run and publisher, in the order the run emitted its events: a
//!   consumer sees a gap when events were dropped and can restore the order after a
//!   reconnection re-sent some.
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
//! Each message also carries the header `Nats-Msg-Id: {publisher id}-{n}`, so that a message
//! re-sent after a lost acknowledgement is stored once (JetStream's duplicate window).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use dashflow_telemetry::{Event, EventKind, InterruptReason, RunId, RunIds, RunOutcome};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The schema version this crate writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

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
    pub(crate) event: WireEvent,
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

/// Encodes one event; `None` for a kind the schema does not name.
pub(crate) fn encode(publisher: &Publisher, seq: u64, graph: &Arc<str>, event: &Event) -> Option<Vec<u8>> {
    let wire = WireEvent::from_kind(&event.kind)?;
    let run = &event.run;
    let message = Message {
        v: SCHEMA_VERSION,
        publisher: publisher.clone(),
        seq,
        graph: Arc::clone(graph),
        run: WireRun {
            id: run.run_id.to_string(),
            parent: run.parent_run_id.map(|id| id.to_string()),
            root: run.root_run_id.to_string(),
            depth: run.depth,
        },
        at_ns: event.at.duration_since(UNIX_EPOCH).map(nanos).unwrap_or(0),
        event: wire,
    };
    serde_json::to_vec(&message).ok()
}

/// One event as read from the stream.
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
    /// Its number among its run's events from this publisher, from 1.
    pub seq: u64,
    /// The graph of its run.
    pub graph: Arc<str>,
    /// The event.
    pub event: Event,
}

/// Decodes one message's payload.
pub(crate) fn decode(stream_sequence: u64, pending: u64, payload: &[u8]) -> Result<Received> {
    let bad = |reason: String| Error::BadMessage { stream_sequence, reason };
    let Version { v } = serde_json::from_slice(payload).map_err(|error| bad(error.to_string()))?;
    if v != SCHEMA_VERSION {
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
    let kind = message.event.into_kind().map_err(bad)?;
    Ok(Received {
        stream_sequence,
        pending,
        publisher: message.publisher,
        seq: message.seq,
        graph: message.graph,
        event: Event::at(run, at, kind),
    })
}

#[cfg(test)]
mod tests;
