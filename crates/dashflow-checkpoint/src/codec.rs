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
        let corrupt = |detail: String| CheckpointError::Corrupt { detail };
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
pub const FORMAT_VERSION: u8 = 2;

const HEADER_LEN: usize = MAGIC.len() + 1 + 1 + 8;

/// Encodes `value` with `codec` inside the envelope: magic, format version, codec id, the
/// state type's schema hash (little-endian u64), then the payload.
pub fn seal<T: Serialize + ?Sized>(codec: Codec, schema_hash: u64, value: &T) -> Result<Vec<u8>, CheckpointError> {
    let mut out = Vec::with_capacity(HEADER_LEN + 64);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(codec.id());
    out.extend_from_slice(&schema_hash.to_le_bytes());
    codec.encode_into(value, &mut out)?;
    Ok(out)
}

/// Decodes a blob made by [`seal`], checking that it is a DashFlow blob of this format
/// version and of the expected schema; any mismatch is a typed error, never garbage.
pub fn open<T: DeserializeOwned>(blob: &[u8], schema_hash: u64) -> Result<T, CheckpointError> {
    if blob.len() < HEADER_LEN || blob[..MAGIC.len()] != MAGIC {
        return Err(CheckpointError::Corrupt { detail: "the blob does not start with a DashFlow envelope".into() });
    }
    let version = blob[4];
    if version != FORMAT_VERSION {
        return Err(CheckpointError::VersionMismatch {
            detail: format!("envelope format version {version}, this build reads version {FORMAT_VERSION}"),
        });
    }
    let codec = Codec::from_id(blob[5])
        .ok_or_else(|| CheckpointError::VersionMismatch { detail: format!("unknown codec id {}", blob[5]) })?;
    let mut hash = [0u8; 8];
    hash.copy_from_slice(&blob[6..HEADER_LEN]);
    let stored = u64::from_le_bytes(hash);
    if stored != schema_hash {
        return Err(CheckpointError::VersionMismatch {
            detail: format!("state schema {stored:016x}, expected {schema_hash:016x}"),
        });
    }
    codec.decode(&blob[HEADER_LEN..])
}
