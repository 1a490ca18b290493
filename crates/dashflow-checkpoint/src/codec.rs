//! How states and updates become bytes, and the envelope every blob carries.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CheckpointError;

/// The serialization format of a blob, chosen per graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// bincode 2 (standard config): compact and fast; the default.
    #[default]
    Bincode,
    /// JSON: larger and slower, readable with any tool.
    Json,
}

impl Codec {
    /// The byte that names the codec in the envelope.
    pub fn id(self) -> u8 {
        match self {
            Self::Bincode => 1,
            Self::Json => 2,
        }
    }

    /// The codec named by `id`.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Self::Bincode),
            2 => Some(Self::Json),
            _ => None,
        }
    }

    fn encode_into<T: Serialize + ?Sized>(self, value: &T, out: &mut Vec<u8>) -> Result<(), CheckpointError> {
        let encode_error = |detail: String| CheckpointError::Encode { detail };
        match self {
            Self::Bincode => bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
                .map(drop)
                .map_err(|e| encode_error(e.to_string())),
            Self::Json => serde_json::to_writer(out, value).map_err(|e| encode_error(e.to_string())),
        }
    }

    fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CheckpointError> {
        let corrupt = |detail: String| CheckpointError::corrupt(detail);
        match self {
            Self::Bincode => {
                // Hostile length prefixes must not make the decoder allocate more than a
                // generous multiple of the input (varints expand at most 8x in memory).
                let limit = bytes.len().saturating_mul(16).saturating_add(4096);
                decode_bincode_limited(bytes, limit).map_err(corrupt)
            }
            Self::Json => serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string())),
        }
    }
}

fn decode_bincode_limited<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, String> {
    // bincode's limit is a const generic; pick the smallest power-of-two bucket that holds
    // `limit`, so small blobs get small limits.
    macro_rules! with_limit {
        ($($bucket:literal),*) => {
            $(if limit <= $bucket {
                let config = bincode::config::standard().with_limit::<$bucket>();
                return finish(bincode::serde::decode_from_slice(bytes, config), bytes.len());
            })*
        };
    }
    with_limit!(65536, 1048576, 16777216, 268435456, 4294967296);
    Err(format!("blob of {} bytes is larger than a checkpoint may be", bytes.len()))
}

fn finish<T>(result: Result<(T, usize), bincode::error::DecodeError>, len: usize) -> Result<T, String> {
    match result {
        Ok((value, read)) if read == len => Ok(value),
        Ok((_, read)) => Err(format!("{} trailing bytes after the value", len - read)),
        Err(error) => Err(error.to_string()),
    }
}

/// The first bytes of every DashFlow checkpoint blob.
pub const MAGIC: [u8; 4] = *b"DFCP";

/// The envelope layout version this build writes and reads.
///
/// Version 3 added the trailing CRC32C. Version 2 blobs (no checksum, and a schema hash of the
/// top-level struct only) are refused as a `VersionMismatch` naming the version: their hash
/// cannot be compared with this build's whole-shape fingerprint anyway.
pub const FORMAT_VERSION: u8 = 3;

const HEADER_LEN: usize = MAGIC.len() + 1 + 1 + 8;
const CHECKSUM_LEN: usize = 4;

/// Encodes `value` with `codec` inside the envelope: magic, format version, codec id, the
/// state type's schema fingerprint (little-endian u64), the payload, then a CRC32C of
/// everything before it (little-endian u32).
pub fn seal<T: Serialize + ?Sized>(codec: Codec, fingerprint: u64, value: &T) -> Result<Vec<u8>, CheckpointError> {
    let mut out = Vec::with_capacity(HEADER_LEN + 64);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(codec.id());
    out.extend_from_slice(&fingerprint.to_le_bytes());
    codec.encode_into(value, &mut out)?;
    let checksum = crc32c::crc32c(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

/// A blob whose envelope and checksum were verified by [`unseal`]: its codec, the schema
/// fingerprint of the type that wrote it, and its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sealed<'a> {
    /// The codec of the payload.
    pub codec: Codec,
    /// The schema fingerprint the writer sealed it with.
    pub fingerprint: u64,
    /// The encoded value.
    pub payload: &'a [u8],
}

impl Sealed<'_> {
    /// Decodes the payload as `T`, whatever fingerprint it carries; bytes that do not decode
    /// as `T` are `Corrupt`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CheckpointError> {
        self.codec.decode(self.payload)
    }
}

