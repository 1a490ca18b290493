//! Reading: runs from the index, a run's events from the segments, and verification.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use dashflow_telemetry::{Event, RunId};

use super::{LOCK_FILE, Wal};
use crate::config::WalConfig;
use crate::damage::DamagedRange;
use crate::error::{Result, WalError};
use crate::follow::Follower;
use crate::index::read_high_water;
use crate::process::ProcessIdentity;
use crate::record::{Payload, Read, SchemaKey, decode_payload, is_schema, read_events};
use crate::runs::{RunFilter, RunSummary};
use crate::schemas::{MissingSchema, Resolver};
use crate::segment::{Position, ReadStep, list_segments, open_reader, record_end, segment_path};

/// What [`Wal::verify`] and [`verify_dir`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Segments read.
    pub segments: u64,
    /// Intact records.
    pub records: u64,
    /// Bytes of all segments.
    pub bytes: u64,
    /// Every damaged range, in log order.
    pub damaged: Vec<DamagedRange>,
    /// Intact records whose payload cannot be decoded by this version.
    pub undecodable: Vec<RecordLocation>,
    /// Runs' graph definitions that cannot be read: their graph records name a schema that
    /// their segment does not hold intact. Damage (reported in
    /// [`damaged`](Self::damaged)) or a repair that set it aside took the schema record;
    /// they do not make the log unclean by themselves.
    pub missing_schemas: Vec<MissingSchema>,
    /// Whether the index has seen every intact record; `None` when that cannot be told
    /// without writing (a writer has the index open, or there is no index).
    pub index_up_to_date: Option<bool>,
}

impl VerifyReport {
    /// Whether every record is intact and decodable ([`missing_schemas`](Self::missing_schemas)
    /// aside: they are what earlier damage cost).
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.undecodable.is_empty()
    }

    /// Bytes in damaged ranges.
    pub fn damaged_bytes(&self) -> u64 {
        self.damaged.iter().map(|range| range.len).sum()
    }
}

/// Reads every segment of the WAL in `dir` and reports each damaged range and undecodable
/// record, without creating, changing or removing any file (`dashflow wal verify`).
///
/// It waits for a writer's append in progress (through the directory's lock file, when there
/// is one), so a record being written is not reported as a torn tail.
pub fn verify_dir(dir: impl AsRef<Path>, config: &WalConfig) -> Result<VerifyReport> {
    config.validate()?;
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(WalError::io("open", dir, io::Error::new(io::ErrorKind::NotFound, "no such directory")));
    }
    let lock_path = dir.join(LOCK_FILE);
    let lock = match OpenOptions::new().read(true).open(&lock_path) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(WalError::io("open", &lock_path, e)),
    };
    let _guard = lock.as_ref().map(|file| LockGuard::acquire(file, &lock_path)).transpose()?;
    let (mut report, end) = verify_segments(dir, config.max_record_size)?;
    report.index_up_to_date = read_high_water(dir).map(|hw| up_to_date(hw, end, report.records));
    Ok(report)
}

/// Holds a lock on an already open lock file.
struct LockGuard<'a>(&'a File);

impl<'a> LockGuard<'a> {
    fn acquire(file: &'a File, path: &Path) -> Result<Self> {
        file.lock().map_err(|e| WalError::io("lock", path, e))?;
        Ok(Self(file))
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Closing the file would release the lock too; an unlock error leaves nothing to do.
        let _ = self.0.unlock();
    }
}

fn up_to_date(high_water: Option<Position>, end: Option<Position>, records: u64) -> bool {
    high_water == end || (end.is_none() && records == 0)
}

/// Reads every segment; returns the report (without the index's state) and where the intact
/// records end.
fn verify_segments(dir: &Path, max_record_size: u32) -> Result<(VerifyReport, Option<Position>)> {
    let mut report = VerifyReport::default();
    let segments = list_segments(dir)?;
    let mut end = None;
    for (i, &seq) in segments.iter().enumerate() {
        let path = segment_path(dir, seq);
        let Some((mut reader, len)) = open_reader(dir, seq, 0, max_record_size)? else {
            return Err(WalError::MissingSegment { segment: path });
        };
        report.segments += 1;
        report.bytes += len;
        let is_last = i + 1 == segments.len();
        let mut intact_end = len;
        // The schemas this segment holds so far: a graph record names one before it.
        let mut schemas: Vec<SchemaKey> = Vec::new();
        loop {
            match reader.next_record().map_err(|e| WalError::io("read", &path, e))? {
                ReadStep::Record { offset, payload } => {
                    report.records += 1;
                    match decode_payload(payload) {
                        Ok(Payload::Schema(record)) => schemas.push(record.key),
                        Ok(Payload::Graph(graph)) if !schemas.contains(&graph.key) => {
                            report.missing_schemas.push(MissingSchema {
                                segment: path.clone(),
                                offset,
                                run: graph.run,
                                graph: graph.graph.to_string(),
                            });
                        }
                        Ok(_) => {}
                        Err(_) => report.undecodable.push(RecordLocation { segment: path.clone(), offset }),
                    }
                }
                ReadStep::End => break,
                ReadStep::Damaged { offset, len: bytes, damage, records, to_end } => {
                    let mut range = DamagedRange::new(path.clone(), (offset, bytes, damage, records));
                    range.torn_tail = is_last && to_end;
                    if range.torn_tail {
                        intact_end = offset;
                    }
                    report.damaged.push(range);
                }
            }
        }
        end = Some(Position::new(seq, intact_end));
    }
    Ok((report, end))
}

