// A field has exactly one reducer.
use dashflow_graph::GraphState;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize, GraphState)]
struct State {
    #[reduce(append)]
    #[reduce(append)]
    notes: Vec<String>,
}

fn main() {}
