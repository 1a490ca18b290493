//! Wake-ups over `LISTEN`/`NOTIFY`: a background task owns the listening connection and
//! forwards what it hears, so that the consumer's wait is cancel-safe.

use async_trait::async_trait;
use dashflow_queue::{Wake, Wakeups};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

/// Wake-ups of one schema's queue.
#[derive(Debug)]
pub(crate) struct PgWakeups {
    received: mpsc::Receiver<Wake>,
}

#[async_trait]
impl Wakeups for PgWakeups {
    async fn next(&mut self) -> Option<Wake> {
        self.received.recv().await
    }
}

/// Starts listening on `pool`'s database for wakes of `schema`.
pub(crate) async fn listen(pool: &PgPool, schema: String) -> Result<PgWakeups, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all(["dashflow_wake", "dashflow_done"]).await?;
    // Few and small: a burst beyond it loses only hints, which polling covers.
    let (send, received) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let heard = tokio::select! {
                () = send.closed() => return,
                heard = listener.try_recv() => heard,
            };
            let wake = match heard {
                Ok(Some(notification)) => match notification.channel() {
                    // Every schema's queue notifies on one channel; the payload names it.
                    "dashflow_wake" if notification.payload() == schema => Wake::Work,
                    "dashflow_done" => Wake::Done(notification.payload().to_owned()),
                    _ => continue,
                },
                // Reconnected: what was sent meanwhile is lost.
                Ok(None) => Wake::Missed,
                Err(error) => {
                    tracing::debug!(%error, "listening for queue wake-ups failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    Wake::Missed
                }
            };
            // Full: the consumer is behind and will poll anyway.
            if let Err(mpsc::error::TrySendError::Closed(_)) = send.try_send(wake) {
                return;
            }
        }
    });
    Ok(PgWakeups { received })
}
