//! Spans from events: a pure state machine, fed a run's events in order, that hands back each
//! span as it ends. It does no I/O and reads no clock: every time comes from the events.
//!
//! A span is built when it ends, from the times its events carry (a task's end carries its
//! duration, so its start too); only the ids of spans still open (a run, its current
//! supersteps) are kept, so that the spans ending inside them can name their parent.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashflow_telemetry::__private::RunIdMap;
use dashflow_telemetry::{Event, EventKind, EventRef, RunId, RunOutcome};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::parent::trace_parent_from_tags;

/// Span names: the run, each superstep, each attempt of a task.
pub(crate) const RUN_SPAN: &str = "dashflow.run";
pub(crate) const SUPERSTEP_SPAN: &str = "dashflow.superstep";
pub(crate) const TASK_SPAN: &str = "dashflow.task";

/// Attribute keys. OpenTelemetry's semantic conventions have names for errors (`error.type`,
/// the `exception` event and its `exception.message`); the rest are DashFlow's own, under
/// `dashflow.`.
pub mod attributes {
    /// The graph's name (run spans).
    pub const GRAPH: &str = "dashflow.graph.name";
    /// The thread the run belongs to (run spans; absent for runs without a thread).
    pub const THREAD_ID: &str = "dashflow.thread.id";
    /// The run's id (every span).
    pub const RUN_ID: &str = "dashflow.run.id";
    /// The run that started this one, for a subgraph run (run spans).
    pub const PARENT_RUN_ID: &str = "dashflow.run.parent_id";
    /// The outermost run of the stack (run spans).
    pub const ROOT_RUN_ID: &str = "dashflow.run.root_id";
    /// 0 for a top-level run, deeper for subgraph runs (run spans).
    pub const DEPTH: &str = "dashflow.run.depth";
    /// The run's tags (run spans, when it has any).
    pub const TAGS: &str = "dashflow.run.tags";
    /// How the run ended: `completed`, `failed`, `interrupted`, or `unfinished` when the
    /// exporter stopped first (run spans).
    pub const OUTCOME: &str = "dashflow.run.outcome";
    /// Supersteps the run executed (run spans).
    pub const STEPS: &str = "dashflow.run.steps";
    /// The superstep, 1-based (superstep and task spans).
    pub const SUPERSTEP: &str = "dashflow.superstep";
    /// The nodes a superstep runs, in frontier order (superstep spans).
    pub const NODES: &str = "dashflow.superstep.nodes";
    /// The node a task runs (task spans).
    pub const NODE: &str = "dashflow.node";
    /// The attempt, 1 for the first (task spans).
    pub const ATTEMPT: &str = "dashflow.task.attempt";
    /// How the attempt ended: `ok` or `error` (task spans).
    pub const TASK_OUTCOME: &str = "dashflow.task.outcome";
    /// OpenTelemetry's `error.type`, on spans that failed: `_OTHER`, the convention's value
    /// when no class of error is known (the message is in the status and the `exception`
    /// event).
    pub const ERROR_TYPE: &str = "error.type";
}

/// Names of the span events the exporter adds.
pub mod events {
    /// A failure (OpenTelemetry's convention), with `exception.message`.
    pub const EXCEPTION: &str = "exception";
    /// The failure's message, on an `exception` event.
    pub const EXCEPTION_MESSAGE: &str = "exception.message";
    /// On a superstep: a conditional edge chose `dashflow.route.label`, going from
    /// `dashflow.route.from` to `dashflow.route.target`.
    pub const ROUTED: &str = "dashflow.routed";
    /// On a run: a checkpoint was committed (`dashflow.checkpoint.id`, `dashflow.superstep`).
    pub const CHECKPOINT: &str = "dashflow.checkpoint";
    /// On a run: it paused at `dashflow.node` (`dashflow.interrupt.reason`).
    pub const INTERRUPTED: &str = "dashflow.interrupted";
}

