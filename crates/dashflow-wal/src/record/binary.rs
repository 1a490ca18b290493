//! The compact binary body of an event record ([`TAG_EVENT_BIN`](super::TAG_EVENT_BIN)).
//!
//! Layout, integers as unsigned LEB128 varints unless noted:
//!
//! ```text
//! flags u8            bit 0: parent present, bit 1: root differs from the run id
//! run_id u128 LE      16 bytes
//! [parent u128 LE]    if bit 0
//! [root u128 LE]      if bit 1
//! depth               varint
//! at                  seconds since the Unix epoch (varint), nanoseconds (varint)
//! kind u8             0 GraphDefined .. 11 RunStarted with tags (the constants below), then its
//!                     fields:
//!   string            varint length, UTF-8 bytes
//!   option            u8 0 (none) or 1, then the value
//!   duration          seconds (varint), nanoseconds (varint)
//!   outcome           u8 0 completed, 1 failed, 2 interrupted
//!   reason            u8 0 before, 1 after, 2 node (of an interrupt)
//!   bool              u8 0 or 1
//!   JSON value        a string holding the value as JSON text
//! ```
//!
//! A run block ([`TAG_RUN_EVENTS`](super::TAG_RUN_EVENTS)) holds consecutive events of one
//! run: the ids and the first event's time once, then each event as the nanoseconds since the
//! one before it (varint) and its kind byte and fields, to the end of the body:
//!
//! ```text
//! flags, run_id, [parent], [root], depth, at      as above, once
//! count u32 LE                                    how many events follow, at least one
//! (delta, kind u8, fields) x count                delta: nanoseconds after the previous event
//! ```
//!
//! The body must be consumed exactly; anything else (a short body, trailing bytes, an unknown
//! kind, a bad string, an out-of-range number) is a decode error, never a panic.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashflow_telemetry::{Event, EventKind, EventRef, InterruptReason, RunId, RunIds, RunOutcome};

use super::schema::{self, GraphRecord, SchemaKey};

const PARENT: u8 = 1;
const ROOT: u8 = 2;

const GRAPH_DEFINED: u8 = 0;
const RUN_STARTED: u8 = 1;
const RUN_FINISHED: u8 = 2;
const SUPERSTEP_STARTED: u8 = 3;
const SUPERSTEP_FINISHED: u8 = 4;
const TASK_STARTED: u8 = 5;
const TASK_FINISHED: u8 = 6;
const ROUTED: u8 = 7;
const CUSTOM: u8 = 8;
const CHECKPOINT_COMMITTED: u8 = 9;
const INTERRUPTED: u8 = 10;
/// `RunStarted` with tags: its fields, then the tags as a count and strings. A run without
/// tags is written as [`RUN_STARTED`], as before tags existed.
const RUN_STARTED_TAGGED: u8 = 11;

/// Appends the binary body of `event` to `out`. `false` (with `out` unchanged) for an event
/// this layout cannot hold: a time before the Unix epoch or an event kind newer than it. The
/// caller then writes the event as JSON.
pub(super) fn encode(event: &Event, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    if !head(&event.run, event.at, out) {
        return false;
    }
    if kind(&event.kind, out) {
        return true;
    }
    out.truncate(start);
    false
}

/// [`encode`] for an event of a batch as it lies there: the same bytes, without building
/// the event. `false` for a `GraphDefined`, which the writer stores as a graph record.
pub(super) fn encode_ref(event: &EventRef<'_>, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    if !head(event.run(), event.at(), out) {
        return false;
    }
    if kind_ref(event, out) {
        return true;
    }
    out.truncate(start);
    false
}

