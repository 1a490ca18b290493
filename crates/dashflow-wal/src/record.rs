//! Record payloads: one tag byte saying what the record holds, then its body.
//!
//! Tag [`TAG_EVENT_BIN`] is a telemetry [`Event`] in a compact binary layout (what the WAL
//! writes; see [`encode_event`]), tag [`TAG_EVENT_JSON`] an event as JSON (what earlier
//! versions wrote, still read, and still written for an event the binary layout cannot hold),
//! tag [`TAG_TRACE_JSON`] the [`ExecutionTrace`] of a finished run as JSON (appended after the
//! run's events), tag [`TAG_PROCESS`] the process that executes the runs started in the same
//! batch ([`ProcessRecord`], binary, appended after the batch's events and traces), tag
//! [`TAG_RUN_EVENTS`] consecutive events of one run in one record (what the WAL's writer
//! appends for a run's events in a batch: the ids, the time and the frame's checksum once
//! for all of them), tag [`TAG_SCHEMA`] a graph's schema, once per segment, and tag
//! [`TAG_GRAPH`] a run's `GraphDefined` event naming its schema by key (see the `schema`
//! module). A reader skips records with a tag it does not know, so a newer DashFlow can add
//! record kinds that an older CLI still steps over (an older CLI reads a log with graph
//! records as one without graph definitions).

mod binary;
mod process;
mod schema;

pub(crate) use schema::SchemaCache;
pub use schema::{GraphRecord, SchemaKey, SchemaRecord};

use std::time::SystemTime;

use dashflow_telemetry::{Event, EventKind, EventRef, RunId, RunIds};
use serde::Deserialize;

use crate::error::{Result, WalError};
use crate::process::ProcessIdentity;
use crate::trace::ExecutionTrace;

/// Tag of a record holding one [`Event`] as JSON.
pub const TAG_EVENT_JSON: u8 = 1;
/// Tag of a record holding one [`ExecutionTrace`] as JSON.
pub const TAG_TRACE_JSON: u8 = 2;
/// Tag of a record holding one [`Event`] in the compact binary layout: ids as 16 raw bytes,
/// integers as varints, strings length-prefixed, JSON values (a graph's schema, a custom
/// value) as JSON text. About a fifth of the JSON's size and far cheaper to write.
pub const TAG_EVENT_BIN: u8 = 3;
/// Tag of a record naming the process that executes the runs whose `RunStarted` is in the
/// same batch ([`ProcessRecord`], binary). A reader that finds a run `running` uses it to
/// tell whether the run's process still exists
/// ([`RunStatus::Abandoned`](crate::RunStatus::Abandoned)).
pub const TAG_PROCESS: u8 = 4;

/// Tag of a record holding consecutive events of one run, in the binary layout with the
/// run's ids and a base time once and each event's time as a delta (see the `binary`
/// module's docs).
pub const TAG_RUN_EVENTS: u8 = 5;

/// Tag of a record holding a graph's schema ([`SchemaRecord`]): written once per segment,
/// before the first graph record in that segment that names it.
pub const TAG_SCHEMA: u8 = 6;

/// Tag of a record holding a run's `GraphDefined` event with its schema named by key
/// ([`GraphRecord`]); the schema is in a schema record of the same segment.
pub const TAG_GRAPH: u8 = 7;

/// The most bytes a run block grows to before the writer starts another (or the maximum
/// record size, if smaller): damage to a block loses every event in it, so blocks stay small.
pub(crate) const RUN_BLOCK_LIMIT: usize = 16 * 1024;

/// What a record holds.
#[derive(Debug)]
#[non_exhaustive]
pub enum Payload {
    /// A run event.
    Event(Box<Event>),
    /// Consecutive events of one run, in order (a run block, [`TAG_RUN_EVENTS`]).
    Events(Vec<Event>),
    /// The trace of a finished run.
    Trace(Box<ExecutionTrace>),
    /// The process that executes some runs.
    Process(ProcessRecord),
    /// A graph's schema.
    Schema(SchemaRecord),
    /// A run's `GraphDefined` event, its schema named by key.
    Graph(GraphRecord),
    /// A record of a kind this version does not know; readers skip it.
    Unknown {
        /// The record's tag byte.
        tag: u8,
    },
}

/// What a process record holds: the process that appended these runs' `RunStarted` events,
/// which is the process executing them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessRecord {
    /// The process.
    pub process: ProcessIdentity,
    /// The runs it started in the batch.
    pub runs: Vec<RunId>,
}

