//! What `compile()` attaches by default: observability that is on unless turned off.

use dashflow_executor::{CompiledGraph, Error};
use dashflow_graph::{GraphState, StateGraph};
use std::sync::{Arc, OnceLock};

use dashflow_telemetry::{EventCallback, LiveRuns};
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

/// The process's WAL store as a callback, one `Arc` for every graph, so that graphs nested in
/// each other share it (and each event is written once). It takes each run's events in
/// batches ([`EventCallback::batches`]).
fn shared_store() -> Option<Arc<dyn EventCallback>> {
    static SINK: OnceLock<Option<Arc<dyn EventCallback>>> = OnceLock::new();
    SINK.get_or_init(|| wal_store().map(|store| store as Arc<dyn EventCallback>)).clone()
}

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

/// Blocks until the events of every finished run so far are in the write-ahead log; call it
/// before the process exits (the log's writer runs in the background). A run still going
/// hands its events over as it waits and when it ends.
pub fn flush_observers() -> Result<(), dashflow_wal::WalError> {
    match EventStore::global()? {
        Some(store) => store.flush(),
        None => Ok(()),
    }
}

/// The runs in progress in this process, oldest first.
pub fn live_runs() -> Vec<dashflow_telemetry::LiveRun> {
    LiveRuns::global().snapshot()
}
