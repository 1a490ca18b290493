//! The state of subgraph runs under a checkpointed parent: named by the parent's pending
//! tasks, read and edited through their namespaces with their own state types.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::Compiled;
use dashflow_checkpoint::{CheckpointError, Checkpointer};
use dashflow_checkpoint_memory::MemoryCheckpointer;
use dashflow_executor::{
    CompiledGraph, Durability, Error, RunConfig, RunStatus, SnapshotTask, StateSnapshot, Subgraph,
};
use dashflow_graph::{Command, END, GraphState, NodeContext, NodeError, START, StateGraph};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::common::{Ledger, Trail, TrailUpdate, strings};

fn memory() -> Arc<dyn Checkpointer> {
    Arc::new(MemoryCheckpointer::new())
}

/// The state of the drafting subgraph: a type of its own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Draft {
    topic: String,
    #[reduce(append)]
    steps: Vec<String>,
    verdict: String,
}

/// The state of the outlining subgraph, which runs the drafting subgraph: a third type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Outline {
    topic: String,
    #[reduce(append)]
    sections: Vec<String>,
}

/// `prepare` -> `ask` (pauses with `{"approve": topic}` until answered) -> `finish`, which
/// records the topic and verdict it read. `prepare` runs are counted in `ledger`.
fn drafting(ledger: &Ledger) -> CompiledGraph<Draft> {
    let prepared = ledger.clone();
    let mut graph = StateGraph::<Draft>::named("drafting");
    graph
        .add_node("prepare", move |_: Arc<Draft>| {
            prepared.push("prepare");
            async move { Ok(DraftUpdate::default().steps(strings(&["prepare"]))) }
        })
        .add_node("ask", |draft: Arc<Draft>, ctx: NodeContext| async move {
            let answer = ctx.interrupt(json!({ "approve": draft.topic }))?;
            Ok(DraftUpdate::default().verdict(answer.as_str().unwrap_or_default()).steps(strings(&["ask"])))
        })
        .add_node("finish", |draft: Arc<Draft>| async move {
            Ok(DraftUpdate::default().steps(vec![format!("finish {} {}", draft.topic, draft.verdict)]))
        })
        .add_edge(START, "prepare")
        .add_edge("prepare", "ask")
        .add_edge("ask", "finish")
        .add_edge("finish", END);
    graph.compiled().unwrap()
}

/// Drafting as a node of a `Trail` graph: the topic comes from `note`, the steps go to `log`.
fn draft_node(ledger: &Ledger) -> Subgraph<Trail, Draft> {
    Subgraph::mapped(
        drafting(ledger),
        |trail: &Trail| Draft { topic: trail.note.clone(), ..Draft::default() },
        |draft: Draft| TrailUpdate::default().log(draft.steps),
    )
}

/// `intro` -> `review` (the drafting subgraph) -> `outro`.
fn reviewing(ledger: &Ledger, checkpointer: Arc<dyn Checkpointer>) -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::named("reviewing");
    graph
        .add_node("intro", |_: Arc<Trail>| async { Ok(TrailUpdate::default().log(strings(&["intro"]))) })
        .add_node("review", draft_node(ledger))
        .add_node("outro", |_: Arc<Trail>| async { Ok(TrailUpdate::default().log(strings(&["outro"]))) })
        .add_edge(START, "intro")
        .add_edge("intro", "review")
        .add_edge("review", "outro")
        .add_edge("outro", END);
    graph.compiled().unwrap().with_checkpointer(checkpointer)
}

fn rust_topic() -> Trail {
    Trail { note: "rust".into(), ..Trail::default() }
}

fn approve_rust() -> Value {
    json!({ "approve": "rust" })
}

/// The one task of a snapshot's next step.
fn only_task(tasks: &[SnapshotTask]) -> &SnapshotTask {
    let [task] = tasks else { panic!("expected one pending task, got {tasks:?}") };
    task
}

