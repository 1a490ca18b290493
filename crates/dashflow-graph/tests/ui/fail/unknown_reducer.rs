// Malformed `#[reduce(...)]` attributes: each is reported, with the valid kinds.
use dashflow_graph::GraphState;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize, GraphState)]
struct State {
    #[reduce(concat)]
    notes: Vec<String>,
    #[reduce]
    total: u64,
    #[reduce(with)]
    best: u64,
    #[reduce(append, add)]
    log: Vec<String>,
}

fn main() {}