/// Where a record is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordLocation {
    /// The segment file.
    pub segment: PathBuf,
    /// Byte offset of the record's header.
    pub offset: u64,
}

impl Wal {
    /// Runs matching `filter`, newest first.
    ///
    /// Before listing, the processes of running runs are checked: a run whose process is gone
    /// is listed [`RunStatus::Abandoned`](crate::RunStatus::Abandoned), not `running` (the
    /// index remembers which processes are gone, so each is found dead once).
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        self.check_processes()?;
        self.index.list(filter)
    }

    /// One run's summary, `None` if the index does not know it. Its status is checked like
    /// [`list_runs`](Self::list_runs)'.
    pub fn run(&self, run_id: RunId) -> Result<Option<RunSummary>> {
        self.check_processes()?;
        self.index.get(run_id)
    }

    /// Marks gone the processes of running runs that no longer exist, seen from this process.
    fn check_processes(&self) -> Result<()> {
        self.index.mark_gone_processes(ProcessIdentity::current().as_ref())
    }

    /// Every event of one run still in the WAL, in the order they were appended.
    ///
    /// Reads the segment range between the run's first and last record (from the index), so
    /// the cost grows with everything written while the run was going on. Damage in that
    /// range is skipped: the records around it are read, and the damage is logged and added
    /// to [`Wal::damage`]. The run's `GraphDefined` comes with its graph's schema, read from
    /// the schema record of its segment; when that record is not intact, the event is left
    /// out, and the loss logged and added to [`Wal::missing_schemas`].
    pub fn run_events(&self, run_id: RunId) -> Result<Vec<Event>> {
        let run = self.index.get(run_id)?.ok_or(WalError::RunNotFound { run_id })?;
        let mut events = Vec::new();
        self.scan(run.first, run.last, |event| {
            if event.run.run_id == run_id {
                events.push(event);
            }
        })?;
        Ok(events)
    }

    /// Follows the records appended from `from` on (use [`Wal::end`] for only new ones,
    /// [`Position::START`] for everything).
    pub fn follow(&self, from: Position) -> Follower {
        Follower::new(&self.dir, from, self.config.max_record_size)
    }

    /// Reads every segment and reports each damaged range and undecodable record, without
    /// changing anything (see [`verify_dir`], which needs no open WAL).
    pub fn verify(&self) -> Result<VerifyReport> {
        let _guard = self.lock_dir()?;
        let (mut report, end) = verify_segments(&self.dir, self.config.max_record_size)?;
        report.index_up_to_date = Some(up_to_date(self.index.high_water()?, end, report.records));
        Ok(report)
    }

    /// Calls `f` with every event from `first` through `last` (inclusive), in log order,
    /// skipping damage.
    fn scan(&self, first: Position, last: Position, mut f: impl FnMut(Event)) -> Result<()> {
        let segments = list_segments(&self.dir)?;
        if !segments.contains(&first.segment) {
            return Err(WalError::MissingSegment { segment: segment_path(&self.dir, first.segment) });
        }
        let mut schemas = Resolver::new(self.config.max_record_size);
        for seq in segments.iter().copied().filter(|&seq| seq >= first.segment && seq <= last.segment) {
            let start = if seq == first.segment { first.offset } else { 0 };
            let path = segment_path(&self.dir, seq);
            let Some((mut reader, _)) = open_reader(&self.dir, seq, start, self.config.max_record_size)? else {
                return Err(WalError::MissingSegment { segment: path });
            };
            schemas.enter(seq, start);
            loop {
                match reader.next_record().map_err(|e| WalError::io("read", &path, e))? {
                    ReadStep::Record { offset, payload } => {
                        if seq == last.segment && offset > last.offset {
                            break;
                        }
                        match read_events(payload) {
                            Ok(Read::Events(events)) => events.into_iter().for_each(&mut f),
                            Ok(Read::Graph(graph)) => {
                                let hint = |seq, key| self.index.schema_offset(seq, key);
                                match schemas.resolve(&self.dir, graph, offset, hint, &mut |range| {
                                    self.note_damage(range);
                                })? {
                                    Ok(event) => f(event),
                                    Err(missing) => self.note_missing(missing),
                                }
                            }
                            Ok(Read::Schema(record)) => schemas.learn(record),
                            // Another run's schema that does not decode holds no schema; it
                            // does not stop this run's read.
                            Ok(Read::Other | Read::Unknown) => {}
                            Err(_) if is_schema(payload) => {}
                            Err(source) => return Err(WalError::Decode { segment: path, offset, source }),
                        }
                        if seq == last.segment && record_end(offset, payload) > last.offset {
                            break;
                        }
                    }
                    ReadStep::End => break,
                    ReadStep::Damaged { offset, len, damage, records, to_end } => {
                        if seq == last.segment && offset > last.offset {
                            break;
                        }
                        let mut range = DamagedRange::new(path.clone(), (offset, len, damage, records));
                        range.torn_tail = to_end && segments.last() == Some(&seq);
                        self.note_damage(range);
                    }
                }
            }
        }
        Ok(())
    }
}
