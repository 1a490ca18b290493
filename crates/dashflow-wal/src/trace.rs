//! Execution traces: one digest per run (its tasks in order with every attempt, its routing
//! decisions, how it ended), built from the run's events by a [`TraceBuilder`].
//!
//! The events stay the source of truth; a trace is what tools want to read about a finished
//! run without replaying them. The [`EventStore`](crate::EventStore) builds one per run on its
//! background thread and persists it when the run finishes (see
//! [`TraceConfig`](crate::TraceConfig)); [`TraceBuilder`] and [`TraceCollector`] are public so
//! that tools can build the same digest from events they read back, a run in progress
//! included.
//!
//! Times and durations have microsecond resolution: the builder truncates them, so a trace
//! read back from JSON equals the one that was written.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashflow_telemetry::{Event, EventKind, RunId, RunIds, RunOutcome};
use serde::{Deserialize, Serialize};

use crate::runs::RunStatus;

/// The most attempts and routing decisions one trace records; events past it are counted in
/// [`ExecutionTrace::omitted`]. It bounds the memory of a runaway loop's trace (and keeps its
/// WAL record under the default maximum record size).
const MAX_ITEMS: usize = 100_000;

/// How a traced run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TraceStatus {
    /// Started and not finished (yet). Only a trace built from the events of a run in progress,
    /// or of one whose process died, has it; persisted traces never do.
    Running,
    /// Reached `END`.
    Completed,
    /// Stopped with an error ([`ExecutionTrace::error`]).
    Failed,
    /// Paused for a person or a configured interrupt ([`ExecutionTrace::interrupt`]).
    Interrupted,
    /// A status this version does not know (an outcome added by a newer DashFlow).
    #[serde(other)]
    Unknown,
}

impl TraceStatus {
    /// The status as written: `running`, `completed`, `failed`, `interrupted`, `unknown`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Unknown => "unknown",
        }
    }

    fn of_outcome(outcome: RunOutcome) -> Self {
        match outcome {
            RunOutcome::Completed => Self::Completed,
            RunOutcome::Failed => Self::Failed,
            RunOutcome::Interrupted => Self::Interrupted,
            _ => Self::Unknown,
        }
    }
}

impl fmt::Display for TraceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<TraceStatus> for RunStatus {
    fn from(status: TraceStatus) -> Self {
        match status {
            TraceStatus::Running => Self::Running,
            TraceStatus::Completed => Self::Completed,
            TraceStatus::Failed => Self::Failed,
            TraceStatus::Interrupted => Self::Interrupted,
            TraceStatus::Unknown => Self::Unknown,
        }
    }
}

/// One run, from start to end: what ran in which order, how long each attempt took, what
/// failed, where the run was routed and how it ended.
///
/// Serialized as JSON (trace files and WAL trace records); times are Unix microseconds
/// (`started_at_us`), durations microseconds (`duration_us`). Readers ignore fields they do
/// not know, so later versions can add some.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExecutionTrace {
    /// The run's id and its place in the execution stack: a subgraph run names its parent
    /// and root runs and has a depth above 0.
    pub run: RunIds,
    /// The graph's name; `None` only when the run's start event was lost (a full queue).
    pub graph: Option<String>,
    /// The thread the run belongs to, if any.
    pub thread_id: Option<String>,
    /// The run's tags (`RunConfig::tag`), in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// How the run ended.
    pub status: TraceStatus,
    /// When the run started.
    #[serde(rename = "started_at_us", with = "micros::opt_time", default)]
    pub started_at: Option<SystemTime>,
    /// When the run finished; `None` while it runs.
    #[serde(rename = "ended_at_us", with = "micros::opt_time", default)]
    pub ended_at: Option<SystemTime>,
    /// The run's wall time as the executor measured it; `None` while it runs.
    #[serde(rename = "duration_us", with = "micros::opt_duration", default)]
    pub duration: Option<Duration>,
    /// Supersteps executed.
    pub steps: u64,
    /// The error of a failed run.
    pub error: Option<String>,
    /// Where an interrupted run paused.
    pub interrupt: Option<TraceInterrupt>,
    /// Every task, by step and, within a step, in frontier order.
    #[serde(default)]
    pub tasks: Vec<TraceTask>,
    /// Every routing decision (a conditional edge choosing a label and target), in order.
    #[serde(default)]
    pub routes: Vec<TraceRoute>,
    /// Task and routing events left out because the trace reached its size limit (100,000
    /// attempts and routes); 0 for every ordinary run.
    #[serde(default)]
    pub omitted: u64,
}

