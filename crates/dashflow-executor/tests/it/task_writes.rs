//! Each task of a parallel step stores its result as soon as it finishes (R1, R2): a run that
//! stops inside the step (dropped, failed, paused) re-runs only the tasks that had not
//! finished, and the step's checkpoint does not store the results a second time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::Compiled;
use async_trait::async_trait;
use dashflow_checkpoint::{
    CheckpointError, CheckpointId, CheckpointRecord, Checkpointer, ListOptions, LoadedCheckpoint, PendingWrite,
};
use dashflow_checkpoint_memory::MemoryCheckpointer;
use dashflow_executor::{CompiledGraph, Durability, RunConfig, RunStatus};
use dashflow_graph::{Command, END, NodeContext, NodeError, START, StateGraph};
use serde_json::json;
use tokio::sync::{Notify, mpsc};

use crate::common::{Ledger, Trail, TrailUpdate, recorded, strings};

/// A memory checkpointer that reports the id of every pending write once it is stored.
#[derive(Debug)]
struct Watching {
    inner: MemoryCheckpointer,
    stored: mpsc::UnboundedSender<String>,
    all: parking_lot::Mutex<Vec<String>>,
    /// A checkpoint (namespace, step) whose put never returns, once: where a run "dies".
    stall: parking_lot::Mutex<Option<(&'static str, i64)>>,
    stalled: Notify,
}

impl Watching {
    fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<String>) {
        let (stored, rx) = mpsc::unbounded_channel();
        let watching = Self {
            inner: MemoryCheckpointer::new(),
            stored,
            all: parking_lot::Mutex::default(),
            stall: parking_lot::Mutex::default(),
            stalled: Notify::new(),
        };
        (Arc::new(watching), rx)
    }

    /// The ids of every pending write stored so far, in order, repeats included.
    fn writes(&self) -> Vec<String> {
        self.all.lock().clone()
    }
}

#[async_trait]
impl Checkpointer for Watching {
    async fn put(&self, record: CheckpointRecord, expected: Option<&CheckpointId>) -> Result<(), CheckpointError> {
        let at = (record.namespace.as_str(), record.step);
        let stall = {
            let mut stall = self.stall.lock();
            let hit = stall.is_some_and(|(namespace, step)| (namespace, step) == at);
            if hit {
                *stall = None;
            }
            hit
        };
        if stall {
            self.stalled.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.put(record, expected).await
    }
    async fn put_writes(
        &self,
        t: &str,
        ns: &str,
        id: &CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<(), CheckpointError> {
        let ids: Vec<String> = writes.iter().map(|write| write.task_id.clone()).collect();
        self.inner.put_writes(t, ns, id, writes).await?;
        for id in ids {
            self.all.lock().push(id.clone());
            let _ = self.stored.send(id);
        }
        Ok(())
    }
    async fn load(
        &self,
        t: &str,
        ns: &str,
        id: Option<&CheckpointId>,
    ) -> Result<Option<LoadedCheckpoint>, CheckpointError> {
        self.inner.load(t, ns, id).await
    }
    async fn list(&self, t: &str, options: &ListOptions) -> Result<Vec<CheckpointRecord>, CheckpointError> {
        self.inner.list(t, options).await
    }
    async fn delete_thread(&self, t: &str) -> Result<(), CheckpointError> {
        self.inner.delete_thread(t).await
    }
    async fn copy_thread(&self, from: &str, to: &str) -> Result<(), CheckpointError> {
        self.inner.copy_thread(from, to).await
    }
    async fn delete_before(&self, t: &str, ns: &str, keep: &CheckpointId) -> Result<u64, CheckpointError> {
        self.inner.delete_before(t, ns, keep).await
    }
    async fn delete_idle_threads(&self, cutoff: i64) -> Result<Vec<String>, CheckpointError> {
        self.inner.delete_idle_threads(cutoff).await
    }
}

/// Waits until the write `id` is stored, failing on any other write stored first. The tests
/// run on paused time, so the timeout fires only once nothing else can run: when the write
/// will never come.
async fn stored(rx: &mut mpsc::UnboundedReceiver<String>, id: &str) {
    let next = tokio::time::timeout(Duration::from_secs(3600), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("the run stopped making progress before `{id}` was stored"));
    assert_eq!(next.as_deref(), Some(id), "the first write stored");
}

/// How `slow` behaves: wait for `release`, or never finish while `block` is set.
#[derive(Clone, Default)]
struct Gate {
    release: Arc<Notify>,
    block: Arc<AtomicBool>,
}

/// START -> {quick, slow} -> join -> END; every node records its effect in `ledger` when it
/// finishes, `slow` only once `gate` lets it.
fn quick_and_slow(ledger: &Ledger, gate: &Gate, checkpointer: Arc<dyn Checkpointer>) -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::new();
    let node = |name: &'static str| {
        let ledger = ledger.clone();
        move |_: Arc<Trail>| {
            ledger.push(name);
            std::future::ready(Ok(TrailUpdate::default().log(vec![name.to_owned()])))
        }
    };
    let (slow_ledger, gate) = (ledger.clone(), gate.clone());
    graph
        .add_node("quick", node("quick"))
        .add_node("slow", move |_: Arc<Trail>| {
            let (ledger, gate) = (slow_ledger.clone(), gate.clone());
            async move {
                if gate.block.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                gate.release.notified().await;
                ledger.push("slow");
                Ok(TrailUpdate::default().log(vec!["slow".to_owned()]))
            }
        })
        .add_node("join", node("join"))
        .add_parallel_edges(START, ["quick", "slow"])
        .add_join(["quick", "slow"], "join")
        .add_edge("join", END);
    graph.compiled().unwrap().with_checkpointer(checkpointer)
}

