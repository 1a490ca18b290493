//! One suite of contract checks that every DashFlow checkpoint backend runs.
//!
//! The [`Checkpointer`] contract (conditional puts, parent-linked chains, pending writes,
//! newest-first listing, thread copy and retention) is written down once, here, as
//! `pub async fn` checks grouped by operation: [`checks::put::conflict_when_head_moved`],
//! [`checks::list::newest_first`], [`checks::load::chain_follows_parent_links_across_a_fork`],
//! and so on. [`cases`] lists them all; [`trials`] turns them into one libtest-mimic trial per
//! case, named `{backend}/{group}/{case}` (`sqlite/list/newest_first`), each on a fresh,
//! empty checkpointer from the backend's factory and on its own tokio runtime, so trials run
//! in parallel and never share state. Checks report a broken contract as [`Error::Contract`]
//! with what was expected and what came back, and assert error *kinds* (a `Conflict` is a
//! `Conflict` on every backend).
//!
//! A backend runs the suite from an integration test with `harness = false`:
//!
//! ```no_run
//! // tests/conformance.rs of a backend crate; Cargo.toml has
//! // [[test]] name = "conformance", harness = false
//! use std::sync::Arc;
//!
//! use dashflow_checkpoint::{BlobLocation, Checkpointer};
//! # #[derive(Debug, Default)] struct MyCheckpointer;
//! # #[async_trait::async_trait] impl Checkpointer for MyCheckpointer {
//! #   async fn put(&self, _: dashflow_checkpoint::CheckpointRecord, _: Option<&dashflow_checkpoint::CheckpointId>) -> dashflow_checkpoint::Result<()> { Ok(()) }
//! #   async fn put_writes(&self, _: &str, _: &str, _: &dashflow_checkpoint::CheckpointId, _: Vec<dashflow_checkpoint::PendingWrite>) -> dashflow_checkpoint::Result<()> { Ok(()) }
//! #   async fn load(&self, _: &str, _: &str, _: Option<&dashflow_checkpoint::CheckpointId>) -> dashflow_checkpoint::Result<Option<dashflow_checkpoint::LoadedCheckpoint>> { Ok(None) }
//! #   async fn list(&self, _: &str, _: &dashflow_checkpoint::ListOptions) -> dashflow_checkpoint::Result<Vec<dashflow_checkpoint::CheckpointRecord>> { Ok(vec![]) }
//! #   async fn delete_thread(&self, _: &str) -> dashflow_checkpoint::Result<()> { Ok(()) }
//! #   async fn copy_thread(&self, _: &str, _: &str) -> dashflow_checkpoint::Result<()> { Ok(()) }
//! #   async fn delete_before(&self, _: &str, _: &str, _: &dashflow_checkpoint::CheckpointId) -> dashflow_checkpoint::Result<u64> { Ok(0) }
//! #   async fn delete_idle_threads(&self, _: i64) -> dashflow_checkpoint::Result<Vec<String>> { Ok(vec![]) }
//! # }
//!
//! fn main() {
//!     // MyCheckpointer keeps the default (`NotSupported`) of every optional operation.
//!     let capabilities = dashflow_checkpoint_conformance::Capabilities::none();
//!     let trials = dashflow_checkpoint_conformance::trials("mine", capabilities, || async {
//!         Arc::new(MyCheckpointer::default()) as Arc<dyn Checkpointer>
//!     });
//!     dashflow_checkpoint_conformance::run(trials).exit();
//! }
//! ```
//!
//! A single check can also be called directly, e.g. from a `#[tokio::test]`:
//! `checks::put::conflict_when_head_moved(Arc::new(my_checkpointer)).await?`.
//!
//! Some operations of the trait are optional ([`Capability`]: `rewrite_as_snapshot`,
//! `delete_namespace`, schemas, `list_threads`). A backend declares the ones it implements
//! ([`Capabilities`]); the trials of the others are ignored, each naming what the backend
//! lacks, so a report never shows a missing operation as a pass.
//!
//! The integrity checks ([`checks::integrity`]) change stored bytes behind the backend's back,
//! which only the backend's harness can do: it implements [`Tamper`] (a raw SQL `UPDATE`, the
//! memory backend's testing hook) and runs [`integrity_trials`] besides [`trials`].
//!
//! The suite is shown to fail: this crate's own tests run it against deliberately broken
//! wrappers of the memory backend (one ignores the expected head, one lists oldest first,
//! one builds chains by id order, ...) and assert that the matching checks fail.
//!
//! This crate has no feature flags.