impl ProcessRecord {
    /// A record saying that `process` executes `runs`.
    pub fn new(process: ProcessIdentity, runs: Vec<RunId>) -> Self {
        Self { process, runs }
    }
}

/// Appends the payload of `event` to `out`: tag [`TAG_EVENT_BIN`] and the binary body, or,
/// for an event the binary layout cannot hold (a time before the Unix epoch, an event kind
/// newer than this layout), [`encode_event_json`]'s. A `GraphDefined` event is written
/// whole, its schema inline, as earlier versions wrote it (the WAL's writer stores a graph
/// record and the schema once per segment instead).
pub fn encode_event(event: &Event, out: &mut Vec<u8>) -> Result<()> {
    out.push(TAG_EVENT_BIN);
    if binary::encode(event, out) {
        return Ok(());
    }
    out.pop();
    encode_event_json(event, out)
}

/// Appends the record of an event of a batch as it lies there: [`encode_event`]'s bytes,
/// without building the event, except for a `GraphDefined`, which becomes a graph record
/// ([`TAG_GRAPH`]) naming its schema's key; the key is returned, and the caller makes sure
/// the segment holds the schema record.
pub(crate) fn encode_event_ref(
    event: &EventRef<'_>,
    out: &mut Vec<u8>,
    cache: &mut SchemaCache,
    max_record_size: u32,
) -> Result<Option<SchemaKey>> {
    if let EventRef::Whole(Event { run, at, kind: EventKind::GraphDefined { graph, schema } }) = event {
        let key = cache.key(schema, max_record_size);
        out.push(TAG_GRAPH);
        if binary::graph_record(run, *at, graph, key, out) {
            return Ok(Some(key));
        }
        out.pop();
    }
    out.push(TAG_EVENT_BIN);
    if binary::encode_ref(event, out) {
        return Ok(None);
    }
    out.pop();
    match event {
        EventRef::Whole(event) => encode_event_json(event, out),
        event => encode_event_json(&event.to_event(), out),
    }
    .map(|()| None)
}

/// Appends the payload of a schema record (tag [`TAG_SCHEMA`], the key and the JSON text).
pub fn encode_schema(schema: &serde_json::Value, out: &mut Vec<u8>) -> SchemaKey {
    // Serializing a `Value` cannot fail: its map keys are strings.
    let text = serde_json::to_vec(schema).unwrap_or_else(|_| b"null".to_vec());
    let key = SchemaKey::of(&text);
    out.push(TAG_SCHEMA);
    schema::encode_schema_body(key, &text, out);
    key
}

/// Appends the payload of a graph record (tag [`TAG_GRAPH`]) naming `key`; `false` (with
/// `out` unchanged) for a time before the Unix epoch.
pub fn encode_graph(record: &GraphRecord, out: &mut Vec<u8>) -> bool {
    out.push(TAG_GRAPH);
    if binary::graph_record(&record.run, record.at, &record.graph, record.key, out) {
        return true;
    }
    out.pop();
    false
}

/// Appends a run block of `events` (all of one run, non-empty) to `out` as long as it stays
/// within `limit` bytes: tag [`TAG_RUN_EVENTS`] and the block's body. Returns how many events
/// went in: 0 when the first cannot open a block (its time is before the Unix epoch, or its
/// kind is newer than the binary layout), and `out` is then unchanged; the caller writes that
/// event on its own and goes on with the next.
pub(crate) fn encode_run_block<'e>(
    events: impl IntoIterator<Item = EventRef<'e>>,
    limit: usize,
    out: &mut Vec<u8>,
) -> usize {
    let mut events = events.into_iter();
    let Some(first) = events.next() else { return 0 };
    let start = out.len();
    out.push(TAG_RUN_EVENTS);
    if !binary::block_head(&first, out) {
        out.truncate(start);
        return 0;
    }
    let count_at = out.len() - 4;
    let mut previous = first.at();
    let mut count = 0u32;
    for event in std::iter::once(first).chain(events) {
        let before = out.len();
        if !binary::block_event(&event, previous, out) {
            break;
        }
        // The first event always goes in: one event larger than the limit is a block of one,
        // which the frame refuses if it exceeds the maximum record size.
        if count > 0 && out.len() - start > limit {
            out.truncate(before);
            break;
        }
        previous = event.at();
        count += 1;
        if count == u32::MAX {
            break;
        }
    }
    if count == 0 {
        out.truncate(start);
    } else {
        binary::block_count(out, count_at, count);
    }
    count as usize
}

