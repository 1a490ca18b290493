//! What a run queue stores and hands out.

use crate::QueueError;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A fresh run id: a ULID, so ids sort by submission time and are unique across hosts.
pub fn new_run_id() -> String {
    ulid::Ulid::new().to_string()
}

/// Which graph a run needs: `name@version#hash`, the hash covering the graph's shape and its
/// state's schema fingerprint. A worker claims only runs whose key it has registered, so no
/// worker receives a graph it lacks, nor one of another version or state schema.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GraphKey(String);

impl GraphKey {
    /// The key of graph `name` at `version` whose shape and state schema hash to `hash`.
    pub fn new(name: &str, version: &str, hash: u64) -> Self {
        Self(format!("{name}@{version}#{hash:016x}"))
    }

    /// A key as stored (`name@version#hash`); `None` when it has not that form.
    pub fn parse(key: &str) -> Option<Self> {
        let (name_version, hash) = key.rsplit_once('#')?;
        let (name, version) = name_version.rsplit_once('@')?;
        let valid = !name.is_empty() && !version.is_empty() && hash.len() == 16;
        valid.then(|| Self(key.to_owned()))
    }

    /// The stored spelling.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The graph's name.
    pub fn name(&self) -> &str {
        self.0.rsplit_once('@').map_or(&self.0, |(name, _)| name)
    }
}

impl fmt::Display for GraphKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! spelled {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            /// The stored spelling.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }

            /// Parses the stored spelling.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)* _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

spelled! {
    /// What a run does to its thread.
    RunKind {
        /// Start from `START` with the run's input as the state.
        Invoke = "invoke",
        /// Start from `START` with the thread's state after the run's update.
        Update = "update",
        /// Continue the thread from its checkpoint, answering its interrupt.
        Resume = "resume",
    }
}

spelled! {
    /// Where a run is in its life.
    RunState {
        /// Waiting behind the active run of its thread (`Multitask::Enqueue`).
        Pending = "pending",
        /// Waiting for a worker.
        Queued = "queued",
        /// Claimed by a worker.
        Running = "running",
        /// Finished; its final checkpoint is `checkpoint_id`.
        Completed = "completed",
        /// Paused by an interrupt; a `resume` run answers it.
        Interrupted = "interrupted",
        /// Failed (`error` says why), or lost its worker too many times.
        Failed = "failed",
        /// Cancelled before or while it ran.
        Cancelled = "cancelled",
    }
}

impl RunState {
    /// Whether the run is over (completed, interrupted, failed or cancelled).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Interrupted | Self::Failed | Self::Cancelled)
    }
}

/// How urgently a run is claimed: strictly before every run of a lower priority.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    /// First of all.
    Urgent,
    /// Before normal runs.
    High,
    /// The default.
    #[default]
    Normal,
    /// After everything else.
    Low,
}

impl Priority {
    /// The stored level, 0 (first) to 3.
    pub fn level(self) -> i16 {
        match self {
            Self::Urgent => 0,
            Self::High => 1,
            Self::Normal => 2,
            Self::Low => 3,
        }
    }

    /// The priority of a stored level; levels out of range clamp.
    pub fn from_level(level: i16) -> Self {
        match level {
            ..=0 => Self::Urgent,
            1 => Self::High,
            2 => Self::Normal,
            _ => Self::Low,
        }
    }
}

/// What a submit does when its thread already has a queued or running run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Multitask {
    /// Refuse with `QueueError::ThreadBusy` (the default).
    #[default]
    Reject,
    /// Wait behind it (`pending`), and run after it in submission order.
    Enqueue,
}

/// A run to submit.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NewRun {
    /// Its id ([`new_run_id`] by default); also the executor's run id.
    pub run_id: String,
    /// The queue it waits in (`default`).
    pub queue: String,
    /// The graph it needs.
    pub graph_key: GraphKey,
    /// The thread it runs on.
    pub thread_id: String,
    /// Who it is for; claims are fair across tenants of one priority.
    pub tenant: String,
    /// How urgent it is.
    pub priority: Priority,
    /// Invoke, update or resume.
    pub kind: RunKind,
    /// The input, update or resume command, sealed by the client with the graph's codec and
    /// state fingerprint.
    pub input: Vec<u8>,
    /// Run settings the worker reads (durability, recursion limit), as JSON.
    pub config: serde_json::Value,
    /// How many workers may die holding it before it fails.
    pub max_attempts: i32,
    /// What to do when the thread is busy.
    pub multitask: Multitask,
}

