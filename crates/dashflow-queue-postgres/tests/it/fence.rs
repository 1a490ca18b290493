//! The fence: a former owner's late writes are `Conflict` and store nothing.

use std::sync::Arc;
use std::time::Duration;

use dashflow_checkpoint::{CheckpointError, Checkpointer, PendingWrite};
use dashflow_queue::RunQueue;

use crate::support::{claim_one, queue, record, run, worker};

#[tokio::test]
async fn a_former_owners_put_and_pending_write_are_conflicts_and_store_nothing() {
    let Some((_db, queue)) = queue("a_former_owners_put_and_pending_write_are_conflicts_and_store_nothing").await
    else {
        return;
    };
    worker(&queue, "w1").await;
    worker(&queue, "w2").await;
    queue.submit(run("t")).await.unwrap();
    let old = claim_one(&queue, "w1").await;
    let old_cp = queue.fenced_checkpointer(&old.lease);
    let first = record("t", None, -1, "old");
    old_cp.put(first.clone(), None).await.unwrap();

    // The owner changes: released (epoch + 1), claimed by another worker (epoch + 1).
    queue.release(&old.lease, "test").await.unwrap();
    let new = claim_one(&queue, "w2").await;
    assert_eq!(new.lease.epoch, old.lease.epoch + 2);
    let new_cp = queue.fenced_checkpointer(&new.lease);

    let late = record("t", Some(&first.checkpoint_id), 0, "old");
    let error = old_cp.put(late, Some(&first.checkpoint_id)).await.unwrap_err();
    match &error {
        CheckpointError::Conflict { expected, actual, .. } => {
            assert_eq!(expected, &format!("lease epoch {}", old.lease.epoch));
            assert_eq!(actual, &format!("epoch {}", new.lease.epoch));
        }
        other => panic!("expected a Conflict, got {other:?}"),
    }
    let write = PendingWrite { task_id: "0:a:0/output".into(), node: "a".into(), blob: b"w".to_vec() };
    let error = old_cp.put_writes("t", "", &first.checkpoint_id, vec![write]).await.unwrap_err();
    assert!(error.is_conflict(), "{error:?}");
    let batch = vec![(record("t", Some(&first.checkpoint_id), 0, "old"), Some(first.checkpoint_id.clone()))];
    assert!(old_cp.put_batch(batch).await.unwrap_err().is_conflict());

    // Nothing of the late writes is stored; the new owner continues from the same head.
    let loaded = new_cp.load("t", "", None).await.unwrap().unwrap();
    assert_eq!(loaded.head().unwrap().checkpoint_id, first.checkpoint_id);
    assert!(loaded.pending_writes.is_empty());
    new_cp.put(record("t", Some(&first.checkpoint_id), 0, "new"), Some(&first.checkpoint_id)).await.unwrap();

    // The old lease can neither finish nor release.
    let finish = dashflow_queue::Finish::new(dashflow_queue::RunState::Completed, None);
    assert!(matches!(queue.finish(&old.lease, finish).await, Err(dashflow_queue::QueueError::LeaseLost { .. })));
    assert!(matches!(queue.release(&old.lease, "late").await, Err(dashflow_queue::QueueError::LeaseLost { .. })));
}

#[tokio::test]
async fn a_steal_during_a_stream_of_puts_lets_no_old_put_commit_after_it() {
    let Some((_db, queue)) = queue("a_steal_during_a_stream_of_puts_lets_no_old_put_commit_after_it").await else {
        return;
    };
    let queue = Arc::new(queue);
    worker(&queue, "w1").await;
    worker(&queue, "w2").await;
    queue.submit(run("t")).await.unwrap();
    let old = claim_one(&queue, "w1").await;
    let old_cp = queue.fenced_checkpointer(&old.lease);
    let first = record("t", None, -1, "old");
    old_cp.put(first.clone(), None).await.unwrap();

    // The old owner writes as fast as it can, each put expecting its own last one.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let writer = tokio::spawn(async move {
        let mut head = first.checkpoint_id.clone();
        let mut started = Some(started_tx);
        for step in 0.. {
            let next = record("t", Some(&head), step, "old");
            let id = next.checkpoint_id.clone();
            if let Err(error) = old_cp.put(next, Some(&head)).await {
                return error;
            }
            head = id;
            if step == 3 {
                let _ = started.take().map(|tx| tx.send(()));
            }
        }
        unreachable!()
    });
    started_rx.await.unwrap();
    queue.release(&old.lease, "steal").await.unwrap();
    let new = claim_one(&queue, "w2").await;
    let new_cp = queue.fenced_checkpointer(&new.lease);
    // The head the new owner sees after the steal; no old put may land on top of it.
    let head = new_cp.load("t", "", None).await.unwrap().unwrap().head().unwrap().checkpoint_id.clone();
    let error = tokio::time::timeout(Duration::from_secs(30), writer).await.unwrap().unwrap();
    assert!(error.is_conflict(), "the old owner must stop on a Conflict, got {error:?}");
    new_cp.put(record("t", Some(&head), 1000, "new"), Some(&head)).await.unwrap();
}

