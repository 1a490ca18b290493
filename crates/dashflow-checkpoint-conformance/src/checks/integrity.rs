//! Integrity: a byte changed in a stored blob, behind the backend's back, comes back changed
//! through every read path and is `Corrupt` naming its thread and checkpoint, never a value.
//!
//! These checks need the backend's harness to change stored bytes (a raw SQL `UPDATE`, a
//! testing hook): see [`crate::Tamper`] and [`crate::integrity_trials`].

use std::sync::Arc;

use dashflow_checkpoint::{
    BlobLocation, CheckpointError, CheckpointRecord, Checkpointer, Codec, ListOptions, PendingWrite, open, seal,
};

use crate::error::{Context, ensure};
use crate::fixture::{contract, label, list, load_some, put, record, snapshot};
use crate::{Result, Tamper};
use dashflow_checkpoint::CheckpointKind;

/// The fingerprint the sealed test values carry.
const FINGERPRINT: u64 = 0x5eed_0fda_5f10_f00d;

/// A stored value with a string in the middle, as a state would have.
fn value(tag: &str) -> (u64, String, Vec<u32>) {
    (42, format!("refund the customer of ticket {tag}"), vec![1, 2, 3])
}

/// Offsets to damage: the magic, the version, the codec, the fingerprint, the middle of the
/// payload, its last byte and the checksum.
fn offsets(len: usize) -> Vec<usize> {
    vec![0, 4, 5, 9, len / 2, len - 5, len - 1]
}

/// Checks that `error` is `Corrupt` about `expected`.
fn ensure_corrupt_at(result: Result<(), CheckpointError>, expected: &BlobLocation, what: &str) -> Result<()> {
    match result {
        Err(error @ CheckpointError::Corrupt { .. }) => {
            ensure!(
                error.location() == Some(expected),
                "{what}: the error names {:?}, expected {expected:?}: {error}",
                error.location()
            );
            Ok(())
        }
        Err(other) => Err(contract(format!("{what}: expected Corrupt naming {expected}, got `{other}`"))),
        Ok(()) => {
            Err(contract(format!("{what}: the changed blob verified as whole; expected Corrupt naming {expected}")))
        }
    }
}

/// A sealed snapshot and delta in namespace `ns` of thread `t`.
async fn sealed_line(cp: &dyn Checkpointer) -> Result<Vec<CheckpointRecord>> {
    let mut first = snapshot("t", "ns", None);
    first.blob = seal(Codec::Bincode, FINGERPRINT, &value("first")).context(|| "seal".to_owned())?;
    put(cp, &first, None).await?;
    let mut second = record("t", "ns", Some(&first), CheckpointKind::Delta);
    second.blob = seal(Codec::Json, FINGERPRINT, &value("second")).context(|| "seal".to_owned())?;
    put(cp, &second, Some(&first)).await?;
    Ok(vec![first, second])
}

/// XORs byte `offset` of the stored blob `at` with `mask` through the harness; `what` says
/// which change this is, for the error.
async fn flip(tamper: &dyn Tamper, at: &BlobLocation, offset: usize, mask: u8, what: &str) -> Result<()> {
    tamper
        .alter_blob(at, offset, mask)
        .await
        .map_err(|detail| contract(format!("{what}: the harness failed: {detail}")))
}

/// A changed byte in a checkpoint's blob (header, middle or end; snapshot or delta; bincode or
/// JSON) is `Corrupt` naming thread and checkpoint through `load` by id, `load` of the head
/// and `list`; `open` never returns a value; changed back, the blob verifies again.
pub async fn changed_checkpoint_byte_is_corrupt_naming_thread_and_checkpoint(
    checkpointer: Arc<dyn Checkpointer>,
    tamper: Arc<dyn Tamper>,
) -> Result<()> {
    let cp = checkpointer.as_ref();
    let records = sealed_line(cp).await?;
    for target in &records {
        let at = target.location();
        for offset in offsets(target.blob.len()) {
            let what = |path: &str| format!("byte {offset} of {} changed, read through {path}", label(target));
            flip(tamper.as_ref(), &at, offset, 0x20, &what("the harness")).await?;
            let by_id = load_some(cp, "t", "ns", Some(&records[1].checkpoint_id)).await?;
            ensure_corrupt_at(by_id.verify(), &at, &what("load by id"))?;
            let head = load_some(cp, "t", "ns", None).await?;
            ensure_corrupt_at(head.verify(), &at, &what("load of the head"))?;
            let listed = list(cp, "t", &ListOptions::new()).await?;
            let Some(stored) = listed.iter().find(|record| record.checkpoint_id == target.checkpoint_id) else {
                return Err(contract(format!("{}: the record is not listed", what("list"))));
            };
            ensure_corrupt_at(stored.verify(), &at, &what("list"))?;
            ensure!(
                matches!(
                    open::<(u64, String, Vec<u32>)>(&stored.blob, FINGERPRINT),
                    Err(CheckpointError::Corrupt { .. })
                ),
                "{}: `open` did not refuse the changed blob as Corrupt",
                what("list")
            );
            flip(tamper.as_ref(), &at, offset, 0x20, &what("the harness")).await?;
            let restored = load_some(cp, "t", "ns", None).await?;
            restored.verify().context(|| format!("{}, then changed back: verify", what("load")))?;
        }
    }
    Ok(())
}

/// A changed byte in a pending write's blob is `Corrupt` naming thread, checkpoint and the
/// write; the other writes and the chain still verify once it is changed back.
pub async fn changed_pending_write_byte_is_corrupt_naming_the_write(
    checkpointer: Arc<dyn Checkpointer>,
    tamper: Arc<dyn Tamper>,
) -> Result<()> {
    let cp = checkpointer.as_ref();
    let records = sealed_line(cp).await?;
    let head = &records[1];
    let writes: Vec<PendingWrite> = ["1:a:0#output", "1:b:0#output"]
        .into_iter()
        .map(|task_id| {
            let blob = seal(Codec::Bincode, FINGERPRINT, &value(task_id)).context(|| "seal".to_owned())?;
            Ok(PendingWrite { task_id: task_id.to_owned(), node: "a".to_owned(), blob })
        })
        .collect::<Result<_>>()?;
    cp.put_writes("t", "ns", &head.checkpoint_id, writes.clone()).await.context(|| "put_writes".to_owned())?;
    let target = &writes[1];
    let at = BlobLocation::pending_write("t", "ns", &head.checkpoint_id, &target.task_id);
    for offset in offsets(target.blob.len()) {
        let what = format!("byte {offset} of pending write `{}` changed", target.task_id);
        flip(tamper.as_ref(), &at, offset, 0x01, &what).await?;
        let loaded = load_some(cp, "t", "ns", None).await?;
        ensure_corrupt_at(loaded.verify(), &at, &what)?;
        flip(tamper.as_ref(), &at, offset, 0x01, &what).await?;
        load_some(cp, "t", "ns", None).await?.verify().context(|| format!("{what}, then changed back: verify"))?;
    }
    Ok(())
}