/// The kind byte and fields of an event where it lies; `false` for a kind this layout cannot
/// hold and for a `GraphDefined`, whose schema the writer stores once per segment (a graph
/// record refers to it), never inline (the caller restores `out`).
fn kind_ref(event: &EventRef<'_>, out: &mut Vec<u8>) -> bool {
    match *event {
        EventRef::Whole(Event { kind: EventKind::GraphDefined { .. }, .. }) => return false,
        EventRef::Whole(event) => return kind(&event.kind, out),
        EventRef::StepStarted { step, nodes, .. } => superstep_started(out, step, nodes),
        EventRef::TaskFinished { step, node, attempt, duration, .. } => {
            task_finished(out, (step, node, attempt), duration, None);
        }
        EventRef::Routed { step, from, label, target, .. } => routed(out, step, [from, label, target]),
        _ => return false,
    }
    true
}

/// Starts the body of a run block ([`TAG_RUN_EVENTS`](super::TAG_RUN_EVENTS)) whose first
/// event is `first`: the run's ids and the first event's time, once for the whole block.
/// `false` (with `out` unchanged) for a time before the Unix epoch.
pub(super) fn block_head(first: &EventRef<'_>, out: &mut Vec<u8>) -> bool {
    if !head(first.run(), first.at(), out) {
        return false;
    }
    // The count, written by `block_count` once the block is complete.
    out.extend_from_slice(&[0; 4]);
    true
}

/// Writes a block's event count in the four bytes `block_head` left at `count_at`.
pub(super) fn block_count(out: &mut [u8], count_at: usize, count: u32) {
    out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
}

/// Appends the body of a graph record ([`TAG_GRAPH`](super::TAG_GRAPH)): the run's ids and
/// the event's time, the graph's name and its schema's key. `false` (with `out` unchanged)
/// for a time before the Unix epoch.
pub(super) fn graph_record(run: &RunIds, at: SystemTime, graph: &str, key: SchemaKey, out: &mut Vec<u8>) -> bool {
    if !head(run, at, out) {
        return false;
    }
    string(out, graph);
    out.extend_from_slice(key.as_bytes());
    true
}

/// Decodes the body of a graph record written by [`graph_record`].
pub(super) fn decode_graph(body: &[u8]) -> Result<GraphRecord, Malformed> {
    let mut r = Reader { rest: body };
    let run = r.run_ids()?;
    let at = UNIX_EPOCH.checked_add(r.duration()?).ok_or(Malformed("time out of range"))?;
    let graph = r.string()?;
    let key = schema::read_key(r.rest)?;
    Ok(GraphRecord { run, at, graph, key })
}

/// Appends `event` to a run block whose previous event happened at `previous`: its time as
/// nanoseconds after that, then its kind and fields. `false` (with `out` unchanged) for an
/// event that cannot go in the block: a kind this layout cannot hold, or a time before
/// `previous` (or too far after it for the delta).
pub(super) fn block_event(event: &EventRef<'_>, previous: std::time::SystemTime, out: &mut Vec<u8>) -> bool {
    let Some(delta) = event.at().duration_since(previous).ok().and_then(|delta| u64::try_from(delta.as_nanos()).ok())
    else {
        return false;
    };
    let start = out.len();
    varint(out, delta);
    if kind_ref(event, out) {
        return true;
    }
    out.truncate(start);
    false
}

/// The ids and the time; `false` (with `out` unchanged) for a time before the Unix epoch.
fn head(run: &RunIds, at: SystemTime, out: &mut Vec<u8>) -> bool {
    let Ok(since_epoch) = at.duration_since(UNIX_EPOCH) else { return false };
    let mut flags = 0;
    if run.parent_run_id.is_some() {
        flags |= PARENT;
    }
    if run.root_run_id != run.run_id {
        flags |= ROOT;
    }
    out.push(flags);
    out.extend_from_slice(&run.run_id.to_u128().to_le_bytes());
    if let Some(parent) = run.parent_run_id {
        out.extend_from_slice(&parent.to_u128().to_le_bytes());
    }
    if flags & ROOT != 0 {
        out.extend_from_slice(&run.root_run_id.to_u128().to_le_bytes());
    }
    varint(out, u64::from(run.depth));
    duration(out, since_epoch);
    true
}