#[tokio::test]
async fn a_paused_subgraph_is_named_by_its_parent_task_and_read_with_its_own_state_type() {
    let ledger = Ledger::default();
    let app = reviewing(&ledger, memory());
    let config = RunConfig::thread("review-1");

    let paused = app.invoke(rust_topic(), config.clone()).await.unwrap();
    assert_eq!(paused.status, RunStatus::Interrupted { node: "review".into(), value: Some(approve_rust()) });

    let parent = app.get_state(&config).await.unwrap().unwrap();
    assert_eq!(parent.state.log, strings(&["intro"]));
    let task = only_task(&parent.tasks);
    assert_eq!((task.id.as_str(), task.node.as_str()), ("2:review:0", "review"));
    assert_eq!(task.interrupt, Some(approve_rust()));
    let namespace = task.subgraph.clone().expect("the paused drafting run is named by its task");
    assert_eq!(namespace, "2:review:0");

    let child = app.get_subgraph_state::<Draft>(&config, &namespace).await.unwrap();
    assert_eq!(child.state, Draft { topic: "rust".into(), steps: strings(&["prepare"]), verdict: String::new() });
    assert_eq!(child.next, strings(&["ask"]));
    assert_eq!(child.interrupts, [("2:ask:0".to_owned(), approve_rust())]);
    let task = only_task(&child.tasks);
    assert_eq!(
        (task.id.as_str(), task.interrupt.as_ref(), task.subgraph.as_ref()),
        ("2:ask:0", Some(&approve_rust()), None)
    );

    let done = app.resume(Command::resume("yes"), config.clone()).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.state.log, strings(&["intro", "prepare", "ask", "finish rust yes", "outro"]));
    assert_eq!(ledger.entries(), strings(&["prepare"]));
    // Nothing is pending any more, at either level.
    assert!(app.get_state(&config).await.unwrap().unwrap().tasks.is_empty());
    let finished = app.get_subgraph_state::<Draft>(&config, &namespace).await.unwrap();
    assert!(finished.next.is_empty() && finished.tasks.is_empty() && finished.interrupts.is_empty());

    // The child's history: its input, each completed step, newest first; the paused step
    // left no checkpoint of its own.
    let history = app.get_subgraph_state_history::<Draft>(&config, &namespace, None).await.unwrap();
    let nexts: Vec<Vec<String>> = history.iter().map(|snapshot| snapshot.next.clone()).collect();
    assert_eq!(nexts, [vec![], strings(&["finish"]), strings(&["ask"]), strings(&["prepare"])]);
    let steps: Vec<i64> = history.iter().map(|snapshot| snapshot.step).collect();
    assert_eq!(steps, [3, 2, 1, 0]);
    assert_eq!(history[0].state.steps, strings(&["prepare", "ask", "finish rust yes"]));
    assert_eq!(history[3].state, Draft { topic: "rust".into(), ..Draft::default() });
    // A subgraph's history stays out of its parent's.
    let parent_history = app.get_state_history(&config, None).await.unwrap();
    assert!(parent_history.iter().all(|snapshot| !snapshot.next.contains(&"finish".to_owned())));
    assert_eq!(app.get_subgraph_state_history::<Draft>(&config, &namespace, Some(2)).await.unwrap().len(), 2);
}

#[tokio::test]
async fn only_tasks_with_an_unfinished_subgraph_run_name_a_namespace() {
    let ledger = Ledger::default();
    let mut tally = StateGraph::<Trail>::named("tally");
    tally.add_node("add", |_: Arc<Trail>| async { Ok(TrailUpdate::default().count(1_u64)) });
    tally.add_edge(START, "add").add_edge("add", END);
    let mut graph = StateGraph::<Trail>::named("fan-out");
    graph
        .add_node("plain", |_: Arc<Trail>| async { Ok(TrailUpdate::default().count(1_u64)) })
        .add_node("review", draft_node(&ledger))
        .add_node("tally", tally.compiled().unwrap())
        .add_parallel_edges(START, ["plain", "review", "tally"])
        .add_edge("plain", END)
        .add_edge("review", END)
        .add_edge("tally", END);
    let app = graph.compiled().unwrap().with_checkpointer(memory());
    let config = RunConfig::thread("fan-out-1").durability(Durability::Sync);
    app.invoke(rust_topic(), config.clone()).await.unwrap();

    let parent = app.get_state(&config).await.unwrap().unwrap();
    let tasks: Vec<_> = parent
        .tasks
        .iter()
        .map(|task| (task.id.as_str(), task.interrupt.is_some(), task.subgraph.as_deref()))
        .collect();
    // `tally` is a subgraph too, but its run finished: its result waits for the step's end.
    assert_eq!(
        tasks,
        [("1:plain:0", false, None), ("1:review:1", true, Some("1:review:1")), ("1:tally:2", false, None)]
    );
    let tally = app.get_subgraph_state::<Trail>(&config, "1:tally:2").await.unwrap();
    assert_eq!((tally.state.count, tally.next.len()), (1, 0));
    // The history does not look into namespaces.
    let history = app.get_state_history(&config, None).await.unwrap();
    assert!(history.iter().flat_map(|snapshot| &snapshot.tasks).all(|task| task.subgraph.is_none()));
    assert_eq!(history[0].tasks.len(), 3);
}

