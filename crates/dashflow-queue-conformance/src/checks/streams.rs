//! `streams`: runs' event streams, appended under the fence (optional).

use std::sync::Arc;
use std::time::Duration;

use dashflow_queue::{Finish, QueueError, RunState, RunStreams, StreamEntry, Wake};
use serde_json::json;

use crate::error::{Context, ensure, ensure_eq, fail};
use crate::fixture::{claim_one, run, submit, worker};
use crate::{Result, TestQueue};

fn streams(t: &TestQueue) -> Result<Arc<dyn RunStreams>> {
    match t.queue().streams() {
        Some(streams) => Ok(streams),
        None => fail!("the queue declares streams, but `streams` is None"),
    }
}

fn entries(steps: &[Option<i64>], tag: &str) -> Vec<StreamEntry> {
    steps.iter().map(|step| StreamEntry::new(*step, json!({ "by": tag, "step": step }))).collect()
}

/// Items are numbered 1, 2, 3, ... across a takeover; a former owner's append is
/// `LeaseLost` and stores nothing; the new attempt's items of steps the first reached are
/// re-runs.
pub async fn numbered_without_gaps_across_a_takeover(t: TestQueue) -> Result<()> {
    let streams = streams(&t)?;
    worker(&t, "w1").await?;
    worker(&t, "w2").await?;
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    let first = claim_one(&t, "w1").await?;
    let last = streams.append(&first.lease, 1, &entries(&[None, Some(1), Some(2)], "w1")).await;
    ensure_eq!(last.context(|| "append".into())?, 3, "the last number of the first append");
    t.queue().release(&first.lease, "test").await.context(|| "release".into())?;
    let second = claim_one(&t, "w2").await?;
    match streams.append(&first.lease, 1, &entries(&[Some(3)], "late")).await {
        Err(QueueError::LeaseLost { .. }) => {}
        other => fail!("a former owner's append must be LeaseLost, got {other:?}"),
    }
    let last = streams.append(&second.lease, 2, &entries(&[Some(2), Some(3)], "w2")).await;
    ensure_eq!(last.context(|| "append".into())?, 5, "the last number after the takeover");
    let items = streams.read(&submitted.run_id, 0, 100).await.context(|| "read".into())?;
    let read: Vec<(i64, i32, bool)> = items.iter().map(|item| (item.seq, item.attempt, item.rerun)).collect();
    ensure_eq!(read, [(1, 1, false), (2, 1, false), (3, 1, false), (4, 2, true), (5, 2, false)], "items");
    ensure!(items.iter().all(|item| item.payload["by"] != "late"), "the late append stored something");
    ensure!(items.windows(2).all(|pair| pair[0].epoch <= pair[1].epoch), "epochs go down: {items:?}");
    Ok(())
}

/// Reading after any item, with any limit, returns exactly the items after it.
pub async fn a_read_after_any_item_returns_exactly_the_items_after_it(t: TestQueue) -> Result<()> {
    let streams = streams(&t)?;
    worker(&t, "w").await?;
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    let claimed = claim_one(&t, "w").await?;
    streams.append(&claimed.lease, 1, &entries(&[None, Some(0), Some(1)], "a")).await.context(|| "append".into())?;
    streams.append(&claimed.lease, 1, &entries(&[Some(2), None], "b")).await.context(|| "append".into())?;
    let all = streams.read(&submitted.run_id, 0, 100).await.context(|| "read".into())?;
    ensure_eq!(all.iter().map(|item| item.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5], "numbers");
    for after in 0..=5 {
        for limit in 1..=6 {
            let read = streams.read(&submitted.run_id, after, limit).await.context(|| "read".into())?;
            let from = usize::try_from(after).unwrap_or(0);
            ensure_eq!(read, all[from..all.len().min(from + limit)].to_vec(), "after {after}, limit {limit}");
        }
    }
    let from_negative = streams.read(&submitted.run_id, -3, 2).await.context(|| "read".into())?;
    ensure_eq!(from_negative, all[..2].to_vec(), "reading after a negative number");
    Ok(())
}

/// Trimming deletes the streams of runs that ended long enough ago, and no other.
pub async fn trim_deletes_only_the_streams_of_runs_that_ended(t: TestQueue) -> Result<()> {
    let streams = streams(&t)?;
    worker(&t, "w").await?;
    submit(&t, run("ended")).await?;
    submit(&t, run("running")).await?;
    let ended = claim_one(&t, "w").await?;
    let running = claim_one(&t, "w").await?;
    streams.append(&ended.lease, 1, &entries(&[Some(1), Some(2)], "e")).await.context(|| "append".into())?;
    streams.append(&running.lease, 1, &entries(&[Some(1)], "r")).await.context(|| "append".into())?;
    t.queue().finish(&ended.lease, Finish::new(RunState::Completed, None)).await.context(|| "finish".into())?;
    ensure_eq!(streams.trim(Duration::from_secs(3600)).await.context(|| "trim".into())?, 0, "items trimmed within");
    t.pass(Duration::from_millis(10)).await;
    ensure_eq!(streams.trim(Duration::ZERO).await.context(|| "trim".into())?, 2, "items trimmed after the run ended");
    ensure!(streams.read(&ended.lease.run_id, 0, 10).await.context(|| "read".into())?.is_empty(), "ended stream");
    let kept = streams.read(&running.lease.run_id, 0, 10).await.context(|| "read".into())?;
    ensure_eq!(kept.len(), 1, "items of the running run's stream after the trim");
    Ok(())
}

/// The streams' wake-ups tell a follower what it waits for: items appended to a run's
/// stream, and the run's end.
pub async fn wakeups_announce_appends_and_the_runs_end(t: TestQueue) -> Result<()> {
    let streams = streams(&t)?;
    worker(&t, "w").await?;
    let submitted = run("t");
    submit(&t, submitted.clone()).await?;
    let claimed = claim_one(&t, "w").await?;
    let Some(mut wakeups) = streams.wakeups().await.context(|| "stream wake-ups".into())? else {
        fail!("the queue declares wake-ups and streams, but its streams' `wakeups` is None")
    };
    let run_id = submitted.run_id.clone();
    streams.append(&claimed.lease, 1, &entries(&[Some(1)], "a")).await.context(|| "append".into())?;
    t.queue().finish(&claimed.lease, Finish::new(RunState::Completed, None)).await.context(|| "finish".into())?;
    let (mut appended, mut ended) = (false, false);
    let heard = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(wake) = wakeups.next().await {
            appended |= wake == Wake::Events(run_id.clone());
            ended |= wake == Wake::Done(run_id.clone());
            if appended && ended {
                return true;
            }
        }
        false
    })
    .await;
    ensure!(heard == Ok(true), "the stream's wake-ups missed the append ({appended}) or the run's end ({ended})");
    Ok(())
}
