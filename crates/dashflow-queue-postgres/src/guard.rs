//! [`LeaseGuard`]: the fence every write of a claimed run checks.

use async_trait::async_trait;
use dashflow_checkpoint_postgres::{Rejected, WriteGuard};
use sqlx::PgConnection;

/// A run's lease as a [`WriteGuard`]: a write to the thread passes only while the thread's
/// fence epoch is the lease's.
///
/// It reads the epoch `FOR SHARE`, which conflicts with the update that moves it: a claim,
/// sweep or release waits for a write in flight (still legitimate: ownership had not changed),
/// and a write that starts after the change sees the new epoch and stores nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseGuard {
    /// The thread the lease is for.
    pub thread_id: String,
    /// The epoch the lease was granted with.
    pub epoch: i64,
}

#[async_trait]
impl WriteGuard for LeaseGuard {
    async fn check(&self, conn: &mut PgConnection, thread_id: &str) -> Result<(), Rejected> {
        // A run writes its own thread only; a write elsewhere has no lease at all.
        if thread_id != self.thread_id {
            return Err(Rejected::Fenced {
                expected: format!("a lease on thread `{}`", self.thread_id),
                actual: format!("a write to thread `{thread_id}`"),
            });
        }
        let epoch: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM dashflow_thread_fences WHERE thread_id = $1 FOR SHARE")
                .bind(thread_id)
                .fetch_optional(&mut *conn)
                .await?;
        match epoch {
            Some(epoch) if epoch == self.epoch => Ok(()),
            found => Err(Rejected::Fenced {
                expected: format!("lease epoch {}", self.epoch),
                actual: found.map_or_else(|| "no fence".to_owned(), |epoch| format!("epoch {epoch}")),
            }),
        }
    }
}
