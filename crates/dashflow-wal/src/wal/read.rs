//! Reading: runs from the index, a run's events from the segments, and verification.

use std::path::PathBuf;

use dashflow_telemetry::{Event, RunId};

use super::Wal;
use crate::error::{Result, WalError};
use crate::follow::Follower;
use crate::frame::Damage;
use crate::process::ProcessIdentity;
use crate::record::{decode_event, decode_payload};
use crate::runs::{RunFilter, RunSummary};
use crate::segment::{Position, ReadStep, list_segments, open_reader, record_end, segment_path};

/// What [`Wal::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Segments read.
    pub segments: u64,
    /// Intact records.
    pub records: u64,
    /// Bytes of all segments.
    pub bytes: u64,
    /// Every damaged record, in log order.
    pub damaged: Vec<DamagedRecord>,
    /// Intact records whose payload cannot be decoded by this version.
    pub undecodable: Vec<RecordLocation>,
    /// Whether the index has seen every intact record.
    pub index_up_to_date: bool,
}

impl VerifyReport {
    /// Whether every record is intact and decodable.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.undecodable.is_empty()
    }
}

/// A damaged record found by [`Wal::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DamagedRecord {
    /// The segment file.
    pub segment: PathBuf,
    /// Byte offset of the damaged record's header.
    pub offset: u64,
    /// What is wrong.
    pub damage: Damage,
    /// The damage is a torn write at the end of the last segment, which the next open cuts.
    /// Any other damage is lost data.
    pub torn_tail: bool,
    /// Bytes from the damaged record to the end of the segment that could not be read.
    /// Only a checksum mismatch leaves the frame boundary intact, so reading goes on after it;
    /// any other damage makes the rest of the segment unreadable.
    pub unreadable_bytes: u64,
}

/// Where a record is.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// range is an error, never skipped.
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

    /// Reads every segment and reports each damaged or undecodable record, without changing
    /// anything.
    pub fn verify(&self) -> Result<VerifyReport> {
        let _guard = self.lock_dir()?;
        let mut report = VerifyReport::default();
        let segments = list_segments(&self.dir)?;
        let mut end = None;
        for (i, &seq) in segments.iter().enumerate() {
            let path = segment_path(&self.dir, seq);
            let Some((mut reader, len)) = open_reader(&self.dir, seq, 0, self.config.max_record_size)? else {
                return Err(WalError::MissingSegment { segment: path });
            };
            report.segments += 1;
            report.bytes += len;
            let first_damage = report.damaged.len();
            // Whether the step right after this segment's first damage was an intact record:
            // recovery treats the first damage as corruption then, and as a torn tail otherwise.
            let mut intact_after_first_damage = None;
            loop {
                let step = reader.next_record().map_err(|e| WalError::io("read", &path, e))?;
                if report.damaged.len() == first_damage + 1 && intact_after_first_damage.is_none() {
                    intact_after_first_damage = Some(matches!(step, ReadStep::Record { .. }));
                }
                match step {
                    ReadStep::Record { offset, payload } => {
                        report.records += 1;
                        if decode_payload(payload).is_err() {
                            report.undecodable.push(RecordLocation { segment: path.clone(), offset });
                        }
                    }
                    ReadStep::End => break,
                    ReadStep::Damaged { offset, damage } => {
                        let unreadable_bytes =
                            if matches!(damage, Damage::Checksum { .. }) { 0 } else { len.saturating_sub(offset) };
                        report.damaged.push(DamagedRecord {
                            segment: path.clone(),
                            offset,
                            damage,
                            torn_tail: false,
                            unreadable_bytes,
                        });
                    }
                }
            }
            let mut intact_end = len;
            let is_last = i + 1 == segments.len();
            if is_last
                && intact_after_first_damage != Some(true)
                && let Some(torn) = report.damaged.get_mut(first_damage)
            {
                torn.torn_tail = true;
                intact_end = torn.offset;
            }
            end = Some(Position::new(seq, intact_end));
        }
        report.index_up_to_date = self.index.high_water()? == end || (end.is_none() && report.records == 0);
        Ok(report)
    }

    /// Calls `f` with every event from `first` through `last` (inclusive), in log order.
    fn scan(&self, first: Position, last: Position, mut f: impl FnMut(Event)) -> Result<()> {
        let segments = list_segments(&self.dir)?;
        if !segments.contains(&first.segment) {
            return Err(WalError::MissingSegment { segment: segment_path(&self.dir, first.segment) });
        }
        for seq in segments.into_iter().filter(|&seq| seq >= first.segment && seq <= last.segment) {
            let start = if seq == first.segment { first.offset } else { 0 };
            let path = segment_path(&self.dir, seq);
            let Some((mut reader, _)) = open_reader(&self.dir, seq, start, self.config.max_record_size)? else {
                return Err(WalError::MissingSegment { segment: path });
            };
            loop {
                match reader.next_record().map_err(|e| WalError::io("read", &path, e))? {
                    ReadStep::Record { offset, payload } => {
                        if seq == last.segment && offset > last.offset {
                            break;
                        }
                        match decode_event(payload) {
                            Ok(Some(event)) => f(event),
                            Ok(None) => {}
                            Err(source) => return Err(WalError::Decode { segment: path, offset, source }),
                        }
                        if seq == last.segment && record_end(offset, payload) > last.offset {
                            break;
                        }
                    }
                    ReadStep::End => break,
                    ReadStep::Damaged { offset, damage } => {
                        return Err(WalError::Corrupt { segment: path, offset, damage });
                    }
                }
            }
        }
        Ok(())
    }
}
