//! Dropping a run (its `invoke` future or its stream) cancels every task of the run, the
//! parallel ones on the scheduler included.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::Compiled;
use dashflow_executor::{CompiledGraph, RunConfig};
use dashflow_graph::{END, START, StateGraph};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::common::{Trail, TrailUpdate, log};

const BRANCHES: usize = 4;

/// What the parallel nodes report to the test.
struct Probe {
    /// Each node says it started.
    started: mpsc::UnboundedSender<()>,
    /// Set to `true` to let the nodes finish.
    release: watch::Receiver<bool>,
    /// Nodes that ran to their end.
    completed: Arc<AtomicUsize>,
    /// Each node's guard says when the node was dropped.
    dropped: mpsc::UnboundedSender<()>,
}

/// Held by a running node; says when the node is dropped, finished or not.
struct Guard(mpsc::UnboundedSender<()>);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// `START -> (p0..p3) -> join -> END`: four parallel nodes that wait for the test's release.
fn parallel(probe: Arc<Probe>) -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::named("cancel");
    let names: Vec<String> = (0..BRANCHES).map(|index| format!("p{index}")).collect();
    for name in &names {
        let probe = Arc::clone(&probe);
        graph.add_node(name.as_str(), move |_: Arc<Trail>| {
            let probe = Arc::clone(&probe);
            async move {
                let _guard = Guard(probe.dropped.clone());
                probe.started.send(()).unwrap();
                let mut release = probe.release.clone();
                release.wait_for(|released| *released).await.unwrap();
                probe.completed.fetch_add(1, Ordering::SeqCst);
                Ok(TrailUpdate::default().count(1_u64))
            }
        });
        graph.add_edge(START, name.as_str());
    }
    graph.add_node("join", log("join")).add_join(names.iter().map(String::as_str), "join").add_edge("join", END);
    graph.compiled().unwrap()
}

struct Harness {
    app: CompiledGraph<Trail>,
    started: mpsc::UnboundedReceiver<()>,
    release: watch::Sender<bool>,
    completed: Arc<AtomicUsize>,
    dropped: mpsc::UnboundedReceiver<()>,
}

fn harness() -> Harness {
    let (started_tx, started) = mpsc::unbounded_channel();
    let (release, release_rx) = watch::channel(false);
    let (dropped_tx, dropped) = mpsc::unbounded_channel();
    let completed = Arc::new(AtomicUsize::new(0));
    let probe =
        Probe { started: started_tx, release: release_rx, completed: Arc::clone(&completed), dropped: dropped_tx };
    Harness { app: parallel(Arc::new(probe)), started, release, completed, dropped }
}

impl Harness {
    /// After the run was dropped: lets any node still alive finish, then waits until every
    /// node was dropped and says how many ran to their end.
    async fn completed_after_the_drop(mut self) -> usize {
        self.release.send(true).unwrap();
        for _ in 0..BRANCHES {
            self.dropped.recv().await.unwrap();
        }
        self.completed.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_invoke_future_cancels_every_parallel_task() {
    let mut harness = harness();
    let app = harness.app.clone();
    let mut run = Box::pin(app.invoke(Trail::default(), RunConfig::new()));
    let mut started = 0;
    while started < BRANCHES {
        tokio::select! {
            result = &mut run => panic!("the run ended while its nodes wait: {:?}", result.map(|r| r.state)),
            signal = harness.started.recv() => {
                signal.unwrap();
                started += 1;
            }
        }
    }
    drop(run);
    assert_eq!(harness.completed_after_the_drop().await, 0, "a parallel task ran on after its run was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_cancels_every_parallel_task() {
    let mut harness = harness();
    let app = harness.app.clone();
    let mut stream = app.stream(Trail::default(), RunConfig::new());
    let mut started = 0;
    while started < BRANCHES {
        tokio::select! {
            item = stream.next() => assert!(item.is_some(), "the run ended while its nodes wait"),
            signal = harness.started.recv() => {
                signal.unwrap();
                started += 1;
            }
        }
    }
    drop(stream);
    assert_eq!(harness.completed_after_the_drop().await, 0, "a parallel task ran on after its stream was dropped");
}
