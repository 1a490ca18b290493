//! A work-stealing thread pool that drives futures, for CPU-heavy tasks.

use std::cell::RefCell;
use std::future::Future;
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::thread::{self, JoinHandle};
use std::{fmt, io, iter};

use async_task::{Runnable, ScheduleInfo, WithInfo};
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use tokio::runtime::Handle;

use self::sleep::{Queues, Sleep};
use self::sync::{AtomicBool, Parker};
use crate::{BuildError, Scheduler, Task, niceness};

mod sleep;
mod sync;

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
/// [`PoolBuilder`] sets the number of threads, their names and stack size, and on Linux their
/// niceness: set above that of the threads running the async runtime, a saturated CPU goes
/// to those threads first.
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
    stack_size: Option<usize>,
    niceness: Option<i32>,
}

/// A snapshot of a pool's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks handed to [`WorkStealingPool::spawn`].
    pub spawned: u64,
    /// Times a task was queued on the shared injector rather than on a pool thread's own
    /// deque: spawns and wakes from outside the pool, and tasks that yielded (a task that
    /// wakes itself goes behind the others).
    pub injected: u64,
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

/// The statistics are plain atomics, read racily: the sleep protocol never reads them. The
/// shutdown flag is part of that protocol, so it comes from the shim that loom can replace.
#[derive(Default)]
struct Counters {
    spawned: AtomicU64,
    injected: AtomicU64,
    stolen: AtomicU64,
    parked: AtomicU64,
    panicked: AtomicU64,
    lost: AtomicU64,
    idle: AtomicUsize,
    shut_down: AtomicBool,
}

impl Counters {
    fn set_idle(&self, idle: usize) {
        self.idle.store(idle, Ordering::SeqCst);
    }

    fn count_park(&self) {
        self.parked.fetch_add(1, Ordering::Relaxed);
    }
}

struct Shared {
    injector: Injector<Job>,
    stealers: Vec<Stealer<Job>>,
    sleep: Sleep,
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
        PoolBuilder { threads: None, name: "dashflow-pool".to_owned(), stack_size: None, niceness: None }
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
            injected: c.injected.load(Ordering::Relaxed),
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
    /// The smallest stack [`stack_size`](Self::stack_size) accepts: room for the pool's own
    /// loop, a task's poll and the tokio context around it, so that a setting too small is an
    /// error at build time rather than a stack overflow that aborts the process.
    pub const MIN_STACK_SIZE: usize = 64 * 1024;

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

    /// The size in bytes of each thread's stack (default: the standard library's, which
    /// `RUST_MIN_STACK` sets), for tasks that recurse deeply. At least
    /// [`MIN_STACK_SIZE`](Self::MIN_STACK_SIZE).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Linux only: the nice value of each thread, from -20 (highest priority) to 19 (lowest;
    /// default: the niceness of the thread that builds the pool, which its threads inherit).
    ///
    /// A pool of CPU-heavy tasks set above the process's niceness leaves the CPU to the async
    /// runtime's threads when both want it, so the graph's loop, checkpoint writes and
    /// heartbeats keep their pace. Each thread sets its own niceness (`setpriority` on its
    /// thread id) before [`build`](Self::build) returns. A value below the inherited one
    /// raises priority, which Linux allows only with `CAP_SYS_NICE` or an `RLIMIT_NICE` that
    /// covers it; without either, `build` fails rather than run the pool at a priority other
    /// than the one asked for. On other platforms `build` fails with
    /// [`BuildError::NicenessUnsupported`].
    pub fn niceness(mut self, nice: i32) -> Self {
        self.niceness = Some(nice);
        self
    }

