//! The event store's trace persistence: the writer thread builds a trace per run from the
//! events it writes anyway, and persists it when the run finishes.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use dashflow_telemetry::{Event, EventKind, RunId};

use super::report::{FailureReport, one_line};
use super::{Backlog, Counters};
use crate::trace::{ExecutionTrace, FastSet, TraceCollector};
use crate::trace_files::{TraceConfig, TraceRetention, apply_trace_retention, write_trace};

/// The trace half of the writer thread.
pub(super) struct TraceSink {
    collector: TraceCollector,
    /// Where trace files go, `None` for none.
    dir: Option<PathBuf>,
    wal: bool,
    retention: TraceRetention,
    retention_every: u64,
    /// Files written since the last retention pass.
    since_retention: u64,
    /// Where the first failed file write is reported.
    report: FailureReport,
    /// Whether a failed file write was reported; a broken directory would otherwise report
    /// every run.
    warned: bool,
    /// Runs in progress that are not traced (they started while the writer was behind).
    skipped: FastSet<RunId>,
}

impl TraceSink {
    /// The sink `config` asks for, `None` when traces go nowhere.
    pub(super) fn new(config: TraceConfig, report: FailureReport) -> Option<Self> {
        if !config.is_on() {
            return None;
        }
        Some(Self {
            collector: TraceCollector::new(),
            dir: config.traces_dir(),
            wal: config.wal,
            retention: config.retention,
            retention_every: config.retention_every.max(1),
            since_retention: 0,
            report,
            warned: false,
            skipped: FastSet::default(),
        })
    }

    /// The trace files' directory.
    pub(super) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Whether traces go into the WAL.
    pub(super) fn in_wal(&self) -> bool {
        self.wal
    }

    /// Feeds a batch of events to the runs' builders; returns the traces of the runs that
    /// finished in it. With [`Backlog::Behind`], runs that start in the batch are not traced (see
    /// [`StoreStats::traces_skipped`](super::StoreStats::traces_skipped)); runs already
    /// traced go on.
    pub(super) fn collect(&mut self, batch: &[Event], backlog: Backlog, counters: &Counters) -> Vec<ExecutionTrace> {
        let mut finished = Vec::new();
        for event in batch {
            let run_id = event.run.run_id;
            if !self.collector.tracks(run_id) {
                if self.skipped.contains(&run_id) {
                    if matches!(event.kind, EventKind::RunFinished { .. }) {
                        self.skipped.remove(&run_id);
                    }
                    continue;
                }
                if backlog == Backlog::Behind {
                    counters.traces_skipped.fetch_add(1, Ordering::Relaxed);
                    if !matches!(event.kind, EventKind::RunFinished { .. }) {
                        self.skipped.insert(run_id);
                    }
                    continue;
                }
            }
            finished.extend(self.collector.push(event));
        }
        finished
    }

    /// Writes the trace files of `traces` and counts every trace as written or failed;
    /// `failed_in_wal` are the runs whose trace record could not be appended.
    pub(super) fn persist(&mut self, traces: &[ExecutionTrace], failed_in_wal: &[RunId], counters: &Counters) {
        for trace in traces {
            let mut ok = !failed_in_wal.contains(&trace.run.run_id);
            if let Some(dir) = &self.dir {
                match write_trace(dir, trace) {
                    Ok(_) => self.since_retention += 1,
                    Err(error) => {
                        ok = false;
                        if !std::mem::replace(&mut self.warned, true) {
                            self.report.emit(&format!(
                                "dashflow: cannot write trace files in `{}`: {}; runs and their events are \
                                 recorded all the same; set DASHFLOW_TRACE_DIR to a writable directory, or \
                                 DASHFLOW_TRACE=0 to turn traces off",
                                dir.display(),
                                one_line(&error)
                            ));
                        } else {
                            tracing::debug!(%error, "cannot write a trace file");
                        }
                    }
                }
            }
            let counter = if ok { &counters.traces_written } else { &counters.traces_failed };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if self.since_retention >= self.retention_every {
            self.retain(SystemTime::now());
        }
    }

    /// Applies the trace file retention; a failure is logged, never fatal: old files piling
    /// up must not stop new runs from being traced.
    pub(super) fn retain(&mut self, now: SystemTime) {
        self.since_retention = 0;
        let Some(dir) = &self.dir else { return };
        if let Err(error) = apply_trace_retention(dir, &self.retention, now) {
            tracing::warn!(dir = %dir.display(), %error, "trace file retention failed; it is retried later");
        }
    }
}
