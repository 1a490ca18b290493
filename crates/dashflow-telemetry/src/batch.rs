//! A run's events as the executor records them for sinks that take batches
//! ([`EventCallback::batches`](crate::EventCallback::batches)): compact entries that become
//! [`Event`]s only when a sink asks for them, on the sink's thread.
//!
//! Building an `Event` (copying the run's ids, converting a clock reading to wall-clock time,
//! cloning shared names) cost more than the step it reported in a tight loop of short steps.
//! So the events every step has (a one-task step's start, a task's end, a routing decision)
//! are recorded as a few numbers instead: the node by its index in the graph, times as raw
//! clock readings. A [`RunContext`] per run holds what turns them into events. Other events
//! are kept as they are.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::{RunClock, Tick};
use crate::{Event, EventKind, Interest, RunIds, StateDelta};

/// One graph's node names by node index, and each as a one-node list (what a one-task step's
/// `SuperstepStarted` names), built once per compiled graph.
#[derive(Debug)]
pub struct NodeNames {
    names: Box<[Arc<str>]>,
    lone: Box<[Arc<[Arc<str>]>]>,
    /// Every label of every conditional edge, numbered node by node, edge by edge.
    labels: Box<[Arc<str>]>,
    /// Per node and edge, the number of the edge's first label.
    first_label: Box<[Box<[u32]>]>,
    /// What an index out of range reads as (`?`), alone and as a one-node list.
    unknown: Arc<str>,
    unknown_lone: Arc<[Arc<str>]>,
}

impl NodeNames {
    /// The names of a graph's nodes, in node index order.
    ///
    /// The names are copied: events built from them on a sink's thread then touch no
    /// reference count the run's thread touches (the graph's own names are cloned for every
    /// task), so the two threads do not contend for those cache lines.
    pub fn new(names: impl IntoIterator<Item = Arc<str>>) -> Self {
        let names: Box<[Arc<str>]> = names.into_iter().map(|name| Arc::from(&*name)).collect();
        let lone = names.iter().map(|name| Arc::from([Arc::clone(name)])).collect();
        let unknown: Arc<str> = Arc::from("?");
        let unknown_lone = Arc::from([Arc::clone(&unknown)]);
        Self { names, lone, labels: Box::default(), first_label: Box::default(), unknown, unknown_lone }
    }

    /// Adds the labels of the graph's conditional edges: per node (in index order), per
    /// outgoing edge (in order), the edge's labels (none for an edge that is not
    /// conditional). Copied, like the names.
    pub fn with_labels(mut self, per_node: impl IntoIterator<Item = Vec<Vec<Arc<str>>>>) -> Self {
        let mut labels = Vec::new();
        let mut first_label = Vec::new();
        for edges in per_node {
            let mut firsts = Vec::with_capacity(edges.len());
            for edge in edges {
                firsts.push(u32::try_from(labels.len()).unwrap_or(u32::MAX));
                labels.extend(edge.iter().map(|label| Arc::from(&**label)));
            }
            first_label.push(firsts.into_boxed_slice());
        }
        self.labels = labels.into_boxed_slice();
        self.first_label = first_label.into_boxed_slice();
        self
    }

    /// The number of label `position` of edge `edge` of node `node` (see
    /// [`with_labels`](Self::with_labels)).
    pub fn label_index(&self, node: u32, edge: usize, position: usize) -> Option<u32> {
        let first = *self.first_label.get(node as usize)?.get(edge)?;
        let index = first.checked_add(u32::try_from(position).ok()?)?;
        ((index as usize) < self.labels.len()).then_some(index)
    }

    /// Label number `index`.
    pub fn label(&self, index: u32) -> Option<&Arc<str>> {
        self.labels.get(index as usize)
    }

    /// The name of node `index`.
    pub fn name(&self, index: u32) -> Option<&Arc<str>> {
        self.names.get(index as usize)
    }

    /// Node `index` as a one-node list.
    pub fn lone(&self, index: u32) -> Option<&Arc<[Arc<str>]>> {
        self.lone.get(index as usize)
    }

    fn name_or_unknown(&self, index: u32) -> &Arc<str> {
        self.name(index).unwrap_or(&self.unknown)
    }

    fn lone_or_unknown(&self, index: u32) -> &Arc<[Arc<str>]> {
        self.lone(index).unwrap_or(&self.unknown_lone)
    }

    fn label_or_unknown(&self, index: u32) -> &Arc<str> {
        self.label(index).unwrap_or(&self.unknown)
    }
}

/// What the compact entries of one run refer to: the run's ids, the clock its readings come
/// from, and its graph's node names. A batch keeps a copy per run (no allocation: the names
/// are shared).
#[derive(Clone, Debug)]
pub struct RunContext {
    ids: RunIds,
    clock: RunClock,
    names: Arc<NodeNames>,
}

impl RunContext {
    /// The context of the run `ids`, timed by `clock`, of a graph with `names`.
    pub fn new(ids: RunIds, clock: RunClock, names: Arc<NodeNames>) -> Self {
        Self { ids, clock, names }
    }

    /// The run.
    pub fn ids(&self) -> &RunIds {
        &self.ids
    }

