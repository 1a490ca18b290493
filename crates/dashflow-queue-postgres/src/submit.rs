//! Submits of concurrent callers on one pool, in groups: the pool's submitter task takes every
//! submit waiting (of distinct threads, at most [`MOST`]) and makes them with two statements
//! where each made two of its own: one that moves the tenants' clocks for all of them (in a
//! transaction that waits for no flush, as one tick does), and one that submits them all (one
//! commit), each under its own thread's lock, taken in the order of the locks' keys so that
//! two groups never wait for each other in a circle. The workers are woken once for the group.
//!
//! Each submit keeps its own outcome (queued, pending, busy, the same run submitted before). A
//! group whose statement fails (one run's doing, or a broken connection) leaves its submits to
//! be made again one at a time by their callers, as a submit was made before; a lone submit is
//! made by the task as a caller would make it.

use std::collections::VecDeque;
use std::sync::Arc;

use dashflow_checkpoint_postgres::__private::{self as gather, Gatherer};
use dashflow_queue::{Multitask, NewRun, QueueError, Result, RunState};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use crate::error::{corrupt, unavailable};
use crate::notify::{Note, Notifier};
use crate::sql;

/// The most submits one group makes.
const MOST: usize = 64;

const SUBMIT: &str = "submit a run";

/// A submit's run and its config as JSON text.
pub(crate) struct SubmitJob {
    pub(crate) run: NewRun,
    pub(crate) config: String,
}

/// How the task answers a submit.
pub(crate) enum Reply {
    /// Made: the submit's outcome, the workers woken when it queued the run.
    Done(Result<RunState>),
    /// Not made by the group: the caller makes it alone.
    Alone,
}

type Waiting = gather::Waiting<Arc<SubmitJob>, Reply>;

/// A pool's submitter.
#[derive(Debug)]
pub(crate) struct Submitter(Gatherer<Arc<SubmitJob>, Reply>);

impl Submitter {
    pub(crate) fn new(pool: PgPool, notifier: Arc<Notifier>) -> Arc<Self> {
        Arc::new(Self(Gatherer::new(take_group, move |group| {
            let (pool, notifier) = (pool.clone(), Arc::clone(&notifier));
            async move { submit_group(&pool, &notifier, group).await }
        })))
    }

    /// Hands `job` to the task and waits for its answer; `Alone` when the task is gone.
    pub(crate) async fn submit(&self, job: Arc<SubmitJob>) -> Reply {
        self.0.call(job).await.unwrap_or(Reply::Alone)
    }
}

/// Makes submit `job` alone on `conn`: its clock tick, then the submit. Whether it queued the
/// run (the caller then wakes the workers) comes with the outcome.
pub(crate) async fn submit_one(conn: &mut PgConnection, job: &SubmitJob) -> Result<(RunState, bool)> {
    let run = &job.run;
    let vtime: Option<i64> = sqlx::query_scalar(sql::TICK)
        .bind(&run.run_id)
        .bind(&run.thread_id)
        .bind(&run.queue)
        .bind(run.priority.level())
        .bind(&run.tenant)
        .bind(run.multitask == Multitask::Enqueue)
        .fetch_one(&mut *conn)
        .await
        .map_err(unavailable(SUBMIT))?;
    let row = sqlx::query(sql::SUBMIT)
        .bind(&run.run_id)
        .bind(&run.queue)
        .bind(run.graph_key.as_str())
        .bind(&run.thread_id)
        .bind(&run.tenant)
        .bind(run.priority.level())
        .bind(run.kind.as_str())
        .bind(&run.input)
        .bind(&job.config)
        .bind(run.max_attempts)
        .bind(run.multitask == Multitask::Enqueue)
        .bind(sql::THREAD_LOCK)
        .bind(vtime)
        .fetch_one(&mut *conn)
        .await
        .map_err(unavailable(SUBMIT))?;
    outcome(run, &row)
}

/// A submit's outcome from its row (`outcome`, `run_state`, `active_run`), and whether it
/// queued the run.
fn outcome(run: &NewRun, row: &PgRow) -> Result<(RunState, bool)> {
    let column = |name: &str| {
        row.try_get::<Option<String>, _>(name).map_err(|error| corrupt(format!("column `{name}`: {error}")))
    };
    let state = || {
        let text = column("run_state")?.unwrap_or_default();
        RunState::parse(&text).ok_or_else(|| corrupt(format!("unknown run state `{text}`")))
    };
    match column("outcome")?.as_deref() {
        Some("busy") => Err(QueueError::ThreadBusy {
            thread_id: run.thread_id.clone(),
            active_run: column("active_run")?.unwrap_or_default(),
        }),
        Some("submitted") => state().map(|state| (state, state == RunState::Queued)),
        // `existing`: the same run submitted twice is submitted once.
        _ => state().map(|state| (state, false)),
    }
}

/// The first waiting submit and every later one of another thread, up to [`MOST`], in arrival
/// order; the rest keep their places (a thread's submits are made in the order they came).
fn take_group(waiting: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    gather::take_group(waiting, MOST, |_, _| true, |a, b| a.job.run.thread_id == b.job.run.thread_id)
}

