//! `wakeups`: hints that work was queued or a run ended (optional).

use std::time::Duration;

use dashflow_queue::{Finish, RunState, Wake, Wakeups};

use crate::error::{Context, ensure, fail};
use crate::fixture::{claim_one, run, submit, worker};
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