#[tokio::test]
async fn an_edit_of_a_paused_subgraph_is_what_the_resumed_subgraph_reads() {
    let ledger = Ledger::default();
    let app = reviewing(&ledger, memory());
    let config = RunConfig::thread("review-edit");
    app.invoke(rust_topic(), config.clone()).await.unwrap();
    let namespace = only_task(&app.get_state(&config).await.unwrap().unwrap().tasks).subgraph.clone().unwrap();
    let before = app.get_subgraph_state::<Draft>(&config, &namespace).await.unwrap();

    let edit = app.update_subgraph_state::<Draft>(&config, &namespace, DraftUpdate::default().topic("go")).await;
    let edit = edit.unwrap();

    let edited = app.get_subgraph_state::<Draft>(&config, &namespace).await.unwrap();
    assert_eq!(edited.checkpoint_id, edit);
    assert_eq!(edited.parent_id, Some(before.checkpoint_id));
    assert_eq!(edited.metadata.get("source"), Some(&json!("update")));
    assert_eq!(edited.state.topic, "go");
    // The subgraph stands where it stood: the same next node, still waiting for its answer.
    assert_eq!(edited.next, strings(&["ask"]));
    assert_eq!(edited.interrupts, [("2:ask:0".to_owned(), json!({ "approve": "rust" }))]);
    // The parent is untouched and still paused on its subgraph.
    let parent = app.get_state(&config).await.unwrap().unwrap();
    assert_eq!(only_task(&parent.tasks).subgraph.as_deref(), Some(namespace.as_str()));

    let done = app.resume(Command::resume("yes"), config).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.state.log, strings(&["intro", "prepare", "ask", "finish go yes", "outro"]));
    assert_eq!(ledger.entries(), strings(&["prepare"]));
}

#[tokio::test]
async fn an_edit_of_a_paused_same_state_subgraph_reaches_the_parent_with_the_subgraph_update() {
    let mut child = StateGraph::<Trail>::named("same-state");
    child
        .add_node("prepare", |_: Arc<Trail>| async { Ok(TrailUpdate::default().log(strings(&["prepare"]))) })
        .add_node("ask", |_: Arc<Trail>, ctx: NodeContext| async move {
            let answer = ctx.interrupt(json!("approve?"))?;
            Ok(TrailUpdate::default().note(answer.as_str().unwrap_or_default()))
        })
        .add_node("finish", |trail: Arc<Trail>| async move {
            Ok(TrailUpdate::default().log(vec![format!("finish after {}", trail.log.join("+"))]))
        })
        .add_edge(START, "prepare")
        .add_edge("prepare", "ask")
        .add_edge("ask", "finish")
        .add_edge("finish", END);
    let mut parent = StateGraph::<Trail>::named("parent");
    parent
        .add_node("intro", |_: Arc<Trail>| async { Ok(TrailUpdate::default().log(strings(&["intro"]))) })
        .add_node("plan", child.compiled().unwrap())
        .add_edge(START, "intro")
        .add_edge("intro", "plan")
        .add_edge("plan", END);
    let app = parent.compiled().unwrap().with_checkpointer(memory());
    let config = RunConfig::thread("same-state-edit");
    app.invoke(Trail::default(), config.clone()).await.unwrap();

    let edit = TrailUpdate::default().log(strings(&["edited"])).count(2_u64);
    app.update_subgraph_state::<Trail>(&config, "2:plan:0", edit).await.unwrap();
    let done = app.resume(Command::resume("approved"), config).await.unwrap();

    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.state.log, strings(&["intro", "prepare", "edited", "finish after intro+prepare+edited"]));
    assert_eq!((done.state.note.as_str(), done.state.count), ("approved", 2));
}

#[tokio::test]
async fn an_edit_of_the_parent_while_its_subgraph_is_paused_keeps_the_subgraph_waiting_for_its_answer() {
    let ledger = Ledger::default();
    let app = reviewing(&ledger, memory());
    let config = RunConfig::thread("parent-edit");
    app.invoke(rust_topic(), config.clone()).await.unwrap();

    app.update_state(&config, TrailUpdate::default().count(5_u64), None).await.unwrap();
    let parent = app.get_state(&config).await.unwrap().unwrap();
    assert_eq!(parent.state.count, 5);
    let task = only_task(&parent.tasks);
    assert_eq!((task.interrupt.clone(), task.subgraph.as_deref()), (Some(approve_rust()), Some("2:review:0")));

    let done = app.resume(Command::resume("yes"), config).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.state.log, strings(&["intro", "prepare", "ask", "finish rust yes", "outro"]));
    assert_eq!(done.state.count, 5);
}

