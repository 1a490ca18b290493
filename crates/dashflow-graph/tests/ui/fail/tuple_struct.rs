// Only structs with named fields can derive `GraphState`.
use dashflow_graph::GraphState;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize, GraphState)]
struct State(Vec<String>, u64);

fn main() {}