/// Appends the payload of `event` as JSON (tag [`TAG_EVENT_JSON`]) to `out`, the encoding of
/// earlier versions, which every reader still decodes.
pub fn encode_event_json(event: &Event, out: &mut Vec<u8>) -> Result<()> {
    out.push(TAG_EVENT_JSON);
    serde_json::to_writer(&mut *out, event).map_err(|source| WalError::Encode { source })
}

/// Appends the payload of a process record (tag [`TAG_PROCESS`] and its binary body) to `out`.
pub fn encode_process(record: &ProcessRecord, out: &mut Vec<u8>) {
    out.push(TAG_PROCESS);
    process::encode(record, out);
}

/// The most runs one process record of `process` can name within `max_record_size` bytes
/// (at least one; a record too large is refused when it is framed).
pub(crate) fn process_record_capacity(process: &ProcessIdentity, max_record_size: u32) -> usize {
    let room = (max_record_size as usize).saturating_sub(1 + process::fixed_len(process));
    (room / process::RUN_LEN).max(1)
}

/// Decodes a process body; `None` for a layout this version does not know.
fn decode_process(body: &[u8]) -> Result<Option<ProcessRecord>, serde_json::Error> {
    process::decode(body).map_err(|binary::Malformed(what)| {
        <serde_json::Error as serde::de::Error>::custom(format_args!("malformed process record: {what}"))
    })
}

/// Decodes a run block's body, as [`decode_binary`] does an event's.
fn decode_block(body: &[u8]) -> Result<Vec<Event>, serde_json::Error> {
    binary::decode_block(body).map_err(|binary::Malformed(what)| {
        <serde_json::Error as serde::de::Error>::custom(format_args!("malformed run block record: {what}"))
    })
}

/// Decodes a schema record's body, as [`decode_binary`] does an event's.
fn decode_schema(body: &[u8]) -> Result<SchemaRecord, serde_json::Error> {
    schema::decode_schema_body(body).map_err(|binary::Malformed(what)| {
        <serde_json::Error as serde::de::Error>::custom(format_args!("malformed schema record: {what}"))
    })
}

/// Decodes a graph record's body, as [`decode_binary`] does an event's.
fn decode_graph(body: &[u8]) -> Result<GraphRecord, serde_json::Error> {
    binary::decode_graph(body).map_err(|binary::Malformed(what)| {
        <serde_json::Error as serde::de::Error>::custom(format_args!("malformed graph record: {what}"))
    })
}

/// Decodes a binary event body; a malformed one is reported as a (custom) JSON error, the
/// error type of every record decoder here.
fn decode_binary(body: &[u8]) -> Result<Event, serde_json::Error> {
    binary::decode(body).map_err(|binary::Malformed(what)| {
        <serde_json::Error as serde::de::Error>::custom(format_args!("malformed binary event record: {what}"))
    })
}

/// Appends the payload of `trace` (tag and JSON) to `out`.
pub fn encode_trace(trace: &ExecutionTrace, out: &mut Vec<u8>) -> Result<()> {
    out.push(TAG_TRACE_JSON);
    serde_json::to_writer(&mut *out, trace).map_err(|source| WalError::Encode { source })
}

/// Decodes a payload. The error is the JSON error of a known tag; the caller adds the location.
pub fn decode_payload(payload: &[u8]) -> Result<Payload, serde_json::Error> {
    match payload.split_first() {
        Some((&TAG_EVENT_JSON, body)) => serde_json::from_slice(body).map(|e| Payload::Event(Box::new(e))),
        Some((&TAG_EVENT_BIN, body)) => decode_binary(body).map(|e| Payload::Event(Box::new(e))),
        Some((&TAG_RUN_EVENTS, body)) => decode_block(body).map(Payload::Events),
        Some((&TAG_TRACE_JSON, body)) => serde_json::from_slice(body).map(|t| Payload::Trace(Box::new(t))),
        Some((&TAG_PROCESS, body)) => {
            decode_process(body).map(|record| record.map_or(Payload::Unknown { tag: TAG_PROCESS }, Payload::Process))
        }
        Some((&TAG_SCHEMA, body)) => decode_schema(body).map(Payload::Schema),
        Some((&TAG_GRAPH, body)) => decode_graph(body).map(Payload::Graph),
        Some((&tag, _)) => Ok(Payload::Unknown { tag }),
        // Frames are never empty; an empty slice is a caller's bug, read as an unknown record.
        None => Ok(Payload::Unknown { tag: 0 }),
    }
}