    /// The clock its readings come from.
    pub fn clock(&self) -> &RunClock {
        &self.clock
    }

    /// Its graph's names.
    pub fn names(&self) -> &Arc<NodeNames> {
        &self.names
    }
}

/// A batch's buffers.
#[derive(Debug, Default)]
struct Storage {
    entries: Vec<Entry>,
    /// The events kept whole, in order, and where each is among the entries.
    events: Vec<Event>,
    events_at: Vec<u32>,
    /// The state deltas, in order (see [`Interest::deltas`]).
    deltas: Vec<StateDelta>,
    runs: Vec<RunContext>,
    /// Per run in `runs`, the index of its last compact step start or task end: where the
    /// run stands, for [`LiveRuns`](crate::LiveRuns), without a pass over the batch.
    last_step: Vec<u32>,
}

/// One recorded event.
#[derive(Debug)]
enum Entry {
    /// An event kept whole, by its place in `Storage::events`: an event is three times the
    /// size of the other entries, and every entry would be copied at that size.
    Event,
    /// A state delta, by its place in `Storage::deltas`: not an event, so [`EventBatch::refs`]
    /// and the events built skip it.
    Delta,
    /// A one-task step began: `SuperstepStarted` naming `node` alone.
    StepStarted { run: u32, node: u32, step: u32, at: Tick },
    /// A successful attempt's `TaskFinished`: when it ended, and how many clock ticks it
    /// took (failed attempts, and attempts too long for the count, are kept as events); with
    /// `route`, also the `Routed` decision the node's conditional edge made right after
    /// (label and target; [`NO_ROUTE`] for none): most steps of a loop then send one entry
    /// across cores, not two. With `opens_step`, the entry also stands for its one-task step's
    /// start, at the attempt's start (see [`EventBatch::push_lone_step`]).
    TaskFinished {
        run: u16,
        attempt: u16,
        node: u32,
        step: u32,
        took: u32,
        ended: Tick,
        route: [u16; 2],
        opens_step: bool,
    },
    /// `Routed` from one node to another.
    Routed { run: u32, step: u32, from: u32, label: u32, target: u32, at: Tick },
}

/// The `route` of a [`Entry::TaskFinished`] that carries no routing decision.
const NO_ROUTE: [u16; 2] = [u16::MAX, u16::MAX];

/// An event of a batch where it lies ([`EventBatch::refs`]): a whole event, or one of the
/// kinds a batch records as a few numbers, with what it refers to borrowed. Reading it costs
/// no allocation and no reference count; [`to_event`](Self::to_event) builds the event.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum EventRef<'a> {
    /// An event the batch keeps whole.
    Whole(&'a Event),
    /// [`EventKind::SuperstepStarted`] of a step of one task.
    StepStarted {
        /// The run.
        run: &'a RunIds,
        /// When it happened.
        at: SystemTime,
        /// The step.
        step: u64,
        /// Its one node, as a one-node list.
        nodes: &'a Arc<[Arc<str>]>,
    },
    /// [`EventKind::TaskFinished`] of an attempt that succeeded.
    TaskFinished {
        /// The run.
        run: &'a RunIds,
        /// When it happened.
        at: SystemTime,
        /// The step.
        step: u64,
        /// The task's node.
        node: &'a Arc<str>,
        /// The attempt, from 1.
        attempt: u32,
        /// How long the attempt took.
        duration: Duration,
    },
    /// [`EventKind::Routed`].
    Routed {
        /// The run.
        run: &'a RunIds,
        /// When it happened.
        at: SystemTime,
        /// The step.
        step: u64,
        /// The node whose conditional edge decided.
        from: &'a Arc<str>,
        /// The label it chose.
        label: &'a Arc<str>,
        /// The node the label leads to.
        target: &'a Arc<str>,
    },
}

impl Interest {
    /// Whether a sink with this interest wants `event` ([`covers`](Self::covers) without
    /// building it).
    pub fn covers_ref(self, event: &EventRef<'_>) -> bool {
        match event {
            EventRef::Whole(event) => self.covers(&event.kind),
            EventRef::StepStarted { .. } => self.steps_started,
            EventRef::TaskFinished { .. } => self.tasks_finished,
            EventRef::Routed { .. } => self.routing,
        }
    }
}

impl EventRef<'_> {
    /// The run the event belongs to.
    pub fn run(&self) -> &RunIds {
        match self {
            Self::Whole(event) => &event.run,
            Self::StepStarted { run, .. } | Self::TaskFinished { run, .. } | Self::Routed { run, .. } => run,
        }
    }

    /// When it happened.
    pub fn at(&self) -> SystemTime {
        match *self {
            Self::Whole(event) => event.at,
            Self::StepStarted { at, .. } | Self::TaskFinished { at, .. } | Self::Routed { at, .. } => at,
        }
    }

    /// The event, built.
    pub fn to_event(&self) -> Event {
        let kind = match *self {
            Self::Whole(event) => return event.clone(),
            Self::StepStarted { step, nodes, .. } => EventKind::SuperstepStarted { step, nodes: Arc::clone(nodes) },
            Self::TaskFinished { step, node, attempt, duration, .. } => {
                EventKind::TaskFinished { step, node: Arc::clone(node), attempt, duration, error: None }
            }
            Self::Routed { step, from, label, target, .. } => {
                EventKind::Routed { step, from: Arc::clone(from), label: Arc::clone(label), target: Arc::clone(target) }
            }
        };
        Event::at(*self.run(), self.at(), kind)
    }
}

