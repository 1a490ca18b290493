//! Checkpoint ids: unique across processes, sorted by creation within a process.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::CheckpointError;

/// Identifies one checkpoint. A ULID: 48 bits of milliseconds and 80 random bits, rendered as
/// 26 sortable characters. Ids made in one process are strictly increasing (the random part
/// is incremented within a millisecond), and random bits keep processes apart.
///
/// The characters are kept inline: making, copying and dropping an id allocates nothing (a run
/// makes one per step and copies it into the record, the head and the parent link).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointId([u8; ulid::ULID_LEN]);

static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);

impl CheckpointId {
    /// A fresh id, greater than every id made before it in this process.
    pub fn new() -> Self {
        let mut generator = GENERATOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let generator = generator.get_or_insert_with(ulid::Generator::new);
        // The monotonic generator fails only when 2^80 ids are made within one millisecond;
        // falling back to a plain ULID keeps uniqueness in that impossible case.
        let id = generator.generate().unwrap_or_else(|_| ulid::Ulid::new());
        Self::of(id)
    }

    fn of(id: ulid::Ulid) -> Self {
        let mut characters = [0; ulid::ULID_LEN];
        id.array_to_str(&mut characters);
        Self(characters)
    }

    /// The id as stored.
    pub fn as_str(&self) -> &str {
        // Always ASCII: only `of` fills the characters, with a ULID's.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CheckpointId").field(&self.as_str()).finish()
    }
}

impl Serialize for CheckpointId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CheckpointId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(IdVisitor)
    }
}

/// Reads an id from a string where it lies, without a copy.
struct IdVisitor;

impl serde::de::Visitor<'_> for IdVisitor {
    type Value = CheckpointId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a checkpoint id (a ULID of 26 characters)")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<CheckpointId, E> {
        text.parse().map_err(E::custom)
    }
}

impl Default for CheckpointId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CheckpointId {
    type Err = CheckpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match ulid::Ulid::from_string(s) {
            Ok(id) => Ok(Self::of(id)),
            Err(error) => Err(CheckpointError::corrupt(format!("`{s}` is not a checkpoint id: {error}"))),
        }
    }
}
