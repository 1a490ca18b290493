//! The WAL: a directory of segments written by one or more processes, and its run index.
//!
//! Writers in several processes may share a directory. Every append takes an exclusive lock
//! on the directory's `LOCK` file, checks that the segments still end where this writer last
//! left them (and catches up with the index if another writer moved on, or stopped between
//! appending and indexing), appends, syncs per the policy, updates the index and unlocks.
//! Readers take no lock: sealed segments never change, and a record at the very end of the
//! last segment that does not check out yet is treated as not written yet.
//!
//! A batch that starts runs also gets a process record naming the appending process (on
//! Linux), after its events: the process that appends a run's `RunStarted` is the one
//! executing it, and readers use the record to tell a run whose process died from a run in
//! progress.

mod read;
mod recovery;
mod repair;
mod traces;

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use dashflow_telemetry::{Event, EventKind, EventRef, RunId};

use crate::config::{FsyncPolicy, WalConfig};
use crate::damage::DamagedRange;
use crate::error::{Result, WalError};
use crate::frame::HEADER_LEN;
use crate::index::{Entry, Index, StepEvents, compact_step};
use crate::process::ProcessIdentity;
use crate::record::{
    ProcessRecord, RUN_BLOCK_LIMIT, SchemaCache, SchemaKey, encode_event_ref, encode_process, encode_run_block,
    encode_trace, process_record_capacity,
};
use crate::schemas::MissingSchema;
use crate::segment::{Position, file_len, segment_path};
use crate::trace::ExecutionTrace;

pub use self::read::{RecordLocation, VerifyReport, verify_dir};
pub(crate) use self::recovery::Check;
pub use self::recovery::{RecoveryReport, TornTail};
pub use self::repair::RepairReport;
pub use self::traces::TraceRecords;

/// The lock file that serializes writers of one WAL directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// The write-ahead log of run events in one directory.
///
/// Opening recovers: an interrupted compaction is finished, every record of the last segment
/// is checked, and records the index has not seen are indexed (see [`RecoveryReport`]). Only
/// a torn tail is cut: damaged bytes at the end of the last segment with no intact frame after
/// them. Any other damage, in any segment read, keeps every intact record before and after it
/// (the reader resynchronises on the next intact frame), its bytes are copied into the
/// `quarantine/` directory, and it is reported ([`RecoveryReport::damaged`], [`Wal::damage`]).
/// When the last segment holds such damage, appends go on in a new segment. Sealed segments
/// are not read on open (that would make opening cost as much as the whole history); reads
/// skip and report their damage, [`Wal::verify`] lists it and [`Wal::repair`] sets it aside.
///
/// [`Wal::open_read_only`] opens for reading only: it never changes a segment.
///
/// ```
/// use dashflow_telemetry::{Event, EventKind, RunId, RunIds};
/// use dashflow_wal::{RunFilter, Wal, WalConfig};
///
/// let dir = tempfile::tempdir()?;
/// let mut wal = Wal::open(dir.path(), WalConfig::default())?;
/// let run = RunIds::root(RunId::new());
/// wal.append(&[Event::now(run, EventKind::RunStarted { graph: "triage".into(), thread_id: None, tags: Vec::new() })])?;
///
/// let runs = wal.list_runs(&RunFilter::all().graph("triage"))?;
/// assert_eq!(runs[0].ids.run_id, run.run_id);
/// assert_eq!(wal.run_events(run.run_id)?.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Wal {
    pub(crate) dir: PathBuf,
    pub(crate) config: WalConfig,
    pub(crate) access: Access,
    /// The directory's lock file; `None` for a read-only open of a directory that has none.
    lock: Option<Arc<File>>,
    pub(crate) index: Index,
    /// The segment appends go to; `None` until the first segment exists.
    active: Option<Active>,
    /// Where this writer last left the index's high-water mark.
    indexed: Option<Position>,
    poison: Option<Poison>,
    /// Records appended since the last sync.
    unsynced: u64,
    last_sync: Instant,
    recovery: RecoveryReport,
    /// Reused encoding buffer.
    scratch: Vec<u8>,
    /// The graph schemas this writer stores, and which of them the active segment holds.
    schemas: SchemaCache,
    /// This process, named in a process record after the events of every batch that starts
    /// runs; `None` where it cannot be known, and then no record is written.
    pub(crate) process: Option<ProcessIdentity>,
    /// Damage that reads met since the WAL was opened.
    pub(crate) seen: Mutex<Vec<DamagedRange>>,
    /// Graph definitions that reads could not resolve since the WAL was opened.
    missing: Mutex<Vec<MissingSchema>>,
}

