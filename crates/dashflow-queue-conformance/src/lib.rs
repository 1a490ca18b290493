//! One suite of contract checks that every DashFlow run queue runs.
//!
//! The [`RunQueue`] contract (one queued or running run per thread, pending runs promoted in
//! order, claims by priority and then fairly across tenants, claims that never hand one run to
//! two workers, fence epochs bumped at every change of owner and checked by every write made
//! under a lease, sweeps of workers whose lease expired, cancel, give-up, listing) is written
//! down once, here, as `pub async fn` checks grouped by operation:
//! [`checks::claim::highest_priority_first`], [`checks::fence::a_former_owners_put_is_a_conflict_and_stores_nothing`],
//! and so on. [`cases`] lists them all; [`trials`] turns them into one libtest-mimic trial per
//! case, named `{backend}/{group}/{case}` (`memory/claim/highest_priority_first`), each on a
//! fresh, empty queue from the backend's factory and on its own tokio runtime, so trials run
//! in parallel and never share state. Checks report a broken contract as [`Error::Contract`]
//! with what was expected and what came back, and assert error *kinds* (a late write is a
//! `Conflict`, a late finish `LeaseLost`, on every backend).
//!
//! Checks about time (a lease that expires, a backoff that passes) never assert how long
//! anything took: they use short leases and poll for the change, letting time pass through
//! the harness's [`Time`] between polls, within a bound. A queue on a real clock passes time
//! by waiting ([`RealTime`]); a queue on a manual clock moves it.
//!
//! A backend runs the suite from an integration test with `harness = false`:
//!
//! ```no_run
//! // tests/conformance.rs of a queue crate; Cargo.toml has
//! // [[test]] name = "conformance", harness = false
//! use std::sync::Arc;
//!
//! use dashflow_queue::RunQueue;
//! use dashflow_queue_conformance::{Capabilities, RealTime, TestQueue};
//! # fn my_queue() -> Arc<dyn RunQueue> { unimplemented!() }
//!
//! fn main() {
//!     let trials = dashflow_queue_conformance::trials("mine", Capabilities::none(), || async {
//!         TestQueue::new(my_queue(), Arc::new(RealTime))
//!     });
//!     dashflow_queue_conformance::run(trials).exit();
//! }
//! ```
//!
//! Some parts of the trait are optional ([`Capability`]: `wakeups`, `streams`, whose
//! defaults are `None`). A backend declares the ones it has ([`Capabilities`]); the trials of
//! the others are ignored, each naming what the backend lacks, so a report never shows a
//! missing capability as a pass.
//!
//! The suite is shown to fail: this crate's own tests run it against deliberately broken
//! wrappers of the memory queue (one ignores fences, one lets two workers claim the same run,
//! one ignores priority, one never sweeps, one sweeps by the lease alone, one puts runs asked
//! to cancel back in the queue when they are released or given up) and assert that the
//! matching checks fail.
//!
//! This crate has no feature flags.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dashflow_queue::RunQueue;
use futures::future::BoxFuture;
use libtest_mimic::{Arguments, Completion, Conclusion, Failed, Trial};

pub mod checks;
mod error;
mod fixture;

pub use error::{Error, Result};

/// An optional part of [`RunQueue`]: one whose default is `None`, which a queue may keep. A
/// queue declares what it has in [`Capabilities`]; the trials of a missing one are ignored,
/// with the reason, never passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// `wakeups`: hints that work was queued or a run ended.
    Wakeups,
    /// `streams`: runs' event streams, appended under the fence.
    Streams,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 2] = [Self::Wakeups, Self::Streams];

    /// The operation's name.
    pub fn operation(self) -> &'static str {
        match self {
            Self::Wakeups => "wakeups",
            Self::Streams => "streams",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Wakeups => 1,
            Self::Streams => 2,
        }
    }
}

/// The optional parts a queue implements.
///
/// ```
/// use dashflow_queue_conformance::{Capabilities, Capability};
///
/// let caps = Capabilities::all().without(Capability::Wakeups);
/// assert!(caps.has(Capability::Streams) && !caps.has(Capability::Wakeups));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities(u8);

impl Capabilities {
    /// Every optional part.
    pub fn all() -> Self {
        Capability::ALL.into_iter().fold(Self::none(), Self::with)
    }

    /// Only the required operations.
    pub fn none() -> Self {
        Self(0)
    }

    /// These, and `capability`.
    #[must_use]
    pub fn with(self, capability: Capability) -> Self {
        Self(self.0 | capability.bit())
    }

    /// These, without `capability`.
    #[must_use]
    pub fn without(self, capability: Capability) -> Self {
        Self(self.0 & !capability.bit())
    }

    /// Whether `capability` is among these.
    pub fn has(self, capability: Capability) -> bool {
        self.0 & capability.bit() != 0
    }
}

/// How a harness lets time pass for its queue, between two polls of a check that waits for a
/// lease to expire or a backoff to end.
#[async_trait::async_trait]
pub trait Time: Send + Sync + 'static {
    /// Lets `by` pass on the queue's clock: waits for it on a real clock, moves a manual one.
    async fn pass(&self, by: Duration);
}

