//! A work-stealing thread pool that drives futures, for CPU-heavy tasks.

use std::cell::RefCell;
use std::future::Future;
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::{fmt, iter};

use async_task::{Runnable, ScheduleInfo, WithInfo};
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::Backoff;
use crossbeam_utils::sync::{Parker, Unparker};
use tokio::runtime::Handle;

use crate::{BuildError, Scheduler, Task};

/// The runtime a task was spawned from, entered around each of its polls.
type Meta = Option<Handle>;
type Job = Runnable<Meta>;

/// A fixed set of named threads that run futures, stealing work from each other.
///
/// Each thread owns a LIFO deque; spawns from outside the pool go to a shared injector.
/// An idle thread looks for work in rayon's order (its own deque, a batch from the injector,
/// then the other threads' deques) and parks when there is none; a spawn wakes one parked
/// thread only when no thread is already searching, as tokio's scheduler does.
///
/// Tasks are futures, so a task that awaits frees its thread for other tasks. The tokio
/// runtime current at [`spawn`](Self::spawn) time, if any, is entered around each poll, so
/// `tokio::time` and `tokio::sync` work inside tasks. A task that panics is dropped and
/// counted in [`PoolStats::panicked`]; its thread goes on running other tasks.
///
/// Dropping the pool stops its threads and joins them (a task still running is awaited to the
/// end of its current poll); tasks that never got to run are dropped and counted in
/// [`PoolStats::lost`], readable through [`WorkStealingPool::counters`].
///
/// ```
/// use dashflow_scheduler::WorkStealingPool;
///
/// let pool = WorkStealingPool::builder().threads(2).thread_name("crunch").build()?;
/// let (tx, rx) = std::sync::mpsc::channel();
/// pool.spawn(async move {
///     let _ = tx.send((1..=10u64).product::<u64>());
/// });
/// assert_eq!(rx.recv()?, 3_628_800);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WorkStealingPool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Settings of a [`WorkStealingPool`]; [`WorkStealingPool::builder`] makes one.
#[derive(Clone, Debug)]
#[must_use]
pub struct PoolBuilder {
    threads: Option<usize>,
    name: String,
}

/// A snapshot of a pool's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks handed to [`WorkStealingPool::spawn`].
    pub spawned: u64,
    /// Times a thread took a task from another thread's deque.
    pub stolen: u64,
    /// Times a thread went to sleep for lack of work.
    pub parked: u64,
    /// Tasks whose poll panicked.
    pub panicked: u64,
    /// Tasks dropped without finishing because the pool shut down: queued at shutdown, or woken
    /// after it.
    pub lost: u64,
    /// Threads idle right now: parked, or about to park.
    pub idle: usize,
    /// Whether the pool has begun shutting down.
    pub shut_down: bool,
}

/// A handle on a pool's counters that outlives the pool, to read [`PoolStats::lost`] after
/// shutdown.
#[derive(Clone)]
pub struct PoolCounters(Arc<Counters>);

#[derive(Default)]
struct Counters {
    spawned: AtomicU64,
    stolen: AtomicU64,
    parked: AtomicU64,
    panicked: AtomicU64,
    lost: AtomicU64,
    idle: AtomicUsize,
    shut_down: AtomicBool,
}

struct Shared {
    injector: Injector<Job>,
    stealers: Vec<Stealer<Job>>,
    unparkers: Vec<Unparker>,
    /// Indices of threads that are parked or about to park; a notifier pops one to wake it.
    sleepers: Mutex<Vec<usize>>,
    /// Threads looking for work outside their own deque. A spawn wakes a sleeper only when
    /// this is zero: a searcher either finds the new task or, on its way to sleep, sees it.
    searching: AtomicUsize,
    counters: Arc<Counters>,
}

/// The pool thread's own deque, reachable by the schedule function when a task is woken on
/// one of its pool's threads.
struct Local {
    pool: *const Shared,
    worker: Worker<Job>,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

impl WorkStealingPool {
    /// Settings for a new pool: one thread per available core, threads named `dashflow-pool-N`.
    pub fn builder() -> PoolBuilder {
        PoolBuilder { threads: None, name: "dashflow-pool".to_owned() }
    }

    /// The process-wide pool, started on first use with one thread per available core.
    ///
    /// It lives until the process exits.
    pub fn global() -> &'static WorkStealingPool {
        static GLOBAL: OnceLock<WorkStealingPool> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            #[allow(
                clippy::expect_used,
                reason = "std::thread::spawn panics the same way when the OS refuses a thread"
            )]
            Self::builder()
                .thread_name("dashflow-global-pool")
                .build()
                .expect("the OS refused to start the global work-stealing pool's threads")
        })
    }

    /// Starts `future` on the pool. It is polled to completion unless the pool shuts down first.
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.shared.counters.spawned.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&self.shared);
        let schedule = WithInfo(move |job: Job, info: ScheduleInfo| shared.schedule(job, info));
        let (job, task) =
            async_task::Builder::new().metadata(Handle::try_current().ok()).spawn(move |_| future, schedule);
        task.detach();
        job.schedule();
    }

    /// How many threads the pool runs.
    pub fn threads(&self) -> usize {
        self.shared.stealers.len()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PoolStats {
        self.counters().snapshot()
    }

    /// A handle on the counters that stays readable after the pool is dropped.
    pub fn counters(&self) -> PoolCounters {
        PoolCounters(Arc::clone(&self.shared.counters))
    }
}

