//! How an idle pool thread goes to sleep and how new work wakes one, without lost wake-ups.
//!
//! The rule is tokio's (the idle logic of its multi-thread scheduler): a spawn wakes one sleeping
//! thread only when no thread is searching for work, and the last searcher to find work hands
//! the search on. A thread on its way to sleep registers as a sleeper, stops searching, then
//! looks once more; a spawn pushes its task, then reads the searching count. Both sides fence
//! (SeqCst) between their write and their read, so at least one of them sees the other: the
//! spawn sees a searcher (who will see the task) or the sleeper sees the task.
//!
//! The worker loop here is generic over its [`Queues`] so that the loom model at the bottom
//! of this file runs this very loop with a stand-in queue (crossbeam-deque is not
//! loom-aware); the pool runs it with its deques.

use std::sync::{Arc, PoisonError};

use super::Counters;
use super::sync::{AtomicUsize, Backoff, Mutex, Ordering, Parker, Unparker, fence};

/// Where a pool thread finds work.
pub(super) trait Queues {
    type Job;

    /// The next task on this thread's own deque.
    fn pop_local(&self) -> Option<Self::Job>;

    /// One pass over the shared queue and the other threads' deques.
    fn steal(&self) -> Option<Self::Job>;

    /// Whether any queue holds a task: the last look before sleeping.
    fn has_work(&self) -> bool;

    /// Runs one task.
    fn run(&self, job: Self::Job);
}

/// The sleep/wake state shared by a pool's threads and its spawners.
pub(super) struct Sleep {
    /// Indices of threads that are parked or about to park; a notifier pops one to wake it.
    sleepers: Mutex<Vec<usize>>,
    /// Threads looking for work outside their own deque. A spawn wakes a sleeper only when
    /// this is zero: a searcher either finds the new task or, on its way to sleep, sees it.
    searching: AtomicUsize,
    unparkers: Vec<Unparker>,
    counters: Arc<Counters>,
}

impl Sleep {
    pub(super) fn new(unparkers: Vec<Unparker>, counters: Arc<Counters>) -> Self {
        let sleepers = Mutex::new(Vec::with_capacity(unparkers.len()));
        Self { sleepers, searching: AtomicUsize::new(0), unparkers, counters }
    }

    pub(super) fn is_shut_down(&self) -> bool {
        self.counters.shut_down.load(Ordering::SeqCst)
    }

    /// Tells every thread to stop and wakes them all. A thread that is running a task sees
    /// the flag when its poll returns; a thread about to park finds its permit set.
    pub(super) fn shut_down(&self) {
        self.counters.shut_down.store(true, Ordering::SeqCst);
        for unparker in &self.unparkers {
            unparker.unpark();
        }
    }

    /// After queueing a task: wakes one sleeping thread, unless a thread is already searching.
    pub(super) fn notify_one(&self) {
        // Pairs with the fence a thread passes on its way to sleep (see `run_worker`).
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
            self.counters.set_idle(sleepers.len());
            drop(sleepers);
            self.unparkers[index].unpark();
        }
    }

    /// Puts thread `index` among the sleepers.
    fn register(&self, index: usize) {
        let mut sleepers = self.sleepers.lock().unwrap_or_else(PoisonError::into_inner);
        sleepers.push(index);
        self.counters.set_idle(sleepers.len());
    }

    /// Takes thread `index` off the sleepers, unless a notifier already did (and so will
    /// unpark it, with the thread counted as searching).
    fn unregister(&self, index: usize) -> bool {
        let mut sleepers = self.sleepers.lock().unwrap_or_else(PoisonError::into_inner);
        match sleepers.iter().position(|&i| i == index) {
            Some(at) => {
                sleepers.swap_remove(at);
                self.counters.set_idle(sleepers.len());
                true
            }
            None => false,
        }
    }
}

/// The loop of pool thread `index`: runs tasks until the pool shuts down, sleeping on
/// `parker` when there are none.
pub(super) fn run_worker<Q: Queues>(queues: &Q, sleep: &Sleep, index: usize, parker: &Parker) {
    let mut searching = false;
    'work: while !sleep.is_shut_down() {
        let mut job = queues.pop_local();
        if job.is_none() {
            if !searching {
                searching = true;
                sleep.searching.fetch_add(1, Ordering::SeqCst);
            }
            let backoff = Backoff::new();
            job = loop {
                let found = queues.steal();
                if found.is_some() || backoff.is_completed() || sleep.is_shut_down() {
                    break found;
                }
                backoff.snooze();
            };
        }
        if let Some(job) = job {
            if searching {
                searching = false;
                // The last searcher to find work hands the search on, in case more is queued.
                if sleep.searching.fetch_sub(1, Ordering::SeqCst) == 1 {
                    sleep.notify_one();
                }
            }
            queues.run(job);
            continue;
        }

        // Going to sleep: register as a sleeper first, then stop searching, then look once
        // more. A spawn that saw this thread searching is seen by that last look; a spawn after
        // it finds this thread among the sleepers.
        sleep.register(index);
        sleep.searching.fetch_sub(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if (queues.has_work() || sleep.is_shut_down()) && sleep.unregister(index) {
            searching = true;
            sleep.searching.fetch_add(1, Ordering::SeqCst);
            continue 'work;
        }
        // Either nothing is queued, or a notifier already took this thread off the list and
        // will unpark it: then the park below returns at once, with the thread counted as
        // searching.
        sleep.counters.count_park();
        parker.park();
        // Woken by a notifier, which counted this thread as searching, or by shutdown.
        searching = true;
    }
}

