//! DashFlow's write-ahead log of run events: what ran, when, how it ended, kept on disk so the
//! `dashflow` CLI (or your own tools) can answer questions about yesterday's runs and follow
//! today's.
//!
//! - **Segments.** Events are appended as framed records (`length u32 LE | CRC32C u32 LE |
//!   payload`) to segment files named by sequence number (`00000000000000000001.wal`), sealed
//!   and rotated at a size limit. The fsync policy ([`FsyncPolicy`]) is configurable. Event
//!   payloads use a compact binary layout (tag `TAG_EVENT_BIN`); the [`EventStore`] writes
//!   a run's consecutive events in a batch as one run block (tag `TAG_RUN_EVENTS`: the ids,
//!   base time and checksum once, each event's time as a delta, at most 16 KiB), so damage to
//!   a block loses that block's events and nothing around it. A run's `GraphDefined` (its
//!   graph's whole schema, the same for every run of a graph) is a graph record (tag
//!   `TAG_GRAPH`) naming the schema by key, a hash of its JSON text; the schema itself is a
//!   schema record (tag `TAG_SCHEMA`) written once per segment, just before the first graph
//!   record there that names it, so a segment read alone holds every schema its runs need.
//!   Readers resolve a key within its segment and return `GraphDefined` whole; a schema
//!   record that is not intact costs its runs only their graph definition, reported as a
//!   [`MissingSchema`]. The JSON event records of earlier versions (tag `TAG_EVENT_JSON`),
//!   and `GraphDefined` events with their schema inline, are still read; [`Wal::append`]
//!   writes a record per event.
//! - **Recovery.** The log never loses a valid record to damage. On open, only a torn tail
//!   is cut: damaged bytes at the end of the last segment (a short header or payload, a bad
//!   checksum, zero-filled space) with no intact frame after them. Any other damage, in any
//!   segment and at any byte (a length, a checksum, a payload, the first frame), keeps every
//!   intact record before and after it: the reader resynchronises on the next intact frame
//!   (a length in bounds and a matching CRC32C), the damaged bytes are copied into
//!   `quarantine/` (never deleted; a torn tail too, before it is cut), and the loss is
//!   reported as a [`DamagedRange`] (segment, offset, bytes, records where the frame
//!   boundaries tell) through [`RecoveryReport::damaged`], [`Wal::damage`],
//!   [`Follower::take_damage`] and [`verify_dir`]. Damage in the last segment makes the writer
//!   go on in a new segment: nothing is appended after damage. [`verify_dir`] and
//!   [`Wal::open_read_only`] change no segment; [`Wal::repair`] rewrites the damaged segments
//!   without their (quarantined) damage, writing back a schema record lost with it from
//!   another segment that holds the same schema, and rebuilds the index. A failed write or fsync
//!   poisons the writer ([`WalError::Poisoned`]).
//! - **Index.** An SQLite database (WAL journal mode) of runs: ids, graph, thread, status,
//!   start, end, duration, error, steps and the segment positions of the first and last record,
//!   and where each segment's schema records are. It is derived from the segments, rebuilt
//!   when missing, unreadable or of another schema version, and reconciled on open through a
//!   high-water mark stored with it. The writer updates it once per batch, so each run's row
//!   is kept in few B-trees (the `index` module says which).
//! - **Retention** by age and total size removes whole sealed segments ([`Retention`]);
//!   [`Wal::compact`] rewrites sealed segments without the remains of removed runs.
//! - **[`EventStore`]**: the [`EventCallback`](dashflow_telemetry::EventCallback) that feeds it.
//!   `on_event` clones the event into a bounded queue and returns; a background thread writes
//!   batches. One store per process ([`EventStore::global`]), opened on first use. Every
//!   open store writes what it still holds when the process exits (`atexit`, bounded by
//!   [`EventStore::EXIT_FLUSH_LIMIT`]); a log that cannot be written is reported once
//!   ([`FailureReport`]) and fails no run.
//! - **Traces.** An [`ExecutionTrace`] ([`TraceBuilder`]: tasks in order with every
//!   attempt's duration and error, routing decisions, status, the error or interrupt) is a
//!   function of a run's events: [`Wal::trace`] builds it from them when asked. Where trace
//!   files are asked for ([`TraceConfig`]), the store's background thread also builds each
//!   finished run's trace (failed and interrupted runs included), appends it to the WAL as a
//!   trace record (tag `TAG_TRACE_JSON`) and writes it atomically to
//!   `{base}/.dashflow/traces/{run_id}.json` (retention by count and age: [`TraceRetention`]).
//!   A run that never finishes (its process died) has no trace.
//! - **Runs whose process died.** A batch that starts runs is followed by a process record
//!   (tag `TAG_PROCESS`) naming the appending process, which executes them:
//!   its pid, start time since boot, boot id, pid namespace and host ([`ProcessIdentity`]).
//!   It costs the hot path nothing: the store's background thread writes it with the batch.
//!   When [`Wal::list_runs`] or [`Wal::run`] find a run `running` whose process is
//!   certainly gone (no such pid, a pid reused by a later process, an exited zombie, an
//!   earlier boot of this host), the run reads [`RunStatus::Abandoned`]; the index remembers
//!   the dead process, and a run that does record its end later takes its real status. Every
//!   doubt leaves a run `running`: logs written before process records existed, another host
//!   or pid namespace, and platforms other than Linux, where no process is recorded.
//! - **Reading**: [`Wal::list_runs`], [`Wal::run_events`], [`Wal::trace`], [`Wal::traces`],
//!   [`read_trace`] and [`list_traces`] (trace files), [`Follower`] (tail from any process),
//!   [`Wal::verify`] and [`verify_dir`] (which needs no open WAL), all through
//!   [`Wal::open_read_only`] too.
//!
//! ```
//! use dashflow_telemetry::{Event, EventCallback, EventKind, RunId, RunIds, RunOutcome};
//! use dashflow_wal::{EventStore, RunFilter, RunStatus, StoreConfig, TraceConfig, TraceStatus, Wal, WalConfig};
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir()?;
//! // The global store writes trace files only where asked (`DASHFLOW_TRACE_DIR`, or a working
//! // directory with a `.dashflow/`); a store opened by hand persists them where its
//! // configuration says.
//! let config = StoreConfig::default().traces(TraceConfig::files_in(dir.path()));
//! let store = EventStore::open(dir.path().join("wal"), config)?;
//!
//! // The executor calls this for every event of every run.
//! let run = RunIds::root(RunId::new());
//! store.on_event(&Event::now(run, EventKind::RunStarted { graph: "triage".into(), thread_id: None, tags: Vec::new() }));
//! store.on_event(&Event::now(run, EventKind::RunFinished {
//!     outcome: RunOutcome::Completed, steps: 3, duration: Duration::from_millis(12), error: None,
//! }));
//! store.flush()?; // written and synced, the run's trace too
//!
//! // Any process can read it back.
//! let wal = Wal::open(dir.path().join("wal"), WalConfig::default())?;
//! let runs = wal.list_runs(&RunFilter::all().status(RunStatus::Completed))?;
//! assert_eq!(runs.len(), 1);
//! assert_eq!(runs[0].steps, 3);
//! assert_eq!(wal.run_events(run.run_id)?.len(), 2);
//!
//! // The run's trace, from the WAL or from its file.
//! let trace = wal.trace(run.run_id)?.expect("the run finished");
//! assert_eq!(trace.status, TraceStatus::Completed);
//! let traces_dir = store.traces_dir().expect("trace files are on");
//! assert_eq!(dashflow_wal::read_trace(traces_dir, run.run_id)?, Some(trace));
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
//! | `DASHFLOW_TRACE` | `0`, `false`, `off` or `no` (any case) turns trace files off (and their records in the WAL) even where `DASHFLOW_TRACE_DIR` or a `.dashflow/` asks for them. Events still go to the WAL unless `DASHFLOW_WAL` is off, and [`Wal::trace`] still builds a run's trace from them. |
//! | `DASHFLOW_TRACE_DIR` | The base directory of trace files, which go to `$DASHFLOW_TRACE_DIR/.dashflow/traces/`. Unset, trace files go to the working directory only when it has a `.dashflow/` directory (a project that keeps its checkpoints there); otherwise traces are only in the WAL (`dashflow runs show --json` prints them). |
//!
//! [`EventStore::global`] (what the `dashflow` facade wires in) reads them all, and looks at
//! the working directory for trace files when it opens. [`Wal::open`] and [`EventStore::open`]
//! take their directory and configuration explicitly and read no variable
//! ([`StoreConfig::traces`] is off unless set; [`TraceConfig::from_env`] gives the global
//! store's).
//!
//! # Files in the WAL directory
//!
//! `*.wal` segments, `index.sqlite` (plus SQLite's `-wal`/`-shm` files), `LOCK` (taken by
//! writers for each batch, so several processes can share one directory), `compact.tmp/`
//! while a compaction runs, `*.wal.repair` while [`Wal::repair`] rewrites a segment, and
//! `quarantine/` ([`QUARANTINE_DIR`]): one `{segment}.at-{offset}.len-{bytes}.damaged` file per
//! damaged range a writer set aside, which nothing in DashFlow deletes.
//!
//! # Trace files
//!
//! `{base}/.dashflow/traces/{run_id}.json`, one per finished run, pretty-printed
//! [`ExecutionTrace`] JSON; `.{run_id}.{pid}-{n}.tmp` while one is written. Retention keeps
//! the 10,000 most recent runs' files and none older than 30 days by default, applied when
//! the store opens and every 1,000 traces.
//!
//! # Feature flags
//!
//! This crate has no feature flags.