/// The `error.type` value of a failure with no known class.
const OTHER_ERROR: &str = "_OTHER";

struct OpenRun {
    context: SpanContext,
    parent: SpanId,
    parent_is_remote: bool,
    start: SystemTime,
    /// The run's id as an attribute value, written once: every span of the run carries it.
    id: Value,
    attributes: Vec<KeyValue>,
    events: Vec<opentelemetry::trace::Event>,
    /// Open supersteps, oldest first: the one running, and those a failed or paused step
    /// left (the run's end closes them).
    steps: Vec<OpenStep>,
    /// The step whose tasks run now: where a subgraph run started by one of them hangs.
    current_step: Option<u64>,
    /// An attempt that failed in a step, for the step's status when the run ends before it.
    failed_step: Option<(u64, Arc<str>)>,
    /// When the maker last heard of it, in events taken: which runs to end first when too
    /// many are open.
    last_heard: u64,
}

struct OpenStep {
    step: u64,
    span: SpanId,
    start: SystemTime,
    nodes: Arc<[Arc<str>]>,
    events: Vec<opentelemetry::trace::Event>,
}

/// The end of one task attempt, as `TaskFinished` reports it.
struct TaskEnd<'a> {
    step: u64,
    node: &'a Arc<str>,
    attempt: u32,
    duration: Duration,
    error: Option<&'a str>,
}

type OpenRuns = RunIdMap<OpenRun>;

/// Turns events into finished spans, run by run.
pub(crate) struct SpanMaker {
    runs: OpenRuns,
    scope: InstrumentationScope,
    /// Events taken so far: the clock of `OpenRun::last_heard`.
    heard: u64,
    /// Runs kept open at most (see [`SpanMaker::MAX_OPEN_RUNS`]).
    max_open: usize,
}

impl SpanMaker {
    /// Runs kept open at once. A run's span ends with its `RunFinished`; a run that never
    /// sends one (its future was dropped) would be kept for ever, so past this many the
    /// quarter heard from least recently are ended `unfinished` and exported (their later
    /// events are ignored).
    pub(crate) const MAX_OPEN_RUNS: usize = 16_384;

    pub(crate) fn new() -> Self {
        Self::with_max_open(Self::MAX_OPEN_RUNS)
    }

    pub(crate) fn with_max_open(max_open: usize) -> Self {
        let scope = InstrumentationScope::builder("dashflow").with_version(env!("CARGO_PKG_VERSION")).build();
        Self { runs: OpenRuns::default(), scope, heard: 0, max_open: max_open.max(1) }
    }

    /// Runs started and not yet ended.
    #[cfg(test)]
    pub(crate) fn open_runs(&self) -> usize {
        self.runs.len()
    }

    /// Takes one event; pushes the spans it ends onto `out`.
    #[cfg(test)]
    pub(crate) fn push_event(&mut self, event: &Event, out: &mut Vec<SpanData>) {
        self.push(&EventRef::Whole(event), out);
    }

    /// Takes one event where it lies in its batch (the common kinds are read without being
    /// built); pushes the spans it ends onto `out`.
    pub(crate) fn push(&mut self, event: &EventRef<'_>, out: &mut Vec<SpanData>) {
        self.heard += 1;
        match *event {
            EventRef::Whole(event) => self.push_whole(event, out),
            EventRef::StepStarted { run, at, step, nodes } => self.step_started(run.run_id, at, step, nodes, out),
            EventRef::TaskFinished { run, at, step, node, attempt, duration } => {
                self.task_finished(run.run_id, at, &TaskEnd { step, node, attempt, duration, error: None }, out);
            }
            EventRef::Routed { run, at, step, from, label, target } => {
                self.routed(run.run_id, at, step, [from, label, target]);
            }
            _ => {}
        }
    }

