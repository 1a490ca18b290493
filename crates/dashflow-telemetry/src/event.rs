use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::{EventBatch, RunIds, StateDelta};

/// One thing that happened during a run.
///
/// Events are small: names are shared `Arc<str>`s and nothing here holds graph state, so
/// building one on the hot path costs a few reference-count increments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The run (and its place in the execution stack) the event belongs to.
    pub run: RunIds,
    /// Wall-clock time the event was created.
    pub at: SystemTime,
    /// What happened.
    pub kind: EventKind,
}

impl Event {
    /// An event of `kind` for `run`, stamped now.
    pub fn now(run: RunIds, kind: EventKind) -> Self {
        Self { run, at: SystemTime::now(), kind }
    }

    /// An event of `kind` for `run` that happened at `at`.
    pub fn at(run: RunIds, at: SystemTime, kind: EventKind) -> Self {
        Self { run, at, kind }
    }
}

/// Why a run paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum InterruptReason {
    /// The graph pauses before this node (`interrupt_before`).
    Before,
    /// The graph pauses after this node (`interrupt_after`).
    After,
    /// The node called `interrupt` and waits for an answer.
    Node,
}

impl fmt::Display for InterruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Before => "before",
            Self::After => "after",
            Self::Node => "node",
        })
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RunOutcome {
    /// The run reached `END` on every branch.
    Completed,
    /// The run stopped with an error.
    Failed,
    /// The run was paused (for a person's decision or a configured interrupt).
    Interrupted,
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        })
    }
}

/// What an [`Event`] reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EventKind {
    /// A run began.
    RunStarted {
        /// The graph's name.
        graph: Arc<str>,
        /// The thread the run belongs to, if any.
        thread_id: Option<Arc<str>>,
        /// The run's tags (`RunConfig::tag`), in the order given; empty for most runs.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tags: Vec<Arc<str>>,
    },
    /// The shape of the graph a run is about to use, sent before its `RunStarted`: nodes and
    /// edges as a serialized `GraphSchema`, shared by every run of one compiled graph (the
    /// event clones a reference, not the schema). Sinks that persist runs store it once per
    /// graph, so tools can draw the graph a run used.
    GraphDefined {
        /// The graph's name.
        graph: Arc<str>,
        /// The serialized `GraphSchema`.
        schema: Arc<serde_json::Value>,
    },
    /// A run ended.
    RunFinished {
        /// How it ended.
        outcome: RunOutcome,
        /// Supersteps executed.
        steps: u64,
        /// Wall time of the whole run.
        duration: Duration,
        /// The error, for a failed run.
        error: Option<String>,
    },
    /// A superstep began with these tasks.
    SuperstepStarted {
        /// 1-based superstep number.
        step: u64,
        /// The nodes of the step's tasks, in frontier order (shared: a step of one task
        /// reuses its node's list, built once per graph).
        nodes: Arc<[Arc<str>]>,
    },
    /// A superstep's merged update was applied to the state.
    SuperstepFinished {
        /// 1-based superstep number.
        step: u64,
        /// Wall time of the step, tasks and merge included.
        duration: Duration,
    },
    /// One attempt of a task began.
    TaskStarted {
        /// Superstep of the task.
        step: u64,
        /// The node the task runs.
        node: Arc<str>,
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// One attempt of a task ended.
    TaskFinished {
        /// Superstep of the task.
        step: u64,
        /// The node the task ran.
        node: Arc<str>,
        /// 1 for the first attempt.
        attempt: u32,
        /// Wall time of this attempt.
        duration: Duration,
        /// The error, for a failed attempt.
        error: Option<String>,
    },
    /// A conditional edge chose where to go.
    Routed {
        /// Superstep whose result was routed.
        step: u64,
        /// The node whose conditional edge ran.
        from: Arc<str>,
        /// The label the router returned.
        label: Arc<str>,
        /// The node (or `__end__`) the label maps to.
        target: Arc<str>,
    },
    /// A checkpoint of the run was committed to its checkpointer. In `Async` durability it
    /// arrives when the write commits, which may be after later steps' events.
    CheckpointCommitted {
        /// The superstep the checkpoint ends (0 for the run's input).
        step: u64,
        /// The checkpoint's id.
        checkpoint_id: Arc<str>,
        /// Whether it holds the whole state (a snapshot) or the step's merged update (a delta).
        snapshot: bool,
        /// Size of the stored, encoded state or update.
        bytes: u64,
    },
    /// The run paused for a person's decision; its `RunFinished` (outcome `Interrupted`)
    /// follows. Resume it with `Command::resume`.
    Interrupted {
        /// The last completed superstep.
        step: u64,
        /// The node the run paused at.
        node: Arc<str>,
        /// Before, after or inside the node.
        reason: InterruptReason,
        /// What the node passed to `interrupt`, for [`InterruptReason::Node`].
        value: Option<Arc<serde_json::Value>>,
    },
    /// A node wrote a custom value through its context.
    Custom {
        /// Superstep of the writing task.
        step: u64,
        /// The writing node.
        node: Arc<str>,
        /// The value.
        value: serde_json::Value,
    },
}

