//! Checkpointed runs: resume after failures and interrupts, durability modes, history, time
//! travel, schema checks, one writer per thread, and bytes written per step.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::common::Compiled;
use async_trait::async_trait;
use dashflow_checkpoint::{
    CheckpointError, CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer, ListOptions, LoadedCheckpoint,
    PendingWrite,
};
use dashflow_checkpoint_memory::MemoryCheckpointer;
use dashflow_executor::{CompiledGraph, Durability, Error, RunConfig, RunStatus};
use dashflow_graph::{Command, END, GraphState, NodeContext, NodeError, START, StateGraph};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::common::{Ledger, Trail, TrailUpdate, recorded, strings};

fn memory() -> Arc<dyn Checkpointer> {
    Arc::new(MemoryCheckpointer::new())
}

/// START -> {a, b, flaky} -> join -> END; `flaky` fails while `fail` is set.
fn fan_out_with_flaky(
    ledger: &Ledger,
    fail: &Arc<AtomicBool>,
    checkpointer: Arc<dyn Checkpointer>,
) -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::new();
    let (flaky_ledger, fail) = (ledger.clone(), Arc::clone(fail));
    graph
        .add_node("a", recorded("a", ledger))
        .add_node("b", recorded("b", ledger))
        .add_node("flaky", move |_: Arc<Trail>| {
            flaky_ledger.push("flaky");
            let failing = fail.load(Ordering::SeqCst);
            async move {
                if failing {
                    return Err(NodeError::msg("service down"));
                }
                Ok(TrailUpdate::default().log(vec!["flaky".to_owned()]))
            }
        })
        .add_node("join", recorded("join", ledger))
        .add_parallel_edges(START, ["a", "b", "flaky"])
        .add_join(["a", "b", "flaky"], "join")
        .add_edge("join", END);
    graph.compiled().unwrap().with_checkpointer(checkpointer)
}

#[tokio::test]
async fn resume_reruns_only_the_failed_task_and_reuses_its_siblings_writes() {
    let (ledger, fail) = (Ledger::default(), Arc::new(AtomicBool::new(true)));
    let app = fan_out_with_flaky(&ledger, &fail, memory());
    let config = RunConfig::thread("r2").durability(Durability::Sync);

    let error = app.invoke(Trail::default(), config.clone()).await.unwrap_err();
    assert!(matches!(&error, Error::NodeFailed { node, .. } if &**node == "flaky"), "{error}");
    assert_eq!(ledger.sorted(), strings(&["a", "b", "flaky"]));

    fail.store(false, Ordering::SeqCst);
    let result = app.resume(Command::new(), config).await.unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    // The siblings did not run again; only the failed task and what follows did.
    assert_eq!(ledger.sorted(), strings(&["a", "b", "flaky", "flaky", "join"]));
    assert_eq!(result.state.log, strings(&["a", "b", "flaky", "join"]));
}

/// `draft` -> `send`, each recorded in `ledger`, checkpointed in memory.
fn draft_then_send(ledger: &Ledger) -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("draft", recorded("draft", ledger))
        .add_node("send", recorded("send", ledger))
        .add_edge(START, "draft")
        .add_edge("draft", "send")
        .add_edge("send", END);
    graph.compiled().unwrap().with_checkpointer(memory())
}

#[tokio::test]
async fn interrupt_before_pauses_and_resume_continues_without_stopping_again() {
    let ledger = Ledger::default();
    let app = draft_then_send(&ledger).interrupt_before(["send"]).unwrap();
    let config = RunConfig::thread("approve-1");

    let paused = app.invoke(Trail::default(), config.clone()).await.unwrap();
    assert_eq!(paused.status, RunStatus::Interrupted { node: "send".into(), value: None });
    assert_eq!(paused.state.log, strings(&["draft"]));
    let state = app.get_state(&config).await.unwrap().unwrap();
    assert_eq!(state.next, strings(&["send"]));

    let done = app.resume(Command::new(), config.clone()).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.state.log, strings(&["draft", "send"]));
    assert_eq!(ledger.entries(), strings(&["draft", "send"]));
    assert!(app.get_state(&config).await.unwrap().unwrap().next.is_empty());
}

#[tokio::test]
async fn pauses_between_steps_under_exit_durability_store_the_one_checkpoint_a_resume_needs() {
    for before in [true, false] {
        let ledger = Ledger::default();
        let app = draft_then_send(&ledger);
        let app =
            if before { app.interrupt_before(["send"]).unwrap() } else { app.interrupt_after(["draft"]).unwrap() };
        let config = RunConfig::thread("exit-pause").durability(Durability::Exit);

        app.invoke(Trail::default(), config.clone()).await.unwrap();
        let state = app.get_state(&config).await.unwrap().expect("the pause is stored");
        assert_eq!((state.state.log.clone(), state.next.clone()), (strings(&["draft"]), strings(&["send"])));
        let history = app.get_state_history(&config, None).await.unwrap();
        assert_eq!(history.len(), 1, "Exit durability writes one checkpoint");

        let done = app.resume(Command::new(), config).await.unwrap();
        assert_eq!(done.status, RunStatus::Completed);
        assert_eq!(done.state.log, strings(&["draft", "send"]));
        assert_eq!(ledger.entries(), strings(&["draft", "send"]), "nothing ran twice");
    }
}

#[tokio::test]
async fn interrupt_after_pauses_once_the_node_ran() {
    let ledger = Ledger::default();
    let app = draft_then_send(&ledger).interrupt_after(["draft"]).unwrap();
    let config = RunConfig::thread("after-1");
    let paused = app.invoke(Trail::default(), config.clone()).await.unwrap();
    assert_eq!(paused.status, RunStatus::Interrupted { node: "draft".into(), value: None });
    let done = app.resume(Command::new(), config).await.unwrap();
    assert_eq!(done.state.log, strings(&["draft", "send"]));
}

