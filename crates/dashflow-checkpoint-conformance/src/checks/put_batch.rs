//! `put_batch`: several puts handed over at once, as the `Async` writer does.

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointError, Checkpointer, ListOptions};

use crate::Result;
use crate::error::Context;
use crate::fixture::{contract, delta, ensure_records, list, snapshot};

/// A chain of records, each expecting the one before it, is stored in order.
pub async fn stores_a_chain_in_order(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let first = snapshot("t", "", None);
    let second = delta("t", "", &first);
    let third = delta("t", "", &second);
    let batch = vec![
        (first.clone(), None),
        (second.clone(), Some(first.checkpoint_id.clone())),
        (third.clone(), Some(second.checkpoint_id.clone())),
    ];
    cp.put_batch(batch).await.context(|| "put_batch of a three-record chain".to_owned())?;
    ensure_records(&list(cp, "t", &ListOptions::new()).await?, &[&third, &second, &first], "list after the batch")
}

/// A record whose expected head is stale fails with `Conflict`; the records before it stay,
/// the failed one and those after it are not stored.
pub async fn stops_at_the_first_conflict_keeping_what_came_before(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let first = snapshot("t", "", None);
    let second = delta("t", "", &first);
    let stale = delta("t", "", &first);
    let after = delta("t", "", &stale);
    let batch = vec![
        (first.clone(), None),
        (second.clone(), Some(first.checkpoint_id.clone())),
        // Expects `first`, but the head is `second` by now.
        (stale.clone(), Some(first.checkpoint_id.clone())),
        (after, Some(stale.checkpoint_id.clone())),
    ];
    match cp.put_batch(batch).await {
        Err(CheckpointError::Conflict { .. }) => {}
        other => {
            return Err(contract(format!("a batch with a stale expected head returned {other:?}; expected Conflict")));
        }
    }
    ensure_records(&list(cp, "t", &ListOptions::new()).await?, &[&second, &first], "list after the failed batch")
}
