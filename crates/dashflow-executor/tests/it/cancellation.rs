//! Timeouts that hold for nodes that compute without awaiting (R18: a late result never
//! commits), on every placement, and `NodeContext::is_cancelled`/`cancelled`, which tell a long
//! computation that its attempt timed out or its run was dropped, so that it can stop.
//!
//! These tests run on real time: a node that never awaits cannot be moved past its deadline by
//! a paused clock. Every wait is bounded, and a node that is never told to stop gives up after
//! `GIVE_UP` and says so, failing the test instead of hanging it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::Compiled;
use dashflow_executor::{CompiledGraph, Error, RunConfig};
use dashflow_graph::{END, NodeContext, NodeError, NodeErrorKind, NodeOptions, RetryPolicy, START, StateGraph};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::common::{Ledger, Trail, TrailUpdate, log};

/// How long a node waits for a cancellation that should come at once before giving up.
const GIVE_UP: Duration = Duration::from_secs(30);
/// How long a test waits for a node to report.
const BOUND: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_millis(20);

/// Where the node under test runs.
#[derive(Clone, Copy, Debug)]
enum Seat {
    /// Alone in its step: inline on the run's task.
    Lone,
    /// With an async sibling: polled on the run's task with it.
    FanOut,
    CpuBound,
    Blocking,
}

const SEATS: [Seat; 4] = [Seat::Lone, Seat::FanOut, Seat::CpuBound, Seat::Blocking];

impl Seat {
    fn options(self) -> NodeOptions {
        match self {
            Seat::Lone | Seat::FanOut => NodeOptions::new(),
            Seat::CpuBound => NodeOptions::new().cpu_bound(),
            Seat::Blocking => NodeOptions::new().blocking(),
        }
    }
}

/// `START -> node -> END`, or `START -> [node, sibling] -> END` for a fan-out.
fn graph_with<M>(
    seat: Seat,
    node: impl dashflow_graph::IntoNode<Trail, M>,
    options: NodeOptions,
) -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node_with("node", node, options).add_edge("node", END);
    match seat {
        Seat::FanOut => graph
            .add_node("sibling", log("sibling"))
            .add_parallel_edges(START, ["node", "sibling"])
            .add_edge("sibling", END),
        _ => graph.add_edge(START, "node"),
    };
    graph.compiled().unwrap()
}

/// Computes for `duration` without awaiting.
fn spin(duration: Duration) {
    let started = Instant::now();
    while started.elapsed() < duration {
        std::hint::spin_loop();
    }
}

/// Computes until `ctx` says stop (or `GIVE_UP` passes); says whether it was told.
fn spin_until_cancelled(ctx: &NodeContext) -> bool {
    let started = Instant::now();
    while !ctx.is_cancelled() {
        if started.elapsed() > GIVE_UP {
            return false;
        }
        std::hint::spin_loop();
    }
    true
}

