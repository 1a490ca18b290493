//! The `EventStore`: an [`EventCallback`] that hands events to a background thread, which
//! writes them to the WAL in batches.
//!
//! The channel is bounded and `on_event` never blocks: when the writer falls behind, new
//! events are dropped and counted ([`StoreStats::dropped`]). Blocking would make a slow disk
//! slow down every graph in the process, and an unbounded queue would turn it into memory
//! growth; observability must not cost the workload its latency or its memory. The queue
//! holds [`StoreConfig::capacity`] events (16 Ki by default, about 3 MB), events travel in it
//! by value (no allocation per event), and the writer drains it far faster than runs fill it
//! except in bursts.
//!
//! The writer takes whatever is queued (up to [`StoreConfig::max_batch`] events) as one batch:
//! one write, at most one fsync and one index transaction per batch, so the busier the
//! process, the larger and cheaper the batches (group commit).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use dashflow_telemetry::{Event, EventCallback};

use crate::config::{FsyncPolicy, WalConfig};
use crate::error::{Result, WalError};
use crate::home;
use crate::wal::Wal;

/// Configuration of an [`EventStore`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StoreConfig {
    /// How the WAL writes.
    pub wal: WalConfig,
    /// Events the queue holds before new ones are dropped. Default 16,384.
    pub capacity: usize,
    /// The most events written as one batch. Default 4,096.
    pub max_batch: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { wal: WalConfig::default(), capacity: 16 * 1024, max_batch: 4096 }
    }
}

impl StoreConfig {
    /// Sets [`wal`](Self::wal).
    pub fn wal(mut self, wal: WalConfig) -> Self {
        self.wal = wal;
        self
    }

    /// Sets [`capacity`](Self::capacity).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets [`max_batch`](Self::max_batch).
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }
}

/// Counters of an [`EventStore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Events written to the WAL.
    pub written: u64,
    /// Events dropped because the queue was full (the writer fell behind) or the store had
    /// shut down.
    pub dropped: u64,
    /// Events lost because writing them failed (see [`EventStore::flush`] for the error).
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

enum Command {
    Event(Event),
    Flush(SyncSender<Result<()>>),
    Shutdown(SyncSender<Result<()>>),
}

/// The process's sink of run events into the WAL.
///
/// Register it as an [`EventCallback`]. `on_event` clones the event into a bounded queue
/// (`std::sync::mpsc::sync_channel`, lock-free for a sender) and returns; it never blocks and
/// never does I/O. When the queue is full the event is dropped and counted in
/// [`StoreStats::dropped`]: blocking would let a slow disk slow down every graph in the
/// process, and an unbounded queue would turn it into memory growth. A background thread
/// (`dashflow-wal`) takes whatever is queued, up to [`StoreConfig::max_batch`] events, and
/// appends it as one batch: one write, at most one fsync and one index transaction, so the
/// busier the process the cheaper each event (group commit).
///
/// Use [`EventStore::global`] for the one store of the process (what the `dashflow` facade
/// wires in), or [`EventStore::open`] for a store of your own (tests, tools).
pub struct EventStore {
    dir: PathBuf,
    sender: SyncSender<Command>,
    counters: Arc<Counters>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for EventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStore").field("dir", &self.dir).field("stats", &self.stats()).finish_non_exhaustive()
    }
}

static GLOBAL: OnceLock<Mutex<HashMap<PathBuf, Arc<EventStore>>>> = OnceLock::new();