#[tokio::test]
async fn update_state_without_as_node_keeps_a_pending_interrupt_and_with_as_node_drops_it() {
    let mut graph = StateGraph::<Trail>::named("approval");
    graph
        .add_node("review", |trail: Arc<Trail>, ctx: NodeContext| async move {
            let answer = ctx.interrupt(json!("send?"))?;
            Ok(TrailUpdate::default().log(vec![format!("{} for {}", answer.as_str().unwrap_or_default(), trail.note)]))
        })
        .add_node("send", |_: Arc<Trail>| async { Ok(TrailUpdate::default().log(strings(&["send"]))) })
        .add_edge(START, "review")
        .add_edge("review", "send")
        .add_edge("send", END);
    let app = graph.compiled().unwrap().with_checkpointer(memory());

    let config = RunConfig::thread("keep");
    app.invoke(Trail { note: "draft".into(), ..Trail::default() }, config.clone()).await.unwrap();
    app.update_state(&config, TrailUpdate::default().note("edited draft"), None).await.unwrap();
    let edited = app.get_state(&config).await.unwrap().unwrap();
    assert_eq!(edited.interrupts, [("1:review:0".to_owned(), json!("send?"))]);
    let done = app.resume(Command::resume("ok"), config).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.state.log, strings(&["ok for edited draft", "send"]));

    // As `review`: the run moves on to `send`, and nothing waits for an answer.
    let config = RunConfig::thread("drop");
    app.invoke(Trail::default(), config.clone()).await.unwrap();
    app.update_state(&config, TrailUpdate::default().log(strings(&["by hand"])), Some("review")).await.unwrap();
    let moved = app.get_state(&config).await.unwrap().unwrap();
    assert_eq!(moved.next, strings(&["send"]));
    assert!(moved.interrupts.is_empty() && moved.tasks.iter().all(|task| task.interrupt.is_none()));
    let done = app.resume(Command::new(), config).await.unwrap();
    assert_eq!(done.state.log, strings(&["by hand", "send"]));
}

/// `plan` (outlining: `write`, the drafting subgraph), two levels of subgraphs deep.
fn nested(ledger: &Ledger, checkpointer: Arc<dyn Checkpointer>) -> CompiledGraph<Trail> {
    let mut outline = StateGraph::<Outline>::named("outlining");
    outline
        .add_node(
            "write",
            Subgraph::mapped(
                drafting(ledger),
                |outline: &Outline| Draft { topic: outline.topic.clone(), ..Draft::default() },
                |draft: Draft| OutlineUpdate::default().sections(draft.steps),
            ),
        )
        .add_edge(START, "write")
        .add_edge("write", END);
    let mut top = StateGraph::<Trail>::named("top");
    top.add_node(
        "plan",
        Subgraph::mapped(
            outline.compiled().unwrap(),
            |trail: &Trail| Outline { topic: trail.note.clone(), ..Outline::default() },
            |outline: Outline| TrailUpdate::default().log(outline.sections),
        ),
    )
    .add_edge(START, "plan")
    .add_edge("plan", END);
    top.compiled().unwrap().with_checkpointer(checkpointer)
}

#[tokio::test]
async fn subgraphs_two_levels_deep_are_reached_through_each_level_s_tasks() {
    let ledger = Ledger::default();
    let app = nested(&ledger, memory());
    let config = RunConfig::thread("nested").durability(Durability::Sync);
    let paused = app.invoke(rust_topic(), config.clone()).await.unwrap();
    assert_eq!(paused.status, RunStatus::Interrupted { node: "plan".into(), value: Some(approve_rust()) });

    let top = app.get_state(&config).await.unwrap().unwrap();
    let plan = only_task(&top.tasks);
    assert_eq!((plan.id.as_str(), plan.interrupt.clone()), ("1:plan:0", Some(approve_rust())));
    let outline_ns = plan.subgraph.clone().unwrap();

    let outline = app.get_subgraph_state::<Outline>(&config, &outline_ns).await.unwrap();
    assert_eq!(outline.state, Outline { topic: "rust".into(), sections: Vec::new() });
    assert_eq!(outline.next, strings(&["write"]));
    let write = only_task(&outline.tasks);
    assert_eq!((write.id.as_str(), write.interrupt.clone()), ("1:write:0", Some(approve_rust())));
    let draft_ns = write.subgraph.clone().unwrap();
    assert_eq!(draft_ns, "1:plan:0|1:write:0");

    let draft = app.get_subgraph_state::<Draft>(&config, &draft_ns).await.unwrap();
    assert_eq!(draft.state.steps, strings(&["prepare"]));
    assert_eq!(draft.interrupts, [("2:ask:0".to_owned(), approve_rust())]);

    // Each level is read with its own type only.
    let error = app.get_subgraph_state::<Draft>(&config, &outline_ns).await.unwrap_err();
    assert!(matches!(error, Error::Checkpoint(CheckpointError::VersionMismatch { .. })), "{error}");
    let error = app.get_subgraph_state::<Outline>(&config, &draft_ns).await.unwrap_err();
    assert!(matches!(error, Error::Checkpoint(CheckpointError::VersionMismatch { .. })), "{error}");

    app.update_subgraph_state::<Draft>(&config, &draft_ns, DraftUpdate::default().topic("deep")).await.unwrap();
    let done = app.resume(Command::resume("yes"), config.clone()).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.state.log, strings(&["prepare", "ask", "finish deep yes"]));
    assert_eq!(ledger.entries(), strings(&["prepare"]));

    let history = app.get_subgraph_state_history::<Draft>(&config, &draft_ns, None).await.unwrap();
    let sources: Vec<&Value> = history.iter().map(|snapshot| &snapshot.metadata["source"]).collect();
    assert_eq!(sources, [&json!("loop"), &json!("loop"), &json!("update"), &json!("loop"), &json!("input")]);
    let outline = app.get_subgraph_state::<Outline>(&config, &outline_ns).await.unwrap();
    assert_eq!(outline.state.sections, strings(&["prepare", "ask", "finish deep yes"]));
    assert!(outline.next.is_empty());
}

