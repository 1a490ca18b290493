use std::sync::Arc;
use std::time::Duration;

use dashflow_queue::{GraphKey, NewRun, RunKind, RunQueue, RunState, Timings, WorkerInfo};

use crate::{ManualClock, MemoryRunQueue};

fn key() -> GraphKey {
    GraphKey::new("g", "v1", 7)
}

async fn worker(queue: &MemoryRunQueue, id: &str) {
    let info = WorkerInfo::new(id, "localhost", 1, vec!["default".to_owned()], vec![key()], 8);
    queue.register_worker(&info).await.unwrap();
}

#[tokio::test]
async fn a_swept_run_waits_out_its_backoff_on_the_queues_clock() {
    let clock = Arc::new(ManualClock::at(1_000_000));
    let queue = MemoryRunQueue::builder().clock(clock.clone()).build();
    let timings = Timings::short();
    worker(&queue, "dead").await;
    worker(&queue, "alive").await;
    queue.submit(NewRun::new(key(), "t", RunKind::Invoke, Vec::new())).await.unwrap();
    let claimed = queue.claim("dead", &["default".to_owned()], &[key()], 1).await.unwrap().remove(0);
    queue.heartbeat("dead", std::slice::from_ref(&claimed.lease), &timings).await.unwrap();
    clock.advance(timings.lease + Duration::from_millis(1));
    queue.heartbeat("alive", &[], &timings).await.unwrap();
    let report = queue.sweep(&timings).await.unwrap();
    assert_eq!(report.runs, [(claimed.lease.run_id.clone(), RunState::Queued)]);
    // The first attempt's backoff is half a heartbeat.
    assert!(queue.claim("alive", &["default".to_owned()], &[key()], 1).await.unwrap().is_empty());
    clock.advance(timings.heartbeat / 2);
    let again = queue.claim("alive", &["default".to_owned()], &[key()], 1).await.unwrap().remove(0);
    assert_eq!((again.attempt, again.first_claim), (2, false));
    assert_eq!(again.lease.epoch, claimed.lease.epoch + 2, "the sweep and the claim each bumped the fence");
}

#[tokio::test]
async fn a_draining_worker_claims_nothing_and_hears_it_in_its_heartbeat() {
    let queue = MemoryRunQueue::new();
    worker(&queue, "w").await;
    queue.submit(NewRun::new(key(), "t", RunKind::Invoke, Vec::new())).await.unwrap();
    queue.drain_worker("w").await.unwrap();
    assert!(queue.claim("w", &["default".to_owned()], &[key()], 1).await.unwrap().is_empty());
    assert!(queue.heartbeat("w", &[], &Timings::short()).await.unwrap().draining);
    assert!(queue.drain_worker("nobody").await.is_err());
}
