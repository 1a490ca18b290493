//! The record frame: `length (u32 LE) | CRC32C of payload (u32 LE) | payload`.
//!
//! A zero length is never written (the WAL has no empty records), so an all-zero header, which
//! is what preallocated or zero-filled space looks like, is damage rather than an empty record
//! whose CRC happens to be zero too.
//!
//! There is no per-frame sync marker. After damage, a reader finds the next frame by trying
//! each byte offset ([`RecordReader`](crate::RecordReader)): a false match needs a length in
//! bounds and a CRC32C of the bytes behind it that matches by chance (one in 2^32 per
//! plausible offset). A marker would make false matches rarer still and the search cheaper,
//! but costs bytes in every record and a second on-disk format that readers must keep
//! telling apart from this one. The price is the search's cost over large damaged regions
//! (see docs/dev/open-work.md); and a payload built to contain a whole valid frame could be
//! taken for a record, but only if damage hits the record that holds it.

use std::fmt;

/// Bytes of a record header: the payload length and its CRC32C, both `u32` little-endian.
pub const HEADER_LEN: usize = 8;

/// The default largest payload accepted, 16 MiB.
pub const DEFAULT_MAX_RECORD_SIZE: u32 = 16 * 1024 * 1024;

/// What is wrong with the bytes where a record should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// Fewer than [`HEADER_LEN`] bytes are left.
    TruncatedHeader {
        /// Bytes present.
        available: u64,
    },
    /// The header announces more payload than the file holds.
    TruncatedPayload {
        /// Announced payload length.
        len: u32,
        /// Bytes present after the header.
        available: u64,
    },
    /// The length field is zero: zero-filled or preallocated space.
    ZeroLength,
    /// The length field exceeds the maximum record size; it is not trusted, so nothing of that
    /// size is allocated.
    TooLarge {
        /// Announced payload length.
        len: u32,
        /// The configured maximum.
        max: u32,
    },
    /// The payload does not match its checksum.
    Checksum {
        /// The CRC32C stored in the header.
        stored: u32,
        /// The CRC32C of the payload as read.
        computed: u32,
    },
}

impl Damage {
    /// Whether the damage is a record cut short by the end of the data (a torn write).
    pub fn is_truncation(&self) -> bool {
        matches!(self, Self::TruncatedHeader { .. } | Self::TruncatedPayload { .. })
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TruncatedHeader { available } => {
                write!(f, "only {available} of the {HEADER_LEN} header bytes are present")
            }
            Self::TruncatedPayload { len, available } => {
                write!(f, "the header announces {len} payload bytes but only {available} follow")
            }
            Self::ZeroLength => f.write_str("the length field is zero (zero-filled space)"),
            Self::TooLarge { len, max } => {
                write!(f, "the length field says {len} bytes, more than the maximum record size of {max}")
            }
            Self::Checksum { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
        }
    }
}

/// The result of decoding one frame from the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// An intact record; the frame is `HEADER_LEN + payload.len()` bytes long.
    Record(&'a [u8]),
    /// The buffer is empty: no record, no damage.
    End,
    /// The bytes at the front are not an intact record.
    Damaged(Damage),
}

/// Appends the frame of `payload` to `out`.
///
/// The caller checks the size: `payload` must be non-empty and at most `u32::MAX` bytes (the
/// WAL checks it against its maximum record size first).
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(!payload.is_empty() && u32::try_from(payload.len()).is_ok());
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Parses a header into `(payload length, stored CRC)`.
pub(crate) fn parse_header(header: [u8; HEADER_LEN]) -> (u32, u32) {
    let [a, b, c, d, e, f, g, h] = header;
    (u32::from_le_bytes([a, b, c, d]), u32::from_le_bytes([e, f, g, h]))
}

/// Checks a header's length field against the bytes that follow it and the maximum size.
///
/// Run before anything is allocated for the payload, so a hostile length costs nothing.
pub(crate) fn check_len(len: u32, available_after_header: u64, max_record_size: u32) -> Result<(), Damage> {
    if len == 0 {
        Err(Damage::ZeroLength)
    } else if len > max_record_size {
        Err(Damage::TooLarge { len, max: max_record_size })
    } else if u64::from(len) > available_after_header {
        Err(Damage::TruncatedPayload { len, available: available_after_header })
    } else {
        Ok(())
    }
}

/// Checks a payload against the CRC stored in its header.
pub(crate) fn check_crc(payload: &[u8], stored: u32) -> Result<(), Damage> {
    let computed = crc32c::crc32c(payload);
    if computed == stored { Ok(()) } else { Err(Damage::Checksum { stored, computed }) }
}

/// Decodes the frame at the front of `buf` without allocating.
pub fn decode(buf: &[u8], max_record_size: u32) -> Decoded<'_> {
    if buf.is_empty() {
        return Decoded::End;
    }
    let Some((header, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
        return Decoded::Damaged(Damage::TruncatedHeader { available: buf.len() as u64 });
    };
    let (len, stored) = parse_header(*header);
    if let Err(damage) = check_len(len, rest.len() as u64, max_record_size) {
        return Decoded::Damaged(damage);
    }
    // `check_len` proved `len <= rest.len()`.
    let payload = &rest[..len as usize];
    match check_crc(payload, stored) {
        Ok(()) => Decoded::Record(payload),
        Err(damage) => Decoded::Damaged(damage),
    }
}

#[cfg(test)]
mod tests;
