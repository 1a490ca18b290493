//! What the finisher and the appender share: a group's jobs made on one connection, alone
//! when only one is left, and a failed group told apart as in doubt (each job gets the
//! failure, as a lone call would) or refused by the server (each job is made again alone by its
//! caller).

use dashflow_checkpoint_postgres::__private::Waiting;
use dashflow_queue::Result;
use sqlx::{PgConnection, PgPool};

use crate::error::{in_doubt, unavailable};

/// How a group's task answers a job.
pub(crate) enum Reply<T> {
    /// Made (and announced): the job's result.
    Done(Result<T>),
    /// Not made by the group: the caller makes it alone.
    Alone,
}

/// Makes the jobs of `group` still awaited with `many` (with `one` when a single job is left)
/// and gives them back with their outcomes, in order; `None` when the group could not be made
/// and every job was answered already.
pub(crate) async fn make<J, R, T>(
    pool: &PgPool,
    operation: &'static str,
    mut group: Vec<Waiting<J, Reply<R>>>,
    one: impl AsyncFnOnce(&mut PgConnection, &J) -> Result<T>,
    many: impl AsyncFnOnce(&mut PgConnection, &[Waiting<J, Reply<R>>]) -> std::result::Result<Vec<Result<T>>, sqlx::Error>,
) -> Option<(Vec<Waiting<J, Reply<R>>>, Vec<Result<T>>)> {
    group.retain(|waiting| !waiting.abandoned());
    if group.is_empty() {
        return None;
    }
    let Ok(mut conn) = pool.acquire().await else {
        group.into_iter().for_each(|waiting| waiting.answer(Reply::Alone));
        return None;
    };
    if let [lone] = group.as_slice() {
        let outcome = one(&mut conn, &lone.job).await;
        return Some((group, vec![outcome]));
    }
    match many(&mut conn, &group).await {
        Ok(outcomes) => Some((group, outcomes)),
        Err(error) if in_doubt(&error) => {
            let error = unavailable(operation)(error);
            group.into_iter().for_each(|waiting| waiting.answer(Reply::Done(Err(error.clone()))));
            None
        }
        Err(error) => {
            tracing::debug!(jobs = group.len(), operation, %error, "a group failed; each job is made alone");
            group.into_iter().for_each(|waiting| waiting.answer(Reply::Alone));
            None
        }
    }
}
