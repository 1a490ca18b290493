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
pub trait GraphState: SchemaHash + Clone + Send + Sync + Serialize + DeserializeOwned + 'static {
    /// A partial change to the state, as returned by one node.
    type Update: Clone + Send + Sync + Serialize + DeserializeOwned + 'static;

    /// Folds `update` into the state using each field's reducer.
    fn apply(&mut self, update: Self::Update);
}

/// A fingerprint of a state type's shape, stored in every checkpoint blob so that a blob
/// written by another shape of the state is refused instead of decoded into garbage.
///
/// `#[derive(GraphState)]` implements it from the type's name and each field's name, type and
/// reducer. For a hand-written state, pick any constant and change it whenever the serialized
/// shape changes; [`whole_state!`](crate::whole_state) derives one from the type's name.
pub trait SchemaHash {
    /// The fingerprint.
    const SCHEMA_HASH: u64;
}

/// FNV-1a of `text`: a hash that is the same on every compiler and release.
pub const fn fnv1a(text: &str) -> u64 {
    let bytes = text.as_bytes();
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut index = 0;
    while index < bytes.len() {
        hash = (hash ^ bytes[index] as u64).wrapping_mul(0x0100_0000_01b3);
        index += 1;
    }
    hash
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

            fn apply(&mut self, update: Self::Update) {
                *self = update;
            }
        }

        impl $crate::SchemaHash for $ty {
            const SCHEMA_HASH: u64 = $crate::fnv1a(concat!("whole_state:", stringify!($ty)));
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
