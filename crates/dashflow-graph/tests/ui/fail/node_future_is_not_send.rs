use std::rc::Rc;
use std::sync::Arc;

use dashflow_graph::{GraphState, NodeError, StateGraph};

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, GraphState)]
struct Chat {
    text: String,
}

async fn pause() {}

async fn reply(state: Arc<Chat>) -> Result<ChatUpdate, NodeError> {
    let draft = Rc::new(state.text.clone());
    pause().await;
    Ok(ChatUpdate::default().text((*draft).clone()))
}

fn main() {
    let mut graph = StateGraph::<Chat>::new();
    graph.add_node("reply", reply);
}