/// Refuses text a queue cannot store: a NUL character (PostgreSQL refuses one, and the memory
/// queue refuses it too, so that a program tested on it meets the same errors).
fn storable(value: &str, what: &'static str) -> Result<(), QueueError> {
    if value.contains('\0') {
        return Err(QueueError::Invalid {
            what,
            detail: "contains a NUL character, which a run queue cannot store".into(),
        });
    }
    Ok(())
}

impl NewRun {
    /// `Invalid` when a queue must refuse this run: no thread, or text no queue can store.
    /// Every backend's `submit` checks it first.
    pub fn validate(&self) -> Result<(), QueueError> {
        for (value, what) in
            [(&self.run_id, "run id"), (&self.thread_id, "thread id"), (&self.queue, "queue"), (&self.tenant, "tenant")]
        {
            storable(value, what)?;
        }
        if self.thread_id.is_empty() {
            return Err(QueueError::Invalid { what: "thread id", detail: "a queued run needs a thread".into() });
        }
        Ok(())
    }

    /// A run of `graph_key` on `thread_id` with the defaults: a fresh id, queue `default`, no
    /// tenant, normal priority, 5 attempts, reject when the thread is busy.
    pub fn new(graph_key: GraphKey, thread_id: impl Into<String>, kind: RunKind, input: Vec<u8>) -> Self {
        Self {
            run_id: new_run_id(),
            queue: "default".to_owned(),
            graph_key,
            thread_id: thread_id.into(),
            tenant: String::new(),
            priority: Priority::Normal,
            kind,
            input,
            config: serde_json::Value::Object(serde_json::Map::new()),
            max_attempts: 5,
            multitask: Multitask::Reject,
        }
    }

    /// Sets the run id.
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = run_id.into();
        self
    }

    /// Waits in `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Runs for `tenant`.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// Runs at `priority`.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Carries `config` to the worker.
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.config = config;
        self
    }

    /// Fails after `attempts` workers died holding it (at least 1).
    pub fn max_attempts(mut self, attempts: i32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// What to do when the thread is busy.
    pub fn multitask(mut self, multitask: Multitask) -> Self {
        self.multitask = multitask;
        self
    }
}

/// Ownership of one claimed run: valid while the thread's fence epoch is `epoch`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    /// The run.
    pub run_id: String,
    /// Its thread, whose fence epoch the lease holds.
    pub thread_id: String,
    /// The worker holding it.
    pub worker_id: String,
    /// The fence epoch granted at claim; any later change of owner increases it.
    pub epoch: i64,
}

/// A run a worker claimed, with everything needed to run it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedRun {
    /// The lease.
    pub lease: Lease,
    /// The graph.
    pub graph_key: GraphKey,
    /// Invoke, update or resume.
    pub kind: RunKind,
    /// The sealed input.
    pub input: Vec<u8>,
    /// Run settings.
    pub config: serde_json::Value,
    /// 1 for the first claim, more after workers died holding it.
    pub attempt: i32,
    /// No claim started the run before: nothing of it can be stored yet, so the worker need
    /// not look for what an earlier attempt wrote. (`attempt` cannot tell: a release gives the
    /// attempt back.)
    pub first_claim: bool,
    /// The queue.
    pub queue: String,
    /// The tenant.
    pub tenant: String,
    /// How long the run could have been claimed before this claim took it, counted in the
    /// database's time from when it was due (submitted, or put back after its backoff): time
    /// spent waiting behind its thread's earlier run counts too.
    pub waited: Duration,
}

/// How a worker ends a run it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finish {
    /// A terminal state.
    pub state: RunState,
    /// The run's last checkpoint.
    pub checkpoint_id: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

