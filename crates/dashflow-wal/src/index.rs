//! The SQLite index of runs: one row per run, fed from the events as they are appended.
//!
//! The index is a cache of the segments: everything in it is derived from the records, so it
//! can be deleted and rebuilt at any time. It stores a high-water mark, the position just past
//! the last record it has seen, in the same transaction as the rows that record changed; a
//! writer that crashed between appending to a segment and updating the index leaves the mark
//! behind the segments, and the next writer replays the difference. It also notes where each
//! segment's schema records are, so a reader of one run's events finds the schema its graph
//! record names without reading the segment from its start.
//!
//! The one thing not derived from the records is whether a run's process is gone: the
//! `processes` table (filled from process records) keeps a `gone` flag, set by readers that
//! find the process no longer exists. A process that is gone never comes back (its identity
//! includes its start time and boot), so the flag only ever goes from 0 to 1, and a run is
//! reported `abandoned` while it is `running` and its process is gone. A rebuilt index
//! starts with every flag at 0 and readers set them again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashflow_telemetry::{Event, EventKind, EventRef, RunId, RunIds};
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params, params_from_iter};

use crate::error::{Result, WalError};
use crate::process::{Liveness, ProcessIdentity};
use crate::record::{ProcessRecord, SchemaKey};
use crate::runs::{RunFilter, RunStatus, RunSummary};
use crate::segment::Position;

/// The index's file name inside the WAL directory.
pub(crate) const INDEX_FILE: &str = "index.sqlite";

/// Bumped whenever the schema changes; an index of another version is dropped and rebuilt.
const SCHEMA_VERSION: i64 = 7;

/// A run's row is written once per batch that has its events, so the writer pays for every
/// B-tree a row is in: the runs table is keyed by the run id's bytes (no rowid table beside
/// it), and the secondary indexes are only those the queries need, partial where most runs
/// have no entry (a run without a thread, a root run, a run no longer running). Retention's
/// deletes by segment scan the table: they run once per sealed segment, not per run.
const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE runs (
    run_id        BLOB PRIMARY KEY,
    parent_run_id BLOB,
    root_run_id   BLOB,
    depth         INTEGER NOT NULL,
    graph         TEXT,
    thread_id     TEXT,
    status        TEXT NOT NULL,
    started_at_ms INTEGER,
    ended_at_ms   INTEGER,
    duration_us   INTEGER,
    error         TEXT,
    steps         INTEGER NOT NULL,
    events        INTEGER NOT NULL,
    partial       INTEGER NOT NULL,
    first_segment INTEGER NOT NULL,
    first_offset  INTEGER NOT NULL,
    last_segment  INTEGER NOT NULL,
    last_offset   INTEGER NOT NULL,
    trace_segment INTEGER,
    trace_offset  INTEGER,
    last_at_ms    INTEGER,
    process       INTEGER,
    tags          TEXT
) WITHOUT ROWID;
CREATE INDEX runs_by_start ON runs (started_at_ms);
CREATE INDEX runs_by_thread ON runs (thread_id, started_at_ms) WHERE thread_id IS NOT NULL;
CREATE INDEX runs_by_graph ON runs (graph, started_at_ms);
CREATE INDEX runs_by_root ON runs (root_run_id) WHERE root_run_id IS NOT NULL;
CREATE INDEX running_runs_by_process ON runs (process) WHERE status = 'running';
CREATE TABLE segments (
    segment     INTEGER PRIMARY KEY,
    records     INTEGER NOT NULL,
    first_at_ms INTEGER NOT NULL,
    last_at_ms  INTEGER NOT NULL
);
CREATE TABLE schemas (
    segment INTEGER NOT NULL,
    key     BLOB NOT NULL,
    offset  INTEGER NOT NULL,
    PRIMARY KEY (segment, key)
) WITHOUT ROWID;
CREATE TABLE processes (
    id            INTEGER PRIMARY KEY,
    pid           INTEGER NOT NULL,
    start_ticks   INTEGER NOT NULL,
    boot_id       TEXT NOT NULL,
    pid_namespace INTEGER NOT NULL,
    host          TEXT NOT NULL,
    gone          INTEGER NOT NULL DEFAULT 0,
    UNIQUE (pid, start_ticks, boot_id, pid_namespace, host)
);
";

/// A run's row as one batch sees it; what happens when the row exists follows (one of the
/// `ON CONFLICT` clauses below). A run the index has not seen is inserted whole.
macro_rules! upsert_run {
    ($on_conflict:literal) => {
        concat!(
            "INSERT INTO runs (run_id, parent_run_id, root_run_id, depth, graph, thread_id, status, started_at_ms,
                  ended_at_ms, duration_us, error, steps, events, partial, first_segment, first_offset,
                  last_segment, last_offset, last_at_ms, tags, process, trace_segment, trace_offset)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, COALESCE(?7, 'running'), ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
        ?20, ?21, ?22, ?23)
ON CONFLICT (run_id) DO UPDATE SET
    steps = MAX(steps, excluded.steps),
    events = events + excluded.events,
    partial = partial AND excluded.partial,
    last_segment = excluded.last_segment,
    last_offset = excluded.last_offset,
    last_at_ms = MAX(COALESCE(last_at_ms, excluded.last_at_ms), excluded.last_at_ms),
    trace_segment = COALESCE(excluded.trace_segment, trace_segment),
    trace_offset = CASE WHEN excluded.trace_segment IS NULL THEN trace_offset ELSE excluded.trace_offset END",
            $on_conflict
        )
    };
}