impl EventStore {
    /// Opens the WAL in `dir` (recovering it, on the calling thread, so errors show here) and
    /// starts the background writer.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Self> {
        if config.capacity == 0 || config.max_batch == 0 {
            return Err(WalError::InvalidConfig {
                detail: "StoreConfig capacity and max_batch must be at least 1".into(),
            });
        }
        let wal = Wal::open(dir.as_ref(), config.wal)?;
        let (sender, receiver) = mpsc::sync_channel(config.capacity);
        let counters = Arc::new(Counters::default());
        let writer =
            Writer { wal, receiver, counters: Arc::clone(&counters), max_batch: config.max_batch, error: None };
        let handle = std::thread::Builder::new()
            .name("dashflow-wal".into())
            .spawn(move || writer.run())
            .map_err(|e| WalError::io("start the writer thread for", dir.as_ref(), e))?;
        Ok(Self { dir: dir.as_ref().to_owned(), sender, counters, writer: Mutex::new(Some(handle)) })
    }

    /// The process's store for the WAL the environment names (see the crate docs for the
    /// variables), opened on first use; `None` when `DASHFLOW_WAL` turns the WAL off.
    ///
    /// Stores are kept per directory for the life of the process and never dropped, so call
    /// [`flush`](Self::flush) before exiting to be sure queued events are written.
    pub fn global() -> Result<Option<Arc<EventStore>>> {
        Self::global_from(|name| std::env::var_os(name))
    }

    /// [`global`](Self::global) reading variables through `var`.
    pub fn global_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Option<Arc<EventStore>>> {
        let Some(dir) = home::wal_dir_from(var)? else { return Ok(None) };
        let mut stores = GLOBAL.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(store) = stores.get(&dir) {
            return Ok(Some(Arc::clone(store)));
        }
        let store = Arc::new(Self::open(&dir, StoreConfig::default())?);
        stores.insert(dir, Arc::clone(&store));
        Ok(Some(store))
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Blocks until every event handed over before this call is written and, unless the
    /// fsync policy is [`FsyncPolicy::Never`], synced.
    ///
    /// Returns the first write error since the last flush, or [`WalError::Poisoned`] if the
    /// WAL refuses writes; it never reports success for events that were not written.
    pub fn flush(&self) -> Result<()> {
        self.request(Command::Flush)
    }

    /// Counters of written, dropped and failed events.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            written: self.counters.written.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }

    /// Writes what is queued, syncs per the policy, and stops the writer. Dropping the store
    /// does the same but cannot report an error.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        let handle = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let Some(handle) = handle else { return Ok(()) };
        let result = self.request(Command::Shutdown);
        if handle.join().is_err() {
            return Err(WalError::Closed);
        }
        result
    }

    fn request(&self, command: impl FnOnce(SyncSender<Result<()>>) -> Command) -> Result<()> {
        let (reply, response) = mpsc::sync_channel(1);
        // Blocks while the queue is full: the caller asked to wait, unlike `on_event`.
        self.sender.send(command(reply)).map_err(|_| WalError::Closed)?;
        response.recv().map_err(|_| WalError::Closed)?
    }
}

impl EventCallback for EventStore {
    fn on_event(&self, event: &Event) {
        // Hot path: one clone (shared names are `Arc`s) and a non-blocking send, no I/O.
        match self.sender.try_send(Command::Event(event.clone())) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for EventStore {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::warn!(dir = %self.dir.display(), %error, "the event store did not shut down cleanly");
        }
    }
}

/// The background half: owns the WAL.
struct Writer {
    wal: Wal,
    receiver: Receiver<Command>,
    counters: Arc<Counters>,
    max_batch: usize,
    /// The first write error since the last flush.
    error: Option<WalError>,
}

impl Writer {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        // Blocks for the first command, then takes whatever else is queued without waiting.
        while let Ok(first) = self.receiver.recv() {
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Event(event) => {
                        batch.push(event);
                        if batch.len() >= self.max_batch {
                            self.write(&mut batch);
                        }
                    }
                    Command::Flush(reply) => {
                        self.write(&mut batch);
                        let _ = reply.send(self.sync());
                    }
                    Command::Shutdown(reply) => {
                        self.write(&mut batch);
                        let _ = reply.send(self.sync());
                        return;
                    }
                }
                next = self.receiver.try_recv().ok();
            }
            self.write(&mut batch);
        }
    }

    fn write(&mut self, batch: &mut Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        match self.wal.append(batch) {
            Ok(_) => {
                self.counters.written.fetch_add(count, Ordering::Relaxed);
            }
            // The records are in the segments; the next append or open indexes them.
            Err(WalError::Index { source }) => {
                self.counters.written.fetch_add(count, Ordering::Relaxed);
                tracing::warn!(error = %source, "WAL index update failed; it catches up on the next write");
            }
            Err(error) => {
                self.counters.failed.fetch_add(count, Ordering::Relaxed);
                if self.error.is_none() {
                    tracing::warn!(%error, "cannot write events to the WAL");
                    self.error = Some(error);
                }
            }
        }
        batch.clear();
    }

    /// Syncs per the policy and reports the first error since the last call.
    fn sync(&mut self) -> Result<()> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        if let Some(poisoned) = self.wal.poisoned() {
            return Err(poisoned);
        }
        if self.wal.config().fsync == FsyncPolicy::Never { Ok(()) } else { self.wal.sync() }
    }
}

#[cfg(test)]
mod tests;