    /// Starts the threads.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroThreads`] if `threads(0)` was set, [`BuildError::StackTooSmall`] for a
    /// stack below [`MIN_STACK_SIZE`](Self::MIN_STACK_SIZE), [`BuildError::NicenessOutOfRange`]
    /// or [`BuildError::NicenessUnsupported`] for a niceness Linux would not take or on another
    /// platform, [`BuildError::Niceness`] if the operating system refuses a thread's niceness,
    /// and [`BuildError::Spawn`] if it refuses a thread. On an error the threads already
    /// started are stopped.
    pub fn build(self) -> Result<WorkStealingPool, BuildError> {
        let n = match self.threads {
            Some(0) => return Err(BuildError::ZeroThreads),
            Some(n) => n,
            None => thread::available_parallelism().map_or(1, NonZeroUsize::get),
        };
        if let Some(requested) = self.stack_size
            && requested < Self::MIN_STACK_SIZE
        {
            return Err(BuildError::StackTooSmall { requested, minimum: Self::MIN_STACK_SIZE });
        }
        if let Some(requested) = self.niceness {
            niceness::check(requested).map_err(|unfit| match unfit {
                niceness::Unfit::Unsupported => BuildError::NicenessUnsupported,
                niceness::Unfit::OutOfRange => BuildError::NicenessOutOfRange { requested },
            })?;
        }
        let workers: Vec<Worker<Job>> = iter::repeat_with(Worker::new_lifo).take(n).collect();
        let parkers: Vec<Parker> = iter::repeat_with(Parker::new).take(n).collect();
        let counters = Arc::<Counters>::default();
        let unparkers = parkers.iter().map(|p| p.unparker().clone()).collect();
        let shared = Arc::new(Shared {
            injector: Injector::new(),
            stealers: workers.iter().map(Worker::stealer).collect(),
            sleep: Sleep::new(unparkers, Arc::clone(&counters)),
            counters,
        });
        let mut pool = WorkStealingPool { shared, threads: Vec::with_capacity(n) };
        // Each thread reports whether it took its niceness before `build` returns.
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), (usize, io::Error)>>();
        for (index, (worker, parker)) in workers.into_iter().zip(parkers).enumerate() {
            let name = format!("{}-{index}", self.name);
            let shared = Arc::clone(&pool.shared);
            let asked = self.niceness;
            let ready = ready_tx.clone();
            let mut builder = thread::Builder::new().name(name.clone());
            if let Some(bytes) = self.stack_size {
                builder = builder.stack_size(bytes);
            }
            let spawned = builder.spawn(move || {
                if let Some(nice) = asked {
                    let set = niceness::set(nice);
                    let failed = set.is_err();
                    // `build` waits for this report; if it has gone, so has the pool.
                    let _ = ready.send(set.map_err(|source| (index, source)));
                    if failed {
                        return;
                    }
                }
                drop(ready);
                run_worker(&shared, index, worker, &parker);
            });
            match spawned {
                Ok(handle) => pool.threads.push(handle),
                // Dropping `pool` stops and joins the threads already started.
                Err(source) => return Err(BuildError::Spawn { name, source }),
            }
        }
        drop(ready_tx);
        if let Some(requested) = self.niceness {
            // Every thread reports once: nothing before its report can unwind.
            for report in ready_rx.iter().take(n) {
                if let Err((index, source)) = report {
                    let name = format!("{}-{index}", self.name);
                    return Err(BuildError::Niceness { name, requested, source });
                }
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
        self.shared.sleep.shut_down();
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
        if self.sleep.is_shut_down() {
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
            self.counters.injected.fetch_add(1, Ordering::Relaxed);
            self.injector.push(job);
            // Shutdown may have drained the injector between the check above and the push.
            if self.sleep.is_shut_down() {
                self.drain_injector();
                return;
            }
        }
        self.sleep.notify_one();
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
}

/// One pool thread's access to the queues, for the sleep protocol's worker loop.
struct PoolThread<'a> {
    shared: &'a Shared,
    index: usize,
}

impl Queues for PoolThread<'_> {
    type Job = Job;

    fn pop_local(&self) -> Option<Job> {
        LOCAL.with(|local| local.borrow().as_ref().and_then(|local| local.worker.pop()))
    }

    fn steal(&self) -> Option<Job> {
        LOCAL.with(|local| local.borrow().as_ref().and_then(|local| self.shared.steal(self.index, &local.worker)))
    }

    fn has_work(&self) -> bool {
        !self.shared.injector.is_empty() || self.shared.stealers.iter().any(|s| !s.is_empty())
    }

    fn run(&self, job: Job) {
        // Cloning the handle (a reference count) lets the guard outlive the borrow of `job`.
        let handle = job.metadata().clone();
        let _entered = handle.as_ref().map(Handle::enter);
        if catch_unwind(AssertUnwindSafe(|| job.run())).is_err() {
            self.shared.counters.panicked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn run_worker(shared: &Arc<Shared>, index: usize, worker: Worker<Job>, parker: &Parker) {
    LOCAL.with(|local| {
        *local.borrow_mut() = Some(Local { pool: Arc::as_ptr(shared), worker });
    });
    sleep::run_worker(&PoolThread { shared, index }, &shared.sleep, index, parker);
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