/// Real time: [`Time::pass`] waits (`tokio::time::sleep`). For queues on a clock nobody can
/// move, such as a database server's.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealTime;

#[async_trait::async_trait]
impl Time for RealTime {
    async fn pass(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
}

/// A fresh, empty queue for one check, with the way to let time pass on its clock and
/// whatever must live as long as it (a test database that is dropped after the queue).
#[derive(Clone)]
pub struct TestQueue {
    queue: Arc<dyn RunQueue>,
    time: Arc<dyn Time>,
    /// Dropped after `queue` (fields drop in order).
    _keep: Option<Arc<dyn Any + Send + Sync>>,
}

impl TestQueue {
    /// `queue`, whose clock `time` moves.
    pub fn new(queue: Arc<dyn RunQueue>, time: Arc<dyn Time>) -> Self {
        Self { queue, time, _keep: None }
    }

    /// Keeps `guard` alive until the check is done with the queue, then drops it after the
    /// queue: a test schema, a temporary directory.
    #[must_use]
    pub fn keeping(mut self, guard: impl Any + Send + Sync) -> Self {
        self._keep = Some(Arc::new(guard));
        self
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<dyn RunQueue> {
        &self.queue
    }

    /// Lets `by` pass on the queue's clock.
    pub async fn pass(&self, by: Duration) {
        self.time.pass(by).await;
    }
}

impl std::fmt::Debug for TestQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestQueue").field("queue", &self.queue).finish_non_exhaustive()
    }
}

/// One check of the contract: a group (`claim`, `fence`, ...), a name, the optional parts it
/// needs, and the check itself.
#[derive(Clone, Copy)]
pub struct Case {
    group: &'static str,
    name: &'static str,
    needs: &'static [Capability],
    check: fn(TestQueue) -> BoxFuture<'static, Result<()>>,
}

impl Case {
    /// The operation the case is about, e.g. `claim`.
    pub fn group(&self) -> &'static str {
        self.group
    }

    /// The case within its group, e.g. `highest_priority_first`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `group/name`, e.g. `claim/highest_priority_first`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.group, self.name)
    }

    /// The optional parts the check exercises.
    pub fn needs(&self) -> &'static [Capability] {
        self.needs
    }

    /// Runs the check against `queue`, which should be fresh and empty.
    pub async fn run(&self, queue: TestQueue) -> Result<()> {
        (self.check)(queue).await
    }
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Case").field(&self.path()).finish()
    }
}

/// Every case of the suite, grouped by operation.
pub fn cases() -> &'static [Case] {
    checks::CASES
}

fn runtime() -> Result<tokio::runtime::Runtime, Failed> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Failed::from(Error::Runtime { source }.report()))
}

/// One libtest-mimic trial per case, named `{backend}/{group}/{case}`.
///
/// Each trial builds its own multi-threaded tokio runtime (two workers), awaits `factory` on
/// it for a fresh, empty queue, and runs the case; trials never share a queue, so they may run
/// in parallel. A factory that cannot set up (say, no database) may panic: the trial fails
/// with the panic message. A case that needs a part missing from `capabilities` is an
/// ignored trial saying which; a declared part that answers `None` fails its trials.
pub fn trials<F, Fut>(backend: &str, capabilities: Capabilities, factory: F) -> Vec<Trial>
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = TestQueue>,
{
    cases()
        .iter()
        .map(|case| {
            let (case, factory) = (*case, factory.clone());
            let name = format!("{backend}/{}", case.path());
            match case.needs.iter().find(|capability| !capabilities.has(**capability)) {
                Some(missing) => lacking(name, backend, *missing),
                None => Trial::test(name, move || run_trial(case, factory)),
            }
        })
        .collect()
}

/// An ignored trial for a case whose part the queue does not implement.
fn lacking(name: String, backend: &str, missing: Capability) -> Trial {
    let reason = format!("{backend} does not implement {}", missing.operation());
    Trial::ignorable_test(name, move || Ok(Completion::ignored_with(reason)))
        .with_kind(format!("lacks {}", missing.operation()))
        .with_ignored_flag(true)
}

/// The same trials, all marked ignored: for a queue whose server is absent (say, no
/// PostgreSQL URL in the environment), so the report lists every case as skipped instead of
/// passing nothing silently.
pub fn ignored_trials(backend: &str) -> Vec<Trial> {
    cases()
        .iter()
        .map(|case| Trial::test(format!("{backend}/{}", case.path()), || Ok(())).with_ignored_flag(true))
        .collect()
}

fn run_trial<F, Fut>(case: Case, factory: F) -> Result<(), Failed>
where
    F: Fn() -> Fut,
    Fut: Future<Output = TestQueue>,
{
    let runtime = runtime()?;
    runtime.block_on(async { case.run(factory().await).await }).map_err(|error| Failed::from(error.report()))
}

/// Runs `trials` with the command line's arguments (filters, `--list`, `--test-threads`, ...)
/// and returns the conclusion; call `.exit()` on it at the end of `main`.
pub fn run(trials: Vec<Trial>) -> Conclusion {
    libtest_mimic::run(&Arguments::from_args(), trials)
}
