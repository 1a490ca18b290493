//! Finishes of concurrent runs on one pool, in groups: the pool's finisher task takes every
//! finish waiting (of distinct threads, at most [`MOST`]) and ends those runs with one
//! statement and one commit, each under its own thread's lock, taken in the order of the
//! locks' keys as a group of submits takes them, then sends the group's notifications
//! together.
//!
//! Each finish keeps its own fence check and outcome (ended, ended with the thread's next run
//! promoted, or lease lost). A group the server refuses (one run's doing, a deadlock) leaves
//! its finishes to be made again one at a time by their callers; a group whose connection
//! broke, which may have committed, reports that failure to each finish, as a lone finish
//! would. A lone finish is made by the task as a caller would make it.

use std::collections::VecDeque;
use std::sync::Arc;

use dashflow_checkpoint_postgres::__private::{self as gather, Gatherer};
use dashflow_queue::{Finish, Lease, QueueError, Result};
use sqlx::{PgConnection, PgPool, Row};

use crate::error::{corrupt, unavailable};
use crate::grouped;
use crate::notify::{Note, Notifier};
use crate::sql;

/// The most finishes one group makes.
const MOST: usize = 64;

pub(crate) const FINISH: &str = "finish a run";

/// A finish: the run's lease and how it ends.
pub(crate) struct FinishJob {
    pub(crate) lease: Lease,
    pub(crate) finish: Finish,
}

/// What a finish did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing: the lease was lost.
    Lost,
    /// The run ended.
    Ended,
    /// The run ended and its thread's next pending run is queued now.
    Promoted,
}

impl Outcome {
    fn parse(text: &str) -> Result<Self> {
        match text {
            "lost" => Ok(Self::Lost),
            "ended" => Ok(Self::Ended),
            "promoted" => Ok(Self::Promoted),
            other => Err(corrupt(format!("a finish ended as `{other}`"))),
        }
    }

    /// The notifications of `job`'s finish once committed.
    pub(crate) fn notes(self, job: &FinishJob) -> Vec<Note> {
        match self {
            Self::Lost => Vec::new(),
            Self::Ended => vec![Note::Done(job.lease.run_id.clone())],
            Self::Promoted => vec![Note::Done(job.lease.run_id.clone()), Note::Wake],
        }
    }

    /// The finish's result.
    pub(crate) fn result(self, job: &FinishJob) -> Result<()> {
        match self {
            Self::Lost => Err(QueueError::LeaseLost {
                run_id: job.lease.run_id.clone(),
                epoch: job.lease.epoch,
                why: "the run was claimed, swept, released or cancelled since".to_owned(),
            }),
            Self::Ended | Self::Promoted => Ok(()),
        }
    }
}

type Waiting = gather::Waiting<Arc<FinishJob>, Reply>;

/// How the task answers a finish.
pub(crate) type Reply = grouped::Reply<()>;

/// A pool's finisher.
#[derive(Debug)]
pub(crate) struct Finisher(Gatherer<Arc<FinishJob>, Reply>);

impl Finisher {
    pub(crate) fn new(pool: PgPool, notifier: Arc<Notifier>) -> Self {
        Self(Gatherer::new(take_group, move |group| {
            let (pool, notifier) = (pool.clone(), Arc::clone(&notifier));
            async move { finish_group(&pool, &notifier, group).await }
        }))
    }

    /// Hands `job` to the task and waits for its answer; `Alone` when the task is gone.
    pub(crate) async fn finish(&self, job: Arc<FinishJob>) -> Reply {
        self.0.call(job).await.unwrap_or(Reply::Alone)
    }
}

