use std::sync::Arc;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_scheduler_runs_every_spawned_task_to_completion() {
    let scheduler: Arc<dyn Scheduler> = Arc::new(TokioScheduler);
    let mut receivers = Vec::new();
    for i in 0..64u64 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        scheduler.spawn(Box::pin(async move {
            tokio::task::yield_now().await;
            let _ = tx.send(i * i);
        }));
        receivers.push(rx);
    }
    let mut results = Vec::new();
    for rx in receivers {
        results.push(rx.await.expect("task dropped its sender"));
    }
    assert_eq!(results, (0..64u64).map(|i| i * i).collect::<Vec<_>>());
}

#[test]
fn tokio_scheduler_allows_inline_single_tasks() {
    assert!(TokioScheduler.runs_single_tasks_inline());
}
