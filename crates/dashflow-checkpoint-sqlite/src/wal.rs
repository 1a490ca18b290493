//! WAL checkpoints in the background.
//!
//! In WAL mode a commit appends to the log; a *checkpoint* later copies the log into the
//! database file and, with `synchronous=NORMAL`, syncs both to disk. SQLite's default runs it
//! inside the commit that crosses 1,000 log pages, so every few hundred puts one put waits for
//! two fsyncs. Instead, the writer's commit hook nudges a background thread, which
//! checkpoints through its own connection while the writer goes on appending. Measured on the
//! (busy, 2-core) reference machine, this raised a single `Sync` writer's put rate and cut its
//! p99 put latency.
//!
//! A checkpoint that runs while the writer appends never catches up with the log's end, and
//! SQLite rewinds the log only when it has been copied completely; so once the log reaches
//! [`HARD_PAGES`], the writer itself checkpoints after its commit (waiting for a background
//! pass in progress, which leaves little to copy), and the next commit starts the log afresh.

use std::cell::RefCell;
use std::ffi::c_int;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;
use rusqlite::hooks::Wal;

use crate::error::{Error, Result};

/// Log size (in pages) from which a commit nudges the background thread.
const SOFT_PAGES: c_int = 1_000;

/// Log size (in pages) from which the writer checkpoints itself, so the log can rewind.
const HARD_PAGES: c_int = 8 * SOFT_PAGES;

/// The writer connection's link to its background checkpointer.
pub(crate) struct Background {
    /// `None` once stopped.
    nudge: Mutex<Option<SyncSender<()>>>,
    /// Held by whoever checkpoints, so the writer can wait for a background pass to end.
    gate: Arc<Mutex<()>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The log's size at the last nudge: the next one waits for [`SOFT_PAGES`] more, since a
    /// pass per commit would sync the disk twice per commit (measured: a third of a `Sync`
    /// writer's time went to those passes and their fsyncs).
    nudged_at: AtomicI32,
}

impl Background {
    /// Stops the background checkpointer and waits for it to close its connection.
    pub(crate) fn stop(&self) {
        drop(self.nudge.lock().unwrap_or_else(PoisonError::into_inner).take());
        let thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        // A panicked checkpointer thread has nothing left to clean up.
        let _ = thread.map(JoinHandle::join);
    }

    fn nudge(&self, pages: c_int) {
        let nudged_at = self.nudged_at.load(Ordering::Relaxed);
        // A smaller log than at the last nudge has been rewound: start counting again.
        if pages < nudged_at || pages >= nudged_at + SOFT_PAGES {
            self.nudged_at.store(pages, Ordering::Relaxed);
            if let Some(nudge) = &*self.nudge.lock().unwrap_or_else(PoisonError::into_inner) {
                // A full channel means a nudge is already pending.
                let _ = nudge.try_send(());
            }
        }
    }
}

thread_local! {
    // The commit hook is a plain `fn` (no captures); whoever runs statements on the writer
    // connection (its worker thread, or a caller running a put inline) puts the link here
    // for the hook to find.
    static ACTIVE: RefCell<Option<Arc<Background>>> = const { RefCell::new(None) };
}

/// Runs `work` with `background` as the one the commit hook nudges, on this thread.
pub(crate) fn with_background<T>(background: Option<&Arc<Background>>, work: impl FnOnce() -> T) -> T {
    let previous = ACTIVE.with(|active| active.replace(background.cloned()));
    let result = work();
    ACTIVE.with(|active| *active.borrow_mut() = previous);
    result
}

/// Starts the background checkpointer for the database at `path` and hooks the writer
/// connection's commits to it.
pub(crate) fn install(writer: &Connection, path: &Path, synchronous: &str) -> Result<Arc<Background>> {
    let connection = Connection::open(path)?;
    // Checkpoints sync according to the connection that runs them.
    connection.pragma_update(None, "synchronous", synchronous)?;
    let (nudge, nudged) = mpsc::sync_channel::<()>(1);
    let gate = Arc::new(Mutex::new(()));
    let thread_gate = Arc::clone(&gate);
    let thread = std::thread::Builder::new()
        .name("dashflow-sqlite-wal".to_owned())
        .spawn(move || {
            while nudged.recv().is_ok() {
                let _pass = thread_gate.lock().unwrap_or_else(PoisonError::into_inner);
                // A failed pass (another process is checkpointing, say) is retried on the
                // next nudge; the log only grows meanwhile, and the writer's hard limit
                // bounds it.
                let _ = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            }
        })
        .map_err(Error::Spawn)?;
    writer.wal_hook(Some(on_commit));
    Ok(Arc::new(Background {
        nudge: Mutex::new(Some(nudge)),
        gate,
        thread: Mutex::new(Some(thread)),
        nudged_at: AtomicI32::new(0),
    }))
}

fn on_commit(wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    if pages < SOFT_PAGES {
        return Ok(());
    }
    ACTIVE.with(|active| match &*active.borrow() {
        Some(background) if pages < HARD_PAGES => background.nudge(pages),
        Some(background) => {
            let _pass = background.gate.lock().unwrap_or_else(PoisonError::into_inner);
            // The commit itself succeeded; a checkpoint that fails now is retried at the
            // next commit.
            let _ = wal.checkpoint();
        }
        None => {
            let _ = wal.checkpoint();
        }
    });
    Ok(())
}
