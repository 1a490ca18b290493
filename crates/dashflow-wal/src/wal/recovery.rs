//! Recovery: cutting a torn tail, setting damage aside, and bringing the index up to the
//! segments.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use super::{Access, Wal};
use crate::damage::{DamagedRange, quarantine};
use crate::error::{Result, WalError};
use crate::frame::Damage;
use crate::index::Index;
use crate::record::{Indexed, decode_indexed};
use crate::segment::{Position, ReadStep, list_segments, open_reader, record_end, segment_path};
use crate::storage::Storage;

/// Records indexed per transaction while replaying.
const REPLAY_BATCH: usize = 1024;

/// What recovery found and did when the WAL was opened (or its index rebuilt).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Records added to the index that it had not seen: written by a writer that stopped
    /// between appending and indexing, or all records when the index was rebuilt.
    pub replayed: u64,
    /// Intact records whose payload could not be decoded; the index skips them.
    pub undecodable: u64,
    /// The torn tail cut from the last segment, if there was one.
    pub truncated: Option<TornTail>,
    /// Damage found in the segments read, in log order: every range other than a torn tail
    /// that was cut (a read-only open lists an uncut torn tail here too, with
    /// [`DamagedRange::torn_tail`] set). The records around each range were read and indexed;
    /// a writer copied each range into the quarantine directory first.
    pub damaged: Vec<DamagedRange>,
    /// Damage in the last segment made the writer start a new segment, so that nothing is
    /// ever appended after damaged bytes; this is its sequence number.
    pub new_segment: Option<u64>,
    /// The index was rebuilt from the segments: it was new, unreadable, of another schema
    /// version, ahead of the segments (after a machine crash with a lax fsync policy), or a
    /// writer found damage in the last segment where the index had seen intact records.
    pub rebuilt: bool,
}

/// A torn write at the end of the last segment, cut on recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TornTail {
    /// The segment file.
    pub segment: PathBuf,
    /// Where the segment now ends: the end of its last intact record.
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// What the first cut record looked like.
    pub damage: Damage,
    /// The copy of the cut bytes in the quarantine directory.
    pub quarantined: Option<PathBuf>,
}

enum Replayed {
    /// The index now covers every record; the log ends at `end`.
    Done { end: Option<Position>, report: RecoveryReport, last_damaged: bool },
    /// The index's high-water mark lies past the end of the intact records (after cutting a
    /// torn tail that the index had already seen, if `truncated`), or the index has seen
    /// records that are damaged now.
    IndexAhead { truncated: Option<TornTail> },
}

/// How much of the last segment recovery reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// From the high-water mark on: between appends of a running writer, whose own records
    /// before the mark are known to be intact.
    FromHighWater,
    /// The whole last segment: on open. After a machine crash under a lax fsync policy the
    /// index may have seen records whose bytes never reached the disk (zeros or garbage), and
    /// bit rot can hit the tail after a clean close; either must be cut before anything is
    /// appended behind it.
    WholeLastSegment,
}

