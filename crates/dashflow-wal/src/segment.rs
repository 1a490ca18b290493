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
    /// The bytes from `offset` on are not an intact record. The reader has skipped them: the
    /// next call reads the first intact frame after them, or returns [`ReadStep::End`] when
    /// the damage runs to the end of the data (`to_end`).
    Damaged {
        /// Byte offset of the bad frame's header (a frame boundary).
        offset: u64,
        /// Bytes skipped: up to the next intact frame, or to the end of the data.
        len: u64,
        /// What the frame at `offset` looked like.
        damage: Damage,
        /// How many records the skipped bytes held, when their frame boundaries can be told:
        /// the length fields chain from `offset` exactly to the next intact frame, or the
        /// skipped payload matches the checksum stored at `offset` (only its length field was
        /// hit).
        records: Option<u64>,
        /// No intact frame follows: the damage runs to the end of the data. At the end of
        /// the last segment that is a torn write (or a record still being written).
        to_end: bool,
    },
}

/// Bytes read at a time while looking for the next intact frame after damage.
const SCAN_WINDOW: usize = 64 * 1024;

/// Reads framed records one by one from a byte source of known length.
///
/// Memory stays bounded by the largest record actually read: a length field is checked against
/// the maximum record size and the bytes remaining before a single byte is allocated for it.
///
/// After damage the reader resynchronises: it looks, byte by byte, for the first position after
/// the damaged frame's header where an intact frame begins (a length between 1 and the maximum
/// record size that fits in the data, and a payload matching its CRC32C), reports the bytes in
/// between as one [`ReadStep::Damaged`] and goes on from there. A false match inside damaged
/// bytes needs a 32-bit checksum to match by chance, so valid records after damage are found
/// and garbage is not taken for a record. The search runs only after damage: intact data
/// costs nothing extra.
#[derive(Debug)]
pub struct RecordReader<R> {
    inner: R,
    /// Where the next frame starts.
    offset: u64,
    /// Where `inner` is, in the data's offsets (it may be a slice starting mid-file).
    inner_at: u64,
    len: u64,
    max_record_size: u32,
    buf: Vec<u8>,
    lost: bool,
}

impl<R: Read + Seek> RecordReader<R> {
    /// Reads from `inner`, which is positioned at byte `offset` of data `len` bytes long.
    pub fn new(inner: R, offset: u64, len: u64, max_record_size: u32) -> Self {
        Self { inner, offset, inner_at: offset, len, max_record_size, buf: Vec::new(), lost: false }
    }

