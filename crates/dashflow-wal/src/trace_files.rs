//! Trace files: one JSON file per finished run, `{base}/.dashflow/traces/{run_id}.json`,
//! written atomically, read back, listed, and pruned by count and age.
//!
//! A file is written to a temporary name in the same directory and renamed into place, so a
//! reader sees a whole trace or none. Files are not synced: the WAL's trace record is the
//! durable copy, and a file cut short by a machine crash reads as [`WalError::BadTrace`]
//! (listing still shows it, retention removes it in time).

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use dashflow_telemetry::RunId;

use crate::error::{Result, WalError};
use crate::home;
use crate::trace::ExecutionTrace;

/// The file name suffix of a trace file.
const SUFFIX: &str = ".json";
/// The file name suffix of a trace file being written.
const TMP_SUFFIX: &str = ".tmp";
/// A temporary file this old was left by a writer that died; retention removes it.
const STALE_TMP_AGE: Duration = Duration::from_secs(60 * 60);

/// Which trace files to keep. A retention pass removes files past either limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceRetention {
    /// Keep at most this many files: those of the most recently started runs (by run id).
    pub max_files: Option<usize>,
    /// Remove files last written longer ago than this.
    pub max_age: Option<Duration>,
}

impl TraceRetention {
    /// Keep every file.
    pub const KEEP_ALL: TraceRetention = TraceRetention { max_files: None, max_age: None };

    /// Keep at most `max_files` files, none older than `max_age`.
    pub fn new(max_files: Option<usize>, max_age: Option<Duration>) -> Self {
        Self { max_files, max_age }
    }
}

impl Default for TraceRetention {
    /// 10,000 files and 30 days.
    fn default() -> Self {
        Self { max_files: Some(10_000), max_age: Some(Duration::from_secs(30 * 24 * 60 * 60)) }
    }
}

/// Where an [`EventStore`](crate::EventStore) persists the trace of each run that finishes.
///
/// The process's store ([`EventStore::global`](crate::EventStore::global)) takes
/// [`TraceConfig::from_env`] when it opens: trace files under the working directory (or
/// `DASHFLOW_TRACE_DIR`), trace records in the WAL, nothing at all with `DASHFLOW_TRACE=0`.
/// A store opened with [`EventStore::open`](crate::EventStore::open) takes
/// [`StoreConfig::traces`](crate::StoreConfig::traces), [`off`](Self::off) by default.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceConfig {
    /// The base directory of trace files, which go to `{base_dir}/.dashflow/traces/`; `None`
    /// writes no files.
    pub base_dir: Option<PathBuf>,
    /// Whether each trace is also appended to the WAL as a trace record (tag
    /// `TAG_TRACE_JSON`), so [`Wal::trace`](crate::Wal::trace) can
    /// read it back from any machine that has the WAL.
    pub wal: bool,
    /// Which trace files to keep.
    pub retention: TraceRetention,
    /// Trace files written between two retention passes; a pass also runs when the store
    /// opens. Default 1,000.
    pub retention_every: u64,
}

impl Default for TraceConfig {
    /// [`TraceConfig::off`].
    fn default() -> Self {
        Self::off()
    }
}

impl TraceConfig {
    /// Trace files under `base_dir` and trace records in the WAL, default retention.
    pub fn files_in(base_dir: impl Into<PathBuf>) -> Self {
        Self { base_dir: Some(base_dir.into()), ..Self::wal_only() }
    }

    /// Trace records in the WAL, no files.
    pub fn wal_only() -> Self {
        Self { base_dir: None, wal: true, retention: TraceRetention::default(), retention_every: 1000 }
    }

    /// No trace persistence: the store builds no traces at all.
    pub fn off() -> Self {
        Self { wal: false, ..Self::wal_only() }
    }

    /// What the environment asks for: nothing when `DASHFLOW_TRACE` is `0`, `false`, `off` or
    /// `no`; otherwise trace records in the WAL, and files under `DASHFLOW_TRACE_DIR` (or the
    /// working directory when it has a `.dashflow/` directory; else no files).
    pub fn from_env() -> Result<Self> {
        Self::from_env_with(|name| std::env::var_os(name))
    }

    /// [`from_env`](Self::from_env) reading variables through `var`.
    pub fn from_env_with(var: impl Fn(&str) -> Option<OsString>) -> Result<Self> {
        if !home::trace_enabled_from(&var) {
            return Ok(Self::off());
        }
        Ok(home::trace_base_dir_from(var)?.map_or_else(Self::wal_only, Self::files_in))
    }

    /// Sets [`wal`](Self::wal).
    pub fn wal(mut self, wal: bool) -> Self {
        self.wal = wal;
        self
    }

    /// Sets [`retention`](Self::retention).
    pub fn retention(mut self, retention: TraceRetention) -> Self {
        self.retention = retention;
        self
    }

    /// Sets [`retention_every`](Self::retention_every) (at least 1).
    pub fn retention_every(mut self, files: u64) -> Self {
        self.retention_every = files.max(1);
        self
    }

    /// The directory trace files go to, `None` when no files are written.
    pub fn traces_dir(&self) -> Option<PathBuf> {
        self.base_dir.as_deref().map(home::traces_dir)
    }

    /// Whether traces are persisted anywhere.
    pub fn is_on(&self) -> bool {
        self.base_dir.is_some() || self.wal
    }
}