/// Events of a run (and of the subgraph runs it started) in the order they happened, for the
/// sinks that take batches. Turn them into [`Event`]s with [`EventBatch::events`] or
/// [`EventBatch::into_events`]: that work is done by whoever asks, where it is asked.
#[derive(Debug, Default)]
pub struct EventBatch {
    storage: Storage,
    /// The index in `runs` of the run recorded last (most entries are the same run's).
    last_run: u32,
}

impl EventBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `capacity` events.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { storage: Storage { entries: Vec::with_capacity(capacity), ..Storage::default() }, last_run: 0 }
    }

    /// A batch of these events.
    pub fn from_events(events: Vec<Event>) -> Self {
        let mut batch = Self::with_capacity(events.len());
        for event in events {
            batch.push_event(event);
        }
        batch
    }

    /// How many entries it holds: an event each, except that one entry can stand for a
    /// one-task step's start, its task's end and the routing decision made right after; and a
    /// state delta each.
    #[inline]
    pub fn len(&self) -> usize {
        self.storage.entries.len()
    }

    /// Whether it holds none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.storage.entries.is_empty()
    }

    /// The events it keeps whole, in order, without building the compact ones: every kind but
    /// a one-task step's start, a successful task's end and a routing decision (run starts
    /// and ends among them).
    pub fn whole_events(&self) -> impl Iterator<Item = &Event> + '_ {
        self.storage.events.iter()
    }

    /// Whether the last event is a run's end (`RunFinished`).
    #[inline]
    pub fn ends_a_run(&self) -> bool {
        matches!(self.storage.entries.last(), Some(Entry::Event))
            && matches!(self.storage.events.last(), Some(Event { kind: EventKind::RunFinished { .. }, .. }))
    }

    /// The state deltas it holds, in order, for a sink that asks for them
    /// ([`Interest::deltas`]); [`items`](Self::items) gives them in order among the events.
    pub fn deltas(&self) -> impl Iterator<Item = &StateDelta> + '_ {
        self.storage.deltas.iter()
    }

    /// Adds a state delta (not an event: [`events`](Self::events) and [`refs`](Self::refs)
    /// skip it).
    pub fn push_delta(&mut self, delta: StateDelta) {
        self.storage.deltas.push(delta);
        self.storage.entries.push(Entry::Delta);
    }

    /// Adds an event.
    pub fn push_event(&mut self, event: Event) {
        let index = self.next_index();
        self.storage.events_at.push(index);
        self.storage.events.push(event);
        self.storage.entries.push(Entry::Event);
    }

    #[inline]
    fn next_index(&self) -> u32 {
        u32::try_from(self.storage.entries.len()).unwrap_or(u32::MAX)
    }

    /// Adds the start of step `step` of `run`, whose one task runs node `node`, at `at`.
    #[doc(hidden)]
    #[inline]
    pub fn push_step_started(&mut self, run: &RunContext, step: u64, node: u32, at: Tick) {
        let Ok(step) = u32::try_from(step) else {
            let kind = EventKind::SuperstepStarted { step, nodes: Arc::clone(run.names.lone_or_unknown(node)) };
            return self.push_event(Event::at(run.ids, run.clock.wall_time(at), kind));
        };
        let run = self.run_index(run);
        self.storage.last_step[run as usize] = self.next_index();
        self.storage.entries.push(Entry::StepStarted { run, node, step, at });
    }

    /// Adds the end of attempt `attempt` of node `node`'s task in step `step` of `run`, which
    /// ran from `started` to `ended`, with its error if it failed.
    #[doc(hidden)]
    #[inline]
    pub fn push_task_finished(
        &mut self,
        run: &RunContext,
        task: (u64, u32, u32),
        span: (Tick, Tick),
        error: Option<String>,
    ) {
        self.push_end(run, task, span, error, false);
    }

    /// Adds the start of step `step` of `run` and the end of its one task, attempt `attempt`
    /// of node `node`, which started with the step at `started` and ended at `ended`: one entry
    /// where both fit one (a first attempt that succeeded), else the two of
    /// [`push_step_started`](Self::push_step_started) and
    /// [`push_task_finished`](Self::push_task_finished).
    #[doc(hidden)]
    #[inline]
    pub fn push_lone_step(
        &mut self,
        run: &RunContext,
        (step, node, attempt): (u64, u32, u32),
        (started, ended): (Tick, Tick),
        error: Option<String>,
    ) {
        if attempt != 1 || error.is_some() {
            self.push_step_started(run, step, node, started);
            return self.push_task_finished(run, (step, node, attempt), (started, ended), error);
        }
        self.push_end(run, (step, node, attempt), (started, ended), error, true);
    }

    /// The successful end of the first attempt of node `node`'s task in step `step` of `run`
    /// (opening its step too if `opens_step`, as [`push_lone_step`](Self::push_lone_step)
    /// does), with the routing decision `route` that followed it riding on its entry: what
    /// [`push_routed_reading`](Self::push_routed_reading) right after would make of it,
    /// without looking the run up again.
    #[doc(hidden)]
    #[inline]
    pub fn push_end_routed(
        &mut self,
        run: &RunContext,
        (step, node): (u64, u32),
        span: (Tick, Tick),
        route: (u32, u32, u32),
        opens_step: bool,
    ) {
        let before = self.storage.entries.len();
        self.push_end(run, (step, node, 1), span, None, opens_step);
        // Only onto the entry just pushed: an end too large for one is an event instead.
        if self.storage.entries.len() == before + 1
            && let Some(Entry::TaskFinished { node: ended, route: slot, .. }) = self.storage.entries.last_mut()
            && (*ended, *slot) == (route.0, NO_ROUTE)
            && let (Ok(label), Ok(target)) = (u16::try_from(route.1), u16::try_from(route.2))
            && [label, target] != NO_ROUTE
        {
            *slot = [label, target];
            return;
        }
        self.push_routed_reading(run, step, route, Tick::now);
    }

    /// A task's end, which opens its step too if `opens_step` (a first attempt without error).
    #[inline(always)]
    fn push_end(
        &mut self,
        run: &RunContext,
        (step, node, attempt): (u64, u32, u32),
        (started, ended): (Tick, Tick),
        error: Option<String>,
        opens_step: bool,
    ) {
        let took = ended.raw().checked_sub(started.raw()).and_then(|took| u32::try_from(took).ok());
        let short_step = u32::try_from(step).ok();
        let index = self.run_index(run);
        let (Some(short_step), Some(took), Ok(short_run), Ok(short_attempt), None) =
            (short_step, took, u16::try_from(index), u16::try_from(attempt), &error)
        else {
            if opens_step {
                self.push_step_started(run, step, node, started);
            }
            let duration = started.until(ended);
            let node = Arc::clone(run.names.name_or_unknown(node));
            let kind = EventKind::TaskFinished { step, node, attempt, duration, error };
            return self.push_event(Event::at(run.ids, run.clock.wall_time(ended), kind));
        };
        self.storage.last_step[index as usize] = self.next_index();
        let entry = Entry::TaskFinished {
            run: short_run,
            attempt: short_attempt,
            node,
            step: short_step,
            took,
            ended,
            route: NO_ROUTE,
            opens_step,
        };
        self.storage.entries.push(entry);
    }

    /// Adds the routing decision after step `step` of `run`: node `from`'s conditional edge
    /// chose label number `label` (see [`NodeNames::label_index`]), which leads to node
    /// `target`.
    #[doc(hidden)]
    pub fn push_routed(&mut self, run: &RunContext, step: u64, route: (u32, u32, u32), at: Tick) {
        self.push_routed_reading(run, step, route, || at);
    }

    /// [`push_routed`](Self::push_routed), reading the clock (`now`) only if the decision
    /// needs an entry of its own: right after its node's task ended it rides on that entry
    /// and takes its time. Returns the reading, if one was taken.
    #[doc(hidden)]
    #[inline]
    pub fn push_routed_reading(
        &mut self,
        run: &RunContext,
        step: u64,
        (from, label, target): (u32, u32, u32),
        now: impl FnOnce() -> Tick,
    ) -> Option<Tick> {
        let Ok(step) = u32::try_from(step) else {
            let kind = EventKind::Routed {
                step,
                from: Arc::clone(run.names.name_or_unknown(from)),
                label: Arc::clone(run.names.label_or_unknown(label)),
                target: Arc::clone(run.names.name_or_unknown(target)),
            };
            let at = now();
            self.push_event(Event::at(run.ids, run.clock.wall_time(at), kind));
            return Some(at);
        };
        let run = self.run_index(run);
        if let Some(Entry::TaskFinished { run: r, node, step: s, route, .. }) = self.storage.entries.last_mut()
            && u32::from(*r) == run
            && (*node, *s, *route) == (from, step, NO_ROUTE)
            && let (Ok(label), Ok(target)) = (u16::try_from(label), u16::try_from(target))
            && [label, target] != NO_ROUTE
        {
            *route = [label, target];
            return None;
        }
        let at = now();
        self.storage.entries.push(Entry::Routed { run, step, from, label, target, at });
        Some(at)
    }

    #[inline(always)]
    fn run_index(&mut self, run: &RunContext) -> u32 {
        if let Some(last) = self.storage.runs.get(self.last_run as usize)
            && last.ids.run_id == run.ids.run_id
        {
            return self.last_run;
        }
        self.add_run(run)
    }

    /// [`run_index`](Self::run_index) of a run other than the last one recorded.
    #[cold]
    #[inline(never)]
    fn add_run(&mut self, run: &RunContext) -> u32 {
        let runs = &mut self.storage.runs;
        let index = match runs.iter().position(|known| known.ids.run_id == run.ids.run_id) {
            Some(index) => index,
            None => {
                runs.push(run.clone());
                self.storage.last_step.push(u32::MAX);
                self.storage.runs.len() - 1
            }
        };
        self.last_run = u32::try_from(index).unwrap_or(u32::MAX);
        self.last_run
    }

    /// The events, built one by one.
    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        self.refs().map(|event| event.to_event())
    }

    /// The events where they lie, in order, without building any: for a sink that encodes
    /// them (a log, an export), which then copies only what it writes. State deltas are
    /// skipped ([`items`](Self::items) has them).
    pub fn refs(&self) -> Refs<'_> {
        Refs { items: self.items() }
    }

    /// The events where they lie and the state deltas, in the order the run recorded them.
    pub fn items(&self) -> Items<'_> {
        Items {
            batch: self,
            entries: self.storage.entries.iter(),
            kept: self.storage.events.iter(),
            deltas: self.storage.deltas.iter(),
            queued: [None, None],
        }
    }

    /// The events, built.
    pub fn into_events(self) -> Vec<Event> {
        let mut events = Vec::with_capacity(self.len() + self.len() / 2);
        self.append_to(&mut events);
        events
    }

    /// Builds the events at the end of `events`: a sink that keeps a buffer of its own
    /// allocates nothing per batch. Events kept whole move there without a copy.
    pub fn append_to(mut self, events: &mut Vec<Event>) {
        events.reserve(self.len() + self.len() / 2);
        let entries = std::mem::take(&mut self.storage.entries);
        let mut kept = std::mem::take(&mut self.storage.events).into_iter();
        for entry in &entries {
            match entry {
                Entry::Event => events.extend(kept.next()),
                Entry::Delta => {}
                entry => events.extend(self.entry_refs(entry).iter().flatten().map(EventRef::to_event)),
            }
        }
    }

    /// The events a compact `entry` stands for, in order (none for a kept event).
    fn entry_refs(&self, entry: &Entry) -> [Option<EventRef<'_>>; 3] {
        let runs = &self.storage.runs;
        let event = match *entry {
            Entry::Event | Entry::Delta => return [None, None, None],
            Entry::StepStarted { run, step, node, at } => {
                let run = &runs[run as usize];
                let (ids, at) = (&run.ids, run.clock.wall_time(at));
                EventRef::StepStarted { run: ids, at, step: u64::from(step), nodes: run.names.lone_or_unknown(node) }
            }
            Entry::TaskFinished { run, attempt, node, step, took, ended, route, opens_step } => {
                let run = &runs[usize::from(run)];
                let started = Tick::from_raw(ended.raw() - u64::from(took));
                let (ids, at, step) = (&run.ids, run.clock.wall_time(ended), u64::from(step));
                let from = run.names.name_or_unknown(node);
                let opened = opens_step.then(|| EventRef::StepStarted {
                    run: ids,
                    at: run.clock.wall_time(started),
                    step,
                    nodes: run.names.lone_or_unknown(node),
                });
                let routed = (route != NO_ROUTE).then(|| {
                    let [label, target] = route;
                    let label = run.names.label_or_unknown(u32::from(label));
                    let target = run.names.name_or_unknown(u32::from(target));
                    EventRef::Routed { run: ids, at, step, from, label, target }
                });
                let duration = started.until(ended);
                let attempt = u32::from(attempt);
                let ended = EventRef::TaskFinished { run: ids, at, step, node: from, attempt, duration };
                return match opened {
                    Some(opened) => [Some(opened), Some(ended), routed],
                    None => [Some(ended), routed, None],
                };
            }
            Entry::Routed { run, step, from, label, target, at } => {
                let run = &runs[run as usize];
                EventRef::Routed {
                    run: &run.ids,
                    at: run.clock.wall_time(at),
                    step: u64::from(step),
                    from: run.names.name_or_unknown(from),
                    label: run.names.label_or_unknown(label),
                    target: run.names.name_or_unknown(target),
                }
            }
        };
        [Some(event), None, None]
    }

    /// The events kept as they are, with their places in the batch, in order.
    pub(crate) fn kept_events(&self) -> impl Iterator<Item = (u32, &Event)> + '_ {
        self.storage.events_at.iter().copied().zip(&self.storage.events)
    }

    /// Per run with compact steps in the batch, where its last one says it stands.
    pub(crate) fn last_steps(&self) -> impl Iterator<Item = LastStep<'_>> + '_ {
        self.storage.runs.iter().zip(&self.storage.last_step).filter_map(|(run, &index)| {
            let (step, node, ended) = match self.storage.entries.get(index as usize)? {
                Entry::StepStarted { step, node, .. } => (u64::from(*step), *node, false),
                Entry::TaskFinished { step, node, .. } => (u64::from(*step), *node, true),
                _ => return None,
            };
            Some(LastStep { index, run: &run.ids, step, nodes: run.names.lone(node)?, ended })
        })
    }
}