    fn push_whole(&mut self, event: &Event, out: &mut Vec<SpanData>) {
        let run_id = event.run.run_id;
        match &event.kind {
            EventKind::RunStarted { graph, thread_id, tags } => {
                if self.runs.len() >= self.max_open {
                    self.finish_least_recent(event.at, out);
                }
                self.start_run(event, graph, thread_id.as_deref(), tags);
            }
            EventKind::SuperstepStarted { step, nodes } => self.step_started(run_id, event.at, *step, nodes, out),
            EventKind::TaskFinished { step, node, attempt, duration, error } => {
                let task =
                    TaskEnd { step: *step, node, attempt: *attempt, duration: *duration, error: error.as_deref() };
                self.task_finished(run_id, event.at, &task, out);
            }
            EventKind::Routed { step, from, label, target } => {
                self.routed(run_id, event.at, *step, [from, label, target])
            }
            EventKind::CheckpointCommitted { step, checkpoint_id, snapshot, bytes } => {
                let Some(run) = self.heard_from(run_id) else { return };
                run.events.push(opentelemetry::trace::Event::new(
                    events::CHECKPOINT,
                    event.at,
                    vec![
                        KeyValue::new("dashflow.checkpoint.id", checkpoint_id.to_string()),
                        KeyValue::new(attributes::SUPERSTEP, as_i64(*step)),
                        KeyValue::new("dashflow.checkpoint.snapshot", *snapshot),
                        KeyValue::new("dashflow.checkpoint.bytes", as_i64(*bytes)),
                    ],
                    0,
                ));
            }
            EventKind::Interrupted { step, node, reason, .. } => {
                let Some(run) = self.heard_from(run_id) else { return };
                run.events.push(opentelemetry::trace::Event::new(
                    events::INTERRUPTED,
                    event.at,
                    vec![
                        KeyValue::new(attributes::NODE, Arc::clone(node)),
                        KeyValue::new(attributes::SUPERSTEP, as_i64(*step)),
                        KeyValue::new("dashflow.interrupt.reason", reason.to_string()),
                    ],
                    0,
                ));
            }
            EventKind::RunFinished { outcome, steps, error, .. } => {
                let Some(run) = self.runs.remove(&run_id) else { return };
                let ending = Ending::Finished { outcome: *outcome, steps: *steps, error };
                self.finish_run(run, event.at, ending, out);
            }
            _ => {}
        }
    }

    /// The open run `run_id`, marked heard from now.
    fn heard_from(&mut self, run_id: RunId) -> Option<&mut OpenRun> {
        let run = self.runs.get_mut(&run_id)?;
        run.last_heard = self.heard;
        Some(run)
    }

    /// Step `step` of the run started at `at` with the tasks of `nodes`. Steps of a run follow
    /// one another, so its start is the end of the one before (which then reported its
    /// routing decisions and its checkpoint): the exporter needs no event of its own for a
    /// step's end, which the run would have to record at every step.
    fn step_started(
        &mut self,
        run_id: RunId,
        at: SystemTime,
        step: u64,
        nodes: &Arc<[Arc<str>]>,
        out: &mut Vec<SpanData>,
    ) {
        let scope = &self.scope;
        let Some(run) = self.runs.get_mut(&run_id) else { return };
        run.last_heard = self.heard;
        run.end_steps_before(u64::MAX, at, scope, out);
        run.current_step = Some(step);
        run.steps.push(OpenStep { step, span: new_span_id(), start: at, nodes: Arc::clone(nodes), events: Vec::new() });
    }

