//! Checkpoint ids: unique across processes, sorted by creation within a process.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::CheckpointError;

/// Identifies one checkpoint. A ULID: 48 bits of milliseconds and 80 random bits, rendered as
/// 26 sortable characters. Ids made in one process are strictly increasing (the random part
/// is incremented within a millisecond), and random bits keep processes apart.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CheckpointId(String);

static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);

impl CheckpointId {
    /// A fresh id, greater than every id made before it in this process.
    pub fn new() -> Self {
        let mut generator = GENERATOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let generator = generator.get_or_insert_with(ulid::Generator::new);
        // The monotonic generator fails only when 2^80 ids are made within one millisecond;
        // falling back to a plain ULID keeps uniqueness in that impossible case.
        let id = generator.generate().unwrap_or_else(|_| ulid::Ulid::new());
        Self(id.to_string())
    }

    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for CheckpointId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for CheckpointId {
    type Err = CheckpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match ulid::Ulid::from_string(s) {
            Ok(id) => Ok(Self(id.to_string())),
            Err(error) => Err(CheckpointError::corrupt(format!("`{s}` is not a checkpoint id: {error}"))),
        }
    }
}