impl Wal {
    /// Indexes every record past the index's high-water mark, cutting a torn tail of the last
    /// segment, and makes the last segment the active one. Runs under the directory lock.
    pub(crate) fn catch_up(&mut self, check: Check) -> Result<RecoveryReport> {
        let max = self.config.max_record_size;
        let storage = &*self.config.storage;
        let access = self.access;
        let from = self.index.high_water()?;
        let (end, mut report, last_damaged) = match replay(
            &self.dir,
            &mut self.index,
            from,
            check,
            max,
            storage,
            access,
        )? {
            Replayed::Done { end, report, last_damaged } => (end, report, last_damaged),
            Replayed::IndexAhead { truncated } => {
                tracing::warn!(dir = %self.dir.display(), "the WAL index does not match the segments; rebuilding it");
                self.index.clear()?;
                match replay(&self.dir, &mut self.index, None, check, max, storage, access)? {
                    Replayed::Done { end, mut report, last_damaged } => {
                        report.rebuilt = true;
                        report.truncated = report.truncated.or(truncated);
                        (end, report, last_damaged)
                    }
                    // From the start there is no high-water mark to be ahead of.
                    Replayed::IndexAhead { .. } => {
                        return Err(WalError::MissingSegment { segment: self.dir.clone() });
                    }
                }
            }
        };
        if let Some(torn) = &report.truncated {
            tracing::warn!(
                segment = %torn.segment.display(), offset = torn.offset, bytes = torn.bytes, damage = %torn.damage,
                "cut a torn tail from the WAL"
            );
        }
        for range in &report.damaged {
            tracing::warn!(
                segment = %range.segment.display(), offset = range.offset, bytes = range.len, records = ?range.records,
                damage = %range.damage, quarantined = ?range.quarantined,
                "damaged bytes in the WAL; the records around them were kept"
            );
        }
        if access == Access::ReadOnly {
            self.indexed = end;
            return Ok(report);
        }
        self.set_active(end)?;
        if last_damaged && let Some(end) = end {
            // Never append after damage: the damaged segment is sealed as it is.
            let seq = end.segment + 1;
            self.create_segment(seq)?;
            let start = Position::new(seq, 0);
            self.index.apply(std::iter::empty::<(Position, crate::index::Entry<'_>)>(), start)?;
            self.indexed = Some(start);
            report.new_segment = Some(seq);
        }
        Ok(report)
    }

    /// Drops index entries of segments that no longer exist (retention deleted them, then the
    /// process stopped before it updated the index).
    pub(super) fn forget_missing_segments(&mut self) -> Result<()> {
        if let Some(&first) = list_segments(&self.dir)?.first() {
            self.index.forget_segments_before(first)?;
        }
        Ok(())
    }
}

/// Replays the records from `from` (the start when `None`) into `index`, skipping damage (a
/// writer copies it into the quarantine directory) and cutting a torn tail (a writer only).
fn replay(
    dir: &Path,
    index: &mut Index,
    from: Option<Position>,
    check: Check,
    max_record_size: u32,
    storage: &dyn Storage,
    access: Access,
) -> Result<Replayed> {
    let segments = list_segments(dir)?;
    let (first, high_water) = match from {
        None => (0, 0),
        Some(hw) => match segments.iter().position(|&seq| seq == hw.segment) {
            Some(i) => (i, hw.offset),
            None => return Ok(Replayed::IndexAhead { truncated: None }),
        },
    };
    let mut report = RecoveryReport { rebuilt: from.is_none() && !segments.is_empty(), ..Default::default() };
    let mut end = None;
    let mut last_damaged = false;
    for (i, &seq) in segments.iter().enumerate().skip(first) {
        let is_last = i + 1 == segments.len();
        // Records before `indexed` are in the index already; they are only checked.
        let indexed = if i == first { high_water } else { 0 };
        let start = if is_last && check == Check::WholeLastSegment { 0 } else { indexed };
        let path = segment_path(dir, seq);
        let Some((mut reader, len)) = open_reader(dir, seq, start, max_record_size)? else {
            return Err(WalError::MissingSegment { segment: path });
        };
        if indexed > len {
            return Ok(Replayed::IndexAhead { truncated: None });
        }
        let mut batch: Vec<(Position, Indexed)> = Vec::new();
        let mut good_end = start;
        loop {
            match reader.next_record().map_err(|e| WalError::io("read", &path, e))? {
                ReadStep::Record { offset, payload } => {
                    good_end = record_end(offset, payload);
                    if offset < indexed {
                        continue;
                    }
                    report.replayed += 1;
                    match decode_indexed(payload) {
                        Ok(Some(record)) => batch.push((Position::new(seq, offset), record)),
                        Ok(None) => {}
                        Err(_) => report.undecodable += 1,
                    }
                    if batch.len() >= REPLAY_BATCH {
                        index.apply(
                            batch.iter().flat_map(|(at, record)| record.entries().map(|entry| (*at, entry))),
                            Position::new(seq, good_end),
                        )?;
                        batch.clear();
                    }
                }
                ReadStep::End => break,
                // A writer only appends, so damage can be a torn write only at the very end of
                // the last segment, with nothing intact after it.
                ReadStep::Damaged { offset, len: bytes, damage, to_end: true, .. } if is_last => {
                    if access == Access::ReadOnly {
                        let mut range = DamagedRange::new(path.clone(), (offset, bytes, damage, None));
                        range.torn_tail = true;
                        report.damaged.push(range);
                        if offset < indexed {
                            return Ok(Replayed::IndexAhead { truncated: None });
                        }
                        good_end = offset;
                        break;
                    }
                    let quarantined = Some(quarantine(dir, seq, offset, bytes, storage)?);
                    truncate(&path, offset, storage)?;
                    let torn = TornTail { segment: path.clone(), offset, bytes, damage, quarantined };
                    if offset < indexed {
                        // The index has seen records that are gone now.
                        return Ok(Replayed::IndexAhead { truncated: Some(torn) });
                    }
                    report.truncated = Some(torn);
                    good_end = offset;
                    break;
                }
                ReadStep::Damaged { offset, len: bytes, damage, records, .. } => {
                    let mut range = DamagedRange::new(path.clone(), (offset, bytes, damage, records));
                    if access == Access::Write {
                        range.quarantined = Some(quarantine(dir, seq, offset, bytes, storage)?);
                    }
                    if offset < indexed && access == Access::Write {
                        // The index may have counted records that are damaged now: rebuilt,
                        // it holds what the segments hold. Once: the writer then seals this
                        // segment, and later opens do not read it again. (A reader leaves the
                        // index as it is, or every read-only open would rebuild it.)
                        return Ok(Replayed::IndexAhead { truncated: None });
                    }
                    report.damaged.push(range);
                    last_damaged |= is_last;
                }
            }
        }
        let segment_end = Position::new(seq, good_end);
        // Nothing new: no write, so a reader of an up-to-date index changes no file.
        if !batch.is_empty() || from != Some(segment_end) {
            index
                .apply(batch.iter().flat_map(|(at, record)| record.entries().map(|entry| (*at, entry))), segment_end)?;
        }
        end = Some(segment_end);
    }
    Ok(Replayed::Done { end, report, last_damaged })
}

/// Cuts `path` to `len` bytes and makes that durable before anything is appended after it.
fn truncate(path: &Path, len: u64, storage: &dyn Storage) -> Result<()> {
    let file = OpenOptions::new().write(true).open(path).map_err(|e| WalError::io("open", path, e))?;
    file.set_len(len).map_err(|e| WalError::io("truncate", path, e))?;
    storage.sync(&file).map_err(|e| WalError::io("fsync", path, e))
}
