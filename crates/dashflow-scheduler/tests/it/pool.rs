use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use std::{fmt, thread};

use dashflow_scheduler::{BuildError, PoolStats, Scheduler, WorkStealingPool};

fn pool(threads: usize) -> WorkStealingPool {
    WorkStealingPool::builder().threads(threads).thread_name("it-pool").build().unwrap()
}

/// How long a test waits for the pool to reach a state before failing: far beyond what a
/// working pool needs, so only a pool that never gets there fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// Spins (yielding the CPU) until `done` holds; the pool's counters are the event. A pool that
/// never reaches the state fails the test, naming what it waited for, instead of hanging it.
#[track_caller]
fn wait_until(pool: &WorkStealingPool, what: &str, done: impl Fn(&PoolStats) -> bool) -> PoolStats {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stats = pool.stats();
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "the pool never reached `{what}` within {PATIENCE:?}: {stats:?}");
        thread::yield_now();
    }
}

/// The next message on `rx`; a message that never comes fails the test, naming `what`.
#[track_caller]
fn recv<T>(rx: &mpsc::Receiver<T>, what: &str) -> T {
    match rx.recv_timeout(PATIENCE) {
        Ok(message) => message,
        Err(err) => panic!("waited for {what}: {err} within {PATIENCE:?}"),
    }
}

/// Asserts that every sender of `rx` is gone without sending: the task holding it was dropped.
#[track_caller]
fn assert_dropped_unsent<T: fmt::Debug + PartialEq>(rx: &mpsc::Receiver<T>, what: &str) {
    assert_eq!(rx.recv_timeout(PATIENCE), Err(mpsc::RecvTimeoutError::Disconnected), "{what}");
}