    fn task_finished(&mut self, run_id: RunId, at: SystemTime, task: &TaskEnd<'_>, out: &mut Vec<SpanData>) {
        let scope = &self.scope;
        let Some(run) = self.runs.get_mut(&run_id) else { return };
        run.last_heard = self.heard;
        let start = at.checked_sub(task.duration).unwrap_or(at);
        let parent = run.step_or_open(task.step, start, task.node, scope, out);
        if let Some(error) = task.error {
            run.failed_step = Some((task.step, Arc::from(error)));
        }
        if !run.context.is_sampled() {
            return;
        }
        let mut attributes = vec![
            KeyValue::new(attributes::RUN_ID, run.id.clone()),
            KeyValue::new(attributes::SUPERSTEP, as_i64(task.step)),
            KeyValue::new(attributes::NODE, Arc::clone(task.node)),
            KeyValue::new(attributes::ATTEMPT, i64::from(task.attempt)),
            KeyValue::new(attributes::TASK_OUTCOME, if task.error.is_some() { "error" } else { "ok" }),
        ];
        let (status, span_events) = match task.error {
            Some(error) => {
                attributes.push(KeyValue::new(attributes::ERROR_TYPE, OTHER_ERROR));
                (Status::error(error.to_owned()), vec![exception(at, error)])
            }
            None => (Status::Unset, Vec::new()),
        };
        let context = child_context(&run.context);
        out.push(span(context, parent, false, TASK_SPAN, (start, at), attributes, span_events, status, scope.clone()));
    }

    fn routed(&mut self, run_id: RunId, at: SystemTime, step: u64, [from, label, target]: [&Arc<str>; 3]) {
        let Some(run) = self.heard_from(run_id) else { return };
        let routed = opentelemetry::trace::Event::new(
            events::ROUTED,
            at,
            vec![
                KeyValue::new("dashflow.route.from", Arc::clone(from)),
                KeyValue::new("dashflow.route.label", Arc::clone(label)),
                KeyValue::new("dashflow.route.target", Arc::clone(target)),
            ],
            0,
        );
        match run.steps.iter_mut().find(|open| open.step == step) {
            Some(open) => open.events.push(routed),
            None => run.events.push(routed),
        }
    }

    /// Ends the quarter of the open runs heard from least recently at `at`, marked
    /// `unfinished` (see [`SpanMaker::MAX_OPEN_RUNS`]).
    fn finish_least_recent(&mut self, at: SystemTime, out: &mut Vec<SpanData>) {
        let mut heard: Vec<u64> = self.runs.values().map(|run| run.last_heard).collect();
        let count = (heard.len() / 4).max(1).min(heard.len());
        let (_, &mut threshold, _) = heard.select_nth_unstable(count - 1);
        let ended: Vec<RunId> =
            self.runs.iter().filter(|(_, run)| run.last_heard <= threshold).map(|(id, _)| *id).collect();
        for run_id in ended {
            if let Some(run) = self.runs.remove(&run_id) {
                self.finish_run(run, at.max(SystemTime::UNIX_EPOCH), Ending::Unfinished, out);
            }
        }
    }

    /// Ends every run still open at `at`, marked `unfinished` (the exporter is stopping).
    pub(crate) fn finish_all(&mut self, at: SystemTime, out: &mut Vec<SpanData>) {
        let runs: Vec<OpenRun> = self.runs.drain().map(|(_, run)| run).collect();
        for run in runs {
            self.finish_run(run, at.max(SystemTime::UNIX_EPOCH), Ending::Unfinished, out);
        }
    }

