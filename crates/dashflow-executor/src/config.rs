//! Per-run configuration.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use dashflow_checkpoint::{CheckpointId, Checkpointer};
use dashflow_telemetry::{EventCallback, RunId};

/// When a run's checkpoints must be durable, once a checkpointer is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Durability {
    /// Each superstep's checkpoint is committed before the next superstep starts.
    Sync,
    /// Checkpoints are written while the next superstep runs; the run does not return before
    /// the last one is committed. A backend whose writes need no I/O
    /// (`Checkpointer::writes_without_io`, the memory checkpointer) is written before the next
    /// superstep instead, as under `Sync`: handing such a write over would cost more.
    #[default]
    Async,
    /// Only the final state is written, when the run exits.
    Exit,
}

/// What a stream reports; several modes can be on at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamMode {
    /// The whole state after every superstep (and the input, as step 0).
    Values,
    /// Each task's update, as the node returned it.
    Updates,
    /// Run, superstep and task start/end events with durations, and routing decisions.
    Events,
    /// Values nodes write through `NodeContext::emit` while they run.
    Custom,
}

/// A set of [`StreamMode`]s.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct StreamModes(u8);

impl StreamModes {
    /// No modes: the stream yields nothing but the final result.
    pub const NONE: Self = Self(0);

    fn bit(mode: StreamMode) -> u8 {
        match mode {
            StreamMode::Values => 1,
            StreamMode::Updates => 2,
            StreamMode::Events => 4,
            StreamMode::Custom => 8,
        }
    }

    /// Whether `mode` is on.
    pub fn contains(self, mode: StreamMode) -> bool {
        self.0 & Self::bit(mode) != 0
    }

    /// Turns `mode` on.
    pub fn insert(&mut self, mode: StreamMode) {
        self.0 |= Self::bit(mode);
    }

    /// Whether no mode is on.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<StreamMode> for StreamModes {
    fn from_iter<I: IntoIterator<Item = StreamMode>>(iter: I) -> Self {
        let mut modes = Self::NONE;
        for mode in iter {
            modes.insert(mode);
        }
        modes
    }
}

impl fmt::Debug for StreamModes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = [StreamMode::Values, StreamMode::Updates, StreamMode::Events, StreamMode::Custom];
        f.debug_set().entries(all.into_iter().filter(|m| self.contains(*m))).finish()
    }
}

/// How one run behaves: its thread, limits, stream modes and extra event sinks.
///
/// Lives apart from the compiled graph, so one graph serves any number of differently
/// configured runs at once.
///
/// ```
/// use std::time::Duration;
/// use dashflow_executor::{RunConfig, StreamMode};
///
/// let config = RunConfig::thread("ticket-42")
///     .recursion_limit(100)
///     .timeout(Duration::from_secs(30))
///     .stream_modes([StreamMode::Updates, StreamMode::Custom]);
/// assert_eq!(config.thread_id.as_deref(), Some("ticket-42"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RunConfig {
    /// The conversation or job this run belongs to; checkpoints are kept per thread.
    pub thread_id: Option<Arc<str>>,
    /// The run's id; a fresh one when unset.
    pub run_id: Option<RunId>,
    /// Resume or fork from this checkpoint of the thread instead of its latest.
    pub checkpoint_id: Option<CheckpointId>,
    /// Most supersteps this invocation may take (default 25); exceeding it is an error, after
    /// which a durable thread can resume with a higher limit.
    pub recursion_limit: u32,
    /// When checkpoints must be durable (with a checkpointer attached).
    pub durability: Durability,
    /// What `stream` reports.
    pub stream_modes: StreamModes,
    /// Events the stream buffers before a slow consumer makes the run wait (default 64).
    pub stream_capacity: usize,
    /// Limit on the whole run's wall time.
    pub timeout: Option<Duration>,
    /// Free-form labels, carried on the run's `RunStarted` event into its trace and the run
    /// index (`dashflow runs list --tag`).
    pub tags: Vec<Arc<str>>,
    /// Event sinks for this run only, in addition to the graph's.
    pub callbacks: Vec<Arc<dyn EventCallback>>,
    /// What the run's nodes read through `NodeContext::context` (see [`RunConfig::context`]).
    pub context: Option<Arc<dyn Any + Send + Sync>>,
    /// Where this run checkpoints instead of the graph's checkpointer (see
    /// [`RunConfig::checkpointer`]).
    pub checkpointer: Option<Arc<dyn Checkpointer>>,
}

