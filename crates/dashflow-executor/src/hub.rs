//! Where a run's events go: callbacks, the stream, and the parent run of a subgraph.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashflow_graph::__private::{CancelSignal, NodeId, RunScope};
use dashflow_graph::TaskId;
use dashflow_telemetry::__private::{Held, NodeNames, RunContext};
use dashflow_telemetry::clock::{RunClock, Tick};
use dashflow_telemetry::{
    DeltaKind, Event, EventBatch, EventCallback, EventKind, Interest, RunIds, StateDelta, StateJson,
};
use futures::future::BoxFuture;

use crate::batcher::{Batcher, Owned, same_sinks, split_batching};
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
/// branch per would-be event and builds nothing. Callbacks that take events in batches
/// ([`EventCallback::batches`]) get them through the run's [`Batcher`]; the others one by one.
pub(crate) struct EventHub {
    /// The callbacks that take events one by one.
    callbacks: Vec<Arc<dyn EventCallback>>,
    /// Each callback's interest, asked once per run rather than once per event.
    interests: Vec<Interest>,
    /// The batching callbacks' buffer, shared with subgraph runs that have the same ones.
    batcher: Option<Arc<Batcher>>,
    sink: Option<Arc<dyn UntypedSink>>,
    stream_events: bool,
    stream_custom: bool,
    /// What anyone listens to: the callbacks' interests, or everything for an `Events` stream.
    interest: Interest,
    /// The run, the clock that stamps its events, and its graph's node names (which the
    /// batcher's compact entries refer to).
    context: RunContext,
    /// Which of a step's common events only the batcher wants: those are recorded as
    /// compact entries instead of built (see [`EventBatch`](dashflow_telemetry::EventBatch)).
    compact: Compact,
    /// Whether this run made the batcher, and so may hold back its lone steps' starts (see
    /// [`Batcher::hold_start`]); its subgraph runs that share the batcher record theirs.
    holds_starts: bool,
    /// Whether no start this run held back can still be in the batcher's slot or being read
    /// from it: set by each of its task ends, which take the slot under the lock; cleared by a
    /// hold. A step whose task ended unrecorded (a cancelled run) records its successor's start
    /// under the lock instead. Only the run's own steps and tasks touch it, one after another.
    hold_settled: AtomicBool,
}

/// The events a run records compactly (see [`EventHub::compact`]).
#[derive(Clone, Copy)]
struct Compact {
    starts: bool,
    ends: bool,
    routes: bool,
}

impl EventHub {
    /// The hub of the run `ids` of a graph whose nodes are `names`.
    pub(crate) fn new(
        callbacks: Vec<Arc<dyn EventCallback>>,
        sink: Option<Arc<dyn UntypedSink>>,
        modes: StreamModes,
        (ids, names): (RunIds, &Arc<NodeNames>),
    ) -> Self {
        let stream_events = sink.is_some() && modes.contains(StreamMode::Events);
        let stream_custom = sink.is_some() && modes.contains(StreamMode::Custom);
        let (batching, callbacks) = split_batching(callbacks);
        let context = RunContext::new(ids, RunClock::new(), Arc::clone(names));
        let batcher = Batcher::new(batching, &context).map(|batcher| Owned::Made(Arc::new(batcher)));
        Self::with(callbacks, batcher, sink, (stream_events, stream_custom), context)
    }

    fn with(
        callbacks: Vec<Arc<dyn EventCallback>>,
        batcher: Option<Owned<Arc<Batcher>>>,
        sink: Option<Arc<dyn UntypedSink>>,
        (stream_events, stream_custom): (bool, bool),
        context: RunContext,
    ) -> Self {
        let owns_batcher = matches!(batcher, Some(Owned::Made(_)));
        let batcher = batcher.map(Owned::into_inner);
        let interests: Vec<Interest> = callbacks.iter().map(|callback| callback.interest()).collect();
        let base = if stream_events { Interest::ALL } else { Interest::NONE };
        let direct = interests.iter().copied().fold(base, Interest::union);
        let batched = batcher.as_ref().map_or(Interest::NONE, |batcher| batcher.interest);
        let compact = Compact {
            starts: batched.steps_started && !direct.steps_started,
            ends: batched.tasks_finished && !direct.tasks_finished,
            routes: batched.routing && !direct.routing,
        };
        Self {
            callbacks,
            interests,
            batcher,
            sink,
            stream_events,
            stream_custom,
            interest: direct.union(batched),
            context,
            compact,
            holds_starts: owns_batcher && compact.starts && compact.ends,
            hold_settled: AtomicBool::new(true),
        }
    }