/// Whether a [`Wal`] may change the segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Appends, cuts torn tails, quarantines damage, compacts, repairs, applies retention.
    Write,
    /// Reads only: no segment or quarantine file is created, changed or removed. The index,
    /// a cache of the segments, is still brought up to date when it is behind.
    ReadOnly,
}

#[derive(Debug)]
struct Active {
    seq: u64,
    path: PathBuf,
    file: File,
    len: u64,
}

/// The first failed write or sync, kept to refuse every later append.
#[derive(Clone, Debug)]
struct Poison {
    action: &'static str,
    path: PathBuf,
    source: Arc<io::Error>,
}

impl Poison {
    fn error(&self) -> WalError {
        WalError::Poisoned { action: self.action, path: self.path.clone(), source: Arc::clone(&self.source) }
    }
}

/// One record to append.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Record<'a> {
    Event(EventRef<'a>),
    Trace(&'a ExecutionTrace),
    Process(&'a ProcessRecord),
}

/// How an append frames consecutive events of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// A record per event: [`Wal::append`], whose callers address each event's record.
    EachEvent,
    /// Consecutive events of one run share a run block: the [`EventStore`](crate::EventStore)'s
    /// batches, written with one header, base time and checksum per run.
    RunBlocks,
}

/// What an append of records did.
#[derive(Debug)]
pub(crate) struct Appended {
    /// Where each appended record starts.
    pub(crate) positions: Vec<Position>,
    /// Traces left out of the batch, with why.
    pub(crate) skipped: Vec<(RunId, WalError)>,
}

/// The frames of a batch, encoded.
struct Encoded<'a> {
    /// Each frame's byte range in the buffer.
    frames: Vec<Range<usize>>,
    /// What each framed record tells the index, with the frame holding it: a run block's
    /// events share their frame, and its step events share one entry.
    entries: Vec<(usize, Entry<'a>)>,
    /// For each given record that was framed, its frame, in order.
    framed: Vec<usize>,
    /// The graph records among the frames, with the schema key each names: the segment a
    /// graph record goes to must hold that schema's record before it.
    graphs: Vec<(usize, SchemaKey)>,
    /// Traces left out of the batch, with why.
    skipped: Vec<(RunId, WalError)>,
}

/// What the events of a run block in `frame` tell the index: each event kept whole (the
/// run's start and end among them) an entry of its own, the step events one entry that
/// counts them, so the index reads a run's hundred steps as one.
fn push_block_entries<'a>(events: &[Record<'a>], frame: usize, entries: &mut Vec<(usize, Entry<'a>)>) {
    let events = || {
        events.iter().filter_map(|record| match record {
            Record::Event(event) => Some(event),
            _ => None,
        })
    };
    entries.extend(events().filter(|event| compact_step(event).is_none()).map(|event| (frame, Entry::Event(*event))));
    entries.extend(StepEvents::of(events()).map(|steps| (frame, Entry::Steps(steps))));
}

/// Where each record of a write went.
struct Written {
    /// Where each frame starts.
    positions: Vec<Position>,
    /// The schema records written ahead of graph records, and where.
    schemas: Vec<(Position, SchemaKey)>,
    /// Whether a segment was sealed.
    sealed: bool,
}

/// Bytes gathered for one write to the active segment: a range of the encoded batch, or,
/// once a schema record goes in between its frames, a copy (rare: once per segment and
/// graph).
#[derive(Debug, Default)]
struct Chunk {
    range: Range<usize>,
    assembled: Option<Vec<u8>>,
}

impl Chunk {
    fn len(&self) -> u64 {
        match &self.assembled {
            Some(bytes) => bytes.len() as u64,
            None => self.range.len() as u64,
        }
    }