#[tokio::test]
async fn a_node_interrupt_returns_the_resume_value_when_the_run_continues() {
    let ledger = Ledger::default();
    let approvals = ledger.clone();
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("review", move |_: Arc<Trail>, ctx: NodeContext| {
            let approvals = approvals.clone();
            async move {
                let answer = ctx.interrupt(json!({ "question": "send it?" }))?;
                approvals.push(format!("answer {answer}"));
                Ok(TrailUpdate::default().note(answer.as_str().unwrap_or_default()))
            }
        })
        .add_edge(START, "review")
        .add_edge("review", END);
    let app = graph.compiled().unwrap().with_checkpointer(memory());
    let config = RunConfig::thread("hitl-1");

    let paused = app.invoke(Trail::default(), config.clone()).await.unwrap();
    assert_eq!(
        paused.status,
        RunStatus::Interrupted { node: "review".into(), value: Some(json!({ "question": "send it?" })) }
    );
    let pending = app.get_state(&config).await.unwrap().unwrap();
    assert_eq!(pending.interrupts.len(), 1);
    assert_eq!(pending.interrupts[0].1, json!({ "question": "send it?" }));

    let done = app.resume(Command::resume("approved"), config).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.state.note, "approved");
    assert_eq!(ledger.entries(), strings(&["answer \"approved\""]));
}

#[tokio::test]
async fn interrupts_without_a_checkpointer_are_refused_up_front() {
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("a", crate::common::tick).add_edge(START, "a").add_edge("a", END);
    let app = graph.compiled().unwrap().interrupt_before(["a"]).unwrap();
    let error = app.invoke(Trail::default(), RunConfig::thread("t")).await.unwrap_err();
    assert!(matches!(error, Error::NoCheckpointer { .. }), "{error}");
    let app = app.with_checkpointer(memory());
    let error = app.invoke(Trail::default(), RunConfig::new()).await.unwrap_err();
    assert!(matches!(error, Error::ThreadRequired { .. }), "{error}");
}

#[test]
fn an_interrupt_setting_naming_an_unknown_node_fails_where_it_is_set() {
    let mut graph = StateGraph::<Trail>::named("drafting");
    graph.add_node("a", crate::common::tick).add_node("b", crate::common::tick);
    graph.add_edge(START, "a").add_edge("a", "b").add_edge("b", END);
    let app = graph.compiled().unwrap();
    for (setting, error) in [
        ("interrupt_before", app.clone().interrupt_before(["a", "ghost"]).unwrap_err()),
        ("interrupt_after", app.clone().interrupt_after(["ghost"]).unwrap_err()),
    ] {
        match &error {
            Error::UnknownInterruptNode { setting: named, node, graph, known } => {
                assert_eq!(
                    (*named, node.as_str(), graph.as_str(), known.as_str()),
                    (setting, "ghost", "drafting", "a, b")
                );
            }
            other => panic!("expected UnknownInterruptNode, got {other}"),
        }
        let message = error.to_string();
        for part in [setting, "`ghost`", "`drafting`", "(a, b)"] {
            assert!(message.contains(part), "{message} lacks {part}");
        }
    }
}

#[tokio::test]
async fn a_checkpointed_graph_run_without_a_thread_is_refused_naming_the_fix() {
    let mut graph = StateGraph::<Trail>::named("counter");
    graph.add_node("a", crate::common::tick).add_edge(START, "a").add_edge("a", END);
    let app = graph.compiled().unwrap().with_checkpointer(memory());
    let error = app.invoke(Trail::default(), RunConfig::new()).await.unwrap_err();
    assert!(matches!(&error, Error::ThreadRequired { graph } if graph == "counter"), "{error}");
    assert!(error.to_string().contains("RunConfig::thread(id)"), "{error}");
    let streamed = app.stream(Trail::default(), RunConfig::new()).result().await.unwrap_err();
    assert!(matches!(streamed, Error::ThreadRequired { .. }), "{streamed}");
    let error = app.resume(Command::new(), RunConfig::new()).await.unwrap_err();
    assert!(matches!(error, Error::NoThread { operation: "resume" }), "{error}");
}

#[tokio::test]
async fn ctx_interrupt_in_a_run_that_is_not_checkpointed_is_an_error_naming_the_node() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("ask", |_: Arc<Trail>, ctx: NodeContext| async move {
            ctx.interrupt(json!("approve?"))?;
            Ok(TrailUpdate::default())
        })
        .add_edge(START, "ask")
        .add_edge("ask", END);
    let app = graph.compiled().unwrap();
    for config in [RunConfig::new(), RunConfig::thread("no-checkpointer")] {
        let error = app.invoke(Trail::default(), config).await.unwrap_err();
        assert!(matches!(&error, Error::InterruptNotCheckpointed { node, step: 1 } if &**node == "ask"), "{error}");
        assert!(error.to_string().contains("with_checkpointer"), "{error}");
    }
}

#[tokio::test]
async fn a_resume_value_for_a_thread_that_is_not_paused_by_an_interrupt_is_refused() {
    let ledger = Ledger::default();
    let app = draft_then_send(&ledger);
    let config = RunConfig::thread("finished");

    // A thread that does not exist.
    let error = app.resume(Command::resume("yes"), config.clone()).await.unwrap_err();
    assert!(matches!(&error, Error::ThreadNotFound { thread_id, .. } if thread_id == "finished"), "{error}");
    assert!(error.to_string().contains("invoke"), "{error}");

    // A thread whose run finished.
    app.invoke(Trail::default(), config.clone()).await.unwrap();
    let head = app.get_state(&config).await.unwrap().unwrap().checkpoint_id;
    let error = app.resume(Command::resume("yes"), config.clone()).await.unwrap_err();
    assert!(matches!(&error, Error::NothingToResume { thread_id, .. } if thread_id == "finished"), "{error}");
    assert!(error.to_string().contains("Command::new()"), "{error}");

    // A command that also edits the state is refused before the edit is stored.
    let command = Command::resume("yes").with_update(TrailUpdate::default().note("edited"));
    let error = app.resume(command, config.clone()).await.unwrap_err();
    assert!(matches!(&error, Error::NothingToResume { .. }), "{error}");

    // A thread paused before a node, where no node asked anything.
    let paused = draft_then_send(&ledger).interrupt_before(["send"]).unwrap();
    let config = RunConfig::thread("paused-before");
    paused.invoke(Trail::default(), config.clone()).await.unwrap();
    let error = paused.resume(Command::resume("yes"), config.clone()).await.unwrap_err();
    assert!(matches!(&error, Error::NothingToResume { state, .. } if state.contains("send")), "{error}");
    // The refused resumes stored nothing and ran nothing; the paused thread still continues.
    assert_eq!(app.get_state(&RunConfig::thread("finished")).await.unwrap().unwrap().checkpoint_id, head);
    let done = paused.resume(Command::new(), config).await.unwrap();
    assert_eq!(done.state.log, strings(&["draft", "send"]));
    assert_eq!(ledger.entries(), strings(&["draft", "send", "draft", "send"]));
}

