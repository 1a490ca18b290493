//! What `compile()` attaches by default: observability that is on unless turned off.

use dashflow_executor::{CompiledGraph, Error};
use dashflow_graph::{GraphState, StateGraph};
use dashflow_telemetry::LiveRuns;

/// `compile()` for the golden path: validates the graph (see
/// [`dashflow_executor::CompileExt`]) and attaches the default observers, so every run is
/// visible without any setup:
///
/// - [`LiveRuns::global`]: the runs in progress in this process, with their current step and
///   running nodes (`dashflow::live_runs()`).
///
/// `DASHFLOW_TRACE=0` in the environment turns the default observers off; a graph compiled
/// through `dashflow::executor::CompileExt` never has them.
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
    app.with_callback(LiveRuns::global())
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