impl ExecutionTrace {
    /// The trace of the run of the first of `events`, built from those of its events that
    /// are in the list; `None` for an empty list.
    pub fn from_events<'e>(events: impl IntoIterator<Item = &'e Event>) -> Option<Self> {
        let mut events = events.into_iter();
        let first = events.next()?;
        let mut builder = TraceBuilder::new(first.run);
        builder.push(first);
        events.for_each(|event| builder.push(event));
        Some(builder.build())
    }

    /// Attempts that failed and were retried or failed the run, over all tasks.
    pub fn failed_attempts(&self) -> usize {
        self.tasks.iter().flat_map(|task| &task.attempts).filter(|attempt| attempt.error.is_some()).count()
    }
}

/// One task of a run: a node run in one superstep, with each of its attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TraceTask {
    /// The superstep (1-based).
    pub step: u64,
    /// The node.
    pub node: String,
    /// Every attempt, first to last; more than one when the node's retry policy retried it.
    pub attempts: Vec<TraceAttempt>,
}

impl TraceTask {
    /// The wall time of all attempts together (backoff between them excluded).
    pub fn duration(&self) -> Duration {
        self.attempts.iter().filter_map(|attempt| attempt.duration).sum()
    }

    /// The error of the last attempt: why the task failed (or interrupted the run).
    pub fn error(&self) -> Option<&str> {
        self.attempts.last().and_then(|attempt| attempt.error.as_deref())
    }

    /// When the first attempt started.
    pub fn started_at(&self) -> Option<SystemTime> {
        self.attempts.first().and_then(|attempt| attempt.started_at)
    }
}

/// One attempt of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TraceAttempt {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When it started.
    #[serde(rename = "started_at_us", with = "micros::opt_time", default)]
    pub started_at: Option<SystemTime>,
    /// How long it ran; `None` when it never finished (the run stopped while it ran).
    #[serde(rename = "duration_us", with = "micros::opt_duration", default)]
    pub duration: Option<Duration>,
    /// Its error, for a failed attempt.
    pub error: Option<String>,
}

/// A routing decision: after `step`, the conditional edge of `from` returned `label`, which
/// leads to `target`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TraceRoute {
    /// The superstep whose result was routed (0 for the routing from `START`).
    pub step: u64,
    /// The node whose conditional edge ran.
    pub from: String,
    /// The label the router returned.
    pub label: String,
    /// The node (or `__end__`) the label maps to.
    pub target: String,
}

/// Where an interrupted run paused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TraceInterrupt {
    /// The node that paused the run, from its `Interrupted` event (or, for runs recorded
    /// before that event existed, the node whose task ended with the interrupt).
    pub node: Option<String>,
    /// What the node asked: the value it passed to `interrupt`, as JSON text, or as its task
    /// reported it.
    pub message: Option<String>,
    /// `before`, `after` or `node` (the node asked), when the `Interrupted` event says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Builds the [`ExecutionTrace`] of one run from its events, in the order they were emitted.
///
/// Feed it every event of the run (others are ignored); [`build`](Self::build) gives the
/// trace so far at any time (status [`TraceStatus::Running`] until the run's `RunFinished`),
/// [`finish`](Self::finish) the final one.
///
/// ```
/// use std::time::Duration;
/// use dashflow_telemetry::{Event, EventKind, RunId, RunIds, RunOutcome};
/// use dashflow_wal::{TraceBuilder, TraceStatus};
///
/// let run = RunIds::root(RunId::new());
/// let mut builder = TraceBuilder::new(run);
/// builder.push(&Event::now(run, EventKind::RunStarted { graph: "triage".into(), thread_id: None, tags: Vec::new() }));
/// builder.push(&Event::now(run, EventKind::TaskFinished {
///     step: 1, node: "classify".into(), attempt: 1, duration: Duration::from_millis(5), error: None,
/// }));
/// assert_eq!(builder.build().status, TraceStatus::Running);
/// builder.push(&Event::now(run, EventKind::RunFinished {
///     outcome: RunOutcome::Completed, steps: 1, duration: Duration::from_millis(6), error: None,
/// }));
/// let trace = builder.finish().expect("the run finished");
/// assert_eq!(trace.tasks[0].node, "classify");
/// assert_eq!(trace.tasks[0].duration(), Duration::from_millis(5));
/// ```
#[derive(Clone, Debug)]
pub struct TraceBuilder {
    trace: ExecutionTrace,
    /// Indices into `trace.tasks` of the tasks of each step and node, in arrival order.
    by_node: FastMap<(u64, Arc<str>), Vec<usize>>,
    /// The frontier of each step, from `SuperstepStarted`: the order tasks are reported in.
    frontiers: FastMap<u64, Arc<[Arc<str>]>>,
    /// Attempts and routes recorded, against [`MAX_ITEMS`].
    items: usize,
    /// The highest step any event named, the run's step count until `RunFinished` says.
    max_step: u64,
    /// Where the run paused, from its `Interrupted` event.
    interrupt: Option<TraceInterrupt>,
    finished: bool,
}