#[tokio::test]
async fn an_unknown_namespace_is_a_not_found_error_naming_it() {
    let ledger = Ledger::default();
    let app = reviewing(&ledger, memory());
    let config = RunConfig::thread("unknown-ns");
    let is_missing = |error: &Error, wanted: Option<&str>| {
        matches!(error, Error::SubgraphNotFound { thread_id, namespace, checkpoint_id }
            if thread_id == "unknown-ns" && namespace == "7:ghost:0" && checkpoint_id.as_deref() == wanted)
    };

    // Before the thread has any checkpoint, and after.
    let error = app.get_subgraph_state::<Draft>(&config, "7:ghost:0").await.unwrap_err();
    assert!(is_missing(&error, None), "{error:?}");
    app.invoke(rust_topic(), config.clone()).await.unwrap();
    let error = app.get_subgraph_state::<Draft>(&config, "7:ghost:0").await.unwrap_err();
    assert!(is_missing(&error, None), "{error:?}");
    assert!(error.to_string().contains("subgraph namespace `7:ghost:0`"), "{error}");
    let error = app.get_subgraph_state_history::<Draft>(&config, "7:ghost:0", None).await.unwrap_err();
    assert!(is_missing(&error, None), "{error:?}");
    let error = app.update_subgraph_state::<Draft>(&config, "7:ghost:0", DraftUpdate::default()).await.unwrap_err();
    assert!(is_missing(&error, None), "{error:?}");

    // A checkpoint of the parent is not one of the subgraph's.
    let parent_checkpoint = app.get_state(&config).await.unwrap().unwrap().checkpoint_id;
    let at_parent_checkpoint = config.clone().checkpoint_id(parent_checkpoint.clone());
    let error = app.get_subgraph_state::<Draft>(&at_parent_checkpoint, "2:review:0").await.unwrap_err();
    let Error::SubgraphNotFound { namespace, checkpoint_id, .. } = &error else { panic!("{error:?}") };
    assert_eq!((namespace.as_str(), checkpoint_id.clone()), ("2:review:0", Some(parent_checkpoint.to_string())));

    // Without a checkpointer there is nothing to read.
    let bare = drafting(&ledger);
    let error = bare.get_subgraph_state::<Draft>(&config, "2:review:0").await.unwrap_err();
    assert!(matches!(error, Error::NoCheckpointer { operation: "get_subgraph_state" }), "{error:?}");
}

#[tokio::test]
async fn a_namespace_of_another_state_type_is_a_version_mismatch_for_every_operation() {
    let ledger = Ledger::default();
    let app = reviewing(&ledger, memory());
    let config = RunConfig::thread("wrong-type");
    app.invoke(rust_topic(), config.clone()).await.unwrap();

    let mismatch = |error: Error| matches!(error, Error::Checkpoint(CheckpointError::VersionMismatch { .. }));
    assert!(mismatch(app.get_subgraph_state::<Outline>(&config, "2:review:0").await.unwrap_err()));
    assert!(mismatch(app.get_subgraph_state_history::<Outline>(&config, "2:review:0", None).await.unwrap_err()));
    let update = OutlineUpdate::default().topic("x");
    assert!(mismatch(app.update_subgraph_state::<Outline>(&config, "2:review:0", update).await.unwrap_err()));
    // The failed edit stored nothing: the subgraph still resumes.
    let done = app.resume(Command::resume("yes"), config).await.unwrap();
    assert_eq!(done.state.log, strings(&["intro", "prepare", "ask", "finish rust yes", "outro"]));
}

