//! What can go wrong writing, recovering or reading the WAL.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use dashflow_telemetry::RunId;

use crate::frame::Damage;

/// A WAL operation failed. Every variant says what is wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A file system operation failed.
    #[error("cannot {action} `{}` (check that the path exists, is writable and the disk has space)", path.display())]
    Io {
        /// What was being done (`create`, `read`, `truncate`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The record asked for is damaged ([`Wal::trace`](crate::Wal::trace) reads one record
    /// at a position the index gave).
    ///
    /// Reads of many records skip damage instead and report it
    /// ([`Wal::damage`](crate::Wal::damage)).
    #[error(
        "WAL segment `{}` is damaged at byte {offset}: {damage} (run `dashflow wal verify` to list all \
         damage and `dashflow wal repair` to set it aside)",
        segment.display()
    )]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the damaged record's header within the segment.
        offset: u64,
        /// What is wrong with it.
        damage: Damage,
    },
    /// An earlier write or fsync failed, so this WAL refuses every later append.
    ///
    /// After a failed fsync the kernel may have dropped the unsynced pages, and after a failed
    /// write the segment may end in a partial record; appending more would build on data that
    /// may not exist. Reopening the WAL recovers: the torn tail is cut and appends work again.
    #[error(
        "the WAL stopped accepting writes because `{action}` of `{}` failed (records after the \
         last successful sync may be lost; fix the disk and reopen the WAL)",
        path.display()
    )]
    Poisoned {
        /// The operation that failed first (`write` or `fsync`).
        action: &'static str,
        /// The file it failed on.
        path: PathBuf,
        /// The original error.
        #[source]
        source: Arc<io::Error>,
    },
    /// A record is larger than the configured maximum record size.
    #[error(
        "a WAL record of {size} bytes exceeds the maximum record size of {max} bytes; raise \
         `WalConfig::max_record_size` or emit smaller custom values"
    )]
    RecordTooLarge {
        /// The encoded record's size.
        size: usize,
        /// The configured maximum.
        max: u32,
    },
    /// An event could not be serialized.
    #[error("cannot encode an event for the WAL")]
    Encode {
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// A record's checksum is valid but its payload cannot be decoded as an event.
    #[error(
        "the record at byte {offset} of `{}` is intact but cannot be decoded (it was probably \
         written by another DashFlow version, read it with that version)",
        segment.display()
    )]
    Decode {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the record within the segment.
        offset: u64,
        /// The deserializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The SQLite run index failed.
    #[error(
        "the WAL run index failed (the index is derived from the segments, so deleting \
         `index.sqlite` (or `Wal::rebuild_index`) rebuilds it)"
    )]
    Index {
        /// SQLite's error.
        #[from]
        source: rusqlite::Error,
    },
    /// The index names a segment that no longer exists.
    #[error(
        "WAL segment `{}` is missing although the index refers to it; it was deleted by hand or by a \
         concurrent retention pass; rebuild the index (`Wal::rebuild_index`)",
        segment.display()
    )]
    MissingSegment {
        /// The missing segment file.
        segment: PathBuf,
    },
    /// The DashFlow home directory cannot be determined.
    #[error("cannot find the DashFlow home directory: neither DASHFLOW_HOME nor HOME is set; set DASHFLOW_HOME")]
    HomeNotFound,
    /// A configuration value is out of range.
    #[error("invalid WAL configuration: {detail}")]
    InvalidConfig {
        /// Which value and why.
        detail: String,
    },
    /// The plan of an interrupted compaction cannot be read, so it can be neither finished
    /// nor safely discarded.
    #[error(
        "the compaction plan `{}` is unreadable; it is written atomically, so something else changed it: \
         restore it or, if the segments are known to be complete, remove its directory",
        path.display()
    )]
    BadCompactionPlan {
        /// The plan file.
        path: PathBuf,
    },
    /// The run is not in the index.
    #[error("run {run_id} is not in the WAL index; it may have been removed by retention")]
    RunNotFound {
        /// The run looked for.
        run_id: RunId,
    },
    /// A trace file is not a readable trace.
    #[error(
        "the trace file `{}` cannot be read as a trace (it was cut short by a crash or written by \
         another DashFlow version; the run's trace record in the WAL (`Wal::trace`) or its events remain)",
        path.display()
    )]
    BadTrace {
        /// The trace file.
        path: PathBuf,
        /// The deserializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The WAL was opened read-only ([`Wal::open_read_only`](crate::Wal::open_read_only)) and
    /// the operation would change it.
    #[error("cannot {operation} the WAL in `{}`: it was opened read-only (open it with `Wal::open` to change it)", dir.display())]
    ReadOnly {
        /// What was refused (`append to`, `compact`, `repair`, ...).
        operation: &'static str,
        /// The WAL directory.
        dir: PathBuf,
    },
    /// The event store's background writer has stopped.
    #[error("the event store's background writer has stopped (it panicked or the store was closed); open a new store")]
    Closed,
}

impl WalError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io { action, path: path.into(), source }
    }
}

/// `Result` with [`WalError`] as the default error.
pub type Result<T, E = WalError> = std::result::Result<T, E>;
