//! Recursion limit (R16), node and run timeouts (R18), and retry policies. Time is paused
//! wherever a node sleeps or a policy backs off, so nothing here waits for real.

use std::sync::Arc;
use std::time::Duration;

use crate::common::Compiled;
use dashflow_executor::{CompiledGraph, Error, RunConfig};
use dashflow_graph::{END, NodeContext, NodeError, NodeErrorKind, NodeOptions, RetryPolicy, START, StateGraph};

use crate::common::{Ledger, Recorder, Trail, TrailUpdate, log, strings, tick};

/// `START -> spin -> spin -> ...` until `count` reaches `until`.
fn counting_loop(until: u64) -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("spin", tick).add_edge(START, "spin").add_conditional_edges(
        "spin",
        move |state: &Trail| if state.count < until { "again" } else { "done" },
        [("again", "spin"), ("done", END)],
    );
    graph.compiled().unwrap()
}

#[tokio::test]
async fn a_loop_without_exit_stops_at_the_default_recursion_limit_of_25() {
    let ran = Ledger::default();
    let mut graph = StateGraph::<Trail>::new();
    let seen = ran.clone();
    graph
        .add_node("forever", move |_: Arc<Trail>, ctx: NodeContext| {
            seen.push(ctx.step().to_string());
            async move { Ok(TrailUpdate::default().count(1_u64)) }
        })
        .add_edge(START, "forever")
        .add_edge("forever", "forever");
    let error = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap_err();

    assert!(matches!(error, Error::RecursionLimit { limit: 25 }), "{error:?}");
    assert!(error.to_string().contains("recursion limit of 25"), "{error}");
    assert_eq!(ran.entries(), (1..=25).map(|step| step.to_string()).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_forty_step_loop_fails_under_the_default_limit_and_finishes_under_a_raised_one() {
    let app = counting_loop(40);

    let error = app.invoke(Trail::default(), RunConfig::new()).await.unwrap_err();
    assert!(matches!(error, Error::RecursionLimit { limit: 25 }), "{error:?}");

    let result = app.invoke(Trail::default(), RunConfig::new().recursion_limit(40)).await.unwrap();
    assert_eq!(result.state.count, 40);
    assert_eq!(result.steps, 40);

    let error = app.invoke(Trail::default(), RunConfig::new().recursion_limit(39)).await.unwrap_err();
    assert!(matches!(error, Error::RecursionLimit { limit: 39 }), "{error:?}");
}

/// A node that hangs (far past any timeout here) on its first attempt and, if that attempt ever
/// finished, would log "attempt 1"; later attempts log their number at once.
fn hangs_first(
    finished: &Ledger,
) -> impl Fn(Arc<Trail>, NodeContext) -> futures::future::BoxFuture<'static, Result<TrailUpdate, NodeError>>
+ Send
+ Sync
+ 'static {
    let finished = finished.clone();
    move |_, ctx| {
        let finished = finished.clone();
        Box::pin(async move {
            if ctx.attempt() == 1 {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            finished.push(format!("attempt {}", ctx.attempt()));
            Ok(TrailUpdate::default().log(vec![format!("attempt {}", ctx.attempt())]).count(1_u64))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_cancelled_and_retried_and_its_late_result_never_commits() {
    let finished = Ledger::default();
    let recorder = Recorder::default();
    let options = NodeOptions::new().timeout(Duration::from_secs(1)).retry(RetryPolicy::new(2).backoff(
        Duration::from_millis(10),
        2.0,
        Duration::from_secs(1),
    ));
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node_with("slow", hangs_first(&finished), options).add_edge(START, "slow").add_edge("slow", END);
    let app = graph.compiled().unwrap().with_callback(recorder.clone());
    let result = app.invoke(Trail::default(), RunConfig::new()).await.unwrap();

    assert_eq!(result.state.log, ["attempt 2"]);
    assert_eq!(result.state.count, 1);
    assert_eq!(result.nodes.get(0).unwrap().attempts, 2);
    let tasks: Vec<String> = recorder.described().into_iter().filter(|line| line.contains(" slow #")).collect();
    assert_eq!(
        tasks,
        [
            "start 1 slow #1",
            "fail 1 slow #1: node `slow` timed out after 1s and was cancelled",
            "start 1 slow #2",
            "finish 1 slow #2",
        ]
    );

    // Long after attempt 1 would have woken, it still has not finished: it was dropped.
    tokio::time::advance(Duration::from_secs(7200)).await;
    tokio::task::yield_now().await;
    assert_eq!(finished.entries(), ["attempt 2"]);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_node_without_retry_fails_the_run_with_a_timeout_naming_the_node() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("first", log("first"))
        .add_node_with(
            "stuck",
            |_: Arc<Trail>| async move {
                std::future::pending::<()>().await;
                Ok(TrailUpdate::default())
            },
            NodeOptions::new().timeout(Duration::from_secs(5)),
        )
        .add_edge(START, "first")
        .add_edge("first", "stuck")
        .add_edge("stuck", END);
    let error = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap_err();

    match &error {
        Error::NodeFailed { node, step, attempts, kind, .. } => {
            assert_eq!((&**node, *step, *attempts, *kind), ("stuck", 2, 1, NodeErrorKind::Timeout));
        }
        other => panic!("expected NodeFailed, got {other:?}"),
    }
    let report = dashflow_telemetry::Report(&error).to_string();
    assert!(report.contains("timed out after 5s"), "{report}");
}

#[tokio::test(start_paused = true)]
async fn the_graph_node_timeout_applies_to_nodes_without_their_own() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("stuck", |_: Arc<Trail>| async move {
            std::future::pending::<()>().await;
            Ok(TrailUpdate::default())
        })
        .add_edge(START, "stuck")
        .add_edge("stuck", END);
    let app = graph.compiled().unwrap().with_node_timeout(Duration::from_secs(2));
    let error = app.invoke(Trail::default(), RunConfig::new()).await.unwrap_err();

    assert!(
        matches!(&error, Error::NodeFailed { node, kind: NodeErrorKind::Timeout, .. } if &**node == "stuck"),
        "{error:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_over_its_timeout_fails_with_run_timeout_naming_the_step() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("first", log("first"))
        .add_node("stuck", |_: Arc<Trail>| async move {
            std::future::pending::<()>().await;
            Ok(TrailUpdate::default())
        })
        .add_edge(START, "first")
        .add_edge("first", "stuck")
        .add_edge("stuck", END);
    let config = RunConfig::new().timeout(Duration::from_secs(30));
    let error = graph.compiled().unwrap().invoke(Trail::default(), config).await.unwrap_err();

    match error {
        Error::RunTimeout { timeout, step } => assert_eq!((timeout, step), (Duration::from_secs(30), 2)),
        other => panic!("expected RunTimeout, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_within_its_timeout_completes() {
    let config = RunConfig::new().timeout(Duration::from_secs(1));
    let result = counting_loop(3).invoke(Trail::default(), config).await.unwrap();
    assert_eq!(result.state.count, 3);
}

/// A node that fails on its first `failures` attempts with the error `fail` builds.
fn fails_first(
    failures: u32,
    fail: fn() -> NodeError,
) -> impl Fn(Arc<Trail>, NodeContext) -> std::future::Ready<Result<TrailUpdate, NodeError>> + Send + Sync + 'static {
    move |_, ctx| {
        std::future::ready(if ctx.attempt() <= failures {
            Err(fail())
        } else {
            Ok(TrailUpdate::default().log(vec![format!("succeeded on attempt {}", ctx.attempt())]))
        })
    }
}

fn flaky_graph(failures: u32, fail: fn() -> NodeError, policy: RetryPolicy) -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node_with("flaky", fails_first(failures, fail), NodeOptions::new().retry(policy))
        .add_edge(START, "flaky")
        .add_edge("flaky", END);
    graph.compiled().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_node_failing_twice_succeeds_on_its_third_attempt_under_a_three_attempt_policy() {
    let recorder = Recorder::default();
    let app = flaky_graph(2, || NodeError::msg("flaky"), RetryPolicy::new(3)).with_callback(recorder.clone());
    let result = app.invoke(Trail::default(), RunConfig::new()).await.unwrap();

    assert_eq!(result.state.log, ["succeeded on attempt 3"]);
    assert_eq!(result.nodes.len(), 1);
    assert_eq!(result.nodes.get(0).unwrap().attempts, 3);
    let attempts: Vec<String> = recorder.described().into_iter().filter(|line| line.contains("flaky #")).collect();
    assert_eq!(
        attempts,
        [
            "start 1 flaky #1",
            "fail 1 flaky #1: flaky",
            "start 1 flaky #2",
            "fail 1 flaky #2: flaky",
            "start 1 flaky #3",
            "finish 1 flaky #3",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_failing_more_often_than_the_policy_allows_fails_after_the_last_attempt() {
    let error = flaky_graph(5, || NodeError::msg("still broken"), RetryPolicy::new(3))
        .invoke(Trail::default(), RunConfig::new())
        .await
        .unwrap_err();

    assert!(
        matches!(&error, Error::NodeFailed { node, attempts: 3, kind: NodeErrorKind::Failed, .. } if &**node == "flaky"),
        "{error:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_is_not_retried() {
    let error = flaky_graph(1, || NodeError::permanent_msg("bad input"), RetryPolicy::new(5))
        .invoke(Trail::default(), RunConfig::new())
        .await
        .unwrap_err();

    assert!(matches!(&error, Error::NodeFailed { attempts: 1, kind: NodeErrorKind::Permanent, .. }), "{error:?}");
}

#[derive(Debug, thiserror::Error)]
#[error("rate limited")]
struct RateLimited;

#[derive(Debug, thiserror::Error)]
#[error("malformed reply")]
struct Malformed;

#[tokio::test(start_paused = true)]
async fn retry_on_retries_only_the_errors_its_predicate_accepts() {
    let policy = || RetryPolicy::new(4).retry_on(|error| error.downcast_ref::<RateLimited>().is_some());

    let result = flaky_graph(2, || NodeError::new(RateLimited), policy())
        .invoke(Trail::default(), RunConfig::new())
        .await
        .unwrap();
    assert_eq!(result.nodes.get(0).unwrap().attempts, 3);

    let error = flaky_graph(2, || NodeError::new(Malformed), policy())
        .invoke(Trail::default(), RunConfig::new())
        .await
        .unwrap_err();
    match error {
        Error::NodeFailed { attempts, source, .. } => {
            assert_eq!(attempts, 1);
            assert!(source.downcast_ref::<Malformed>().is_some());
        }
        other => panic!("expected NodeFailed, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_graph_retry_policy_applies_to_nodes_without_their_own() {
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("flaky", fails_first(1, || NodeError::msg("once"))).add_edge(START, "flaky").add_edge("flaky", END);
    let app = graph.compiled().unwrap().with_retry_policy(RetryPolicy::new(2));
    let result = app.invoke(Trail::default(), RunConfig::new()).await.unwrap();

    assert_eq!(result.state.log, strings(&["succeeded on attempt 2"]));
    assert_eq!(result.nodes.get(0).unwrap().attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn a_node_own_retry_policy_overrides_the_graph_policy() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node_with(
            "flaky",
            fails_first(1, || NodeError::msg("once")),
            NodeOptions::new().retry(RetryPolicy::new(1)),
        )
        .add_edge(START, "flaky")
        .add_edge("flaky", END);
    let app = graph.compiled().unwrap().with_retry_policy(RetryPolicy::new(5));
    let error = app.invoke(Trail::default(), RunConfig::new()).await.unwrap_err();

    assert!(matches!(error, Error::NodeFailed { attempts: 1, .. }), "{error:?}");
}