/// A chain a -> b -> c -> d where `c` fails while `fail` is set.
fn chain_failing_at_c(fail: &Arc<AtomicBool>, checkpointer: Arc<dyn Checkpointer>) -> CompiledGraph<Trail> {
    let fail = Arc::clone(fail);
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("a", crate::common::log("a"))
        .add_node("b", crate::common::log("b"))
        .add_node("c", move |_: Arc<Trail>| {
            let failing = fail.load(Ordering::SeqCst);
            async move {
                if failing {
                    Err(NodeError::msg("crash"))
                } else {
                    Ok(TrailUpdate::default().log(vec!["c".to_owned()]))
                }
            }
        })
        .add_node("d", crate::common::log("d"))
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", "c")
        .add_edge("c", "d")
        .add_edge("d", END);
    graph.compiled().unwrap().with_checkpointer(checkpointer)
}

#[tokio::test]
async fn sync_and_async_durability_resume_from_the_last_completed_step_and_exit_from_the_start() {
    for durability in [Durability::Sync, Durability::Async, Durability::Exit] {
        let fail = Arc::new(AtomicBool::new(true));
        let app = chain_failing_at_c(&fail, memory());
        let config = RunConfig::thread("r3").durability(durability);
        app.invoke(Trail::default(), config.clone()).await.unwrap_err();
        let stored = app.get_state(&config).await.unwrap();
        fail.store(false, Ordering::SeqCst);
        match durability {
            Durability::Exit => {
                // Nothing was written: the run can only start over.
                assert!(stored.is_none());
                let error = app.resume(Command::new(), config).await.unwrap_err();
                assert!(matches!(error, Error::ThreadNotFound { .. }), "{error}");
            }
            _ => {
                let stored = stored.unwrap();
                assert_eq!(stored.state.log, strings(&["a", "b"]), "{durability:?}");
                assert_eq!(stored.next, strings(&["c"]));
                let done = app.resume(Command::new(), config).await.unwrap();
                assert_eq!(done.state.log, strings(&["a", "b", "c", "d"]), "{durability:?}");
            }
        }
    }
}

#[tokio::test]
async fn history_lists_every_checkpoint_newest_first_and_time_travel_forks_from_the_past() {
    let fail = Arc::new(AtomicBool::new(false));
    let app = chain_failing_at_c(&fail, memory());
    let config = RunConfig::thread("history").durability(Durability::Sync);
    let done = app.invoke(Trail::default(), config.clone()).await.unwrap();
    assert_eq!(done.state.log, strings(&["a", "b", "c", "d"]));

    let history = app.get_state_history(&config, None).await.unwrap();
    // The input checkpoint and one per step.
    assert_eq!(history.len(), 5);
    let logs: Vec<usize> = history.iter().map(|snapshot| snapshot.state.log.len()).collect();
    assert_eq!(logs, [4, 3, 2, 1, 0]);
    assert_eq!(history[0].checkpoint_id, done.checkpoint_id.clone().unwrap());
    assert!(history.windows(2).all(|pair| pair[0].parent_id.as_ref() == Some(&pair[1].checkpoint_id)));

    // Fork after `b`: edit the state as if `b` wrote the edit, then run from there.
    let after_b = history.iter().find(|snapshot| snapshot.state.log.len() == 2).unwrap();
    let fork = config.clone().checkpoint_id(after_b.checkpoint_id.clone());
    let edited = app.update_state(&fork, TrailUpdate::default().note("edited"), Some("b")).await.unwrap();
    let forked = app.resume(Command::new(), config.clone().checkpoint_id(edited.clone())).await.unwrap();
    assert_eq!(forked.state.log, strings(&["a", "b", "c", "d"]));
    assert_eq!(forked.state.note, "edited");
    // The thread's head is now the fork's end, and its lineage passes through the edit.
    let head = app.get_state(&config).await.unwrap().unwrap();
    assert_eq!(Some(head.checkpoint_id), forked.checkpoint_id);
    let lineage = app.get_state_history(&config, None).await.unwrap();
    let edit = lineage.iter().find(|snapshot| snapshot.checkpoint_id == edited).unwrap();
    assert_eq!(edit.parent_id.as_ref(), Some(&after_b.checkpoint_id));
    assert_eq!(edit.metadata.get("source"), Some(&json!("update")));
}

#[tokio::test]
async fn invoke_update_continues_a_thread_with_new_input() {
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("count", crate::common::tick).add_edge(START, "count").add_edge("count", END);
    let app = graph.compiled().unwrap().with_checkpointer(memory());
    let config = RunConfig::thread("chat");
    app.invoke(Trail::default(), config.clone()).await.unwrap();
    let second = app.invoke_update(TrailUpdate::default().log(vec!["hello".to_owned()]), config.clone()).await.unwrap();
    assert_eq!(second.state.count, 2);
    assert_eq!(second.state.log, strings(&["hello"]));
}