async fn submit_group(pool: &PgPool, notifier: &Notifier, mut group: Vec<Waiting>) {
    group.retain(|waiting| !waiting.abandoned());
    if group.is_empty() {
        return;
    }
    let Ok(mut conn) = pool.acquire().await else {
        return answer(group.into_iter().map(|waiting| (waiting, Reply::Alone)));
    };
    let outcomes = if group.len() == 1 {
        vec![submit_one(&mut conn, &group[0].job).await]
    } else {
        match submit_many(&mut conn, &group).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::debug!(submits = group.len(), %error, "a group of submits failed; each is made alone");
                return answer(group.into_iter().map(|waiting| (waiting, Reply::Alone)));
            }
        }
    };
    drop(conn);
    if outcomes.iter().any(|outcome| matches!(outcome, Ok((_, true)))) {
        notifier.send(vec![Note::Wake]).await;
    }
    answer(
        group
            .into_iter()
            .zip(outcomes)
            .map(|(waiting, outcome)| (waiting, Reply::Done(outcome.map(|(state, _)| state)))),
    );
}

fn answer(replies: impl Iterator<Item = (Waiting, Reply)>) {
    for (waiting, reply) in replies {
        waiting.answer(reply);
    }
}

/// The clock ticks of `group` in one statement, then its submits in another: each submit's
/// outcome, in the group's order. An error of either statement is the whole group's.
async fn submit_many(conn: &mut PgConnection, group: &[Waiting]) -> Result<Vec<Result<(RunState, bool)>>> {
    let runs: Vec<&NewRun> = group.iter().map(|waiting| &waiting.job.run).collect();
    let text = |f: &dyn Fn(&NewRun) -> &str| runs.iter().map(|run| f(run)).collect::<Vec<&str>>();
    let levels: Vec<i16> = runs.iter().map(|run| run.priority.level()).collect();
    let enqueue: Vec<bool> = runs.iter().map(|run| run.multitask == Multitask::Enqueue).collect();
    let ticks = sqlx::query(sql::TICK_MANY)
        .bind(text(&|run| &run.run_id))
        .bind(text(&|run| &run.thread_id))
        .bind(text(&|run| &run.queue))
        .bind(&levels)
        .bind(text(&|run| &run.tenant))
        .bind(&enqueue)
        .fetch_all(&mut *conn)
        .await
        .map_err(unavailable(SUBMIT))?;
    let mut vtimes: Vec<Option<i64>> = vec![None; group.len()];
    for row in &ticks {
        let ord: i64 = row.try_get("ord").map_err(|error| corrupt(format!("column `ord`: {error}")))?;
        let vtime: Option<i64> = row.try_get("vtime").map_err(|error| corrupt(format!("column `vtime`: {error}")))?;
        if let Some(slot) = usize::try_from(ord - 1).ok().and_then(|index| vtimes.get_mut(index)) {
            *slot = vtime;
        }
    }
    let rows = sqlx::query(sql::SUBMIT_MANY)
        .bind(text(&|run| &run.run_id))
        .bind(text(&|run| &run.queue))
        .bind(text(&|run| run.graph_key.as_str()))
        .bind(text(&|run| &run.thread_id))
        .bind(text(&|run| &run.tenant))
        .bind(&levels)
        .bind(text(&|run| run.kind.as_str()))
        .bind(runs.iter().map(|run| run.input.as_slice()).collect::<Vec<&[u8]>>())
        .bind(group.iter().map(|waiting| waiting.job.config.as_str()).collect::<Vec<&str>>())
        .bind(runs.iter().map(|run| run.max_attempts).collect::<Vec<i32>>())
        .bind(&enqueue)
        .bind(sql::THREAD_LOCK)
        .bind(&vtimes)
        .fetch_all(&mut *conn)
        .await
        .map_err(unavailable(SUBMIT))?;
    let mut outcomes: Vec<Option<Result<(RunState, bool)>>> = (0..group.len()).map(|_| None).collect();
    for row in &rows {
        let ord: i64 = row.try_get("ord").map_err(|error| corrupt(format!("column `ord`: {error}")))?;
        let index = usize::try_from(ord - 1).ok().filter(|index| *index < runs.len());
        let Some(index) = index else { return Err(corrupt(format!("a submit numbered {ord} of {}", runs.len()))) };
        outcomes[index] = Some(outcome(runs[index], row));
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.ok_or_else(|| corrupt("a submit of the group came back without an outcome".to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use dashflow_queue::{GraphKey, RunKind};

    use super::*;

    fn waiting(thread: &str) -> Waiting {
        let run = NewRun::new(GraphKey::new("g", "v1", 7), thread, RunKind::Invoke, Vec::new());
        Waiting::new(Arc::new(SubmitJob { run, config: "{}".into() })).0
    }

    fn threads(group: &[Waiting]) -> Vec<&str> {
        group.iter().map(|waiting| waiting.job.run.thread_id.as_str()).collect()
    }

    #[test]
    fn a_group_takes_one_submit_per_thread_and_keeps_each_threads_order() {
        let mut queue: VecDeque<Waiting> = ["a", "b", "a", "c", "a", "b"].into_iter().map(waiting).collect();
        let first = take_group(&mut queue);
        assert_eq!(threads(&first), ["a", "b", "c"]);
        let second = take_group(&mut queue);
        assert_eq!(threads(&second), ["a", "b"]);
        let third = take_group(&mut queue);
        assert_eq!(threads(&third), ["a"]);
        assert!(queue.is_empty());
    }
}