impl PoolCounters {
    /// A snapshot of the counters.
    pub fn snapshot(&self) -> PoolStats {
        let c = &self.0;
        PoolStats {
            spawned: c.spawned.load(Ordering::Relaxed),
            stolen: c.stolen.load(Ordering::Relaxed),
            parked: c.parked.load(Ordering::Relaxed),
            panicked: c.panicked.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            idle: c.idle.load(Ordering::SeqCst),
            shut_down: c.shut_down.load(Ordering::SeqCst),
        }
    }
}

impl fmt::Debug for PoolCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

impl PoolBuilder {
    /// How many threads to run (default: the available parallelism).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// The threads' name prefix; thread `i` is named `{prefix}-{i}`.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.name = prefix.into();
        self
    }

    /// Starts the threads.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroThreads`] if `threads(0)` was set, [`BuildError::Spawn`] if the
    /// operating system refuses a thread (the threads already started are stopped).
    pub fn build(self) -> Result<WorkStealingPool, BuildError> {
        let n = match self.threads {
            Some(0) => return Err(BuildError::ZeroThreads),
            Some(n) => n,
            None => thread::available_parallelism().map_or(1, NonZeroUsize::get),
        };
        let workers: Vec<Worker<Job>> = iter::repeat_with(Worker::new_lifo).take(n).collect();
        let parkers: Vec<Parker> = iter::repeat_with(Parker::new).take(n).collect();
        let shared = Arc::new(Shared {
            injector: Injector::new(),
            stealers: workers.iter().map(Worker::stealer).collect(),
            unparkers: parkers.iter().map(|p| p.unparker().clone()).collect(),
            sleepers: Mutex::new(Vec::with_capacity(n)),
            searching: AtomicUsize::new(0),
            counters: Arc::default(),
        });
        let mut pool = WorkStealingPool { shared, threads: Vec::with_capacity(n) };
        for (index, (worker, parker)) in workers.into_iter().zip(parkers).enumerate() {
            let name = format!("{}-{index}", self.name);
            let shared = Arc::clone(&pool.shared);
            let spawned =
                thread::Builder::new().name(name.clone()).spawn(move || run_worker(&shared, index, worker, &parker));
            match spawned {
                Ok(handle) => pool.threads.push(handle),
                // Dropping `pool` stops and joins the threads already started.
                Err(source) => return Err(BuildError::Spawn { name, source }),
            }
        }
        Ok(pool)
    }
}

impl Scheduler for WorkStealingPool {
    fn spawn(&self, task: Task) {
        WorkStealingPool::spawn(self, task);
    }

    fn runs_single_tasks_inline(&self) -> bool {
        false
    }
}

impl fmt::Debug for WorkStealingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkStealingPool").field("threads", &self.threads()).field("stats", &self.stats()).finish()
    }
}

impl Drop for WorkStealingPool {
    fn drop(&mut self) {
        self.shared.counters.shut_down.store(true, Ordering::SeqCst);
        for unparker in &self.shared.unparkers {
            unparker.unpark();
        }
        let me = thread::current().id();
        for handle in self.threads.drain(..) {
            // A pool dropped from one of its own tasks cannot join the thread running it; that
            // thread sees the flag after the task's poll and exits on its own.
            if handle.thread().id() != me {
                // A worker catches task panics, so a join error would be a bug in the loop
                // itself; there is nothing left to clean up for it.
                let _ = handle.join();
            }
        }
        self.shared.drain_injector();
    }
}

impl Shared {
    fn schedule(&self, job: Job, info: ScheduleInfo) {
        if self.counters.shut_down.load(Ordering::SeqCst) {
            self.counters.lost.fetch_add(1, Ordering::Relaxed);
            drop(job);
            return;
        }
        // A task that wakes itself (a yield) goes behind the others, so a yield loop cannot
        // starve its own thread's queue; other wakes from a pool thread stay local and hot.
        let job = if info.woken_while_running {
            Some(job)
        } else {
            LOCAL.with(|local| match &*local.borrow() {
                Some(local) if std::ptr::eq(local.pool, self) => {
                    local.worker.push(job);
                    None
                }
                _ => Some(job),
            })
        };
        if let Some(job) = job {
            self.injector.push(job);
            // Shutdown may have drained the injector between the check above and the push.
            if self.counters.shut_down.load(Ordering::SeqCst) {
                self.drain_injector();
                return;
            }
        }
        self.notify_one();
    }

