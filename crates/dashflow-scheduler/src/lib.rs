//! Where the tasks of a superstep run.
//!
//! The executor turns each task of a superstep into a `'static` future and hands it to a
//! [`Scheduler`]. The trait is deliberately tiny and object-safe, so a compiled graph can hold
//! an `Arc<dyn Scheduler>` chosen at run time: the default [`TokioScheduler`] spawns each
//! task onto the ambient tokio runtime; [`WorkStealingPool`], a fixed set of threads that
//! steal work from each other, implements the same trait for tasks that compute for long
//! stretches between awaits, and [`BlockingScheduler`] runs tasks on threads that may block.
//! The executor picks per node by its placement: a step's async tasks are polled together
//! on the run's own task unless the compiled graph was given a scheduler for them; CPU-bound
//! nodes go to [`WorkStealingPool::global`] and blocking ones to [`BlockingScheduler`], unless
//! the graph was given others (`CompiledGraph::with_scheduler_for`).
//!
//! A pool of your own is sized and tuned through [`WorkStealingPool::builder`]: thread count,
//! names, stack size, and on Linux the threads' niceness, so that the kernel favours the async
//! runtime's threads over CPU-heavy tasks when both want the CPU. [`PoolStats`] counts what the pool
//! did (spawned, injected, stolen, parked, panicked, lost). How idle threads sleep and wake
//! follows tokio's one-searcher rule and is model-checked with loom (`RUSTFLAGS="--cfg loom"
//! cargo test -p dashflow-scheduler --release --lib loom`, run by `cargo xtask ci`).
//!
//! ```
//! use dashflow_scheduler::WorkStealingPool;
//!
//! let builder = WorkStealingPool::builder().threads(2).thread_name("crunch").stack_size(8 << 20);
//! // Linux only: the lowest priority (lowering priority needs no privilege).
//! #[cfg(target_os = "linux")]
//! let builder = builder.niceness(19);
//! let pool = builder.build()?;
//! let (tx, rx) = std::sync::mpsc::channel();
//! pool.spawn(async move {
//!     let _ = tx.send(6 * 7);
//! });
//! assert_eq!(rx.recv()?, 42);
//! assert_eq!(pool.stats().spawned, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ```
//! use std::sync::Arc;
//! use dashflow_scheduler::{Scheduler, TokioScheduler};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let scheduler: Arc<dyn Scheduler> = Arc::new(TokioScheduler);
//! let (tx, rx) = tokio::sync::oneshot::channel();
//! scheduler.spawn(Box::pin(async move {
//!     let _ = tx.send(21 * 2);
//! }));
//! assert_eq!(rx.await.unwrap(), 42);
//! # }
//! ```
//!
//! This crate has no feature flags.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

mod error;
mod niceness;
mod pool;

pub use error::BuildError;
pub use pool::{PoolBuilder, PoolCounters, PoolStats, WorkStealingPool};

/// What other crates' background threads share with the pool's. Not public API.
#[doc(hidden)]
pub mod __private {
    /// Setting a thread's niceness: the exporters' threads (`dashflow-otel`, `dashflow-nats`)
    /// do it as the pool's threads do.
    pub mod niceness {
        pub use crate::niceness::{Niceness, RANGE, Refused, Unfit, check, set, thread_id};
    }
}

/// A unit of work: one task of a superstep, already wrapped so that it reports its own result.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Runs the tasks of a superstep.
///
/// A task reports its result through a channel captured inside it, so a scheduler only has
/// to drive it to completion. Panics are caught inside the task by the executor; a scheduler
/// may assume tasks do not unwind.
pub trait Scheduler: Send + Sync + fmt::Debug + 'static {
    /// Starts `task`; it must eventually be polled to completion.
    fn spawn(&self, task: Task);

    /// Whether a superstep with a single task may run that task inline on the caller's task
    /// instead of through [`Scheduler::spawn`].
    ///
    /// Inline execution saves a spawn and a cross-thread wake per node in sequential graphs.
    /// A scheduler that exists to move work off the async runtime (a blocking or CPU pool)
    /// returns `false`.
    fn runs_single_tasks_inline(&self) -> bool {
        true
    }
}

/// The default scheduler: every task is a tokio task on the current runtime.
///
/// Tasks of one superstep run in parallel on a multi-threaded runtime and interleave on a
/// current-thread runtime.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioScheduler;

impl Scheduler for TokioScheduler {
    fn spawn(&self, task: Task) {
        // The join handle is dropped on purpose: the task reports through its own channel,
        // and detaching keeps it running even if the superstep's caller goes away mid-step.
        drop(tokio::spawn(task));
    }
}

/// Runs each task on a thread that may block: tokio's blocking pool when a runtime is
/// current (the task is driven there with the runtime entered, so its timers and channels
/// work), else a thread of its own with a runtime of its own (a task whose thread or runtime
/// cannot be made is dropped, which the executor reports as a lost task). Never inline:
/// blocking the caller's thread is what it exists to avoid.
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockingScheduler;

impl Scheduler for BlockingScheduler {
    fn spawn(&self, task: Task) {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let driver = handle.clone();
                drop(handle.spawn_blocking(move || driver.block_on(task)));
            }
            Err(_) => {
                let thread = std::thread::Builder::new().name("dashflow-blocking".into()).spawn(move || {
                    if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        runtime.block_on(task);
                    }
                });
                drop(thread);
            }
        }
    }

    fn runs_single_tasks_inline(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
