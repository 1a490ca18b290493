//! Segment files: naming, listing, and reading the records of one segment.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, WalError};
use crate::frame::{self, Damage, HEADER_LEN};

/// File name suffix of a segment.
pub(crate) const SEGMENT_SUFFIX: &str = ".wal";
/// Digits of the zero-padded sequence number in a segment's name (`u64::MAX` has 20).
const SEQ_DIGITS: usize = 20;

/// Where a record starts: a segment's sequence number and a byte offset within it.
///
/// Positions order like the log: by segment, then by offset. [`Position::START`] is before
/// every record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The segment's sequence number (its file name).
    pub segment: u64,
    /// Byte offset of the record's header within the segment.
    pub offset: u64,
}

impl Position {
    /// Before the first record of any WAL.
    pub const START: Position = Position { segment: 0, offset: 0 };

    /// A position.
    pub fn new(segment: u64, offset: u64) -> Self {
        Self { segment, offset }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.segment, self.offset)
    }
}

/// The file name of segment `seq`, e.g. `00000000000000000001.wal`.
pub fn segment_file_name(seq: u64) -> String {
    format!("{seq:0SEQ_DIGITS$}{SEGMENT_SUFFIX}")
}

/// The path of segment `seq` in `dir`.
pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_file_name(seq))
}

/// The sequence number a segment file name encodes, or `None` for any other file.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The sequence numbers of the segments in `dir`, ascending. Other files are ignored.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let entries = std::fs::read_dir(dir).map_err(|e| WalError::io("list", dir, e))?;
    let mut seqs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("list", dir, e))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// The length of a file, or `None` when it does not exist.
pub(crate) fn file_len(path: &Path) -> Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WalError::io("inspect", path, e)),
    }
}

/// The offset just past a record whose header is at `offset`.
pub(crate) fn record_end(offset: u64, payload: &[u8]) -> u64 {
    offset + HEADER_LEN as u64 + payload.len() as u64
}

/// One step of a [`RecordReader`].
#[derive(Debug, PartialEq, Eq)]
pub enum ReadStep<'a> {
    /// An intact record starting at `offset`.
    Record {
        /// Byte offset of the record's header.
        offset: u64,
        /// The payload; valid until the next call.
        payload: &'a [u8],
    },
    /// The data ends exactly at a record boundary.
    End,
    /// The bytes at `offset` are not an intact record.
    Damaged {
        /// Byte offset of the bad header.
        offset: u64,
        /// What is wrong.
        damage: Damage,
    },
}

/// Reads framed records one by one from a byte source of known length.
///
/// Memory stays bounded by the largest record actually read: a length field is checked against
/// the maximum record size and the bytes remaining before a single byte is allocated for it.
/// After [`ReadStep::Damaged`] with [`Damage::Checksum`] the reader has consumed the damaged
/// frame and can go on with the next one; after any other damage the frame boundary is lost and
/// every later call returns [`ReadStep::End`].
#[derive(Debug)]
pub struct RecordReader<R> {
    inner: R,
    offset: u64,
    len: u64,
    max_record_size: u32,
    buf: Vec<u8>,
    lost: bool,
}

impl<R: Read> RecordReader<R> {
    /// Reads from `inner`, which is positioned at byte `offset` of data `len` bytes long.
    pub fn new(inner: R, offset: u64, len: u64, max_record_size: u32) -> Self {
        Self { inner, offset, len, max_record_size, buf: Vec::new(), lost: false }
    }

    /// The offset of the next frame.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes held for the largest payload read so far; never more than the maximum record size.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Reads the next frame.
    ///
    /// An I/O error is returned as is; the WAL wraps it with the segment's path.
    pub fn next_record(&mut self) -> io::Result<ReadStep<'_>> {
        let start = self.offset;
        let remaining = self.len.saturating_sub(start);
        if self.lost || remaining == 0 {
            return Ok(ReadStep::End);
        }
        if remaining < HEADER_LEN as u64 {
            self.lost = true;
            return Ok(ReadStep::Damaged { offset: start, damage: Damage::TruncatedHeader { available: remaining } });
        }
        let mut header = [0u8; HEADER_LEN];
        if let Err(e) = self.inner.read_exact(&mut header) {
            return self.short_read(e, start, Damage::TruncatedHeader { available: 0 });
        }
        let (len, stored) = frame::parse_header(header);
        if let Err(damage) = frame::check_len(len, remaining - HEADER_LEN as u64, self.max_record_size) {
            self.lost = true;
            return Ok(ReadStep::Damaged { offset: start, damage });
        }
        // `check_len` bounded `len` by the maximum record size and by the bytes left.
        self.buf.clear();
        self.buf.resize(len as usize, 0);
        if let Err(e) = self.inner.read_exact(&mut self.buf) {
            return self.short_read(e, start, Damage::TruncatedPayload { len, available: 0 });
        }
        self.offset = start + HEADER_LEN as u64 + u64::from(len);
        match frame::check_crc(&self.buf, stored) {
            Ok(()) => Ok(ReadStep::Record { offset: start, payload: &self.buf }),
            Err(damage) => Ok(ReadStep::Damaged { offset: start, damage }),
        }
    }

    /// The file was shorter than its length said (it shrank while being read): report the
    /// truncation instead of an I/O error.
    fn short_read(&mut self, error: io::Error, offset: u64, damage: Damage) -> io::Result<ReadStep<'_>> {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            self.lost = true;
            Ok(ReadStep::Damaged { offset, damage })
        } else {
            Err(error)
        }
    }
}

/// A reader over segment `seq` of `dir` starting at `offset`, and the file's length.
///
/// Returns `None` when the segment does not exist.
pub(crate) fn open_reader(
    dir: &Path,
    seq: u64,
    offset: u64,
    max_record_size: u32,
) -> Result<Option<(RecordReader<BufReader<File>>, u64)>> {
    let path = segment_path(dir, seq);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WalError::io("open", path, e)),
    };
    let len = file.metadata().map_err(|e| WalError::io("inspect", &path, e))?.len();
    if offset > 0 {
        file.seek(SeekFrom::Start(offset)).map_err(|e| WalError::io("seek in", &path, e))?;
    }
    let reader = RecordReader::new(BufReader::with_capacity(64 * 1024, file), offset, len, max_record_size);
    Ok(Some((reader, len)))
}

#[cfg(test)]
mod tests;
