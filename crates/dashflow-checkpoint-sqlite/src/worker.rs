//! The connection, and the thread that runs its operations.
//!
//! Why a dedicated thread and not `spawn_blocking` with a pool: SQLite allows one writer at a
//! time anyway, so one connection serializes this process's writers without any
//! `SQLITE_BUSY` between them (other processes are handled by the busy timeout); its prepared
//! statements stay cached across calls; and a call costs one channel send and one wake-up of
//! a thread that is already waiting, where `spawn_blocking` would hand each call to a pool
//! thread and check a connection out of a pool. The async side never blocks on the thread:
//! it sends a job and awaits a oneshot reply.
//!
//! Puts may instead run inline, on the caller's thread, when the connection is free and no
//! other process holds the write lock ([`Worker::call_inline`]): a put is a few writes into
//! the page cache, while handing it to the thread and waking the caller back
//! cost two thread wake-ups, which on a virtual machine took longer than the put itself.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::wal::{Background, with_background};

/// Work for the connection's thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

enum Message {
    Run(Job),
    /// Close the connection and report when it is closed.
    Close(oneshot::Sender<()>),
}

/// The connection and what runs with it, shared by the thread and inline callers.
struct Shared {
    connection: Mutex<Connection>,
    background: Option<Arc<Background>>,
    busy_timeout: Duration,
}

impl Shared {
    fn run<T>(&self, connection: &mut Connection, job: impl FnOnce(&mut Connection) -> T) -> T {
        with_background(self.background.as_ref(), || job(connection))
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(background) = &self.background {
            background.stop();
        }
    }
}

/// The sending side; dropping it (or [`Worker::close`]) ends the thread and closes the
/// connection.
pub(crate) struct Worker {
    sender: mpsc::Sender<Message>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts a thread that opens its connection with `connect` and then serves jobs; returns
    /// once the connection is open (or failed to open).
    pub(crate) async fn start(
        connect: impl FnOnce() -> Result<(Connection, Option<Arc<Background>>)> + Send + 'static,
        busy_timeout: Duration,
    ) -> Result<Self> {
        let (sender, receiver) = mpsc::channel::<Message>();
        let (opened, on_open) = oneshot::channel::<Result<Arc<Shared>>>();
        std::thread::Builder::new()
            .name("dashflow-sqlite".to_owned())
            .spawn(move || match connect() {
                Ok((connection, background)) => {
                    let shared = Arc::new(Shared { connection: Mutex::new(connection), background, busy_timeout });
                    // The opener may have gone away (its future dropped); the connection then
                    // closes when the sender side is dropped too.
                    let _ = opened.send(Ok(Arc::clone(&shared)));
                    serve(shared, &receiver);
                }
                Err(error) => {
                    let _ = opened.send(Err(error));
                }
            })
            .map_err(Error::Spawn)?;
        let shared = on_open.await.map_err(|_| Error::WorkerLost)??;
        Ok(Self { sender, shared })
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

    /// Runs `job` right here when the connection is free and the database's write lock can
    /// be had without waiting; otherwise (another call in progress, another process writing)
    /// on the connection's thread, as [`Worker::call`]. For short writes only: inline, the
    /// caller's thread does the SQLite work.
    pub(crate) async fn call_inline<T, F>(&self, mut job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Connection) -> Result<T> + Send + 'static,
    {
        if let Some(connection) = self.shared.connection.try_lock() {
            let mut inline = NoWait::new(connection, self.shared.busy_timeout)?;
            let result = self.shared.run(&mut inline.connection, &mut job);
            drop(inline);
            match result {
                Err(error) if error.is_busy() => {}
                result => return result,
            }
        }
        self.call(job).await
    }

    /// Closes the connection, after the jobs already sent, and waits until it is closed.
    pub(crate) async fn close(self) {
        let (closed, on_close) = oneshot::channel();
        if self.sender.send(Message::Close(closed)).is_ok() {
            // An error means the thread already ended, which is what we wait for.
            let _ = on_close.await;
        }
        // The last reference: closes the connection and stops the background checkpointer.
        drop(self.shared);
    }
}

/// The connection held for an inline call, set to fail at once instead of waiting for another
/// process's lock (waiting is the thread's job, so that a busy database never stalls the
/// caller's thread); the busy timeout comes back when the call ends, even by a panic.
struct NoWait<'a> {
    connection: parking_lot::MutexGuard<'a, Connection>,
    busy_timeout: Duration,
}

impl<'a> NoWait<'a> {
    fn new(connection: parking_lot::MutexGuard<'a, Connection>, busy_timeout: Duration) -> Result<Self> {
        connection.busy_timeout(Duration::ZERO)?;
        Ok(Self { connection, busy_timeout })
    }
}

impl Drop for NoWait<'_> {
    fn drop(&mut self) {
        // Setting a busy timeout cannot fail on an open connection.
        let _ = self.connection.busy_timeout(self.busy_timeout);
    }
}

/// How long the idle worker polls for the next message before it sleeps.
const SPIN: Duration = Duration::from_micros(100);

/// The next message, `None` once every sender is gone.
///
/// A caller often sends its next job a few microseconds after the previous reply; polling
/// briefly before sleeping catches it without a futex sleep and wake-up, which on a busy
/// machine can cost more than the SQLite work itself. The window is short so that an idle
/// checkpointer costs no CPU.
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

fn serve(shared: Arc<Shared>, receiver: &mpsc::Receiver<Message>) {
    let mut closed = None;
    while let Some(message) = next(receiver) {
        match message {
            Message::Run(job) => {
                let mut connection = shared.connection.lock();
                // A panicking job must not take the connection down for every later caller.
                // Its reply sender is dropped while unwinding, so its caller sees
                // `WorkerLost`; an open transaction rolls back when its guard drops.
                let _ = catch_unwind(AssertUnwindSafe(|| shared.run(&mut connection, job)));
            }
            Message::Close(reply) => {
                closed = Some(reply);
                break;
            }
        }
    }
    // Here rather than wherever the last reference goes: stopping waits for a pass in progress.
    if let Some(background) = &shared.background {
        background.stop();
    }
    drop(shared);
    if let Some(reply) = closed {
        let _ = reply.send(());
    }
}
