//! Maps keyed by run id that skip hashing the id again: `LiveRuns` and the OpenTelemetry
//! exporter's open runs look a run up at every event.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::RunId;

/// A map keyed by run id, hashed by [`RunIdHasher`].
pub type RunIdMap<V> = HashMap<RunId, V, BuildHasherDefault<RunIdHasher>>;

/// Run ids end in 80 random bits: hashing them again (SipHash, per event) would only cost time.
#[derive(Debug, Default)]
pub struct RunIdHasher(u64);

impl Hasher for RunIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, value: u128) {
        // The low 64 bits of a ULID are random (and count up within a millisecond).
        self.0 ^= value as u64;
    }
}

#[cfg(test)]
mod tests;
