//! How a store tells someone that its log cannot be written: once, in one line, and never
//! by failing the runs it records.

use std::fmt;
use std::sync::Arc;

use dashflow_telemetry::Report;

/// Where an [`EventStore`](super::EventStore) reports that events cannot be written (the WAL
/// cannot be opened, a write or an fsync failed, trace files cannot be written).
///
/// The first failure of each kind is reported once; later ones go to `tracing` at debug
/// level. Runs go on either way: a log that cannot be written never fails a run.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum FailureReport {
    /// A `tracing` warning. The default for a store you open yourself, whose
    /// [`flush`](super::EventStore::flush) returns the error as well.
    #[default]
    Tracing,
    /// One line on standard error, whatever logging the program set up: what the process's
    /// own store ([`EventStore::global`](super::EventStore::global)) does, since no caller sees
    /// its errors and a program may have no `tracing` subscriber.
    Stderr,
    /// Calls the function with the report's one line (embedders with their own logging).
    Callback(Arc<dyn Fn(&str) + Send + Sync>),
}

impl fmt::Debug for FailureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tracing => f.write_str("Tracing"),
            Self::Stderr => f.write_str("Stderr"),
            Self::Callback(_) => f.write_str("Callback(..)"),
        }
    }
}

impl FailureReport {
    /// Reports `line` where this says.
    pub(crate) fn emit(&self, line: &str) {
        match self {
            Self::Tracing => tracing::warn!("{line}"),
            Self::Stderr => {
                use std::io::Write;
                // One `write_all` of the whole line, so concurrent output cannot split it; a
                // closed stderr leaves nobody to tell.
                let _ = std::io::stderr().lock().write_all(format!("{line}\n").as_bytes());
            }
            Self::Callback(report) => report(line),
        }
    }
}

/// The hint that ends every report: how to fix it, or how to silence it.
pub(crate) const HINT: &str =
    "runs go on without it; set DASHFLOW_HOME to a writable directory, or DASHFLOW_WAL=0 to turn the log off";

/// `error` and its causes on one line, outermost first, as every DashFlow error prints
/// ([`Report`]: an error's own message leaves its cause to `source`).
pub(crate) fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    Report(error).to_string().replace('\n', " ")
}

/// The report of a log that cannot be opened.
pub(crate) fn cannot_open(error: &(dyn std::error::Error + 'static)) -> String {
    format!("dashflow: the event log is off for this process: {}; {HINT}", one_line(error))
}

/// The report of a log that stopped recording.
pub(crate) fn cannot_write(dir: &std::path::Path, error: &(dyn std::error::Error + 'static)) -> String {
    format!("dashflow: the event log in `{}` stopped recording: {}; {HINT}", dir.display(), one_line(error))
}
