//! The checkpoint contract of DashFlow: the [`Checkpointer`] trait, its records, the codecs
//! and the envelope around every blob.
//!
//! This is the small, stable crate at the bottom of the persistence stack. Backends
//! (`dashflow-checkpoint-memory`, `-sqlite`, `-postgres`) implement [`Checkpointer`] over
//! bytes and never see graph or state types; the executor decides what goes into a blob
//! (a whole state or one step's update) and seals it with [`seal`], which prefixes the codec,
//! format version and the state schema's fingerprint, and appends a CRC32C of the whole blob.
//! [`open`] checks all of it before decoding: a changed byte anywhere is
//! [`CheckpointError::Corrupt`], a blob written by another schema
//! [`CheckpointError::VersionMismatch`], never garbage. [`CheckpointRecord::verify`] and
//! [`LoadedCheckpoint::verify`] check stored blobs without decoding them, and name the thread,
//! checkpoint and pending write in the error ([`BlobLocation`]).
//!
//! Backends never check blobs: they store and return bytes. The executor opens every blob it
//! uses, and names where it came from, so every backend gets the same checks once.
//!
//! ```
//! use dashflow_checkpoint::{open, seal, CheckpointError, Codec};
//!
//! let blob = seal(Codec::Bincode, 0xfeed, &vec![1u32, 2, 3])?;
//! assert_eq!(open::<Vec<u32>>(&blob, 0xfeed)?, vec![1, 2, 3]);
//! assert!(matches!(open::<Vec<u32>>(&blob, 0xbeef), Err(CheckpointError::VersionMismatch { .. })));
//!
//! let mut damaged = blob.clone();
//! damaged[16] ^= 1;
//! assert!(matches!(open::<Vec<u32>>(&damaged, 0xfeed), Err(CheckpointError::Corrupt { .. })));
//! # Ok::<(), CheckpointError>(())
//! ```
//!
//! This crate has no feature flags.

mod checkpointer;
mod codec;
mod error;
mod id;
mod record;
pub mod shape;
mod threads;

pub use checkpointer::Checkpointer;
pub use codec::{Codec, FORMAT_VERSION, MAGIC, Sealed, open, seal, unseal};
pub use error::{BlobLocation, CheckpointError, Result};
pub use id::CheckpointId;
pub use record::{CheckpointKind, CheckpointRecord, ListOptions, LoadedCheckpoint, Metadata, PendingWrite};
pub use threads::{BadThreadCursor, ThreadCursor, ThreadListOptions, ThreadSummary};

/// Milliseconds since the Unix epoch, for `created_at_ms`.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