    /// The offset of the next frame.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes held for the largest payload read so far; never more than the maximum record size.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Reads the next frame, or the extent of the damage where one should be.
    ///
    /// An I/O error is returned as is; the WAL wraps it with the segment's path.
    pub fn next_record(&mut self) -> io::Result<ReadStep<'_>> {
        let start = self.offset;
        let remaining = self.len.saturating_sub(start);
        if self.lost || remaining == 0 {
            return Ok(ReadStep::End);
        }
        if remaining < HEADER_LEN as u64 {
            return self.damaged(start, Damage::TruncatedHeader { available: remaining });
        }
        if self.inner_at != start {
            self.seek_to(start)?;
        }
        let mut header = [0u8; HEADER_LEN];
        if let Err(e) = self.inner.read_exact(&mut header) {
            return self.short_read(e, start, Damage::TruncatedHeader { available: 0 });
        }
        self.inner_at = start + HEADER_LEN as u64;
        let (len, stored) = frame::parse_header(header);
        if let Err(damage) = frame::check_len(len, remaining - HEADER_LEN as u64, self.max_record_size) {
            return self.damaged(start, damage);
        }
        // `check_len` bounded `len` by the maximum record size and by the bytes left.
        self.buf.clear();
        self.buf.resize(len as usize, 0);
        if let Err(e) = self.inner.read_exact(&mut self.buf) {
            return self.short_read(e, start, Damage::TruncatedPayload { len, available: 0 });
        }
        self.inner_at += u64::from(len);
        match frame::check_crc(&self.buf, stored) {
            Ok(()) => {
                self.offset = self.inner_at;
                Ok(ReadStep::Record { offset: start, payload: &self.buf })
            }
            Err(damage) => self.damaged(start, damage),
        }
    }

    /// The file was shorter than its length said (it shrank while being read): report the
    /// truncation instead of an I/O error.
    fn short_read(&mut self, error: io::Error, offset: u64, damage: Damage) -> io::Result<ReadStep<'_>> {
        if error.kind() == io::ErrorKind::UnexpectedEof { Ok(self.damaged_to_end(offset, damage)) } else { Err(error) }
    }

    /// Finds the first intact frame after the damaged one at `offset` and moves there.
    fn damaged(&mut self, offset: u64, damage: Damage) -> io::Result<ReadStep<'_>> {
        // A short read means the file shrank under the reader, which then no longer knows
        // where its source stands: it reports the rest as damaged and stops.
        let next = match self.find_frame(offset + 1) {
            Ok(next) => next,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(self.damaged_to_end(offset, damage)),
            Err(e) => return Err(e),
        };
        let end = next.unwrap_or(self.len);
        let records = match self.count_records(offset, end) {
            Ok(records) => records,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(self.damaged_to_end(offset, damage)),
            Err(e) => return Err(e),
        };
        self.offset = end;
        self.lost = next.is_none();
        Ok(ReadStep::Damaged { offset, len: end - offset, damage, records, to_end: next.is_none() })
    }

    /// Everything from `offset` on is damaged; the reader stops.
    fn damaged_to_end(&mut self, offset: u64, damage: Damage) -> ReadStep<'static> {
        self.lost = true;
        self.offset = self.len;
        ReadStep::Damaged { offset, len: self.len.saturating_sub(offset), damage, records: None, to_end: true }
    }

    fn seek_to(&mut self, at: u64) -> io::Result<()> {
        // Relative, because `inner` may start anywhere in the data.
        let delta = i64::try_from(at).unwrap_or(i64::MAX) - i64::try_from(self.inner_at).unwrap_or(i64::MAX);
        self.inner.seek(SeekFrom::Current(delta))?;
        self.inner_at = at;
        Ok(())
    }

    /// Reads `out.len()` bytes at `at`.
    fn read_at(&mut self, at: u64, out: &mut [u8]) -> io::Result<()> {
        self.seek_to(at)?;
        // On failure the position is unknown; the next use seeks from a wrong base, so
        // callers stop reading (they treat the data as ending here).
        self.inner.read_exact(out)?;
        self.inner_at = at + out.len() as u64;
        Ok(())
    }

    /// The offset of the first intact frame at or after `from`, if any.
    fn find_frame(&mut self, from: u64) -> io::Result<Option<u64>> {
        let header_len = HEADER_LEN as u64;
        let mut window: Vec<u8> = Vec::new();
        let mut window_start = from;
        let mut pos = from;
        while pos + header_len <= self.len {
            let window_end = window_start + window.len() as u64;
            if pos + header_len > window_end {
                let want = SCAN_WINDOW.min(usize::try_from(self.len - pos).unwrap_or(usize::MAX));
                window.resize(want, 0);
                self.read_at(pos, &mut window)?;
                window_start = pos;
            }
            // The window covers the header: refilled just above when it did not.
            let at = usize::try_from(pos - window_start).unwrap_or(usize::MAX);
            let Some(header) = window.get(at..).and_then(<[u8]>::first_chunk::<HEADER_LEN>) else { break };
            let (len, stored) = frame::parse_header(*header);
            if frame::check_len(len, self.len - pos - header_len, self.max_record_size).is_ok() {
                let frame_end = pos + header_len + u64::from(len);
                if frame_end > window_start + window.len() as u64 {
                    let want = (HEADER_LEN + len as usize).max(SCAN_WINDOW);
                    let want = want.min(usize::try_from(self.len - pos).unwrap_or(usize::MAX));
                    window.resize(want, 0);
                    self.read_at(pos, &mut window)?;
                    window_start = pos;
                }
                let at = usize::try_from(pos - window_start).unwrap_or(usize::MAX) + HEADER_LEN;
                if let Some(payload) = window.get(at..at + len as usize)
                    && frame::check_crc(payload, stored).is_ok()
                {
                    return Ok(Some(pos));
                }
            }
            pos += 1;
        }
        Ok(None)
    }

    /// How many records `start..end` held, when that can be told (see [`ReadStep::Damaged`]).
    fn count_records(&mut self, start: u64, end: u64) -> io::Result<Option<u64>> {
        let header_len = HEADER_LEN as u64;
        let mut header = [0u8; HEADER_LEN];
        // The length fields, followed from frame to frame.
        let mut at = start;
        let mut records = 0;
        while at + header_len <= end {
            self.read_at(at, &mut header)?;
            let (len, _) = frame::parse_header(header);
            if len == 0 || len > self.max_record_size {
                break;
            }
            at += header_len + u64::from(len);
            records += 1;
        }
        if at == end && records > 0 {
            return Ok(Some(records));
        }
        // One frame whose length field was hit: the rest of it still matches its checksum.
        let payload_len = end.saturating_sub(start + header_len);
        if payload_len > 0 && payload_len <= u64::from(self.max_record_size) && end - start >= header_len {
            self.read_at(start, &mut header)?;
            let (_, stored) = frame::parse_header(header);
            let mut payload = vec![0u8; usize::try_from(payload_len).unwrap_or(0)];
            self.read_at(start + header_len, &mut payload)?;
            if frame::check_crc(&payload, stored).is_ok() {
                return Ok(Some(1));
            }
        }
        Ok(None)
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
