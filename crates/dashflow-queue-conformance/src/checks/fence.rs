//! `fence`: writes made under a lease land only while the lease holds the thread.

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointRecord, Checkpointer, ListOptions, PendingWrite};
use dashflow_queue::ClaimedRun;

use crate::error::{Context, Error, ensure, ensure_eq, fail};
use crate::fixture::{claim_one, record, run, submit, worker};
use crate::{Result, TestQueue};

fn write(task: &str) -> PendingWrite {
    PendingWrite { task_id: task.to_owned(), node: "a".to_owned(), blob: b"w".to_vec() }
}

/// A run claimed by `w1`, released and claimed by `w2`: the former and the current owner.
async fn taken_over(t: &TestQueue) -> Result<(ClaimedRun, ClaimedRun)> {
    worker(t, "w1").await?;
    worker(t, "w2").await?;
    submit(t, run("t")).await?;
    let old = claim_one(t, "w1").await?;
    t.queue().release(&old.lease, "test").await.context(|| "release".into())?;
    let new = claim_one(t, "w2").await?;
    Ok((old, new))
}

/// Workers `w1` and `w2`, and thread `t`'s run claimed by `w1`, which has put the thread's
/// first checkpoint through its fenced checkpointer: the lease, that checkpointer, the
/// checkpoint.
async fn first_owner_wrote(t: &TestQueue) -> Result<(ClaimedRun, Arc<dyn Checkpointer>, CheckpointRecord)> {
    worker(t, "w1").await?;
    worker(t, "w2").await?;
    submit(t, run("t")).await?;
    let old = claim_one(t, "w1").await?;
    let old_cp = t.queue().fenced_checkpointer(&old.lease);
    let first = record("t", None, -1, "old");
    old_cp.put(first.clone(), None).await.context(|| "the first owner's put".into())?;
    Ok((old, old_cp, first))
}

/// The owner writes through its fenced checkpointer, and the unfenced one reads it.
pub async fn the_owner_writes_through_its_fenced_checkpointer(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("t")).await?;
    let claimed = claim_one(&t, "w").await?;
    let cp = t.queue().fenced_checkpointer(&claimed.lease);
    let first = record("t", None, -1, "owner");
    cp.put(first.clone(), None).await.context(|| "the owner's put".into())?;
    cp.put_writes("t", "", &first.checkpoint_id, vec![write("0:a:0")]).await.context(|| "the owner's writes".into())?;
    let second = record("t", Some(&first.checkpoint_id), 0, "owner");
    let batch = vec![(second.clone(), Some(first.checkpoint_id.clone()))];
    cp.put_batch(batch).await.context(|| "the owner's batch".into())?;
    let stored = t.queue().checkpointer().list("t", &ListOptions::new()).await.context(|| "list".into())?;
    let ids: Vec<_> = stored.iter().map(|record| record.checkpoint_id.clone()).collect();
    ensure_eq!(ids, [second.checkpoint_id, first.checkpoint_id], "checkpoints stored by the owner, newest first");
    Ok(())
}

/// Once another worker owns the thread, a former owner's put is a `Conflict` and stores
/// nothing; the new owner continues from the same head.
pub async fn a_former_owners_put_is_a_conflict_and_stores_nothing(t: TestQueue) -> Result<()> {
    let (old, old_cp, first) = first_owner_wrote(&t).await?;
    t.queue().release(&old.lease, "test").await.context(|| "release".into())?;
    let new = claim_one(&t, "w2").await?;
    let late = record("t", Some(&first.checkpoint_id), 0, "old");
    match old_cp.put(late, Some(&first.checkpoint_id)).await {
        Err(error) if error.is_conflict() => {}
        other => fail!("a former owner's put must be a Conflict, got {other:?}"),
    }
    let batch = vec![(record("t", Some(&first.checkpoint_id), 0, "old"), Some(first.checkpoint_id.clone()))];
    match old_cp.put_batch(batch).await {
        Err(error) if error.is_conflict() => {}
        other => fail!("a former owner's put_batch must be a Conflict, got {other:?}"),
    }
    let loaded = t.queue().checkpointer().load("t", "", None).await.context(|| "load".into())?;
    let head = loaded.and_then(|loaded| loaded.head().map(|head| head.checkpoint_id.clone()));
    ensure_eq!(head, Some(first.checkpoint_id.clone()), "the head after the former owner's late puts");
    let new_cp = t.queue().fenced_checkpointer(&new.lease);
    let next = record("t", Some(&first.checkpoint_id), 0, "new");
    new_cp.put(next, Some(&first.checkpoint_id)).await.context(|| "the new owner's put".into())
}

