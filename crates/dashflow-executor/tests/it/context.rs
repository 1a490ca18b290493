//! What a node learns from its `NodeContext`, and run identity.

use std::sync::{Arc, Mutex};

use crate::common::Compiled;
use dashflow_executor::RunConfig;
use dashflow_graph::{END, NodeContext, START, StateGraph, TaskId};
use dashflow_telemetry::{RunId, RunIds};

use crate::common::{Trail, TrailUpdate};

/// What one node execution saw in its context.
#[derive(Clone, Debug)]
struct Seen {
    step: u64,
    attempt: u32,
    task: TaskId,
    key: String,
    thread: Option<String>,
    run: RunIds,
}

type Sightings = Arc<Mutex<Vec<Seen>>>;

fn observer(
    sightings: &Sightings,
) -> impl Fn(Arc<Trail>, NodeContext) -> std::future::Ready<Result<TrailUpdate, dashflow_graph::NodeError>>
+ Send
+ Sync
+ 'static {
    let sightings = Arc::clone(sightings);
    move |_, ctx| {
        sightings.lock().unwrap().push(Seen {
            step: ctx.step(),
            attempt: ctx.attempt(),
            task: ctx.task_id().clone(),
            key: ctx.idempotency_key(),
            thread: ctx.thread_id().map(str::to_owned),
            run: *ctx.run(),
        });
        std::future::ready(Ok(TrailUpdate::default()))
    }
}

#[tokio::test]
async fn node_context_reports_step_attempt_task_thread_and_an_idempotency_key() {
    let sightings = Sightings::default();
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("first", observer(&sightings))
        .add_node("x", observer(&sightings))
        .add_node("y", observer(&sightings))
        .add_edge(START, "first")
        .add_parallel_edges("first", ["x", "y"])
        .add_edge("x", END)
        .add_edge("y", END);
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::thread("thread-7")).await.unwrap();

    let mut seen = sightings.lock().unwrap().clone();
    seen.sort_by_key(|seen| (seen.task.step, seen.task.index));
    let tasks: Vec<(u64, &str, u32)> = seen.iter().map(|s| (s.task.step, &*s.task.node, s.task.index)).collect();
    assert_eq!(tasks, [(1, "first", 0), (2, "x", 0), (2, "y", 1)]);
    for s in &seen {
        assert_eq!(s.step, s.task.step);
        assert_eq!(s.attempt, 1);
        assert_eq!(s.thread.as_deref(), Some("thread-7"));
        assert_eq!(s.run, RunIds::root(result.run_id));
        assert!(s.key.contains("thread-7"), "{}", s.key);
    }
    assert_eq!(seen[2].key, "thread-7/2:y:1");
    // Keys tell tasks apart.
    assert_ne!(seen[1].key, seen[2].key);
}

#[tokio::test]
async fn without_a_thread_the_idempotency_key_names_the_run() {
    let sightings = Sightings::default();
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("only", observer(&sightings)).add_edge(START, "only").add_edge("only", END);
    let run_id = RunId::new();
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new().run_id(run_id)).await.unwrap();

    assert_eq!(result.run_id, run_id);
    let seen = sightings.lock().unwrap()[0].clone();
    assert_eq!(seen.thread, None);
    assert_eq!(seen.key, format!("{run_id}/1:only:0"));
    assert_eq!(seen.run, RunIds::root(run_id));
}

/// What the tests pass as a run's context: who the run acts for.
struct Caller {
    user: &'static str,
}

/// A node that writes the caller's name, read from the run's context.
fn greeter(_: Arc<Trail>, ctx: NodeContext) -> std::future::Ready<Result<TrailUpdate, dashflow_graph::NodeError>> {
    std::future::ready(
        ctx.require_context::<Caller>()
            .map(|caller| TrailUpdate::default().log(vec![format!("hello {}", caller.user)])),
    )
}

#[tokio::test]
async fn nodes_read_their_runs_own_context_even_in_parallel_and_in_subgraphs() {
    let mut child = StateGraph::<Trail>::new();
    child.add_node("inner", greeter).add_edge(START, "inner").add_edge("inner", END);
    let child = child.compiled().unwrap();
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("left", greeter)
        .add_node("right", greeter)
        .add_node("nested", child)
        .add_parallel_edges(START, ["left", "right"])
        .add_edge("left", "nested")
        .add_edge("right", "nested")
        .add_edge("nested", END);
    let app = graph.compiled().unwrap();
    // Two concurrent runs of one graph, each with its own caller.
    let (ann, bob) = tokio::join!(
        app.invoke(Trail::default(), RunConfig::new().context(Caller { user: "ann" })),
        app.invoke(Trail::default(), RunConfig::new().context(Caller { user: "bob" })),
    );
    assert_eq!(ann.unwrap().state.log, ["hello ann", "hello ann", "hello ann"]);
    assert_eq!(bob.unwrap().state.log, ["hello bob", "hello bob", "hello bob"]);
}