/// The protocol under every interleaving loom explores (within a preemption bound): pool
/// threads run the real [`run_worker`] loop and [`Sleep`] over a stand-in queue (counts of
/// queued tasks), while the test thread spawns as the pool does (queue, then
/// [`Sleep::notify_one`]), waits for every task to run, then shuts the pool down and joins it.
/// A lost wake-up leaves every thread parked with a task queued, and a shutdown that misses a
/// thread leaves it parked; loom reports either as a deadlock, and the model fails.
#[cfg(all(test, loom))]
mod loom_tests {
    #![allow(clippy::unwrap_used, reason = "a poisoned lock in a model is a failed model")]

    use loom::sync::atomic::AtomicUsize;
    use loom::sync::{Condvar, Mutex};
    use loom::thread;

    use super::*;

    /// What a stand-in task does when it runs.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Job {
        /// Counts itself done.
        Leaf,
        /// Queues a leaf on the running thread's own deque (as a task spawned from inside the
        /// pool is queued), wakes a thread for it as the pool's spawn does, then counts itself
        /// done.
        Parent,
    }

    /// The pool's queues in miniature: the shared queue (leaves and parents) and one deque of
    /// leaves per thread, each a count, plus the tally of tasks run.
    struct Model {
        injected_leaves: AtomicUsize,
        injected_parents: AtomicUsize,
        locals: Vec<AtomicUsize>,
        done: Mutex<usize>,
        all_done: Condvar,
        sleep: Sleep,
    }

    /// One thread's view of the model, as the pool gives each thread its own deque.
    struct Worker<'a> {
        model: &'a Model,
        index: usize,
    }

    fn take(count: &AtomicUsize) -> bool {
        count.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }

    impl Queues for Worker<'_> {
        type Job = Job;

        fn pop_local(&self) -> Option<Job> {
            take(&self.model.locals[self.index]).then_some(Job::Leaf)
        }

        fn steal(&self) -> Option<Job> {
            let model = self.model;
            if take(&model.injected_leaves) {
                return Some(Job::Leaf);
            }
            if take(&model.injected_parents) {
                return Some(Job::Parent);
            }
            let mut others = model.locals.iter().enumerate().filter(|&(i, _)| i != self.index);
            others.find_map(|(_, local)| take(local).then_some(Job::Leaf))
        }

        fn has_work(&self) -> bool {
            let model = self.model;
            model.injected_leaves.load(Ordering::SeqCst) > 0
                || model.injected_parents.load(Ordering::SeqCst) > 0
                || model.locals.iter().any(|local| local.load(Ordering::SeqCst) > 0)
        }

        fn run(&self, job: Job) {
            if job == Job::Parent {
                self.model.locals[self.index].fetch_add(1, Ordering::SeqCst);
                self.model.sleep.notify_one();
            }
            *self.model.done.lock().unwrap() += 1;
            self.model.all_done.notify_all();
        }
    }

    /// `threads` pool threads; the test thread spawns `leaves` leaves and `parents` parents,
    /// and waits until all of them and the parents' leaves have run.
    fn model(threads: usize, leaves: usize, parents: usize, preemption_bound: Option<usize>) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = preemption_bound;
        builder.check(move || {
            let parkers: Vec<Parker> = (0..threads).map(|_| Parker::new()).collect();
            let unparkers = parkers.iter().map(|p| p.unparker().clone()).collect();
            let model = loom::sync::Arc::new(Model {
                injected_leaves: AtomicUsize::new(0),
                injected_parents: AtomicUsize::new(0),
                locals: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
                done: Mutex::new(0),
                all_done: Condvar::new(),
                sleep: Sleep::new(unparkers, Arc::new(Counters::default())),
            });
            let handles: Vec<_> = parkers
                .into_iter()
                .enumerate()
                .map(|(index, parker)| {
                    let model = loom::sync::Arc::clone(&model);
                    thread::spawn(move || run_worker(&Worker { model: &model, index }, &model.sleep, index, &parker))
                })
                .collect();
            for _ in 0..leaves {
                model.injected_leaves.fetch_add(1, Ordering::SeqCst);
                model.sleep.notify_one();
            }
            for _ in 0..parents {
                model.injected_parents.fetch_add(1, Ordering::SeqCst);
                model.sleep.notify_one();
            }
            let expected = leaves + 2 * parents;
            let mut done = model.done.lock().unwrap();
            while *done < expected {
                done = model.all_done.wait(done).unwrap();
            }
            assert_eq!(*done, expected, "a task ran twice");
            drop(done);
            model.sleep.shut_down();
            for handle in handles {
                handle.join().unwrap();
            }
            assert!(!Worker { model: &model, index: 0 }.has_work(), "a task was left queued");
        });
    }

    #[test]
    fn loom_one_thread_never_sleeps_on_a_queued_task() {
        model(1, 2, 0, Some(3));
    }

    #[test]
    fn loom_a_spawn_while_two_threads_go_to_sleep_is_never_lost() {
        model(2, 1, 0, Some(3));
    }

    #[test]
    fn loom_two_spawns_racing_two_threads_to_sleep_both_run() {
        model(2, 2, 0, Some(2));
    }

    #[test]
    fn loom_a_task_spawned_from_inside_the_pool_is_run_or_stolen() {
        model(2, 0, 1, Some(2));
    }
}
