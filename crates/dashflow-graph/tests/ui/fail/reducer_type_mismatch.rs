// A reducer that does not fit the field's type is reported at the attribute naming it.
use dashflow_graph::GraphState;
use serde::{Deserialize, Serialize};

fn concat(acc: &mut String, new: &str) {
    acc.push_str(new);
}

#[derive(Clone, Serialize, Deserialize, GraphState)]
struct State {
    #[reduce(with = concat)]
    log: String,
}

fn main() {}