impl Finish {
    /// Ends in `state` at `checkpoint_id`.
    pub fn new(state: RunState, checkpoint_id: Option<String>) -> Self {
        Self { state, checkpoint_id, error: None }
    }

    /// Failed because of `error`.
    pub fn failed(error: impl Into<String>, checkpoint_id: Option<String>) -> Self {
        Self { state: RunState::Failed, checkpoint_id, error: Some(error.into()) }
    }
}

/// What a heartbeat learned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeartbeatReply {
    /// Whether the worker is still registered and not stopped; when `false`, the sweeper
    /// reaped it: it must drop every run and register again.
    pub alive: bool,
    /// Runs the worker reported that it no longer holds and did not end itself (released,
    /// given up, swept, or claimed by another worker since): stop them at once.
    pub lost: Vec<String>,
    /// Runs the worker reported that ended under the lease it reported (its own finish
    /// committed, and nobody changed the run's owner since): nothing to stop, nothing lost.
    pub ended: Vec<String>,
    /// Runs it holds whose cancellation was requested.
    pub cancel: Vec<String>,
    /// Whether it was asked to drain (`dashflow workers drain`): claim nothing more, finish
    /// the runs it holds, then stop, as on SIGTERM.
    pub draining: bool,
}

/// How long heartbeats and leases last. Leases are computed in database time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timings {
    /// Between two heartbeats of a worker.
    pub heartbeat: Duration,
    /// How long a heartbeat keeps a worker's lease.
    pub lease: Duration,
    /// How long before its lease would expire a worker that cannot heartbeat stops its runs.
    pub self_fence_margin: Duration,
    /// Between two sweeps.
    pub sweep: Duration,
    /// Between two claims of an idle worker (jittered).
    pub poll: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(2),
            lease: Duration::from_secs(15),
            self_fence_margin: Duration::from_secs(3),
            sweep: Duration::from_secs(5),
            poll: Duration::from_secs(1),
        }
    }
}

impl Timings {
    /// Short timings for tests: heartbeat 200 ms, lease 1.5 s, margin 300 ms, sweep 500 ms,
    /// poll 100 ms.
    pub fn short() -> Self {
        Self {
            heartbeat: Duration::from_millis(200),
            lease: Duration::from_millis(1500),
            self_fence_margin: Duration::from_millis(300),
            sweep: Duration::from_millis(500),
            poll: Duration::from_millis(100),
        }
    }

    /// Sets the heartbeat interval.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// Sets the lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets the self-fence margin.
    pub fn self_fence_margin(mut self, margin: Duration) -> Self {
        self.self_fence_margin = margin;
        self
    }

    /// Sets the sweep interval.
    pub fn sweep(mut self, every: Duration) -> Self {
        self.sweep = every;
        self
    }

    /// Sets the idle poll interval.
    pub fn poll(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }
}

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Whether this call swept (`false`: another sweeper held the lock).
    pub swept: bool,
    /// Workers found dead and stopped.
    pub workers_stopped: Vec<String>,
    /// Their runs, with the state each was put in (queued again, failed after too many
    /// attempts, cancelled when a cancel was requested).
    pub runs: Vec<(String, RunState)>,
    /// Pending runs promoted because their thread had no active run.
    pub promoted: u64,
}

/// A worker as it registers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Unique per worker process and registration.
    pub worker_id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: i32,
    /// The worker program's version.
    pub version: String,
    /// The queues it claims from.
    pub queues: Vec<String>,
    /// The graphs it has.
    pub graph_keys: Vec<GraphKey>,
    /// How many runs it runs at once.
    pub slots: i32,
}

impl WorkerInfo {
    /// `Invalid` when a queue must refuse this worker (an id no queue can store). Every
    /// backend's `register_worker` checks it first.
    pub fn validate(&self) -> Result<(), QueueError> {
        storable(&self.worker_id, "worker id")
    }