mod compact;
mod config;
mod damage;
mod error;
mod follow;
mod frame;
mod home;
mod index;
mod process;
mod record;
mod retention;
mod runs;
mod schemas;
mod segment;
mod storage;
mod store;
mod trace;
mod trace_files;
mod wal;

#[cfg(test)]
mod testing;

pub use compact::CompactReport;
pub use config::{FsyncPolicy, Retention, WalConfig};
pub use damage::{DamagedRange, QUARANTINE_DIR};
pub use error::{Result, WalError};
pub use follow::Follower;
pub use frame::{DEFAULT_MAX_RECORD_SIZE, Damage};
pub use home::{
    HOME_VAR, TRACE_DIR_VAR, TRACE_VAR, TRACES_DIR, WAL_DIR, WAL_VAR, home_dir, trace_base_dir, trace_enabled,
    traces_dir, traces_dir_from_env, wal_dir, wal_dir_from_env, wal_enabled,
};
pub use process::ProcessIdentity;
pub use retention::RetentionReport;
pub use runs::{ParseRunStatusError, RunFilter, RunStatus, RunSummary};
pub use schemas::MissingSchema;
pub use segment::{Position, segment_file_name};
pub use storage::{OsStorage, Storage};
pub use store::{EventStore, FailureReport, StoreConfig, StoreStats};
pub use trace::{
    ExecutionTrace, TraceAttempt, TraceBuilder, TraceCollector, TraceInterrupt, TraceRoute, TraceStatus, TraceTask,
};
pub use trace_files::{
    TraceConfig, TraceFile, TraceRetention, TraceRetentionReport, apply_trace_retention, list_traces, read_trace,
    trace_file_name, write_trace,
};
pub use wal::{RecordLocation, RecoveryReport, RepairReport, TornTail, TraceRecords, VerifyReport, Wal, verify_dir};

/// The log's on-disk codecs and its segment reader: for this crate's own tests and fuzzing,
/// not a supported API (the record layout is the WAL's to change).
#[doc(hidden)]
pub mod __private {
    pub use crate::frame::{Decoded, HEADER_LEN, decode as decode_frame, encode as encode_frame};
    pub use crate::record::{
        GraphRecord, Payload, ProcessRecord, SchemaKey, SchemaRecord, TAG_EVENT_BIN, TAG_EVENT_JSON, TAG_GRAPH,
        TAG_PROCESS, TAG_RUN_EVENTS, TAG_SCHEMA, TAG_TRACE_JSON, decode_payload, encode_event, encode_event_json,
        encode_graph, encode_process, encode_schema, encode_trace,
    };
    pub use crate::segment::{ReadStep, RecordReader};
}
