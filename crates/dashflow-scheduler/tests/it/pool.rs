use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use dashflow_scheduler::{BuildError, PoolStats, Scheduler, WorkStealingPool};

fn pool(threads: usize) -> WorkStealingPool {
    WorkStealingPool::builder().threads(threads).thread_name("it-pool").build().unwrap()
}

/// Spins (yielding the CPU) until `done` holds; the pool's counters are the event.
fn wait_until(pool: &WorkStealingPool, done: impl Fn(&PoolStats) -> bool) -> PoolStats {
    loop {
        let stats = pool.stats();
        if done(&stats) {
            return stats;
        }
        thread::yield_now();
    }
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
    while let Some(i) = rx.recv().await {
        seen[i] = true;
    }
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
        all_rx.recv().unwrap();
    });
    for _ in 0..CHILDREN {
        done_rx.recv().unwrap();
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
            wait_until(&pool, |s| s.idle == threads);
            let tx = tx.clone();
            pool.spawn(async move { tx.send(round).unwrap() });
            assert_eq!(rx.recv().unwrap(), round);
        }
    }
}

#[test]
fn idle_threads_park_instead_of_spinning() {
    let pool = pool(4);
    let first = wait_until(&pool, |s| s.idle == 4 && s.parked >= 4);
    let (tx, rx) = mpsc::channel();
    pool.spawn(async move { tx.send(()).unwrap() });
    rx.recv().unwrap();
    // The thread that ran the task goes back to sleep.
    wait_until(&pool, |s| s.idle == 4 && s.parked > first.parked);
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
            // Keep the only thread busy until shutdown has begun.
            while !counters.snapshot().shut_down {
                thread::yield_now();
            }
            finished.store(true, Ordering::SeqCst);
        });
    }
    started_rx.recv().unwrap();
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
        assert_eq!(rx.recv(), Err(mpsc::RecvError), "a queued task ran after shutdown");
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
    started_rx.recv().unwrap();
    // The task is parked on the channel; wait until its thread sleeps so its waker is set.
    wait_until(&pool, |s| s.idle == 1);
    drop(pool);
    wake_tx.send(()).unwrap();
    assert_eq!(counters.snapshot().lost, 1);
    assert_eq!(ran_rx.recv(), Err(mpsc::RecvError));
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
    let panicked_on = rx.recv().unwrap();
    pool.spawn(async move { tx.send(thread::current().id()).unwrap() });
    assert_eq!(rx.recv().unwrap(), panicked_on);
    assert_eq!(pool.stats().panicked, 1);
}

#[test]
fn threads_carry_the_builder_name() {
    let pool = WorkStealingPool::builder().threads(3).thread_name("crunch").build().unwrap();
    assert_eq!(pool.threads(), 3);
    let (tx, rx) = mpsc::channel();
    pool.spawn(async move { tx.send(thread::current().name().map(str::to_owned)).unwrap() });
    let name = rx.recv().unwrap().unwrap();
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
    assert!(rx.recv().unwrap().unwrap().starts_with("it-pool-"));
}

#[test]
fn the_global_pool_has_one_thread_per_core_and_runs_tasks() {
    let cores = thread::available_parallelism().unwrap().get();
    let pool = WorkStealingPool::global();
    assert_eq!(pool.threads(), cores);
    let (tx, rx) = mpsc::channel();
    pool.spawn(async move { tx.send(thread::current().name().map(str::to_owned)).unwrap() });
    assert!(rx.recv().unwrap().unwrap().starts_with("dashflow-global-pool-"));
    assert!(std::ptr::eq(pool, WorkStealingPool::global()));
}