/// Which kinds of event a sink needs; the executor does not build the others.
///
/// Every kind costs the run something: building the event, handing it to each sink, and for
/// the timed kinds a clock read. A sink that asks only for what it uses keeps observed runs
/// cheap: `TaskFinished` carries its duration, so a sink that records tasks rarely needs
/// `TaskStarted` too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interest {
    /// `RunStarted`, `RunFinished`, `GraphDefined` and `Interrupted`.
    pub runs: bool,
    /// `SuperstepStarted`: which step runs which nodes.
    pub steps_started: bool,
    /// `SuperstepFinished`, with the step's duration.
    pub steps_finished: bool,
    /// `TaskStarted`.
    pub tasks_started: bool,
    /// `TaskFinished`, with the attempt's duration and error.
    pub tasks_finished: bool,
    /// `Routed`.
    pub routing: bool,
    /// `Custom`.
    pub custom: bool,
    /// `CheckpointCommitted`.
    pub checkpoints: bool,
    /// State deltas ([`StateDelta`], through [`EventCallback::on_delta`]): the state each run
    /// starts from and each superstep's merged update. They are no events: [`Interest::ALL`]
    /// leaves them out, and a run whose sinks do not ask builds none. A sink that asks makes
    /// every observed run copy each step's merged update once (the copy is shared, never
    /// encoded on the run's thread).
    pub deltas: bool,
}

impl Interest {
    /// Every event (state deltas, which are no events, not included: add `deltas: true`).
    pub const ALL: Self = Self {
        runs: true,
        steps_started: true,
        steps_finished: true,
        tasks_started: true,
        tasks_finished: true,
        routing: true,
        custom: true,
        checkpoints: true,
        deltas: false,
    };
    /// No event.
    pub const NONE: Self = Self {
        runs: false,
        steps_started: false,
        steps_finished: false,
        tasks_started: false,
        tasks_finished: false,
        routing: false,
        custom: false,
        checkpoints: false,
        deltas: false,
    };

    /// Both sets together.
    pub fn union(self, other: Self) -> Self {
        Self {
            runs: self.runs || other.runs,
            steps_started: self.steps_started || other.steps_started,
            steps_finished: self.steps_finished || other.steps_finished,
            tasks_started: self.tasks_started || other.tasks_started,
            tasks_finished: self.tasks_finished || other.tasks_finished,
            routing: self.routing || other.routing,
            custom: self.custom || other.custom,
            checkpoints: self.checkpoints || other.checkpoints,
            deltas: self.deltas || other.deltas,
        }
    }

    /// Whether any event of a task (start or end) is wanted: the executor then times tasks.
    pub fn tasks(self) -> bool {
        self.tasks_started || self.tasks_finished
    }

    /// Whether `kind` is of interest.
    pub fn covers(self, kind: &EventKind) -> bool {
        match kind {
            EventKind::RunStarted { .. }
            | EventKind::RunFinished { .. }
            | EventKind::GraphDefined { .. }
            | EventKind::Interrupted { .. } => self.runs,
            EventKind::SuperstepStarted { .. } => self.steps_started,
            EventKind::SuperstepFinished { .. } => self.steps_finished,
            EventKind::TaskStarted { .. } => self.tasks_started,
            EventKind::TaskFinished { .. } => self.tasks_finished,
            EventKind::Routed { .. } => self.routing,
            EventKind::Custom { .. } => self.custom,
            EventKind::CheckpointCommitted { .. } => self.checkpoints,
        }
    }
}

