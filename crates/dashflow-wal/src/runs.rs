//! The run vocabulary of the index: statuses, summaries and filters.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use dashflow_telemetry::{RunId, RunIds, RunOutcome};

use crate::process::ProcessIdentity;
use crate::segment::Position;

/// Where a run stands, as far as the WAL knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunStatus {
    /// Started and not (yet) finished, and its process is alive, or cannot be checked: the
    /// run was recorded before process records existed, on a platform other than Linux, on
    /// another host, or in another pid namespace (container).
    Running,
    /// Started and never finished, and the process that executed it is gone: killed, crashed,
    /// or the machine restarted. Derived when the index is read, never written to the log: a
    /// run stays `running` while its process lives, and a run that does record its end later
    /// takes that status.
    Abandoned,
    /// Reached `END`.
    Completed,
    /// Stopped with an error.
    Failed,
    /// Paused for a person or a configured interrupt.
    Interrupted,
    /// Finished with an outcome this version does not know.
    Unknown,
}

impl RunStatus {
    /// The status as printed: `running`, `abandoned`, `completed`, `failed`, `interrupted`,
    /// `unknown`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Abandoned => "abandoned",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Unknown => "unknown",
        }
    }

    pub(crate) fn of_outcome(outcome: RunOutcome) -> &'static str {
        match outcome {
            RunOutcome::Completed => Self::Completed.as_str(),
            RunOutcome::Failed => Self::Failed.as_str(),
            RunOutcome::Interrupted => Self::Interrupted.as_str(),
            _ => Self::Unknown.as_str(),
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a run status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown run status `{0}`; use running, abandoned, completed, failed or interrupted")]
pub struct ParseRunStatusError(String);

impl FromStr for RunStatus {
    type Err = ParseRunStatusError;

    fn from_str(s: &str) -> Result<Self, ParseRunStatusError> {
        Ok(match s {
            "running" => Self::Running,
            "abandoned" => Self::Abandoned,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "interrupted" => Self::Interrupted,
            "unknown" => Self::Unknown,
            other => return Err(ParseRunStatusError(other.to_owned())),
        })
    }
}

/// One run as the index knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSummary {
    /// The run's ids and place in the execution stack.
    pub ids: RunIds,
    /// The graph's name (`None` when the run's start was removed by retention before it was
    /// indexed).
    pub graph: Option<String>,
    /// The thread, if the run had one.
    pub thread_id: Option<String>,
    /// The run's tags (`RunConfig::tag`), in the order given.
    pub tags: Vec<String>,
    /// Where the run stands.
    pub status: RunStatus,
    /// When the run started.
    pub started_at: Option<SystemTime>,
    /// When the run finished.
    pub ended_at: Option<SystemTime>,
    /// The time of the run's latest event: for an abandoned run, about when its process
    /// died.
    pub last_event_at: Option<SystemTime>,
    /// The run's wall time, as the executor measured it.
    pub duration: Option<Duration>,
    /// The error of a failed run.
    pub error: Option<String>,
    /// Supersteps executed (so far, for a running run).
    pub steps: u64,
    /// Records of this run the index has seen; for a `partial` run this still counts the
    /// records retention removed, until the index is rebuilt or the WAL compacted.
    pub events: u64,
    /// The run's start is no longer in the WAL: retention removed the segment that held it.
    /// Summary fields learned before that are kept until the index is rebuilt.
    pub partial: bool,
    /// The run's first record still in the WAL.
    pub first: Position,
    /// The run's last record.
    pub last: Position,
    /// The process that executes (or executed) the run, when the WAL recorded it (see
    /// [`RunStatus::Abandoned`]).
    pub process: Option<ProcessIdentity>,
    /// Where the run's trace record is ([`Wal::trace`](crate::Wal::trace) reads it); `None`
    /// while the run is in progress, or when trace persistence is off.
    pub trace: Option<Position>,
}

/// Which runs [`Wal::list_runs`](crate::Wal::list_runs) returns. Unset fields match every run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunFilter {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs of this graph.
    pub graph: Option<String>,
    /// Only runs of this thread.
    pub thread_id: Option<String>,
    /// Only runs started at or after this time.
    pub since: Option<SystemTime>,
    /// Only runs with this tag.
    pub tag: Option<String>,
    /// Only runs of this execution stack (the root run and its subgraph runs).
    pub root_run_id: Option<RunId>,
    /// Only runs whose id starts with this prefix, in any case (ids print as uppercase
    /// Crockford base32): how the CLI resolves the short ids people type.
    pub run_id_prefix: Option<String>,
    /// At most this many runs (the newest).
    pub limit: Option<usize>,
}

impl RunFilter {
    /// Every run.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only runs with `status`.
    pub fn status(mut self, status: RunStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only runs tagged `tag`.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Only runs of `graph`.
    pub fn graph(mut self, graph: impl Into<String>) -> Self {
        self.graph = Some(graph.into());
        self
    }

    /// Only runs of `thread_id`.
    pub fn thread_id(mut self, thread_id: impl Into<String>) -> Self {
        self.thread_id = Some(thread_id.into());
        self
    }

    /// Only runs started at or after `since`.
    pub fn since(mut self, since: SystemTime) -> Self {
        self.since = Some(since);
        self
    }

    /// Only the runs of the stack rooted at `root`.
    pub fn root_run_id(mut self, root: RunId) -> Self {
        self.root_run_id = Some(root);
        self
    }

    /// Only runs whose id starts with `prefix` (in any case).
    pub fn run_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.run_id_prefix = Some(prefix.into());
        self
    }

    /// At most `limit` runs.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}