/// The kind byte and its fields; `false` for a kind this layout cannot hold (the caller
/// restores `out`).
fn kind(kind: &EventKind, out: &mut Vec<u8>) -> bool {
    match kind {
        // Inline, as earlier versions wrote it: the writer stores a graph record instead.
        EventKind::GraphDefined { graph, schema } => {
            out.push(GRAPH_DEFINED);
            string(out, graph);
            json(out, schema);
        }
        EventKind::RunStarted { graph, thread_id, tags } => {
            out.push(if tags.is_empty() { RUN_STARTED } else { RUN_STARTED_TAGGED });
            string(out, graph);
            option(out, thread_id.as_deref(), string);
            if !tags.is_empty() {
                varint(out, tags.len() as u64);
                for tag in tags {
                    string(out, tag);
                }
            }
        }
        EventKind::RunFinished { outcome, steps, duration: d, error } => {
            let outcome = match outcome {
                RunOutcome::Completed => 0,
                RunOutcome::Failed => 1,
                RunOutcome::Interrupted => 2,
                _ => return false,
            };
            out.push(RUN_FINISHED);
            out.push(outcome);
            varint(out, *steps);
            duration(out, *d);
            option(out, error.as_deref(), string);
        }
        EventKind::SuperstepStarted { step, nodes } => superstep_started(out, *step, nodes),
        EventKind::SuperstepFinished { step, duration: d } => {
            out.push(SUPERSTEP_FINISHED);
            varint(out, *step);
            duration(out, *d);
        }
        EventKind::TaskStarted { step, node, attempt } => {
            out.push(TASK_STARTED);
            varint(out, *step);
            string(out, node);
            varint(out, u64::from(*attempt));
        }
        EventKind::TaskFinished { step, node, attempt, duration: d, error } => {
            task_finished(out, (*step, node, *attempt), *d, error.as_deref());
        }
        EventKind::Routed { step, from, label, target } => routed(out, *step, [from, label, target]),
        EventKind::Custom { step, node, value } => {
            out.push(CUSTOM);
            varint(out, *step);
            string(out, node);
            json(out, value);
        }
        EventKind::CheckpointCommitted { step, checkpoint_id, snapshot, bytes } => {
            out.push(CHECKPOINT_COMMITTED);
            varint(out, *step);
            string(out, checkpoint_id);
            out.push(u8::from(*snapshot));
            varint(out, *bytes);
        }
        EventKind::Interrupted { step, node, reason, value } => {
            let reason = match reason {
                InterruptReason::Before => 0,
                InterruptReason::After => 1,
                InterruptReason::Node => 2,
                _ => return false,
            };
            out.push(INTERRUPTED);
            varint(out, *step);
            string(out, node);
            out.push(reason);
            option(out, value.as_deref(), json);
        }
        _ => return false,
    }
    true
}

fn superstep_started(out: &mut Vec<u8>, step: u64, nodes: &[Arc<str>]) {
    out.push(SUPERSTEP_STARTED);
    varint(out, step);
    varint(out, nodes.len() as u64);
    for node in nodes {
        string(out, node);
    }
}

fn task_finished(out: &mut Vec<u8>, (step, node, attempt): (u64, &str, u32), d: Duration, error: Option<&str>) {
    out.push(TASK_FINISHED);
    varint(out, step);
    string(out, node);
    varint(out, u64::from(attempt));
    duration(out, d);
    option(out, error, string);
}

fn routed(out: &mut Vec<u8>, step: u64, [from, label, target]: [&str; 3]) {
    out.push(ROUTED);
    varint(out, step);
    string(out, from);
    string(out, label);
    string(out, target);
}

pub(super) fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn duration(out: &mut Vec<u8>, d: Duration) {
    varint(out, d.as_secs());
    varint(out, u64::from(d.subsec_nanos()));
}

pub(super) fn string(out: &mut Vec<u8>, s: &str) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn option<T: ?Sized>(out: &mut Vec<u8>, value: Option<&T>, write: fn(&mut Vec<u8>, &T)) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            write(out, value);
        }
    }
}

