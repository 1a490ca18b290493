//! The benchmark workloads of the shared benchmark brief, built once and shared by the criterion
//! benches (and by anyone who wants to profile them).
//!
//! - B1 `chain100`: 100 nodes in a line, each adds 1 to a counter.
//! - B2 `fanout16`: START -> split -> 16 parallel branches that each append their index ->
//!   join (total = sum) -> END.
//! - B3 `loop1000`: one node adds 1 and loops back to itself while the counter is below 1000.
//! - B4 `chain100_sqlite`: B1 checkpointed into a SQLite file, a new thread per invoke (see
//!   [`durable`], which also has the large-state workload).
//! - C1 `concurrent1000`: 1,000 runs at once of a 10-node chain with the memory checkpointer,
//!   each on a new thread ([`concurrent_runs`]); reported in runs per second.
//! - B7, B7s, B7n: CPU-bound fan-outs on each route for CPU-bound nodes (see [`cpu`]).

use std::sync::Arc;

use dashflow::Placement;
use dashflow::prelude::*;

pub mod cpu;
pub mod durable;
pub mod exporters;

/// State of B1 and B3.
#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
pub struct Counter {
    /// Incremented by every node.
    #[reduce(add)]
    pub counter: u64,
}

/// State of B2.
#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
pub struct Fanout {
    /// Each branch appends its index.
    #[reduce(append)]
    pub items: Vec<u64>,
    /// Written by the join node.
    pub total: u64,
}

async fn increment(_: Arc<Counter>) -> Result<CounterUpdate> {
    Ok(CounterUpdate::default().counter(1u64))
}

/// Whether a workload runs with the default observers (`compile()` of the facade) or with
/// none (`DASHFLOW_TRACE=0 DASHFLOW_WAL=0`, the executor's own `compile()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Telemetry {
    /// The facade's defaults.
    Defaults,
    /// No observers at all.
    Off,
}

/// B1: 100 nodes in a line.
pub fn chain100(telemetry: Telemetry) -> CompiledGraph<Counter> {
    chain("chain100", 100, telemetry)
}

/// Runs of C1 started at once.
pub const CONCURRENT_RUNS: usize = 1_000;

/// Nodes of C1's chain.
pub const CONCURRENT_NODES: usize = 10;

/// C1's graph: 10 nodes in a line, checkpointed into a new [`MemoryCheckpointer`].
pub fn chain10_in_memory(telemetry: Telemetry) -> CompiledGraph<Counter> {
    chain("chain10", CONCURRENT_NODES, telemetry).with_checkpointer(dashflow::MemoryCheckpointer::new())
}

/// C1: starts `runs` runs of `app` (a 10-node chain) at once, each on a new thread of
/// `threads`, and waits for all of them; checks that each counted to 10.
pub async fn concurrent_runs(
    app: &CompiledGraph<Counter>,
    runs: usize,
    threads: &durable::Threads,
) -> Result<(), String> {
    let handles: Vec<_> = (0..runs)
        .map(|_| {
            let app = app.clone();
            let config = RunConfig::thread(threads.next_id()).recursion_limit(CONCURRENT_NODES as u32);
            tokio::spawn(async move { app.invoke(Counter::default(), config).await })
        })
        .collect();
    for handle in handles {
        let result = handle.await.map_err(|e| format!("C1: a run's task failed: {e}"))?;
        let result = result.map_err(|e| format!("C1: {e}"))?;
        check("C1 counter", result.state.counter, CONCURRENT_NODES as u64)?;
    }
    Ok(())
}

/// `nodes` nodes in a line, each adding 1 to the counter.
fn chain(name: &str, nodes: usize, telemetry: Telemetry) -> CompiledGraph<Counter> {
    let mut graph = StateGraph::<Counter>::named(name);
    let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
    for name in &names {
        graph.add_node(name.as_str(), increment);
    }
    graph.add_edge(START, names[0].as_str());
    for pair in names.windows(2) {
        graph.add_edge(pair[0].as_str(), pair[1].as_str());
    }
    graph.add_edge(names[nodes - 1].as_str(), END);
    compile(graph, telemetry)
}

/// B2: a fan-out of 16 branches joined into one.
pub fn fanout16(telemetry: Telemetry) -> CompiledGraph<Fanout> {
    let mut graph = StateGraph::<Fanout>::named("fanout16");
    graph.add_node("split", |_: Arc<Fanout>| async { Ok(FanoutUpdate::default()) });
    let branches: Vec<String> = (0..16).map(|i| format!("branch{i}")).collect();
    for (index, name) in (0u64..).zip(&branches) {
        graph.add_node(
            name.as_str(),
            move |_: Arc<Fanout>| async move { Ok(FanoutUpdate::default().items(vec![index])) },
        );
    }
    graph.add_node("join", |state: Arc<Fanout>| async move {
        Ok(FanoutUpdate::default().total(state.items.iter().sum::<u64>()))
    });
    graph
        .add_edge(START, "split")
        .add_parallel_edges("split", branches.iter().map(String::as_str))
        .add_join(branches.iter().map(String::as_str), "join")
        .add_edge("join", END);
    compile(graph, telemetry)
}

