//! State deltas: a run's state as it starts and each superstep's merged update, handed to the
//! sinks that ask for them ([`Interest::deltas`](crate::Interest::deltas)) without being
//! encoded on the run's thread.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::RunIds;

/// A value of a graph's state type or of its update type, with the type erased: a sink
/// encodes it as JSON on its own thread, when it wants to.
///
/// Every `Serialize + Send + Sync + 'static` type is one (a blanket impl), so the executor
/// hands over an `Arc` of the state or update it already holds, or of a copy.
pub trait StateJson: Send + Sync + 'static {
    /// The value as JSON. Fails as `serde_json` does, for a value JSON cannot express: a map
    /// whose keys are not strings, or a `Serialize` impl that refuses.
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error>;

    /// The value's type, for messages about it.
    fn type_name(&self) -> &'static str;
}

impl<T: Serialize + Send + Sync + 'static> StateJson for T {
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

/// What a [`StateDelta`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeltaKind {
    /// The whole state the run starts from (its input, or the thread's state it resumes):
    /// it replaces whatever a reader had for the run's thread.
    Snapshot,
    /// A superstep's merged update (of the graph's update type): a reader applies it to the
    /// state with the graph's reducers.
    Update,
}

impl fmt::Display for DeltaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Snapshot => "snapshot",
            Self::Update => "update",
        })
    }
}

/// A run's state as it starts, or one superstep's merged update, for the sinks that ask
/// ([`Interest::deltas`](crate::Interest::deltas)).
///
/// A run hands over one [`DeltaKind::Snapshot`] before its first step (step 0 for a fresh
/// run, the step it continues from for a resumed one), then one [`DeltaKind::Update`] per
/// superstep that changed the state, in step order, each after the step's tasks ended and
/// before its `SuperstepFinished`. Applying them in order to the snapshot rebuilds the run's
/// state at every step, without the checkpoint database. A subgraph's run hands over its
/// own, of its own state type, under its own run id.
///
/// The value is shared with the run, not copied into JSON: [`to_json`](Self::to_json) does
/// that wherever the sink calls it. The snapshot shares the run's state, so a sink that holds
/// it when the run applies its first update makes the run copy its state once.
#[derive(Clone)]
#[non_exhaustive]
pub struct StateDelta {
    /// The run.
    pub run: RunIds,
    /// When the run handed it over.
    pub at: SystemTime,
    /// The step it ends: the step the snapshot stands at, or the step whose update it is.
    pub step: u64,
    /// A whole state or an update.
    pub kind: DeltaKind,
    /// The state or update.
    pub value: Arc<dyn StateJson>,
}

impl StateDelta {
    /// A delta of `run` at `step`.
    pub fn new(run: RunIds, at: SystemTime, step: u64, kind: DeltaKind, value: Arc<dyn StateJson>) -> Self {
        Self { run, at, step, kind, value }
    }

    /// The state or update as JSON (see [`StateJson::to_json`]).
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        self.value.to_json()
    }
}

impl fmt::Debug for StateDelta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateDelta")
            .field("run", &self.run)
            .field("at", &self.at)
            .field("step", &self.step)
            .field("kind", &self.kind)
            .field("type", &self.value.type_name())
            .finish()
    }
}
