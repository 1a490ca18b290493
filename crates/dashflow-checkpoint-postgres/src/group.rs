//! Group commit: puts of concurrent writers on one pool share a statement and a commit.
//!
//! A put hands its record to the pool's committer task and waits. The task takes every put
//! waiting, of distinct threads or namespaces, and stores them with one statement
//! ([`Writes::put_many`] for puts that expect a head, [`Writes::put_first_many`] for the first
//! puts of namespaces), one round trip and one commit, while the next puts queue behind it; a put returns once the statement that
//! stored it committed, so a `Sync` run's checkpoint is as durable as before. Each record keeps
//! its own checks (its expected head, its own thread's fence epoch), so one record refused
//! never holds back the others.
//!
//! What the group does not store (a refusal, a failed statement), the put tries again on its
//! own with the single statement and its retries (`Reply::Alone`), which tell a refusal from a
//! lost acknowledgement and report it as before; a lone put is stored by the task with the
//! single statement. So a group changes how many commits carry the puts, never what a put
//! reports.

use std::collections::VecDeque;
use std::sync::Arc;

use dashflow_checkpoint::{CheckpointId, CheckpointRecord};
use sqlx::PgPool;

use crate::gather::{self, Gatherer};

use crate::checkpointer::{Fenced, Put, PutValues, Try, put_on};
use crate::error::{Error, Retry};
use crate::sql::{self, Writes};

/// The most puts one statement carries.
const MOST: usize = 64;

/// A put's record and what it expects, shared by the waiting put and the task (no copy of the
/// blob either way).
pub(crate) struct PutJob {
    pub(crate) record: CheckpointRecord,
    pub(crate) values: PutValues,
    /// The head the put expects, `None` for a namespace's first put.
    pub(crate) expected: Option<CheckpointId>,
    pub(crate) writes: Arc<Writes>,
    pub(crate) epoch: Option<i64>,
}

impl PutJob {
    fn fenced(&self) -> Fenced<'_> {
        Fenced { writes: &self.writes, epoch: self.epoch }
    }

    /// Whether `self` and `other` are for the same statement: the same fence table, or none;
    /// both first puts or neither.
    fn joins(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.writes, &other.writes) && self.expected.is_some() == other.expected.is_some()
    }

    /// Whether `self` and `other` move the same head, which only one put of a group could.
    fn same_head(&self, other: &Self) -> bool {
        self.record.thread_id == other.record.thread_id && self.record.namespace == other.record.namespace
    }
}

/// How the task answers a put.
pub(crate) enum Reply {
    /// Stored, or refused with the put's own `Conflict`: the put's result.
    Done(Result<(), Error>),
    /// Not stored by the group: the put is to be tried on its own. `after` is the failure of a
    /// try the put made (the put retries as its policy says, as after its own first try);
    /// `None` when its record shared a statement that failed, which may have been another
    /// record's doing, so the put starts afresh.
    Alone { after: Option<Error> },
}

type Waiting = gather::Waiting<Arc<PutJob>, Reply>;

/// A pool's committer.
#[derive(Debug)]
pub(crate) struct GroupCommit(Gatherer<Arc<PutJob>, Reply>);

impl GroupCommit {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self(Gatherer::new(take_group, move |group| {
            let pool = pool.clone();
            async move { store(&pool, group).await }
        }))
    }

    /// Hands `job` to the task and waits for its answer; `Alone` when the task is gone (a
    /// task that stopped with the put unanswered stored nothing this put can know of: the put
    /// goes on alone, as after a statement in doubt).
    pub(crate) async fn put(&self, job: Arc<PutJob>) -> Reply {
        self.0.call(job).await.unwrap_or(Reply::Alone { after: None })
    }
}

/// The first waiting put and every later one for the same statement (see
/// [`PutJob::joins`]) and of another head, up to [`MOST`], in arrival order; the rest keep
/// their places for the next group.
fn take_group(waiting: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    gather::take_group(waiting, MOST, |first, next| first.job.joins(&next.job), |a, b| a.job.same_head(&b.job))
}

async fn store(pool: &PgPool, mut group: Vec<Waiting>) {
    // Puts whose caller stopped waiting (a dropped run) are not stored.
    group.retain(|waiting| !waiting.abandoned());
    if group.is_empty() {
        return;
    }
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(source) => {
            let error = Arc::new(Error::acquire(PUT_GROUP)(source));
            return answer_all(group, |_| Reply::Alone { after: Some(Error::Shared(Arc::clone(&error))) });
        }
    };
    if group.len() == 1 {
        let Some(lone) = group.pop() else { return };
        let job = &lone.job;
        let reply =
            match put_on(&mut conn, job.fenced(), &job.record, &job.values, job.expected.as_ref(), Try::First).await {
                Ok(Put::Stored) => Reply::Done(Ok(())),
                Ok(Put::Refused(error)) => Reply::Done(Err(error)),
                Err(error) => Reply::Alone { after: Some(error) },
            };
        lone.answer(reply);
        return;
    }
    match put_many(&mut conn, &group).await {
        Ok(stored) => {
            let mut stored = stored.into_iter().peekable();
            for (ord, waiting) in (1_i64..).zip(group) {
                let reply =
                    if stored.next_if_eq(&ord).is_some() { Reply::Done(Ok(())) } else { Reply::Alone { after: None } };
                waiting.answer(reply);
            }
        }
        // A failure the server reports for the statement (a record stored meanwhile under the
        // same id, say) may be one record's: each put tries again alone and meets its own.
        // A broken connection is every record's, and may have committed.
        Err(error) => {
            tracing::debug!(puts = group.len(), %error, "a group of puts failed; each put tries again alone");
            let every = error.retry() != Retry::No;
            let error = Arc::new(error);
            answer_all(group, |_| Reply::Alone { after: every.then(|| Error::Shared(Arc::clone(&error))) });
        }
    }
}

