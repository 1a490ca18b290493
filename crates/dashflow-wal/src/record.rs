//! Record payloads: one tag byte saying what the record holds, then its body.
//!
//! Tag [`TAG_EVENT_BIN`] is a telemetry [`Event`] in a compact binary layout (what the WAL
//! writes; see [`encode_event`]), tag [`TAG_EVENT_JSON`] an event as JSON (what earlier
//! versions wrote, still read, and still written for an event the binary layout cannot hold),
//! tag [`TAG_TRACE_JSON`] the [`ExecutionTrace`] of a finished run as JSON (appended after the
//! run's events), tag [`TAG_PROCESS`] the process that executes the runs started in the same
//! batch ([`ProcessRecord`], binary, appended after the batch's events and traces). A reader
//! skips records with a tag it does not know, so a newer DashFlow can add record kinds that an
//! older CLI still steps over.

mod binary;
mod process;

pub(crate) use binary::SchemaCache;

use dashflow_telemetry::{Event, EventRef, RunId, RunIds};
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

/// What a record holds.
#[derive(Debug)]
#[non_exhaustive]
pub enum Payload {
    /// A run event.
    Event(Box<Event>),
    /// The trace of a finished run.
    Trace(Box<ExecutionTrace>),
    /// The process that executes some runs.
    Process(ProcessRecord),
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
/// newer than this layout), [`encode_event_json`]'s.
pub fn encode_event(event: &Event, out: &mut Vec<u8>) -> Result<()> {
    encode_event_cached(event, out, &mut SchemaCache::default())
}

/// [`encode_event`] for an event of a batch as it lies there (the same bytes, without
/// building it), reusing the text of a graph schema encoded just before.
pub(crate) fn encode_event_ref(event: &EventRef<'_>, out: &mut Vec<u8>, cache: &mut SchemaCache) -> Result<()> {
    out.push(TAG_EVENT_BIN);
    if binary::encode_ref(event, out, cache) {
        return Ok(());
    }
    out.pop();
    match event {
        EventRef::Whole(event) => encode_event_json(event, out),
        event => encode_event_json(&event.to_event(), out),
    }
}

/// [`encode_event`], reusing the text of a graph schema encoded just before.
pub(crate) fn encode_event_cached(event: &Event, out: &mut Vec<u8>, cache: &mut SchemaCache) -> Result<()> {
    out.push(TAG_EVENT_BIN);
    if binary::encode(event, out, cache) {
        return Ok(());
    }
    out.pop();
    encode_event_json(event, out)
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
        Some((&TAG_TRACE_JSON, body)) => serde_json::from_slice(body).map(|t| Payload::Trace(Box::new(t))),
        Some((&TAG_PROCESS, body)) => {
            decode_process(body).map(|record| record.map_or(Payload::Unknown { tag: TAG_PROCESS }, Payload::Process))
        }
        Some((&tag, _)) => Ok(Payload::Unknown { tag }),
        // Frames are never empty; an empty slice is a caller's bug, read as an unknown record.
        None => Ok(Payload::Unknown { tag: 0 }),
    }
}

/// The event a record holds, `None` for a record of another kind. Only event bodies are
/// parsed: a reader of events is never stopped by a trace it does not need.
pub(crate) fn decode_event(payload: &[u8]) -> Result<Option<Event>, serde_json::Error> {
    match payload.split_first() {
        Some((&TAG_EVENT_JSON, body)) => serde_json::from_slice(body).map(Some),
        Some((&TAG_EVENT_BIN, body)) => decode_binary(body).map(Some),
        _ => Ok(None),
    }
}

/// Whether a record holds a trace (readers of events step over it without counting it as
/// unknown).
pub(crate) fn is_trace(payload: &[u8]) -> bool {
    payload.first() == Some(&TAG_TRACE_JSON)
}

/// Whether a record is of a kind this version writes besides events (a trace or a process
/// record): readers of events step over it without counting it as unknown.
pub(crate) fn is_known_non_event(payload: &[u8]) -> bool {
    matches!(payload.first(), Some(&(TAG_TRACE_JSON | TAG_PROCESS)))
}

/// What the index learns from a record: the event, the run a trace belongs to, or the
/// process executing some runs.
#[derive(Debug)]
pub(crate) enum Indexed {
    Event(Event),
    Trace(RunId),
    Process(ProcessRecord),
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
        Some((&TAG_TRACE_JSON, body)) => {
            serde_json::from_slice::<TraceHead>(body).map(|head| Some(Indexed::Trace(head.run.run_id)))
        }
        Some((&TAG_PROCESS, body)) => decode_process(body).map(|record| record.map(Indexed::Process)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests;
