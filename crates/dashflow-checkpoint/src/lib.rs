//! The checkpoint contract of DashFlow: the [`Checkpointer`] trait, its records, the codecs
//! and the envelope around every blob.
//!
//! This is the small, stable crate at the bottom of the persistence stack. Backends
//! (`dashflow-checkpoint-memory`, `-sqlite`, `-postgres`) implement [`Checkpointer`] over
//! bytes and never see graph or state types; the executor decides what goes into a blob
//! (a whole state or one step's update) and seals it with [`seal`], which prefixes the codec,
//! format version and the state schema's hash so that a blob written by another schema is
//! reported as [`CheckpointError::VersionMismatch`] instead of decoding into garbage.
//!
//! ```
//! use dashflow_checkpoint::{open, seal, CheckpointError, Codec};
//!
//! let blob = seal(Codec::Bincode, 0xfeed, &vec![1u32, 2, 3])?;
//! assert_eq!(open::<Vec<u32>>(&blob, 0xfeed)?, vec![1, 2, 3]);
//! assert!(matches!(open::<Vec<u32>>(&blob, 0xbeef), Err(CheckpointError::VersionMismatch { .. })));
//! # Ok::<(), CheckpointError>(())
//! ```
//!
//! This crate has no feature flags.

mod checkpointer;
mod codec;
mod error;
mod id;
mod record;

pub use checkpointer::Checkpointer;
pub use codec::{Codec, FORMAT_VERSION, MAGIC, open, seal};
pub use error::{CheckpointError, Result};
pub use id::CheckpointId;
pub use record::{CheckpointKind, CheckpointRecord, ListOptions, LoadedCheckpoint, Metadata, PendingWrite};

/// Milliseconds since the Unix epoch, for `created_at_ms`.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
