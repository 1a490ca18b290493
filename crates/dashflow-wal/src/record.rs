//! Record payloads: one tag byte saying what the record holds, then its body.
//!
//! Tag [`TAG_EVENT_JSON`] is a telemetry [`Event`] as JSON. A reader skips records with a tag
//! it does not know, so a newer DashFlow can add record kinds (traces, say) that an older CLI
//! still steps over.

use dashflow_telemetry::Event;

use crate::error::{Result, WalError};

/// Tag of a record holding one [`Event`] as JSON.
pub const TAG_EVENT_JSON: u8 = 1;

/// What a record holds.
#[derive(Debug)]
#[non_exhaustive]
pub enum Payload {
    /// A run event.
    Event(Box<Event>),
    /// A record of a kind this version does not know; readers skip it.
    Unknown {
        /// The record's tag byte.
        tag: u8,
    },
}

/// Appends the payload of `event` (tag and JSON) to `out`.
pub fn encode_event(event: &Event, out: &mut Vec<u8>) -> Result<()> {
    out.push(TAG_EVENT_JSON);
    serde_json::to_writer(&mut *out, event).map_err(|source| WalError::Encode { source })
}

/// Decodes a payload. The error is the JSON error of a known tag; the caller adds the location.
pub fn decode_payload(payload: &[u8]) -> Result<Payload, serde_json::Error> {
    match payload.split_first() {
        Some((&TAG_EVENT_JSON, body)) => serde_json::from_slice(body).map(|e| Payload::Event(Box::new(e))),
        Some((&tag, _)) => Ok(Payload::Unknown { tag }),
        // Frames are never empty; an empty slice is a caller's bug, read as an unknown record.
        None => Ok(Payload::Unknown { tag: 0 }),
    }
}

/// The event a record holds, `None` for a record of an unknown kind.
pub(crate) fn decode_event(payload: &[u8]) -> Result<Option<Event>, serde_json::Error> {
    Ok(match decode_payload(payload)? {
        Payload::Event(event) => Some(*event),
        Payload::Unknown { .. } => None,
    })
}