#[tokio::test(start_paused = true)]
async fn a_finished_task_of_a_parallel_step_is_stored_while_its_sibling_still_runs() {
    for durability in [Durability::Sync, Durability::Async] {
        let (watching, mut rx) = Watching::new();
        let (ledger, gate) = (Ledger::default(), Gate::default());
        let app = quick_and_slow(&ledger, &gate, watching.clone());
        let config = RunConfig::thread("stored-early").durability(durability);
        let run = tokio::spawn({
            let (app, config) = (app.clone(), config.clone());
            async move { app.invoke(Trail::default(), config).await }
        });

        stored(&mut rx, "1:quick:0#output").await;
        // `slow` is still waiting for its gate, and the step's start is the thread's head,
        // holding `quick`'s result.
        assert_eq!(ledger.entries(), strings(&["quick"]), "{durability:?}");
        let head = watching.load("stored-early", "", None).await.unwrap().unwrap();
        assert_eq!(head.head().unwrap().step, 0, "{durability:?}");
        let stored_ids: Vec<&str> = head.pending_writes.iter().map(|write| write.task_id.as_str()).collect();
        assert_eq!(stored_ids, ["1:quick:0#output"], "{durability:?}");

        gate.release.notify_one();
        let done = run.await.unwrap().unwrap();
        assert_eq!(done.state.log, strings(&["quick", "slow", "join"]), "{durability:?}");
        // One write per task of the parallel step, none by the step's commit, none for the
        // lone `join`, whose step's checkpoint stores it.
        assert_eq!(watching.writes(), strings(&["1:quick:0#output", "1:slow:1#output"]), "{durability:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_dropped_inside_a_parallel_step_resumes_without_rerunning_the_task_that_finished() {
    for durability in [Durability::Sync, Durability::Async] {
        let (watching, mut rx) = Watching::new();
        let (ledger, gate) = (Ledger::default(), Gate::default());
        gate.block.store(true, Ordering::SeqCst);
        let app = quick_and_slow(&ledger, &gate, watching.clone());
        let config = RunConfig::thread("dropped").durability(durability);

        let run = app.invoke(Trail::default(), config.clone());
        tokio::select! {
            _ = run => panic!("the run cannot finish while `slow` blocks"),
            () = stored(&mut rx, "1:quick:0#output") => {}
        }
        // The run is dropped here, inside step 1, as a killed process would stop.
        gate.block.store(false, Ordering::SeqCst);
        gate.release.notify_one();
        let done = app.resume(Command::new(), config).await.unwrap();
        assert_eq!(done.status, RunStatus::Completed);
        assert_eq!(done.state.log, strings(&["quick", "slow", "join"]), "{durability:?}");
        assert_eq!(ledger.entries(), strings(&["quick", "slow", "join"]), "`quick` ran once ({durability:?})");
    }
}

#[tokio::test]
async fn a_failed_parallel_step_stores_each_finished_sibling_once_and_the_resume_reuses_it() {
    let (watching, _rx) = Watching::new();
    let ledger = Ledger::default();
    let fail = Arc::new(AtomicBool::new(true));
    let mut graph = StateGraph::<Trail>::new();
    let flaky_fail = Arc::clone(&fail);
    let logged = |name: &'static str| recorded(name, &ledger);
    graph
        .add_node("a", logged("a"))
        .add_node("b", logged("b"))
        .add_node("flaky", move |_: Arc<Trail>| {
            let failing = flaky_fail.load(Ordering::SeqCst);
            async move {
                if failing {
                    return Err(NodeError::msg("service down"));
                }
                Ok(TrailUpdate::default().log(vec!["flaky".to_owned()]))
            }
        })
        .add_parallel_edges(START, ["a", "b", "flaky"])
        .add_join(["a", "b", "flaky"], "join")
        .add_node("join", logged("join"))
        .add_edge("join", END);
    let app = graph.compiled().unwrap().with_checkpointer(watching.clone());
    let config = RunConfig::thread("failed-step").durability(Durability::Sync);

    app.invoke(Trail::default(), config.clone()).await.unwrap_err();
    let mut writes = watching.writes();
    writes.sort();
    assert_eq!(writes, strings(&["1:a:0#output", "1:b:1#output"]), "the failed task stores nothing");

    fail.store(false, Ordering::SeqCst);
    let done = app.resume(Command::new(), config).await.unwrap();
    assert_eq!(done.state.log, strings(&["a", "b", "flaky", "join"]));
    assert_eq!(ledger.sorted(), strings(&["a", "b", "join"]), "the siblings did not run again");
    assert_eq!(watching.writes().len(), 3, "only `flaky`'s result was stored by the resume: {:?}", watching.writes());
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_in_a_parallel_step_is_stored_as_soon_as_it_is_raised() {
    for durability in [Durability::Sync, Durability::Async] {
        let (watching, mut rx) = Watching::new();
        let (ledger, gate) = (Ledger::default(), Gate::default());
        let mut graph = StateGraph::<Trail>::new();
        let (asker_ledger, slow_ledger, slow_gate) = (ledger.clone(), ledger.clone(), gate.clone());
        graph
            .add_node("asker", move |_: Arc<Trail>, ctx: NodeContext| {
                let ledger = asker_ledger.clone();
                async move {
                    let answer = ctx.interrupt(json!("proceed?"))?;
                    ledger.push(format!("asker {answer}"));
                    Ok(TrailUpdate::default().note(answer.as_str().unwrap_or_default()))
                }
            })
            .add_node("slow", move |_: Arc<Trail>| {
                let (ledger, gate) = (slow_ledger.clone(), slow_gate.clone());
                async move {
                    gate.release.notified().await;
                    ledger.push("slow");
                    Ok(TrailUpdate::default().log(vec!["slow".to_owned()]))
                }
            })
            .add_parallel_edges(START, ["asker", "slow"])
            .add_edge("asker", END)
            .add_edge("slow", END);
        let app = graph.compiled().unwrap().with_checkpointer(watching.clone());
        let config = RunConfig::thread("asking").durability(durability);
        let run = tokio::spawn({
            let (app, config) = (app.clone(), config.clone());
            async move { app.invoke(Trail::default(), config).await }
        });

        stored(&mut rx, "1:asker:0#interrupt").await;
        assert!(ledger.entries().is_empty(), "`slow` is still running ({durability:?})");
        gate.release.notify_one();
        let paused = run.await.unwrap().unwrap();
        assert_eq!(paused.status, RunStatus::Interrupted { node: "asker".into(), value: Some(json!("proceed?")) });

        let done = app.resume(Command::resume("yes"), config).await.unwrap();
        assert_eq!(done.status, RunStatus::Completed, "{durability:?}");
        assert_eq!((done.state.note.as_str(), done.state.log.clone()), ("yes", strings(&["slow"])));
        assert_eq!(ledger.entries(), strings(&["slow", "asker \"yes\""]), "`slow` ran once ({durability:?})");
    }
}

#[tokio::test]
async fn a_run_forked_from_before_a_parallel_step_runs_its_tasks_again() {
    let (watching, _rx) = Watching::new();
    let (ledger, gate) = (Ledger::default(), Gate::default());
    gate.release.notify_one();
    let app = quick_and_slow(&ledger, &gate, watching.clone());
    let config = RunConfig::thread("replayed").durability(Durability::Sync);
    app.invoke(Trail::default(), config.clone()).await.unwrap();

    // The input checkpoint holds the results the first run stored for step 1; a fork from
    // it is a new run of the step, not a resume of the old one.
    let history = app.get_state_history(&config, None).await.unwrap();
    let input = history.iter().find(|snapshot| snapshot.step == 0).unwrap();
    gate.release.notify_one();
    let forked = app.resume(Command::new(), config.checkpoint_id(input.checkpoint_id.clone())).await.unwrap();
    assert_eq!(forked.state.log, strings(&["quick", "slow", "join"]));
    assert_eq!(ledger.sorted(), strings(&["join", "join", "quick", "quick", "slow", "slow"]));
}

#[tokio::test(start_paused = true)]
async fn a_subgraph_run_that_finished_before_its_parent_stored_it_is_not_run_again() {
    let (watching, _rx) = Watching::new();
    let ledger = Ledger::default();
    let logged = |name: &'static str| recorded(name, &ledger);
    let mut child = StateGraph::<Trail>::named("child");
    child.add_node("a", logged("a")).add_node("b", logged("b"));
    child.add_edge(START, "a").add_edge("a", "b").add_edge("b", END);
    let mut parent = StateGraph::<Trail>::named("parent");
    parent.add_node("sub", child.compiled().unwrap()).add_node("after", logged("after"));
    parent.add_edge(START, "sub").add_edge("sub", "after").add_edge("after", END);
    let app = parent.compiled().unwrap().with_checkpointer(watching.clone());
    let config = RunConfig::thread("finished-child").durability(Durability::Sync);

    // The run "dies" as it stores its step 1: the subgraph run had finished and was stored.
    *watching.stall.lock() = Some(("", 1));
    let run = app.invoke(Trail::default(), config.clone());
    tokio::select! {
        _ = run => panic!("the run cannot finish while its checkpoint stalls"),
        () = watching.stalled.notified() => {}
    }
    assert_eq!(ledger.entries(), strings(&["a", "b"]));

    let done = app.resume(Command::new(), config).await.unwrap();
    assert_eq!(done.state.log, strings(&["a", "b", "after"]));
    assert_eq!(ledger.entries(), strings(&["a", "b", "after"]), "the finished subgraph run gave its result");
}

#[tokio::test(start_paused = true)]
async fn under_async_durability_a_subgraph_starts_only_once_its_step_start_is_committed() {
    let (watching, _rx) = Watching::new();
    let ledger = Ledger::default();
    let logged = |name: &'static str| recorded(name, &ledger);
    let mut child = StateGraph::<Trail>::named("child");
    child.add_node("inner", logged("inner")).add_edge(START, "inner").add_edge("inner", END);
    let mut parent = StateGraph::<Trail>::named("parent");
    parent.add_node("prepare", logged("prepare")).add_node("sub", child.compiled().unwrap());
    parent.add_edge(START, "prepare").add_edge("prepare", "sub").add_edge("sub", END);
    let app = parent.compiled().unwrap().with_checkpointer(watching.clone());
    let config = RunConfig::thread("ordered").durability(Durability::Async);

    // The checkpoint of step 1, which step 2 (the subgraph's) starts from, is never committed:
    // the subgraph must not run, or its checkpoints would outlive the one they belong to.
    *watching.stall.lock() = Some(("", 1));
    let stalled = tokio::time::timeout(Duration::from_secs(3600), app.invoke(Trail::default(), config.clone())).await;
    assert!(stalled.is_err(), "the run waits for its checkpoint");
    assert_eq!(ledger.entries(), strings(&["prepare"]));
    assert!(watching.load("ordered", "2:sub:0", None).await.unwrap().is_none(), "the subgraph stored nothing");

    let done = app.resume(Command::new(), config).await.unwrap();
    assert_eq!(done.state.log, strings(&["prepare", "inner"]));
}