#[tokio::test]
async fn a_recursion_limit_stop_can_resume_with_a_higher_limit() {
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("inc", crate::common::tick).add_edge(START, "inc").add_conditional_edges(
        "inc",
        |state: &Trail| if state.count < 40 { "again" } else { "done" },
        [("again", "inc"), ("done", END)],
    );
    let app = graph.compiled().unwrap().with_checkpointer(memory());
    let config = RunConfig::thread("r16").durability(Durability::Sync);
    let error = app.invoke(Trail::default(), config.clone()).await.unwrap_err();
    assert!(matches!(error, Error::RecursionLimit { limit: 25 }), "{error}");
    assert_eq!(app.get_state(&config).await.unwrap().unwrap().state.count, 25);
    let done = app.resume(Command::new(), config.recursion_limit(100)).await.unwrap();
    assert_eq!(done.state.count, 40);
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Other {
    #[reduce(add)]
    total: i32,
}

#[tokio::test]
async fn a_checkpoint_of_another_state_schema_is_a_version_mismatch() {
    let checkpointer = memory();
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("a", crate::common::tick).add_edge(START, "a").add_edge("a", END);
    let app = graph.compiled().unwrap().with_checkpointer(Arc::clone(&checkpointer));
    app.invoke(Trail::default(), RunConfig::thread("shared")).await.unwrap();

    let mut other = StateGraph::<Other>::new();
    other
        .add_node("a", |_: Arc<Other>| async { Ok(OtherUpdate::default().total(1)) })
        .add_edge(START, "a")
        .add_edge("a", END);
    let other = other.compiled().unwrap().with_checkpointer(checkpointer);
    let error = other.get_state(&RunConfig::thread("shared")).await.unwrap_err();
    assert!(matches!(error, Error::Checkpoint(CheckpointError::VersionMismatch { .. })), "{error}");
    let error = other.resume(Command::new(), RunConfig::thread("shared")).await.unwrap_err();
    assert!(matches!(error, Error::Checkpoint(CheckpointError::VersionMismatch { .. })), "{error}");
}

#[tokio::test]
async fn a_corrupted_blob_is_a_corruption_error_not_garbage_state() {
    let checkpointer = memory();
    let record = CheckpointRecord {
        thread_id: "bad".into(),
        namespace: String::new(),
        checkpoint_id: CheckpointId::new(),
        parent_id: None,
        step: 0,
        kind: CheckpointKind::Snapshot,
        blob: b"DFCP\x01\x01garbage that is not a state".to_vec(),
        metadata: Default::default(),
        next_nodes: Vec::new(),
        created_at_ms: 0,
    };
    checkpointer.put(record, None).await.unwrap();
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("a", crate::common::tick).add_edge(START, "a").add_edge("a", END);
    let app = graph.compiled().unwrap().with_checkpointer(checkpointer);
    let error = app.get_state(&RunConfig::thread("bad")).await.unwrap_err();
    assert!(
        matches!(error, Error::Checkpoint(CheckpointError::Corrupt { .. } | CheckpointError::VersionMismatch { .. })),
        "{error}"
    );
}

/// Wraps a checkpointer and counts the blob bytes of every put.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Checkpointer>,
    puts: AtomicUsize,
    bytes: AtomicU64,
    snapshots: AtomicUsize,
    snapshot_bytes: AtomicU64,
}

impl Counting {
    /// A counting wrapper over a fresh memory checkpointer.
    fn over_memory() -> Arc<Self> {
        Arc::new(Counting {
            inner: memory(),
            puts: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            snapshots: AtomicUsize::new(0),
            snapshot_bytes: AtomicU64::new(0),
        })
    }
}

