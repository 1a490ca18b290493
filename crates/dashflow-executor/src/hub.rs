//! Where a run's events go: callbacks, the stream, and the parent run of a subgraph.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use dashflow_graph::{RunScope, TaskId};
use dashflow_telemetry::{Event, EventCallback, EventKind, Interest, RunIds};
use futures::future::BoxFuture;

use crate::clock::{RunClock, Tick};
use crate::config::{StreamMode, StreamModes};
use crate::stream::CustomValue;

/// The untyped part of a run's stream: what subgraph runs (of any state type) can forward to.
pub(crate) trait UntypedSink: Send + Sync + 'static {
    fn send_event(&self, event: Event) -> BoxFuture<'static, ()>;
    fn send_custom(&self, value: CustomValue) -> BoxFuture<'static, ()>;
}

/// Fans events out to callbacks and, for the modes that are on, to the stream.
///
/// Built once per run. `interest` is computed up front so that a run nobody observes pays one
/// branch per would-be event and builds nothing.
pub(crate) struct EventHub {
    callbacks: Vec<Arc<dyn EventCallback>>,
    /// Each callback's interest, asked once per run rather than once per event.
    interests: Vec<Interest>,
    sink: Option<Arc<dyn UntypedSink>>,
    stream_events: bool,
    stream_custom: bool,
    /// What anyone listens to: the callbacks' interests, or everything for an `Events` stream.
    interest: Interest,
    clock: RunClock,
}

impl EventHub {
    pub(crate) fn new(
        callbacks: Vec<Arc<dyn EventCallback>>,
        sink: Option<Arc<dyn UntypedSink>>,
        modes: StreamModes,
    ) -> Self {
        let stream_events = sink.is_some() && modes.contains(StreamMode::Events);
        let stream_custom = sink.is_some() && modes.contains(StreamMode::Custom);
        let interests = callbacks.iter().map(|callback| callback.interest()).collect();
        let interest = interest_of(&callbacks, stream_events);
        Self { callbacks, interests, sink, stream_events, stream_custom, interest, clock: RunClock::new() }
    }

    /// The hub of a subgraph run started from a node of the run that owns `self`: the child
    /// graph's own callbacks, then everything the parent forwards to.
    pub(crate) fn nested(&self, child_callbacks: &[Arc<dyn EventCallback>]) -> Self {
        // A sink both graphs share (the facade's defaults) must hear each event once.
        let inherited =
            self.callbacks.iter().filter(|parent| !child_callbacks.iter().any(|child| Arc::ptr_eq(child, parent)));
        let callbacks: Vec<_> = child_callbacks.iter().chain(inherited).map(Arc::clone).collect();
        let interests = callbacks.iter().map(|callback| callback.interest()).collect();
        let interest = interest_of(&callbacks, self.stream_events);
        Self {
            callbacks,
            interests,
            sink: self.sink.clone(),
            stream_events: self.stream_events,
            stream_custom: self.stream_custom,
            interest,
            clock: RunClock::new(),
        }
    }

    /// The events anyone wants.
    pub(crate) fn interest(&self) -> Interest {
        self.interest
    }

    /// Whether anyone wants routing decisions.
    pub(crate) fn routing(&self) -> bool {
        self.interest.routing
    }

    pub(crate) fn custom_enabled(&self) -> bool {
        self.interest.custom || self.stream_custom
    }

    /// Delivers an event that happens now; waits only when the stream's buffer is full.
    /// Events at boundaries the caller timed anyway go through [`EventHub::notify`] with that
    /// reading instead.
    pub(crate) async fn emit(&self, run: RunIds, kind: EventKind) {
        if self.interest.covers(&kind)
            && let Some(event) = self.notify(run, kind, Tick::now())
        {
            self.stream(event).await;
        }
    }

    /// Hands an event to the callbacks that want it, and returns it if the stream wants it
    /// too (see [`EventHub::stream`]). Not `async`: a caller that is not streamed awaits
    /// nothing, and its future does not carry the event.
    pub(crate) fn notify(&self, run: RunIds, kind: EventKind, at: Tick) -> Option<Event> {
        if !self.interest.covers(&kind) {
            return None;
        }
        let event = Event::at(run, self.clock.wall_time(at), kind);
        // The last callback that wants the event takes it, unless the stream needs it too.
        let last = match self.stream_events {
            true => None,
            false => self.interests.iter().rposition(|interest| interest.covers(&event.kind)),
        };
        for (index, (callback, interest)) in self.callbacks.iter().zip(&self.interests).enumerate() {
            if Some(index) == last {
                callback.take_event(event);
                return None;
            }
            if interest.covers(&event.kind) {
                callback.on_event(&event);
            }
        }
        self.stream_events.then_some(event)
    }

    /// Sends an event [`EventHub::notify`] returned to the stream; waits only when its
    /// buffer is full.
    pub(crate) async fn stream(&self, event: Event) {
        if let Some(sink) = &self.sink {
            sink.send_event(event).await;
        }
    }

    async fn emit_custom(&self, run: RunIds, task: &TaskId, value: serde_json::Value) {
        if self.stream_custom
            && let Some(sink) = &self.sink
        {
            let custom = CustomValue { run, step: task.step, node: task.node.clone(), value: value.clone() };
            sink.send_custom(custom).await;
        }
        // Callbacks hear custom values as events. The stream reports each one once, as
        // `StreamEvent::Custom` when that mode is on, and never again as an `Events` item.
        if self.interest.custom {
            let at = self.clock.wall_time(Tick::now());
            let event = Event::at(run, at, EventKind::Custom { step: task.step, node: task.node.clone(), value });
            for (callback, interest) in self.callbacks.iter().zip(&self.interests) {
                if interest.custom {
                    callback.on_event(&event);
                }
            }
        }
    }
}

fn interest_of(callbacks: &[Arc<dyn EventCallback>], stream_events: bool) -> Interest {
    let base = if stream_events { Interest::ALL } else { Interest::NONE };
    callbacks.iter().fold(base, |interest, callback| interest.union(callback.interest()))
}

/// The executor's side of every `NodeContext` of one run, and what its tasks share.
pub(crate) struct ExecScope {
    pub(crate) hub: Arc<EventHub>,
    pub(crate) run: RunIds,
    pub(crate) thread_id: Option<Arc<str>>,
    /// The run's recursion limit, which subgraph runs started from its nodes inherit.
    pub(crate) recursion_limit: u32,
    /// Answers to interrupts, by task id, delivered by a resume.
    pub(crate) resumes: HashMap<String, Vec<serde_json::Value>>,
    /// How the run is checkpointed, so that subgraph runs checkpoint under it.
    pub(crate) nesting: Option<crate::durable::Nesting>,
    /// The parent checkpoint the current step started from, for its subgraph runs; only
    /// for durable runs of graphs with subgraph nodes.
    pub(crate) step_starts: Option<crate::subgraph::StepStarts>,
}

impl RunScope for ExecScope {
    fn custom_enabled(&self) -> bool {
        self.hub.custom_enabled()
    }

    fn emit_custom(&self, task: &TaskId, value: serde_json::Value) -> BoxFuture<'static, ()> {
        let hub = Arc::clone(&self.hub);
        let run = self.run;
        let task = task.clone();
        Box::pin(async move { hub.emit_custom(run, &task, value).await })
    }

    fn thread_id(&self) -> Option<&str> {
        self.thread_id.as_deref()
    }

    fn resume_value(&self, task: &TaskId, index: u32) -> Option<serde_json::Value> {
        if self.resumes.is_empty() {
            return None;
        }
        self.resumes.get(&task.to_string())?.get(index as usize).cloned()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
