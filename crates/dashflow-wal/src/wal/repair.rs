//! Repair: setting damaged ranges aside and rewriting the segments that held them, so that a
//! damaged log reads clean again with every intact record kept.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Check, Wal};
use crate::damage::{DamagedRange, quarantine};
use crate::error::{Result, WalError};
use crate::frame;
use crate::record::{Payload, SchemaKey, decode_payload, is_schema};
use crate::segment::{ReadStep, list_segments, open_reader, segment_file_name, segment_path};
use crate::storage::Storage;

/// Suffix of a segment's rewrite while [`Wal::repair`] writes it; never a segment name.
const REPAIR_SUFFIX: &str = ".repair";

/// What [`Wal::repair`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// Every damaged range found, in log order, each with the quarantine file that holds its
    /// bytes ([`DamagedRange::quarantined`]). A torn tail cut on open is among them.
    pub damaged: Vec<DamagedRange>,
    /// Segments rewritten without their damaged ranges.
    pub segments_rewritten: u64,
    /// Bytes removed from the segments (each also in a quarantine file).
    pub bytes_removed: u64,
    /// Intact records in the log after the repair, all indexed again.
    pub records: u64,
    /// Schema records written back into rewritten segments: a graph record there named a
    /// schema whose record was among the damage, and another segment held it intact.
    pub schemas_restored: u64,
    /// Damage in the last segment made appends go on in this new segment.
    pub new_segment: Option<u64>,
}

impl RepairReport {
    /// Whether there was nothing to repair.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
    }
}

impl Wal {
    /// Makes a damaged log read clean again while keeping every intact record: copies each
    /// damaged range into the `quarantine/` directory (made durable first), rewrites each
    /// sealed segment that held damage without it (through a temporary file renamed into
    /// place, so a crash leaves the old or the new segment), and rebuilds the index. Damage in
    /// the last segment is handled as on open first: a torn tail is cut (after its copy), other
    /// damage seals the segment and appends go on in a new one, which leaves the damage in a
    /// sealed segment to rewrite. Afterwards [`Wal::verify`] finds no damage. A graph record
    /// of a rewritten segment whose schema record was among the damage gets the schema back
    /// when another segment holds it (a key names one schema); otherwise its run has lost
    /// its graph definition ([`VerifyReport::missing_schemas`](crate::VerifyReport::missing_schemas)).
    ///
    /// Positions of records after a damaged range move, so followers reading a rewritten
    /// segment may skip or repeat records; run it when nobody is reading (the CLI's
    /// `wal repair`). Writers in other processes are safe: they never append to a sealed
    /// segment.
    pub fn repair(&mut self) -> Result<RepairReport> {
        self.check_writable("repair")?;
        let _guard = self.lock_dir()?;
        let storage = std::sync::Arc::clone(&self.config.storage);
        remove_leftovers(&self.dir)?;
        let recovered = self.catch_up(Check::WholeLastSegment)?;
        let mut report = RepairReport { new_segment: recovered.new_segment, ..RepairReport::default() };
        if let Some(torn) = recovered.truncated {
            let mut range = DamagedRange::new(torn.segment, (torn.offset, torn.bytes, torn.damage, None));
            range.torn_tail = true;
            range.quarantined = torn.quarantined;
            report.damaged.push(range);
        }
        let segments = list_segments(&self.dir)?;
        let Some((_active, sealed)) = segments.split_last() else { return Ok(report) };
        let mut index_cleared = false;
        let mut donors = Donors::default();
        for &seq in sealed {
            let ranges = self.damaged_ranges(seq, &*storage)?;
            if ranges.is_empty() {
                continue;
            }
            if !index_cleared {
                // Positions are about to move: an empty index is rebuilt by the next open,
                // should this repair not get to rebuilding it.
                self.index.clear()?;
                index_cleared = true;
            }
            report.bytes_removed += ranges.iter().map(|range| range.len).sum::<u64>();
            report.schemas_restored += self.rewrite_without_damage(seq, &*storage, &mut donors)?;
            report.segments_rewritten += 1;
            report.damaged.extend(ranges);
        }
        // Ranges the open found are in the report once, with their quarantine copies.
        for range in recovered.damaged {
            if !report.damaged.iter().any(|r| r.segment == range.segment && r.offset == range.offset) {
                report.damaged.push(range);
            }
        }
        self.index.clear()?;
        let rebuilt = self.catch_up(Check::WholeLastSegment)?;
        self.forget_missing_segments()?;
        report.records = rebuilt.replayed;
        self.recovery.damaged.clear();
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        Ok(report)
    }

