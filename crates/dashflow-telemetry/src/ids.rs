use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A globally unique, time-sortable run identifier (a ULID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(ulid::Ulid);

static GENERATOR: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);

impl RunId {
    /// A fresh id; ids made later in the same process sort after earlier ones, even within one
    /// millisecond (the random part is incremented).
    pub fn new() -> Self {
        let mut generator = GENERATOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let generator = generator.get_or_insert_with(ulid::Generator::new);
        // The monotonic generator fails only after 2^80 ids in one millisecond; a plain ULID
        // keeps the id unique in that impossible case.
        Self(generator.generate().unwrap_or_else(|_| ulid::Ulid::new()))
    }

    /// The id's 128 bits, for compact binary encodings ([`from_u128`](Self::from_u128)
    /// reverses it).
    pub fn to_u128(self) -> u128 {
        self.0.0
    }

    /// The id with these 128 bits (any value is a valid id).
    pub fn from_u128(bits: u128) -> Self {
        Self(ulid::Ulid(bits))
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