/// Checks that `blob` is a whole, unchanged DashFlow blob of this format version (magic,
/// version, codec and checksum) without decoding it. A changed byte anywhere, header and
/// checksum included, is `Corrupt`; a blob of another format version or an unknown codec is
/// `VersionMismatch`.
pub fn unseal(blob: &[u8]) -> Result<Sealed<'_>, CheckpointError> {
    if blob.len() < HEADER_LEN + CHECKSUM_LEN || blob[..MAGIC.len()] != MAGIC {
        if blob.len() > MAGIC.len() && blob[..MAGIC.len()] == MAGIC && blob[4] < FORMAT_VERSION {
            return Err(older_version(blob[4]));
        }
        return Err(CheckpointError::corrupt(format!(
            "the {}-byte blob does not start with a DashFlow envelope",
            blob.len()
        )));
    }
    let (content, tail) = blob.split_at(blob.len() - CHECKSUM_LEN);
    let mut stored = [0u8; CHECKSUM_LEN];
    stored.copy_from_slice(tail);
    let stored = u32::from_le_bytes(stored);
    let computed = crc32c::crc32c(content);
    if stored != computed {
        // An envelope of an earlier format has no checksum, unless it is this version's blob
        // with a changed version byte: then the checksum matches with the byte put back.
        let version = blob[4];
        if version < FORMAT_VERSION && !checksum_matches_as_current(content, stored) {
            return Err(older_version(version));
        }
        return Err(CheckpointError::corrupt(format!(
            "checksum mismatch over the {}-byte blob: stored {stored:08x}, computed {computed:08x}; a byte \
             was changed after it was written",
            blob.len()
        )));
    }
    let version = blob[4];
    if version != FORMAT_VERSION {
        return Err(CheckpointError::version_mismatch(format!(
            "envelope format version {version}, this build reads version {FORMAT_VERSION}"
        )));
    }
    let codec = Codec::from_id(blob[5])
        .ok_or_else(|| CheckpointError::version_mismatch(format!("unknown codec id {}", blob[5])))?;
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&blob[6..HEADER_LEN]);
    Ok(Sealed { codec, fingerprint: u64::from_le_bytes(fingerprint), payload: &content[HEADER_LEN..] })
}

fn checksum_matches_as_current(content: &[u8], stored: u32) -> bool {
    let head = [FORMAT_VERSION];
    let crc = crc32c::crc32c(&content[..4]);
    let crc = crc32c::crc32c_append(crc, &head);
    crc32c::crc32c_append(crc, &content[5..]) == stored
}

fn older_version(version: u8) -> CheckpointError {
    CheckpointError::version_mismatch(format!(
        "envelope format version {version} was written by an earlier DashFlow release; this build reads \
         version {FORMAT_VERSION}: finish or delete such threads with the release that wrote them"
    ))
}

/// Decodes a blob made by [`seal`], checking that it is a whole DashFlow blob of this format
/// version (see [`unseal`]) and of the expected schema fingerprint; any mismatch or changed
/// byte is a typed error, never garbage.
pub fn open<T: DeserializeOwned>(blob: &[u8], fingerprint: u64) -> Result<T, CheckpointError> {
    let sealed = unseal(blob)?;
    if sealed.fingerprint != fingerprint {
        return Err(CheckpointError::version_mismatch(format!(
            "state schema {:016x}, expected {fingerprint:016x}",
            sealed.fingerprint
        )));
    }
    sealed.decode()
}