    /// The hub of the subgraph run `ids` (of a graph whose nodes are `names`) started from a
    /// node of the run that owns `self`: the child graph's own callbacks, then everything the
    /// parent forwards to.
    pub(crate) fn nested(
        &self,
        child_callbacks: &[Arc<dyn EventCallback>],
        (ids, names): (RunIds, &Arc<NodeNames>),
    ) -> Self {
        // A sink both graphs share (the facade's defaults) must hear each event once.
        let parents = self.callbacks.iter().chain(self.batcher.iter().flat_map(|batcher| &batcher.sinks));
        let inherited: Vec<_> =
            parents.filter(|parent| !child_callbacks.iter().any(|child| Arc::ptr_eq(child, parent))).collect();
        let callbacks: Vec<_> = child_callbacks.iter().chain(inherited).map(Arc::clone).collect();
        let (batching, callbacks) = split_batching(callbacks);
        let context = RunContext::new(ids, RunClock::new(), Arc::clone(names));
        let batcher = match &self.batcher {
            // The usual case: the child's events join the parent's in one buffer, in order.
            Some(parent) if same_sinks(&parent.sinks, &batching) => Some(Owned::Shared(Arc::clone(parent))),
            _ => {
                // What the parent buffered goes first, so each sink hears the parent's
                // events up to here before the child's.
                if let Some(parent) = &self.batcher {
                    parent.flush();
                }
                Batcher::new(batching, &context).map(|batcher| Owned::Made(Arc::new(batcher)))
            }
        };
        Self::with(callbacks, batcher, self.sink.clone(), (self.stream_events, self.stream_custom), context)
    }

    /// The run's future returned `Pending`: batching sinks get what is buffered now, and
    /// events come to them at once until [`EventHub::run_resumes`].
    pub(crate) fn run_waits(&self) {
        if let Some(batcher) = &self.batcher {
            batcher.waiting.store(true, Ordering::Relaxed);
            batcher.flush();
        }
    }