#[tokio::test]
async fn a_put_waiting_on_a_takeover_in_flight_reads_the_new_epoch_and_stores_nothing() {
    let Some((_db, queue)) =
        queue("a_put_waiting_on_a_takeover_in_flight_reads_the_new_epoch_and_stores_nothing").await
    else {
        return;
    };
    worker(&queue, "w1").await;
    queue.submit(run("t")).await.unwrap();
    let old = claim_one(&queue, "w1").await;
    let old_cp = queue.fenced_checkpointer(&old.lease);
    let first = record("t", None, -1, "old");
    old_cp.put(first.clone(), None).await.unwrap();

    // A takeover in flight: its transaction moved the epoch and has not committed yet.
    let mut takeover = queue.pool().begin().await.unwrap();
    let takeover_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *takeover).await.unwrap();
    sqlx::query("UPDATE dashflow_thread_fences SET epoch = epoch + 1 WHERE thread_id = 't'")
        .execute(&mut *takeover)
        .await
        .unwrap();

    // The former owner's put starts now, so its statement's snapshot still holds the old epoch;
    // its `FOR SHARE` read of the fence waits for the takeover.
    let late = record("t", Some(&first.checkpoint_id), 0, "old");
    let put = tokio::spawn({
        let (old_cp, head) = (Arc::clone(&old_cp), first.checkpoint_id.clone());
        async move { old_cp.put(late, Some(&head)).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let blocked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))")
                .bind(takeover_pid)
                .fetch_one(queue.pool())
                .await
                .unwrap();
        if blocked > 0 {
            break;
        }
        assert!(!put.is_finished(), "the put finished before the takeover committed: {:?}", put.await);
        assert!(std::time::Instant::now() < deadline, "the put never waited for the takeover's fence");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    takeover.commit().await.unwrap();

    // It read the epoch the takeover committed, not its snapshot's: a Conflict, nothing stored.
    match put.await.unwrap() {
        Err(CheckpointError::Conflict { expected, actual, .. }) => {
            assert_eq!(expected, format!("lease epoch {}", old.lease.epoch));
            assert_eq!(actual, format!("epoch {}", old.lease.epoch + 1));
        }
        other => panic!("expected a Conflict, got {other:?}"),
    }
    let stored = queue.checkpointer().list("t", &dashflow_checkpoint::ListOptions::new()).await.unwrap();
    assert_eq!(stored.len(), 1, "only the first checkpoint is stored: {stored:?}");
    assert_eq!(stored[0].checkpoint_id, first.checkpoint_id);
    let head = queue.checkpointer().load("t", "", None).await.unwrap().unwrap();
    assert_eq!(head.head().unwrap().checkpoint_id, first.checkpoint_id);

    // A lease is for its own thread only: a write elsewhere is refused before it is sent.
    let elsewhere = record("u", None, -1, "old");
    let error = old_cp.put(elsewhere, None).await.unwrap_err();
    assert!(error.is_conflict(), "{error:?}");
    assert!(queue.checkpointer().load("u", "", None).await.unwrap().is_none());
}

/// A run's first claim on a thread without a checkpoint gives a fenced checkpointer that does
/// not read the thread at the run's start; a thread with checkpoints, or a run claimed again,
/// is read.
#[tokio::test]
async fn only_a_first_claim_on_a_thread_without_checkpoints_skips_the_first_read() {
    let test = "only_a_first_claim_on_a_thread_without_checkpoints_skips_the_first_read";
    let Some((_db, queue)) = queue(test).await else { return };
    worker(&queue, "w").await;
    let plain = queue.checkpointer();
    let old = record("old", None, -1, "before");
    plain.put(old.clone(), None).await.unwrap();
    queue.submit(run("old")).await.unwrap();
    let on_old = claim_one(&queue, "w").await;
    let loaded = queue.fenced_checkpointer(&on_old.lease).load("old", "", None).await.unwrap();
    assert_eq!(loaded.and_then(|loaded| loaded.head().cloned()), Some(old), "a thread with a checkpoint is read");

    queue.submit(run("new")).await.unwrap();
    let on_new = claim_one(&queue, "w").await;
    assert!(on_new.first_claim);
    // Stored behind the claim's back: a first load that read would see it.
    let behind = record("new", None, -1, "behind");
    plain.put(behind.clone(), None).await.unwrap();
    let fenced = queue.fenced_checkpointer(&on_new.lease);
    assert!(fenced.load("new", "", None).await.unwrap().is_none(), "the first load read the new thread");
    assert!(fenced.load("new", "", None).await.unwrap().is_some(), "the second load did not read");

    // Claimed again (released, then its second claim): read.
    queue.release(&on_new.lease, "test").await.unwrap();
    let again = claim_one(&queue, "w").await;
    assert!(!again.first_claim);
    let loaded = queue.fenced_checkpointer(&again.lease).load("new", "", None).await.unwrap();
    assert_eq!(loaded.and_then(|loaded| loaded.head().cloned()), Some(behind));
}