#[async_trait]
impl Checkpointer for Counting {
    async fn put(&self, record: CheckpointRecord, expected: Option<&CheckpointId>) -> Result<(), CheckpointError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.bytes.fetch_add(record.blob.len() as u64, Ordering::SeqCst);
        if record.kind == CheckpointKind::Snapshot {
            self.snapshots.fetch_add(1, Ordering::SeqCst);
            self.snapshot_bytes.fetch_add(record.blob.len() as u64, Ordering::SeqCst);
        }
        self.inner.put(record, expected).await
    }
    async fn put_writes(
        &self,
        t: &str,
        ns: &str,
        id: &CheckpointId,
        w: Vec<PendingWrite>,
    ) -> Result<(), CheckpointError> {
        self.inner.put_writes(t, ns, id, w).await
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

#[tokio::test]
async fn a_large_state_growing_by_small_items_writes_bytes_proportional_to_the_items() {
    let counting = Counting::over_memory();
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("grow", |state: Arc<Trail>| async move {
            Ok(TrailUpdate::default().log(vec![format!("item {}", state.log.len())]).count(1_u64))
        })
        .add_edge(START, "grow")
        .add_conditional_edges(
            "grow",
            |s: &Trail| if s.count < 200 { "again" } else { "done" },
            [("again", "grow"), ("done", END)],
        );
    let app = graph.compiled().unwrap().with_checkpointer(Arc::clone(&counting) as Arc<dyn Checkpointer>);
    // About 1 MB of state to begin with.
    let big = Trail { log: (0..10_000).map(|i| format!("{i:0>96}")).collect(), ..Trail::default() };
    let config = RunConfig::thread("big").durability(Durability::Sync).recursion_limit(500);
    let done = app.invoke(big, config.clone()).await.unwrap();
    assert_eq!(done.state.count, 200);

    let puts = counting.puts.load(Ordering::SeqCst) as u64;
    let bytes = counting.bytes.load(Ordering::SeqCst);
    // One ~1 MB snapshot for the input, then deltas of a few dozen bytes each.
    assert_eq!(counting.snapshots.load(Ordering::SeqCst), 1);
    let snapshot = counting.snapshot_bytes.load(Ordering::SeqCst);
    assert!(snapshot > 900_000, "the input snapshot holds the whole state ({snapshot} bytes)");
    let per_step = (bytes - snapshot) / (puts - 1);
    assert!(per_step < 200, "{per_step} bytes per step for a 10-byte item");
    // Loading replays the deltas onto the snapshot.
    let stored = app.get_state(&config).await.unwrap().unwrap();
    assert_eq!(stored.state.log.len(), 10_200);
    assert_eq!(stored.state.log.last().unwrap(), "item 10199");

    // A run continuing the thread writes deltas too, not a new snapshot of the whole state.
    let before = counting.bytes.load(Ordering::SeqCst);
    let more = app.invoke_update(TrailUpdate::default().note("again"), config.clone()).await.unwrap();
    assert_eq!(more.state.log.len(), 10_201);
    let written = counting.bytes.load(Ordering::SeqCst) - before;
    assert!(written < 1_000, "a continuing run wrote {written} bytes");
    assert_eq!(counting.snapshots.load(Ordering::SeqCst), 1);
    assert_eq!(app.get_state(&config).await.unwrap().unwrap().state.note, "again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_resuming_one_thread_at_once_let_exactly_one_advance() {
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let gate = Arc::clone(&barrier);
    let armed = Arc::new(AtomicBool::new(false));
    let waiting = Arc::clone(&armed);
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("work", move |_: Arc<Trail>| {
            let (gate, waiting) = (Arc::clone(&gate), waiting.load(Ordering::SeqCst));
            async move {
                // Both resumed runs are inside the step before either commits.
                if waiting {
                    gate.wait().await;
                }
                Ok(TrailUpdate::default().count(1_u64))
            }
        })
        .add_edge(START, "work")
        .add_edge("work", END);
    let app = graph.compiled().unwrap().with_checkpointer(memory()).interrupt_before(["work"]).unwrap();
    let config = RunConfig::thread("r13").durability(Durability::Sync);
    app.invoke(Trail::default(), config.clone()).await.unwrap();
    armed.store(true, Ordering::SeqCst);

    let (first, second) =
        tokio::join!(app.resume(Command::new(), config.clone()), app.resume(Command::new(), config.clone()));
    let outcomes = [first, second];
    let advanced = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let busy = outcomes.iter().filter(|outcome| matches!(outcome, Err(Error::ThreadBusy { .. }))).count();
    assert_eq!((advanced, busy), (1, 1), "{outcomes:?}");
    // History stays linear: one step after the input checkpoint.
    let history = app.get_state_history(&config, None).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].state.count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_threads_on_one_graph_keep_their_histories_apart() {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("first", |state: Arc<Trail>| async move {
            Ok(TrailUpdate::default().log(vec![format!("{}-1", state.note)]))
        })
        .add_node("second", |state: Arc<Trail>| async move {
            Ok(TrailUpdate::default().log(vec![format!("{}-2", state.note)]))
        })
        .add_edge(START, "first")
        .add_edge("first", "second")
        .add_edge("second", END);
    let app = graph.compiled().unwrap().with_checkpointer(memory());
    let runs = (0..1000).map(|i| {
        let app = app.clone();
        tokio::spawn(async move {
            let note = format!("t{i}");
            let input = Trail { note: note.clone(), ..Trail::default() };
            app.invoke(input, RunConfig::thread(note).durability(Durability::Async)).await
        })
    });
    let results = futures::future::join_all(runs).await;
    for (i, result) in results.into_iter().enumerate() {
        let result = result.unwrap().unwrap();
        assert_eq!(result.state.log, vec![format!("t{i}-1"), format!("t{i}-2")]);
        let history = app.get_state_history(&RunConfig::thread(format!("t{i}")), None).await.unwrap();
        let steps: Vec<i64> = history.iter().map(|snapshot| snapshot.step).collect();
        assert_eq!(steps, [2, 1, 0], "thread t{i}");
    }
}

#[tokio::test]
async fn dropping_a_run_mid_step_leaves_no_half_written_checkpoint_and_the_thread_resumes() {
    let block = Arc::new(AtomicBool::new(true));
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let entered = Arc::new(parking_lot::Mutex::new(Some(entered_tx)));
    let blocking = Arc::clone(&block);
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("a", crate::common::log("a"))
        .add_node("slow", move |_: Arc<Trail>| {
            let (blocking, entered) = (blocking.load(Ordering::SeqCst), entered.lock().take());
            async move {
                if blocking {
                    if let Some(entered) = entered {
                        let _ = entered.send(());
                    }
                    std::future::pending::<()>().await;
                }
                Ok(TrailUpdate::default().log(vec!["slow".to_owned()]))
            }
        })
        .add_edge(START, "a")
        .add_edge("a", "slow")
        .add_edge("slow", END);
    let app = graph.compiled().unwrap().with_checkpointer(memory());
    let config = RunConfig::thread("r19").durability(Durability::Sync);
    let run = app.invoke(Trail::default(), config.clone());
    tokio::select! {
        _ = run => panic!("the run cannot finish while `slow` blocks"),
        _ = entered_rx => {}
    }
    // The run future is dropped here, inside step 2.
    let stored = app.get_state(&config).await.unwrap().unwrap();
    assert_eq!(stored.state.log, strings(&["a"]));
    assert_eq!(stored.next, strings(&["slow"]));
    block.store(false, Ordering::SeqCst);
    let done = app.resume(Command::new(), config).await.unwrap();
    assert_eq!(done.state.log, strings(&["a", "slow"]));
}

/// A 40-step counting loop on a state big enough that no snapshot follows the input one.
fn counting_loop(checkpointer: Arc<dyn Checkpointer>) -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::new();
    graph.add_node("inc", crate::common::tick).add_edge(START, "inc").add_conditional_edges(
        "inc",
        |state: &Trail| if state.count < 40 { "again" } else { "done" },
        [("again", "inc"), ("done", END)],
    );
    graph.compiled().unwrap().with_checkpointer(checkpointer)
}

fn padded() -> Trail {
    Trail { log: (0..200).map(|i| format!("{i:0>64}")).collect(), ..Trail::default() }
}

#[tokio::test]
async fn pruning_keeps_the_last_checkpoints_and_folds_their_deltas_into_a_snapshot() {
    let app = counting_loop(memory());
    let config = RunConfig::thread("prune").durability(Durability::Sync).recursion_limit(100);
    app.invoke(padded(), config.clone()).await.unwrap();
    assert_eq!(app.get_state_history(&config, None).await.unwrap().len(), 41);

    let deleted = app.prune_thread("prune", 5).await.unwrap();
    assert_eq!(deleted, 36);
    let history = app.get_state_history(&config, None).await.unwrap();
    let counts: Vec<u64> = history.iter().map(|snapshot| snapshot.state.count).collect();
    assert_eq!(counts, [40, 39, 38, 37, 36]);
    assert!(history.iter().all(|snapshot| snapshot.state.log.len() == 200));
    // The thread still resumes and continues from its head.
    let more = app.invoke_update(TrailUpdate::default().count(1_u64), config.recursion_limit(5)).await.unwrap();
    assert_eq!(more.state.count, 42);
}

#[tokio::test]
async fn pruning_on_a_backend_that_cannot_rewrite_keeps_what_the_chains_need() {
    let counting = Counting::over_memory();
    // `Counting` does not forward `rewrite_as_snapshot`, so it is not supported.
    let app = counting_loop(counting);
    let config = RunConfig::thread("keep").durability(Durability::Sync).recursion_limit(100);
    app.invoke(padded(), config.clone()).await.unwrap();
    app.prune_thread("keep", 5).await.unwrap();
    let history = app.get_state_history(&config, None).await.unwrap();
    assert!(history.len() >= 5);
    assert_eq!(history[0].state.count, 40);
    assert_eq!(history[4].state.count, 36);
}

/// `sub` (a two-node subgraph that counts) around its own conditional edge, ten times.
fn looping_through_a_subgraph(checkpointer: Arc<dyn Checkpointer>) -> CompiledGraph<Trail> {
    let mut inner = StateGraph::<Trail>::named("inner");
    inner
        .add_node("one", crate::common::tick)
        .add_node("two", |_: Arc<Trail>| async { Ok(TrailUpdate::default().log(strings(&["two"]))) })
        .add_edge(START, "one")
        .add_edge("one", "two")
        .add_edge("two", END);
    let mut graph = StateGraph::<Trail>::named("outer");
    graph.add_node("sub", inner.compiled().unwrap()).add_edge(START, "sub").add_conditional_edges(
        "sub",
        |state: &Trail| if state.count < 10 { "again" } else { "done" },
        [("again", "sub"), ("done", END)],
    );
    graph.compiled().unwrap().with_checkpointer(checkpointer)
}

/// The subgraph namespaces of `thread` that hold checkpoints, and how many in all.
async fn subgraph_namespaces(checkpointer: &Arc<dyn Checkpointer>, thread: &str) -> (Vec<String>, usize) {
    let records = checkpointer.list(thread, &ListOptions::new()).await.unwrap();
    let mut namespaces: Vec<String> =
        records.iter().filter(|record| !record.namespace.is_empty()).map(|r| r.namespace.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    let count = records.iter().filter(|record| !record.namespace.is_empty()).count();
    (namespaces, count)
}

#[tokio::test]
async fn pruning_drops_the_subgraph_runs_of_deleted_steps_and_keeps_those_of_kept_ones() {
    let checkpointer = memory();
    let app = looping_through_a_subgraph(Arc::clone(&checkpointer));
    let config = RunConfig::thread("nested").durability(Durability::Sync);
    app.invoke(Trail::default(), config.clone()).await.unwrap();
    let (namespaces, _) = subgraph_namespaces(&checkpointer, "nested").await;
    assert_eq!(namespaces.len(), 10, "one subgraph run per step: {namespaces:?}");

    app.prune_thread("nested", 3).await.unwrap();
    let history = app.get_state_history(&config, None).await.unwrap();
    let counts: Vec<u64> = history.iter().map(|snapshot| snapshot.state.count).collect();
    assert_eq!(counts, [10, 9, 8]);
    // The oldest kept checkpoint ends step 8: the subgraph runs of steps 9 and 10 started
    // from kept checkpoints and stay whole; those of steps 1-8 started from deleted ones.
    let (kept, kept_checkpoints) = subgraph_namespaces(&checkpointer, "nested").await;
    assert_eq!(kept.len(), 2, "{kept:?}");
    let parents: Vec<String> = history.iter().map(|snapshot| snapshot.checkpoint_id.to_string()).collect();
    for namespace in &kept {
        let run = checkpointer.list("nested", &ListOptions::new().namespace(namespace)).await.unwrap();
        assert_eq!(run.len(), 3, "a whole subgraph run (input and two steps) in {namespace}");
        let started_from = run[0].metadata.get("parent_checkpoint").and_then(|id| id.as_str()).unwrap();
        assert!(parents.iter().any(|parent| parent == started_from), "{namespace} started from a deleted step");
    }
    assert_eq!(kept_checkpoints, 6);

    // The thread still continues from its head, through its subgraph once more.
    let more = app.invoke_update(TrailUpdate::default(), config.clone()).await.unwrap();
    assert_eq!(more.state.count, 11);
}

#[tokio::test]
async fn idle_threads_are_deleted_after_their_time_to_live() {
    let checkpointer = memory();
    let app = counting_loop(Arc::clone(&checkpointer));
    app.invoke(Trail::default(), RunConfig::thread("fresh").recursion_limit(100)).await.unwrap();
    let stale = CheckpointRecord {
        thread_id: "stale".into(),
        namespace: String::new(),
        checkpoint_id: CheckpointId::new(),
        parent_id: None,
        step: 0,
        kind: CheckpointKind::Snapshot,
        blob: Vec::new(),
        metadata: Default::default(),
        next_nodes: Vec::new(),
        created_at_ms: 0,
    };
    checkpointer.put(stale, None).await.unwrap();
    let deleted = app.delete_idle_threads(std::time::Duration::from_secs(3600)).await.unwrap();
    assert_eq!(deleted, ["stale"]);
    assert!(app.get_state(&RunConfig::thread("fresh")).await.unwrap().is_some());
}

/// A child graph: `prepare` -> `ask` (interrupts once for an answer, or fails while `fail`
/// is set) -> `finish`, each recorded in the ledger.
fn child_graph(ledger: &Ledger, fail: &Arc<AtomicBool>) -> CompiledGraph<Trail> {
    let (asks, fail) = (ledger.clone(), Arc::clone(fail));
    let mut child = StateGraph::<Trail>::named("child");
    child
        .add_node("prepare", recorded("prepare", ledger))
        .add_node("ask", move |_: Arc<Trail>, ctx: NodeContext| {
            let (asks, failing) = (asks.clone(), fail.load(Ordering::SeqCst));
            async move {
                asks.push("ask");
                if failing {
                    return Err(NodeError::msg("the reviewer service is down"));
                }
                let answer = ctx.interrupt(json!("approve the plan?"))?;
                Ok(TrailUpdate::default().note(answer.as_str().unwrap_or_default()))
            }
        })
        .add_node("finish", recorded("finish", ledger))
        .add_edge(START, "prepare")
        .add_edge("prepare", "ask")
        .add_edge("ask", "finish")
        .add_edge("finish", END);
    child.compiled().unwrap()
}

fn parent_graph(
    child: CompiledGraph<Trail>,
    ledger: &Ledger,
    checkpointer: Arc<dyn Checkpointer>,
) -> CompiledGraph<Trail> {
    let mut parent = StateGraph::<Trail>::named("parent");
    parent
        .add_node("intro", recorded("intro", ledger))
        .add_node("plan", child)
        .add_node("outro", recorded("outro", ledger))
        .add_edge(START, "intro")
        .add_edge("intro", "plan")
        .add_edge("plan", "outro")
        .add_edge("outro", END);
    parent.compiled().unwrap().with_checkpointer(checkpointer)
}

#[tokio::test]
async fn an_interrupt_inside_a_subgraph_pauses_the_parent_and_the_answer_reaches_the_child() {
    let (ledger, fail) = (Ledger::default(), Arc::new(AtomicBool::new(false)));
    let checkpointer = memory();
    let app = parent_graph(child_graph(&ledger, &fail), &ledger, Arc::clone(&checkpointer));
    let config = RunConfig::thread("nested-hitl").durability(Durability::Sync);

    let paused = app.invoke(Trail::default(), config.clone()).await.unwrap();
    assert_eq!(paused.status, RunStatus::Interrupted { node: "plan".into(), value: Some(json!("approve the plan?")) });
    // The child checkpointed in its own namespace of the thread, not in the parent's history.
    let namespaces: Vec<String> = checkpointer
        .list("nested-hitl", &ListOptions::new())
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.namespace)
        .filter(|namespace| !namespace.is_empty())
        .collect();
    assert!(!namespaces.is_empty() && namespaces.iter().all(|ns| ns == "2:plan:0"), "{namespaces:?}");
    assert!(app.get_state_history(&config, None).await.unwrap().iter().all(|s| s.next != strings(&["finish"])));

    let done = app.resume(Command::resume("approved"), config).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.state.note, "approved");
    assert_eq!(done.state.log, strings(&["intro", "prepare", "finish", "outro"]));
    // `prepare` ran once: the child resumed from its checkpoint instead of starting over.
    assert_eq!(ledger.entries(), strings(&["intro", "prepare", "ask", "ask", "finish", "outro"]));
}