#[tokio::test]
async fn editing_a_finished_subgraph_run_is_refused() {
    let ledger = Ledger::default();
    let app = reviewing(&ledger, memory());
    let config = RunConfig::thread("finished");
    app.invoke(rust_topic(), config.clone()).await.unwrap();
    app.resume(Command::resume("yes"), config.clone()).await.unwrap();

    let error = app.update_subgraph_state::<Draft>(&config, "2:review:0", DraftUpdate::default()).await.unwrap_err();
    assert!(
        matches!(&error, Error::SubgraphFinished { thread_id, namespace } if thread_id == "finished" && namespace == "2:review:0"),
        "{error:?}"
    );
    assert_eq!(app.get_subgraph_state_history::<Draft>(&config, "2:review:0", None).await.unwrap().len(), 4);
}

/// Every durability: where checkpoints are written differs, which subgraph run a task
/// continues must not.
const DURABILITIES: [Durability; 3] = [Durability::Sync, Durability::Async, Durability::Exit];

fn topic(note: &str) -> Trail {
    Trail { note: note.into(), ..Trail::default() }
}

/// How `reviewing` pauses when its drafting run asks about `topic`.
fn asks_about(topic: &str) -> RunStatus {
    RunStatus::Interrupted { node: "review".into(), value: Some(json!({ "approve": topic })) }
}

/// The parent checkpoint a snapshot's next step starts under: what the subgraph runs of that
/// step record.
fn step_start(snapshot: &StateSnapshot<Trail>) -> Value {
    snapshot.metadata.get("step_start").cloned().unwrap_or_else(|| json!(snapshot.checkpoint_id.as_str()))
}

#[tokio::test]
async fn a_thread_run_again_from_start_starts_its_paused_subgraph_afresh_from_the_new_input() {
    for durability in DURABILITIES {
        let ledger = Ledger::default();
        let app = reviewing(&ledger, memory());
        let config = RunConfig::thread(format!("again-{durability:?}")).durability(durability);
        assert_eq!(app.invoke(topic("rust"), config.clone()).await.unwrap().status, asks_about("rust"));

        // The same task id runs again: a new drafting run, on the new topic.
        let again = app.invoke(topic("go"), config.clone()).await.unwrap();
        assert_eq!(again.status, asks_about("go"), "{durability:?}");
        assert_eq!(ledger.entries(), strings(&["prepare", "prepare"]), "{durability:?}");
        let parent = app.get_state(&config).await.unwrap().unwrap();
        let task = only_task(&parent.tasks);
        assert_eq!(task.subgraph.as_deref(), Some("2:review:0"), "{durability:?}");
        let child = app.get_subgraph_state::<Draft>(&config, "2:review:0").await.unwrap();
        assert_eq!(child.state, Draft { topic: "go".into(), steps: strings(&["prepare"]), verdict: String::new() });
        assert_eq!(task.subgraph_checkpoint_id.as_ref(), Some(&child.checkpoint_id));

        // The namespace holds both runs: the new one chained onto the old one's last
        // checkpoint, each run's checkpoints naming the parent step it ran under.
        let history = app.get_subgraph_state_history::<Draft>(&config, "2:review:0", None).await.unwrap();
        let split = history.iter().position(|snapshot| snapshot.state.topic == "rust").unwrap();
        let (go, rust) = history.split_at(split);
        assert!(rust.iter().all(|snapshot| snapshot.state.topic == "rust"), "{durability:?}");
        assert_eq!(go.last().unwrap().parent_id.as_ref(), Some(&rust[0].checkpoint_id), "{durability:?}");
        assert!(go.iter().all(|snapshot| snapshot.metadata["parent_checkpoint"] == step_start(&parent)));
        assert!(
            rust.iter().all(|snapshot| snapshot.metadata["parent_checkpoint"] == rust[0].metadata["parent_checkpoint"])
        );
        assert_ne!(rust[0].metadata["parent_checkpoint"], step_start(&parent), "{durability:?}");

        let done = app.resume(Command::resume("yes"), config).await.unwrap();
        assert_eq!(done.state.log, strings(&["intro", "prepare", "ask", "finish go yes", "outro"]), "{durability:?}");
        assert_eq!(ledger.entries(), strings(&["prepare", "prepare"]), "{durability:?}");
    }
}

