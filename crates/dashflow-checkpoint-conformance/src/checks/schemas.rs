//! `put_schema` / `get_schema`: the state schemas blobs were written with, by fingerprint.

use std::sync::Arc;

use dashflow_checkpoint::Checkpointer;

use crate::Result;
use crate::error::{Context, ensure_eq};
use crate::fixture::noise;

/// A stored schema comes back byte-exact by its fingerprint, the whole `u64` range included;
/// other fingerprints have none.
pub async fn round_trip_by_fingerprint(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    for (seed, fingerprint) in [(1, 0_u64), (2, 7), (3, u64::MAX), (4, 1 << 63)] {
        let schema = noise(300, seed);
        cp.put_schema(fingerprint, schema.clone()).await.context(|| format!("put_schema {fingerprint:016x}"))?;
        let stored = cp.get_schema(fingerprint).await.context(|| format!("get_schema {fingerprint:016x}"))?;
        ensure_eq!(stored, Some(schema), "schema of fingerprint {fingerprint:016x}");
    }
    let unknown = cp.get_schema(42).await.context(|| "get_schema of an unknown fingerprint".to_owned())?;
    ensure_eq!(unknown, None, "schema of a fingerprint never stored");
    Ok(())
}

/// Storing a fingerprint again keeps the first schema (a fingerprint names one schema), and
/// deleting threads keeps schemas.
pub async fn first_put_stays(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    cp.put_schema(9, b"first".to_vec()).await.context(|| "put_schema".to_owned())?;
    cp.put_schema(9, b"second".to_vec()).await.context(|| "put_schema again".to_owned())?;
    crate::fixture::line(cp, "t", "", "SD").await?;
    cp.delete_thread("t").await.context(|| "delete_thread".to_owned())?;
    let stored = cp.get_schema(9).await.context(|| "get_schema".to_owned())?;
    ensure_eq!(stored, Some(b"first".to_vec()), "schema after a second put and a deleted thread");
    Ok(())
}
