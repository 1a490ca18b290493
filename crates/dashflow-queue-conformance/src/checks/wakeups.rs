//! `wakeups`: hints that work was queued or a run ended (optional).

use std::collections::BTreeSet;
use std::time::Duration;

use dashflow_queue::{Finish, RunState, Wake, Wakeups};

use crate::error::{Context, ensure, fail};
use crate::fixture::{claim_one, run, state_of, submit, sweep_until_stopped, timings, worker};
use crate::{Result, TestQueue};

/// How long a wake-up may take to arrive before the check gives up.
const WITHIN: Duration = Duration::from_secs(30);

async fn listen(t: &TestQueue) -> Result<Box<dyn Wakeups>> {
    match t.queue().wakeups().await.context(|| "wakeups".into())? {
        Some(wakeups) => Ok(wakeups),
        None => fail!("the queue declares wake-ups, but `wakeups` is None"),
    }
}

/// Waits for a wake-up `wanted` accepts, skipping others (`Missed` included).
async fn heard(wakeups: &mut Box<dyn Wakeups>, what: &str, wanted: impl Fn(&Wake) -> bool) -> Result<()> {
    let found = tokio::time::timeout(WITHIN, async {
        while let Some(wake) = wakeups.next().await {
            if wanted(&wake) {
                return true;
            }
        }
        false
    })
    .await;
    ensure!(found == Ok(true), "no wake-up for {what}");
    Ok(())
}

/// A submit wakes listeners for work.
pub async fn a_submit_wakes_for_work(t: TestQueue) -> Result<()> {
    let mut wakeups = listen(&t).await?;
    submit(&t, run("t")).await?;
    heard(&mut wakeups, "a submit", |wake| *wake == Wake::Work).await
}

/// A finish tells listeners that the run ended.
pub async fn a_finish_says_the_run_is_done(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("t")).await?;
    let claimed = claim_one(&t, "w").await?;
    let mut wakeups = listen(&t).await?;
    t.queue().finish(&claimed.lease, Finish::new(RunState::Completed, None)).await.context(|| "finish".into())?;
    let run_id = claimed.lease.run_id.clone();
    heard(&mut wakeups, "a finish", move |wake| *wake == Wake::Done(run_id.clone())).await
}

/// A release and a give-up that end runs asked to cancel tell listeners those runs ended,
/// as a finish does.
pub async fn a_release_or_give_up_of_a_run_asked_to_cancel_says_it_is_done(t: TestQueue) -> Result<()> {
    worker(&t, "w").await?;
    submit(&t, run("released")).await?;
    submit(&t, run("given up")).await?;
    let (released, given_up) = (claim_one(&t, "w").await?, claim_one(&t, "w").await?);
    for claimed in [&released, &given_up] {
        t.queue().cancel(&claimed.lease.run_id).await.context(|| "cancel".into())?;
    }
    let mut wakeups = listen(&t).await?;
    t.queue().release(&released.lease, "shutting down").await.context(|| "release".into())?;
    t.queue().give_up(&given_up.lease, "stuck").await.context(|| "give up".into())?;
    for claimed in [&released, &given_up] {
        // Not ended, there is nothing to hear (and no reason to wait for it).
        let state = state_of(&t, &claimed.lease.run_id).await?;
        ensure!(state == RunState::Cancelled, "a run asked to cancel, released or given up, is {state}");
    }
    let mut waiting: BTreeSet<String> = [&released, &given_up].map(|claimed| claimed.lease.run_id.clone()).into();
    let heard_all = tokio::time::timeout(WITHIN, async {
        while let Some(wake) = wakeups.next().await {
            if let Wake::Done(run_id) = wake {
                waiting.remove(&run_id);
            }
            if waiting.is_empty() {
                return true;
            }
        }
        false
    })
    .await;
    ensure!(heard_all == Ok(true), "no `Done` wake-up for the cancelled runs {waiting:?}");
    Ok(())
}

/// A sweep that ends a run (here one asked to cancel, whose worker died) tells listeners the
/// run ended, as a finish does.
pub async fn a_sweep_that_ends_a_run_says_it_is_done(t: TestQueue) -> Result<()> {
    worker(&t, "dead").await?;
    worker(&t, "alive").await?;
    submit(&t, run("t")).await?;
    let claimed = claim_one(&t, "dead").await?;
    let lease = std::slice::from_ref(&claimed.lease);
    t.queue().heartbeat("dead", lease, &timings()).await.context(|| "heartbeat".into())?;
    t.queue().cancel(&claimed.lease.run_id).await.context(|| "cancel".into())?;
    let mut wakeups = listen(&t).await?;
    sweep_until_stopped(&t, "dead", "alive").await?;
    let run_id = claimed.lease.run_id.clone();
    heard(&mut wakeups, "a sweep that cancelled the run", move |wake| *wake == Wake::Done(run_id.clone())).await
}