impl TraceBuilder {
    /// A builder for the run `run`.
    pub fn new(run: RunIds) -> Self {
        Self {
            trace: empty_trace(run),
            by_node: FastMap::default(),
            frontiers: FastMap::default(),
            items: 0,
            max_step: 0,
            interrupt: None,
            finished: false,
        }
    }

    /// The run this builder traces.
    pub fn run(&self) -> RunIds {
        self.trace.run
    }

    /// Whether the run's `RunFinished` arrived.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Takes one event into account; events of other runs are ignored.
    pub fn push(&mut self, event: &Event) {
        if event.run.run_id != self.trace.run.run_id {
            return;
        }
        let at = truncate_time(event.at);
        match &event.kind {
            EventKind::GraphDefined { graph, .. } => {
                self.trace.graph.get_or_insert_with(|| graph.to_string());
            }
            EventKind::RunStarted { graph, thread_id, tags } => {
                self.trace.graph = Some(graph.to_string());
                self.trace.thread_id = thread_id.as_deref().map(str::to_owned);
                self.trace.tags = tags.iter().map(ToString::to_string).collect();
                self.trace.started_at = Some(at);
            }
            EventKind::RunFinished { outcome, steps, duration, error } => {
                self.trace.status = TraceStatus::of_outcome(*outcome);
                self.trace.steps = *steps;
                self.trace.duration = Some(truncate_duration(*duration));
                self.trace.ended_at = Some(at);
                self.trace.error.clone_from(error);
                self.finished = true;
            }
            EventKind::SuperstepStarted { step, nodes } => {
                self.saw_step(*step);
                self.frontiers.insert(*step, Arc::clone(nodes));
            }
            EventKind::SuperstepFinished { step, .. } | EventKind::Custom { step, .. } => self.saw_step(*step),
            EventKind::TaskStarted { step, node, attempt } => {
                self.saw_step(*step);
                self.attempt_started(*step, node, *attempt, Some(at));
            }
            EventKind::TaskFinished { step, node, attempt, duration, error } => {
                self.saw_step(*step);
                self.attempt_finished(*step, node, *attempt, at, *duration, error.as_deref());
            }
            EventKind::Interrupted { node, reason, value, .. } => {
                self.interrupt = Some(TraceInterrupt {
                    node: Some(node.to_string()),
                    message: value.as_ref().map(|value| value.to_string()),
                    reason: Some(reason.to_string()),
                });
            }
            EventKind::Routed { step, from, label, target } => {
                self.saw_step(*step);
                if self.take_item() {
                    self.trace.routes.push(TraceRoute {
                        step: *step,
                        from: from.to_string(),
                        label: label.to_string(),
                        target: target.to_string(),
                    });
                }
            }
            _ => {}
        }
    }

    /// The trace as of the events so far.
    pub fn build(&self) -> ExecutionTrace {
        let mut trace = self.trace.clone();
        self.complete(&mut trace);
        trace
    }

    /// The final trace, or `None` when the run's `RunFinished` has not arrived.
    pub fn finish(mut self) -> Option<ExecutionTrace> {
        if !self.finished {
            return None;
        }
        let run = self.trace.run;
        let mut trace = std::mem::replace(&mut self.trace, empty_trace(run));
        self.complete(&mut trace);
        Some(trace)
    }

    /// Orders the tasks, and fills in what only the end of the run tells.
    fn complete(&self, trace: &mut ExecutionTrace) {
        self.order_tasks(&mut trace.tasks);
        if !self.finished {
            trace.steps = self.max_step;
        }
        if trace.status == TraceStatus::Interrupted
            && let Some(interrupt) = &self.interrupt
        {
            trace.interrupt = Some(interrupt.clone());
        } else if trace.status == TraceStatus::Interrupted {
            // A node's interrupt rolls its step back: the run reports the steps before it, and
            // the interrupting task is the one that ended with an error in the step after.
            let stopped = trace.steps;
            let node = trace.tasks.iter().find(|task| task.step > stopped && task.error().is_some());
            trace.interrupt = Some(TraceInterrupt {
                node: node.map(|task| task.node.clone()),
                message: node.and_then(|task| task.error().map(str::to_owned)),
                reason: None,
            });
        }
    }