    /// Wakes one sleeping thread, unless a thread is already searching for work.
    fn notify_one(&self) {
        fence(Ordering::SeqCst);
        if self.searching.load(Ordering::SeqCst) != 0 {
            return;
        }
        let mut sleepers = self.sleepers.lock().unwrap_or_else(PoisonError::into_inner);
        if self.searching.load(Ordering::SeqCst) != 0 {
            return;
        }
        if let Some(index) = sleepers.pop() {
            // Counted as searching from now on, so other spawns do not wake a second thread
            // for the same work; the woken thread takes the count over.
            self.searching.fetch_add(1, Ordering::SeqCst);
            self.counters.idle.store(sleepers.len(), Ordering::SeqCst);
            drop(sleepers);
            self.unparkers[index].unpark();
        }
    }

    fn has_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }

    fn drain_injector(&self) {
        loop {
            match self.injector.steal() {
                Steal::Success(job) => {
                    self.counters.lost.fetch_add(1, Ordering::Relaxed);
                    drop(job);
                }
                Steal::Retry => {}
                Steal::Empty => break,
            }
        }
    }

    fn shut_down(&self) -> bool {
        self.counters.shut_down.load(Ordering::SeqCst)
    }

    /// One pass over the injector and the other threads' deques, starting at a random thread.
    fn steal(&self, index: usize, local: &Worker<Job>) -> Option<Job> {
        loop {
            let mut retry = false;
            match self.injector.steal_batch_and_pop(local) {
                Steal::Success(job) => return Some(job),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            let n = self.stealers.len();
            let start = random_below(n);
            for victim in (start..n).chain(0..start).filter(|&v| v != index) {
                match self.stealers[victim].steal() {
                    Steal::Success(job) => {
                        self.counters.stolen.fetch_add(1, Ordering::Relaxed);
                        return Some(job);
                    }
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                return None;
            }
        }
    }

    fn run(&self, job: Job) {
        // Cloning the handle (a reference count) lets the guard outlive the borrow of `job`.
        let handle = job.metadata().clone();
        let _entered = handle.as_ref().map(Handle::enter);
        if catch_unwind(AssertUnwindSafe(|| job.run())).is_err() {
            self.counters.panicked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn run_worker(shared: &Arc<Shared>, index: usize, worker: Worker<Job>, parker: &Parker) {
    LOCAL.with(|local| {
        *local.borrow_mut() = Some(Local { pool: Arc::as_ptr(shared), worker });
    });
    let pop_local = || LOCAL.with(|l| l.borrow().as_ref().and_then(|l| l.worker.pop()));
    let mut searching = false;
    'work: while !shared.shut_down() {
        let mut job = pop_local();
        if job.is_none() {
            if !searching {
                searching = true;
                shared.searching.fetch_add(1, Ordering::SeqCst);
            }
            let backoff = Backoff::new();
            job = loop {
                let found = LOCAL.with(|l| l.borrow().as_ref().and_then(|l| shared.steal(index, &l.worker)));
                if found.is_some() || backoff.is_completed() || shared.shut_down() {
                    break found;
                }
                backoff.snooze();
            };
        }
        if let Some(job) = job {
            if searching {
                searching = false;
                // The last searcher to find work hands the search on, in case more is queued.
                if shared.searching.fetch_sub(1, Ordering::SeqCst) == 1 {
                    shared.notify_one();
                }
            }
            shared.run(job);
            continue;
        }

        // Going to sleep: register as a sleeper first, then stop searching, then look once
        // more. A spawn that saw this thread searching is seen by that last look; a spawn after
        // it finds this thread among the sleepers.
        {
            let mut sleepers = shared.sleepers.lock().unwrap_or_else(PoisonError::into_inner);
            sleepers.push(index);
            shared.counters.idle.store(sleepers.len(), Ordering::SeqCst);
        }
        shared.searching.fetch_sub(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if shared.has_work() || shared.shut_down() {
            let mut sleepers = shared.sleepers.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(at) = sleepers.iter().position(|&i| i == index) {
                sleepers.swap_remove(at);
                shared.counters.idle.store(sleepers.len(), Ordering::SeqCst);
                drop(sleepers);
                searching = true;
                shared.searching.fetch_add(1, Ordering::SeqCst);
                continue 'work;
            }
            // A notifier already took this thread off the list and will unpark it: the
            // park below returns at once, with this thread counted as searching.
        }
        shared.counters.parked.fetch_add(1, Ordering::Relaxed);
        parker.park();
        // Woken by a notifier, which counted this thread as searching, or by shutdown.
        searching = true;
    }
    // Tasks left on this thread's deque never run.
    // Taken out of the thread-local first: dropping a task may wake another, and the wake
    // must not find the cell borrowed.
    if let Some(local) = LOCAL.with(|local| local.borrow_mut().take()) {
        while let Some(job) = local.worker.pop() {
            shared.counters.lost.fetch_add(1, Ordering::Relaxed);
            drop(job);
        }
    }
}

/// A cheap per-thread random index below `n`, to spread thieves over their victims.
fn random_below(n: usize) -> usize {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0_u8) | 1
        });
    }
    STATE.with(|state| {
        // xorshift64*: good enough to pick a victim, and no shared state between threads.
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as usize % n
    })
}
