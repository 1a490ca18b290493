//! Send edges: map-reduce tasks with their own input.

use std::sync::Arc;

use crate::common::Compiled;
use dashflow_executor::{Error, RunConfig};
use dashflow_graph::{END, GraphState, NodeError, START, Send, StateGraph};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::common::{Ledger, trace};

/// A batch of items mapped one task each, with the results reduced by appending.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Batch {
    items: Vec<String>,
    /// A task's own item: its position in `items`, and the item.
    item: Option<(usize, String)>,
    #[reduce(append)]
    results: Vec<String>,
    #[reduce(add)]
    reductions: u32,
}

/// One `Send` per item, each task reading only its item.
fn per_item(batch: &Batch) -> Vec<Send<Batch>> {
    batch
        .items
        .iter()
        .enumerate()
        .map(|(index, item)| Send::new("work", Batch { item: Some((index, item.clone())), ..Batch::default() }))
        .collect()
}

fn batch(items: &[&str]) -> Batch {
    Batch { items: items.iter().map(|&item| item.to_owned()).collect(), ..Batch::default() }
}

#[tokio::test]
async fn send_edges_map_each_item_to_a_task_and_merge_results_in_frontier_order() {
    let items = ["a", "b", "c", "d"];
    // Task `i` may finish only after the tasks behind it have, so tasks complete in reverse
    // order; the merged results must still follow the order the router sent them in.
    let (turn, _) = watch::channel(0_usize);
    let turn = Arc::new(turn);
    let completed = Ledger::default();
    let work = {
        let completed = completed.clone();
        move |task: Arc<Batch>| {
            let (turn, completed) = (Arc::clone(&turn), completed.clone());
            async move {
                let (index, item) = task.item.clone().ok_or_else(|| NodeError::msg("a work task without an item"))?;
                let mut observed = turn.subscribe();
                observed.wait_for(|done| *done == items.len() - 1 - index).await.map_err(NodeError::new)?;
                completed.push(item.clone());
                turn.send_modify(|done| *done += 1);
                // The task sees its own input, not the shared state's items.
                Ok(BatchUpdate::default().results(vec![format!("{}:{}", item.to_uppercase(), task.items.len())]))
            }
        }
    };
    let mut graph = StateGraph::<Batch>::new();
    graph
        .add_node("plan", |_: Arc<Batch>| async move { Ok(BatchUpdate::default()) })
        .add_node("work", work)
        .add_node("reduce", |batch: Arc<Batch>| async move {
            Ok(BatchUpdate::default().reductions(1_u32).results(vec![format!("reduced {}", batch.results.len())]))
        })
        .add_edge(START, "plan")
        .add_send_edges("plan", per_item, ["work"])
        .add_edge("work", "reduce")
        .add_edge("reduce", END);
    let result = graph.compiled().unwrap().invoke(batch(&items), RunConfig::new()).await.unwrap();

    assert_eq!(completed.entries(), ["d", "c", "b", "a"]);
    assert_eq!(result.state.results, ["A:0", "B:0", "C:0", "D:0", "reduced 4"]);
    // The reduce step ran once, after all the map tasks.
    assert_eq!(result.state.reductions, 1);
    let work_steps: Vec<u64> = result.nodes.iter().filter(|run| run.node == "work").map(|run| run.step).collect();
    assert_eq!(work_steps, [2, 2, 2, 2]);
    assert_eq!(trace(&result).last(), Some(&(3, "reduce".to_owned())));
    // The tasks' own inputs never leak into the shared state.
    assert_eq!(result.state.item, None);
    assert_eq!(result.state.items, items);
}

#[tokio::test]
async fn send_edges_from_start_run_the_tasks_in_the_first_superstep() {
    let mut graph = StateGraph::<Batch>::new();
    graph
        .add_node("work", |task: Arc<Batch>| async move {
            let item = task.item.clone().map(|(_, item)| item).unwrap_or_default();
            Ok(BatchUpdate::default().results(vec![item]))
        })
        .add_send_edges(START, per_item, ["work"])
        .add_edge("work", END);
    let result = graph.compiled().unwrap().invoke(batch(&["x", "y", "z"]), RunConfig::new()).await.unwrap();

    assert_eq!(result.state.results, ["x", "y", "z"]);
    assert_eq!(result.steps, 1);
    assert_eq!(result.nodes.len(), 3);
}

#[tokio::test]
async fn a_send_router_returning_no_tasks_ends_the_branch() {
    let mut graph = StateGraph::<Batch>::new();
    graph
        .add_node("plan", |_: Arc<Batch>| async move { Ok(BatchUpdate::default().reductions(1_u32)) })
        .add_node("work", |_: Arc<Batch>| async move { Ok(BatchUpdate::default().results(vec!["worked".to_owned()])) })
        .add_edge(START, "plan")
        .add_send_edges("plan", per_item, ["work"])
        .add_edge("work", END);
    let result = graph.compiled().unwrap().invoke(Batch::default(), RunConfig::new()).await.unwrap();

    assert_eq!(result.steps, 1);
    assert!(result.state.results.is_empty());
}

#[tokio::test]
async fn a_send_to_a_node_that_does_not_exist_is_an_unknown_target_error() {
    let mut graph = StateGraph::<Batch>::new();
    graph
        .add_node("plan", |_: Arc<Batch>| async move { Ok(BatchUpdate::default()) })
        .add_node("work", |_: Arc<Batch>| async move { Ok(BatchUpdate::default()) })
        .add_edge(START, "plan")
        // The declared targets are valid; the router sends elsewhere at run time.
        .add_send_edges("plan", |_: &Batch| vec![Send::new("ghost", Batch::default())], ["work"])
        .add_edge("work", END);
    let error = graph.compiled().unwrap().invoke(Batch::default(), RunConfig::new()).await.unwrap_err();

    match error {
        Error::UnknownTarget { node, target } => {
            assert_eq!(&*node, "plan");
            assert_eq!(target, "ghost");
        }
        other => panic!("expected UnknownTarget, got {other:?}"),
    }
}