/// The events of a batch where they lie ([`EventBatch::refs`]).
#[derive(Debug)]
pub struct Refs<'a> {
    items: Items<'a>,
}

impl<'a> Iterator for Refs<'a> {
    type Item = EventRef<'a>;

    fn next(&mut self) -> Option<EventRef<'a>> {
        loop {
            if let BatchItem::Event(event) = self.items.next()? {
                return Some(event);
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, self.items.size_hint().1)
    }
}

/// One item of a batch ([`EventBatch::items`]): an event where it lies, or a state delta.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum BatchItem<'a> {
    /// An event.
    Event(EventRef<'a>),
    /// A state delta (see [`Interest::deltas`]).
    Delta(&'a StateDelta),
}

/// The events and state deltas of a batch, in order ([`EventBatch::items`]).
#[derive(Debug)]
pub struct Items<'a> {
    batch: &'a EventBatch,
    entries: std::slice::Iter<'a, Entry>,
    /// Each kept-event entry was pushed with its event, in order.
    kept: std::slice::Iter<'a, Event>,
    /// Each delta entry was pushed with its delta, in order.
    deltas: std::slice::Iter<'a, StateDelta>,
    /// The events the compact entry returned last stands for after the one returned (its
    /// task's end, the routing decision that rode on it), in order.
    queued: [Option<EventRef<'a>>; 2],
}

impl<'a> Iterator for Items<'a> {
    type Item = BatchItem<'a>;

    fn next(&mut self) -> Option<BatchItem<'a>> {
        if let Some(queued) = self.queued[0].take() {
            self.queued.swap(0, 1);
            return Some(BatchItem::Event(queued));
        }
        loop {
            match self.entries.next()? {
                Entry::Event => match self.kept.next() {
                    Some(event) => return Some(BatchItem::Event(EventRef::Whole(event))),
                    None => continue,
                },
                Entry::Delta => match self.deltas.next() {
                    Some(delta) => return Some(BatchItem::Delta(delta)),
                    None => continue,
                },
                entry => {
                    let [event, then, last] = self.batch.entry_refs(entry);
                    self.queued = [then, last];
                    return event.map(BatchItem::Event);
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.entries.len();
        let queued = self.queued.iter().flatten().count();
        (left + queued, Some(3 * left + queued))
    }
}

/// Where a run's last compact step in a batch says it stands (see
/// [`EventBatch::last_steps`]): its place in the batch, the run, the step, its one node,
/// and whether the step's task ended there.
pub(crate) struct LastStep<'a> {
    pub(crate) index: u32,
    pub(crate) run: &'a RunIds,
    pub(crate) step: u64,
    pub(crate) nodes: &'a Arc<[Arc<str>]>,
    pub(crate) ended: bool,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::RunId;

    fn context(names: &[&str]) -> RunContext {
        let labels = names.iter().map(|_| vec![vec![Arc::from("next"), Arc::from("done")]]);
        let names = Arc::new(NodeNames::new(names.iter().map(|name| Arc::from(*name))).with_labels(labels));
        RunContext::new(RunIds::root(RunId::new()), RunClock::new(), names)
    }

    #[test]
    fn entries_become_the_events_they_stand_for_in_order() {
        let run = context(&["a", "b"]);
        let (t0, t1) = (Tick::now(), Tick::now());
        let mut batch = EventBatch::new();
        batch.push_event(Event::now(
            *run.ids(),
            EventKind::RunStarted { graph: "g".into(), thread_id: None, tags: Vec::new() },
        ));
        batch.push_step_started(&run, 1, 0, t0);
        let next = run.names().label_index(0, 0, 0).unwrap();
        assert_eq!(run.names().label_index(1, 0, 1).map(|index| &**run.names().label(index).unwrap()), Some("done"));
        assert_eq!(run.names().label_index(1, 1, 0), None, "node `b` has one edge");
        batch.push_routed(&run, 1, (0, next, 1), t1);
        batch.push_task_finished(&run, (2, 1, 2), (t0, t1), Some("boom".to_owned()));
        let built = batch.events().collect::<Vec<_>>();
        assert_eq!(built, batch.into_events());
        let kinds: Vec<EventKind> = built.iter().map(|event| event.kind.clone()).collect();
        assert_eq!(
            kinds[1..],
            [
                EventKind::SuperstepStarted { step: 1, nodes: Arc::from([Arc::from("a")]) },
                EventKind::Routed { step: 1, from: "a".into(), label: "next".into(), target: "b".into() },
                EventKind::TaskFinished {
                    step: 2,
                    node: "b".into(),
                    attempt: 2,
                    duration: t0.until(t1),
                    error: Some("boom".to_owned())
                },
            ]
        );
        assert!(built.iter().all(|event| event.run == *run.ids()));
        assert!(built[1].at <= built[2].at, "times follow the readings");
        assert!(t0.until(t1) < Duration::from_secs(60));
    }

    #[test]
    fn deltas_keep_their_place_among_the_events_and_are_no_events() {
        let run = context(&["a"]);
        let t = Tick::now();
        let mut batch = EventBatch::new();
        batch.push_step_started(&run, 1, 0, t);
        batch.push_task_finished(&run, (1, 0, 1), (t, t), None);
        let delta = StateDelta::new(*run.ids(), SystemTime::now(), 1, crate::DeltaKind::Update, Arc::new(vec![1, 2]));
        batch.push_delta(delta);
        batch.push_event(Event::now(*run.ids(), EventKind::SuperstepFinished { step: 1, duration: Duration::ZERO }));
        let order: Vec<String> = batch
            .items()
            .map(|item| match item {
                BatchItem::Event(event) => format!("{:?}", std::mem::discriminant(&event.to_event().kind)),
                BatchItem::Delta(delta) => format!("delta {} {}", delta.step, delta.to_json().unwrap()),
            })
            .collect();
        assert_eq!(order.len(), 4);
        assert_eq!(order[2], "delta 1 [1,2]", "{order:?}");
        assert_eq!(batch.refs().count(), 3, "refs skip the delta");
        assert_eq!(batch.deltas().count(), 1);
        let events = batch.into_events();
        assert_eq!(events.len(), 3);
        assert!(matches!(events[2].kind, EventKind::SuperstepFinished { step: 1, .. }), "{events:?}");
    }

    #[test]
    fn entries_stay_small_so_recording_one_copies_little() {
        // Half a cache line: entries cross from the run's core to the writer's.
        assert!(std::mem::size_of::<Entry>() <= 32, "{} bytes", std::mem::size_of::<Entry>());
    }

    #[test]
    fn ends_that_do_not_fit_an_entry_are_kept_as_events_after_their_start() {
        let run = context(&["a"]);
        let start = Tick::from_raw(1_000);
        let long = Tick::from_raw(1_000 + u64::from(u32::MAX) + 1);
        let mut batch = EventBatch::new();
        batch.push_step_started(&run, 1, 0, start);
        batch.push_task_finished(&run, (1, 0, 1), (start, long), None);
        batch.push_step_started(&run, u64::from(u32::MAX) + 7, 0, long);
        batch.push_task_finished(&run, (u64::from(u32::MAX) + 7, 0, 1), (long, long), None);
        let events = batch.into_events();
        let kinds: Vec<String> = events.iter().map(|event| format!("{:?}", event.kind)).collect();
        assert_eq!(events.len(), 4, "{kinds:?}");
        assert!(matches!(&events[0].kind, EventKind::SuperstepStarted { step: 1, .. }));
        assert!(
            matches!(&events[1].kind, EventKind::TaskFinished { step: 1, duration, .. } if *duration == start.until(long))
        );
        assert!(matches!(events[2].kind, EventKind::SuperstepStarted { step, .. } if step == u64::from(u32::MAX) + 7));
        assert!(matches!(events[3].kind, EventKind::TaskFinished { step, .. } if step == u64::from(u32::MAX) + 7));
    }

    #[test]
    fn a_routing_decision_right_after_its_nodes_task_ends_rides_on_that_entry() {
        let run = context(&["a", "b"]);
        let (t0, t1) = (Tick::now(), Tick::now());
        let next = run.names().label_index(0, 0, 0).unwrap();
        let mut batch = EventBatch::new();
        batch.push_task_finished(&run, (1, 0, 1), (t0, t1), None);
        let read = batch.push_routed_reading(&run, 1, (0, next, 1), || panic!("a riding decision reads no clock"));
        assert_eq!((batch.len(), read), (1, None), "one entry for the end and the decision");
        // Not right after the end of its own node's task in the same step: entries of its own.
        assert_eq!(batch.push_routed_reading(&run, 1, (0, next, 0), || t1), Some(t1));
        batch.push_task_finished(&run, (2, 1, 1), (t0, t1), None);
        batch.push_routed(&run, 2, (0, next, 1), t1);
        batch.push_routed(&run, 3, (1, next, 0), t1);
        assert_eq!(batch.len(), 5);
        let described: Vec<String> = batch
            .into_events()
            .iter()
            .map(|event| match &event.kind {
                EventKind::TaskFinished { step, node, .. } => format!("end {step} {node}"),
                EventKind::Routed { step, from, label, target } => format!("route {step} {from} {label} {target}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            described,
            ["end 1 a", "route 1 a next b", "route 1 a next a", "end 2 b", "route 2 a next b", "route 3 b next a"]
        );
    }

    #[test]
    fn an_end_pushed_with_its_routing_decision_is_one_entry_unless_it_is_kept_as_an_event() {
        let run = context(&["a", "b"]);
        let (t0, t1) = (Tick::now(), Tick::now());
        let next = run.names().label_index(0, 0, 0).unwrap();
        let mut batch = EventBatch::new();
        batch.push_end_routed(&run, (1, 0), (t0, t1), (0, next, 1), true);
        assert_eq!(batch.len(), 1, "start, end and decision in one entry");
        batch.push_end_routed(&run, (2, 1), (t0, t1), (1, next, 0), false);
        assert_eq!(batch.len(), 2);
        // An end too long for an entry is an event; its decision then gets an entry of its own.
        let long = Tick::from_raw(t1.raw() + u64::from(u32::MAX) + 1);
        batch.push_end_routed(&run, (3, 0), (t1, long), (0, next, 1), false);
        assert_eq!(batch.len(), 4);
        let described: Vec<String> = batch
            .into_events()
            .iter()
            .map(|event| match &event.kind {
                EventKind::SuperstepStarted { step, nodes } => format!("step {step} {}", nodes[0]),
                EventKind::TaskFinished { step, node, attempt, error, .. } => {
                    format!("end {step} {node} #{attempt} {error:?}")
                }
                EventKind::Routed { step, from, label, target } => format!("route {step} {from} {label} {target}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            described,
            [
                "step 1 a",
                "end 1 a #1 None",
                "route 1 a next b",
                "end 2 b #1 None",
                "route 2 b next a",
                "end 3 a #1 None",
                "route 3 a next b",
            ]
        );
    }

    #[test]
    fn every_sink_sees_a_lone_steps_start_before_its_tasks_end() {
        let run = context(&["a", "b"]);
        let t = Tick::now();
        let mut batch = EventBatch::new();
        batch.push_step_started(&run, 1, 0, t);
        batch.push_task_finished(&run, (1, 0, 1), (t, t), None);
        assert_eq!(batch.len(), 2, "a batch folds nothing: that is a storage detail of whoever stores it");
        let kinds: Vec<EventKind> = batch.into_events().into_iter().map(|event| event.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::SuperstepStarted { step: 1, nodes: Arc::from([Arc::from("a")]) },
                EventKind::TaskFinished {
                    step: 1,
                    node: "a".into(),
                    attempt: 1,
                    duration: Duration::ZERO,
                    error: None
                },
            ]
        );
    }

    #[test]
    fn a_lone_steps_start_and_first_attempts_end_share_one_entry_and_read_as_both_events() {
        let run = context(&["a", "b"]);
        let (t0, t1) = (Tick::from_raw(1_000), Tick::from_raw(5_000));
        let next = run.names().label_index(0, 0, 0).unwrap();
        let mut batch = EventBatch::new();
        batch.push_lone_step(&run, (1, 0, 1), (t0, t1), None);
        batch.push_routed(&run, 1, (0, next, 1), t1);
        assert_eq!(batch.len(), 1, "start, end and decision in one entry");
        // A retried attempt, a failure, and a step number too large for an entry: two entries
        // or events, in the same order.
        batch.push_lone_step(&run, (2, 1, 2), (t0, t1), None);
        batch.push_lone_step(&run, (3, 0, 1), (t0, t1), Some("boom".to_owned()));
        let huge = u64::from(u32::MAX) + 1;
        batch.push_lone_step(&run, (huge, 1, 1), (t0, t1), None);
        assert_eq!(batch.len(), 7);
        let refs: Vec<Event> = batch.refs().map(|event| event.to_event()).collect();
        let described: Vec<String> = batch
            .into_events()
            .iter()
            .map(|event| match &event.kind {
                EventKind::SuperstepStarted { step, nodes } => format!("start {step} {}", nodes.join(",")),
                EventKind::TaskFinished { step, node, attempt, error, .. } => {
                    format!("end {step} {node} {attempt} {error:?}")
                }
                EventKind::Routed { step, from, target, .. } => format!("route {step} {from} {target}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            described,
            [
                "start 1 a",
                "end 1 a 1 None",
                "route 1 a b",
                "start 2 b",
                "end 2 b 2 None",
                "start 3 a",
                "end 3 a 1 Some(\"boom\")",
                &format!("start {huge} b"),
                &format!("end {huge} b 1 None"),
            ]
        );
        assert_eq!(refs.len(), described.len(), "refs read the same events");
        let (start, end) = (&refs[0], &refs[1]);
        assert_eq!(start.at, run.clock().wall_time(t0), "the step starts when its task does");
        assert_eq!(end.at, run.clock().wall_time(t1));
        assert!(matches!(end.kind, EventKind::TaskFinished { duration, .. } if duration == t0.until(t1)));
    }

    #[test]
    fn refs_read_every_event_where_it_lies_as_the_built_events_say() {
        let run = context(&["a", "b"]);
        let (t0, t1) = (Tick::now(), Tick::now());
        let next = run.names().label_index(0, 0, 0).unwrap();
        let mut batch = EventBatch::new();
        batch.push_event(Event::now(*run.ids(), EventKind::TaskStarted { step: 1, node: "a".into(), attempt: 1 }));
        batch.push_step_started(&run, 1, 0, t0);
        batch.push_task_finished(&run, (1, 0, 1), (t0, t1), None);
        batch.push_routed(&run, 1, (0, next, 1), t1);
        batch.push_routed(&run, 2, (1, next, 9), t1);
        let refs: Vec<EventRef<'_>> = batch.refs().collect();
        assert!(matches!(refs[0], EventRef::Whole(_)));
        assert!(
            matches!(refs[3], EventRef::Routed { target, .. } if &**target == "b"),
            "the riding decision follows its end"
        );
        assert!(matches!(refs[4], EventRef::Routed { target, .. } if &**target == "?"), "an unknown node reads as `?`");
        assert_eq!(refs.iter().map(EventRef::to_event).collect::<Vec<_>>(), batch.events().collect::<Vec<_>>());
        let only = |field: fn(&mut Interest)| {
            let mut interest = Interest::NONE;
            field(&mut interest);
            interest
        };
        let interests = [
            Interest::ALL,
            Interest::NONE,
            only(|i| i.steps_started = true),
            only(|i| i.tasks_started = true),
            only(|i| i.tasks_finished = true),
            only(|i| i.routing = true),
        ];
        for interest in interests {
            for event in &refs {
                assert_eq!(interest.covers_ref(event), interest.covers(&event.to_event().kind), "{event:?}");
            }
        }
    }
}