    /// The damaged ranges of sealed segment `seq`, each copied into the quarantine directory.
    fn damaged_ranges(&self, seq: u64, storage: &dyn Storage) -> Result<Vec<DamagedRange>> {
        let path = segment_path(&self.dir, seq);
        let Some((mut reader, _)) = open_reader(&self.dir, seq, 0, self.config.max_record_size)? else {
            return Err(WalError::MissingSegment { segment: path });
        };
        let mut ranges = Vec::new();
        loop {
            match reader.next_record().map_err(|e| WalError::io("read", &path, e))? {
                ReadStep::Record { .. } => {}
                ReadStep::End => break,
                ReadStep::Damaged { offset, len, damage, records, .. } => {
                    let mut range = DamagedRange::new(path.clone(), (offset, len, damage, records));
                    range.quarantined = Some(quarantine(&self.dir, seq, offset, len, storage)?);
                    ranges.push(range);
                }
            }
        }
        Ok(ranges)
    }

    /// Replaces sealed segment `seq` by its intact records, with the schema records its
    /// graph records need that only other segments still hold. Returns how many it wrote back.
    fn rewrite_without_damage(&self, seq: u64, storage: &dyn Storage, donors: &mut Donors) -> Result<u64> {
        let path = segment_path(&self.dir, seq);
        let tmp = self.dir.join(format!("{}{REPAIR_SUFFIX}", segment_file_name(seq)));
        let Some((mut reader, _)) = open_reader(&self.dir, seq, 0, self.config.max_record_size)? else {
            return Err(WalError::MissingSegment { segment: path });
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(|e| WalError::io("create", &tmp, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut frame_buf = Vec::new();
        // The schemas this segment holds so far.
        let mut held: HashSet<SchemaKey> = HashSet::new();
        let mut restored = 0;
        loop {
            match reader.next_record().map_err(|e| WalError::io("read", &path, e))? {
                ReadStep::Record { payload, .. } => {
                    match decode_payload(payload) {
                        Ok(Payload::Schema(record)) => {
                            held.insert(record.key);
                        }
                        Ok(Payload::Graph(graph)) if !held.contains(&graph.key) => {
                            if let Some(framed) = donors.find(&self.dir, self.config.max_record_size, graph.key)? {
                                out.write_all(framed).map_err(|e| WalError::io("write", &tmp, e))?;
                                held.insert(graph.key);
                                restored += 1;
                            }
                        }
                        _ => {}
                    }
                    frame_buf.clear();
                    frame::encode(payload, &mut frame_buf);
                    out.write_all(&frame_buf).map_err(|e| WalError::io("write", &tmp, e))?;
                }
                ReadStep::Damaged { .. } => {}
                ReadStep::End => break,
            }
        }
        let file: File = out.into_inner().map_err(|e| WalError::io("write", &tmp, e.into_error()))?;
        storage.sync(&file).map_err(|e| WalError::io("fsync", &tmp, e))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(|e| WalError::io("rename", &tmp, e))?;
        storage.sync_dir(&self.dir).map_err(|e| WalError::io("fsync", &self.dir, e))?;
        Ok(restored)
    }
}

/// The intact schema records of the whole log, framed, by key: read once, the first time a
/// rewritten segment needs one.
#[derive(Default)]
struct Donors(Option<HashMap<SchemaKey, Vec<u8>>>);

impl Donors {
    fn find(&mut self, dir: &Path, max_record_size: u32, key: SchemaKey) -> Result<Option<&[u8]>> {
        if self.0.is_none() {
            let mut found = HashMap::new();
            for seq in list_segments(dir)? {
                let path = segment_path(dir, seq);
                let Some((mut reader, _)) = open_reader(dir, seq, 0, max_record_size)? else { continue };
                loop {
                    match reader.next_record().map_err(|e| WalError::io("read", &path, e))? {
                        ReadStep::Record { payload, .. } => {
                            if is_schema(payload)
                                && let Ok(Payload::Schema(record)) = decode_payload(payload)
                            {
                                found.entry(record.key).or_insert_with(|| {
                                    let mut framed = Vec::new();
                                    frame::encode(payload, &mut framed);
                                    framed
                                });
                            }
                        }
                        ReadStep::Damaged { .. } => {}
                        ReadStep::End => break,
                    }
                }
            }
            self.0 = Some(found);
        }
        Ok(self.0.as_ref().and_then(|found| found.get(&key)).map(Vec::as_slice))
    }
}

/// Removes rewrites an interrupted repair left; the segments they were for are untouched.
fn remove_leftovers(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| WalError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("list", dir, e))?;
        let name = entry.file_name();
        if name.to_str().is_some_and(|name| name.ends_with(REPAIR_SUFFIX)) {
            let path: PathBuf = entry.path();
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(WalError::io("remove", path, e)),
                _ => {}
            }
        }
    }
    Ok(())
}
