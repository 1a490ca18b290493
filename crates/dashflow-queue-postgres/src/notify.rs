//! Notifications of one pool sent together: what the queue's writes (submits, finishes,
//! appends, releases, give-ups, cancels, retries and sweeps) announce after their commits goes
//! to the pool's notifier task, which sends every notification waiting in one statement (one
//! round trip, one transaction that writes nothing durable) while the next ones queue behind
//! it. A caller returns once its notification was sent; a wake-up asked for several times
//! while others wait is sent once.
//!
//! A notification goes after the commit of what it announces, never inside a transaction that
//! writes: PostgreSQL commits notifying transactions one at a time, each holding a lock of the
//! whole database until its commit is on disk. Alone, it writes nothing durable, so its commit
//! waits for no flush.
//!
//! A notification is a hint: listeners poll as well, so one that fails is logged and lost,
//! never what was committed.

use std::collections::VecDeque;
use std::sync::Arc;

use dashflow_checkpoint_postgres::__private::{self as gather, Gatherer, Unanswered};
use sqlx::PgPool;

/// Sends every waiting notification, each as `pg_notify(channel, payload)`; a NULL payload is
/// the schema's name (what `dashflow_wake` carries).
const SEND: &str = "SELECT count(pg_notify(n.channel, coalesce(n.payload, current_schema())))::bigint
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS n(channel, payload, ord)";

/// One notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// `dashflow_wake`: work for the workers of the schema.
    Wake,
    /// `dashflow_done`: run `.0` ended.
    Done(String),
    /// `dashflow_events`: run `.0`'s stream grew.
    Events(String),
}

impl Note {
    fn channel(&self) -> &'static str {
        match self {
            Self::Wake => "dashflow_wake",
            Self::Done(_) => "dashflow_done",
            Self::Events(_) => "dashflow_events",
        }
    }

    fn payload(&self) -> Option<&str> {
        match self {
            Self::Wake => None,
            Self::Done(run_id) | Self::Events(run_id) => Some(run_id),
        }
    }
}

type Waiting = gather::Waiting<Vec<Note>, ()>;

/// A pool's notifier.
#[derive(Debug)]
pub(crate) struct Notifier {
    pool: PgPool,
    task: Gatherer<Vec<Note>, ()>,
}

impl Notifier {
    pub(crate) fn new(pool: PgPool) -> Arc<Self> {
        let sending = pool.clone();
        let task = Gatherer::new(take_all, move |waiting| {
            let pool = sending.clone();
            async move {
                send_now(&pool, &waiting).await;
                for each in waiting {
                    each.answer(());
                }
            }
        });
        Arc::new(Self { pool, task })
    }

    /// Sends `notes` with the others waiting, and returns once they were sent (or failed).
    /// Call it after the commit of what they announce, holding no pooled connection: the
    /// notifier takes one of its own.
    pub(crate) async fn send(&self, notes: Vec<Note>) {
        if let Err(Unanswered::NoTask(notes)) = self.task.call(notes).await {
            send_now(&self.pool, &[Waiting::new(notes).0]).await;
        }
    }
}

/// Every notification waiting goes in one statement.
fn take_all(waiting: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    waiting.drain(..).collect()
}

/// Sends the notifications of `waiting` in one statement, each distinct one once.
async fn send_now(pool: &PgPool, waiting: &[Waiting]) {
    let mut notes: Vec<&Note> = Vec::new();
    for note in waiting.iter().flat_map(|each| &each.job) {
        if !notes.contains(&note) {
            notes.push(note);
        }
    }
    if notes.is_empty() {
        return;
    }
    let Ok(mut conn) = pool.acquire().await.inspect_err(|error| {
        tracing::debug!(notifications = notes.len(), %error, "no connection to notify; listeners poll");
    }) else {
        return;
    };
    if notify(&mut conn, &notes).await.is_ok() || notes.len() == 1 {
        return;
    }
    // One notification the server refuses (a payload too long) fails the statement: the
    // others go one at a time, so that only that one is lost.
    for note in notes {
        let _logged = notify(&mut conn, &[note]).await;
    }
}