#[tokio::test]
async fn a_same_state_subgraph_paused_under_exit_durability_keeps_its_earlier_steps_for_the_parent() {
    let (ledger, fail) = (Ledger::default(), Arc::new(AtomicBool::new(false)));
    let app = parent_graph(child_graph(&ledger, &fail), &ledger, memory());
    let config = RunConfig::thread("nested-exit").durability(Durability::Exit);
    let paused = app.invoke(Trail::default(), config.clone()).await.unwrap();
    assert!(matches!(paused.status, RunStatus::Interrupted { .. }));

    let done = app.resume(Command::resume("approved"), config).await.unwrap();
    // `prepare` ran before the pause, once; its update still reaches the parent.
    assert_eq!(done.state.log, strings(&["intro", "prepare", "finish", "outro"]));
    assert_eq!(ledger.entries(), strings(&["intro", "prepare", "ask", "ask", "finish", "outro"]));
}

#[tokio::test]
async fn a_failure_inside_a_subgraph_resumes_the_child_from_its_last_checkpoint() {
    // `Exit` durability stores nothing of a failed run, so there is nothing to continue.
    for durability in [Durability::Sync, Durability::Async] {
        let (ledger, fail) = (Ledger::default(), Arc::new(AtomicBool::new(true)));
        let app = parent_graph(child_graph(&ledger, &fail), &ledger, memory());
        let config = RunConfig::thread(format!("nested-failure-{durability:?}")).durability(durability);
        let error = app.invoke(Trail::default(), config.clone()).await.unwrap_err();
        assert!(matches!(&error, Error::NodeFailed { node, .. } if &**node == "plan"), "{error}");

        fail.store(false, Ordering::SeqCst);
        let paused = app.resume(Command::new(), config.clone()).await.unwrap();
        assert!(matches!(paused.status, RunStatus::Interrupted { .. }), "{durability:?}");
        let done = app.resume(Command::resume("ok"), config).await.unwrap();
        assert_eq!(done.state.log, strings(&["intro", "prepare", "finish", "outro"]), "{durability:?}");
        assert_eq!(ledger.entries().iter().filter(|entry| *entry == "prepare").count(), 1, "{durability:?}");
    }
}

