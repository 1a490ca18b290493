//! Fan-outs: a step's async tasks are polled on the run's own task (no spawn per task), its
//! CPU-bound and blocking tasks still run on their own threads, a mixed step runs both at
//! once, and updates merge in frontier order whatever finished first.

use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::Compiled;
use dashflow_executor::{Error, RunConfig};
use dashflow_graph::{END, NodeError, NodeOptions, START, StateGraph};
use dashflow_scheduler::{TokioScheduler, WorkStealingPool};

use crate::common::{Ledger, Trail, TrailUpdate, strings};

/// Where one task ran: its tokio task (none off the runtime) and its thread's name.
#[derive(Clone, Debug)]
struct Seat {
    task: Option<tokio::task::Id>,
    thread: Option<String>,
}

type Seats = Arc<Mutex<Vec<(&'static str, Seat)>>>;

/// A node that records where it ran and logs its name.
fn seated(
    name: &'static str,
    seats: &Seats,
) -> impl Fn(Arc<Trail>) -> std::future::Ready<Result<TrailUpdate, NodeError>> + Send + Sync + 'static {
    let seats = Arc::clone(seats);
    move |_| {
        let seat = Seat { task: tokio::task::try_id(), thread: std::thread::current().name().map(str::to_owned) };
        seats.lock().unwrap().push((name, seat));
        std::future::ready(Ok(TrailUpdate::default().log(strings(&[name]))))
    }
}

const MIXED: [&str; 6] = ["a0", "cpu0", "a1", "block0", "a2", "cpu1"];

/// `START -> split -> [a0, cpu0, a1, block0, a2, cpu1] -> END`: async nodes interleaved with
/// CPU-bound and blocking ones in one step.
fn mixed(seats: &Seats) -> StateGraph<Trail> {
    let mut graph = StateGraph::<Trail>::named("mixed");
    graph.add_node("split", |_: Arc<Trail>| async { Ok(TrailUpdate::default()) }).add_edge(START, "split");
    for name in MIXED {
        let options = match name.as_bytes()[0] {
            b'c' => NodeOptions::new().cpu_bound(),
            b'b' => NodeOptions::new().blocking(),
            _ => NodeOptions::new(),
        };
        graph.add_node_with(name, seated(name, seats), options).add_edge(name, END);
    }
    graph.add_parallel_edges("split", MIXED);
    graph
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_step_polls_its_async_tasks_on_the_runs_task_and_spawns_the_others() {
    let seats = Seats::default();
    let app = mixed(&seats).compiled().unwrap();
    let run = tokio::spawn(async move { (tokio::task::id(), app.invoke(Trail::default(), RunConfig::new()).await) });
    let (run_task, result) = run.await.unwrap();
    let result = result.unwrap();

    // Merged in frontier order, whichever task finished first.
    assert_eq!(result.state.log, MIXED);
    let seats = seats.lock().unwrap().clone();
    assert_eq!(seats.len(), MIXED.len());
    for (node, seat) in seats {
        match node.as_bytes()[0] {
            b'a' => assert_eq!(seat.task, Some(run_task), "async {node} did not run on the run's task: {seat:?}"),
            b'c' => {
                assert!(
                    seat.thread.as_deref().is_some_and(|t| t.starts_with("dashflow-global-pool")),
                    "{node}: {seat:?}"
                );
            }
            _ => {
                assert_ne!(seat.task, Some(run_task), "blocking {node} ran on the run's task");
                assert!(!seat.thread.as_deref().is_some_and(|t| t.starts_with("dashflow-global-pool")), "{node}");
            }
        }
    }
}

/// `START -> [a, b, c] -> END`, recording where each ran.
fn three_async(seats: &Seats) -> StateGraph<Trail> {
    let mut graph = StateGraph::<Trail>::new();
    graph.add_parallel_edges(START, ["a", "b", "c"]);
    for name in ["a", "b", "c"] {
        graph.add_node(name, seated(name, seats)).add_edge(name, END);
    }
    graph
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_given_a_scheduler_spawns_every_async_task_of_a_fan_out_there() {
    let pool = WorkStealingPool::builder().threads(2).thread_name("fanout-test-pool").build().unwrap();
    let seats = Seats::default();
    let app = three_async(&seats).compiled().unwrap().with_scheduler(pool);
    let result = app.invoke(Trail::default(), RunConfig::new()).await.unwrap();
    assert_eq!(result.state.log, ["a", "b", "c"]);
    for (node, seat) in seats.lock().unwrap().iter() {
        assert!(seat.thread.as_deref().is_some_and(|t| t.starts_with("fanout-test-pool")), "{node}: {seat:?}");
    }

    // Tokio's scheduler, chosen explicitly: one tokio task per async task, as before polling.
    let seats = Seats::default();
    let app = three_async(&seats).compiled().unwrap().with_scheduler(TokioScheduler);
    let run = tokio::spawn(async move { (tokio::task::id(), app.invoke(Trail::default(), RunConfig::new()).await) });
    let (run_task, result) = run.await.unwrap();
    assert_eq!(result.unwrap().state.log, ["a", "b", "c"]);
    let tasks: HashSet<_> = seats.lock().unwrap().iter().map(|(_, seat)| seat.task).collect();
    assert_eq!(tasks.len(), 3, "each task of the fan-out is a tokio task of its own: {tasks:?}");
    assert!(!tasks.contains(&Some(run_task)) && !tasks.contains(&None), "{tasks:?}");
}

#[tokio::test]
async fn a_failed_async_task_fails_its_step_only_after_its_cpu_bound_sibling_finished() {
    // `boom` lets `slow` go only as it fails, so `slow` is still running when `boom` fails.
    let (release, wait) = mpsc::channel::<()>();
    let wait = Arc::new(Mutex::new(wait));
    let finished = Ledger::default();
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("boom", move |_: Arc<Trail>| {
            let _ = release.send(());
            std::future::ready(Err::<TrailUpdate, _>(NodeError::msg("boom failed")))
        })
        .add_node_with(
            "slow",
            {
                let finished = finished.clone();
                move |_: Arc<Trail>| {
                    // A generous bound turning a lost release into a failure, not a hang.
                    let released = wait.lock().unwrap().recv_timeout(Duration::from_secs(60)).is_ok();
                    finished.push(if released { "slow" } else { "slow, never released" });
                    std::future::ready(Ok(TrailUpdate::default()))
                }
            },
            NodeOptions::new().cpu_bound(),
        )
        .add_parallel_edges(START, ["boom", "slow"])
        .add_edge("boom", END)
        .add_edge("slow", END);
    let error = graph.compiled().unwrap().invoke(Trail::default(), RunConfig::new()).await.unwrap_err();

    assert!(matches!(&error, Error::NodeFailed { node, .. } if &**node == "boom"), "{error:?}");
    assert_eq!(finished.entries(), ["slow"], "the step failed before its CPU-bound sibling finished");
}
