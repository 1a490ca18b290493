//! Panics (R17), node errors and overwrite conflicts.

use std::error::Error as _;
use std::sync::Arc;

use crate::common::Compiled;
use dashflow_executor::{CompiledGraph, Error, RunConfig};
use dashflow_graph::{END, NodeError, NodeErrorKind, NodeOptions, RetryPolicy, START, StateGraph};

use crate::common::{Ledger, Trail, TrailUpdate, log, strings};

/// A node that records its name in `ledger` after yielding once, so that it is still running
/// when a sibling fails.
fn recorded(
    name: &'static str,
    ledger: &Ledger,
) -> impl Fn(Arc<Trail>) -> futures::future::BoxFuture<'static, Result<TrailUpdate, NodeError>> + Send + Sync + 'static
{
    let ledger = ledger.clone();
    move |_| {
        let ledger = ledger.clone();
        Box::pin(async move {
            tokio::task::yield_now().await;
            ledger.push(name);
            Ok(TrailUpdate::default().log(strings(&[name])))
        })
    }
}

/// `START -> [left, boom, right] -> END`; `boom` panics when the input's note is "explode".
fn exploding(ledger: &Ledger, options: NodeOptions) -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("left", recorded("left", ledger))
        .add_node_with(
            "boom",
            |state: Arc<Trail>| async move {
                assert!(state.note != "explode", "boom was told to explode");
                Ok(TrailUpdate::default().log(strings(&["boom"])))
            },
            options,
        )
        .add_node("right", recorded("right", ledger))
        .add_parallel_edges(START, ["left", "boom", "right"])
        .add_edge("left", END)
        .add_edge("boom", END)
        .add_edge("right", END);
    graph.compiled().unwrap()
}

#[tokio::test]
async fn a_panicking_node_fails_alone_its_siblings_finish_and_the_graph_runs_again() {
    let ledger = Ledger::default();
    let app = exploding(&ledger, NodeOptions::new());
    let explode = Trail { note: "explode".into(), ..Trail::default() };
    let error = app.invoke(explode, RunConfig::new()).await.unwrap_err();

    match &error {
        Error::NodeFailed { node, step, attempts, kind, source } => {
            assert_eq!((&**node, *step, *attempts, *kind), ("boom", 1, 1, NodeErrorKind::Panicked));
            assert!(source.to_string().contains("boom was told to explode"), "{source}");
        }
        other => panic!("expected NodeFailed, got {other:?}"),
    }
    assert_eq!(error.node(), Some("boom"));
    assert_eq!(ledger.sorted(), ["left", "right"]);

    // The same compiled graph is still usable: nothing was poisoned by the panic.
    let result = app.invoke(Trail::default(), RunConfig::new()).await.unwrap();
    assert_eq!(result.state.log, ["left", "boom", "right"]);
    assert_eq!(ledger.sorted(), ["left", "left", "right", "right"]);
}

#[tokio::test]
async fn a_panic_is_not_retried_by_a_default_retry_policy() {
    let ledger = Ledger::default();
    let app = exploding(&ledger, NodeOptions::new().retry(RetryPolicy::new(3)));
    let error = app.invoke(Trail { note: "explode".into(), ..Trail::default() }, RunConfig::new()).await.unwrap_err();

    assert!(matches!(error, Error::NodeFailed { attempts: 1, kind: NodeErrorKind::Panicked, .. }), "{error:?}");
}