/// A batch with the run's start: everything it says. Rare for a row that exists (an event
/// of the run came in an earlier batch, or a run started again), so its cost matters less.
const UPSERT_STARTED: &str = upsert_run!(
    ",
    graph = COALESCE(excluded.graph, graph),
    tags = COALESCE(excluded.tags, tags),
    thread_id = COALESCE(excluded.thread_id, thread_id),
    status = COALESCE(?7, status),
    started_at_ms = COALESCE(excluded.started_at_ms, started_at_ms),
    ended_at_ms = CASE WHEN ?7 = 'running' THEN NULL ELSE COALESCE(excluded.ended_at_ms, ended_at_ms) END,
    duration_us = CASE WHEN ?7 = 'running' THEN NULL ELSE COALESCE(excluded.duration_us, duration_us) END,
    error = CASE WHEN ?7 = 'running' THEN NULL ELSE COALESCE(excluded.error, error) END,
    process = COALESCE(excluded.process, process)"
);

/// A batch with the run's end and not its start: the end, and no column of an index but the
/// status (so only the index of running runs changes).
const UPSERT_FINISHED: &str = upsert_run!(
    ",
    status = ?7,
    ended_at_ms = excluded.ended_at_ms,
    duration_us = excluded.duration_us,
    error = excluded.error"
);

/// A batch with neither: counters and positions, no column of any index.
const UPSERT_CONTINUED: &str = upsert_run!("");

const UPSERT_SEGMENT: &str = "
INSERT INTO segments (segment, records, first_at_ms, last_at_ms) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (segment) DO UPDATE SET
    records = records + excluded.records,
    first_at_ms = MIN(first_at_ms, excluded.first_at_ms),
    last_at_ms = MAX(last_at_ms, excluded.last_at_ms)
";

/// A run with its status as readers see it: `running` becomes `abandoned` once its process is
/// known to be gone. A root run's root id is its own.
const SELECT_RUN: &str = "
SELECT r.run_id, r.parent_run_id, COALESCE(r.root_run_id, r.run_id), r.depth, r.graph, r.thread_id,
       CASE WHEN r.status = 'running' AND p.gone = 1 THEN 'abandoned' ELSE r.status END,
       r.started_at_ms, r.ended_at_ms, r.duration_us, r.error, r.steps, r.events, r.partial, r.first_segment,
       r.first_offset, r.last_segment, r.last_offset, r.trace_segment, r.trace_offset, r.last_at_ms,
       p.pid, p.start_ticks, p.boot_id, p.pid_namespace, p.host, r.tags
FROM runs r LEFT JOIN processes p ON p.id = r.process";

/// The process row of an identity. Every batch that starts runs names its process: looked up
/// first, so a known process costs a read, not a write of its row.
const FIND_PROCESS: &str = "SELECT id FROM processes WHERE pid = ?1 AND start_ticks = ?2 AND boot_id = ?3 AND pid_namespace = ?4 AND host = ?5";

/// The process row of an identity not seen before.
const INSERT_PROCESS: &str =
    "INSERT INTO processes (pid, start_ticks, boot_id, pid_namespace, host) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id";

/// A run's process; a run the index does not know (yet) is left alone, like for traces.
const SET_PROCESS: &str = "UPDATE runs SET process = ?2 WHERE run_id = ?1";

/// Processes not known to be gone that still have running runs: the ones worth checking.
const PROCESSES_TO_CHECK: &str = "
SELECT id, pid, start_ticks, boot_id, pid_namespace, host FROM processes p
WHERE gone = 0 AND EXISTS (SELECT 1 FROM runs r WHERE r.process = p.id AND r.status = 'running')";

const CLEAR: &str =
    "BEGIN IMMEDIATE; DELETE FROM runs; DELETE FROM segments; DELETE FROM schemas; DELETE FROM processes;
    DELETE FROM meta; COMMIT;";

/// Where a schema record is; the first one of a key in a segment stays.
const INSERT_SCHEMA: &str = "INSERT OR IGNORE INTO schemas (segment, key, offset) VALUES (?1, ?2, ?3)";

/// Where a run's trace record is; a run the index does not know (yet) is left alone.
const SET_TRACE: &str = "UPDATE runs SET trace_segment = ?2, trace_offset = ?3 WHERE run_id = ?1";