use std::future::Future;
use std::sync::Arc;

use dashflow_checkpoint::{BlobLocation, Checkpointer};
use futures::future::BoxFuture;
use libtest_mimic::{Arguments, Completion, Conclusion, Failed, Trial};

pub mod checks;
mod error;
mod fixture;

pub use error::{Error, Result};

/// An optional operation of [`Checkpointer`]: one whose default body fails with
/// `NotSupported`, which a backend may keep. A backend declares what it has in
/// [`Capabilities`]; the trials of a missing one are ignored, with the reason, never passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// `rewrite_as_snapshot`, which retention folds delta chains with.
    RewriteAsSnapshot,
    /// `delete_namespace`, which retention drops unreachable subgraph namespaces with.
    DeleteNamespace,
    /// `put_schema` and `get_schema`, which let a changed state type read older threads.
    Schemas,
    /// `list_threads`.
    ListThreads,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 4] = [Self::RewriteAsSnapshot, Self::DeleteNamespace, Self::Schemas, Self::ListThreads];

    /// The operation's name, as in `NotSupported`.
    pub fn operation(self) -> &'static str {
        match self {
            Self::RewriteAsSnapshot => "rewrite_as_snapshot",
            Self::DeleteNamespace => "delete_namespace",
            Self::Schemas => "put_schema/get_schema",
            Self::ListThreads => "list_threads",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::RewriteAsSnapshot => 1,
            Self::DeleteNamespace => 2,
            Self::Schemas => 4,
            Self::ListThreads => 8,
        }
    }
}

/// The optional operations a backend implements (object_store's harness takes such flags).
///
/// ```
/// use dashflow_checkpoint_conformance::{Capabilities, Capability};
///
/// let caps = Capabilities::all().without(Capability::ListThreads);
/// assert!(caps.has(Capability::Schemas) && !caps.has(Capability::ListThreads));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities(u8);

impl Capabilities {
    /// Every optional operation.
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

/// One check of the contract: a group (`put`, `list`, ...), a name, the optional operations
/// it needs, and the check itself.
#[derive(Clone, Copy)]
pub struct Case {
    group: &'static str,
    name: &'static str,
    needs: &'static [Capability],
    check: fn(Arc<dyn Checkpointer>) -> BoxFuture<'static, Result<()>>,
}

impl Case {
    /// The operation the case is about, e.g. `put`.
    pub fn group(&self) -> &'static str {
        self.group
    }

    /// The case within its group, e.g. `conflict_when_head_moved`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `group/name`, e.g. `put/conflict_when_head_moved`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.group, self.name)
    }

    /// The optional operations the check exercises.
    pub fn needs(&self) -> &'static [Capability] {
        self.needs
    }

    /// Runs the check against `checkpointer`, which should be fresh and empty.
    pub async fn run(&self, checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
        (self.check)(checkpointer).await
    }
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Case").field(&self.path()).finish()
    }
}

/// A backend harness's way to change bytes of a stored blob in place, behind the
/// checkpointer's back, as a disk or an operator could: for the integrity checks.
#[async_trait::async_trait]
pub trait Tamper: Send + Sync + 'static {
    /// XORs byte `offset` of the stored blob `at` (a checkpoint's, or a pending write's when
    /// `at.write_id` is set) with `mask`.
    async fn alter_blob(&self, at: &BlobLocation, offset: usize, mask: u8) -> std::result::Result<(), String>;
}

/// A check that needs the backend's [`Tamper`] besides its checkpointer.
#[derive(Clone, Copy)]
pub struct TamperCase {
    group: &'static str,
    name: &'static str,
    check: TamperCheck,
}