#[tokio::test]
async fn a_panic_in_a_lone_inline_task_is_caught_too() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("solo", |_: Arc<Trail>| async move {
            if true {
                panic!("solo panic with {}", 42);
            }
            Ok(TrailUpdate::default())
        })
        .add_edge(START, "solo")
        .add_edge("solo", END);
    let error = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap_err();

    match error {
        Error::NodeFailed { node, kind: NodeErrorKind::Panicked, source, .. } => {
            assert_eq!(&*node, "solo");
            assert!(source.to_string().contains("solo panic with 42"), "{source}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("quota exceeded for {account}")]
struct QuotaExceeded {
    account: String,
}

#[tokio::test]
async fn a_node_error_fails_the_run_naming_node_and_step_with_the_source_downcastable() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("prepare", log("prepare"))
        .add_node("charge", |state: Arc<Trail>| async move {
            let result: Result<(), QuotaExceeded> = Err(QuotaExceeded { account: state.note.clone() });
            // `?` converts any std error into a NodeError.
            result?;
            Ok(TrailUpdate::default())
        })
        .add_edge(START, "prepare")
        .add_edge("prepare", "charge")
        .add_edge("charge", END);
    let input = Trail { note: "acme".into(), ..Trail::default() };
    let error = graph.compiled().unwrap().invoke(input, RunConfig::new()).await.unwrap_err();

    let Error::NodeFailed { node, step, attempts, kind, source } = &error else {
        panic!("expected NodeFailed, got {error:?}");
    };
    assert_eq!((&**node, *step, *attempts, *kind), ("charge", 2, 1, NodeErrorKind::Failed));
    assert_eq!(source.downcast_ref::<QuotaExceeded>().unwrap().account, "acme");
    // The standard error chain shows the node's error too. Only by message: `source()` yields
    // the `Arc` that shares it, so a downcast must go through the `source` field as above.
    assert_eq!(error.source().unwrap().to_string(), "quota exceeded for acme");
    // The run's own message names node and step; a report adds the node's error once.
    assert_eq!(error.to_string(), "node `charge` failed at step 2 after 1 attempt(s) (Failed)");
    assert_eq!(
        dashflow_telemetry::Report(&error).to_string(),
        "node `charge` failed at step 2 after 1 attempt(s) (Failed): quota exceeded for acme"
    );
}

#[tokio::test]
async fn when_two_parallel_tasks_fail_the_first_in_frontier_order_is_reported_after_all_finish() {
    let ledger = Ledger::default();
    let failing = |name: &'static str| {
        let ledger = ledger.clone();
        move |_: Arc<Trail>| {
            let ledger = ledger.clone();
            async move {
                tokio::task::yield_now().await;
                ledger.push(name);
                Err::<TrailUpdate, _>(NodeError::msg(format!("{name} failed")))
            }
        }
    };
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("first", failing("first"))
        .add_node("second", failing("second"))
        .add_node("fine", recorded("fine", &ledger))
        .add_parallel_edges(START, ["fine", "first", "second"])
        .add_edge("first", END)
        .add_edge("second", END)
        .add_edge("fine", END);
    let error = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap_err();

    assert!(matches!(&error, Error::NodeFailed { node, .. } if &**node == "first"), "{error:?}");
    assert_eq!(ledger.sorted(), ["fine", "first", "second"]);
}

#[tokio::test]
async fn two_parallel_writers_of_an_overwrite_field_are_a_state_conflict_naming_both_and_the_field() {
    let note = |text: &'static str| move |_: Arc<Trail>| async move { Ok(TrailUpdate::default().note(text)) };
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("quiet", log("quiet"))
        .add_node("writer_a", note("from a"))
        .add_node("writer_b", note("from b"))
        .add_parallel_edges(START, ["writer_a", "quiet", "writer_b"])
        .add_edge("writer_a", END)
        .add_edge("quiet", END)
        .add_edge("writer_b", END);
    let error = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap_err();

    match &error {
        Error::StateConflict { field, first, second, step } => {
            assert_eq!((*field, &**first, &**second, *step), ("note", "writer_a", "writer_b", 1));
        }
        other => panic!("expected StateConflict, got {other:?}"),
    }
    let message = error.to_string();
    for part in ["`writer_a`", "`writer_b`", "`note`"] {
        assert!(message.contains(part), "{message}");
    }
}

#[tokio::test]
async fn one_writer_of_an_overwrite_field_among_parallel_tasks_is_no_conflict() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("writer", |_: Arc<Trail>| async move { Ok(TrailUpdate::default().note("set").log(strings(&["w"]))) })
        .add_node("other", log("other"))
        .add_parallel_edges(START, ["writer", "other"])
        .add_edge("writer", END)
        .add_edge("other", END);
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();

    assert_eq!(result.state.note, "set");
    assert_eq!(result.state.log, ["w", "other"]);
}

#[tokio::test]
async fn overwrites_in_successive_supersteps_are_no_conflict_and_the_last_wins() {
    let note = |text: &'static str| move |_: Arc<Trail>| async move { Ok(TrailUpdate::default().note(text)) };
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("one", note("one"))
        .add_node("two", note("two"))
        .add_edge(START, "one")
        .add_edge("one", "two")
        .add_edge("two", END);
    let result = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap();

    assert_eq!(result.state.note, "two");
}

/// A node whose closure panics before it makes its future.
fn panics_making_its_future(_: Arc<Trail>) -> std::future::Ready<Result<TrailUpdate, NodeError>> {
    panic!("no future today")
}

#[tokio::test]
async fn a_panic_before_a_node_makes_its_future_is_caught_alone_and_in_a_fan_out() {
    for siblings in [&[][..], &["left", "right"][..]] {
        let mut graph = StateGraph::<Trail>::new();
        graph.add_node("early", panics_making_its_future).add_edge("early", END);
        let mut starts = vec!["early"];
        for &sibling in siblings {
            graph.add_node(sibling, log(sibling)).add_edge(sibling, END);
            starts.push(sibling);
        }
        graph.add_parallel_edges(START, starts);
        let error = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap_err();

        match error {
            Error::NodeFailed { node, kind: NodeErrorKind::Panicked, source, .. } => {
                assert_eq!(&*node, "early");
                assert!(source.to_string().contains("no future today"), "{source}");
            }
            other => panic!("{siblings:?}: expected a panic, got {other:?}"),
        }
    }
}
