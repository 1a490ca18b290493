//! One compiled graph shared by many concurrent runs.

use std::collections::HashSet;
use std::sync::Arc;

use crate::common::Compiled;
use dashflow_executor::{CompiledGraph, Error, ExecutionResult, RunConfig, RunStream};
use dashflow_graph::{END, START, StateGraph};

use crate::common::{Trail, TrailUpdate};

/// Compiles only if `T` can be shared across threads and cloned into tasks.
fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

fn assert_send<T: Send + 'static>() {}

#[test]
fn compiled_graphs_results_and_errors_can_cross_threads() {
    assert_send_sync_clone::<CompiledGraph<Trail>>();
    assert_send_sync_clone::<Error>();
    assert_send::<RunStream<Trail>>();
    assert_send::<ExecutionResult<Trail>>();
}

/// A node that appends `{note}:{name}` after yielding, so runs interleave on the workers.
fn tagged(
    name: &'static str,
) -> impl Fn(Arc<Trail>) -> futures::future::BoxFuture<'static, Result<TrailUpdate, dashflow_graph::NodeError>>
+ Send
+ Sync
+ 'static {
    move |state| {
        Box::pin(async move {
            tokio::task::yield_now().await;
            Ok(TrailUpdate::default().log(vec![format!("{}:{name}", state.note)]).count(1_u64))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_compiled_graph_serves_two_hundred_concurrent_runs_without_crossing_state() {
    let mut graph = StateGraph::<Trail>::named("shared");
    graph
        .add_node("a", tagged("a"))
        .add_node("b", tagged("b"))
        .add_node("c", tagged("c"))
        .add_parallel_edges(START, ["a", "b"])
        .add_join(["a", "b"], "c")
        .add_edge("c", END);
    let app = graph.compiled().unwrap();

    let runs: Vec<_> = (0..200)
        .map(|index| {
            let app = app.clone();
            tokio::spawn(async move {
                let input = Trail { note: format!("run{index}"), ..Trail::default() };
                let config = RunConfig::thread(format!("thread-{index}"));
                (index, app.invoke(input, config).await)
            })
        })
        .collect();
    let mut run_ids = HashSet::new();
    for run in runs {
        let (index, result) = run.await.unwrap();
        let result = result.unwrap();
        let tag = format!("run{index}");
        assert_eq!(result.state.log, [format!("{tag}:a"), format!("{tag}:b"), format!("{tag}:c")]);
        assert_eq!(result.state.count, 3);
        assert_eq!(result.state.note, tag);
        assert!(run_ids.insert(result.run_id), "two runs shared a run id");
    }
    assert_eq!(run_ids.len(), 200);
}