#[tokio::test]
async fn subgraphs_two_levels_deep_start_afresh_when_the_thread_runs_again_and_continue_on_resume() {
    for durability in DURABILITIES {
        let ledger = Ledger::default();
        let app = nested(&ledger, memory());
        let config = RunConfig::thread(format!("nested-again-{durability:?}")).durability(durability);
        let paused = app.invoke(topic("rust"), config.clone()).await.unwrap();
        assert_eq!(paused.status, RunStatus::Interrupted { node: "plan".into(), value: Some(approve_rust()) });

        let again = app.invoke(topic("go"), config.clone()).await.unwrap();
        let asks_go = Some(json!({ "approve": "go" }));
        assert_eq!(again.status, RunStatus::Interrupted { node: "plan".into(), value: asks_go }, "{durability:?}");
        let done = app.resume(Command::resume("yes"), config).await.unwrap();
        assert_eq!(done.state.log, strings(&["prepare", "ask", "finish go yes"]), "{durability:?}");
        assert_eq!(ledger.entries(), strings(&["prepare", "prepare"]), "{durability:?}");
    }
}

#[tokio::test]
async fn a_fork_from_before_the_subgraph_step_starts_the_subgraph_afresh() {
    // `Exit` durability stores no checkpoint before the step that pauses, so there is no
    // earlier checkpoint to fork from.
    for durability in [Durability::Sync, Durability::Async] {
        let ledger = Ledger::default();
        let app = reviewing(&ledger, memory());
        let config = RunConfig::thread(format!("fork-before-{durability:?}")).durability(durability);
        app.invoke(topic("rust"), config.clone()).await.unwrap();
        let history = app.get_state_history(&config, None).await.unwrap();
        let input = history.iter().find(|snapshot| snapshot.next == strings(&["intro"])).unwrap();

        let fork = config.clone().checkpoint_id(input.checkpoint_id.clone());
        let forked = app.resume(Command::update(TrailUpdate::default().note("go")), fork).await.unwrap();
        assert_eq!(forked.status, asks_about("go"), "{durability:?}");
        assert_eq!(ledger.entries(), strings(&["prepare", "prepare"]), "{durability:?}");
        let done = app.resume(Command::resume("yes"), config).await.unwrap();
        assert_eq!(done.state.log, strings(&["intro", "prepare", "ask", "finish go yes", "outro"]), "{durability:?}");
    }
}

#[tokio::test]
async fn a_fork_back_to_a_paused_subgraph_step_continues_that_run_behind_later_runs_of_its_task() {
    for durability in DURABILITIES {
        let ledger = Ledger::default();
        let app = reviewing(&ledger, memory());
        let config = RunConfig::thread(format!("fork-back-{durability:?}")).durability(durability);
        app.invoke(topic("rust"), config.clone()).await.unwrap();
        let rust_paused = app.get_state(&config).await.unwrap().unwrap();
        let rust_run = only_task(&rust_paused.tasks).subgraph_checkpoint_id.clone().unwrap();
        assert_eq!(app.invoke(topic("go"), config.clone()).await.unwrap().status, asks_about("go"));

        // Seen from the rust pause, the task's run is the rust one, behind the go run.
        let fork = config.clone().checkpoint_id(rust_paused.checkpoint_id.clone());
        let then = app.get_state(&fork).await.unwrap().unwrap();
        let task = only_task(&then.tasks);
        assert_eq!(task.subgraph.as_deref(), Some("2:review:0"), "{durability:?}");
        assert_eq!(task.subgraph_checkpoint_id.as_ref(), Some(&rust_run), "{durability:?}");
        let latest = app.get_subgraph_state::<Draft>(&config, "2:review:0").await.unwrap();
        assert_eq!(latest.state.topic, "go");
        let exact = config.clone().checkpoint_id(rust_run.clone());
        let rust = app.get_subgraph_state::<Draft>(&exact, "2:review:0").await.unwrap();
        assert_eq!((rust.state.topic.as_str(), rust.next.clone()), ("rust", strings(&["ask"])));

        let done = app.resume(Command::resume("yes"), fork).await.unwrap();
        assert_eq!(done.status, RunStatus::Completed, "{durability:?}");
        assert_eq!(done.state.log, strings(&["intro", "prepare", "ask", "finish rust yes", "outro"]), "{durability:?}");
        // The rust run went on from where it paused: no third `prepare`.
        assert_eq!(ledger.entries(), strings(&["prepare", "prepare"]), "{durability:?}");
        let continued = app.get_subgraph_state::<Draft>(&config, "2:review:0").await.unwrap();
        assert_eq!(continued.state.steps, strings(&["prepare", "ask", "finish rust yes"]), "{durability:?}");
    }
}