    /// Sorts tasks by step and, within a step, by frontier order (the k-th task of a node
    /// takes the place of the node's k-th appearance in the frontier); tasks the frontier does
    /// not list keep their arrival order after the listed ones.
    fn order_tasks(&self, tasks: &mut Vec<TraceTask>) {
        let mut seen: HashMap<(u64, &str), usize> = HashMap::new();
        let mut keys = Vec::with_capacity(tasks.len());
        for (arrival, task) in tasks.iter().enumerate() {
            let occurrence = seen.entry((task.step, task.node.as_str())).or_insert(0);
            let rank = self
                .frontiers
                .get(&task.step)
                .and_then(|nodes| {
                    nodes.iter().enumerate().filter(|(_, node)| ***node == *task.node).nth(*occurrence).map(|(i, _)| i)
                })
                .unwrap_or(usize::MAX);
            *occurrence += 1;
            keys.push((task.step, rank, arrival));
        }
        keys.sort_unstable();
        let mut slots: Vec<Option<TraceTask>> = std::mem::take(tasks).into_iter().map(Some).collect();
        tasks.extend(keys.into_iter().filter_map(|(_, _, arrival)| slots.get_mut(arrival).and_then(Option::take)));
    }

    fn saw_step(&mut self, step: u64) {
        self.max_step = self.max_step.max(step);
    }

    /// Whether one more attempt or route fits; counts it as omitted when not.
    fn take_item(&mut self) -> bool {
        if self.items >= MAX_ITEMS {
            self.trace.omitted += 1;
            return false;
        }
        self.items += 1;
        true
    }

    fn attempt_started(&mut self, step: u64, node: &Arc<str>, attempt: u32, at: Option<SystemTime>) -> Option<usize> {
        // A retry continues the task of this node whose previous attempt has ended; several
        // tasks of one node in one step (a fan-out) are told apart that way.
        let retried = (attempt > 1)
            .then(|| {
                self.find_task(step, node, |last| {
                    last.attempt.checked_add(1) == Some(attempt) && last.duration.is_some()
                })
            })
            .flatten();
        if !self.take_item() {
            return None;
        }
        let record = TraceAttempt { attempt, started_at: at, duration: None, error: None };
        match retried {
            Some(index) => {
                self.trace.tasks[index].attempts.push(record);
                Some(index)
            }
            None => {
                let index = self.trace.tasks.len();
                self.trace.tasks.push(TraceTask { step, node: node.to_string(), attempts: vec![record] });
                self.by_node.entry((step, Arc::clone(node))).or_default().push(index);
                Some(index)
            }
        }
    }

    fn attempt_finished(
        &mut self,
        step: u64,
        node: &Arc<str>,
        attempt: u32,
        at: SystemTime,
        duration: Duration,
        error: Option<&str>,
    ) {
        let duration = truncate_duration(duration);
        let running = self.find_task(step, node, |last| last.attempt == attempt && last.duration.is_none());
        // Without a `TaskStarted` (a sink interested in fewer events, a lost event), the
        // attempt began its duration before it ended.
        let index = running.or_else(|| {
            let started = truncate_time(at.checked_sub(duration).unwrap_or(at));
            self.attempt_started(step, node, attempt, Some(started))
        });
        let last = index.and_then(|index| self.trace.tasks.get_mut(index)).and_then(|task| task.attempts.last_mut());
        if let Some(last) = last {
            last.duration = Some(duration);
            last.error = error.map(str::to_owned);
        }
    }

    /// The first task of `node` in `step` whose last attempt satisfies `fits`.
    fn find_task(&self, step: u64, node: &Arc<str>, fits: impl Fn(&TraceAttempt) -> bool) -> Option<usize> {
        let candidates = self.by_node.get(&(step, Arc::clone(node)))?;
        candidates
            .iter()
            .copied()
            .find(|&index| self.trace.tasks.get(index).and_then(|task| task.attempts.last()).is_some_and(&fits))
    }
}

/// Builds the traces of many interleaved runs (one [`TraceBuilder`] each) and hands out each
/// trace when its run finishes: what the event store runs on its background thread.
///
/// A run that never finishes (its future was dropped before the end, so no `RunFinished`
/// came) would hold memory forever, so at most [`max_open`](Self::max_open) runs are tracked;
/// past that the run that started first is given up and counted in
/// [`abandoned`](Self::abandoned).
#[derive(Clone, Debug)]
pub struct TraceCollector {
    runs: FastMap<RunId, TraceBuilder>,
    max_open: usize,
    abandoned: u64,
}