fn answer_all(group: Vec<Waiting>, mut reply: impl FnMut(&Waiting) -> Reply) {
    for waiting in group {
        let answer = reply(&waiting);
        waiting.answer(answer);
    }
}

const PUT_GROUP: &str = "put checkpoints of several threads";

/// Runs [`Writes::put_many`] for `group`, in order: the ordinals of the records it stored,
/// ascending.
async fn put_many(conn: &mut sqlx::PgConnection, group: &[Waiting]) -> Result<Vec<i64>, Error> {
    let jobs = group.iter().map(|waiting| &*waiting.job);
    let column = |f: &dyn Fn(&PutJob) -> &str| jobs.clone().map(f).collect::<Vec<_>>();
    let first = &group[0].job;
    let statement = if first.expected.is_some() { &first.writes.put_many } else { &first.writes.put_first_many };
    let query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(Arc::clone(statement)))
        .bind(column(&|job| &job.record.thread_id))
        .bind(column(&|job| &job.record.namespace))
        .bind(column(&|job| job.record.checkpoint_id.as_str()))
        .bind(jobs.clone().map(|job| job.record.parent_id.as_ref().map(CheckpointId::as_str)).collect::<Vec<_>>())
        .bind(jobs.clone().map(|job| job.record.step).collect::<Vec<_>>())
        .bind(column(&|job| job.record.kind.as_str()))
        .bind(jobs.clone().map(|job| job.record.blob.as_slice()).collect::<Vec<_>>())
        .bind(column(&|job| &job.values.metadata))
        .bind(column(&|job| &job.values.next_nodes))
        .bind(jobs.clone().map(|job| job.record.created_at_ms).collect::<Vec<_>>())
        .bind(jobs.clone().map(|job| job.expected.as_ref().map(CheckpointId::as_str)).collect::<Vec<_>>())
        .bind(jobs.clone().map(|job| job.epoch).collect::<Vec<_>>());
    let query = if first.expected.is_some() { query } else { query.bind(sql::THREAD_LOCK) };
    let mut stored = query.fetch_all(conn).await.map_err(Error::statement(PUT_GROUP))?;
    stored.sort_unstable();
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use dashflow_checkpoint::{CheckpointKind, Metadata};

    use super::*;
    use crate::guard::FenceTable;

    fn waiting(thread: &str, namespace: &str, writes: &Arc<Writes>) -> Waiting {
        waiting_for(thread, namespace, writes, Some(CheckpointId::new()))
    }

    fn waiting_for(thread: &str, namespace: &str, writes: &Arc<Writes>, expected: Option<CheckpointId>) -> Waiting {
        let record = CheckpointRecord {
            thread_id: thread.into(),
            namespace: namespace.into(),
            checkpoint_id: CheckpointId::new(),
            parent_id: None,
            step: 0,
            kind: CheckpointKind::Delta,
            blob: Vec::new(),
            metadata: Metadata::new(),
            next_nodes: Vec::new(),
            created_at_ms: 0,
        };
        let values = PutValues { metadata: "{}".into(), next_nodes: "[]".into() };
        let job = PutJob { record, values, expected, writes: Arc::clone(writes), epoch: None };
        Waiting::new(Arc::new(job)).0
    }

    fn heads(group: &[Waiting]) -> Vec<(String, String)> {
        group
            .iter()
            .map(|waiting| (waiting.job.record.thread_id.clone(), waiting.job.record.namespace.clone()))
            .collect()
    }

    fn pair(thread: &str, namespace: &str) -> (String, String) {
        (thread.to_owned(), namespace.to_owned())
    }

    #[test]
    fn a_group_takes_one_put_per_head_per_fence_table_and_per_statement_in_arrival_order() {
        let unguarded = Arc::clone(&crate::sql::UNGUARDED);
        let fenced = Arc::clone(&FenceTable::new("fences", "thread_id", "epoch").writes);
        let mut queue: VecDeque<Waiting> = [
            waiting("a", "", &unguarded),
            waiting("b", "", &unguarded),
            waiting("a", "", &unguarded),
            waiting("a", "sub", &unguarded),
            waiting("c", "", &fenced),
            waiting_for("e", "", &unguarded, None),
            waiting("d", "", &unguarded),
        ]
        .into();

        let first = take_group(&mut queue);
        assert_eq!(heads(&first), [pair("a", ""), pair("b", ""), pair("a", "sub"), pair("d", "")]);
        let second = take_group(&mut queue);
        assert_eq!(heads(&second), [pair("a", "")], "the second put of a head waits for the next group");
        let third = take_group(&mut queue);
        assert_eq!(heads(&third), [pair("c", "")], "another fence table's puts are a group of their own");
        let fourth = take_group(&mut queue);
        assert_eq!(heads(&fourth), [pair("e", "")], "first puts are a group of their own");
        assert!(queue.is_empty());
    }

    #[test]
    fn a_group_holds_at_most_the_most_puts_and_the_rest_keep_their_order() {
        let unguarded = Arc::clone(&crate::sql::UNGUARDED);
        let mut queue: VecDeque<Waiting> =
            (0..MOST + 3).map(|thread| waiting(&format!("t{thread}"), "", &unguarded)).collect();
        let first = take_group(&mut queue);
        assert_eq!(first.len(), MOST);
        assert_eq!(first[0].job.record.thread_id, "t0");
        let rest: Vec<String> = queue.iter().map(|waiting| waiting.job.record.thread_id.clone()).collect();
        assert_eq!(rest, [format!("t{MOST}"), format!("t{}", MOST + 1), format!("t{}", MOST + 2)]);
    }
}
