//! How a WAL writes: segment size, record size limit, fsync policy, retention, storage.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Result, WalError};
use crate::frame::{DEFAULT_MAX_RECORD_SIZE, HEADER_LEN};
use crate::storage::{OsStorage, Storage};

/// When the writer calls fsync on the active segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// After every append (one fsync per batch, so batching is group commit). Nothing
    /// acknowledged is lost, even when the machine crashes.
    Always,
    /// Once at least this many records were appended since the last sync. A machine crash
    /// loses at most that many records; a process crash loses none.
    EveryN(u32),
    /// At the first append at least this long after the last sync.
    Interval(Duration),
    /// Never on append; the operating system writes when it likes. Segments are still synced
    /// once when they are sealed, so a crash can tear only the last segment.
    Never,
}

/// How much history the WAL keeps. Retention removes whole sealed segments, oldest first; the
/// segment being written is never removed.
///
/// Runs whose records all lay in removed segments are deleted from the index. A run that began
/// in a removed segment and goes on in a kept one stays in the index marked
/// [`partial`](crate::RunSummary::partial) (its start is gone); [`Wal::compact`](crate::Wal::compact)
/// drops its remaining records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// Remove sealed segments whose newest record is older than this.
    pub max_age: Option<Duration>,
    /// Remove the oldest sealed segments while all segments together exceed this many bytes.
    pub max_total_bytes: Option<u64>,
}

impl Retention {
    /// Keep everything.
    pub const KEEP_ALL: Retention = Retention { max_age: None, max_total_bytes: None };

    /// Keep segments younger than `max_age` and at most `max_total_bytes` in total.
    pub fn new(max_age: Option<Duration>, max_total_bytes: Option<u64>) -> Self {
        Self { max_age, max_total_bytes }
    }
}

impl Default for Retention {
    /// 30 days and 256 MiB: a log for looking back at recent runs, not an archive.
    fn default() -> Self {
        Self { max_age: Some(Duration::from_secs(30 * 24 * 60 * 60)), max_total_bytes: Some(256 * 1024 * 1024) }
    }
}

/// Configuration of a [`Wal`](crate::Wal).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WalConfig {
    /// A segment is sealed and a new one started when the next record would take it past this
    /// many bytes (a record larger than this gets a segment of its own). Default 16 MiB:
    /// opening reads the whole last segment, so this bounds the cost of an open, and
    /// retention removes history in steps of this size.
    pub segment_size: u64,
    /// The largest payload accepted on append and trusted on read. Default 16 MiB.
    pub max_record_size: u32,
    /// When appends are synced. Default [`FsyncPolicy::Always`].
    pub fsync: FsyncPolicy,
    /// What history to keep; applied on open, whenever a segment is sealed, and by
    /// [`Wal::apply_retention`](crate::Wal::apply_retention). Default [`Retention::default`].
    pub retention: Retention,
    pub(crate) storage: Arc<dyn Storage>,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            segment_size: 16 * 1024 * 1024,
            max_record_size: DEFAULT_MAX_RECORD_SIZE,
            fsync: FsyncPolicy::Always,
            retention: Retention::default(),
            storage: Arc::new(OsStorage),
        }
    }
}

impl WalConfig {
    /// Sets [`segment_size`](Self::segment_size).
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Sets [`max_record_size`](Self::max_record_size).
    pub fn max_record_size(mut self, bytes: u32) -> Self {
        self.max_record_size = bytes;
        self
    }

    /// Sets [`fsync`](Self::fsync).
    pub fn fsync(mut self, policy: FsyncPolicy) -> Self {
        self.fsync = policy;
        self
    }

    /// Sets [`retention`](Self::retention).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Routes segment writes and syncs through `storage` (fault injection in tests).
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = storage;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |detail: String| Err(WalError::InvalidConfig { detail });
        if self.max_record_size == 0 {
            return invalid("max_record_size must be at least 1 byte".into());
        }
        if self.segment_size < HEADER_LEN as u64 + 1 {
            return invalid(format!("segment_size must be more than the {HEADER_LEN}-byte record header"));
        }
        if let FsyncPolicy::EveryN(0) = self.fsync {
            return invalid("FsyncPolicy::EveryN needs at least 1 record; use FsyncPolicy::Always".into());
        }
        Ok(())
    }
}