/// The function of a [`TamperCase`].
type TamperCheck = fn(Arc<dyn Checkpointer>, Arc<dyn Tamper>) -> BoxFuture<'static, Result<()>>;

impl TamperCase {
    /// `group/name`, e.g. `integrity/changed_pending_write_byte_is_corrupt_naming_the_write`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.group, self.name)
    }

    /// Runs the check against `checkpointer` (fresh and empty), changing its stored bytes
    /// through `tamper`.
    pub async fn run(&self, checkpointer: Arc<dyn Checkpointer>, tamper: Arc<dyn Tamper>) -> Result<()> {
        (self.check)(checkpointer, tamper).await
    }
}

impl std::fmt::Debug for TamperCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TamperCase").field(&self.path()).finish()
    }
}

/// Every check that needs a [`Tamper`].
pub fn tamper_cases() -> &'static [TamperCase] {
    checks::TAMPER_CASES
}

/// One trial per [`tamper_cases`] case, named `{backend}/{group}/{case}`, each on a fresh
/// checkpointer and the harness's [`Tamper`] for it, as [`trials`] runs the others.
pub fn integrity_trials<F, Fut>(backend: &str, factory: F) -> Vec<Trial>
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = (Arc<dyn Checkpointer>, Arc<dyn Tamper>)>,
{
    tamper_cases()
        .iter()
        .map(|case| {
            let (case, factory) = (*case, factory.clone());
            Trial::test(format!("{backend}/{}", case.path()), move || {
                let runtime = runtime()?;
                runtime
                    .block_on(async {
                        let (checkpointer, tamper) = factory().await;
                        case.run(checkpointer, tamper).await
                    })
                    .map_err(|error| Failed::from(error.report()))
            })
        })
        .collect()
}

fn runtime() -> Result<tokio::runtime::Runtime, Failed> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Failed::from(Error::Runtime { source }.report()))
}

/// Every case of the suite, grouped by operation.
pub fn cases() -> &'static [Case] {
    checks::CASES
}

/// One libtest-mimic trial per case, named `{backend}/{group}/{case}`.
///
/// Each trial builds its own multi-threaded tokio runtime (two workers), awaits `factory` on
/// it for a fresh, empty checkpointer, and runs the case; trials never share a checkpointer,
/// so they may run in parallel. A factory that cannot set up (say, no database) may panic:
/// the trial fails with the panic message. A case that needs an operation missing from
/// `capabilities` is an ignored trial saying which; a declared operation that answers
/// `NotSupported` fails its trials.
pub fn trials<F, Fut>(backend: &str, capabilities: Capabilities, factory: F) -> Vec<Trial>
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Arc<dyn Checkpointer>>,
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

/// An ignored trial for a case whose operation the backend does not implement.
fn lacking(name: String, backend: &str, missing: Capability) -> Trial {
    let reason = format!("{backend} does not implement {}", missing.operation());
    Trial::ignorable_test(name, move || Ok(Completion::ignored_with(reason)))
        .with_kind(format!("lacks {}", missing.operation()))
        .with_ignored_flag(true)
}

/// The same trials, all marked ignored: for a backend whose server is absent (say, no
/// PostgreSQL URL in the environment), so the report lists every case as skipped instead of
/// passing nothing silently.
pub fn ignored_trials(backend: &str) -> Vec<Trial> {
    let paths = cases().iter().map(Case::path).chain(tamper_cases().iter().map(TamperCase::path));
    paths.map(|path| Trial::test(format!("{backend}/{path}"), || Ok(())).with_ignored_flag(true)).collect()
}

fn run_trial<F, Fut>(case: Case, factory: F) -> Result<(), Failed>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Checkpointer>>,
{
    let runtime = runtime()?;
    runtime.block_on(async { case.run(factory().await).await }).map_err(|error| Failed::from(error.report()))
}

/// Runs `trials` with the command line's arguments (filters, `--list`, `--test-threads`, ...)
/// and returns the conclusion; call `.exit()` on it at the end of `main`, after cleaning up
/// anything the factory needed (temporary directories, databases).
pub fn run(trials: Vec<Trial>) -> Conclusion {
    libtest_mimic::run(&Arguments::from_args(), trials)
}
