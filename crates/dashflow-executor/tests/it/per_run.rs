//! `RunConfig::checkpointer`: a run that checkpoints somewhere other than its graph.

use std::sync::Arc;

use dashflow_checkpoint::{Checkpointer, ListOptions};
use dashflow_checkpoint_memory::MemoryCheckpointer;
use dashflow_executor::{Durability, RunConfig};
use dashflow_graph::{END, START, StateGraph};
use dashflow_telemetry::RunId;

use crate::common::{Compiled, Ledger, Trail, TrailUpdate, recorded};

fn two_steps(ledger: &Ledger) -> dashflow_executor::CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("a", recorded("a", ledger))
        .add_node("b", recorded("b", ledger))
        .add_edge(START, "a")
        .add_edge("a", "b");
    graph.add_edge("b", END);
    graph.compiled().unwrap()
}

#[tokio::test]
async fn a_per_run_checkpointer_takes_the_runs_checkpoints_instead_of_the_graphs() {
    let ledger = Ledger::default();
    let graphs = Arc::new(MemoryCheckpointer::new());
    let runs: Arc<dyn Checkpointer> = Arc::new(MemoryCheckpointer::new());
    let app = two_steps(&ledger).with_checkpointer(Arc::clone(&graphs));
    let config = RunConfig::thread("t").durability(Durability::Sync).checkpointer(Arc::clone(&runs));
    let result = app.invoke(Trail::default(), config).await.unwrap();
    assert_eq!(result.state.log, ["a", "b"]);
    assert_eq!(runs.list("t", &ListOptions::new()).await.unwrap().len(), 3, "input, a, b");
    assert!(graphs.list("t", &ListOptions::new()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_graph_without_a_checkpointer_is_durable_for_a_run_that_brings_one() {
    let ledger = Ledger::default();
    let runs: Arc<dyn Checkpointer> = Arc::new(MemoryCheckpointer::new());
    let app = two_steps(&ledger).interrupt_before(["b"]).unwrap();
    let config = RunConfig::thread("t").checkpointer(Arc::clone(&runs));
    let paused = app.invoke(Trail::default(), config.clone()).await.unwrap();
    assert_eq!(paused.state.log, ["a"]);
    let done = app.resume(dashflow_graph::Command::new(), config).await.unwrap();
    assert_eq!(done.state.log, ["a", "b"]);
    assert_eq!(ledger.entries(), ["a", "b"]);
}

#[tokio::test]
async fn updates_and_resumed_updates_carry_their_run_id() {
    let ledger = Ledger::default();
    let app = two_steps(&ledger).with_checkpointer(MemoryCheckpointer::new());
    app.invoke(Trail::default(), RunConfig::thread("t")).await.unwrap();
    let checkpointer = app.checkpointer().unwrap();
    let by = |run_id: RunId, source: &str| {
        ListOptions::new().metadata("run_id", run_id.to_string()).metadata("source", source.to_owned())
    };

    // An update starts a run from its input checkpoint, which names the run.
    let updating = RunId::new();
    let update = TrailUpdate::default().log(vec!["edit".to_owned()]);
    app.invoke_update(update, RunConfig::thread("t").run_id(updating)).await.unwrap();
    assert_eq!(checkpointer.list("t", &by(updating, "input")).await.unwrap().len(), 1);

    // A resume's update is a checkpoint of its own, which names the run too.
    let resuming = RunId::new();
    let command = dashflow_graph::Command::update(TrailUpdate::default().log(vec!["again".to_owned()]));
    app.resume(command, RunConfig::thread("t").run_id(resuming)).await.unwrap();
    assert_eq!(checkpointer.list("t", &by(resuming, "update")).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_run_that_answers_an_interrupt_names_itself_on_what_it_writes_next() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("ask", |_: Arc<Trail>, ctx: dashflow_graph::NodeContext| async move {
            let answer = ctx.interrupt("name?")?;
            Ok::<_, dashflow_graph::NodeError>(TrailUpdate::default().log(vec![answer.to_string()]))
        })
        .add_edge(START, "ask")
        .add_edge("ask", END);
    let app = graph.compiled().unwrap().with_checkpointer(MemoryCheckpointer::new());
    app.invoke(Trail::default(), RunConfig::thread("t").durability(Durability::Sync)).await.unwrap();
    let answering = RunId::new();
    let config = RunConfig::thread("t").durability(Durability::Sync).run_id(answering);
    app.resume(dashflow_graph::Command::resume("ada"), config).await.unwrap();
    let checkpointer = app.checkpointer().unwrap();
    let named = checkpointer
        .list("t", &ListOptions::new().metadata("run_id", answering.to_string()).metadata("source", "loop"))
        .await
        .unwrap();
    assert_eq!(named.len(), 1, "the step the answer completed names the run");
}
