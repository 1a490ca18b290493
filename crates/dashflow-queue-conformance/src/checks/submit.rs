//! `submit`: queued, pending behind a busy thread, or refused.

use dashflow_queue::{Multitask, Priority, QueueError, RunFilter, RunKind, RunState, WorkerInfo};

use crate::error::{Context, ensure, ensure_eq, fail};
use crate::fixture::{key, queues, run, submit};
use crate::{Result, TestQueue};

/// A run on a free thread is queued, and `get` returns what was submitted.
pub async fn a_run_on_a_free_thread_is_queued_as_submitted(t: TestQueue) -> Result<()> {
    let submitted = run("t").tenant("acme").priority(Priority::High).queue("default");
    ensure_eq!(submit(&t, submitted.clone()).await?, RunState::Queued, "state of a run submitted on a free thread");
    let Some(stored) = t.queue().get(&submitted.run_id).await.context(|| "get of the submitted run".into())? else {
        fail!("`get` does not find run {} right after its submit", submitted.run_id);
    };
    let read = (&stored.run_id, &stored.queue, &stored.graph_key, &stored.thread_id, &stored.tenant);
    ensure_eq!(read, (&submitted.run_id, &"default".to_owned(), &key(), &"t".to_owned(), &"acme".to_owned()), "ids");
    ensure_eq!(
        (stored.priority, stored.state, stored.kind),
        (Priority::High, RunState::Queued, RunKind::Invoke),
        "run"
    );
    ensure_eq!((stored.attempt, &stored.worker_id, stored.lease_epoch), (0, &None, None), "claims of a new run");
    ensure!(!stored.cancel_requested && stored.finished_at_ms.is_none(), "a new run is not over: {stored:?}");
    Ok(())
}

/// Submitting the same run id again stores nothing new and says where the run is.
pub async fn the_same_run_twice_is_one_run(t: TestQueue) -> Result<()> {
    let first = run("t");
    submit(&t, first.clone()).await?;
    ensure_eq!(submit(&t, first.clone()).await?, RunState::Queued, "state returned by a repeated submit");
    let runs = t.queue().list(&dashflow_queue::RunFilter::new()).await.context(|| "list".into())?;
    ensure_eq!(runs.len(), 1, "runs stored after submitting one run twice");
    Ok(())
}

/// A second run of a busy thread is refused with `ThreadBusy` naming the active run.
pub async fn a_busy_thread_rejects_with_thread_busy_naming_the_active_run(t: TestQueue) -> Result<()> {
    let first = run("t");
    submit(&t, first.clone()).await?;
    match t.queue().submit(run("t")).await {
        Err(QueueError::ThreadBusy { thread_id, active_run }) => {
            ensure_eq!((thread_id, active_run), ("t".to_owned(), first.run_id.clone()), "ThreadBusy's thread and run");
        }
        other => fail!("a second run of a busy thread must be ThreadBusy, got {other:?}"),
    }
    Ok(())
}

/// With `Multitask::Enqueue`, a run of a busy thread waits as `pending`.
pub async fn enqueue_on_a_busy_thread_is_pending(t: TestQueue) -> Result<()> {
    submit(&t, run("t")).await?;
    let second = run("t").multitask(Multitask::Enqueue);
    ensure_eq!(submit(&t, second.clone()).await?, RunState::Pending, "state of an enqueued run of a busy thread");
    // Another thread is not busy.
    ensure_eq!(submit(&t, run("u")).await?, RunState::Queued, "state of a run of another thread");
    Ok(())
}

/// A run without a thread is `Invalid`.
pub async fn an_empty_thread_id_is_invalid(t: TestQueue) -> Result<()> {
    match t.queue().submit(run("")).await {
        Err(QueueError::Invalid { .. }) => Ok(()),
        other => fail!("a run with an empty thread id must be Invalid, got {other:?}"),
    }
}

/// A NUL character in a run's id, thread, queue or tenant, or in a worker's id, is `Invalid`
/// (PostgreSQL cannot store one), and nothing is stored.
pub async fn a_nul_character_in_an_id_is_invalid(t: TestQueue) -> Result<()> {
    let runs =
        [run("t").run_id("run\0id"), run("thread\0id"), run("t").queue("queue\0name"), run("t").tenant("tenant\0name")];
    for submitted in runs {
        match t.queue().submit(submitted.clone()).await {
            Err(QueueError::Invalid { .. }) => {}
            other => fail!("a run with a NUL character must be Invalid, got {other:?} for {submitted:?}"),
        }
    }
    let listed = t.queue().list(&RunFilter::new()).await.context(|| "list".into())?;
    ensure!(listed.is_empty(), "refused runs were stored: {listed:?}");
    let info = WorkerInfo::new("worker\0id", "host", 1, queues(), vec![key()], 1);
    match t.queue().register_worker(&info).await {
        Err(QueueError::Invalid { .. }) => Ok(()),
        other => fail!("a worker id with a NUL character must be Invalid, got {other:?}"),
    }
}
