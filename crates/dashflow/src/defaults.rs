//! What `compile()` attaches by default: observability that is on unless turned off.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use dashflow_executor::{CompiledGraph, Error};
use dashflow_graph::{GraphState, StateGraph};
use dashflow_telemetry::{Event, EventBatch, EventCallback, Interest, LiveRuns};
use dashflow_wal::EventStore;

/// `compile()`: validates the graph, makes it runnable and attaches the default observers,
/// so every run is visible without any setup. The compiled graph lists them
/// ([`CompiledGraph::observers`], each [`is_default`](dashflow_executor::Observer::is_default))
/// and drops them on request ([`CompiledGraph::without_default_observers`]):
///
/// - [`LiveRuns::global`]: the runs in progress in this process, with their current step and
///   running nodes (`dashflow::live_runs()`).
/// - The process's write-ahead log ([`EventStore::global`]): every event, written by a
///   background thread under `$DASHFLOW_HOME/wal` (default `~/.dashflow/wal`), which the
///   `dashflow` CLI reads. Nothing needs calling before the process exits: when `main`
///   returns, `std::process::exit` is called or a test binary ends, the log writes what it
///   still holds (waiting at most [`EventStore::EXIT_FLUSH_LIMIT`] for a stuck disk), so
///   no finished run reads `abandoned`. [`flush_observers`] is there for a program that
///   wants its runs readable by another process before then.
/// - Execution traces: built from a run's events when read (`dashflow runs show --json`
///   prints each finished run's), and, where asked for, written by the same background
///   thread as a JSON file under `$DASHFLOW_TRACE_DIR/.dashflow/traces/` or
///   `./.dashflow/traces/` when the working directory has a `.dashflow/` (no run creates one
///   in the working directory by itself).
///
/// `DASHFLOW_WAL=0` turns the write-ahead log (and with it the traces) off, `DASHFLOW_TRACE=0`
/// the traces alone. `CompiledGraph::new(graph.build()?)` makes a graph with no observers at
/// all, as `without_default_observers` leaves it.
///
/// A log that cannot be written never fails a run or the program: a WAL that cannot be
/// opened (an unwritable home, say), or a write, fsync or trace file that fails later, is
/// reported once, in one line on standard error (whatever logging the program set up) that
/// names the path, the cause and the fix (or `DASHFLOW_WAL=0` to silence it), and the runs
/// go on without it.
pub trait CompileExt<S: GraphState> {
    /// Validates the graph, makes it runnable and attaches the default observers.
    fn compile(self) -> Result<CompiledGraph<S>, Error>;
}

impl<S: GraphState> CompileExt<S> for StateGraph<S> {
    fn compile(self) -> Result<CompiledGraph<S>, Error> {
        Ok(with_default_observers(CompiledGraph::new(self.build()?)))
    }
}

/// Attaches the default observers to `app` (as [`CompileExt::compile`] does), unless the
/// environment turns them off.
pub fn with_default_observers<S: GraphState>(app: CompiledGraph<S>) -> CompiledGraph<S> {
    let mut app = app.with_default_observer(live_runs_sink());
    if metrics_enabled() {
        app = app.with_default_observer(metrics_sink());
    }
    match shared_store() {
        Some(store) => app.with_default_observer(store),
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

/// The process's event log as a callback, one `Arc` for every graph, so that graphs nested in
/// each other share it (and each event is written once); `None` when `DASHFLOW_WAL` turns
/// the log off.
fn shared_store() -> Option<Arc<dyn EventCallback>> {
    static SINK: OnceLock<Option<Arc<dyn EventCallback>>> = OnceLock::new();
    SINK.get_or_init(|| {
        let name = match dashflow_wal::wal_dir_from_env() {
            Ok(None) => return None,
            Ok(Some(dir)) => format!("event log in {}", dir.display()),
            Err(error) => format!("event log ({error})"),
        };
        Some(Arc::new(ProcessLog { name }) as Arc<dyn EventCallback>)
    })
    .clone()
}

/// The process's event store, opened when the first run starts rather than at `compile()`:
/// a graph whose default observers are removed, or that never runs, leaves no file behind.
/// It takes each run's events in batches ([`EventCallback::batches`]).
struct ProcessLog {
    name: String,
}

impl EventCallback for ProcessLog {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.name)
    }

    fn interest(&self) -> Interest {
        wal_store().map_or(Interest::NONE, |store| store.interest())
    }

    fn batches(&self) -> bool {
        wal_store().is_some_and(|store| store.batches())
    }

    fn on_event(&self, event: &Event) {
        if let Some(store) = wal_store() {
            store.on_event(event);
        }
    }

    fn take_event(&self, event: Event) {
        if let Some(store) = wal_store() {
            store.take_event(event);
        }
    }

    fn on_batch(&self, batch: &EventBatch) {
        if let Some(store) = wal_store() {
            store.on_batch(batch);
        }
    }

    fn take_batch(&self, batch: EventBatch) {
        if let Some(store) = wal_store() {
            store.take_batch(batch);
        }
    }
}

/// The process's event store, once asked for: `None` when the WAL is off or cannot be
/// opened. Asked once, so a broken home is tried (and reported) once.
static STORE: OnceLock<Option<Arc<EventStore>>> = OnceLock::new();

/// The process's event store, or `None` when the WAL is off or cannot be opened (which the
/// store reported on stderr).
fn wal_store() -> Option<&'static Arc<EventStore>> {
    STORE.get_or_init(|| EventStore::global().ok().flatten()).as_ref()
}

/// Waits until the events of every run that finished so far are in the write-ahead log, so
/// that another process (`dashflow runs list`, say) reads them now. A run still going hands
/// its events over as it waits and when it ends.
///
/// Never needed for correctness: the log writes what it holds when the process exits. It
/// never fails and never hangs: it waits at most [`EventStore::EXIT_FLUSH_LIMIT`], and a log
/// that cannot be written was reported once on standard error (a program whose work is done
/// must not fail because its log is broken). To get the error itself, call
/// [`EventStore::flush`] on `dashflow::wal::EventStore::global()`.
pub fn flush_observers() {
    if let Some(Some(store)) = STORE.get() {
        store.flush_within(EventStore::EXIT_FLUSH_LIMIT);
    }
}

/// The runs in progress in this process, oldest first.
pub fn live_runs() -> Vec<dashflow_telemetry::LiveRun> {
    LiveRuns::global().snapshot()
}