    /// A worker with these facts.
    pub fn new(
        worker_id: impl Into<String>,
        host: impl Into<String>,
        pid: i32,
        queues: Vec<String>,
        graph_keys: Vec<GraphKey>,
        slots: i32,
    ) -> Self {
        Self { worker_id: worker_id.into(), host: host.into(), pid, version: String::new(), queues, graph_keys, slots }
    }

    /// Sets the program version it reports.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }
}

/// Whether a registered worker is alive, as the queue sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkerState {
    /// Heart-beating within its lease.
    Live,
    /// Its lease expired; the sweeper will stop it.
    Stale,
    /// Finishing its runs, claiming no more.
    Draining,
    /// Stopped (by itself or by the sweeper).
    Stopped,
}

impl WorkerState {
    /// The CLI's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Stale => "stale",
            Self::Draining => "draining",
            Self::Stopped => "stopped",
        }
    }
}

/// A registered worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerRecord {
    /// What it registered.
    pub info: WorkerInfo,
    /// Runs it reported holding at its last heartbeat.
    pub running: i32,
    /// Milliseconds since its last heartbeat, in database time.
    pub heartbeat_age_ms: i64,
    /// Whether it is alive.
    pub state: WorkerState,
}

/// One run as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// Its id.
    pub run_id: String,
    /// Its queue.
    pub queue: String,
    /// Its graph.
    pub graph_key: GraphKey,
    /// Its thread.
    pub thread_id: String,
    /// Its tenant.
    pub tenant: String,
    /// Its priority.
    pub priority: Priority,
    /// Where it is.
    pub state: RunState,
    /// Invoke, update or resume.
    pub kind: RunKind,
    /// Claims so far.
    pub attempt: i32,
    /// The worker that holds it (running) or last held it.
    pub worker_id: Option<String>,
    /// The fence epoch of its last claim.
    pub lease_epoch: Option<i64>,
    /// Whether a cancel was requested while it ran.
    pub cancel_requested: bool,
    /// Its final checkpoint.
    pub checkpoint_id: Option<String>,
    /// Why it failed, or why its last attempt ended.
    pub error: Option<String>,
    /// When it was submitted, claimed first, finished (milliseconds since the Unix epoch).
    pub created_at_ms: i64,
    /// When a worker first claimed it.
    pub started_at_ms: Option<i64>,
    /// When it ended.
    pub finished_at_ms: Option<i64>,
}

impl RunRecord {
    /// Whether this run may be retried with `attempts` more claims (see `RunQueue::retry`),
    /// judged on the run alone: `Invalid` for fewer than one attempt, `NotRetryable` unless it
    /// failed or was cancelled. The backend then checks that no later run moved its thread on
    /// ([`QueueError::moved_on`]).
    pub fn retryable(&self, attempts: i32) -> Result<(), QueueError> {
        if attempts < 1 {
            return Err(QueueError::Invalid {
                what: "attempts",
                detail: format!("{attempts}: a retried run needs at least one attempt"),
            });
        }
        if !matches!(self.state, RunState::Failed | RunState::Cancelled) {
            return Err(QueueError::NotRetryable {
                run_id: self.run_id.clone(),
                why: format!("it is {}; only failed or cancelled runs are retried", self.state),
            });
        }
        Ok(())
    }
}

/// Which runs `list` returns, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunFilter {
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Only runs of this thread.
    pub thread_id: Option<String>,
    /// At most this many (100 when unset).
    pub limit: Option<usize>,
}

impl RunFilter {
    /// Every run, newest first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only runs in `state`.
    pub fn state(mut self, state: RunState) -> Self {
        self.state = Some(state);
        self
    }

    /// Only runs of `thread_id`.
    pub fn thread(mut self, thread_id: impl Into<String>) -> Self {
        self.thread_id = Some(thread_id.into());
        self
    }

    /// At most `limit` runs.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// How many runs of one queue and priority are in one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStat {
    /// The queue.
    pub queue: String,
    /// The priority.
    pub priority: Priority,
    /// The state.
    pub state: RunState,
    /// How many runs.
    pub count: i64,
    /// For queued runs: how long the oldest has waited, in milliseconds.
    pub oldest_wait_ms: Option<i64>,
}