/// Asserts that `error` is a timeout of `node`; returns what the node's error says.
fn assert_timed_out(seat: Seat, error: &Error) -> String {
    match error {
        Error::NodeFailed { node, kind, source, .. } => {
            assert_eq!((&**node, *kind), ("node", NodeErrorKind::Timeout), "{seat:?}: {error}");
            source.to_string()
        }
        other => panic!("{seat:?}: expected a timeout, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_arrives_after_the_timeout_is_a_timeout_on_every_placement() {
    for seat in SEATS {
        let node = |_: Arc<Trail>| {
            // Overruns inside one poll: no await gives the timer a chance to fire first.
            spin(TIMEOUT * 5);
            std::future::ready(Ok(TrailUpdate::default().note("late")))
        };
        let app = graph_with(seat, node, seat.options().timeout(TIMEOUT));
        let error = app.invoke(Trail::default(), RunConfig::new()).await.unwrap_err();
        let message = assert_timed_out(seat, &error);
        assert!(message.contains("finished after its timeout") && message.contains("discarded"), "{seat:?}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_polling_is_cancelled_stops_once_its_timeout_passes_on_every_placement() {
    for seat in SEATS {
        let told = Ledger::default();
        let node = {
            let told = told.clone();
            move |_: Arc<Trail>, ctx: NodeContext| {
                told.push(if spin_until_cancelled(&ctx) { "told" } else { "never told" });
                std::future::ready(Ok(TrailUpdate::default().note("partial")))
            }
        };
        let app = graph_with(seat, node, seat.options().timeout(TIMEOUT));
        let error = app.invoke(Trail::default(), RunConfig::new()).await.unwrap_err();
        assert_timed_out(seat, &error);
        assert_eq!(told.entries(), ["told"], "{seat:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_timeout_starts_with_a_fresh_uncancelled_context() {
    for seat in SEATS {
        let attempts = Ledger::default();
        let node = {
            let attempts = attempts.clone();
            move |_: Arc<Trail>, ctx: NodeContext| {
                let at_start = ctx.is_cancelled();
                if ctx.attempt() == 1 {
                    spin_until_cancelled(&ctx);
                }
                attempts.push(format!("attempt {} cancelled at its start: {at_start}", ctx.attempt()));
                std::future::ready(Ok(TrailUpdate::default().note(format!("attempt {}", ctx.attempt()))))
            }
        };
        let retry = RetryPolicy::new(2).backoff(Duration::from_millis(1), 1.0, Duration::from_millis(1));
        // Long enough for the second attempt, which returns at once, to finish within it.
        let app = graph_with(seat, node, seat.options().timeout(Duration::from_millis(500)).retry(retry));
        let result = app.invoke(Trail::default(), RunConfig::new()).await.unwrap();

        assert_eq!(result.state.note, "attempt 2", "{seat:?}");
        assert_eq!(
            attempts.entries(),
            ["attempt 1 cancelled at its start: false", "attempt 2 cancelled at its start: false"],
            "{seat:?}"
        );
    }
}

/// A node that says it started, computes until told to stop, and says whether it was told.
fn reporting(
    started: mpsc::UnboundedSender<()>,
    stopped: mpsc::UnboundedSender<bool>,
) -> impl Fn(Arc<Trail>, NodeContext) -> std::future::Ready<Result<TrailUpdate, NodeError>> + Send + Sync + 'static {
    move |_, ctx| {
        let _ = started.send(());
        let _ = stopped.send(spin_until_cancelled(&ctx));
        std::future::ready(Ok(TrailUpdate::default()))
    }
}

/// What the test hears from a [`reporting`] node.
struct Reports {
    started: mpsc::UnboundedReceiver<()>,
    stopped: mpsc::UnboundedReceiver<bool>,
}

impl Reports {
    async fn started(&mut self) {
        let started = tokio::time::timeout(BOUND, self.started.recv()).await;
        assert!(matches!(started, Ok(Some(()))), "the node never started");
    }

    async fn told_to_stop(&mut self, what: &str) {
        let stopped = tokio::time::timeout(BOUND, self.stopped.recv()).await;
        assert!(matches!(stopped, Ok(Some(true))), "{what}: the node was never told to stop ({stopped:?})");
    }
}

fn off_the_runtime(options: NodeOptions) -> (CompiledGraph<Trail>, Reports) {
    let (started_tx, started) = mpsc::unbounded_channel();
    let (stopped_tx, stopped) = mpsc::unbounded_channel();
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node_with("node", reporting(started_tx, stopped_tx), options)
        .add_edge(START, "node")
        .add_edge("node", END);
    (graph.compiled().unwrap(), Reports { started, stopped })
}

#[tokio::test]
async fn a_node_off_the_runtime_polling_is_cancelled_stops_when_its_run_is_dropped() {
    for options in [NodeOptions::new().cpu_bound(), NodeOptions::new().blocking()] {
        let (app, mut reports) = off_the_runtime(options.clone());
        let mut run = Box::pin(app.invoke(Trail::default(), RunConfig::new()));
        tokio::select! {
            result = &mut run => panic!("the run ended while its node computes: {:?}", result.map(|r| r.state)),
            () = reports.started() => {}
        }
        drop(run);
        reports.told_to_stop(&format!("invoke dropped, {:?}", options.placement)).await;

        let (app, mut reports) = off_the_runtime(options.clone());
        let mut stream = app.stream(Trail::default(), RunConfig::new());
        tokio::select! {
            item = stream.next() => panic!("the stream yielded while its node computes: {item:?}"),
            () = reports.started() => {}
        }
        drop(stream);
        reports.told_to_stop(&format!("stream dropped, {:?}", options.placement)).await;
    }
}

#[tokio::test]
async fn a_node_off_the_runtime_polling_is_cancelled_stops_when_its_run_times_out() {
    let (app, mut reports) = off_the_runtime(NodeOptions::new().cpu_bound());
    let error = app.invoke(Trail::default(), RunConfig::new().timeout(TIMEOUT)).await.unwrap_err();
    assert!(matches!(error, Error::RunTimeout { step: 1, .. }), "{error:?}");
    reports.told_to_stop("run timed out").await;
}

/// A node that hands a clone of its context to a watcher task, which reports once
/// `cancelled()` resolves, and then waits forever.
fn watched(
    resolved: mpsc::UnboundedSender<&'static str>,
) -> impl Fn(Arc<Trail>, NodeContext) -> futures::future::BoxFuture<'static, Result<TrailUpdate, NodeError>>
+ Send
+ Sync
+ 'static {
    move |_, ctx| {
        let resolved = resolved.clone();
        Box::pin(async move {
            let watcher = ctx.clone();
            let report = resolved.clone();
            tokio::spawn(async move {
                watcher.cancelled().await;
                let _ = report.send(if watcher.is_cancelled() { "cancelled" } else { "resolved uncancelled" });
            });
            let _ = resolved.send("started");
            std::future::pending().await
        })
    }
}

async fn next(resolved: &mut mpsc::UnboundedReceiver<&'static str>) -> Option<&'static str> {
    tokio::time::timeout(BOUND, resolved.recv()).await.ok().flatten()
}

#[tokio::test]
async fn cancelled_resolves_when_the_attempt_times_out_and_when_the_run_is_dropped() {
    let (tx, mut resolved) = mpsc::unbounded_channel();
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node_with("node", watched(tx), NodeOptions::new().timeout(TIMEOUT))
        .add_edge(START, "node")
        .add_edge("node", END);
    let error = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap_err();
    assert_timed_out(Seat::Lone, &error);
    assert_eq!(next(&mut resolved).await, Some("started"));
    assert_eq!(next(&mut resolved).await, Some("cancelled"), "after the attempt's timeout");

    let (tx, mut resolved) = mpsc::unbounded_channel();
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("node", watched(tx)).add_edge(START, "node").add_edge("node", END);
    let app = graph.compiled().unwrap();
    let mut run = Box::pin(app.invoke(Trail::default(), RunConfig::new()));
    tokio::select! {
        result = &mut run => panic!("the run ended while its node waits: {:?}", result.map(|r| r.state)),
        started = next(&mut resolved) => assert_eq!(started, Some("started")),
    }
    drop(run);
    assert_eq!(next(&mut resolved).await, Some("cancelled"), "after the run was dropped");
}

#[tokio::test]
async fn cancelled_resolves_when_a_later_step_fails_the_run() {
    // `watch` finishes at once but leaves a watcher holding its context; `fail` fails step 2.
    let (tx, mut resolved) = mpsc::unbounded_channel();
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("watch", move |_: Arc<Trail>, ctx: NodeContext| {
            let report = tx.clone();
            tokio::spawn(async move {
                ctx.cancelled().await;
                let _ = report.send(if ctx.is_cancelled() { "cancelled" } else { "resolved uncancelled" });
            });
            std::future::ready(Ok(TrailUpdate::default()))
        })
        .add_node("fail", |_: Arc<Trail>| std::future::ready(Err::<TrailUpdate, _>(NodeError::msg("step 2 fails"))))
        .add_edge(START, "watch")
        .add_edge("watch", "fail")
        .add_edge("fail", END);
    let error = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap_err();
    assert!(matches!(&error, Error::NodeFailed { node, step: 2, .. } if &**node == "fail"), "{error:?}");
    assert_eq!(next(&mut resolved).await, Some("cancelled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subgraph_node_is_told_when_its_parent_node_times_out() {
    let told = Ledger::default();
    let mut child = StateGraph::<Trail>::named("child");
    child
        .add_node("inner", {
            let told = told.clone();
            move |_: Arc<Trail>, ctx: NodeContext| {
                told.push(if spin_until_cancelled(&ctx) { "told" } else { "never told" });
                std::future::ready(Ok(TrailUpdate::default()))
            }
        })
        .add_edge(START, "inner")
        .add_edge("inner", END);
    let child = child.compiled().unwrap();
    let mut parent = StateGraph::<Trail>::named("parent");
    parent
        .add_node_with("node", child, NodeOptions::new().timeout(TIMEOUT))
        .add_edge(START, "node")
        .add_edge("node", END);
    let error = parent.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap_err();

    assert_timed_out(Seat::Lone, &error);
    assert_eq!(told.entries(), ["told"]);
}
