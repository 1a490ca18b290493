//! The flush at process exit: every store writes what it was handed before the process ends,
//! so a program that returns from `main` (or calls `std::process::exit`, or is a test binary
//! whose harness ends) leaves no finished run unrecorded, without calling anything.
//!
//! Rust runs no destructors of statics at exit, and the process's store lives in one, so the
//! first store opened registers a C `atexit` handler. It asks every live store's writer to
//! drain its queue and sync, and waits at most [`EXIT_FLUSH_LIMIT`] in all: a stuck disk must
//! not hang the process's exit. It waits on a mutex and a condition variable only (no
//! channel, no parking of its own, nothing that needs the exiting thread's thread-locals,
//! which are already destroyed when `atexit` handlers run), and a writer that is gone (its
//! store closed, or its thread ended) answers at once.
//!
//! Nothing runs on a signal that kills the process (SIGKILL, an unhandled SIGINT) or on an
//! abort: the events still queued then are lost, as a crash loses them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, Weak};
use std::time::{Duration, Instant};

use super::report::FailureReport;
use super::wake::Doorbell;

/// The longest the exit flush waits for all stores together. A flush of a full queue takes
/// a small fraction of it; a disk that takes longer is treated as stuck, and the process
/// exits with the events still queued reported as lost.
pub(crate) const EXIT_FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// What a store shares with the exit flush: how to ask its writer, and how it answers.
pub(crate) struct ExitLink {
    pub(super) dir: PathBuf,
    pub(super) doorbell: Arc<Doorbell>,
    pub(super) report: FailureReport,
    /// The process whose writer thread serves this link: a child made by `fork` inherits
    /// the link and the `atexit` handler, but not the thread.
    pid: u32,
    /// Flushes asked for, counted; the writer looks at it each time round its loop.
    requested: AtomicU64,
    state: Mutex<ExitState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct ExitState {
    /// The last request the writer served: it drained its queue and synced after it.
    served: u64,
    /// The writer has stopped: nothing more will be written.
    gone: bool,
}

/// How the exit flush of one store ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitFlush {
    /// Everything queued was written (or its failure reported).
    Flushed,
    /// The writer had stopped; whatever it wrote before is all there is.
    WriterGone,
    /// The deadline passed first.
    TimedOut,
}

impl ExitLink {
    pub(super) fn new(dir: PathBuf, doorbell: Arc<Doorbell>, report: FailureReport) -> Self {
        Self {
            dir,
            doorbell,
            report,
            pid: std::process::id(),
            requested: AtomicU64::new(0),
            state: Mutex::new(ExitState::default()),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, ExitState> {
        // A poisoned lock still holds valid flags: each is one plain store.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The newest request for a flush; the writer's check, one load. The writer serves it
    /// when it is newer than the last one it served.
    pub(super) fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// On the writer's thread, after draining and syncing for `request` (and every older one).
    pub(super) fn served(&self, request: u64) {
        let mut state = self.state();
        state.served = state.served.max(request);
        drop(state);
        self.changed.notify_all();
    }

    /// On the writer's thread, when it stops for any reason (a panic included).
    pub(super) fn writer_gone(&self) {
        self.state().gone = true;
        self.changed.notify_all();
    }

    /// Asks the writer to drain and sync, and waits until it did, it is gone, or `deadline`.
    /// Several callers at once each wait for a drain that began after their request.
    pub(crate) fn flush_until(&self, deadline: Instant) -> ExitFlush {
        let request = self.request();
        self.wait(request, deadline)
    }

    /// Asks the writer to drain and sync; returns the request to [`wait`](Self::wait) for.
    fn request(&self) -> u64 {
        let request = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        self.doorbell.wake();
        request
    }

    /// Waits until the writer served `request`, it is gone, or `deadline`.
    fn wait(&self, request: u64, deadline: Instant) -> ExitFlush {
        let mut state = self.state();
        loop {
            if state.served >= request {
                return ExitFlush::Flushed;
            }
            if state.gone {
                return ExitFlush::WriterGone;
            }
            let now = Instant::now();
            if now >= deadline {
                return ExitFlush::TimedOut;
            }
            state = match self.changed.wait_timeout(state, deadline - now) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// Stores the exit flush reaches: weak, so that a store dropped meanwhile is not kept.
static LINKS: Mutex<Vec<Weak<ExitLink>>> = Mutex::new(Vec::new());

/// Makes the exit flush reach `link`'s store (and registers the flush, the first time).
pub(crate) fn register(link: &Arc<ExitLink>) {
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(register_at_exit);
    let mut links = LINKS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    links.retain(|link| link.strong_count() > 0);
    links.push(Arc::downgrade(link));
}

/// Flushes every live store of this process, all at once and within `limit`; reports the
/// stores that did not finish.
pub(crate) fn flush_all(limit: Duration) {
    let deadline = Instant::now() + limit;
    // Taken out under the lock and flushed without it: a store opening on another thread
    // meanwhile never waits for a disk.
    let links: Vec<Arc<ExitLink>> = {
        let links = LINKS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let pid = std::process::id();
        links.iter().filter_map(Weak::upgrade).filter(|link| link.pid == pid).collect()
    };
    // Every writer is asked first, so they all write at once and one stuck disk does not
    // use up the others' time.
    let requests: Vec<u64> = links.iter().map(|link| link.request()).collect();
    for (link, request) in links.iter().zip(requests) {
        if link.wait(request, deadline) == ExitFlush::TimedOut {
            link.report.emit(&format!(
                "dashflow: the event log in `{}` did not finish writing within {} s of the process's exit \
                 (a stuck disk?); the events still queued are lost",
                link.dir.display(),
                limit.as_secs()
            ));
        }
    }
}

extern "C" fn flush_at_exit() {
    // A panic must not unwind into the C runtime (it would abort the exit); there is nobody
    // left to tell of one.
    let _ = std::panic::catch_unwind(|| flush_all(EXIT_FLUSH_LIMIT));
}

#[cfg(any(unix, windows))]
#[allow(unsafe_code, reason = "the one C call of the workspace: `atexit` has no safe wrapper in std")]
fn register_at_exit() {
    // SAFETY: `flush_at_exit` is an `extern "C" fn()` that never unwinds (it catches panics)
    // and stays valid for the life of the process (it is part of this binary).
    let registered = unsafe { libc::atexit(flush_at_exit) };
    if registered != 0 {
        tracing::warn!("cannot register the event log's flush at exit; call `EventStore::flush` before exiting");
    }
}

/// Elsewhere there is no `atexit`: stores flush when dropped or flushed.
#[cfg(not(any(unix, windows)))]
fn register_at_exit() {}