/// What one record tells the index.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Entry<'e> {
    /// A run event.
    Event(EventRef<'e>),
    /// The trace record of a run.
    Trace(RunId),
    /// The process executing some runs.
    Process(&'e ProcessRecord),
    /// An event of a run that tells the index nothing but that it happened (a graph record
    /// read back).
    Mark(RunIds, SystemTime),
    /// Events of a run that tell the index only how many there were, the latest step among
    /// them and when they happened: a run block's compact step events, counted once.
    Steps(StepEvents),
    /// A schema record.
    Schema(SchemaKey),
}

/// Events of one run's steps that the index counts together (see [`Entry::Steps`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepEvents {
    pub(crate) run: RunIds,
    pub(crate) events: u64,
    pub(crate) last_step: u64,
    /// When the earliest and the latest of them happened.
    pub(crate) span: (SystemTime, SystemTime),
}

impl StepEvents {
    /// The step events among a run block's `events` (all of one run): the compact kinds a
    /// batch records, which tell the index nothing but their step and time; `None` if
    /// there is none. The other events need entries of their own.
    pub(crate) fn of<'r, 'e: 'r>(events: impl IntoIterator<Item = &'r EventRef<'e>>) -> Option<Self> {
        let mut counted: Option<Self> = None;
        for event in events {
            let Some(step) = compact_step(event) else { continue };
            let at = event.at();
            match &mut counted {
                Some(steps) => {
                    steps.events += 1;
                    steps.last_step = steps.last_step.max(step);
                    steps.span = (steps.span.0.min(at), steps.span.1.max(at));
                }
                None => counted = Some(Self { run: *event.run(), events: 1, last_step: step, span: (at, at) }),
            }
        }
        counted
    }
}

/// The step of an event a batch records compactly, which is all the index reads of it.
pub(crate) fn compact_step(event: &EventRef<'_>) -> Option<u64> {
    match *event {
        EventRef::StepStarted { step, .. } | EventRef::TaskFinished { step, .. } | EventRef::Routed { step, .. } => {
            Some(step)
        }
        _ => None,
    }
}

impl<'e> From<&'e Event> for Entry<'e> {
    fn from(event: &'e Event) -> Self {
        Self::Event(EventRef::Whole(event))
    }
}

impl crate::record::Indexed {
    /// What the record tells the index: one entry, or one per event of a run block.
    pub(crate) fn entries(&self) -> impl Iterator<Item = Entry<'_>> + '_ {
        use crate::record::Indexed;
        let (events, single) = match self {
            Indexed::Event(event) => (&[][..], Some(Entry::Event(EventRef::Whole(event)))),
            Indexed::Events(events) => (&events[..], None),
            Indexed::Trace(run_id) => (&[][..], Some(Entry::Trace(*run_id))),
            Indexed::Process(record) => (&[][..], Some(Entry::Process(record))),
            Indexed::Graph(run, at) => (&[][..], Some(Entry::Mark(*run, *at))),
            Indexed::Schema(key) => (&[][..], Some(Entry::Schema(*key))),
        };
        single.into_iter().chain(events.iter().map(|event| Entry::Event(EventRef::Whole(event))))
    }
}

/// What the index knows about one segment, for retention by age.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentStats {
    pub(crate) segment: u64,
    pub(crate) last_at_ms: i64,
}

/// Events a batch's entry adds to a run: one (with what it says, if anything), or a count of
/// step events and the latest step among them.
enum Counted<'e> {
    One(Option<EventRef<'e>>),
    Steps(u64, u64),
}

/// The changes one batch of records makes to one run.
#[derive(Debug)]
struct RunDelta<'e> {
    ids: RunIds,
    first: Position,
    last: Position,
    events: u64,
    steps: u64,
    saw_start: bool,
    graph: Option<&'e str>,
    thread_id: Option<&'e str>,
    /// The run's tags as a JSON array, when its start has any.
    tags: Option<String>,
    started_at: Option<SystemTime>,
    /// The latest time of the run's events in the batch (times are turned into milliseconds
    /// once per run, not per event).
    last_at: SystemTime,
    status: Option<&'static str>,
    ended_at: Option<SystemTime>,
    duration_us: Option<i64>,
    error: Option<&'e str>,
    /// The process a process record of the batch names for the run.
    process: Option<i64>,
    /// Where the run's trace record is, when the batch has it.
    trace: Option<Position>,
}

impl<'e> RunDelta<'e> {
    fn new(ids: RunIds, at: Position) -> Self {
        Self {
            ids,
            first: at,
            last: at,
            events: 0,
            steps: 0,
            saw_start: false,
            graph: None,
            thread_id: None,
            tags: None,
            started_at: None,
            last_at: UNIX_EPOCH,
            status: None,
            ended_at: None,
            duration_us: None,
            error: None,
            process: None,
            trace: None,
        }
    }

