//! Graph schemas stored once per segment ([`TAG_SCHEMA`](super::TAG_SCHEMA)) and the runs'
//! references to them ([`TAG_GRAPH`](super::TAG_GRAPH)).
//!
//! Every run sends a `GraphDefined` event with its graph's whole schema, the same for every
//! run of one compiled graph and most of what a short run would otherwise write. The writer
//! stores each schema once per segment, in a schema record keyed by a hash of its JSON text
//! (a [`SchemaKey`]), and each run's `GraphDefined` as a graph record naming that key. The
//! schema record comes before the first graph record that needs it in the same segment, so a
//! segment read alone holds every schema its runs refer to; readers resolve a key within the
//! graph record's segment, and a key they cannot resolve there (its schema record damaged, or
//! cut by `wal repair`) costs the run only its graph definition, which is reported
//! ([`MissingSchema`](crate::MissingSchema)).
//!
//! Layouts (ids, integers and strings as in event records):
//!
//! ```text
//! schema record body   key [u8; 16] | the schema's JSON text, to the end of the body
//! graph record body    flags, run_id, [parent], [root], depth, at    as an event's head
//!                      graph                                          string
//!                      key [u8; 16]                                   the schema's key
//! ```
//!
//! The key is the 128-bit FNV-1a hash of the JSON text, checked when a schema record is
//! decoded: the same key means the same schema, in any segment and from any process.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use dashflow_telemetry::{Event, EventKind, RunIds};

use super::binary::Malformed;
use crate::frame;

/// Bytes of a [`SchemaKey`].
const KEY_LEN: usize = 16;

/// The key of a graph schema: the 128-bit FNV-1a hash of its JSON text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaKey([u8; KEY_LEN]);

impl SchemaKey {
    /// The key of a schema whose JSON text is `text`.
    pub fn of(text: &[u8]) -> Self {
        const OFFSET_BASIS: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
        const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
        let hash = text.iter().fold(OFFSET_BASIS, |hash, &byte| (hash ^ u128::from(byte)).wrapping_mul(PRIME));
        Self(hash.to_be_bytes())
    }

    /// The key's bytes, as stored.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A key from its stored bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for SchemaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SchemaKey({self})")
    }
}

impl fmt::Display for SchemaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// What a schema record holds.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SchemaRecord {
    /// The schema's key.
    pub key: SchemaKey,
    /// The schema.
    pub schema: Arc<serde_json::Value>,
}

/// What a graph record holds: a run's `GraphDefined` event, its schema named by key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GraphRecord {
    /// The run.
    pub run: RunIds,
    /// When the event happened.
    pub at: SystemTime,
    /// The graph's name.
    pub graph: Arc<str>,
    /// The key of the schema record that holds the graph's schema.
    pub key: SchemaKey,
}

impl GraphRecord {
    /// A graph record of `run`'s graph `graph`, whose schema's key is `key`.
    pub fn new(run: RunIds, at: SystemTime, graph: Arc<str>, key: SchemaKey) -> Self {
        Self { run, at, graph, key }
    }

    /// The `GraphDefined` event, with its schema resolved.
    pub fn into_event(self, schema: Arc<serde_json::Value>) -> Event {
        Event { run: self.run, at: self.at, kind: EventKind::GraphDefined { graph: self.graph, schema } }
    }
}

/// Appends a schema record's body (without its tag).
pub(super) fn encode_schema_body(key: SchemaKey, text: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&key.0);
    out.extend_from_slice(text);
}

/// The key a schema record's body names, without reading (or checking) the schema: what the
/// index keeps of it. `None` for a body too short to hold one.
pub(super) fn schema_body_key(body: &[u8]) -> Option<SchemaKey> {
    body.first_chunk::<KEY_LEN>().map(|key| SchemaKey(*key))
}