    /// Adds the frame at `frame` of `buf`, which follows the previous one there.
    fn push_frame(&mut self, buf: &[u8], frame: Range<usize>) {
        match &mut self.assembled {
            Some(bytes) => bytes.extend_from_slice(&buf[frame]),
            None if self.range.is_empty() => self.range = frame,
            None => self.range.end = frame.end,
        }
    }

    /// Adds bytes from elsewhere.
    fn push_bytes(&mut self, buf: &[u8], extra: &[u8]) {
        let bytes = self.assembled.get_or_insert_with(|| buf[self.range.clone()].to_vec());
        bytes.extend_from_slice(extra);
    }

    fn bytes<'b>(&'b self, buf: &'b [u8]) -> &'b [u8] {
        match &self.assembled {
            Some(bytes) => bytes,
            None => &buf[self.range.clone()],
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Holds the directory lock until dropped.
pub(crate) struct DirLock(Option<Arc<File>>);

impl DirLock {
    fn acquire(file: Option<&Arc<File>>, dir: &Path) -> Result<Self> {
        if let Some(file) = file {
            file.lock().map_err(|e| WalError::io("lock", dir.join(LOCK_FILE), e))?;
        }
        Ok(Self(file.map(Arc::clone)))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Closing the file would release the lock too; an unlock error leaves nothing to do.
        if let Some(file) = &self.0 {
            let _ = file.unlock();
        }
    }
}

impl Wal {
    /// Opens the WAL in `dir` (created if missing) and recovers it.
    pub fn open(dir: impl AsRef<Path>, config: WalConfig) -> Result<Self> {
        config.validate()?;
        let dir = dir.as_ref().to_owned();
        std::fs::create_dir_all(&dir).map_err(|e| WalError::io("create", &dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| WalError::io("create", &lock_path, e))?;
        let lock = Arc::new(lock);
        let _guard = DirLock::acquire(Some(&lock), &dir)?;

        let compaction_finished = crate::compact::finish_interrupted(&dir, &*config.storage)?;
        let index = Index::open(&dir)?;
        let mut wal = Self::new(dir, config, Access::Write, Some(lock), index);
        if compaction_finished {
            // Compaction moved records; the index's positions are stale.
            wal.index.clear()?;
        }
        wal.recovery = wal.catch_up(Check::WholeLastSegment)?;
        wal.forget_missing_segments()?;
        wal.retain(SystemTime::now());
        Ok(wal)
    }

    /// Opens the existing WAL in `dir` for reading only, as the CLI's `runs`, `tail` and
    /// `graph` commands do.
    ///
    /// No segment or quarantine file is created, changed or removed: a torn tail is left for
    /// the next writer to cut, damage is skipped and reported ([`RecoveryReport::damaged`],
    /// [`Wal::damage`]) but not copied, an interrupted compaction is left for the next writer
    /// to finish, and retention is not applied. The run index, a cache of the segments, is
    /// brought up to date when it is behind them (created if missing, rebuilt if it counts
    /// records a segment no longer holds); an index that is up to date is only read, so the
    /// directory is left exactly as it was. Appending, compacting and repairing return
    /// [`WalError::ReadOnly`].
    pub fn open_read_only(dir: impl AsRef<Path>, config: WalConfig) -> Result<Self> {
        config.validate()?;
        let dir = dir.as_ref().to_owned();
        if !dir.is_dir() {
            let missing = io::Error::new(io::ErrorKind::NotFound, "no such directory");
            return Err(WalError::io("open", dir, missing));
        }
        let lock_path = dir.join(LOCK_FILE);
        // Writers create the lock file; without one, no writer has ever opened the directory.
        let lock = match OpenOptions::new().read(true).open(&lock_path) {
            Ok(file) => Some(Arc::new(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(WalError::io("open", &lock_path, e)),
        };
        let _guard = DirLock::acquire(lock.as_ref(), &dir)?;
        if crate::compact::is_interrupted(&dir) {
            tracing::warn!(dir = %dir.display(), "a WAL compaction was interrupted; the next writer to open the WAL finishes it");
        }
        let index = Index::open(&dir)?;
        let mut wal = Self::new(dir, config, Access::ReadOnly, lock, index);
        wal.recovery = wal.catch_up(Check::WholeLastSegment)?;
        wal.forget_missing_segments()?;
        Ok(wal)
    }

    fn new(dir: PathBuf, config: WalConfig, access: Access, lock: Option<Arc<File>>, index: Index) -> Self {
        Self {
            dir,
            config,
            access,
            lock,
            index,
            active: None,
            indexed: None,
            poison: None,
            unsynced: 0,
            last_sync: Instant::now(),
            recovery: RecoveryReport::default(),
            scratch: Vec::new(),
            schemas: SchemaCache::default(),
            process: ProcessIdentity::current(),
            seen: Mutex::new(Vec::new()),
            missing: Mutex::new(Vec::new()),
        }
    }

    /// Every damaged range this WAL knows of: what opening found ([`RecoveryReport::damaged`]
    /// and a cut torn tail) and what reads met since, in the order found, each once.
    ///
    /// Damage in sealed segments that nothing has read yet is not here: [`Wal::verify`] reads
    /// every segment.
    pub fn damage(&self) -> Vec<DamagedRange> {
        let mut all = Vec::new();
        if let Some(torn) = &self.recovery.truncated {
            let mut range = DamagedRange::new(torn.segment.clone(), (torn.offset, torn.bytes, torn.damage, None));
            range.torn_tail = true;
            range.quarantined.clone_from(&torn.quarantined);
            all.push(range);
        }
        all.extend(self.recovery.damaged.iter().cloned());
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for range in seen.iter() {
            if !all.iter().any(|r| r.segment == range.segment && r.offset == range.offset) {
                all.push(range.clone());
            }
        }
        all
    }

    /// Notes damage a read met (and skipped).
    pub(crate) fn note_damage(&self, range: DamagedRange) {
        tracing::warn!(
            segment = %range.segment.display(), offset = range.offset, bytes = range.len, damage = %range.damage,
            "skipped damaged bytes in the WAL"
        );
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !seen.iter().any(|r| r.segment == range.segment && r.offset == range.offset) {
            seen.push(range);
        }
    }

    /// The runs' graph definitions that reads since the WAL was opened left out because the
    /// schema records they name are not intact ([`Wal::run_events`]), in the order met, each
    /// once. [`Wal::verify`] lists every one in the log.
    pub fn missing_schemas(&self) -> Vec<MissingSchema> {
        self.missing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Notes a graph definition a read could not resolve.
    pub(crate) fn note_missing(&self, missing: MissingSchema) {
        tracing::warn!(%missing, "a run's graph definition is lost");
        let mut all = self.missing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !all.iter().any(|m| m.segment == missing.segment && m.offset == missing.offset) {
            all.push(missing);
        }
    }

    /// [`WalError::ReadOnly`] for a WAL opened with [`Wal::open_read_only`].
    pub(crate) fn check_writable(&self, operation: &'static str) -> Result<()> {
        match self.access {
            Access::Write => Ok(()),
            Access::ReadOnly => Err(WalError::ReadOnly { operation, dir: self.dir.clone() }),
        }
    }

    /// The WAL's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &WalConfig {
        &self.config
    }

    /// What opening found and repaired.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The position after the last record this writer knows of.
    ///
    /// For a read-only WAL, the end of the intact records when it was opened.
    pub fn end(&self) -> Position {
        match &self.active {
            Some(active) => Position::new(active.seq, active.len),
            None => self.indexed.unwrap_or(Position::START),
        }
    }

    /// The first write or sync error, if one poisoned this writer.
    pub fn poisoned(&self) -> Option<WalError> {
        self.poison.as_ref().map(Poison::error)
    }

    /// Appends `events` as one batch and indexes them; returns where each event's record
    /// starts.
    ///
    /// The calling process is recorded as the one executing the runs whose `RunStarted` is
    /// among `events` (see [`RunStatus::Abandoned`](crate::RunStatus::Abandoned)).
    ///
    /// The batch is synced before returning when the fsync policy says so. Once a write or
    /// sync fails, this and every later call returns [`WalError::Poisoned`]. An
    /// [`WalError::Index`] error means the records are in the segments but not yet in the
    /// index; the next append (or open) indexes them.
    pub fn append(&mut self, events: &[Event]) -> Result<Vec<Position>> {
        let records: Vec<Record<'_>> = events.iter().map(|event| Record::Event(EventRef::Whole(event))).collect();
        self.append_records(&records, Framing::EachEvent).map(|appended| appended.positions)
    }

    /// Appends the trace of a finished run as a trace record (tag
    /// [`TAG_TRACE_JSON`](crate::record::TAG_TRACE_JSON)) and notes its position in the run's index
    /// entry; returns where the record starts. The [`EventStore`](crate::EventStore) does this
    /// for every run it sees finish, in the batch of the run's last events.
    pub fn append_trace(&mut self, trace: &ExecutionTrace) -> Result<Position> {
        let Appended { positions, skipped } = self.append_records(&[Record::Trace(trace)], Framing::EachEvent)?;
        match (positions.first(), skipped.into_iter().next()) {
            (_, Some((_, error))) => Err(error),
            (Some(&position), None) => Ok(position),
            // Not reached: one record in gives one position or one skipped trace out.
            (None, None) => Err(WalError::InvalidConfig { detail: "the trace record was not appended".into() }),
        }
    }

    /// Appends events and then traces as one batch, and after them the process records of
    /// the runs the batch starts. A trace that cannot be encoded (or is larger than the
    /// maximum record size) is left out and returned with its error instead of failing the
    /// events; an event that cannot be encoded fails the batch. The positions returned are
    /// those of the given records.
    pub(crate) fn append_records(&mut self, records: &[Record<'_>], framing: Framing) -> Result<Appended> {
        self.check_writable("append to")?;
        if let Some(poison) = &self.poison {
            return Err(poison.error());
        }
        if records.is_empty() {
            return Ok(Appended { positions: Vec::new(), skipped: Vec::new() });
        }
        let processes = self.process_records(records);
        // Encode before taking the lock: other writers wait only for the I/O.
        let mut buf = std::mem::take(&mut self.scratch);
        let mut schemas = std::mem::take(&mut self.schemas);
        // The process records come last, after the records given.
        let given = records.len();
        let encoded = self.encode(records, &processes, framing, &mut buf, &mut schemas);
        self.schemas = schemas;
        let result = encoded.and_then(|encoded| {
            if encoded.frames.is_empty() {
                return Ok(Appended { positions: Vec::new(), skipped: encoded.skipped });
            }
            let _guard = DirLock::acquire(self.lock.as_ref(), &self.dir)?;
            let frames = self.append_locked(&buf, &encoded)?;
            let positions = encoded.framed.iter().take(given).map(|&frame| frames[frame]).collect();
            Ok(Appended { positions, skipped: encoded.skipped })
        });
        buf.clear();
        self.scratch = buf;
        result
    }

    /// Syncs the active segment now, whatever the policy.
    pub fn sync(&mut self) -> Result<()> {
        if let Some(poison) = &self.poison {
            return Err(poison.error());
        }
        self.sync_active()
    }

    /// Syncs what the policy has not synced yet (unless the policy is [`FsyncPolicy::Never`])
    /// and closes the WAL.
    pub fn close(mut self) -> Result<()> {
        self.sync_for_close()
    }

    /// Rebuilds the index from the segments.
    pub fn rebuild_index(&mut self) -> Result<RecoveryReport> {
        let _guard = DirLock::acquire(self.lock.as_ref(), &self.dir)?;
        self.index.clear()?;
        let report = self.catch_up(Check::WholeLastSegment)?;
        self.forget_missing_segments()?;
        Ok(report)
    }

    /// Applies retention on the way (on open, after sealing a segment): a failure to delete
    /// old history must not stop new history from being recorded, so it is only logged.
    fn retain(&mut self, now: SystemTime) {
        if let Err(error) = self.apply_retention_locked(now) {
            tracing::warn!(dir = %self.dir.display(), %error, "WAL retention failed; it is retried when the next segment is sealed");
        }
    }

    pub(crate) fn lock_dir(&self) -> Result<DirLock> {
        DirLock::acquire(self.lock.as_ref(), &self.dir)
    }

    /// Frames every record into `buf`. With [`Framing::RunBlocks`], consecutive events of one
    /// run go into one run block ([`TAG_RUN_EVENTS`](crate::record::TAG_RUN_EVENTS)), as many
    /// as fit in [`RUN_BLOCK_LIMIT`] bytes; an event that cannot open or join a block gets a
    /// record of its own. A `GraphDefined` is a graph record naming its schema's key
    /// ([`TAG_GRAPH`](crate::record::TAG_GRAPH)); the schema record goes in when the frames
    /// are written, once per segment (see [`Wal::write_frames`]).
    fn encode<'a>(
        &self,
        given: &[Record<'a>],
        processes: &'a [ProcessRecord],
        framing: Framing,
        buf: &mut Vec<u8>,
        schemas: &mut SchemaCache,
    ) -> Result<Encoded<'a>> {
        let total = given.len() + processes.len();
        // The records given, then the process records.
        let record_at = |index: usize| match given.get(index) {
            Some(record) => *record,
            None => Record::Process(&processes[index - given.len()]),
        };
        let mut encoded = Encoded {
            frames: Vec::with_capacity(total),
            entries: Vec::with_capacity(total),
            framed: Vec::with_capacity(total),
            graphs: Vec::new(),
            skipped: Vec::new(),
        };
        let max_record_size = self.config.max_record_size;
        let block_limit = RUN_BLOCK_LIMIT.min(self.config.max_record_size as usize);
        let mut next = 0;
        while next < total {
            let start = buf.len();
            if let (Some(Record::Event(first)), Framing::RunBlocks) = (given.get(next), framing) {
                // The run's events from here on, up to the next record of another kind or run.
                let run = given[next..].iter().map_while(|record| match record {
                    Record::Event(event) if event.run() == first.run() => Some(*event),
                    _ => None,
                });
                if matches!(given.get(next + 1), Some(Record::Event(second)) if second.run() == first.run()) {
                    let count = self.frame(buf, |buf| Ok(encode_run_block(run, block_limit, buf)))?;
                    // A block of one is a plain record, a few bytes shorter.
                    if count == 1 {
                        buf.truncate(start);
                    }
                    if count > 1 {
                        let frame = encoded.frames.len();
                        encoded.frames.push(start..buf.len());
                        push_block_entries(&given[next..next + count], frame, &mut encoded.entries);
                        encoded.framed.extend(std::iter::repeat_n(frame, count));
                        next += count;
                        continue;
                    }
                }
            }
            let record = &record_at(next);
            next += 1;
            let framed = self.frame(buf, |buf| match record {
                Record::Event(event) => encode_event_ref(event, buf, schemas, max_record_size),
                Record::Trace(trace) => encode_trace(trace, buf).map(|()| None),
                Record::Process(process) => {
                    encode_process(process, buf);
                    Ok(None)
                }
            });
            let frame = encoded.frames.len();
            match (framed, record) {
                (Ok(key), Record::Event(event)) => {
                    encoded.graphs.extend(key.map(|key| (frame, key)));
                    encoded.entries.push((frame, Entry::Event(*event)));
                }
                (Ok(_), Record::Trace(trace)) => encoded.entries.push((frame, Entry::Trace(trace.run.run_id))),
                (Ok(_), Record::Process(process)) => encoded.entries.push((frame, Entry::Process(process))),
                (Err(error), Record::Event(_)) => return Err(error),
                // Only with a tiny maximum record size; the runs then read `running` forever, as
                // runs did before process records existed.
                (Err(error), Record::Process(_)) => {
                    tracing::warn!(%error, "cannot name this process in the WAL; its runs will not be seen to die");
                    continue;
                }
                (Err(error), Record::Trace(trace)) => {
                    encoded.skipped.push((trace.run.run_id, error));
                    continue;
                }
            }
            encoded.frames.push(start..buf.len());
            encoded.framed.push(frame);
        }
        Ok(encoded)
    }

    /// Appends one frame to `buf`: the header, then the payload `encode` writes, which must
    /// be within the maximum record size. On an error `buf` is as it was, and so it is when
    /// `encode` writes nothing (a run block that could not start: `encode` returns 0).
    fn frame<T: Default + PartialEq>(
        &self,
        buf: &mut Vec<u8>,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<T>,
    ) -> Result<T> {
        let max = self.config.max_record_size;
        let start = buf.len();
        buf.extend_from_slice(&[0; HEADER_LEN]);
        let written = match encode(buf) {
            Ok(written) if written == T::default() && buf.len() == start + HEADER_LEN => {
                buf.truncate(start);
                return Ok(written);
            }
            Ok(written) => written,
            Err(error) => {
                buf.truncate(start);
                return Err(error);
            }
        };
        let size = buf.len() - start - HEADER_LEN;
        let len = u32::try_from(size).ok().filter(|&len| len <= max);
        let Some(len) = len else {
            buf.truncate(start);
            return Err(WalError::RecordTooLarge { size, max });
        };
        let (header, payload) = buf[start..].split_at_mut(HEADER_LEN);
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        Ok(written)
    }

    /// The process records of the runs `records` start: this process executes them. As many
    /// records as the maximum record size needs (one, but for a tiny maximum).
    fn process_records(&self, records: &[Record<'_>]) -> Vec<ProcessRecord> {
        let Some(process) = &self.process else { return Vec::new() };
        let started: Vec<RunId> = records
            .iter()
            .filter_map(|record| match record {
                Record::Event(EventRef::Whole(Event { run, kind: EventKind::RunStarted { .. }, .. })) => {
                    Some(run.run_id)
                }
                _ => None,
            })
            .collect();
        let per_record = process_record_capacity(process, self.config.max_record_size);
        started.chunks(per_record).map(|runs| ProcessRecord::new(process.clone(), runs.to_vec())).collect()
    }

    fn append_locked(&mut self, buf: &[u8], encoded: &Encoded<'_>) -> Result<Vec<Position>> {
        if !self.in_sync()? {
            self.catch_up(Check::FromHighWater)?;
        }
        let Written { positions, schemas, sealed } = self.write_frames(buf, &encoded.frames, &encoded.graphs)?;
        self.unsynced += (encoded.frames.len() + schemas.len()) as u64;
        let due = match self.config.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::EveryN(n) => self.unsynced >= u64::from(n),
            FsyncPolicy::Interval(interval) => self.last_sync.elapsed() >= interval,
            FsyncPolicy::Never => false,
        };
        if due {
            self.sync_active()?;
        }
        let end = self.end();
        let entries = encoded.entries.iter().map(|&(frame, entry)| (positions[frame], entry));
        self.index.apply(entries.chain(schemas.iter().map(|&(at, key)| (at, Entry::Schema(key)))), end)?;
        self.indexed = Some(end);
        if sealed {
            self.retain(SystemTime::now());
        }
        Ok(positions)
    }

    /// Whether the segments and the index still end where this writer left them, so no other
    /// writer appended (or crashed mid-way) since.
    fn in_sync(&self) -> Result<bool> {
        let Some(active) = &self.active else { return Ok(false) };
        if self.indexed != Some(self.end()) {
            return Ok(false);
        }
        let len = active.file.metadata().map_err(|e| WalError::io("inspect", &active.path, e))?.len();
        Ok(len == active.len && file_len(&segment_path(&self.dir, active.seq + 1))?.is_none())
    }

    /// Writes the frames, rotating segments as they fill up, and ahead of each graph record
    /// the schema record it names, unless the segment it goes to holds that already.
    fn write_frames(&mut self, buf: &[u8], frames: &[Range<usize>], graphs: &[(usize, SchemaKey)]) -> Result<Written> {
        let segment_size = self.config.segment_size;
        let mut written = Written { positions: Vec::with_capacity(frames.len()), schemas: Vec::new(), sealed: false };
        let mut chunk = Chunk::default();
        let mut graphs = graphs.iter().peekable();
        for (index, frame) in frames.iter().enumerate() {
            // The schema records this frame needs first (a graph record names one).
            let mut needs: Option<SchemaKey> = None;
            while let Some(&&(graph, key)) = graphs.peek() {
                if graph > index {
                    break;
                }
                graphs.next();
                if graph == index {
                    needs = Some(key);
                }
            }
            let schema_frame = |this: &Self, seq: u64| {
                needs
                    .filter(|&key| !this.schemas.is_written(seq, key))
                    .and_then(|key| this.schemas.frame(key).map(|frame| (key, Arc::clone(frame))))
            };
            let (seq, len) = match &self.active {
                Some(active) => (active.seq, active.len + chunk.len()),
                None => {
                    self.create_segment(1)?;
                    (1, 0)
                }
            };
            let mut target = seq;
            let mut schema = schema_frame(self, seq);
            let extra = schema.as_ref().map_or(0, |(_, bytes)| bytes.len() as u64);
            // The first frame of a segment always goes in (it may be larger than a whole
            // segment), with its schema record.
            if len > 0 && len + extra + frame.len() as u64 > segment_size {
                self.write_chunk(buf, &mut chunk)?;
                self.seal_active()?;
                target = seq + 1;
                self.create_segment(target)?;
                written.sealed = true;
                schema = schema_frame(self, target);
            }
            let base = self.active.as_ref().map_or(0, |active| active.len);
            if let Some((key, bytes)) = schema {
                written.schemas.push((Position::new(target, base + chunk.len()), key));
                chunk.push_bytes(buf, &bytes);
                self.schemas.mark_written(target, key);
            }
            written.positions.push(Position::new(target, base + chunk.len()));
            chunk.push_frame(buf, frame.clone());
        }
        self.write_chunk(buf, &mut chunk)?;
        Ok(written)
    }

    /// Appends the bytes gathered for the active segment.
    fn write_chunk(&mut self, buf: &[u8], chunk: &mut Chunk) -> Result<()> {
        let bytes = chunk.bytes(buf);
        if bytes.is_empty() {
            return Ok(());
        }
        let len = bytes.len() as u64;
        let storage = Arc::clone(&self.config.storage);
        let Some(active) = self.active.as_mut() else { return Ok(()) };
        if let Err(e) = storage.append(&mut active.file, bytes) {
            let path = active.path.clone();
            return Err(self.poison("write", path, e));
        }
        active.len += len;
        chunk.clear();
        Ok(())
    }

    /// Creates segment `seq` and makes it the active one.
    pub(crate) fn create_segment(&mut self, seq: u64) -> Result<()> {
        let path = segment_path(&self.dir, seq);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| WalError::io("create", &path, e))?;
        if self.config.fsync != FsyncPolicy::Never
            && let Err(e) = self.config.storage.sync_dir(&self.dir)
        {
            return Err(self.poison("fsync", self.dir.clone(), e));
        }
        self.active = Some(Active { seq, path, file, len: 0 });
        Ok(())
    }

    /// Syncs the active segment before a new one is started, under every policy: a crash
    /// can then tear only the last segment.
    fn seal_active(&mut self) -> Result<()> {
        let Some(active) = &self.active else { return Ok(()) };
        if let Err(e) = self.config.storage.sync(&active.file) {
            let path = active.path.clone();
            return Err(self.poison("fsync", path, e));
        }
        self.unsynced = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn sync_active(&mut self) -> Result<()> {
        if self.unsynced == 0 {
            return Ok(());
        }
        self.seal_active()
    }

    fn sync_for_close(&mut self) -> Result<()> {
        if let Some(poison) = &self.poison {
            return Err(poison.error());
        }
        if self.config.fsync == FsyncPolicy::Never { Ok(()) } else { self.sync_active() }
    }

    fn poison(&mut self, action: &'static str, path: PathBuf, source: io::Error) -> WalError {
        tracing::error!(action, path = %path.display(), error = %source, "WAL write failed; refusing further appends");
        let poison = Poison { action, path, source: Arc::new(source) };
        let error = poison.error();
        self.poison = Some(poison);
        error
    }

    /// Reopens the active segment at `end` (after recovery moved it).
    fn set_active(&mut self, end: Option<Position>) -> Result<()> {
        self.active = None;
        self.indexed = end;
        let Some(end) = end else { return Ok(()) };
        let path = segment_path(&self.dir, end.segment);
        let file = OpenOptions::new().append(true).open(&path).map_err(|e| WalError::io("open", &path, e))?;
        self.active = Some(Active { seq: end.segment, path, file, len: end.offset });
        Ok(())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if self.poison.is_none() && self.unsynced > 0 {
            // Best effort: `close` is the way to see this error.
            let _ = self.sync_for_close();
        }
    }
}

#[cfg(test)]
mod tests;