    /// Adds events of the run recorded at `at`, the latest of which happened at `event_at`;
    /// returns how many.
    fn add(&mut self, at: Position, event_at: SystemTime, counted: Counted<'e>) -> u64 {
        self.last = at;
        if self.events == 0 || event_at > self.last_at {
            self.last_at = event_at;
        }
        let event = match counted {
            Counted::One(event) => {
                self.events += 1;
                event
            }
            Counted::Steps(events, last_step) => {
                self.events += events;
                self.steps = self.steps.max(last_step);
                return events;
            }
        };
        self.add_event(event_at, event);
        1
    }

    /// What `event`, which happened at `event_at`, tells about the run; `None` for one that
    /// tells nothing more than that it happened.
    fn add_event(&mut self, event_at: SystemTime, event: Option<EventRef<'e>>) {
        let Some(event) = event else { return };
        if let Some(step) = compact_step(&event) {
            self.steps = self.steps.max(step);
            return;
        }
        let event = match event {
            EventRef::Whole(event) => event,
            // A kind a batch may record compactly one day.
            other => {
                self.steps = self.steps.max(step_of(&other.to_event().kind).unwrap_or(0));
                return;
            }
        };
        match &event.kind {
            EventKind::RunStarted { graph, thread_id, tags } => {
                self.saw_start = true;
                self.graph = Some(&**graph);
                self.thread_id = thread_id.as_deref();
                // A list of strings always serializes.
                self.tags = (!tags.is_empty()).then(|| serde_json::to_string(tags).unwrap_or_default());
                self.started_at = Some(event_at);
                self.status = Some(RunStatus::Running.as_str());
                (self.ended_at, self.duration_us, self.error) = (None, None, None);
            }
            EventKind::RunFinished { outcome, steps, duration, error } => {
                self.status = Some(RunStatus::of_outcome(*outcome));
                self.ended_at = Some(event_at);
                self.duration_us = Some(i64::try_from(duration.as_micros()).unwrap_or(i64::MAX));
                self.error = error.as_deref();
                self.steps = self.steps.max(*steps);
            }
            kind => self.steps = self.steps.max(step_of(kind).unwrap_or(0)),
        }
    }

    /// The statement that writes this delta, the cheapest that says all of it: 0 for
    /// [`UPSERT_STARTED`], 1 for [`UPSERT_FINISHED`], 2 for [`UPSERT_CONTINUED`].
    fn statement(&self) -> usize {
        if self.saw_start {
            0
        } else if self.status.is_some() {
            1
        } else {
            2
        }
    }
}

/// The step an event of a step belongs to.
fn step_of(kind: &EventKind) -> Option<u64> {
    match kind {
        EventKind::SuperstepStarted { step, .. }
        | EventKind::SuperstepFinished { step, .. }
        | EventKind::TaskStarted { step, .. }
        | EventKind::TaskFinished { step, .. }
        | EventKind::Routed { step, .. }
        | EventKind::Custom { step, .. } => Some(*step),
        _ => None,
    }
}

/// The run index of one WAL directory.
/// The high-water mark of the index in `dir`, read without creating or changing any file:
/// `Some(None)` when there is no index (or it has no mark), `None` when it cannot be read that
/// way (a writer has uncheckpointed commits in SQLite's `-wal` file, or the file is not a
/// readable index of this version).
pub(crate) fn read_high_water(dir: &Path) -> Option<Option<Position>> {
    let path = dir.join(INDEX_FILE);
    if !path.exists() {
        return Some(None);
    }
    // An immutable open reads the main file only and writes nothing, not even `-shm`; it is
    // exact only when no commit waits in the `-wal` file.
    let wal_file = PathBuf::from(format!("{}-wal", path.display()));
    if std::fs::metadata(&wal_file).is_ok_and(|meta| meta.len() > 0) {
        return None;
    }
    let escaped = path.display().to_string().replace('%', "%25").replace('?', "%3f").replace('#', "%23");
    let uri = format!("file:{escaped}?immutable=1");
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(uri, flags).ok()?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).ok()?;
    if version != SCHEMA_VERSION {
        return None;
    }
    Index { conn }.high_water().ok()
}

#[derive(Debug)]
pub(crate) struct Index {
    conn: Connection,
}