/// Decodes a schema record's body: the key must be the hash of the text, and the text JSON.
pub(super) fn decode_schema_body(body: &[u8]) -> Result<SchemaRecord, Malformed> {
    let key = schema_body_key(body).ok_or(Malformed("record ends early"))?;
    let text = &body[KEY_LEN..];
    if SchemaKey::of(text) != key {
        return Err(Malformed("schema key does not match its text"));
    }
    let schema = serde_json::from_slice(text).map_err(|_| Malformed("JSON value does not parse"))?;
    Ok(SchemaRecord { key, schema: Arc::new(schema) })
}

/// Reads a key at the end of a graph record's body.
pub(super) fn read_key(bytes: &[u8]) -> Result<SchemaKey, Malformed> {
    bytes.try_into().map(SchemaKey).map_err(|_| Malformed("record ends early"))
}

/// The most schemas a writer remembers; a process with more graphs than this in use at once
/// encodes a schema again when it comes back.
const KNOWN_LIMIT: usize = 64;

/// What a writer knows of the schemas it stores: each schema's key and framed record, found
/// by the shared value every run of a graph sends (an `Arc` comparison, no hashing per run),
/// and which keys the segment being written already holds.
#[derive(Debug, Default)]
pub(crate) struct SchemaCache {
    /// Schemas seen, the most recently added last.
    known: Vec<Known>,
    /// The segment schema records were last written to, and the keys written there.
    written: Option<(u64, Vec<SchemaKey>)>,
}

#[derive(Debug)]
struct Known {
    value: Arc<serde_json::Value>,
    key: SchemaKey,
    /// The whole framed record (header and payload); `None` when it is larger than the
    /// maximum record size (its runs' graph records then name a schema no segment holds).
    frame: Option<Arc<[u8]>>,
}

impl SchemaCache {
    /// The key of `schema`, framing its record the first time it is seen.
    pub(crate) fn key(&mut self, schema: &Arc<serde_json::Value>, max_record_size: u32) -> SchemaKey {
        if let Some(known) = self.known.iter().rev().find(|known| Arc::ptr_eq(&known.value, schema)) {
            return known.key;
        }
        // Serializing a `Value` cannot fail: its map keys are strings.
        let text = serde_json::to_vec(&**schema).unwrap_or_else(|_| b"null".to_vec());
        let key = SchemaKey::of(&text);
        // Another compile of the same graph: the same record.
        let frame = match self.known.iter().find(|known| known.key == key) {
            Some(known) => known.frame.clone(),
            None => {
                let mut payload = Vec::with_capacity(1 + KEY_LEN + text.len());
                payload.push(super::TAG_SCHEMA);
                encode_schema_body(key, &text, &mut payload);
                if payload.len() > max_record_size as usize {
                    tracing::warn!(
                        bytes = payload.len(),
                        max = max_record_size,
                        "a graph's schema is larger than the WAL's maximum record size; its runs are logged without \
                         their graph definition"
                    );
                    None
                } else {
                    let mut framed = Vec::with_capacity(frame::HEADER_LEN + payload.len());
                    frame::encode(&payload, &mut framed);
                    Some(Arc::from(framed))
                }
            }
        };
        if self.known.len() == KNOWN_LIMIT {
            self.known.remove(0);
        }
        self.known.push(Known { value: Arc::clone(schema), key, frame });
        key
    }

    /// The framed schema record of `key`, if this writer knows one.
    pub(crate) fn frame(&self, key: SchemaKey) -> Option<&Arc<[u8]>> {
        self.known.iter().rev().find(|known| known.key == key).and_then(|known| known.frame.as_ref())
    }

    /// Whether segment `segment` holds the schema record of `key` (as far as this writer
    /// wrote it there).
    pub(crate) fn is_written(&self, segment: u64, key: SchemaKey) -> bool {
        matches!(&self.written, Some((seq, keys)) if *seq == segment && keys.contains(&key))
    }

    /// Notes that segment `segment` holds the schema record of `key`.
    pub(crate) fn mark_written(&mut self, segment: u64, key: SchemaKey) {
        match &mut self.written {
            Some((seq, keys)) if *seq == segment => keys.push(key),
            written => *written = Some((segment, vec![key])),
        }
    }
}