async fn every_task_completes(threads: usize) {
    const TASKS: usize = 200;
    let pool = pool(threads);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..TASKS {
        let tx = tx.clone();
        pool.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(i as u64);
            for _ in 0..rng.usize(0..4) {
                tokio::task::yield_now().await;
            }
            if rng.bool() {
                tokio::time::sleep(Duration::from_millis(rng.u64(0..3))).await;
            }
            tx.send(i).unwrap();
        });
    }
    drop(tx);
    let mut seen = [false; TASKS];
    let all_sent = async {
        while let Some(i) = rx.recv().await {
            seen[i] = true;
        }
    };
    tokio::time::timeout(PATIENCE, all_sent).await.expect("the tasks did not all finish or drop their senders");
    assert!(seen.iter().all(|&s| s), "{threads} threads: a task never finished");
    assert_eq!(pool.stats().panicked, 0);
    assert_eq!(pool.stats().spawned, TASKS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_with_yields_and_tokio_timers_completes_on_a_multi_thread_runtime() {
    for threads in [1, 2, 4, 8] {
        every_task_completes(threads).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn every_task_with_yields_and_tokio_timers_completes_on_a_current_thread_runtime() {
    for threads in [1, 2, 4, 8] {
        every_task_completes(threads).await;
    }
}

#[test]
fn idle_threads_steal_from_a_thread_blocked_on_a_long_task() {
    const CHILDREN: usize = 64;
    let pool = Arc::new(pool(2));
    let (done_tx, done_rx) = mpsc::channel();
    let inner = Arc::clone(&pool);
    pool.spawn(async move {
        for _ in 0..CHILDREN {
            let done_tx = done_tx.clone();
            // Spawned from a pool thread, so onto that thread's own deque.
            inner.spawn(async move { done_tx.send(()).unwrap() });
        }
        // Block this thread until every child ran: only a thief can run them.
        let (all_tx, all_rx) = mpsc::channel();
        inner.spawn(async move { all_tx.send(()).unwrap() });
        recv(&all_rx, "the last child, run by a thief");
    });
    for _ in 0..CHILDREN {
        recv(&done_rx, "a child task");
    }
    let stats = pool.stats();
    assert!(stats.stolen >= CHILDREN as u64, "{stats:?}");
}

#[test]
fn a_spawn_while_every_thread_sleeps_always_wakes_one_in_10000_rounds() {
    for threads in [1, 2] {
        let pool = pool(threads);
        let (tx, rx) = mpsc::channel();
        for round in 0..10_000_u32 {
            wait_until(&pool, "every thread idle", |s| s.idle == threads);
            let tx = tx.clone();
            pool.spawn(async move { tx.send(round).unwrap() });
            assert_eq!(recv(&rx, "the task spawned onto sleeping threads"), round);
        }
    }
}

#[test]
fn idle_threads_park_instead_of_spinning() {
    let pool = pool(4);
    let first = wait_until(&pool, "four threads parked", |s| s.idle == 4 && s.parked >= 4);
    let (tx, rx) = mpsc::channel();
    pool.spawn(async move { tx.send(()).unwrap() });
    recv(&rx, "the task");
    // The thread that ran the task goes back to sleep.
    wait_until(&pool, "the thread that ran the task parked again", |s| s.idle == 4 && s.parked > first.parked);
}

#[test]
fn drop_joins_the_threads_and_counts_queued_tasks_as_lost() {
    let pool = pool(1);
    let counters = pool.counters();
    let finished = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = mpsc::channel();
    {
        let counters = counters.clone();
        let finished = Arc::clone(&finished);
        pool.spawn(async move {
            started_tx.send(()).unwrap();
            // Keep the only thread busy until shutdown has begun; a shutdown that never
            // begins leaves `finished` unset, which the test reports.
            let deadline = Instant::now() + PATIENCE;
            while !counters.snapshot().shut_down && Instant::now() < deadline {
                thread::yield_now();
            }
            finished.store(counters.snapshot().shut_down, Ordering::SeqCst);
        });
    }
    recv(&started_rx, "the first task to start");
    let mut queued = Vec::new();
    for _ in 0..10 {
        let (tx, rx) = mpsc::channel::<()>();
        pool.spawn(async move { tx.send(()).unwrap() });
        queued.push(rx);
    }
    drop(pool);
    assert!(finished.load(Ordering::SeqCst), "drop returned before the running task ended");
    let stats = counters.snapshot();
    assert_eq!(stats.lost, 10, "{stats:?}");
    for rx in queued {
        assert_dropped_unsent(&rx, "a queued task ran after shutdown");
    }
}

#[test]
fn a_task_woken_after_drop_is_counted_as_lost_without_a_panic() {
    let pool = pool(1);
    let counters = pool.counters();
    let (wake_tx, wake_rx) = tokio::sync::oneshot::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    let (ran_tx, ran_rx) = mpsc::channel::<()>();
    pool.spawn(async move {
        started_tx.send(()).unwrap();
        let _ = wake_rx.await;
        ran_tx.send(()).unwrap();
    });
    recv(&started_rx, "the task to start");
    // The task is parked on the channel; wait until its thread sleeps so its waker is set.
    wait_until(&pool, "the only thread idle", |s| s.idle == 1);
    drop(pool);
    wake_tx.send(()).unwrap();
    assert_eq!(counters.snapshot().lost, 1);
    assert_dropped_unsent(&ran_rx, "the task ran after shutdown");
}

#[test]
fn a_panicking_task_leaves_its_thread_running_later_tasks() {
    let pool = pool(1);
    let (tx, rx) = mpsc::channel();
    let before = tx.clone();
    pool.spawn(async move {
        before.send(thread::current().id()).unwrap();
        panic!("this task panics on purpose");
    });
    let panicked_on = recv(&rx, "the panicking task to start");
    pool.spawn(async move { tx.send(thread::current().id()).unwrap() });
    assert_eq!(recv(&rx, "the task after the panic"), panicked_on);
    assert_eq!(pool.stats().panicked, 1);
}

#[test]
fn threads_carry_the_builder_name() {
    let pool = WorkStealingPool::builder().threads(3).thread_name("crunch").build().unwrap();
    assert_eq!(pool.threads(), 3);
    let (tx, rx) = mpsc::channel();
    pool.spawn(async move { tx.send(thread::current().name().map(str::to_owned)).unwrap() });
    let name = recv(&rx, "the task").unwrap();
    assert!(["crunch-0", "crunch-1", "crunch-2"].contains(&name.as_str()), "{name}");
}

#[test]
fn zero_threads_is_a_typed_error() {
    let err = WorkStealingPool::builder().threads(0).build().unwrap_err();
    assert!(matches!(err, BuildError::ZeroThreads), "{err:?}");
    assert!(err.to_string().contains("at least one thread"), "{err}");
}

#[test]
fn the_pool_as_a_scheduler_runs_tasks_and_never_inline() {
    let scheduler: Arc<dyn Scheduler> = Arc::new(pool(2));
    assert!(!scheduler.runs_single_tasks_inline());
    let (tx, rx) = mpsc::channel();
    scheduler.spawn(Box::pin(async move { tx.send(thread::current().name().map(str::to_owned)).unwrap() }));
    assert!(recv(&rx, "the task").unwrap().starts_with("it-pool-"));
}

#[test]
fn the_global_pool_has_one_thread_per_core_and_runs_tasks() {
    let cores = thread::available_parallelism().unwrap().get();
    let pool = WorkStealingPool::global();
    assert_eq!(pool.threads(), cores);
    let (tx, rx) = mpsc::channel();
    pool.spawn(async move { tx.send(thread::current().name().map(str::to_owned)).unwrap() });
    assert!(recv(&rx, "the task").unwrap().starts_with("dashflow-global-pool-"));
    assert!(std::ptr::eq(pool, WorkStealingPool::global()));
}

#[test]
fn spawns_from_outside_the_pool_enter_through_the_injector() {
    const TASKS: usize = 32;
    let pool = pool(2);
    let (tx, rx) = mpsc::channel();
    for i in 0..TASKS {
        let tx = tx.clone();
        pool.spawn(async move { tx.send(i).unwrap() });
    }
    for _ in 0..TASKS {
        recv(&rx, "a task spawned from outside");
    }
    let stats = pool.stats();
    assert_eq!((stats.spawned, stats.injected), (TASKS as u64, TASKS as u64), "{stats:?}");
}

#[test]
fn spawns_from_a_pool_task_go_to_its_own_deque_not_the_injector() {
    const CHILDREN: usize = 64;
    let pool = Arc::new(pool(2));
    let (tx, rx) = mpsc::channel();
    let inner = Arc::clone(&pool);
    pool.spawn(async move {
        for _ in 0..CHILDREN {
            let tx = tx.clone();
            inner.spawn(async move { tx.send(()).unwrap() });
        }
    });
    for _ in 0..CHILDREN {
        recv(&rx, "a child task");
    }
    let stats = pool.stats();
    // Only the parent came from outside; its children ran locally or were stolen.
    assert_eq!((stats.spawned, stats.injected), (1 + CHILDREN as u64, 1), "{stats:?}");
}

#[test]
fn a_task_that_yields_reenters_through_the_injector_each_time() {
    const YIELDS: u64 = 3;
    let pool = pool(1);
    let (tx, rx) = mpsc::channel();
    pool.spawn(async move {
        for _ in 0..YIELDS {
            tokio::task::yield_now().await;
        }
        tx.send(()).unwrap();
    });
    recv(&rx, "the yielding task");
    let stats = pool.stats();
    assert_eq!((stats.spawned, stats.injected), (1, 1 + YIELDS), "{stats:?}");
}

/// Recurses `depth` times with a page-sized frame the optimiser cannot drop, and returns a
/// sum that depends on every frame.
fn deep(depth: u32) -> u64 {
    let frame = std::hint::black_box([depth as u8; 4096]);
    if depth == 0 {
        return 0;
    }
    deep(depth - 1) + u64::from(frame[usize::from(depth as u8)])
}

#[test]
fn a_task_that_needs_a_deep_stack_runs_on_a_pool_with_a_large_one() {
    // About 16 MiB of frames: eight times a standard thread's default stack, a quarter of
    // the pool's.
    const DEPTH: u32 = 4096;
    let pool = WorkStealingPool::builder().threads(1).stack_size(64 << 20).build().unwrap();
    let (tx, rx) = mpsc::channel();
    pool.spawn(async move { tx.send(deep(DEPTH)).unwrap() });
    let expected: u64 = (1..=DEPTH).map(|d| u64::from(d as u8)).sum();
    assert_eq!(recv(&rx, "the deep task"), expected);
}

#[test]
fn the_smallest_accepted_stack_runs_tasks_with_tokio_timers() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pool = WorkStealingPool::builder()
        .threads(1)
        .stack_size(dashflow_scheduler::PoolBuilder::MIN_STACK_SIZE)
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    runtime.block_on(async {
        pool.spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            tx.send(()).unwrap();
        });
        tokio::time::timeout(PATIENCE, rx).await.expect("the task never finished").unwrap();
    });
}

