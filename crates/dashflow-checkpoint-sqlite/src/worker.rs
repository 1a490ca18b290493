//! The thread that owns the SQLite connection.
//!
//! Why a dedicated thread and not `spawn_blocking` with a pool: SQLite allows one writer at a
//! time anyway, so one connection serializes this process's writers without any
//! `SQLITE_BUSY` between them (other processes are handled by the busy timeout); its prepared
//! statements stay cached across calls; and a call costs one channel send and one wake-up of
//! a thread that is already waiting, where `spawn_blocking` would hand each call to a pool
//! thread and check a connection out of a pool. The async side never blocks: it sends a job
//! and awaits a oneshot reply.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Work for the connection's thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

enum Message {
    Run(Job),
    /// Close the connection and report when it is closed.
    Close(oneshot::Sender<()>),
}

/// The sending side; dropping it (or [`Worker::close`]) ends the thread and closes the
/// connection.
#[derive(Debug)]
pub(crate) struct Worker {
    sender: mpsc::Sender<Message>,
}

impl Worker {
    /// Starts a thread that opens its connection with `connect` and then serves jobs; returns
    /// once the connection is open (or failed to open).
    pub(crate) async fn start(connect: impl FnOnce() -> Result<Connection> + Send + 'static) -> Result<Self> {
        let (sender, receiver) = mpsc::channel::<Message>();
        let (opened, on_open) = oneshot::channel::<Result<()>>();
        std::thread::Builder::new()
            .name("dashflow-sqlite".to_owned())
            .spawn(move || match connect() {
                Ok(connection) => {
                    // The opener may have gone away (its future dropped); the connection then
                    // closes when the sender side is dropped too.
                    let _ = opened.send(Ok(()));
                    serve(connection, &receiver);
                }
                Err(error) => {
                    let _ = opened.send(Err(error));
                }
            })
            .map_err(Error::Spawn)?;
        on_open.await.map_err(|_| Error::WorkerLost)??;
        Ok(Self { sender })
    }

    /// Runs `job` on the connection's thread and returns its result.
    ///
    /// If the caller's future is dropped after the job was sent, the job still runs to the
    /// end (a put may still commit); SQLite work is never torn half-way.
    pub(crate) async fn call<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            // The caller may have stopped waiting; the work is done either way.
            let _ = reply.send(job(connection));
        });
        self.sender.send(Message::Run(job)).map_err(|_| Error::WorkerLost)?;
        answer.await.map_err(|_| Error::WorkerLost)?
    }

    /// Closes the connection, after the jobs already sent, and waits until it is closed.
    pub(crate) async fn close(self) {
        let (closed, on_close) = oneshot::channel();
        if self.sender.send(Message::Close(closed)).is_ok() {
            // An error means the thread already ended, which is what we wait for.
            let _ = on_close.await;
        }
    }
}

/// How long the idle worker polls for the next message before it sleeps.
const SPIN: Duration = Duration::from_micros(100);

/// The next message, `None` once every sender is gone.
///
/// A `Sync` run sends its next put a few microseconds after the previous reply; polling
/// briefly before sleeping catches it without a futex sleep and wake-up, which on a busy
/// machine can cost more than the SQLite commit itself (measured: median put latency from
/// ~50 to ~35 µs). The window is short so that an idle checkpointer costs no CPU.
fn next(receiver: &mpsc::Receiver<Message>) -> Option<Message> {
    let started = Instant::now();
    loop {
        match receiver.try_recv() {
            Ok(message) => return Some(message),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if started.elapsed() < SPIN => std::hint::spin_loop(),
            Err(mpsc::TryRecvError::Empty) => return receiver.recv().ok(),
        }
    }
}

fn serve(mut connection: Connection, receiver: &mpsc::Receiver<Message>) {
    while let Some(message) = next(receiver) {
        match message {
            Message::Run(job) => {
                // A panicking job must not take the connection down for every later caller.
                // Its reply sender is dropped while unwinding, so its caller sees
                // `WorkerLost`; an open transaction rolls back when its guard drops.
                let _ = catch_unwind(AssertUnwindSafe(|| job(&mut connection)));
            }
            Message::Close(closed) => {
                drop(connection);
                crate::wal::shutdown();
                let _ = closed.send(());
                return;
            }
        }
    }
    drop(connection);
    crate::wal::shutdown();
}