async fn notify(conn: &mut sqlx::PgConnection, notes: &[&Note]) -> Result<(), sqlx::Error> {
    let channels: Vec<&str> = notes.iter().map(|note| note.channel()).collect();
    let payloads: Vec<Option<&str>> = notes.iter().map(|note| note.payload()).collect();
    let sent = sqlx::query(SEND).bind(channels).bind(payloads).execute(conn).await.map(drop);
    if let Err(error) = &sent {
        tracing::debug!(notifications = notes.len(), %error, "notifications after a commit failed; listeners poll");
    }
    sent
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;

    use dashflow_checkpoint_postgres::testing::{TestDatabase, together};
    use sqlx::postgres::PgListener;

    use super::*;

    /// `(channel, payload)` of the next notification of this test: one whose payload starts
    /// with `mine` (the test's schema: other tests notify the same database at the same time).
    async fn next(listener: &mut PgListener, mine: &str) -> (String, String) {
        let within = std::time::Duration::from_secs(30);
        loop {
            let notification = tokio::time::timeout(within, listener.recv()).await.unwrap().unwrap();
            if notification.payload().starts_with(mine) {
                return (notification.channel().to_owned(), notification.payload().to_owned());
            }
        }
    }

    fn pair(channel: &str, payload: &str) -> (String, String) {
        (channel.to_owned(), payload.to_owned())
    }

    #[tokio::test]
    async fn notifications_waiting_together_go_in_order_and_each_distinct_one_once() {
        let test = "notifications_waiting_together_go_in_order_and_each_distinct_one_once";
        let Some(db) = TestDatabase::from_env(test).await else { return };
        let pool = db.pool().await;
        let mut listener = PgListener::connect_with(&pool).await.unwrap();
        listener.listen_all(["dashflow_wake", "dashflow_done", "dashflow_events"]).await.unwrap();
        let notifier = Notifier::new(pool);
        let schema = db.schema().to_owned();
        let (a, b, after) = (format!("{schema}-a"), format!("{schema}-b"), format!("{schema}-after"));

        // Polled once each before the notifier first runs (the current-thread runtime), so
        // all four wait together.
        let sends: Vec<Pin<Box<dyn Future<Output = ()> + '_>>> = vec![
            Box::pin(notifier.send(vec![Note::Wake])),
            Box::pin(notifier.send(vec![Note::Done(a.clone()), Note::Wake])),
            Box::pin(notifier.send(vec![Note::Events(b.clone())])),
            Box::pin(notifier.send(vec![Note::Wake, Note::Done(a.clone())])),
        ];
        together(sends).await;
        notifier.send(vec![Note::Done(after.clone())]).await;

        assert_eq!(next(&mut listener, &schema).await, pair("dashflow_wake", &schema));
        assert_eq!(next(&mut listener, &schema).await, pair("dashflow_done", &a));
        assert_eq!(next(&mut listener, &schema).await, pair("dashflow_events", &b));
        assert_eq!(
            next(&mut listener, &schema).await,
            pair("dashflow_done", &after),
            "a repeated notification went twice"
        );
    }

    #[tokio::test]
    async fn a_notification_the_server_refuses_loses_only_itself() {
        let test = "a_notification_the_server_refuses_loses_only_itself";
        let Some(db) = TestDatabase::from_env(test).await else { return };
        let pool = db.pool().await;
        let mut listener = PgListener::connect_with(&pool).await.unwrap();
        listener.listen_all(["dashflow_done", "dashflow_events"]).await.unwrap();
        let notifier = Notifier::new(pool);
        let schema = db.schema().to_owned();
        let (a, b) = (format!("{schema}-a"), format!("{schema}-b"));

        // PostgreSQL refuses a payload of 8,000 bytes or more.
        let long = "r".repeat(9_000);
        let sends: Vec<Pin<Box<dyn Future<Output = ()> + '_>>> = vec![
            Box::pin(notifier.send(vec![Note::Done(a.clone())])),
            Box::pin(notifier.send(vec![Note::Done(long)])),
            Box::pin(notifier.send(vec![Note::Events(b.clone())])),
        ];
        together(sends).await;

        assert_eq!(next(&mut listener, &schema).await, pair("dashflow_done", &a));
        assert_eq!(next(&mut listener, &schema).await, pair("dashflow_events", &b));
    }
}