#[test]
fn a_stack_below_the_minimum_is_a_typed_error() {
    let min = dashflow_scheduler::PoolBuilder::MIN_STACK_SIZE;
    let err = WorkStealingPool::builder().stack_size(min - 1).build().unwrap_err();
    assert!(
        matches!(err, BuildError::StackTooSmall { requested, minimum } if requested == min - 1 && minimum == min),
        "{err:?}"
    );
    assert!(err.to_string().contains(&format!("n >= {min}")), "{err}");
}

#[cfg(target_os = "linux")]
mod niceness {
    use super::*;

    /// The calling thread's nice value, as the kernel reports it (field 19 of its stat line).
    fn thread_niceness() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let after_name = &stat[stat.rfind(')').unwrap() + 1..];
        after_name.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    /// The niceness of every thread of `pool`, each reported by a task that holds its thread
    /// until all of them run, so each runs on a thread of its own.
    fn niceness_of_each_thread(pool: &WorkStealingPool) -> Vec<(String, i32)> {
        let threads = pool.threads();
        let barrier = Arc::new(std::sync::Barrier::new(threads));
        let (tx, rx) = mpsc::channel();
        for _ in 0..threads {
            let (barrier, tx) = (Arc::clone(&barrier), tx.clone());
            pool.spawn(async move {
                let name = thread::current().name().unwrap().to_owned();
                tx.send((name, thread_niceness())).unwrap();
                barrier.wait();
            });
        }
        let mut seen: Vec<(String, i32)> = (0..threads).map(|_| recv(&rx, "a thread's niceness")).collect();
        seen.sort();
        seen
    }

