use std::sync::Arc;

use dashflow_graph::{GraphState, NodeError, StateGraph};

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, GraphState)]
struct Chat {
    text: String,
}

async fn reply(state: Arc<Chat>) -> Result<Chat, NodeError> {
    Ok(Chat { text: state.text.clone() })
}

fn main() {
    let mut graph = StateGraph::<Chat>::new();
    graph.add_node("reply", reply);
}