    /// The run's future is polled again.
    pub(crate) fn run_resumes(&self) {
        if let Some(batcher) = &self.batcher
            && batcher.waiting.load(Ordering::Relaxed)
        {
            batcher.waiting.store(false, Ordering::Relaxed);
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

    /// Whether any sink asks for state deltas.
    pub(crate) fn deltas(&self) -> bool {
        self.interest.deltas
    }

    /// Hands the sinks that ask for deltas the run's state at `step` or a step's merged
    /// update (see [`StateDelta`]). Callers check [`EventHub::deltas`] first, so that a run
    /// nobody asks deltas of copies no update.
    pub(crate) fn delta(&self, run: RunIds, step: u64, kind: DeltaKind, value: Arc<dyn StateJson>) {
        let at = Tick::now();
        let delta = StateDelta::new(run, self.context.clock().wall_time(at), step, kind, value);
        for (callback, interest) in self.callbacks.iter().zip(&self.interests) {
            if interest.deltas {
                callback.on_delta(&delta);
            }
        }
        if let Some(batcher) = self.batcher.as_ref().filter(|batcher| batcher.interest.deltas) {
            batcher.record(at, |batch| batch.push_delta(delta));
        }
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

    /// Delivers events that happen together, now: batching sinks get them in one batch even
    /// while the run waits.
    pub(crate) async fn emit_all(&self, run: RunIds, kinds: impl IntoIterator<Item = EventKind>) {
        let at = Tick::now();
        let mut streamed = Vec::new();
        {
            let _burst = self.batcher.as_ref().map(|batcher| batcher.burst());
            for kind in kinds {
                streamed.extend(self.notify(run, kind, at));
            }
        }
        for event in streamed {
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
        let event = Event::at(run, self.context.clock().wall_time(at), kind);
        let batcher = self.batcher.as_ref().filter(|batcher| batcher.interest.covers(&event.kind));
        // The last callback that wants the event takes it, unless the stream or the batching
        // sinks need it too.
        let last = match self.stream_events || batcher.is_some() {
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
        #[cfg(test)]
        if batcher.is_some() {
            tests::before_record();
        }
        match batcher {
            Some(batcher) if self.stream_events => {
                batcher.record(at, |batch| batch.push_event(event.clone()));
                Some(event)
            }
            Some(batcher) => {
                batcher.record(at, |batch| batch.push_event(event));
                None
            }
            None => self.stream_events.then_some(event),
        }
    }

    /// Holds back the start of step `step`, at `at`, whose one task runs node `node`, when
    /// only batching sinks want it and this run may hold it (see [`Batcher::hold_start`]);
    /// `false` if the caller must report it through [`EventHub::step_started`]. The usual
    /// step of a loop, without building the step's node list.
    #[inline]
    pub(crate) fn hold_lone_start(&self, step: u64, node: NodeId, at: Tick) -> bool {
        let Some(batcher) = &self.batcher else { return false };
        if self.holds_starts
            && self.hold_settled.load(Ordering::Relaxed)
            && !batcher.waiting.load(Ordering::Relaxed)
            && batcher.hold_start(step, node_index(node), at)
        {
            self.hold_settled.store(false, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Reports that step `step` of `run` started at `at` with the tasks of `nodes`, which
    /// are node `lone`'s one task if `lone` is set (see [`EventHub::notify`]).
    pub(crate) fn step_started(
        &self,
        run: RunIds,
        step: u64,
        (nodes, lone): (&Arc<[Arc<str>]>, Option<NodeId>),
        at: Tick,
    ) -> Option<Event> {
        if let (Some(batcher), Some(node), true) = (&self.batcher, lone, self.compact.starts) {
            if self.hold_lone_start(step, node, at) {
                return None;
            }
            let node = node_index(node);
            batcher.record(at, |batch| batch.push_step_started(&self.context, step, node, at));
            return None;
        }
        self.notify(run, EventKind::SuperstepStarted { step, nodes: Arc::clone(nodes) }, at)
    }

    /// Reports that attempt `attempt` of node `node`'s task (named `name`) in step `step`
    /// ran from `started` to `ended` and failed with `error`, if it did.
    pub(crate) fn task_finished(
        &self,
        run: RunIds,
        (step, node, name, attempt): (u64, NodeId, &Arc<str>, u32),
        (started, ended): (Tick, Tick),
        error: Option<String>,
    ) -> Option<Event> {
        if let (Some(batcher), true) = (&self.batcher, self.compact.ends) {
            let task = (step, node_index(node), attempt);
            batcher.record_end(ended, |batch, held| {
                // The start this end's step held back: one entry for both when they fit one.
                if self.takes_held_start(batcher, batch, held, (step, task.1), started) {
                    batch.push_lone_step(&self.context, task, (started, ended), error);
                } else {
                    batch.push_task_finished(&self.context, task, (started, ended), error);
                }
            });
            if self.holds_starts {
                self.hold_settled.store(true, Ordering::Relaxed);
            }
            return None;
        }
        let kind =
            EventKind::TaskFinished { step, node: Arc::clone(name), attempt, duration: started.until(ended), error };
        self.notify(run, kind, ended)
    }

    /// Whether the loop may hold a lone task's end back until its step is routed and record
    /// both with [`EventHub::lone_task_routed`]: only batching sinks want task ends, as
    /// compact entries.
    pub(crate) fn holds_lone_ends(&self) -> bool {
        self.batcher.is_some() && self.compact.ends
    }

    /// Records the successful end of a lone task (its first attempt, from `started` to
    /// `ended`) that the loop held back until its step was routed, with the step's routing
    /// decision `route` (see [`EventHub::compact_route`]) riding on it: one lock for both.
    #[inline]
    pub(crate) fn lone_task_routed(
        &self,
        (step, node): (u64, NodeId),
        (started, ended): (Tick, Tick),
        route: Option<(u32, u32, u32)>,
    ) {
        let Some(batcher) = &self.batcher else { return };
        let node = node_index(node);
        batcher.record_end(ended, |batch, held| {
            let opens_step = self.takes_held_start(batcher, batch, held, (step, node), started);
            match route {
                Some(route) => batch.push_end_routed(&self.context, (step, node), (started, ended), route, opens_step),
                None if opens_step => batch.push_lone_step(&self.context, (step, node, 1), (started, ended), None),
                None => batch.push_task_finished(&self.context, (step, node, 1), (started, ended), None),
            }
        });
        if self.holds_starts {
            self.hold_settled.store(true, Ordering::Relaxed);
        }
    }

    /// Whether `held`, the start the owner held back, is that of the lone task of step
    /// `step` running node `node` that started at `started`: its end then opens the step in
    /// one entry. Any other held start goes into `batch` as an entry of its own first. Only
    /// the owner's own: a subgraph run sharing the batcher could have a step and node of the
    /// same numbers.
    fn takes_held_start(
        &self,
        batcher: &Batcher,
        batch: &mut EventBatch,
        held: Option<Held>,
        (step, node): (u64, u32),
        started: Tick,
    ) -> bool {
        match held {
            Some(held) if self.holds_starts && (held.step, held.node) == (step, node) && held.at == started => true,
            held => {
                if let Some(held) = held {
                    batcher.push_held(batch, held);
                }
                false
            }
        }
    }

    /// The compact form (from, label number, target) of node `from`'s conditional edge `edge`
    /// choosing its label number `position`, which leads to node `target`, if only batching
    /// sinks want routing decisions and the label is known.
    pub(crate) fn compact_route(
        &self,
        from: NodeId,
        (edge, position): (usize, usize),
        target: NodeId,
    ) -> Option<(u32, u32, u32)> {
        if self.batcher.is_none() || !self.compact.routes {
            return None;
        }
        let label = self.context.names().label_index(node_index(from), edge, position)?;
        Some((node_index(from), label, node_index(target)))
    }

    /// Records, as a compact entry, that node `from`'s conditional edge chose `label`, leading
    /// to node `target`, if only batching sinks want routing decisions; `false` if the
    /// decision must go through [`EventHub::routed`] instead.
    pub(crate) fn record_route(
        &self,
        step: u64,
        from: NodeId,
        (edge, position): (usize, usize),
        target: NodeId,
    ) -> bool {
        let (Some(batcher), Some(route)) = (&self.batcher, self.compact_route(from, (edge, position), target)) else {
            return false;
        };
        batcher.record_reading(|batch| batch.push_routed_reading(&self.context, step, route, Tick::now));
        true
    }

    /// Reports a routing decision after step `step`: node `from`'s conditional edge (`None`:
    /// `START`'s) chose `label`, leading to node `target` (`None`: the end). `names` names
    /// both, when the decision is built as an event.
    pub(crate) fn routed(
        &self,
        run: RunIds,
        step: u64,
        (from, label, target): (Option<NodeId>, Arc<str>, Option<NodeId>),
        at: Tick,
        names: impl FnOnce(Option<NodeId>, Option<NodeId>) -> (Arc<str>, Arc<str>),
    ) -> Option<Event> {
        let (from, target) = names(from, target);
        self.notify(run, EventKind::Routed { step, from, label, target }, at)
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
            let at = self.context.clock().wall_time(Tick::now());
            let event = Event::at(run, at, EventKind::Custom { step: task.step, node: task.node.clone(), value });
            for (callback, interest) in self.callbacks.iter().zip(&self.interests) {
                if interest.custom {
                    callback.on_event(&event);
                }
            }
            if let Some(batcher) = self.batcher.as_ref().filter(|batcher| batcher.interest.custom) {
                batcher.record(Tick::now(), |batch| batch.push_event(event));
            }
        }
    }
}

fn node_index(node: NodeId) -> u32 {
    u32::try_from(node.index()).unwrap_or(u32::MAX)
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
    /// What the run's nodes read through `NodeContext::context`.
    pub(crate) context: Option<Arc<dyn Any + Send + Sync>>,
    /// What the run's nodes read through `NodeContext::is_cancelled`.
    pub(crate) cancel: CancelSignal,
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

    fn namespace(&self) -> &str {
        self.nesting.as_ref().map_or("", |nesting| nesting.namespace.as_str())
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

    fn context(&self) -> Option<&(dyn Any + Send + Sync)> {
        self.context.as_deref()
    }

    fn cancellation(&self) -> Option<&CancelSignal> {
        Some(&self.cancel)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::sync::mpsc;

    use dashflow_telemetry::{EventBatch, RunId};
    use parking_lot::Mutex;

    use super::*;

    thread_local! {
        /// Runs on this thread when it is about to record an event for the batching sinks.
        static BEFORE_RECORD: RefCell<Option<Box<dyn FnMut()>>> = RefCell::new(None);
    }

    pub(super) fn before_record() {
        BEFORE_RECORD.with(|hook| {
            if let Some(hook) = hook.borrow_mut().as_mut() {
                hook();
            }
        });
    }

    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct Unit;
    dashflow_graph::whole_state!(Unit);

    /// The ids of nodes `a` and `b` of a graph that has them in that order.
    fn two_node_ids() -> (NodeId, NodeId) {
        let mut graph = dashflow_graph::StateGraph::<Unit>::new();
        graph.add_node("a", |_: Arc<Unit>| async { Ok(Unit) }).add_node("b", |_: Arc<Unit>| async { Ok(Unit) });
        graph.add_edge(dashflow_graph::START, "a").add_edge("a", "b").add_edge("b", dashflow_graph::END);
        let graph = graph.build().expect("a valid graph");
        (graph.node_id("a").unwrap(), graph.node_id("b").unwrap())
    }

    /// A batching sink that keeps every event.
    #[derive(Default)]
    struct Kept(Mutex<Vec<Event>>);

    impl EventCallback for Kept {
        fn on_event(&self, event: &Event) {
            self.0.lock().push(event.clone());
        }
        fn batches(&self) -> bool {
            true
        }
        fn on_batch(&self, batch: &EventBatch) {
            self.0.lock().extend(batch.events());
        }
    }

    fn kinds(kept: &Kept) -> Vec<String> {
        kept.0
            .lock()
            .iter()
            .map(|event| match &event.kind {
                EventKind::SuperstepStarted { step, nodes } => format!("start {step} {}", nodes.join(",")),
                EventKind::TaskFinished { step, node, .. } => format!("end {step} {node}"),
                EventKind::RunStarted { .. } => format!("run {}", event.run.run_id),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// A batching sink that keeps the size of each batch it gets.
    #[derive(Default)]
    struct Sizes(Mutex<Vec<usize>>);

    impl EventCallback for Sizes {
        fn on_event(&self, _: &Event) {
            panic!("a batching sink gets batches only");
        }
        fn batches(&self) -> bool {
            true
        }
        fn on_batch(&self, batch: &EventBatch) {
            self.0.lock().push(batch.len());
        }
    }

    /// While the run waits, its events go out a batch each, except those recorded together
    /// (the checkpoints of one commit), which go out as one batch.
    #[tokio::test]
    async fn events_recorded_together_while_the_run_waits_go_out_as_one_batch() {
        let sizes = Arc::new(Sizes::default());
        let names = Arc::new(NodeNames::new(["a"].map(Arc::<str>::from)));
        let run = RunIds::root(RunId::new());
        let sinks = vec![Arc::clone(&sizes) as Arc<dyn EventCallback>];
        let hub = EventHub::new(sinks, None, StreamModes::default(), (run, &names));
        let commit = |step: u64| EventKind::CheckpointCommitted {
            step,
            checkpoint_id: format!("c{step}").into(),
            snapshot: false,
            bytes: 1,
        };
        hub.run_waits();
        hub.emit(run, commit(0)).await;
        hub.emit_all(run, (1..=3).map(commit)).await;
        hub.emit(run, commit(4)).await;
        assert_eq!(*sizes.0.lock(), [1, 3, 1]);
        // While the run goes on, they wait in the buffer with the rest.
        hub.run_resumes();
        hub.emit_all(run, (5..=6).map(commit)).await;
        assert_eq!(*sizes.0.lock(), [1, 3, 1]);
        hub.run_waits();
        assert_eq!(*sizes.0.lock(), [1, 3, 1, 2]);
    }

    /// A lone step's start held back without the lock still reaches the sinks as soon as the
    /// run waits, and before anything a subgraph run sharing the buffer records.
    #[test]
    fn a_held_back_start_goes_out_when_the_run_waits_and_before_a_subgraphs_events() {
        let kept = Arc::new(Kept::default());
        let names = Arc::new(NodeNames::new(["a", "b"].map(Arc::<str>::from)));
        let run = RunIds::root(RunId::new());
        let sinks = vec![Arc::clone(&kept) as Arc<dyn EventCallback>];
        let hub = EventHub::new(sinks.clone(), None, StreamModes::default(), (run, &names));
        let (a, b) = two_node_ids();
        let lone = |index: u32| Arc::clone(names.lone(index).unwrap());
        hub.step_started(run, 1, (&lone(0), Some(a)), Tick::now());
        assert!(kinds(&kept).is_empty(), "held back while the run goes on");
        hub.run_waits();
        assert_eq!(kinds(&kept), ["start 1 a"], "out when the run waits");
        hub.run_resumes();
        let (started, ended) = (Tick::now(), Tick::now());
        hub.task_finished(run, (1, a, &names.name(0).unwrap().clone(), 1), (started, ended), None);

        // Step 2's node runs a subgraph whose events join the same buffer.
        hub.step_started(run, 2, (&lone(1), Some(b)), Tick::now());
        let child = RunIds::root(RunId::new());
        let nested = hub.nested(&sinks, (child, &names));
        let kind = EventKind::RunStarted { graph: "child".into(), thread_id: None, tags: Vec::new() };
        nested.notify(child, kind, Tick::now());
        nested.step_started(child, 1, (&lone(0), Some(a)), Tick::now());
        nested.task_finished(child, (1, a, &names.name(0).unwrap().clone(), 1), (started, ended), None);
        hub.task_finished(run, (2, b, &names.name(1).unwrap().clone(), 1), (started, ended), None);
        hub.run_waits();
        assert_eq!(
            kinds(&kept),
            [
                "start 1 a".to_owned(),
                "end 1 a".to_owned(),
                "start 2 b".to_owned(),
                format!("run {}", child.run_id),
                "start 1 a".to_owned(),
                "end 1 a".to_owned(),
                "end 2 b".to_owned(),
            ]
        );
    }

    /// The `Async` checkpoint writer reports from its own thread while the run goes on: a
    /// report that is held up just before it records must not change which node any step
    /// start names, nor lose a start.
    #[test]
    fn a_report_from_another_thread_during_a_lone_step_keeps_each_start_with_its_node() {
        let kept = Arc::new(Kept::default());
        let names = Arc::new(NodeNames::new(["a", "b"].map(Arc::<str>::from)));
        let run = RunIds::root(RunId::new());
        let hub = Arc::new(EventHub::new(
            vec![Arc::clone(&kept) as Arc<dyn EventCallback>],
            None,
            StreamModes::default(),
            (run, &names),
        ));
        let (a, b) = two_node_ids();
        let lone = |index: u32| Arc::clone(names.lone(index).unwrap());
        hub.step_started(run, 1, (&lone(0), Some(a)), Tick::now());

        let (paused_tx, paused) = mpsc::channel::<()>();
        let (go, go_rx) = mpsc::channel::<()>();
        let writer = std::thread::spawn({
            let hub = Arc::clone(&hub);
            move || {
                BEFORE_RECORD.with(|hook| {
                    *hook.borrow_mut() = Some(Box::new(move || {
                        paused_tx.send(()).unwrap();
                        go_rx.recv().unwrap();
                    }));
                });
                let kind =
                    EventKind::CheckpointCommitted { step: 0, checkpoint_id: "c0".into(), snapshot: true, bytes: 1 };
                hub.notify(run, kind, Tick::now());
            }
        });
        // The report is under way; the run finishes step 1 and starts step 2 meanwhile.
        paused.recv().unwrap();
        let (started, ended) = (Tick::now(), Tick::now());
        hub.task_finished(run, (1, a, &names.name(0).unwrap().clone(), 1), (started, ended), None);
        hub.step_started(run, 2, (&lone(1), Some(b)), Tick::now());
        go.send(()).unwrap();
        writer.join().unwrap();
        hub.task_finished(run, (2, b, &names.name(1).unwrap().clone(), 1), (started, ended), None);
        hub.run_waits();

        let events = kept.0.lock();
        let starts: Vec<(u64, String)> = events
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::SuperstepStarted { step, nodes } => Some((*step, nodes.join(","))),
                _ => None,
            })
            .collect();
        let node_of = |step: u64| if step == 1 { "a" } else { "b" };
        for (step, nodes) in &starts {
            assert_eq!(nodes, node_of(*step), "step {step}'s start names another step's node: {events:#?}");
        }
        assert_eq!(starts, [(1, "a".to_owned()), (2, "b".to_owned())], "every start is heard: {events:#?}");
        let ends: Vec<(u64, String)> = events
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::TaskFinished { step, node, .. } => Some((*step, node.to_string())),
                _ => None,
            })
            .collect();
        assert_eq!(ends, [(1, "a".to_owned()), (2, "b".to_owned())]);
        assert!(events.iter().any(|event| matches!(event.kind, EventKind::CheckpointCommitted { .. })));
    }
}