    #[test]
    fn every_pool_thread_runs_at_the_niceness_asked_for() {
        let inherited = thread_niceness();
        assert!(inherited < 19, "the test process already runs at the lowest priority");
        let asked = (inherited + 7).min(19);
        let pool = WorkStealingPool::builder().threads(3).thread_name("nice").niceness(asked).build().unwrap();
        let seen = niceness_of_each_thread(&pool);
        let expected: Vec<(String, i32)> = (0..3).map(|i| (format!("nice-{i}"), asked)).collect();
        assert_eq!(seen, expected);
        // The caller keeps its own niceness: it is set per thread.
        assert_eq!(thread_niceness(), inherited);
    }

    #[test]
    fn without_the_knob_pool_threads_keep_the_niceness_they_inherit() {
        let inherited = thread_niceness();
        let pool = WorkStealingPool::builder().threads(2).thread_name("plain").build().unwrap();
        let seen = niceness_of_each_thread(&pool);
        assert_eq!(seen, [("plain-0".to_owned(), inherited), ("plain-1".to_owned(), inherited)]);
    }

    #[test]
    fn raising_priority_without_cap_sys_nice_is_a_typed_error() {
        // Capabilities are per thread and a new thread inherits its creator's, so the pool is
        // built from a thread that gave CAP_SYS_NICE up: its threads lack it whoever runs the
        // test, root included.
        let result = thread::spawn(|| {
            let mut caps = rustix::thread::capabilities(None).unwrap();
            caps.effective.remove(rustix::thread::CapabilitySet::SYS_NICE);
            rustix::thread::set_capabilities(None, caps).unwrap();
            let limit = rustix::process::getrlimit(rustix::process::Resource::Nice);
            assert!(
                limit.current.is_none_or(|allowed| allowed < 40),
                "RLIMIT_NICE lets this process take niceness -20 without privilege: {limit:?}"
            );
            WorkStealingPool::builder().threads(2).thread_name("greedy").niceness(-20).build()
        })
        .join()
        .unwrap();
        let err = result.unwrap_err();
        let BuildError::Niceness { name, requested, source } = &err else { panic!("{err:?}") };
        assert!(name.starts_with("greedy-"), "{name}");
        assert_eq!(*requested, -20);
        assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied, "{source:?}");
        assert!(err.to_string().contains("CAP_SYS_NICE"), "{err}");
    }

    #[test]
    fn a_niceness_outside_linux_range_is_a_typed_error() {
        for asked in [-21, 20] {
            let err = WorkStealingPool::builder().niceness(asked).build().unwrap_err();
            assert!(matches!(err, BuildError::NicenessOutOfRange { requested } if requested == asked), "{err:?}");
            assert!(err.to_string().contains("-20 (highest priority) to 19 (lowest)"), "{err}");
        }
    }
}

#[cfg(not(target_os = "linux"))]
#[test]
fn niceness_off_linux_is_a_typed_error() {
    let err = WorkStealingPool::builder().niceness(5).build().unwrap_err();
    assert!(matches!(err, BuildError::NicenessUnsupported), "{err:?}");
}