/// A trace file found by [`list_traces`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceFile {
    /// The run it traces.
    pub run_id: RunId,
    /// The file.
    pub path: PathBuf,
    /// When it was written.
    pub modified: Option<SystemTime>,
    /// Its size.
    pub bytes: u64,
}

/// What a trace retention pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceRetentionReport {
    /// Trace files removed.
    pub removed: u64,
    /// Trace files kept.
    pub kept: u64,
    /// Temporary files of writers that died, removed.
    pub stale_temporaries: u64,
}

/// The file name of run `run_id`'s trace: `{run_id}.json`.
pub fn trace_file_name(run_id: RunId) -> String {
    format!("{run_id}{SUFFIX}")
}

/// Writes `trace` to `dir/{run_id}.json` (creating `dir` if needed) through a temporary file
/// and a rename, so that readers never see part of it; returns the file's path. An existing
/// trace of the run is replaced.
pub fn write_trace(dir: &Path, trace: &ExecutionTrace) -> Result<PathBuf> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let json = serde_json::to_vec_pretty(trace).map_err(|source| WalError::Encode { source })?;
    let run_id = trace.run.run_id;
    let path = dir.join(trace_file_name(run_id));
    // Unique per process and write: two stores of one process may trace the same run.
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{run_id}.{}-{n}{TMP_SUFFIX}", std::process::id()));
    let written = match write_new(&tmp, &json) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| WalError::io("create", dir, e))?;
            write_new(&tmp, &json)
        }
        other => other,
    };
    let renamed = written
        .map_err(|e| WalError::io("write", &tmp, e))
        .and_then(|()| std::fs::rename(&tmp, &path).map_err(|e| WalError::io("rename", &tmp, e)));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed.map(|()| path)
}

fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)
}

/// Reads run `run_id`'s trace file from `dir`; `Ok(None)` when there is none.
///
/// `dir` is the trace files' directory (`{base}/.dashflow/traces`, see
/// [`traces_dir_from_env`](crate::traces_dir_from_env)).
pub fn read_trace(dir: &Path, run_id: RunId) -> Result<Option<ExecutionTrace>> {
    let path = dir.join(trace_file_name(run_id));
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| WalError::BadTrace { path, source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WalError::io("read", path, e)),
    }
}

/// The trace files in `dir`, newest run first; empty when `dir` does not exist. Other files
/// (and files being written) are ignored.
pub fn list_traces(dir: &Path) -> Result<Vec<TraceFile>> {
    Ok(scan(dir)?.traces)
}

/// Applies `retention` to the trace files in `dir` as of `now`, and removes temporary files
/// that writers which died left behind (older than an hour).
///
/// The store runs it when it opens and every
/// [`retention_every`](TraceConfig::retention_every) traces; call it to prune at other times
/// (tests pass a `now` of their choosing). Several processes may prune one directory at once.
pub fn apply_trace_retention(dir: &Path, retention: &TraceRetention, now: SystemTime) -> Result<TraceRetentionReport> {
    let Scan { traces, temporaries } = scan(dir)?;
    let mut report = TraceRetentionReport::default();
    let older_than = |modified: Option<SystemTime>, age: Duration| {
        modified.is_some_and(|modified| now.duration_since(modified).is_ok_and(|elapsed| elapsed > age))
    };
    for (path, modified) in temporaries {
        if older_than(modified, STALE_TMP_AGE) && remove_if_exists(&path)? {
            report.stale_temporaries += 1;
        }
    }
    for (i, file) in traces.iter().enumerate() {
        let too_many = retention.max_files.is_some_and(|max| i >= max);
        let too_old = retention.max_age.is_some_and(|age| older_than(file.modified, age));
        if too_many || too_old {
            remove_if_exists(&file.path)?;
            report.removed += 1;
        } else {
            report.kept += 1;
        }
    }
    if report != TraceRetentionReport::default() {
        tracing::debug!(dir = %dir.display(), ?report, "trace retention");
    }
    Ok(report)
}

/// The files of a traces directory.
struct Scan {
    /// Trace files, newest run first.
    traces: Vec<TraceFile>,
    /// Temporary files, with when they were last written.
    temporaries: Vec<(PathBuf, Option<SystemTime>)>,
}

fn scan(dir: &Path) -> Result<Scan> {
    let mut scan = Scan { traces: Vec::new(), temporaries: Vec::new() };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(scan),
        Err(e) => return Err(WalError::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let run_id = name.strip_suffix(SUFFIX).and_then(|stem| stem.parse::<RunId>().ok());
        let is_tmp = name.starts_with('.') && name.ends_with(TMP_SUFFIX);
        if run_id.is_none() && !is_tmp {
            continue;
        }
        // Gone since the listing (another process's retention): nothing to report.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().ok();
        match run_id {
            Some(run_id) => scan.traces.push(TraceFile { run_id, path: entry.path(), modified, bytes: meta.len() }),
            None => scan.temporaries.push((entry.path(), modified)),
        }
    }
    scan.traces.sort_unstable_by_key(|file| std::cmp::Reverse(file.run_id));
    Ok(scan)
}

/// Removes `path`; `false` when it was already gone.
fn remove_if_exists(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(WalError::io("remove", path, e)),
    }
}

#[cfg(test)]
mod tests;