#[tokio::test]
async fn a_subgraph_that_fails_after_a_resume_that_edited_its_parent_is_continued_by_the_next_resume() {
    for durability in [Durability::Sync, Durability::Async, Durability::Exit] {
        let (ledger, fail) = (Ledger::default(), Arc::new(AtomicBool::new(false)));
        let app = parent_graph(child_graph(&ledger, &fail), &ledger, memory());
        let config = RunConfig::thread(format!("edit-then-fail-{durability:?}")).durability(durability);
        let paused = app.invoke(Trail::default(), config.clone()).await.unwrap();
        assert!(matches!(paused.status, RunStatus::Interrupted { .. }), "{durability:?}");

        // The resume stores its edit as a checkpoint of the parent, then the child fails.
        fail.store(true, Ordering::SeqCst);
        let command = Command::resume("ok").with_update(TrailUpdate::default().count(1_u64));
        let error = app.resume(command, config.clone()).await.unwrap_err();
        assert!(matches!(&error, Error::NodeFailed { node, .. } if &**node == "plan"), "{error}");

        // Restarted from the edit, the step is still the one the child run belongs to.
        fail.store(false, Ordering::SeqCst);
        let done = app.resume(Command::new(), config).await.unwrap();
        assert_eq!(done.status, RunStatus::Completed, "{durability:?}");
        assert_eq!((done.state.note.as_str(), done.state.count), ("ok", 1), "{durability:?}");
        assert_eq!(done.state.log, strings(&["intro", "prepare", "finish", "outro"]), "{durability:?}");
        assert_eq!(ledger.entries().iter().filter(|entry| *entry == "prepare").count(), 1, "{durability:?}");
    }
}

