//! Damaged ranges of segments: how they are reported, and how their bytes are kept aside.
//!
//! A writer that finds damage copies the damaged bytes into `quarantine/` in the WAL directory
//! before anything else happens to them (a torn tail is cut only after its copy is durable;
//! `Wal::repair` rewrites a segment only after its ranges are copied). Nothing ever deletes a
//! quarantine file: what it holds may be the only copy of a record someone can still piece
//! together by hand.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, WalError};
use crate::frame::Damage;
use crate::segment::segment_file_name;
use crate::storage::Storage;

/// The directory, inside the WAL directory, that holds copies of damaged bytes.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Bytes of a segment that hold no intact record, as found by a reader.
///
/// Every valid record before and after the range is kept and read; the range itself is
/// skipped. A writer that opens the log copies the range into [`QUARANTINE_DIR`]
/// (`quarantined` names the copy); [`Wal::verify`](crate::Wal::verify) and read-only opens
/// only report it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DamagedRange {
    /// The segment file.
    pub segment: PathBuf,
    /// Byte offset of the first damaged byte, where a frame should begin.
    pub offset: u64,
    /// Damaged bytes: up to the next intact frame, or to the end of the segment.
    pub len: u64,
    /// What the frame at `offset` looked like.
    pub damage: Damage,
    /// How many records were lost, when the damaged bytes still show their frame boundaries
    /// (see `ReadStep::Damaged`); `None` when they do not.
    pub records: Option<u64>,
    /// The damage is a torn write at the end of the last segment (nothing intact after it),
    /// which a writer's open cuts. Any other damage is lost data in the middle of the log.
    pub torn_tail: bool,
    /// Where a copy of the damaged bytes was kept, if one was made.
    pub quarantined: Option<PathBuf>,
}

impl fmt::Display for DamagedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` at byte {}: {} byte(s), ", self.segment.display(), self.offset, self.len)?;
        match self.records {
            Some(records) => write!(f, "{records} record(s)")?,
            None => f.write_str("an unknown number of records")?,
        }
        write!(f, " ({})", self.damage)?;
        if self.torn_tail {
            f.write_str(", a torn tail")?;
        }
        Ok(())
    }
}

impl DamagedRange {
    pub(crate) fn new(segment: PathBuf, step: (u64, u64, Damage, Option<u64>)) -> Self {
        let (offset, len, damage, records) = step;
        Self { segment, offset, len, damage, records, torn_tail: false, quarantined: None }
    }
}

/// The quarantine file name of `len` bytes at `offset` of segment `seq`, `n`-th of that name.
fn quarantine_name(seq: u64, offset: u64, len: u64, n: u32) -> String {
    let base = format!("{}.at-{offset}.len-{len}", segment_file_name(seq));
    if n == 0 { format!("{base}.damaged") } else { format!("{base}.{n}.damaged") }
}

/// Copies `len` bytes at `offset` of segment `seq` into the quarantine directory of `dir` and
/// makes the copy durable; returns its path.
///
/// Idempotent: a file of that name with the same bytes is the copy made by an earlier open.
/// A file of that name with other bytes (the segment was repaired and damaged again) is kept
/// and the copy gets the next free name.
pub(crate) fn quarantine(dir: &Path, seq: u64, offset: u64, len: u64, storage: &dyn Storage) -> Result<PathBuf> {
    let segment = dir.join(segment_file_name(seq));
    let bytes = read_range(&segment, offset, len)?;
    let qdir = dir.join(QUARANTINE_DIR);
    std::fs::create_dir_all(&qdir).map_err(|e| WalError::io("create", &qdir, e))?;
    let mut n = 0;
    loop {
        let path = qdir.join(quarantine_name(seq, offset, len, n));
        match std::fs::read(&path) {
            Ok(existing) if existing == bytes => return Ok(path),
            Ok(_) => n += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_new(&path, &bytes, storage)?;
                storage.sync_dir(&qdir).map_err(|e| WalError::io("fsync", &qdir, e))?;
                return Ok(path);
            }
            Err(e) => return Err(WalError::io("read", path, e)),
        }
    }
}

/// The bytes `offset..offset + len` of `path`; fewer when the file is shorter.
pub(crate) fn read_range(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut file = File::open(path).map_err(|e| WalError::io("open", path, e))?;
    file.seek(SeekFrom::Start(offset)).map_err(|e| WalError::io("seek in", path, e))?;
    let mut bytes = Vec::new();
    file.take(len).read_to_end(&mut bytes).map_err(|e| WalError::io("read", path, e))?;
    Ok(bytes)
}

/// Writes a new file durably, through a temporary name so that a crash never leaves a
/// quarantine file with part of its bytes.
fn write_new(path: &Path, bytes: &[u8], storage: &dyn Storage) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .map_err(|e| WalError::io("create", &tmp, e))?;
    file.write_all(bytes).map_err(|e| WalError::io("write", &tmp, e))?;
    storage.sync(&file).map_err(|e| WalError::io("fsync", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| WalError::io("rename", &tmp, e))
}