impl Default for TraceCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl TraceCollector {
    /// Runs tracked at once by default.
    pub const DEFAULT_MAX_OPEN: usize = 10_000;

    /// A collector tracking up to [`DEFAULT_MAX_OPEN`](Self::DEFAULT_MAX_OPEN) runs at once.
    pub fn new() -> Self {
        Self { runs: FastMap::default(), max_open: Self::DEFAULT_MAX_OPEN, abandoned: 0 }
    }

    /// Tracks at most `max_open` runs at once (at least 1).
    pub fn max_open(mut self, max_open: usize) -> Self {
        self.max_open = max_open.max(1);
        self
    }

    /// Takes one event into account; returns the run's trace when the event finished it.
    pub fn push(&mut self, event: &Event) -> Option<ExecutionTrace> {
        let run_id = event.run.run_id;
        if !self.runs.contains_key(&run_id) && self.runs.len() >= self.max_open {
            // Run ids sort by creation time: the smallest is the run that started first.
            if let Some(oldest) = self.runs.keys().min().copied() {
                self.runs.remove(&oldest);
                self.abandoned += 1;
            }
        }
        let builder = self.runs.entry(run_id).or_insert_with(|| TraceBuilder::new(event.run));
        builder.push(event);
        if !builder.is_finished() {
            return None;
        }
        self.runs.remove(&run_id).and_then(TraceBuilder::finish)
    }

    /// Whether run `run_id` is being traced (an event of it arrived and it has not finished).
    pub fn tracks(&self, run_id: RunId) -> bool {
        self.runs.contains_key(&run_id)
    }

    /// The traces so far of the runs that have not finished, oldest first.
    pub fn in_progress(&self) -> Vec<ExecutionTrace> {
        let mut traces: Vec<_> = self.runs.values().map(TraceBuilder::build).collect();
        traces.sort_by_key(|trace| trace.run.run_id);
        traces
    }

    /// Runs given up because more than `max_open` were in progress at once.
    pub fn abandoned(&self) -> u64 {
        self.abandoned
    }
}

fn empty_trace(run: RunIds) -> ExecutionTrace {
    ExecutionTrace {
        run,
        graph: None,
        thread_id: None,
        tags: Vec::new(),
        status: TraceStatus::Running,
        started_at: None,
        ended_at: None,
        duration: None,
        steps: 0,
        error: None,
        interrupt: None,
        tasks: Vec::new(),
        routes: Vec::new(),
        omitted: 0,
    }
}

fn truncate_time(at: SystemTime) -> SystemTime {
    micros::to_time(micros::from_time(at))
}

fn truncate_duration(duration: Duration) -> Duration {
    Duration::from_micros(micros::from_duration(duration))
}

/// Serde of times as Unix microseconds and durations as microseconds.
mod micros {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn from_time(at: SystemTime) -> i64 {
        match at.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |us| -us),
        }
    }

    pub(super) fn to_time(us: i64) -> SystemTime {
        let magnitude = Duration::from_micros(us.unsigned_abs());
        let at = if us >= 0 { UNIX_EPOCH.checked_add(magnitude) } else { UNIX_EPOCH.checked_sub(magnitude) };
        at.unwrap_or(UNIX_EPOCH)
    }

    pub(super) fn from_duration(duration: Duration) -> u64 {
        u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
    }

    pub(super) mod opt_time {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(at: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
            at.map(from_time).serialize(s)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
            Ok(Option::<i64>::deserialize(d)?.map(to_time))
        }
    }

    pub(super) mod opt_duration {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(duration: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            duration.map(from_duration).serialize(s)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Ok(Option::<u64>::deserialize(d)?.map(Duration::from_micros))
        }
    }
}

/// A map keyed by data of the writer's own runs (step numbers, node names, run ids), hashed
/// with a fast non-cryptographic hash: building traces hashes a key or two per event, and
/// SipHash's protection against crafted collisions buys nothing for these keys.
pub(crate) type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// A set hashed like [`FastMap`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, std::hash::BuildHasherDefault<FxHasher>>;

/// The multiply-rotate hash of rustc (`FxHasher`).
#[derive(Default)]
pub(crate) struct FxHasher(u64);

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_u128(&mut self, n: u128) {
        self.add(n as u64);
        self.add((n >> 64) as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests;