fn json(out: &mut Vec<u8>, value: &serde_json::Value) {
    // Serializing a `Value` cannot fail: its map keys are strings.
    let text = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
    string(out, &text);
}

/// Why a binary body did not decode.
#[derive(Debug)]
pub(super) struct Malformed(pub(super) &'static str);

/// Decodes a binary body written by [`encode`].
pub(super) fn decode(body: &[u8]) -> Result<Event, Malformed> {
    let mut r = Reader { rest: body };
    let run = r.run_ids()?;
    let at = UNIX_EPOCH.checked_add(r.duration()?).ok_or(Malformed("time out of range"))?;
    let kind = r.kind()?;
    if !r.rest.is_empty() {
        return Err(Malformed("trailing bytes"));
    }
    Ok(Event { run, at, kind })
}

/// Decodes the body of a run block written by [`block_head`] and [`block_event`]: every
/// event in it, in order. A block holds at least one event; anything but whole events up to
/// the last byte is malformed.
pub(super) fn decode_block(body: &[u8]) -> Result<Vec<Event>, Malformed> {
    let mut r = Reader { rest: body };
    let run = r.run_ids()?;
    let mut at = UNIX_EPOCH.checked_add(r.duration()?).ok_or(Malformed("time out of range"))?;
    let count = u32::from_le_bytes(r.take(4)?.try_into().map_err(|_| Malformed("record ends early"))?);
    // Each event takes at least two bytes: a count beyond the body is malformed, not an
    // allocation.
    if count == 0 || u64::from(count) > r.rest.len() as u64 / 2 {
        return Err(Malformed("event count out of range"));
    }
    let mut events = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let delta = Duration::from_nanos(r.varint()?);
        at = at.checked_add(delta).ok_or(Malformed("time out of range"))?;
        events.push(Event { run, at, kind: r.kind()? });
    }
    if !r.rest.is_empty() {
        return Err(Malformed("trailing bytes"));
    }
    Ok(events)
}