/// A sink for run events.
///
/// `on_event` runs on the executor's hot path, inline: an implementation must return quickly
/// and must not block. Sinks that do I/O hand the event to a channel and write it elsewhere.
pub trait EventCallback: Send + Sync + 'static {
    /// Receives one event.
    fn on_event(&self, event: &Event);

    /// What this sink is, for listings such as the executor's `CompiledGraph::observers`:
    /// its type's name unless it says more (where it writes, say).
    fn name(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(std::any::type_name::<Self>())
    }

    /// Which events this sink needs (all by default). The executor builds an event only when
    /// some sink needs it, so a narrow interest makes observed runs cheaper.
    fn interest(&self) -> Interest {
        Interest::ALL
    }

    /// Receives one event that nobody else needs afterwards, by value: a sink that keeps
    /// events (a buffer, a queue) can then keep this one without cloning it. The executor
    /// calls it for the last sink that wants an event when no stream does; the default
    /// passes it to [`on_event`](Self::on_event).
    fn take_event(&self, event: Event) {
        self.on_event(&event);
    }

    /// Whether this sink takes a run's events in batches ([`on_batch`](Self::on_batch) and
    /// [`take_batch`](Self::take_batch)) rather than one by one. Default `false`.
    ///
    /// A run keeps the events of batching sinks in a buffer of its own, with no lock shared
    /// with other runs and no call per event, and hands it over whenever the run waits (its
    /// future returns `Pending`: a node awaits I/O, a checkpoint write, a slow stream reader),
    /// ends, has buffered a few dozen events or has held the oldest for 50 ms. So a batching
    /// sink is current whenever a run waits, and costs a tight loop of short steps almost
    /// nothing per event: the common events of a step are recorded compactly and become
    /// [`Event`]s only when the sink asks ([`EventBatch::events`],
    /// [`EventBatch::into_events`]), on whatever thread it asks.
    ///
    /// Batches are handed over under a lock of the run's buffer (that keeps them in order):
    /// take them without blocking or I/O, as [`on_event`](Self::on_event) should.
    ///
    /// A batching sink sees the same events, in the same order, as one that takes them one by
    /// one. What it must accept besides:
    /// - A batch holds events of one run and of the subgraph runs it started, each run's in
    ///   order; batches of one run arrive in order. Batches of different runs interleave.
    /// - A batch may hold events outside [`interest`](Self::interest) (another batching
    ///   sink of the run wanted them): skip those.
    /// - A `Routed` decision made right after its node's task ended may carry that
    ///   `TaskFinished`'s time (the two are recorded together).
    fn batches(&self) -> bool {
        false
    }

    /// Receives a batch of events (see [`batches`](Self::batches)). The default builds each
    /// event the sink is interested in and passes it to [`on_event`](Self::on_event), and, if
    /// it asks for deltas, each delta to [`on_delta`](Self::on_delta), in the batch's order.
    fn on_batch(&self, batch: &EventBatch) {
        let interest = self.interest();
        for item in batch.items() {
            match item {
                crate::BatchItem::Event(event) if interest.covers_ref(&event) => self.on_event(&event.to_event()),
                crate::BatchItem::Delta(delta) if interest.deltas => self.on_delta(delta),
                _ => {}
            }
        }
    }

    /// Receives a state delta: the state a run starts from or a superstep's merged update
    /// (see [`StateDelta`]). Called only for a sink whose [`interest`](Self::interest) asks
    /// for deltas; the default ignores it. A batching sink gets them inside its batches
    /// instead, in order among the events ([`EventBatch::items`]), and a batch may hold
    /// deltas another sink asked for: skip them unless this sink asks too.
    ///
    /// It runs on the run's thread, as [`on_event`](Self::on_event) does: keep the delta (a
    /// clone is a reference count) and encode it elsewhere.
    fn on_delta(&self, delta: &StateDelta) {
        let _ = delta;
    }

    /// Receives a batch nobody needs afterwards, by value (see
    /// [`take_event`](Self::take_event)). The default passes it to
    /// [`on_batch`](Self::on_batch).
    fn take_batch(&self, batch: EventBatch) {
        self.on_batch(&batch);
    }
}

impl<F> EventCallback for F
where
    F: Fn(&Event) + Send + Sync + 'static,
{
    fn on_event(&self, event: &Event) {
        self(event)
    }
}