/// Once another worker owns the thread, a former owner's pending write is a `Conflict`.
pub async fn a_former_owners_pending_write_is_a_conflict_and_stores_nothing(t: TestQueue) -> Result<()> {
    let (old, old_cp, first) = first_owner_wrote(&t).await?;
    t.queue().release(&old.lease, "test").await.context(|| "release".into())?;
    claim_one(&t, "w2").await?;
    match old_cp.put_writes("t", "", &first.checkpoint_id, vec![write("0:a:0")]).await {
        Err(error) if error.is_conflict() => {}
        other => fail!("a former owner's pending write must be a Conflict, got {other:?}"),
    }
    let loaded = t.queue().checkpointer().load("t", "", None).await.context(|| "load".into())?;
    let writes = loaded.map(|loaded| loaded.pending_writes.len());
    ensure_eq!(writes, Some(0), "pending writes stored after the former owner's late write");
    Ok(())
}

/// A former owner's finish and release are `LeaseLost`; the current owner's are not.
pub async fn a_former_owners_finish_and_release_are_lease_lost(t: TestQueue) -> Result<()> {
    let (old, new) = taken_over(&t).await?;
    let finish = dashflow_queue::Finish::new(dashflow_queue::RunState::Completed, None);
    ensure!(
        matches!(t.queue().finish(&old.lease, finish.clone()).await, Err(dashflow_queue::QueueError::LeaseLost { .. })),
        "a former owner's finish must be LeaseLost"
    );
    ensure!(
        matches!(t.queue().release(&old.lease, "late").await, Err(dashflow_queue::QueueError::LeaseLost { .. })),
        "a former owner's release must be LeaseLost"
    );
    t.queue().finish(&new.lease, finish).await.context(|| "the current owner's finish".into())
}

/// A lease fences its own thread only: a write to another thread is a `Conflict`.
pub async fn a_lease_writes_only_its_own_thread(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("t")).await?;
    let claimed = claim_one(&t, "w").await?;
    let cp = t.queue().fenced_checkpointer(&claimed.lease);
    match cp.put(record("u", None, -1, "stray"), None).await {
        Err(error) if error.is_conflict() => {}
        other => fail!("a put to another thread than the lease's must be a Conflict, got {other:?}"),
    }
    let stored = t.queue().checkpointer().load("u", "", None).await.context(|| "load".into())?;
    ensure!(stored.is_none(), "the stray put stored a checkpoint in thread u");
    Ok(())
}

/// A takeover in the middle of a former owner's stream of puts: once it is done, no put of
/// the former owner lands, and the new owner's put on the head it sees succeeds.
pub async fn a_takeover_during_a_stream_of_puts_lets_no_old_put_land_after_it(t: TestQueue) -> Result<()> {
    let (old, old_cp, first) = first_owner_wrote(&t).await?;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let writer = tokio::spawn(async move {
        let mut head = first.checkpoint_id.clone();
        let mut started = Some(started_tx);
        // Bounded: a queue that never refuses must not keep the check writing forever.
        for step in 0..10_000 {
            let next = record("t", Some(&head), step, "old");
            let id = next.checkpoint_id.clone();
            if let Err(error) = old_cp.put(next, Some(&head)).await {
                return Some(error);
            }
            head = id;
            if step == 3 {
                let _ = started.take().map(|tx| tx.send(()));
            }
            tokio::task::yield_now().await;
        }
        None
    });
    if started_rx.await.is_err() {
        let outcome = writer.await.map_err(|source| Error::Task { source })?;
        fail!("the former owner stopped before its fourth put: {outcome:?}");
    }
    t.queue().release(&old.lease, "takeover").await.context(|| "release".into())?;
    let new = claim_one(&t, "w2").await?;
    let new_cp = t.queue().fenced_checkpointer(&new.lease);
    let loaded = new_cp.load("t", "", None).await.context(|| "load".into())?;
    let Some(head) = loaded.and_then(|loaded| loaded.head().map(|head| head.checkpoint_id.clone())) else {
        fail!("the thread has no head after the former owner's puts");
    };
    match writer.await.map_err(|source| Error::Task { source })? {
        Some(error) if error.is_conflict() => {}
        other => fail!("the former owner must stop on a Conflict, got {other:?}"),
    }
    let next = record("t", Some(&head), 1_000, "new");
    new_cp.put(next, Some(&head)).await.context(|| "the new owner's put on the head it saw".into())
}