impl RunConfig {
    /// The defaults: no thread, recursion limit 25, `Async` durability, no stream modes.
    pub fn new() -> Self {
        Self {
            thread_id: None,
            run_id: None,
            checkpoint_id: None,
            recursion_limit: 25,
            durability: Durability::default(),
            stream_modes: StreamModes::NONE,
            stream_capacity: 64,
            timeout: None,
            tags: Vec::new(),
            callbacks: Vec::new(),
            context: None,
            checkpointer: None,
        }
    }

    /// The defaults, for thread `thread_id`.
    pub fn thread(thread_id: impl Into<Arc<str>>) -> Self {
        Self { thread_id: Some(thread_id.into()), ..Self::new() }
    }

    /// Sets the run id.
    pub fn run_id(mut self, run_id: RunId) -> Self {
        self.run_id = Some(run_id);
        self
    }

    /// Resumes or forks from checkpoint `id` of the thread (time travel) instead of its latest.
    pub fn checkpoint_id(mut self, id: CheckpointId) -> Self {
        self.checkpoint_id = Some(id);
        self
    }

    /// Allows up to `limit` supersteps.
    pub fn recursion_limit(mut self, limit: u32) -> Self {
        self.recursion_limit = limit;
        self
    }

    /// Sets the durability mode.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Streams exactly these modes.
    pub fn stream_modes(mut self, modes: impl IntoIterator<Item = StreamMode>) -> Self {
        self.stream_modes = modes.into_iter().collect();
        self
    }

    /// Also streams `mode`.
    pub fn stream_mode(mut self, mode: StreamMode) -> Self {
        self.stream_modes.insert(mode);
        self
    }

    /// Buffers at most `capacity` stream events (at least 1).
    pub fn stream_capacity(mut self, capacity: usize) -> Self {
        self.stream_capacity = capacity.max(1);
        self
    }

    /// Fails the run if it takes longer than `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds a tag (see [`RunConfig::tags`]).
    pub fn tag(mut self, tag: impl Into<Arc<str>>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Adds an event sink for this run.
    pub fn callback(mut self, callback: impl EventCallback) -> Self {
        self.callbacks.push(Arc::new(callback));
        self
    }

    /// Gives the run's nodes `context` to read, by type, through `NodeContext::context` (like
    /// LangGraph's runtime context): a database pool, a client, the user the run acts for.
    /// Subgraph runs see it too. It is not checkpointed: pass it again to `resume` or
    /// `invoke_update` a thread.
    ///
    /// ```
    /// # use dashflow_executor::RunConfig;
    /// struct Caller { user_id: u64 }
    /// let config = RunConfig::thread("t-1").context(Caller { user_id: 42 });
    /// assert!(config.context.is_some());
    /// ```
    pub fn context<C: Any + Send + Sync>(mut self, context: C) -> Self {
        self.context = Some(Arc::new(context));
        self
    }
}

impl RunConfig {
    /// Checkpoints this run (its subgraph runs included) into `checkpointer` instead of the
    /// graph's, with the graph's codec and snapshot settings; a graph without a checkpointer
    /// becomes durable for this run. A distributed worker gives each run it holds a
    /// checkpointer fenced by the run's lease this way, so a former owner can never write.
    pub fn checkpointer(mut self, checkpointer: Arc<dyn Checkpointer>) -> Self {
        self.checkpointer = Some(checkpointer);
        self
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RunConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunConfig")
            .field("thread_id", &self.thread_id)
            .field("run_id", &self.run_id)
            .field("checkpoint_id", &self.checkpoint_id)
            .field("recursion_limit", &self.recursion_limit)
            .field("durability", &self.durability)
            .field("stream_modes", &self.stream_modes)
            .field("stream_capacity", &self.stream_capacity)
            .field("timeout", &self.timeout)
            .field("tags", &self.tags)
            .field("callbacks", &self.callbacks.len())
            .field("context", &self.context.is_some())
            .field("checkpointer", &self.checkpointer)
            .finish()
    }
}
