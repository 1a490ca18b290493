// `whole` combines with nothing; unknown and always-derived names are rejected.
use dashflow_graph::GraphState;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize, GraphState)]
#[graph_state(whole, update = "Delta")]
struct Whole {
    #[reduce(append)]
    notes: Vec<String>,
}

#[derive(Clone, Serialize, Deserialize, GraphState)]
#[graph_state(update_derive(Debug, Clone), rename = "Delta")]
struct Unknown {
    notes: Vec<String>,
}

fn main() {}