    fn start_run(&mut self, event: &Event, graph: &Arc<str>, thread_id: Option<&str>, tags: &[Arc<str>]) {
        let ids = event.run;
        // A subgraph run hangs under the step of its parent that runs it, in its trace; a
        // top-level run joins the caller's trace when its tags carry one, or starts a trace.
        let parent_run = ids.parent_run_id.and_then(|parent| self.runs.get(&parent));
        let (trace_id, flags, parent, parent_is_remote) = match parent_run {
            Some(parent) => {
                let under = parent
                    .current_step
                    .and_then(|step| parent.steps.iter().find(|open| open.step == step))
                    .map(|step| step.span);
                (
                    parent.context.trace_id(),
                    parent.context.trace_flags(),
                    under.unwrap_or(parent.context.span_id()),
                    false,
                )
            }
            None => match trace_parent_from_tags(tags) {
                Some(remote) => (remote.trace_id(), remote.trace_flags(), remote.span_id(), true),
                None => (new_trace_id(), TraceFlags::SAMPLED, SpanId::INVALID, false),
            },
        };
        let context = SpanContext::new(trace_id, new_span_id(), flags, false, TraceState::default());
        let id = Value::from(Arc::<str>::from(ids.run_id.to_string()));
        let mut attributes = vec![
            KeyValue::new(attributes::GRAPH, Arc::clone(graph)),
            KeyValue::new(attributes::RUN_ID, id.clone()),
            KeyValue::new(attributes::ROOT_RUN_ID, ids.root_run_id.to_string()),
            KeyValue::new(attributes::DEPTH, i64::from(ids.depth)),
        ];
        if let Some(parent) = ids.parent_run_id {
            attributes.push(KeyValue::new(attributes::PARENT_RUN_ID, parent.to_string()));
        }
        if let Some(thread_id) = thread_id {
            attributes.push(KeyValue::new(attributes::THREAD_ID, thread_id.to_owned()));
        }
        if !tags.is_empty() {
            let tags: Vec<opentelemetry::StringValue> = tags.iter().map(|tag| Arc::clone(tag).into()).collect();
            attributes.push(KeyValue::new(attributes::TAGS, Value::Array(tags.into())));
        }
        self.runs.insert(
            ids.run_id,
            OpenRun {
                context,
                parent,
                parent_is_remote,
                start: event.at,
                id,
                attributes,
                events: Vec::new(),
                steps: Vec::new(),
                current_step: None,
                failed_step: None,
                last_heard: self.heard,
            },
        );
    }

    fn finish_run(&self, mut run: OpenRun, at: SystemTime, ending: Ending<'_>, out: &mut Vec<SpanData>) {
        if !run.context.is_sampled() {
            return;
        }
        // Steps still open (the last one, a failed or paused one, those of a stopped
        // exporter) end with the run; the one whose task failed carries the failure.
        let mut steps = std::mem::take(&mut run.steps);
        steps.sort_by_key(|open| open.step);
        for open in steps {
            let status = match &run.failed_step {
                Some((failed, error))
                    if *failed == open.step
                        && matches!(ending, Ending::Finished { outcome: RunOutcome::Failed, .. }) =>
                {
                    Status::error(error.to_string())
                }
                _ => Status::Unset,
            };
            let start = open.start;
            out.push(run.step_span(open, (start, at.max(start)), status, self.scope.clone()));
        }
        let mut attributes = std::mem::take(&mut run.attributes);
        let mut span_events = std::mem::take(&mut run.events);
        let status = match ending {
            Ending::Finished { outcome, steps, error } => {
                attributes.push(KeyValue::new(attributes::OUTCOME, outcome.to_string()));
                attributes.push(KeyValue::new(attributes::STEPS, as_i64(steps)));
                match (outcome, error) {
                    (RunOutcome::Failed, error) => {
                        let message = error.as_deref().unwrap_or("the run failed");
                        attributes.push(KeyValue::new(attributes::ERROR_TYPE, OTHER_ERROR));
                        span_events.push(exception(at, message));
                        Status::error(message.to_owned())
                    }
                    _ => Status::Ok,
                }
            }
            Ending::Unfinished => {
                attributes.push(KeyValue::new(attributes::OUTCOME, "unfinished"));
                Status::Unset
            }
        };
        out.push(span(
            run.context.clone(),
            run.parent,
            run.parent_is_remote,
            RUN_SPAN,
            (run.start, at.max(run.start)),
            attributes,
            span_events,
            status,
            self.scope.clone(),
        ));
    }
}

enum Ending<'a> {
    Finished { outcome: RunOutcome, steps: u64, error: &'a Option<String> },
    Unfinished,
}