pub(super) struct Reader<'a> {
    pub(super) rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// The ids at the head of an event body or a run block.
    fn run_ids(&mut self) -> Result<RunIds, Malformed> {
        let flags = self.byte()?;
        if flags & !(PARENT | ROOT) != 0 {
            return Err(Malformed("unknown flags"));
        }
        let run_id = self.run_id()?;
        let parent_run_id = if flags & PARENT != 0 { Some(self.run_id()?) } else { None };
        let root_run_id = if flags & ROOT != 0 { self.run_id()? } else { run_id };
        let depth = u32::try_from(self.varint()?).map_err(|_| Malformed("depth out of range"))?;
        Ok(RunIds { run_id, parent_run_id, root_run_id, depth })
    }

    /// An event's kind byte and fields.
    fn kind(&mut self) -> Result<EventKind, Malformed> {
        let r = self;
        let kind = match r.byte()? {
            GRAPH_DEFINED => EventKind::GraphDefined { graph: r.string()?, schema: Arc::new(r.json()?) },
            RUN_STARTED => {
                EventKind::RunStarted { graph: r.string()?, thread_id: r.option(Reader::string)?, tags: Vec::new() }
            }
            RUN_STARTED_TAGGED => {
                let (graph, thread_id) = (r.string()?, r.option(Reader::string)?);
                let count = r.varint()?;
                // Each tag takes at least its length byte: a count beyond the body is malformed,
                // not an allocation.
                if count > r.rest.len() as u64 {
                    return Err(Malformed("tag count beyond the body"));
                }
                let tags = (0..count).map(|_| r.string()).collect::<Result<_, _>>()?;
                EventKind::RunStarted { graph, thread_id, tags }
            }
            RUN_FINISHED => {
                let outcome = match r.byte()? {
                    0 => RunOutcome::Completed,
                    1 => RunOutcome::Failed,
                    2 => RunOutcome::Interrupted,
                    _ => return Err(Malformed("unknown run outcome")),
                };
                EventKind::RunFinished {
                    outcome,
                    steps: r.varint()?,
                    duration: r.duration()?,
                    error: r.option(|r| r.string().map(|s| s.to_string()))?,
                }
            }
            SUPERSTEP_STARTED => {
                let step = r.varint()?;
                let count = r.varint()?;
                // Each node takes at least one byte: a count beyond the body is a lie.
                if count > r.rest.len() as u64 {
                    return Err(Malformed("node count beyond the record"));
                }
                let nodes = (0..count).map(|_| r.string()).collect::<Result<_, _>>()?;
                EventKind::SuperstepStarted { step, nodes }
            }
            SUPERSTEP_FINISHED => EventKind::SuperstepFinished { step: r.varint()?, duration: r.duration()? },
            TASK_STARTED => EventKind::TaskStarted { step: r.varint()?, node: r.string()?, attempt: r.attempt()? },
            TASK_FINISHED => EventKind::TaskFinished {
                step: r.varint()?,
                node: r.string()?,
                attempt: r.attempt()?,
                duration: r.duration()?,
                error: r.option(|r| r.string().map(|s| s.to_string()))?,
            },
            ROUTED => {
                EventKind::Routed { step: r.varint()?, from: r.string()?, label: r.string()?, target: r.string()? }
            }
            CUSTOM => EventKind::Custom { step: r.varint()?, node: r.string()?, value: r.json()? },
            CHECKPOINT_COMMITTED => EventKind::CheckpointCommitted {
                step: r.varint()?,
                checkpoint_id: r.string()?,
                snapshot: r.bool()?,
                bytes: r.varint()?,
            },
            INTERRUPTED => EventKind::Interrupted {
                step: r.varint()?,
                node: r.string()?,
                reason: match r.byte()? {
                    0 => InterruptReason::Before,
                    1 => InterruptReason::After,
                    2 => InterruptReason::Node,
                    _ => return Err(Malformed("unknown interrupt reason")),
                },
                value: r.option(|r| r.json().map(Arc::new))?,
            },
            _ => return Err(Malformed("unknown event kind")),
        };
        Ok(kind)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.rest.len() {
            return Err(Malformed("record ends early"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(super) fn byte(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn bool(&mut self) -> Result<bool, Malformed> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed("bad boolean")),
        }
    }

    pub(super) fn run_id(&mut self) -> Result<RunId, Malformed> {
        let mut bytes = [0; 16];
        bytes.copy_from_slice(self.take(16)?);
        Ok(RunId::from_u128(u128::from_le_bytes(bytes)))
    }

    pub(super) fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(Malformed("varint out of range"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Malformed("varint out of range"))
    }

    fn attempt(&mut self) -> Result<u32, Malformed> {
        u32::try_from(self.varint()?).map_err(|_| Malformed("attempt out of range"))
    }

    fn duration(&mut self) -> Result<Duration, Malformed> {
        let secs = self.varint()?;
        let nanos = u32::try_from(self.varint()?).ok().filter(|&n| n < 1_000_000_000);
        let nanos = nanos.ok_or(Malformed("nanoseconds out of range"))?;
        Ok(Duration::new(secs, nanos))
    }

    pub(super) fn str(&mut self) -> Result<&'a str, Malformed> {
        let len = usize::try_from(self.varint()?).map_err(|_| Malformed("string length out of range"))?;
        std::str::from_utf8(self.take(len)?).map_err(|_| Malformed("string is not UTF-8"))
    }

    fn string(&mut self) -> Result<Arc<str>, Malformed> {
        self.str().map(Arc::from)
    }

    fn json(&mut self) -> Result<serde_json::Value, Malformed> {
        serde_json::from_str(self.str()?).map_err(|_| Malformed("JSON value does not parse"))
    }

    fn option<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T, Malformed>) -> Result<Option<T>, Malformed> {
        match self.byte()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            _ => Err(Malformed("bad option marker")),
        }
    }
}