/// Ends `job`'s run alone on `conn`: one round trip for the fenced end and the promotion of
/// the thread's next pending run. The caller notifies after it.
pub(crate) async fn finish_one(conn: &mut PgConnection, job: &FinishJob) -> Result<Outcome> {
    let ended: String = sqlx::query_scalar(sql::FINISH)
        .bind(&job.lease.run_id)
        .bind(job.lease.epoch)
        .bind(job.finish.state.as_str())
        .bind(job.finish.checkpoint_id.as_deref())
        .bind(job.finish.error.as_deref())
        .bind(&job.lease.thread_id)
        .bind(sql::THREAD_LOCK)
        .fetch_one(conn)
        .await
        .map_err(unavailable(FINISH))?;
    Outcome::parse(&ended)
}

/// The first waiting finish and every later one of another thread, up to [`MOST`], in arrival
/// order; the rest keep their places.
fn take_group(waiting: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    gather::take_group(waiting, MOST, |_, _| true, |a, b| a.job.lease.thread_id == b.job.lease.thread_id)
}

async fn finish_group(pool: &PgPool, notifier: &Notifier, group: Vec<Waiting>) {
    let Some((group, outcomes)) =
        grouped::make(pool, FINISH, group, async |conn, job: &Arc<FinishJob>| finish_one(conn, job).await, finish_many)
            .await
    else {
        return;
    };
    let mut notes = Vec::new();
    for (waiting, outcome) in group.iter().zip(&outcomes) {
        if let Ok(ended) = outcome {
            notes.extend(ended.notes(&waiting.job));
        }
    }
    if !notes.is_empty() {
        notifier.send(notes).await;
    }
    for (waiting, outcome) in group.into_iter().zip(outcomes) {
        let result = outcome.and_then(|ended| ended.result(&waiting.job));
        waiting.answer(Reply::Done(result));
    }
}

/// The finishes of `group` in one statement: each one's outcome, in the group's order.
async fn finish_many(
    conn: &mut PgConnection,
    group: &[Waiting],
) -> std::result::Result<Vec<Result<Outcome>>, sqlx::Error> {
    let jobs: Vec<&FinishJob> = group.iter().map(|waiting| &*waiting.job).collect();
    let rows = sqlx::query(sql::FINISH_MANY)
        .bind(jobs.iter().map(|job| job.lease.run_id.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|job| job.lease.epoch).collect::<Vec<_>>())
        .bind(jobs.iter().map(|job| job.finish.state.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|job| job.finish.checkpoint_id.as_deref()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|job| job.finish.error.as_deref()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|job| job.lease.thread_id.as_str()).collect::<Vec<_>>())
        .bind(sql::THREAD_LOCK)
        .fetch_all(conn)
        .await?;
    let mut outcomes: Vec<Result<Outcome>> =
        (0..jobs.len()).map(|_| Err(corrupt("a finish of the group came back without an outcome"))).collect();
    for row in &rows {
        let (ord, ended): (i64, String) = match (row.try_get("ord"), row.try_get("ended")) {
            (Ok(ord), Ok(ended)) => (ord, ended),
            (Err(error), _) | (_, Err(error)) => return Err(error),
        };
        if let Some(slot) = usize::try_from(ord - 1).ok().and_then(|index| outcomes.get_mut(index)) {
            *slot = Outcome::parse(&ended);
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use dashflow_queue::RunState;

    use super::*;

    fn waiting(run: &str, thread: &str) -> Waiting {
        let lease = Lease { run_id: run.into(), thread_id: thread.into(), worker_id: "w".into(), epoch: 1 };
        Waiting::new(Arc::new(FinishJob { lease, finish: Finish::new(RunState::Completed, None) })).0
    }

    fn runs(group: &[Waiting]) -> Vec<&str> {
        group.iter().map(|waiting| waiting.job.lease.run_id.as_str()).collect()
    }

    #[test]
    fn a_group_takes_one_finish_per_thread() {
        let mut queue: VecDeque<Waiting> =
            [("r1", "a"), ("r2", "b"), ("r3", "a"), ("r4", "c")].into_iter().map(|(r, t)| waiting(r, t)).collect();
        assert_eq!(runs(&take_group(&mut queue)), ["r1", "r2", "r4"]);
        assert_eq!(runs(&take_group(&mut queue)), ["r3"]);
        assert!(queue.is_empty());
    }
}
