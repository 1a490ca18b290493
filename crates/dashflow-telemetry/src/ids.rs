use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A globally unique, time-sortable run identifier (a ULID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(ulid::Ulid);

impl RunId {
    /// A fresh id; ids made later in the same process sort after earlier ones.
    pub fn new() -> Self {
        Self(ulid::Ulid::new())
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RunId {
    type Err = ulid::DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// Where a run sits in the execution stack: its own id, the run that started it (a subgraph's
/// parent), the outermost run, and how deep it is nested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunIds {
    /// This run.
    pub run_id: RunId,
    /// The run whose node started this one, for a subgraph run.
    pub parent_run_id: Option<RunId>,
    /// The outermost run of the stack; equal to `run_id` for a top-level run.
    pub root_run_id: RunId,
    /// 0 for a top-level run, parent depth + 1 for a subgraph run.
    pub depth: u32,
}

impl RunIds {
    /// The ids of a top-level run.
    pub fn root(run_id: RunId) -> Self {
        Self { run_id, parent_run_id: None, root_run_id: run_id, depth: 0 }
    }

    /// The ids of a run started by a node of `self`.
    pub fn child(&self, run_id: RunId) -> Self {
        Self { run_id, parent_run_id: Some(self.run_id), root_run_id: self.root_run_id, depth: self.depth + 1 }
    }
}