impl OpenRun {
    /// Ends the open steps numbered below `step` at `at` (their successor started), exporting
    /// them when the run is sampled.
    fn end_steps_before(&mut self, step: u64, at: SystemTime, scope: &InstrumentationScope, out: &mut Vec<SpanData>) {
        let mut index = 0;
        while index < self.steps.len() {
            if self.steps[index].step >= step {
                index += 1;
                continue;
            }
            let open = self.steps.remove(index);
            if self.context.is_sampled() {
                let start = open.start;
                out.push(self.step_span(open, (start, at.max(start)), Status::Unset, scope.clone()));
            }
        }
    }

    /// The span of step `step`, opened now when its start was not seen (a sink that missed
    /// it, or an event dropped on a full queue); that start ends the steps before it.
    fn step_or_open(
        &mut self,
        step: u64,
        start: SystemTime,
        node: &Arc<str>,
        scope: &InstrumentationScope,
        out: &mut Vec<SpanData>,
    ) -> SpanId {
        if let Some(open) = self.steps.iter().find(|open| open.step == step) {
            return open.span;
        }
        self.end_steps_before(step, start, scope, out);
        let span = new_span_id();
        let nodes = Arc::from([Arc::clone(node)]);
        self.steps.push(OpenStep { step, span, start, nodes, events: Vec::new() });
        span
    }

    fn step_span(
        &self,
        open: OpenStep,
        (start, end): (SystemTime, SystemTime),
        status: Status,
        scope: InstrumentationScope,
    ) -> SpanData {
        let nodes: Vec<opentelemetry::StringValue> = open.nodes.iter().map(|node| Arc::clone(node).into()).collect();
        let attributes = vec![
            KeyValue::new(attributes::RUN_ID, self.id.clone()),
            KeyValue::new(attributes::SUPERSTEP, as_i64(open.step)),
            KeyValue::new(attributes::NODES, Value::Array(nodes.into())),
        ];
        let context = SpanContext::new(
            self.context.trace_id(),
            open.span,
            self.context.trace_flags(),
            false,
            TraceState::default(),
        );
        span(
            context,
            self.context.span_id(),
            false,
            SUPERSTEP_SPAN,
            (start, end),
            attributes,
            open.events,
            status,
            scope,
        )
    }
}

#[allow(clippy::too_many_arguments, reason = "a private constructor of the SDK's plain struct")]
fn span(
    context: SpanContext,
    parent: SpanId,
    parent_is_remote: bool,
    name: &'static str,
    (start, end): (SystemTime, SystemTime),
    attributes: Vec<KeyValue>,
    events: Vec<opentelemetry::trace::Event>,
    status: Status,
    scope: InstrumentationScope,
) -> SpanData {
    let mut span_events = SpanEvents::default();
    span_events.events = events;
    SpanData {
        span_context: context,
        parent_span_id: parent,
        parent_span_is_remote: parent_is_remote,
        span_kind: SpanKind::Internal,
        name: Cow::Borrowed(name),
        start_time: start,
        end_time: end,
        attributes,
        dropped_attributes_count: 0,
        events: span_events,
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope,
    }
}

fn exception(at: SystemTime, message: &str) -> opentelemetry::trace::Event {
    opentelemetry::trace::Event::new(
        events::EXCEPTION,
        at,
        vec![KeyValue::new(events::EXCEPTION_MESSAGE, message.to_owned())],
        0,
    )
}

fn child_context(parent: &SpanContext) -> SpanContext {
    SpanContext::new(parent.trace_id(), new_span_id(), parent.trace_flags(), false, TraceState::default())
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A random, valid (non-zero) span id.
fn new_span_id() -> SpanId {
    SpanId::from(fastrand::u64(1..))
}

/// A random, valid (non-zero) trace id.
fn new_trace_id() -> TraceId {
    TraceId::from(fastrand::u128(1..))
}

#[cfg(test)]
mod tests;
