// Generated items must keep a user crate that denies these lints building: documented, no
// dead builder methods, no unreachable `pub`.
//! A crate denying the lints a library typically denies.
#![deny(missing_docs, unreachable_pub, dead_code, unused, rust_2018_idioms)]

use dashflow_graph::{GraphState, MergeableState};
use serde::{Deserialize, Serialize};

/// A public state.
#[derive(Clone, Default, Serialize, Deserialize, GraphState)]
pub struct Public {
    /// Notes.
    #[reduce(append)]
    pub notes: Vec<String>,
    /// A total.
    #[reduce(add)]
    pub total: u64,
    /// A private field.
    label: String,
}

/// A public generic state.
#[derive(Clone, Default, Serialize, Deserialize, GraphState)]
#[graph_state(update_derive())]
pub struct Generic<T> {
    /// Items.
    #[reduce(append)]
    pub items: Vec<T>,
}

/// A state with no fields at all.
#[derive(Clone, Default, Serialize, Deserialize, GraphState)]
pub struct Empty {}

mod private {
    use dashflow_graph::GraphState;
    use serde::{Deserialize, Serialize};

    /// A state nobody outside this module sees; its builder methods go unused.
    #[derive(Clone, Default, Serialize, Deserialize, GraphState)]
    pub(crate) struct Hidden {
        pub(crate) count: u32,
        #[reduce(max)]
        pub(crate) best: u32,
    }
}

fn main() {
    let mut state = Public::default();
    state.apply(PublicUpdate::default().label("x"));
    Public::merge(&mut PublicUpdate::default(), PublicUpdate::default());
    let mut hidden = private::Hidden::default();
    hidden.apply(private::HiddenUpdate::default());
    let _ = (state.label, hidden.count, hidden.best);
    let mut empty = Empty {};
    empty.apply(EmptyUpdate::default());
    Empty::for_each_overwrite(&EmptyUpdate {}, |_| {});
    let _ = Generic::<u8>::default();
}