#[tokio::test]
async fn a_node_that_needs_a_context_the_run_lacks_fails_naming_the_type() {
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("greet", greeter).add_edge(START, "greet").add_edge("greet", END);
    let app = graph.compiled().unwrap();
    for (config, has) in [(RunConfig::new(), "none"), (RunConfig::new().context(7_u32), "one of another type")] {
        let error = app.invoke(Trail::default(), config).await.unwrap_err();
        let message = dashflow_telemetry::Report(&error).to_string();
        assert!(message.contains("node `greet` needs a run context of type"), "{message}");
        assert!(message.contains("Caller"), "{message}");
        assert!(message.contains(&format!("this run has {has}")), "{message}");
        assert!(message.contains("RunConfig::context"), "{message}");
    }
}

#[test]
fn a_detached_context_carries_a_context_for_unit_tests_of_nodes() {
    let ctx = NodeContext::detached_with_context("greet", Caller { user: "cy" });
    assert_eq!(ctx.context::<Caller>().map(|caller| caller.user), Some("cy"));
    assert!(NodeContext::detached("greet").context::<Caller>().is_none());
}

/// `fetch` -> `one` and `two` in parallel, each the same subgraph, whose own first node is
/// also called `fetch`: three tasks with the task id `1:fetch:0` in one thread.
fn fetching_twice(sightings: &Sightings) -> dashflow_executor::CompiledGraph<Trail> {
    let mut inner = StateGraph::<Trail>::named("inner");
    inner.add_node("fetch", observer(sightings)).add_edge(START, "fetch").add_edge("fetch", END);
    let inner = inner.compiled().unwrap();
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("fetch", observer(sightings))
        .add_node("one", inner.clone())
        .add_node("two", inner)
        .add_edge(START, "fetch")
        .add_parallel_edges("fetch", ["one", "two"])
        .add_edge("one", END)
        .add_edge("two", END);
    graph.compiled().unwrap()
}

#[tokio::test]
async fn tasks_of_two_runs_of_one_subgraph_have_keys_of_their_own() {
    let sightings = Sightings::default();
    let checkpointer = Arc::new(dashflow_checkpoint_memory::MemoryCheckpointer::new());
    let app = fetching_twice(&sightings).with_checkpointer(checkpointer);
    app.invoke(Trail::default(), RunConfig::thread("t")).await.unwrap();
    let mut keys: Vec<String> = sightings.lock().unwrap().iter().map(|seen| seen.key.clone()).collect();
    keys.sort();
    assert_eq!(keys, ["t/1:fetch:0", "t/2:one:0|1:fetch:0", "t/2:two:1|1:fetch:0"]);
}

#[tokio::test]
async fn tasks_of_subgraph_runs_nobody_checkpoints_are_keyed_by_their_run() {
    let sightings = Sightings::default();
    fetching_twice(&sightings).invoke(Trail::default(), RunConfig::thread("t")).await.unwrap();
    let seen = sightings.lock().unwrap().clone();
    let (top, nested): (Vec<&Seen>, Vec<&Seen>) = seen.iter().partition(|seen| seen.run.depth == 0);
    assert_eq!(top.iter().map(|seen| seen.key.as_str()).collect::<Vec<_>>(), ["t/1:fetch:0"]);
    assert_eq!(nested.len(), 2);
    for seen in &nested {
        assert_eq!(seen.key, format!("{}/1:fetch:0", seen.run.run_id));
    }
    assert_ne!(nested[0].key, nested[1].key);
}

#[tokio::test]
async fn a_subgraph_task_run_again_after_a_pause_keeps_its_key() {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&keys);
    let mut inner = StateGraph::<Trail>::named("inner");
    inner
        .add_node("ask", move |_: Arc<Trail>, ctx: NodeContext| {
            seen.lock().unwrap().push(ctx.idempotency_key());
            async move {
                ctx.interrupt("go on?")?;
                Ok::<_, dashflow_graph::NodeError>(TrailUpdate::default())
            }
        })
        .add_edge(START, "ask")
        .add_edge("ask", END);
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("sub", inner.compiled().unwrap()).add_edge(START, "sub").add_edge("sub", END);
    let checkpointer = Arc::new(dashflow_checkpoint_memory::MemoryCheckpointer::new());
    let app = graph.compiled().unwrap().with_checkpointer(checkpointer);
    let paused = app.invoke(Trail::default(), RunConfig::thread("t")).await.unwrap();
    assert!(matches!(paused.status, dashflow_executor::RunStatus::Interrupted { .. }), "{:?}", paused.status);
    let done = app.resume(dashflow_graph::Command::resume("yes"), RunConfig::thread("t")).await.unwrap();
    assert!(matches!(done.status, dashflow_executor::RunStatus::Completed), "{:?}", done.status);
    assert_eq!(*keys.lock().unwrap(), ["t/1:sub:0|1:ask:0", "t/1:sub:0|1:ask:0"]);
}
