//! Run and node metrics through the `metrics` facade.

use std::sync::Arc;

use crate::{Event, EventCallback, EventKind, RunOutcome};

/// Records counters and histograms for every run and task through the [`metrics`] facade,
/// so any installed recorder (Prometheus, StatsD, ...) sees them. Without a recorder the
/// macros are no-ops.
///
/// | metric | kind | labels |
/// |---|---|---|
/// | `dashflow_runs_started_total` | counter | `graph` |
/// | `dashflow_runs_finished_total` | counter | `graph`, `outcome` |
/// | `dashflow_run_duration_seconds` | histogram | `graph`, `outcome` |
/// | `dashflow_tasks_total` | counter | `graph`, `node`, `result` (ok or error) |
/// | `dashflow_task_duration_seconds` | histogram | `graph`, `node` |
/// | `dashflow_routes_total` | counter | `graph`, `from`, `label` |
///
/// Runs of one graph share labels: the graph name comes from `RunStarted` and is remembered
/// per run until `RunFinished`.
#[derive(Debug, Default)]
pub struct MetricsCallback {
    graphs: parking_lot::Mutex<std::collections::HashMap<crate::RunId, Arc<str>>>,
}

impl MetricsCallback {
    /// A callback recording into the globally installed `metrics` recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn graph(&self, event: &Event) -> Arc<str> {
        self.graphs.lock().get(&event.run.run_id).cloned().unwrap_or_else(|| Arc::from("unknown"))
    }
}

impl EventCallback for MetricsCallback {
    fn name(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed("metrics")
    }

    fn on_event(&self, event: &Event) {
        match &event.kind {
            EventKind::RunStarted { graph, .. } => {
                self.graphs.lock().insert(event.run.run_id, Arc::clone(graph));
                metrics::counter!("dashflow_runs_started_total", "graph" => graph.to_string()).increment(1);
            }
            EventKind::RunFinished { outcome, duration, .. } => {
                let graph = self.graphs.lock().remove(&event.run.run_id).unwrap_or_else(|| Arc::from("unknown"));
                let outcome = outcome_label(*outcome);
                metrics::counter!("dashflow_runs_finished_total", "graph" => graph.to_string(), "outcome" => outcome)
                    .increment(1);
                metrics::histogram!("dashflow_run_duration_seconds", "graph" => graph.to_string(), "outcome" => outcome)
                    .record(duration.as_secs_f64());
            }
            EventKind::TaskFinished { node, duration, error, .. } => {
                let graph = self.graph(event).to_string();
                let result = if error.is_some() { "error" } else { "ok" };
                metrics::counter!("dashflow_tasks_total", "graph" => graph.clone(), "node" => node.to_string(), "result" => result)
                    .increment(1);
                metrics::histogram!("dashflow_task_duration_seconds", "graph" => graph, "node" => node.to_string())
                    .record(duration.as_secs_f64());
            }
            EventKind::Routed { from, label, .. } => {
                let graph = self.graph(event).to_string();
                metrics::counter!("dashflow_routes_total", "graph" => graph, "from" => from.to_string(), "label" => label.to_string())
                    .increment(1);
            }
            _ => {}
        }
    }

    fn interest(&self) -> crate::Interest {
        Self::recorded()
    }
}

impl MetricsCallback {
    /// The events it records.
    pub fn recorded() -> crate::Interest {
        crate::Interest { runs: true, tasks_finished: true, routing: true, ..crate::Interest::NONE }
    }
}

fn outcome_label(outcome: RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Completed => "completed",
        RunOutcome::Failed => "failed",
        RunOutcome::Interrupted => "interrupted",
    }
}
