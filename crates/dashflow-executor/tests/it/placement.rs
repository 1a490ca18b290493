//! Where a node runs: `NodeOptions::cpu_bound` on the process's CPU pool, `blocking` on a
//! thread that may block, and neither ever inline on the runtime's thread, alone or not.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use crate::common::Compiled;
use dashflow_executor::RunConfig;
use dashflow_graph::{END, NodeError, NodeOptions, Placement, START, StateGraph};
use dashflow_scheduler::{TokioScheduler, WorkStealingPool};

use crate::common::{Trail, TrailUpdate};

/// The thread each node ran on, by node name.
type Threads = Arc<Mutex<Vec<(&'static str, ThreadId, Option<String>)>>>;

fn recording(
    name: &'static str,
    threads: &Threads,
) -> impl Fn(Arc<Trail>) -> std::future::Ready<Result<TrailUpdate, NodeError>> + Send + Sync + 'static {
    let threads = Arc::clone(threads);
    move |_| {
        let current = std::thread::current();
        threads.lock().unwrap().push((name, current.id(), current.name().map(str::to_owned)));
        std::future::ready(Ok(TrailUpdate::default().log(vec![name.to_owned()])))
    }
}

#[tokio::test]
async fn cpu_bound_nodes_run_on_the_pool_blocking_ones_off_the_runtime_and_async_ones_inline() {
    let threads = Threads::default();
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("plain", recording("plain", &threads))
        .add_node_with("crunch", recording("crunch", &threads), NodeOptions::new().cpu_bound())
        .add_node_with("legacy", recording("legacy", &threads), NodeOptions::new().blocking())
        .add_node_with("crunch_a", recording("crunch_a", &threads), NodeOptions::new().cpu_bound())
        .add_node("plain_b", recording("plain_b", &threads))
        .add_edge(START, "plain")
        .add_edge("plain", "crunch")
        .add_edge("crunch", "legacy")
        .add_parallel_edges("legacy", ["crunch_a", "plain_b"])
        .add_edge("crunch_a", END)
        .add_edge("plain_b", END);
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();
    assert_eq!(result.state.log.len(), 5);

    let runtime_thread = std::thread::current().id();
    for (node, thread, name) in threads.lock().unwrap().iter() {
        let on_pool = name.as_deref().is_some_and(|name| name.starts_with("dashflow-global-pool"));
        match *node {
            // Async tasks run on the runtime: a lone one inline, and a parallel one as a tokio
            // task, here on the current-thread runtime's (the test's) thread.
            "plain" | "plain_b" => assert_eq!(*thread, runtime_thread, "{node}"),
            "crunch" | "crunch_a" => assert!(on_pool, "{node} ran on {name:?}"),
            "legacy" => {
                assert_ne!(*thread, runtime_thread, "{node} ran on the runtime's thread");
                assert!(!on_pool, "{node} ran on the CPU pool");
            }
            other => panic!("unexpected node {other}"),
        }
    }
}

/// A lone node of `options` that blocks its thread until a task of the current-thread
/// runtime that runs the graph answers: it finishes only if it does not run on that
/// runtime's thread.
async fn a_lone_node_leaves_the_runtime_free(options: NodeOptions) {
    let (answer, waiting) = mpsc::channel::<()>();
    let waiting = Arc::new(Mutex::new(waiting));
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node_with(
            "wait",
            move |_: Arc<Trail>| {
                // A generous bound that turns a deadlock (the node blocking the runtime that
                // must answer it) into a failure instead of a hung test.
                let answered = waiting.lock().unwrap().recv_timeout(Duration::from_secs(60)).is_ok();
                std::future::ready(if answered {
                    Ok(TrailUpdate::default().note("answered"))
                } else {
                    Err(NodeError::msg("the runtime never ran the answering task: the node blocked it"))
                })
            },
            options,
        )
        .add_edge(START, "wait")
        .add_edge("wait", END);
    let app = graph.compiled().unwrap();
    tokio::spawn(async move { answer.send(()).unwrap() });
    let result = app.invoke(Trail::default(), RunConfig::new()).await.unwrap();
    assert_eq!(result.state.note, "answered");
}

#[tokio::test]
async fn a_lone_cpu_bound_node_never_runs_inline_on_the_runtime() {
    a_lone_node_leaves_the_runtime_free(NodeOptions::new().cpu_bound()).await;
}

#[tokio::test]
async fn a_lone_blocking_node_never_runs_inline_on_the_runtime() {
    a_lone_node_leaves_the_runtime_free(NodeOptions::new().blocking()).await;
}

/// A CPU-bound node, a blocking one and an async pair in parallel after them, each recording
/// its thread.
fn one_node_of_each_placement(threads: &Threads) -> StateGraph<Trail> {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node_with("crunch", recording("crunch", threads), NodeOptions::new().cpu_bound())
        .add_node_with("legacy", recording("legacy", threads), NodeOptions::new().blocking())
        .add_node("plain_a", recording("plain_a", threads))
        .add_node("plain_b", recording("plain_b", threads))
        .add_edge(START, "crunch")
        .add_edge("crunch", "legacy")
        .add_parallel_edges("legacy", ["plain_a", "plain_b"])
        .add_edge("plain_a", END)
        .add_edge("plain_b", END);
    graph
}

#[tokio::test]
async fn a_graph_runs_each_placement_on_the_scheduler_it_was_given_for_it() {
    let threads = Threads::default();
    let pool = |name: &str| WorkStealingPool::builder().threads(1).thread_name(name).build().unwrap();
    let app = one_node_of_each_placement(&threads)
        .compiled()
        .unwrap()
        .with_scheduler_for(Placement::CpuBound, pool("cpu-of-graph"))
        .with_scheduler_for(Placement::Blocking, pool("blocking-of-graph"))
        .with_scheduler_for(Placement::Async, pool("async-of-graph"));
    let result = app.invoke(Trail::default(), RunConfig::new()).await.unwrap();
    assert_eq!(result.state.log.len(), 4);

    for (node, _, name) in threads.lock().unwrap().iter() {
        let expected = match *node {
            "crunch" => "cpu-of-graph-0",
            "legacy" => "blocking-of-graph-0",
            "plain_a" | "plain_b" => "async-of-graph-0",
            other => panic!("unexpected node {other}"),
        };
        assert_eq!(name.as_deref(), Some(expected), "{node}");
    }
}

#[tokio::test]
async fn cpu_bound_nodes_given_the_tokio_scheduler_run_on_the_runtime_and_the_others_keep_their_routes() {
    let threads = Threads::default();
    let app = one_node_of_each_placement(&threads)
        .compiled()
        .unwrap()
        .with_scheduler_for(Placement::CpuBound, TokioScheduler);
    app.invoke(Trail::default(), RunConfig::new()).await.unwrap();

    let runtime_thread = std::thread::current().id();
    for (node, thread, name) in threads.lock().unwrap().iter() {
        match *node {
            // The test's current-thread runtime runs every tokio task on its own thread.
            "crunch" | "plain_a" | "plain_b" => assert_eq!(*thread, runtime_thread, "{node} ran on {name:?}"),
            "legacy" => assert_ne!(*thread, runtime_thread, "the blocking node ran on the runtime's thread"),
            other => panic!("unexpected node {other}"),
        }
    }
}