impl Index {
    /// Opens (or creates) the index in `dir`. A file that is not a readable index of this
    /// schema version is replaced by an empty one, which the caller then rebuilds.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(INDEX_FILE);
        match Self::open_file(&path) {
            Err(WalError::Index { source })
                if matches!(source.sqlite_error_code(), Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)) =>
            {
                tracing::warn!(path = %path.display(), error = %source, "replacing an unreadable WAL index");
                for suffix in ["", "-wal", "-shm"] {
                    let file = PathBuf::from(format!("{}{suffix}", path.display()));
                    match std::fs::remove_file(&file) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(WalError::io("remove", file, e));
                        }
                        _ => {}
                    }
                }
                Self::open_file(&path)
            }
            other => other,
        }
    }

    fn open_file(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        // Other processes write the same index; wait for their short transactions.
        conn.busy_timeout(Duration::from_secs(10))?;
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        // The index is rebuildable, so commits need not wait for the disk.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version != SCHEMA_VERSION {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 DROP TABLE IF EXISTS meta; DROP TABLE IF EXISTS runs; DROP TABLE IF EXISTS segments;
                 DROP TABLE IF EXISTS processes; DROP TABLE IF EXISTS schemas;
                 {SCHEMA}
                 PRAGMA user_version = {SCHEMA_VERSION};
                 COMMIT;"
            ))?;
        }
        Ok(Self { conn })
    }

    /// The position just past the last record applied, `None` for an empty index.
    pub(crate) fn high_water(&self) -> Result<Option<Position>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT (SELECT value FROM meta WHERE key = 'hw_segment'), (SELECT value FROM meta WHERE key = 'hw_offset')",
        )?;
        let (segment, offset): (Option<i64>, Option<i64>) = stmt.query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(segment
            .zip(offset)
            .map(|(segment, offset)| Position { segment: from_sql(segment), offset: from_sql(offset) }))
    }

    /// Applies a batch of records in one transaction and moves the high-water mark to `hw`.
    pub(crate) fn apply<'e, E: Into<Entry<'e>>>(
        &mut self,
        entries: impl IntoIterator<Item = (Position, E)>,
        hw: Position,
    ) -> Result<()> {
        // Consecutive records mostly belong to the same run, and a batch spans one or two
        // segments: the run of the previous record is checked before hashing the run id.
        let mut runs: Vec<RunDelta<'e>> = Vec::new();
        let mut run_index: HashMap<RunId, usize> = HashMap::new();
        // Per segment: records, earliest and latest time.
        let mut segments: Vec<(u64, (u64, SystemTime, SystemTime))> = Vec::new();
        let mut traces: Vec<(RunId, Position)> = Vec::new();
        let mut processes: Vec<&ProcessRecord> = Vec::new();
        let mut schemas: Vec<(Position, SchemaKey)> = Vec::new();
        for (at, entry) in entries {
            let (run, (first_at, last_at), counted) = match entry.into() {
                Entry::Event(event) => {
                    let event_at = event.at();
                    (*event.run(), (event_at, event_at), Counted::One(Some(event)))
                }
                Entry::Mark(run, event_at) => (run, (event_at, event_at), Counted::One(None)),
                Entry::Steps(steps) => (steps.run, steps.span, Counted::Steps(steps.events, steps.last_step)),
                Entry::Trace(run_id) => {
                    traces.push((run_id, at));
                    continue;
                }
                Entry::Process(record) => {
                    processes.push(record);
                    continue;
                }
                Entry::Schema(key) => {
                    schemas.push((at, key));
                    continue;
                }
            };
            let same_as_last = runs.last().is_some_and(|last| last.ids.run_id == run.run_id);
            let index = if same_as_last {
                runs.len() - 1
            } else {
                *run_index.entry(run.run_id).or_insert_with(|| {
                    runs.push(RunDelta::new(run, at));
                    runs.len() - 1
                })
            };
            let count = runs[index].add(at, last_at, counted);
            let index = segments.iter().rposition(|(segment, _)| *segment == at.segment).unwrap_or_else(|| {
                segments.push((at.segment, (0, first_at, last_at)));
                segments.len() - 1
            });
            let seg = &mut segments[index].1;
            *seg = (seg.0 + count, seg.1.min(first_at), seg.2.max(last_at));
        }
        // Immediate: the batch writes, so it waits for the write lock at its start (a read
        // first would make another connection's write in between an error, not a wait).
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            // Processes first: a run started in this batch gets its process in its own row's
            // write; others (their start was applied before) get it by an update.
            let mut find_process = tx.prepare_cached(FIND_PROCESS)?;
            let mut insert_process = tx.prepare_cached(INSERT_PROCESS)?;
            let mut late_processes = Vec::new();
            for record in &processes {
                let process = &record.process;
                let identity = params![
                    process.pid,
                    to_sql(process.start_ticks),
                    process.boot_id,
                    to_sql(process.pid_namespace),
                    process.host
                ];
                let id: i64 = match find_process.query_row(identity, |row| row.get(0)).optional()? {
                    Some(id) => id,
                    None => insert_process.query_row(identity, |row| row.get(0))?,
                };
                for run_id in &record.runs {
                    match run_index.get(run_id).map(|&index| &mut runs[index]) {
                        Some(delta) if delta.saw_start => delta.process = Some(id),
                        _ => late_processes.push((*run_id, id)),
                    }
                }
            }
            // A trace follows its run's events, mostly in the same batch.
            let mut late_traces = Vec::new();
            for &(run_id, at) in &traces {
                match run_index.get(&run_id) {
                    Some(&index) => runs[index].trace = Some(at),
                    None => late_traces.push((run_id, at)),
                }
            }
            // Prepared once per batch, not once per run: the cache hashes the text.
            let mut upserts = [
                tx.prepare_cached(UPSERT_STARTED)?,
                tx.prepare_cached(UPSERT_FINISHED)?,
                tx.prepare_cached(UPSERT_CONTINUED)?,
            ];
            for delta in &runs {
                let ids = &delta.ids;
                upserts[delta.statement()].execute(params![
                    id_bytes(ids.run_id),
                    ids.parent_run_id.map(id_bytes),
                    (ids.root_run_id != ids.run_id).then(|| id_bytes(ids.root_run_id)),
                    ids.depth,
                    delta.graph,
                    delta.thread_id,
                    delta.status,
                    delta.started_at.map(system_time_to_ms),
                    delta.ended_at.map(system_time_to_ms),
                    delta.duration_us,
                    delta.error,
                    to_sql(delta.steps),
                    to_sql(delta.events),
                    !delta.saw_start,
                    to_sql(delta.first.segment),
                    to_sql(delta.first.offset),
                    to_sql(delta.last.segment),
                    to_sql(delta.last.offset),
                    system_time_to_ms(delta.last_at),
                    delta.tags,
                    delta.process,
                    delta.trace.map(|at| to_sql(at.segment)),
                    delta.trace.map(|at| to_sql(at.offset)),
                ])?;
            }
            // The processes and traces of runs whose rows were written before this batch; a run
            // the index does not know (yet) is left alone.
            let mut set_process = tx.prepare_cached(SET_PROCESS)?;
            for (run_id, id) in &late_processes {
                set_process.execute(params![id_bytes(*run_id), id])?;
            }
            let mut set_trace = tx.prepare_cached(SET_TRACE)?;
            for (run_id, at) in &late_traces {
                set_trace.execute(params![id_bytes(*run_id), to_sql(at.segment), to_sql(at.offset)])?;
            }
            let mut upsert = tx.prepare_cached(UPSERT_SEGMENT)?;
            for (segment, (records, first, last)) in &segments {
                upsert.execute(params![
                    to_sql(*segment),
                    to_sql(*records),
                    system_time_to_ms(*first),
                    system_time_to_ms(*last)
                ])?;
            }
            let mut insert_schema = tx.prepare_cached(INSERT_SCHEMA)?;
            for (at, key) in &schemas {
                insert_schema.execute(params![to_sql(at.segment), &key.as_bytes()[..], to_sql(at.offset)])?;
            }
            set_high_water(&tx, hw)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Empties the index (before a rebuild).
    pub(crate) fn clear(&mut self) -> Result<()> {
        self.conn.execute_batch(CLEAR)?;
        Ok(())
    }

    /// Forgets everything in segments before `first_kept`: runs that lay wholly there are
    /// removed, runs that began there are marked partial and start at `first_kept`.
    ///
    /// Returns how many runs were removed.
    pub(crate) fn forget_segments_before(&mut self, first_kept: u64) -> Result<u64> {
        let first_kept = to_sql(first_kept);
        // Every run, trace and process this forgets lies in a segment the index has a row for,
        // and the transaction below removes those rows with the rest: with no row older than
        // `first_kept` there is nothing to forget, and each open of a long log skips the
        // statements that read every run.
        let stale: bool =
            self.conn.query_row("SELECT EXISTS (SELECT 1 FROM segments WHERE segment < ?1)", [first_kept], |row| {
                row.get(0)
            })?;
        if !stale {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        let removed = tx.execute("DELETE FROM runs WHERE last_segment < ?1", [first_kept])?;
        tx.execute(
            "UPDATE runs SET partial = 1, first_segment = ?1, first_offset = 0 WHERE first_segment < ?1",
            [first_kept],
        )?;
        tx.execute("UPDATE runs SET trace_segment = NULL, trace_offset = NULL WHERE trace_segment < ?1", [first_kept])?;
        tx.execute("DELETE FROM segments WHERE segment < ?1", [first_kept])?;
        tx.execute("DELETE FROM schemas WHERE segment < ?1", [first_kept])?;
        tx.execute("DELETE FROM processes WHERE id NOT IN (SELECT process FROM runs WHERE process IS NOT NULL)", [])?;
        tx.commit()?;
        Ok(removed as u64)
    }

    /// Where the index saw the schema record of `key` in segment `segment`.
    pub(crate) fn schema_offset(&self, segment: u64, key: SchemaKey) -> Result<Option<u64>> {
        let mut stmt = self.conn.prepare_cached("SELECT offset FROM schemas WHERE segment = ?1 AND key = ?2")?;
        let offset: Option<i64> =
            stmt.query_row(params![to_sql(segment), &key.as_bytes()[..]], |row| row.get(0)).optional()?;
        Ok(offset.map(from_sql))
    }

    /// The newest record time of every segment the index has seen records in.
    pub(crate) fn segment_stats(&self) -> Result<Vec<SegmentStats>> {
        let mut stmt = self.conn.prepare_cached("SELECT segment, last_at_ms FROM segments ORDER BY segment")?;
        let rows =
            stmt.query_map([], |row| Ok(SegmentStats { segment: from_sql(row.get(0)?), last_at_ms: row.get(1)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every segment row: segment, records, earliest and latest time in milliseconds.
    #[cfg(test)]
    pub(crate) fn segment_rows(&self) -> Result<Vec<(i64, i64, i64, i64)>> {
        let mut stmt =
            self.conn.prepare("SELECT segment, records, first_at_ms, last_at_ms FROM segments ORDER BY segment")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One run.
    pub(crate) fn get(&self, run_id: RunId) -> Result<Option<RunSummary>> {
        let mut stmt = self.conn.prepare_cached(&format!("{SELECT_RUN} WHERE r.run_id = ?1"))?;
        let row = stmt.query_row([id_bytes(run_id)], |row| Ok(read_row(row))).optional()?;
        row.transpose()
    }

    /// Runs matching `filter`, newest first.
    pub(crate) fn list(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        let (sql, values) = list_query(filter);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(values), |row| Ok(read_row(row)))?;
        let mut runs = Vec::new();
        for row in rows {
            runs.push(row??);
        }
        Ok(runs)
    }

    /// Marks gone the processes that have running runs and no longer exist, as seen from the
    /// process `me` (the reader; `None` when its identity is unknown, which tells nothing).
    ///
    /// Only a process certainly gone is marked: its runs then read `abandoned`.
    pub(crate) fn mark_gone_processes(&self, me: Option<&ProcessIdentity>) -> Result<()> {
        if me.is_none() {
            return Ok(());
        }
        let mut gone = Vec::new();
        {
            let mut stmt = self.conn.prepare_cached(PROCESSES_TO_CHECK)?;
            let rows = stmt.query_map([], |row| Ok((row.get::<_, i64>(0)?, read_process(row, 1)?)))?;
            for row in rows {
                if let (id, Some(process)) = row?
                    && process.liveness_from(me) == Liveness::Gone
                {
                    gone.push(id);
                }
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut mark = tx.prepare_cached("UPDATE processes SET gone = 1 WHERE id = ?1")?;
            for id in &gone {
                mark.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// The query of the runs matching `filter`, newest first, and its values.
fn list_query(filter: &RunFilter) -> (String, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    match filter.status {
        None => {}
        // Both are stored as `running`; the process tells them apart.
        Some(RunStatus::Running) => conditions.push("r.status = 'running' AND p.gone IS NOT 1"),
        Some(RunStatus::Abandoned) => conditions.push("r.status = 'running' AND p.gone = 1"),
        Some(status) => {
            conditions.push("r.status = ?");
            values.push(Value::Text(status.as_str().to_owned()));
        }
    }
    if let Some(graph) = &filter.graph {
        conditions.push("r.graph = ?");
        values.push(Value::Text(graph.clone()));
    }
    if let Some(thread_id) = &filter.thread_id {
        conditions.push("r.thread_id = ?");
        values.push(Value::Text(thread_id.clone()));
    }
    if let Some(tag) = &filter.tag {
        conditions.push("EXISTS (SELECT 1 FROM json_each(r.tags) WHERE json_each.value = ?)");
        values.push(Value::Text(tag.clone()));
    }
    if let Some(since) = filter.since {
        conditions.push("r.started_at_ms >= ?");
        values.push(Value::Integer(system_time_to_ms(since)));
    }
    if let Some(root) = filter.root_run_id {
        // A root run's own row holds no root id.
        conditions.push("(r.root_run_id = ? OR (r.root_run_id IS NULL AND r.run_id = ?))");
        values.extend([Value::Blob(id_bytes(root).to_vec()), Value::Blob(id_bytes(root).to_vec())]);
    }
    if let Some(prefix) = &filter.run_id_prefix {
        // A range on the primary key: the ids whose text starts with the prefix.
        match id_prefix_range(prefix) {
            Some((low, Some(high))) => {
                conditions.push("r.run_id >= ? AND r.run_id < ?");
                values.extend([Value::Blob(low.to_vec()), Value::Blob(high.to_vec())]);
            }
            Some((low, None)) => {
                conditions.push("r.run_id >= ?");
                values.push(Value::Blob(low.to_vec()));
            }
            None => conditions.push("0"),
        }
    }
    let mut sql = SELECT_RUN.to_owned();
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    // SQLite sorts NULL below every value, so runs without a start come last in DESC
    // order; a leading `started_at_ms IS NULL` key would keep `runs_by_start` from serving
    // the order, and a LIMITed page would sort the whole table.
    sql.push_str(" ORDER BY r.started_at_ms DESC, r.run_id DESC");
    if let Some(limit) = filter.limit {
        sql.push_str(" LIMIT ?");
        values.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    }
    (sql, values)
}

/// Reads a process identity from the five columns starting at `first` (pid, start ticks, boot
/// id, pid namespace, host); `None` when they are null (a run without a process record).
fn read_process(row: &Row<'_>, first: usize) -> rusqlite::Result<Option<ProcessIdentity>> {
    let Some(pid) = row.get::<_, Option<u32>>(first)? else { return Ok(None) };
    Ok(Some(ProcessIdentity {
        pid,
        start_ticks: from_sql(row.get(first + 1)?),
        boot_id: row.get(first + 2)?,
        pid_namespace: from_sql(row.get(first + 3)?),
        host: row.get(first + 4)?,
    }))
}

fn set_high_water(conn: &Connection, hw: Position) -> Result<()> {
    let mut stmt = conn.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?;
    stmt.execute(params!["hw_segment", to_sql(hw.segment)])?;
    stmt.execute(params!["hw_offset", to_sql(hw.offset)])?;
    Ok(())
}

/// Reads a `runs` row; the outer `Result` is SQLite's, the inner one the row's contents.
fn read_row(row: &Row<'_>) -> Result<RunSummary> {
    let status: String = row.get(6)?;
    let ids = RunIds {
        run_id: id_from_bytes(row.get(0)?),
        parent_run_id: row.get::<_, Option<[u8; 16]>>(1)?.map(id_from_bytes),
        root_run_id: id_from_bytes(row.get(2)?),
        depth: row.get(3)?,
    };
    let duration_us: Option<i64> = row.get(9)?;
    let trace_segment: Option<i64> = row.get(18)?;
    let trace_offset: Option<i64> = row.get(19)?;
    Ok(RunSummary {
        ids,
        graph: row.get(4)?,
        thread_id: row.get(5)?,
        status: status.parse().unwrap_or(RunStatus::Unknown),
        started_at: row.get::<_, Option<i64>>(7)?.map(ms_to_system_time),
        ended_at: row.get::<_, Option<i64>>(8)?.map(ms_to_system_time),
        duration: duration_us.map(|us| Duration::from_micros(u64::try_from(us).unwrap_or(0))),
        error: row.get(10)?,
        steps: from_sql(row.get(11)?),
        events: from_sql(row.get(12)?),
        partial: row.get(13)?,
        first: Position { segment: from_sql(row.get(14)?), offset: from_sql(row.get(15)?) },
        last: Position { segment: from_sql(row.get(16)?), offset: from_sql(row.get(17)?) },
        trace: trace_segment
            .zip(trace_offset)
            .map(|(segment, offset)| Position { segment: from_sql(segment), offset: from_sql(offset) }),
        last_event_at: row.get::<_, Option<i64>>(20)?.map(ms_to_system_time),
        process: read_process(row, 21)?,
        tags: match row.get::<_, Option<String>>(26)? {
            // The index wrote it from a list of strings; anything else reads as no tags.
            Some(tags) => serde_json::from_str(&tags).unwrap_or_default(),
            None => Vec::new(),
        },
    })
}

/// SQLite integers are `i64`; positions and counters never come near `i64::MAX`.
fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A run id as the index stores it: its 16 bytes, big-endian, which sort as its text does.
fn id_bytes(id: RunId) -> [u8; 16] {
    id.to_u128().to_be_bytes()
}

fn id_from_bytes(bytes: [u8; 16]) -> RunId {
    RunId::from_u128(u128::from_be_bytes(bytes))
}

/// The characters of a run id's text (a ULID in Crockford base32), by value.
const ID_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters of a run id's text: 26 of 5 bits, the first of 3 (128 bits).
const ID_TEXT_LEN: usize = 26;

/// The stored ids whose text starts with `prefix` (in any case): from the first, up to the
/// second (exclusive; `None`: to the last id). `None` when no id's text can start so: a
/// character outside the alphabet, a first character above `7`, or too long.
fn id_prefix_range(prefix: &str) -> Option<([u8; 16], Option<[u8; 16]>)> {
    if prefix.len() > ID_TEXT_LEN {
        return None;
    }
    let mut value: u128 = 0;
    for (i, c) in prefix.bytes().enumerate() {
        let digit = ID_ALPHABET.iter().position(|&a| a == c.to_ascii_uppercase())?;
        if i == 0 && digit > 7 {
            return None;
        }
        value = (value << 5) | digit as u128;
    }
    if prefix.is_empty() {
        return Some(([0; 16], None));
    }
    // The prefix's bits are the top `3 + 5 * (len - 1)` of the id.
    let bits = 3 + 5 * (prefix.len() as u32 - 1);
    let shift = 128 - bits;
    let low = value << shift;
    // The next prefix of that length, unless this one is the last ("7ZZ…").
    let last = u128::MAX >> shift;
    let high = (value < last).then(|| ((value + 1) << shift).to_be_bytes());
    Some((low.to_be_bytes(), high))
}

/// Milliseconds since the Unix epoch (negative before it).
pub(crate) fn system_time_to_ms(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        // Whole seconds times 1,000: cheaper than `as_millis`, which goes through `u128`.
        Ok(after) => i64::try_from(after.as_secs())
            .ok()
            .and_then(|secs| secs.checked_mul(1000))
            .and_then(|ms| ms.checked_add(i64::from(after.subsec_millis())))
            .unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

pub(crate) fn ms_to_system_time(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    let at = if ms >= 0 { UNIX_EPOCH.checked_add(magnitude) } else { UNIX_EPOCH.checked_sub(magnitude) };
    at.unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests;