/// The owner may delete its thread and copy another thread into it; a former owner's delete
/// of the thread, or copy into it, is a `Conflict` and changes nothing.
pub async fn a_former_owners_delete_or_copy_of_its_thread_is_a_conflict_and_changes_nothing(
    t: TestQueue,
) -> Result<()> {
    let (old, old_cp, first) = first_owner_wrote(&t).await?;
    let source = record("src", None, -1, "someone");
    t.queue().checkpointer().put(source.clone(), None).await.context(|| "a put into thread src".into())?;
    t.queue().release(&old.lease, "test").await.context(|| "release".into())?;
    let new = claim_one(&t, "w2").await?;
    let new_cp = t.queue().fenced_checkpointer(&new.lease);
    let head = |thread: &'static str| {
        let t = t.clone();
        async move {
            let loaded = t.queue().checkpointer().load(thread, "", None).await.context(|| format!("load {thread}"))?;
            Ok::<_, Error>(loaded.and_then(|loaded| loaded.head().map(|head| head.checkpoint_id.clone())))
        }
    };
    match old_cp.delete_thread("t").await {
        Err(error) if error.is_conflict() => {}
        other => fail!("a former owner's delete_thread must be a Conflict, got {other:?}"),
    }
    ensure_eq!(head("t").await?, Some(first.checkpoint_id.clone()), "the head after the former owner's delete");
    new_cp.delete_thread("t").await.context(|| "the owner's delete_thread".into())?;
    ensure_eq!(head("t").await?, None, "the head after the owner's delete");
    match old_cp.copy_thread("src", "t").await {
        Err(error) if error.is_conflict() => {}
        other => fail!("a former owner's copy_thread into its thread must be a Conflict, got {other:?}"),
    }
    ensure_eq!(head("t").await?, None, "the head after the former owner's copy");
    new_cp.copy_thread("src", "t").await.context(|| "the owner's copy_thread into its thread".into())?;
    ensure_eq!(head("t").await?, Some(source.checkpoint_id), "the head after the owner's copy");
    Ok(())
}

/// What reaches beyond the lease's thread (deleting idle threads, deleting another thread,
/// copying into another thread, its own included as the source) is `OutsideFence` through a
/// fenced checkpointer, naming the unfenced one to use instead, and changes nothing.
pub async fn operations_beyond_the_leases_thread_are_outside_fence_and_change_nothing(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("t")).await?;
    let claimed = claim_one(&t, "w").await?;
    let cp = t.queue().fenced_checkpointer(&claimed.lease);
    cp.put(record("t", None, -1, "owner"), None).await.context(|| "the owner's put".into())?;
    let other = record("u", None, -1, "someone");
    t.queue().checkpointer().put(other.clone(), None).await.context(|| "a put into thread u".into())?;
    let refused = [
        ("delete_idle_threads", cp.delete_idle_threads(i64::MAX).await.map(drop)),
        ("delete_thread of thread u", cp.delete_thread("u").await),
        ("copy_thread from u into v", cp.copy_thread("u", "v").await),
        ("copy_thread from t into v", cp.copy_thread("t", "v").await),
    ];
    for (operation, result) in refused {
        match result {
            Err(error) if error.is_outside_fence() => {
                let message = error.to_string();
                ensure!(
                    message.contains("RunQueue::checkpointer()"),
                    "{operation}'s refusal must say what to use instead: {message}"
                );
            }
            other => fail!("{operation} through a fenced checkpointer must be OutsideFence, got {other:?}"),
        }
    }
    let unfenced = t.queue().checkpointer();
    for (thread, expected) in [("t", true), ("u", true), ("v", false)] {
        let stored = unfenced.load(thread, "", None).await.context(|| format!("load {thread}"))?.is_some();
        ensure_eq!(stored, expected, "whether thread {thread} has checkpoints after the refused operations");
    }
    Ok(())
}
