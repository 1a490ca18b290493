//! The state a graph carries and how node updates fold into it.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The state of a graph run.
///
/// A node reads an immutable snapshot (`Arc<S>`) and returns a partial [`GraphState::Update`];
/// the executor applies updates in place, so a sequential step clones no state. Both the state
/// and its updates are serializable because checkpoints store them.
///
/// Usually derived with `#[derive(GraphState)]`, which generates an update struct with one
/// `Option` per field and the per-field reducers named by `#[reduce(...)]` attributes.
///
/// Checkpoints store states and updates with a fingerprint of their whole shape, which the
/// executor traces from their `Deserialize` implementations (nested types included; nothing
/// extra to derive). What the shape does not show is how updates fold into the state: a
/// stored update means something else under another reducer. [`GraphState::REDUCERS`] says
/// it, and is part of the fingerprint.
pub trait GraphState: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {
    /// A partial change to the state, as returned by one node.
    type Update: Clone + Send + Sync + Serialize + DeserializeOwned + 'static;

    /// How each field folds updates, as `field:reducer` entries separated by `;` (`log:append;
    /// count:add;note:overwrite`). `#[derive(GraphState)]` fills it in; a hand-written state
    /// whose `apply` changes meaning should change it, so that checkpoints written before are
    /// refused instead of replayed with the new meaning.
    const REDUCERS: &'static str = "";

    /// The state's declaration as written (`Name;field:Type;...`): the fingerprint of a state
    /// whose shape cannot be traced (a field whose `Deserialize` needs a self-describing
    /// format it cannot be given). `#[derive(GraphState)]` fills it in; empty for others, whose
    /// type name then stands in.
    const DECLARATION: &'static str = "";

    /// Folds `update` into the state using each field's reducer.
    fn apply(&mut self, update: Self::Update);
}

/// A state whose updates can be combined, which graphs with parallel steps need.
///
/// Combining must agree with applying: for every state `s`,
/// `s.apply(a); s.apply(b)` leaves `s` equal to `merge(&mut a, b); s.apply(a)`.
/// The executor relies on this to merge the updates of one superstep (in frontier order) and
/// to turn a whole subgraph run into one update for its parent.
pub trait MergeableState: GraphState {
    /// Folds `later` into `acc`, as if `later` were applied after `acc`.
    ///
    /// For overwrite fields `later` wins; callers that combine updates of *parallel* tasks
    /// first check [`MergeableState::for_each_overwrite`] so that two writers of one overwrite
    /// field are reported instead of silently resolved.
    fn merge(acc: &mut Self::Update, later: Self::Update);

    /// Calls `f` with the name of every overwrite field that `update` sets.
    ///
    /// A field reported here by two tasks of the same superstep is a conflict.
    fn for_each_overwrite(update: &Self::Update, f: impl FnMut(&'static str));
}

/// Implements [`GraphState`] and [`MergeableState`] for a type whose update is a whole new
/// state (`type Update = Self`).
///
/// Such graphs suit strictly sequential workflows: every node returns the full next state, and
/// a superstep in which two tasks both return one is a conflict naming both nodes.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, Default, Serialize, Deserialize)]
/// struct Counter {
///     value: u64,
/// }
/// dashflow_graph::whole_state!(Counter);
/// ```
#[macro_export]
macro_rules! whole_state {
    ($ty:ty) => {
        impl $crate::GraphState for $ty {
            type Update = $ty;

            const REDUCERS: &'static str = "<whole state>:overwrite";
            const DECLARATION: &'static str = concat!("whole_state:", stringify!($ty));

            fn apply(&mut self, update: Self::Update) {
                *self = update;
            }
        }

        impl $crate::MergeableState for $ty {
            fn merge(acc: &mut Self::Update, later: Self::Update) {
                *acc = later;
            }

            fn for_each_overwrite(_update: &Self::Update, mut f: impl FnMut(&'static str)) {
                f("<whole state>");
            }
        }
    };
}