/// What a record holds for a reader of events.
#[derive(Debug)]
pub(crate) enum Read {
    /// The events of an event record (one) or a run block (several), in order.
    Events(Vec<Event>),
    /// A run's `GraphDefined`, its schema to resolve ([`crate::schemas::Resolver`]).
    Graph(GraphRecord),
    /// A schema graph records of the same segment refer to.
    Schema(SchemaRecord),
    /// A record of a kind this version writes that holds no event (a trace, a process).
    Other,
    /// A record of a kind this version does not know.
    Unknown,
}

/// Decodes what a reader of events needs of a record. Only event, graph and schema bodies
/// are parsed: a reader of events is never stopped by a trace it does not need.
pub(crate) fn read_events(payload: &[u8]) -> Result<Read, serde_json::Error> {
    match payload.split_first() {
        Some((&TAG_EVENT_JSON, body)) => serde_json::from_slice(body).map(|event| Read::Events(vec![event])),
        Some((&TAG_EVENT_BIN, body)) => decode_binary(body).map(|event| Read::Events(vec![event])),
        Some((&TAG_RUN_EVENTS, body)) => decode_block(body).map(Read::Events),
        Some((&TAG_GRAPH, body)) => decode_graph(body).map(Read::Graph),
        Some((&TAG_SCHEMA, body)) => decode_schema(body).map(Read::Schema),
        Some((&(TAG_TRACE_JSON | TAG_PROCESS), _)) => Ok(Read::Other),
        _ => Ok(Read::Unknown),
    }
}

/// The events a record holds on its own, in order: none for a record of another kind, and
/// none for a graph record, whose event needs its schema resolved (unit tests of
/// self-contained records).
#[cfg(test)]
pub(crate) fn decode_events(payload: &[u8]) -> Result<Vec<Event>, serde_json::Error> {
    read_events(payload).map(|read| match read {
        Read::Events(events) => events,
        _ => Vec::new(),
    })
}

/// The one event a record of a single event holds (tests of single-event records).
#[cfg(test)]
pub(crate) fn decode_event(payload: &[u8]) -> Result<Option<Event>, serde_json::Error> {
    decode_events(payload).map(|mut events| {
        assert!(events.len() <= 1, "a run block where one event was expected");
        events.pop()
    })
}

/// Whether a record holds a trace (readers of events step over it without counting it as
/// unknown).
pub(crate) fn is_trace(payload: &[u8]) -> bool {
    payload.first() == Some(&TAG_TRACE_JSON)
}

/// Whether a record holds a schema (readers that look for schemas decode no other record).
pub(crate) fn is_schema(payload: &[u8]) -> bool {
    payload.first() == Some(&TAG_SCHEMA)
}

/// What the index learns from a record: the event, the run a trace belongs to, or the
/// process executing some runs.
#[derive(Debug)]
pub(crate) enum Indexed {
    Event(Event),
    /// A run block's events.
    Events(Vec<Event>),
    Trace(RunId),
    Process(ProcessRecord),
    /// A graph record: an event of the run that tells the index nothing more.
    Graph(RunIds, SystemTime),
    /// A schema record, by key (its schema is not read).
    Schema(SchemaKey),
}

/// The part of a trace the index needs; the rest of the body is skipped, not kept.
#[derive(Deserialize)]
struct TraceHead {
    run: RunIds,
}

/// Decodes what the index needs of a record, `None` for a record of an unknown kind.
pub(crate) fn decode_indexed(payload: &[u8]) -> Result<Option<Indexed>, serde_json::Error> {
    match payload.split_first() {
        Some((&TAG_EVENT_JSON, body)) => serde_json::from_slice(body).map(|e| Some(Indexed::Event(e))),
        Some((&TAG_EVENT_BIN, body)) => decode_binary(body).map(|e| Some(Indexed::Event(e))),
        Some((&TAG_RUN_EVENTS, body)) => decode_block(body).map(|events| Some(Indexed::Events(events))),
        Some((&TAG_TRACE_JSON, body)) => {
            serde_json::from_slice::<TraceHead>(body).map(|head| Some(Indexed::Trace(head.run.run_id)))
        }
        Some((&TAG_PROCESS, body)) => decode_process(body).map(|record| record.map(Indexed::Process)),
        Some((&TAG_GRAPH, body)) => decode_graph(body).map(|graph| Some(Indexed::Graph(graph.run, graph.at))),
        Some((&TAG_SCHEMA, body)) => match schema::schema_body_key(body) {
            Some(key) => Ok(Some(Indexed::Schema(key))),
            None => decode_schema(body).map(|_| None),
        },
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests;
