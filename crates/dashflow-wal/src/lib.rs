//! DashFlow's write-ahead log of run events: what ran, when, how it ended, kept on disk so the
//! `dashflow` CLI (or your own tools) can answer questions about yesterday's runs and follow
//! today's.
//!
//! - **Segments.** Events are appended as framed records (`length u32 LE | CRC32C u32 LE |
//!   payload`) to segment files named by sequence number (`00000000000000000001.wal`), sealed
//!   and rotated at a size limit. The fsync policy ([`FsyncPolicy`]) is configurable.
//! - **Recovery.** On open, a torn tail of the last segment (a short header or payload, a bad
//!   checksum, zero-filled space) is cut at the last intact record. Damage in a sealed segment,
//!   or before intact data, is [`WalError::Corrupt`] naming the file and byte offset: it is
//!   never skipped. A failed write or fsync poisons the writer ([`WalError::Poisoned`]).
//! - **Index.** An SQLite database (WAL journal mode) of runs: ids, graph, thread, status,
//!   start, end, duration, error, steps and the segment positions of the first and last record.
//!   It is derived from the segments, rebuilt when missing or unreadable, and reconciled on open
//!   through a high-water mark stored with it.
//! - **Retention** by age and total size removes whole sealed segments ([`Retention`]);
//!   [`Wal::compact`] rewrites sealed segments without the remains of removed runs.
//! - **[`EventStore`]**: the [`EventCallback`](dashflow_telemetry::EventCallback) that feeds it.
//!   `on_event` clones the event into a bounded queue and returns; a background thread writes
//!   batches. One store per process ([`EventStore::global`]), opened on first use.
//! - **Reading**: [`Wal::list_runs`], [`Wal::run_events`], [`Follower`] (tail from any
//!   process), [`Wal::verify`].
//!
//! ```
//! use dashflow_telemetry::{Event, EventCallback, EventKind, RunId, RunIds, RunOutcome};
//! use dashflow_wal::{EventStore, RunFilter, RunStatus, StoreConfig, Wal, WalConfig};
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir()?;
//! let store = EventStore::open(dir.path(), StoreConfig::default())?;
//!
//! // The executor calls this for every event of every run.
//! let run = RunIds::root(RunId::new());
//! store.on_event(&Event::now(run, EventKind::RunStarted { graph: "triage".into(), thread_id: None }));
//! store.on_event(&Event::now(run, EventKind::RunFinished {
//!     outcome: RunOutcome::Completed, steps: 3, duration: Duration::from_millis(12), error: None,
//! }));
//! store.flush()?; // written and synced
//!
//! // Any process can read it back.
//! let wal = Wal::open(dir.path(), WalConfig::default())?;
//! let runs = wal.list_runs(&RunFilter::all().status(RunStatus::Completed))?;
//! assert_eq!(runs.len(), 1);
//! assert_eq!(runs[0].steps, 3);
//! assert_eq!(wal.run_events(run.run_id)?.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Environment variables
//!
//! | variable | effect |
//! | --- | --- |
//! | `DASHFLOW_HOME` | The DashFlow home directory; the WAL lives in `$DASHFLOW_HOME/wal/`. Default `$HOME/.dashflow`. |
//! | `HOME` | Used for the default home when `DASHFLOW_HOME` is unset. |
//! | `DASHFLOW_WAL` | `0`, `false`, `off` or `no` (any case) turns the WAL off: [`EventStore::global`] returns `None`. |
//!
//! `DASHFLOW_TRACE=0`, which turns off trace persistence, is read by the trace writer, not by
//! this crate. [`Wal::open`] and [`EventStore::open`] take their directory explicitly and read
//! no variable.
//!
//! # Files in the WAL directory
//!
//! `*.wal` segments, `index.sqlite` (plus SQLite's `-wal`/`-shm` files), `LOCK` (taken by
//! writers for each batch, so several processes can share one directory), and `compact.tmp/`
//! while a compaction runs.
//!
//! # Feature flags
//!
//! This crate has no feature flags.

mod compact;
mod config;
mod error;
mod follow;
mod frame;
mod home;
mod index;
mod record;
mod retention;
mod runs;
mod segment;
mod storage;
mod store;
mod wal;

#[cfg(test)]
mod testing;

pub use compact::CompactReport;
pub use config::{FsyncPolicy, Retention, WalConfig};
pub use error::{Result, WalError};
pub use follow::Follower;
pub use frame::{DEFAULT_MAX_RECORD_SIZE, Damage, Decoded, HEADER_LEN, decode as decode_frame, encode as encode_frame};
pub use home::{
    HOME_VAR, WAL_DIR, WAL_VAR, home_dir, home_dir_from, wal_dir, wal_dir_from, wal_dir_from_env, wal_enabled,
    wal_enabled_from,
};
pub use record::{Payload, TAG_EVENT_JSON, decode_payload, encode_event};
pub use retention::RetentionReport;
pub use runs::{ParseRunStatusError, RunFilter, RunStatus, RunSummary};
pub use segment::{Position, ReadStep, RecordReader, segment_file_name};
pub use storage::{OsStorage, Storage};
pub use store::{EventStore, StoreConfig, StoreStats};
pub use wal::{DamagedRecord, RecordLocation, RecoveryReport, TornTail, VerifyReport, Wal};
