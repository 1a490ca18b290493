// Only structs with named fields can derive `GraphState`.
use dashflow_graph::GraphState;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize, GraphState)]
enum State {
    Idle,
    Busy { task: String },
}

fn main() {}