/// How long each branch of [`fanout16_cpu`] computes.
pub const FANOUT_CPU_WORK: std::time::Duration = std::time::Duration::from_micros(50);

/// B2 with branches that compute for [`FANOUT_CPU_WORK`] without awaiting: async nodes (polled
/// on the run's own task, so one after another) or, with `placement`, CPU-bound ones (on the
/// work-stealing pool, in parallel). For the rule of "Where a node runs" in the guide.
pub fn fanout16_cpu(telemetry: Telemetry, placement: Placement) -> CompiledGraph<Fanout> {
    let mut graph = StateGraph::<Fanout>::named("fanout16_cpu");
    graph.add_node("split", |_: Arc<Fanout>| async { Ok(FanoutUpdate::default()) });
    let branches: Vec<String> = (0..16).map(|i| format!("branch{i}")).collect();
    let mut options = NodeOptions::new();
    options.placement = placement;
    for (index, name) in (0u64..).zip(&branches) {
        let branch = move |_: Arc<Fanout>| async move {
            let started = std::time::Instant::now();
            while started.elapsed() < FANOUT_CPU_WORK {
                std::hint::spin_loop();
            }
            Ok(FanoutUpdate::default().items(vec![index]))
        };
        graph.add_node_with(name.as_str(), branch, options.clone());
    }
    graph.add_node("join", |state: Arc<Fanout>| async move {
        Ok(FanoutUpdate::default().total(state.items.iter().sum::<u64>()))
    });
    graph
        .add_edge(START, "split")
        .add_parallel_edges("split", branches.iter().map(String::as_str))
        .add_join(branches.iter().map(String::as_str), "join")
        .add_edge("join", END);
    compile(graph, telemetry)
}

/// B3: one node looping on itself 1000 times.
pub fn loop1000(telemetry: Telemetry) -> CompiledGraph<Counter> {
    let mut graph = StateGraph::<Counter>::named("loop1000");
    graph.add_node("inc", increment).add_edge(START, "inc").add_conditional_edges(
        "inc",
        |state: &Counter| if state.counter < 1000 { "again" } else { "done" },
        [("again", "inc"), ("done", END)],
    );
    compile(graph, telemetry)
}

/// The run configuration of B1: enough supersteps for 100 nodes.
pub fn chain100_config() -> RunConfig {
    RunConfig::new().recursion_limit(100)
}

/// The run configuration of B3: enough supersteps for 1000 iterations.
pub fn loop1000_config() -> RunConfig {
    RunConfig::new().recursion_limit(1000)
}

/// Runs each workload once and checks its result, so a benchmark never times a failing run.
pub async fn verify_workloads() -> Result<(), String> {
    let b1 = chain100(Telemetry::Defaults)
        .invoke(Counter::default(), chain100_config())
        .await
        .map_err(|e| format!("B1: {e}"))?;
    check("B1 counter", b1.state.counter, 100)?;
    let b2 = fanout16(Telemetry::Defaults)
        .invoke(Fanout::default(), RunConfig::new())
        .await
        .map_err(|e| format!("B2: {e}"))?;
    check("B2 total", b2.state.total, (0..16).sum())?;
    check("B2 items", b2.state.items.len() as u64, 16)?;
    let b3 = loop1000(Telemetry::Defaults)
        .invoke(Counter::default(), loop1000_config())
        .await
        .map_err(|e| format!("B3: {e}"))?;
    check("B3 counter", b3.state.counter, 1000)?;
    concurrent_runs(&chain10_in_memory(Telemetry::Defaults), CONCURRENT_RUNS, &durable::Threads::new()).await
}

fn check(what: &str, got: u64, expected: u64) -> Result<(), String> {
    if got == expected { Ok(()) } else { Err(format!("{what} is {got}, expected {expected}")) }
}

fn compile<S: GraphState>(graph: StateGraph<S>, telemetry: Telemetry) -> CompiledGraph<S> {
    let compiled = match telemetry {
        Telemetry::Defaults => graph.compile(),
        Telemetry::Off => graph.build().map(CompiledGraph::new).map_err(dashflow::Error::from),
    };
    match compiled {
        Ok(app) => app,
        // The workloads are fixed graphs; failing to compile one is a bug in this file.
        Err(error) => panic!("a benchmark graph is invalid: {error}"),
    }
}
