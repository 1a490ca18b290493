//! What `compile()` attaches by default: observability that is on unless turned off.

use dashflow_executor::{CompiledGraph, Error};
use dashflow_graph::{GraphState, StateGraph};
use std::sync::{Arc, OnceLock};

use dashflow_telemetry::{Event, EventCallback, EventKind, Interest, LiveRuns};
use dashflow_wal::EventStore;

/// `compile()` for the golden path: validates the graph (see
/// [`dashflow_executor::CompileExt`]) and attaches the default observers, so every run is
/// visible without any setup:
///
/// - [`LiveRuns::global`]: the runs in progress in this process, with their current step and
///   running nodes (`dashflow::live_runs()`).
/// - The process's write-ahead log ([`EventStore::global`]): every event, written by a
///   background thread under `$DASHFLOW_HOME/wal` (default `~/.dashflow/wal`), which the
///   `dashflow` CLI reads. Call [`flush_observers`] before the process exits.
///
/// - Execution traces: one JSON file per finished run under `./.dashflow/traces/` (or
///   `$DASHFLOW_TRACE_DIR/.dashflow/traces/`) and in the WAL, written by the same background
///   thread.
///
/// `DASHFLOW_WAL=0` turns the write-ahead log (and with it the traces) off, `DASHFLOW_TRACE=0`
/// the traces alone. A graph compiled through `dashflow::executor::CompileExt` has no
/// observers at all. A WAL that cannot be opened (an unwritable home, say) is reported once
/// through `tracing` and the graph runs without it.
pub trait CompileExt<S: GraphState> {
    /// Validates the graph, makes it runnable and attaches the default observers.
    fn compile(self) -> Result<CompiledGraph<S>, Error>;
}

impl<S: GraphState> CompileExt<S> for StateGraph<S> {
    fn compile(self) -> Result<CompiledGraph<S>, Error> {
        let app = dashflow_executor::CompileExt::compile(self)?;
        Ok(with_default_observers(app))
    }
}

/// Attaches the default observers to `app`, unless the environment turns them off.
pub fn with_default_observers<S: GraphState>(app: CompiledGraph<S>) -> CompiledGraph<S> {
    let mut app = app.with_shared_callback(live_runs_sink());
    if metrics_enabled() {
        app = app.with_shared_callback(metrics_sink());
    }
    match shared_store() {
        Some(store) => app.with_shared_callback(store),
        None => app,
    }
}

/// Whether `serve_prometheus` asked graphs to record metrics.
fn metrics_enabled() -> bool {
    #[cfg(feature = "prometheus")]
    {
        crate::metrics::METRICS.load(std::sync::atomic::Ordering::Acquire)
    }
    #[cfg(not(feature = "prometheus"))]
    {
        false
    }
}

/// One metrics sink shared by every graph (so nested graphs count each event once).
fn metrics_sink() -> Arc<dyn EventCallback> {
    static SINK: OnceLock<Arc<dyn EventCallback>> = OnceLock::new();
    Arc::clone(SINK.get_or_init(|| Arc::new(dashflow_telemetry::MetricsCallback::new())))
}

/// The process's `LiveRuns`, as one shared sink for every graph.
fn live_runs_sink() -> Arc<dyn EventCallback> {
    static SINK: OnceLock<Arc<dyn EventCallback>> = OnceLock::new();
    Arc::clone(SINK.get_or_init(|| Arc::new(LiveRuns::global())))
}

/// The process's WAL store behind one shared burst buffer, so that graphs nested in each
/// other share it (and each event is written once).
fn shared_store() -> Option<Arc<dyn EventCallback>> {
    let store = SHARED_STORE.get_or_init(|| wal_store().map(|store| Arc::new(SharedStore::new(store))));
    store.as_ref().map(|store| Arc::clone(store) as Arc<dyn EventCallback>)
}

static SHARED_STORE: OnceLock<Option<Arc<SharedStore>>> = OnceLock::new();

/// The process's event store, or `None` when the WAL is off or cannot be opened.
fn wal_store() -> Option<Arc<EventStore>> {
    match EventStore::global() {
        Ok(store) => store,
        Err(error) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| tracing::warn!(%error, "DashFlow runs without its write-ahead log"));
            None
        }
    }
}

/// Blocks until the events of every run so far are in the write-ahead log; call it before
/// the process exits (the log's writer runs in the background).
pub fn flush_observers() -> Result<(), dashflow_wal::WalError> {
    if let Some(Some(sink)) = SHARED_STORE.get() {
        sink.hand_over();
    }
    match EventStore::global()? {
        Some(store) => store.flush(),
        None => Ok(()),
    }
}

/// The shared process store as a callback, handing events over in bursts.
///
/// Handing each event to the store's writer thread separately would wake that thread once per
/// event (a system call on the run's hot path) and clone each event twice. Events are cloned
/// once into a buffer here instead and the buffer is handed over as one message
/// ([`EventStore::send_batch`]) when a run ends, when many have accumulated, or when the oldest has waited
/// [`SharedStore::MAX_DELAY`], so a follower still sees live runs promptly.
struct SharedStore {
    store: Arc<EventStore>,
    buffer: parking_lot::Mutex<Burst>,
}