#[tokio::test]
async fn get_state_names_no_subgraph_run_of_an_earlier_run_of_the_thread() {
    // Under `Exit` durability a pause before a node stores nothing to look at.
    for durability in [Durability::Sync, Durability::Async] {
        let (ledger, checkpointer) = (Ledger::default(), memory());
        let app = reviewing(&ledger, Arc::clone(&checkpointer));
        let stopping = reviewing(&ledger, checkpointer).interrupt_before(["review"]).unwrap();
        let config = RunConfig::thread(format!("earlier-{durability:?}")).durability(durability);
        app.invoke(topic("rust"), config.clone()).await.unwrap();
        let before_review = stopping.invoke(topic("go"), config.clone()).await.unwrap();
        assert_eq!(before_review.status, RunStatus::Interrupted { node: "review".into(), value: None });

        // The unfinished rust run is still in the task's namespace, but not the task's.
        let parent = app.get_state(&config).await.unwrap().unwrap();
        let task = only_task(&parent.tasks);
        assert_eq!(task.id, "2:review:0");
        assert_eq!((task.subgraph.as_ref(), task.subgraph_checkpoint_id.as_ref()), (None, None), "{durability:?}");
        let stale = app.get_subgraph_state::<Draft>(&config, "2:review:0").await.unwrap();
        assert_eq!((stale.state.topic.as_str(), stale.next.clone()), ("rust", strings(&["ask"])));

        let resumed = app.resume(Command::new(), config.clone()).await.unwrap();
        assert_eq!(resumed.status, asks_about("go"), "{durability:?}");
        let parent = app.get_state(&config).await.unwrap().unwrap();
        assert_eq!(only_task(&parent.tasks).subgraph.as_deref(), Some("2:review:0"), "{durability:?}");
    }
}

#[tokio::test]
async fn a_resume_that_edits_the_parent_still_answers_its_paused_subgraph() {
    for durability in DURABILITIES {
        let ledger = Ledger::default();
        let app = reviewing(&ledger, memory());
        let config = RunConfig::thread(format!("edit-resume-{durability:?}")).durability(durability);
        app.invoke(rust_topic(), config.clone()).await.unwrap();
        app.update_state(&config, TrailUpdate::default().count(5_u64), None).await.unwrap();
        let edited = app.get_state(&config).await.unwrap().unwrap();
        assert_eq!(only_task(&edited.tasks).subgraph.as_deref(), Some("2:review:0"), "{durability:?}");

        let command = Command::resume("yes").with_update(TrailUpdate::default().count(1_u64));
        let done = app.resume(command, config).await.unwrap();
        assert_eq!(done.state.log, strings(&["intro", "prepare", "ask", "finish rust yes", "outro"]), "{durability:?}");
        assert_eq!(done.state.count, 6);
        assert_eq!(ledger.entries(), strings(&["prepare"]), "{durability:?}");
    }
}

#[tokio::test]
async fn a_subgraph_run_left_paused_by_a_failed_step_is_not_continued_by_the_next_run_of_the_thread() {
    for durability in DURABILITIES {
        let (ledger, fail) = (Ledger::default(), Arc::new(AtomicBool::new(false)));
        let failing = Arc::clone(&fail);
        let mut graph = StateGraph::<Trail>::named("review-and-check");
        graph
            .add_node("review", draft_node(&ledger))
            .add_node("check", move |_: Arc<Trail>| {
                let failing = failing.load(Ordering::SeqCst);
                async move {
                    if failing {
                        return Err(NodeError::msg("the checker is down"));
                    }
                    Ok(TrailUpdate::default().count(1_u64))
                }
            })
            .add_parallel_edges(START, ["review", "check"])
            .add_edge("review", END)
            .add_edge("check", END);
        let app = graph.compiled().unwrap().with_checkpointer(memory());
        let config = RunConfig::thread(format!("failed-step-{durability:?}")).durability(durability);
        assert_eq!(app.invoke(topic("rust"), config.clone()).await.unwrap().status, asks_about("rust"));

        // The go run's step fails while its drafting run is paused: the parent stores no new
        // step (nothing at all under `Exit`), the drafting run stays behind, unfinished.
        fail.store(true, Ordering::SeqCst);
        let error = app.invoke(topic("go"), config.clone()).await.unwrap_err();
        assert!(matches!(&error, Error::NodeFailed { node, .. } if &**node == "check"), "{error}");
        let stale = app.get_subgraph_state::<Draft>(&config, "1:review:0").await.unwrap();
        assert_eq!((stale.state.topic.as_str(), stale.next.clone()), ("go", strings(&["ask"])), "{durability:?}");

        fail.store(false, Ordering::SeqCst);
        let next = app.invoke(topic("zig"), config.clone()).await.unwrap();
        assert_eq!(next.status, asks_about("zig"), "{durability:?}");
        let done = app.resume(Command::resume("yes"), config).await.unwrap();
        assert_eq!(done.state.log, strings(&["prepare", "ask", "finish zig yes"]), "{durability:?}");
        assert_eq!(ledger.entries(), strings(&["prepare", "prepare", "prepare"]), "{durability:?}");
    }
}
