//! Run and node metrics on a Prometheus endpoint.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether graphs compiled from now on record metrics (see [`serve_prometheus`]).
pub(crate) static METRICS: AtomicBool = AtomicBool::new(false);

/// The Prometheus endpoint could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve Prometheus metrics on {addr}")]
pub struct PrometheusError {
    addr: SocketAddr,
    #[source]
    source: metrics_exporter_prometheus::BuildError,
}

/// Serves run and node metrics (`dashflow_runs_*`, `dashflow_tasks_*`,
/// `dashflow_task_duration_seconds`, `dashflow_routes_total`, see
/// [`MetricsCallback`](dashflow_telemetry::MetricsCallback)) for Prometheus to scrape at
/// `http://{addr}/metrics`, and makes every graph compiled afterwards record them.
///
/// Installs the process's `metrics` recorder, so call it once, early, inside a tokio runtime.
pub fn serve_prometheus(addr: SocketAddr) -> Result<(), PrometheusError> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|source| PrometheusError { addr, source })?;
    METRICS.store(true, Ordering::Release);
    Ok(())
}