/// The events buffered so far, and when they are due at the latest.
struct Burst {
    events: Vec<Event>,
    /// The first event's time plus [`SharedStore::MAX_DELAY`], set with the first event (one
    /// time comparison per later event).
    due: Option<std::time::SystemTime>,
}

impl Burst {
    fn new() -> Self {
        Self { events: Vec::with_capacity(SharedStore::BURST), due: None }
    }

    /// Buffers `event`; whether the burst should be handed over now.
    fn push(&mut self, event: Event) -> bool {
        if self.events.is_empty() {
            self.due = event.at.checked_add(SharedStore::MAX_DELAY);
        }
        let hand_over =
            matches!(event.kind, EventKind::RunFinished { .. }) || self.due.is_some_and(|due| event.at >= due);
        if self.events.last().is_some_and(|last| starts_lone_task_of(last, &event)) {
            // Nobody has seen the step's start yet, and the task's end says all it said (the
            // step, the node, and with its duration, when it began): the WAL keeps the end
            // alone, one record instead of two for most steps.
            self.events.pop();
        }
        self.events.push(event);
        hand_over || self.events.len() >= SharedStore::BURST
    }
}

/// Whether `start` is the `SuperstepStarted` of a step of one task that `end` (its first
/// attempt's `TaskFinished`) ends, in the same run.
fn starts_lone_task_of(start: &Event, end: &Event) -> bool {
    match (&start.kind, &end.kind) {
        (
            EventKind::SuperstepStarted { step, nodes },
            EventKind::TaskFinished { step: ended, node, attempt: 1, .. },
        ) => start.run.run_id == end.run.run_id && step == ended && matches!(&**nodes, [only] if only == node),
        _ => false,
    }
}

impl SharedStore {
    const BURST: usize = 256;
    const MAX_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

    fn new(store: Arc<EventStore>) -> Self {
        Self { store, buffer: parking_lot::Mutex::new(Burst::new()) }
    }

    /// Hands everything buffered to the store now.
    fn hand_over(&self) {
        let burst = std::mem::replace(&mut *self.buffer.lock(), Burst::new());
        self.store.send_batch(burst.events);
    }
}

impl EventCallback for SharedStore {
    fn on_event(&self, event: &Event) {
        self.take_event(event.clone());
    }

    /// The usual way in: the store's sink is the last default observer, so it keeps the
    /// executor's event instead of a clone.
    fn take_event(&self, event: Event) {
        let burst = {
            let mut buffer = self.buffer.lock();
            if !buffer.push(event) {
                return;
            }
            std::mem::replace(&mut *buffer, Burst::new())
        };
        // Outside the lock, as one message: the store's queue is bounded and never blocks.
        self.store.send_batch(burst.events);
    }

    fn interest(&self) -> Interest {
        self.store.interest()
    }
}

/// The runs in progress in this process, oldest first.
pub fn live_runs() -> Vec<dashflow_telemetry::LiveRun> {
    LiveRuns::global().snapshot()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use dashflow_telemetry::{RunId, RunIds};

    use super::*;

    fn step(run: RunIds, step: u64, nodes: &[&str]) -> Event {
        Event::now(
            run,
            EventKind::SuperstepStarted { step, nodes: nodes.iter().map(|node| Arc::from(*node)).collect() },
        )
    }

    fn finished(run: RunIds, step: u64, node: &str, attempt: u32) -> Event {
        let kind = EventKind::TaskFinished {
            step,
            node: node.into(),
            attempt,
            duration: Duration::from_micros(3),
            error: None,
        };
        Event::now(run, kind)
    }

    fn buffered(events: Vec<Event>) -> Vec<Event> {
        let mut burst = Burst::new();
        for event in events {
            burst.push(event);
        }
        burst.events
    }

    #[test]
    fn a_one_task_step_still_buffered_keeps_only_its_task_end() {
        let run = RunIds::root(RunId::new());
        let end = finished(run, 1, "a", 1);
        assert_eq!(buffered(vec![step(run, 1, &["a"]), end.clone()]), vec![end]);
    }

    #[test]
    fn starts_that_say_more_than_the_end_are_kept() {
        let (run, other) = (RunIds::root(RunId::new()), RunIds::root(RunId::new()));
        let cases = [
            // Two tasks: the start names the one still running.
            vec![step(run, 1, &["a", "b"]), finished(run, 1, "a", 1)],
            // A retry's end: the step's start belongs to the first attempt.
            vec![step(run, 1, &["a"]), finished(run, 1, "a", 2)],
            // Another run's task, or another step's.
            vec![step(run, 1, &["a"]), finished(other, 1, "a", 1)],
            vec![step(run, 1, &["a"]), finished(run, 2, "a", 1)],
            // Something happened in between (a subgraph run, say).
            vec![step(run, 1, &["a"]), step(other, 1, &["c"]), finished(run, 1, "a", 1)],
        ];
        for events in cases {
            assert_eq!(buffered(events.clone()), events);
        }
    }
}