/// START -> a -> b -> c -> END, each appending its name.
fn three_steps() -> StateGraph<Trail> {
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("a", crate::common::log("a"))
        .add_node("b", crate::common::log("b"))
        .add_node("c", crate::common::log("c"))
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", "c")
        .add_edge("c", END);
    graph
}

#[tokio::test]
async fn checkpoint_settings_made_before_the_checkpointer_still_count() {
    for codec_first in [true, false] {
        let checkpointer = Arc::new(MemoryCheckpointer::new());
        let app = three_steps().compiled().unwrap();
        let shared: Arc<dyn Checkpointer> = checkpointer.clone();
        let app = if codec_first {
            app.with_codec(dashflow_checkpoint::Codec::Json).with_max_delta_chain(1).with_checkpointer(shared)
        } else {
            app.with_checkpointer(shared).with_codec(dashflow_checkpoint::Codec::Json).with_max_delta_chain(1)
        };
        app.invoke(Trail::default(), RunConfig::thread("t")).await.unwrap();
        let records = checkpointer.list("t", &ListOptions::new()).await.unwrap();
        assert_eq!(records.len(), 4, "input and three steps");
        for record in &records {
            let sealed = dashflow_checkpoint::unseal(&record.blob).unwrap();
            assert_eq!(sealed.codec, dashflow_checkpoint::Codec::Json, "codec first: {codec_first}");
        }
        // A chain of at most one delta: every other checkpoint is a snapshot.
        let kinds: Vec<CheckpointKind> = records.iter().rev().map(|record| record.kind).collect();
        assert!(
            kinds.windows(2).all(|pair| pair != [CheckpointKind::Delta, CheckpointKind::Delta]),
            "codec first: {codec_first}: {kinds:?}"
        );
    }
}

#[tokio::test]
async fn a_pause_ends_the_stream_with_an_interrupted_item_in_every_mode() {
    use dashflow_executor::{StreamEvent, StreamMode};
    use futures::StreamExt;
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("draft", |_: Arc<Trail>| async { Ok(TrailUpdate::default().log(vec!["draft".to_owned()])) })
        .add_node("review", |_: Arc<Trail>, ctx: NodeContext| async move {
            let answer = ctx.interrupt(json!({ "question": "send it?" }))?;
            Ok(TrailUpdate::default().note(answer.as_str().unwrap_or_default()))
        })
        .add_edge(START, "draft")
        .add_edge("draft", "review")
        .add_edge("review", END);
    let app = graph.compiled().unwrap().with_checkpointer(memory());
    for (thread, mode) in [("p-upd", StreamMode::Updates), ("p-val", StreamMode::Values), ("p-cus", StreamMode::Custom)]
    {
        let items: Vec<_> =
            app.stream(Trail::default(), RunConfig::thread(thread).stream_modes([mode])).collect().await;
        match items.last() {
            Some(Ok(StreamEvent::Interrupted { step: 1, node, value: Some(value) })) => {
                assert_eq!(&**node, "review");
                assert_eq!(value, &json!({ "question": "send it?" }));
            }
            other => panic!("{mode:?}: the stream ended with {other:?}"),
        }
    }
    // A pause before a node carries no value, and a run that does not pause sends none.
    let before = app.clone().interrupt_before(["review"]).unwrap();
    let items: Vec<_> = before
        .stream(Trail::default(), RunConfig::thread("p-before").stream_modes([StreamMode::Updates]))
        .collect()
        .await;
    assert!(
        matches!(items.last(), Some(Ok(StreamEvent::Interrupted { node, value: None, .. })) if &**node == "review"),
        "{items:?}"
    );
    let resumed: Vec<_> = app
        .resume_stream(Command::resume("yes"), RunConfig::thread("p-upd").stream_modes([StreamMode::Updates]))
        .collect()
        .await;
    assert!(!resumed.iter().any(|item| matches!(item, Ok(StreamEvent::Interrupted { .. }))), "{resumed:?}");
    assert!(!resumed.is_empty());
}

/// Under `Async` durability a backend whose writes need no I/O (the memory checkpointer) is
/// written on the run's own task: each step's checkpoint is stored before the next step
/// starts, so a node always finds every checkpoint before its step.
#[tokio::test]
async fn async_durability_writes_an_in_memory_backend_before_the_next_step() {
    let checkpointer = Arc::new(MemoryCheckpointer::new());
    assert!(checkpointer.writes_without_io());
    let counted = |checkpointer: &Arc<MemoryCheckpointer>| {
        let checkpointer = Arc::clone(checkpointer);
        move |_: Arc<Trail>| {
            let checkpointer = Arc::clone(&checkpointer);
            async move {
                let stored = checkpointer
                    .list("in-order", &dashflow_checkpoint::ListOptions::new())
                    .await
                    .map_err(NodeError::new)?;
                Ok::<_, NodeError>(TrailUpdate::default().log(vec![stored.len().to_string()]))
            }
        }
    };
    let mut graph = StateGraph::<Trail>::new();
    graph
        .add_node("a", counted(&checkpointer))
        .add_node("b", counted(&checkpointer))
        .add_node("c", counted(&checkpointer))
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", "c")
        .add_edge("c", END);
    let app = graph.compiled().unwrap().with_checkpointer(Arc::clone(&checkpointer) as Arc<dyn Checkpointer>);
    let done = app.invoke(Trail::default(), RunConfig::thread("in-order").durability(Durability::Async)).await.unwrap();
    // The input's checkpoint before `a`, then one more per step.
    assert_eq!(done.state.log, strings(&["1", "2", "3"]));
    let history = checkpointer.list("in-order", &dashflow_checkpoint::ListOptions::new()).await.unwrap();
    assert_eq!(history.len(), 4);
}
