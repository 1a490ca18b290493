//! What `compile()` attaches by default: observability that is on unless turned off.

use dashflow_executor::{CompiledGraph, Error};
use dashflow_graph::{GraphState, StateGraph};
use std::sync::Arc;

use dashflow_telemetry::{Event, EventCallback, Interest, LiveRuns};
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
/// `DASHFLOW_TRACE=0` turns the default observers off, `DASHFLOW_WAL=0` the write-ahead log
/// alone. A graph compiled through `dashflow::executor::CompileExt` has none of them. A WAL
/// that cannot be opened (an unwritable home, say) is reported once through `tracing` and the
/// graph runs without it.
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
    if !enabled("DASHFLOW_TRACE") {
        return app;
    }
    let app = app.with_callback(LiveRuns::global());
    match wal_store() {
        Some(store) => app.with_callback(SharedStore::new(store)),
        None => app,
    }
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

/// Blocks until the events of every run so far are in the write-ahead log; call it before
/// the process exits (the log's writer runs in the background).
pub fn flush_observers() -> Result<(), dashflow_wal::WalError> {
    match EventStore::global()? {
        Some(store) => store.flush(),
        None => Ok(()),
    }
}

/// The shared process store as a callback, handing events over in bursts.
///
/// Handing each event to the store's writer thread separately would wake that thread once per
/// event (a system call on the run's hot path). Events are buffered here instead and handed
/// over together when a run ends, when many have accumulated, or when the oldest has waited
/// [`SharedStore::MAX_DELAY`], so a follower still sees live runs promptly.
struct SharedStore {
    store: Arc<EventStore>,
    buffer: parking_lot::Mutex<Vec<Event>>,
}

impl SharedStore {
    const BURST: usize = 256;
    const MAX_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

    fn new(store: Arc<EventStore>) -> Self {
        Self { store, buffer: parking_lot::Mutex::new(Vec::with_capacity(Self::BURST)) }
    }

    fn due(buffer: &[Event], latest: &Event) -> bool {
        buffer.len() >= Self::BURST
            || matches!(latest.kind, dashflow_telemetry::EventKind::RunFinished { .. })
            || buffer
                .first()
                .is_some_and(|first| latest.at.duration_since(first.at).is_ok_and(|d| d >= Self::MAX_DELAY))
    }
}

impl EventCallback for SharedStore {
    fn on_event(&self, event: &Event) {
        let burst = {
            let mut buffer = self.buffer.lock();
            buffer.push(event.clone());
            if !Self::due(&buffer, event) {
                return;
            }
            std::mem::replace(&mut *buffer, Vec::with_capacity(Self::BURST))
        };
        // Outside the lock: the store's queue is bounded and never blocks.
        for event in &burst {
            self.store.on_event(event);
        }
    }

    fn interest(&self) -> Interest {
        self.store.interest()
    }
}

/// Whether an opt-out variable leaves its feature on: unset, or anything but `0`, `false`,
/// `off` or `no`.
pub(crate) fn enabled(variable: &str) -> bool {
    match std::env::var(variable) {
        Ok(value) => !matches!(value.trim().to_ascii_lowercase().as_str(), "0" | "false" | "off" | "no"),
        Err(_) => true,
    }
}

/// The runs in progress in this process, oldest first.
pub fn live_runs() -> Vec<dashflow_telemetry::LiveRun> {
    LiveRuns::global().snapshot()
}
