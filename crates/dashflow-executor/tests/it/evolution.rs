//! R25 second half and R26: the fingerprint covers the state's whole shape, nested types
//! included, so a change anywhere is a `VersionMismatch` naming thread and checkpoint, never
//! misread values; through a real backend (SQLite in a temporary directory).

use std::path::Path;
use std::sync::Arc;

use crate::common::Compiled;
use dashflow_checkpoint::{CheckpointError, CheckpointId, Checkpointer, Codec};
use dashflow_checkpoint_sqlite::SqliteCheckpointer;
use dashflow_executor::{CompiledGraph, Error, RunConfig};
use dashflow_graph::{Command, END, GraphState, MergeableState, NodeError, START, StateGraph};

/// The state the old threads were written with.
mod v1 {
    use std::collections::BTreeMap;

    use dashflow_graph::GraphState;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
    pub(crate) struct Ticket {
        #[reduce(append)]
        pub(crate) lines: Vec<Line>,
        pub(crate) outcome: Option<Outcome>,
        pub(crate) scores: BTreeMap<String, u32>,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Line {
        pub(crate) author: String,
        pub(crate) text: String,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(crate) enum Outcome {
        Refunded { amount: u32 },
        Rejected,
    }

    pub(crate) fn sample() -> TicketUpdate {
        TicketUpdate::default()
            .lines(vec![Line { author: "ana".into(), text: "refund please".into() }])
            .outcome(Some(Outcome::Refunded { amount: 12 }))
            .scores([("urgency".to_owned(), 3)].into_iter().collect::<BTreeMap<_, _>>())
    }
}

/// `Line`'s two fields swapped: a struct held in a `Vec`.
mod swapped {
    use std::collections::BTreeMap;

    use dashflow_graph::GraphState;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
    pub(crate) struct Ticket {
        #[reduce(append)]
        pub(crate) lines: Vec<Line>,
        pub(crate) outcome: Option<super::v1::Outcome>,
        pub(crate) scores: BTreeMap<String, u32>,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Line {
        pub(crate) text: String,
        pub(crate) author: String,
    }
}

/// A variant of the enum inside `Option` changed its field's type.
mod variant_changed {
    use std::collections::BTreeMap;

    use dashflow_graph::GraphState;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
    pub(crate) struct Ticket {
        #[reduce(append)]
        pub(crate) lines: Vec<super::v1::Line>,
        pub(crate) outcome: Option<Outcome>,
        pub(crate) scores: BTreeMap<String, u32>,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(crate) enum Outcome {
        Refunded { amount: u64 },
        Rejected,
    }
}

/// The map's value type changed.
mod map_changed {
    use std::collections::BTreeMap;

    use dashflow_graph::GraphState;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
    pub(crate) struct Ticket {
        #[reduce(append)]
        pub(crate) lines: Vec<super::v1::Line>,
        pub(crate) outcome: Option<super::v1::Outcome>,
        pub(crate) scores: BTreeMap<String, i32>,
    }
}

/// START -> write -> END, `write` applying `update`, checkpointed in `checkpointer`.
fn graph<S: MergeableState>(checkpointer: Arc<dyn Checkpointer>, codec: Codec, update: S::Update) -> CompiledGraph<S> {
    let mut graph = StateGraph::<S>::new();
    graph
        .add_node("write", move |_: Arc<S>| {
            let update = update.clone();
            async move { Ok::<_, NodeError>(update) }
        })
        .add_edge(START, "write")
        .add_edge("write", END);
    graph.compiled().unwrap().with_checkpointer(checkpointer).with_codec(codec)
}

async fn sqlite(path: &Path) -> Arc<dyn Checkpointer> {
    Arc::new(SqliteCheckpointer::open(path).await.unwrap())
}

/// Asserts that `error` is a `VersionMismatch` naming `thread` and a checkpoint of it.
fn assert_mismatch_in(error: &Error, thread: &str, checkpoints: &[CheckpointId], what: &str) {
    let Error::Checkpoint(inner @ CheckpointError::VersionMismatch { .. }) = error else {
        panic!("{what}: expected VersionMismatch, got {error}");
    };
    let at = inner.location().unwrap_or_else(|| panic!("{what}: the error names no checkpoint: {error}"));
    assert_eq!(at.thread_id, thread, "{what}");
    assert!(checkpoints.contains(&at.checkpoint_id), "{what}: names {}", at.checkpoint_id);
    assert!(error.to_string().contains(thread), "{what}: {error}");
}

/// Writes a thread with `v1::Ticket`, then reads and resumes it as `S`: each must be a
/// `VersionMismatch` naming the thread and one of its checkpoints.
async fn refused_as<S: MergeableState + std::fmt::Debug>(what: &str, change: &str)
where
    S::Update: Default,
{
    for codec in [Codec::Bincode, Codec::Json] {
        let dir = tempfile::tempdir().unwrap();
        let checkpointer = sqlite(&dir.path().join("threads.db")).await;
        let old = graph::<v1::Ticket>(Arc::clone(&checkpointer), codec, v1::sample());
        let config = RunConfig::thread("ticket-1");
        old.invoke(v1::Ticket::default(), config.clone()).await.unwrap();
        let ids: Vec<CheckpointId> = old
            .get_state_history(&config, None)
            .await
            .unwrap()
            .into_iter()
            .map(|snapshot| snapshot.checkpoint_id)
            .collect();

        let new = graph::<S>(Arc::clone(&checkpointer), codec, S::Update::default());
        let what = format!("{what} ({codec:?})");
        let error = new.get_state(&config).await.unwrap_err();
        assert_mismatch_in(&error, "ticket-1", &ids, &format!("{what}: get_state"));
        assert!(error.to_string().contains(change), "{what}: the error does not name the change: {error}");
        assert!(error.to_string().contains("with_migration"), "{what}: the error does not name the fix: {error}");
        let error = new.resume(Command::new(), config.clone()).await.unwrap_err();
        assert_mismatch_in(&error, "ticket-1", &ids, &format!("{what}: resume"));
        let error = new.get_state_history(&config, None).await.unwrap_err();
        assert_mismatch_in(&error, "ticket-1", &ids, &format!("{what}: history"));
    }
}

#[tokio::test]
async fn fields_swapped_in_a_struct_inside_a_vec_are_a_version_mismatch() {
    let change = "the fields of `lines[]` were reordered: author, text in the checkpoint, text, author";
    refused_as::<swapped::Ticket>("fields of `Line` swapped", change).await;
}

#[tokio::test]
async fn a_changed_enum_variant_inside_an_option_is_a_version_mismatch() {
    let change = "field `outcome::Refunded.amount`: u32 in the checkpoint, u64 in the state type";
    refused_as::<variant_changed::Ticket>("`Outcome::Refunded` retyped", change).await;
}

#[tokio::test]
async fn a_changed_map_value_type_is_a_version_mismatch() {
    let change = "field `scores<value>`: u32 in the checkpoint, i32 in the state type";
    refused_as::<map_changed::Ticket>("`scores` values retyped", change).await;
}

#[tokio::test]
async fn the_same_state_type_reads_its_own_threads() {
    let dir = tempfile::tempdir().unwrap();
    let checkpointer = sqlite(&dir.path().join("threads.db")).await;
    let app = graph::<v1::Ticket>(Arc::clone(&checkpointer), Codec::Bincode, v1::sample());
    let config = RunConfig::thread("ticket-1");
    let done = app.invoke(v1::Ticket::default(), config.clone()).await.unwrap();
    let mut expected = v1::Ticket::default();
    expected.apply(v1::sample());
    assert_eq!(done.state, expected);
    assert_eq!(app.get_state(&config).await.unwrap().unwrap().state, expected);
}

/// R26: states of one ticket over three releases. V2 adds fields with defaults, at the top
/// and in a nested struct; V3 retypes a field, which needs a migration.
mod r1 {
    use dashflow_graph::GraphState;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
    pub(crate) struct Ticket {
        #[reduce(append)]
        pub(crate) lines: Vec<String>,
        #[reduce(add)]
        pub(crate) score: u32,
        pub(crate) meta: Meta,
    }

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Meta {
        pub(crate) owner: String,
    }
}

mod r2 {
    use dashflow_graph::GraphState;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
    pub(crate) struct Ticket {
        #[reduce(append)]
        pub(crate) lines: Vec<String>,
        pub(crate) note: Option<String>,
        #[reduce(add)]
        pub(crate) score: u32,
        pub(crate) meta: Meta,
        #[serde(default)]
        #[reduce(add)]
        pub(crate) retries: u32,
    }

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Meta {
        pub(crate) owner: String,
        pub(crate) tag: Option<String>,
        #[serde(default)]
        pub(crate) level: u8,
    }
}

mod r3 {
    use dashflow_graph::GraphState;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
    pub(crate) struct Ticket {
        #[reduce(append)]
        pub(crate) lines: Vec<String>,
        pub(crate) score: String,
        pub(crate) owner: String,
    }
}

/// START -> first -> {second, ask} -> finish -> END, with `ask` pausing for an answer: run
/// once, the thread pauses in the parallel step with `second`'s result and `ask`'s
/// interrupt stored as pending writes. Each node's update is built by `update(node, answer)`;
/// every run of `second` is counted in `seconds`.
fn ticket_graph<S: MergeableState>(
    checkpointer: Arc<dyn Checkpointer>,
    codec: Codec,
    update: fn(&str, Option<&str>) -> S::Update,
    seconds: &Arc<std::sync::atomic::AtomicUsize>,
) -> CompiledGraph<S> {
    let mut graph = StateGraph::<S>::new();
    let seconds = Arc::clone(seconds);
    graph
        .add_node("first", move |_: Arc<S>| async move { Ok::<_, NodeError>(update("first", None)) })
        .add_node("second", move |_: Arc<S>| {
            seconds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok::<_, NodeError>(update("second", None)) }
        })
        .add_node("ask", move |_: Arc<S>, ctx: dashflow_graph::NodeContext| async move {
            let answer = ctx.interrupt(serde_json::json!("approve the refund?"))?;
            Ok::<_, NodeError>(update("ask", answer.as_str()))
        })
        .add_node("finish", move |_: Arc<S>| async move { Ok::<_, NodeError>(update("finish", None)) })
        .add_edge(START, "first")
        .add_parallel_edges("first", ["second", "ask"])
        .add_join(["second", "ask"], "finish")
        .add_edge("finish", END);
    graph.compiled().unwrap().with_checkpointer(checkpointer).with_codec(codec)
}

fn r1_update(node: &str, answer: Option<&str>) -> r1::TicketUpdate {
    let update =
        r1::TicketUpdate::default().lines(vec![format!("{node}{}", answer.map_or(String::new(), |a| format!(":{a}")))]);
    match node {
        "first" => update.score(3_u32).meta(r1::Meta { owner: "ana".into() }),
        _ => update.score(1_u32),
    }
}

fn r2_update(node: &str, answer: Option<&str>) -> r2::TicketUpdate {
    let update =
        r2::TicketUpdate::default().lines(vec![format!("{node}{}", answer.map_or(String::new(), |a| format!(":{a}")))]);
    match node {
        "finish" => update.note(Some("closed".to_owned())).retries(1_u32),
        _ => update.score(1_u32),
    }
}

fn r3_update(node: &str, answer: Option<&str>) -> r3::TicketUpdate {
    r3::TicketUpdate::default().lines(vec![format!("{node}{}", answer.map_or(String::new(), |a| format!(":{a}")))])
}

/// A thread paused by release 1 in its parallel step, in a fresh SQLite file.
async fn paused_by_r1(path: &Path, codec: Codec) -> Arc<dyn Checkpointer> {
    let checkpointer = sqlite(path).await;
    let seconds = Arc::default();
    let app = ticket_graph::<r1::Ticket>(Arc::clone(&checkpointer), codec, r1_update, &seconds);
    let paused = app.invoke(r1::Ticket::default(), RunConfig::thread("ticket-9")).await.unwrap();
    assert!(matches!(paused.status, dashflow_executor::RunStatus::Interrupted { .. }));
    let loaded = checkpointer.load("ticket-9", "", None).await.unwrap().unwrap();
    assert!(loaded.chain.len() >= 2, "a snapshot and a delta: {:?}", loaded.chain.len());
    assert_eq!(loaded.pending_writes.len(), 2, "second's result and ask's interrupt");
    checkpointer
}

#[tokio::test]
async fn an_old_thread_is_read_and_resumed_after_fields_with_defaults_are_added() {
    for codec in [Codec::Bincode, Codec::Json] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("threads.db");
        drop(paused_by_r1(&path, codec).await);
        // A new process of release 2 on the same file.
        let checkpointer = sqlite(&path).await;
        let seconds = Arc::default();
        let app = ticket_graph::<r2::Ticket>(Arc::clone(&checkpointer), codec, r2_update, &seconds);
        let config = RunConfig::thread("ticket-9");

        let snapshot = app.get_state(&config).await.unwrap().unwrap();
        let expected = r2::Ticket {
            lines: vec!["first".into()],
            note: None,
            score: 3,
            meta: r2::Meta { owner: "ana".into(), tag: None, level: 0 },
            retries: 0,
        };
        assert_eq!(snapshot.state, expected, "{codec:?}");
        assert_eq!(snapshot.interrupts.len(), 1, "{codec:?}: ask still waits for its answer");
        let history = app.get_state_history(&config, None).await.unwrap();
        assert!(history.len() >= 2, "{codec:?}: every older checkpoint reads too");

        let done = app.resume(Command::resume(serde_json::json!("yes")), config.clone()).await.unwrap();
        assert_eq!(seconds.load(std::sync::atomic::Ordering::SeqCst), 0, "{codec:?}: `second` finished before");
        assert_eq!(done.state.lines, ["first", "second", "ask:yes", "finish"], "{codec:?}");
        assert_eq!((done.state.score, done.state.note.as_deref(), done.state.retries), (5, Some("closed"), 1));
        assert_eq!(done.state.meta.owner, "ana");

        // The checkpoints written since are of release 2's shape, starting with a snapshot.
        let records = checkpointer.list("ticket-9", &dashflow_checkpoint::ListOptions::new()).await.unwrap();
        let loaded = checkpointer.load("ticket-9", "", None).await.unwrap().unwrap();
        let fingerprint = |blob: &[u8]| dashflow_checkpoint::unseal(blob).unwrap().fingerprint;
        let newest = fingerprint(&records[0].blob);
        assert!(
            loaded.chain.iter().all(|record| fingerprint(&record.blob) == newest),
            "{codec:?}: one shape per chain"
        );
        assert_ne!(newest, fingerprint(&records.last().unwrap().blob), "{codec:?}");
        assert_eq!(app.get_state(&config).await.unwrap().unwrap().state, done.state);
    }
}

#[tokio::test]
async fn a_retyped_field_names_the_change_and_a_registered_migration_resumes_the_thread() {
    for codec in [Codec::Bincode, Codec::Json] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("threads.db");
        let checkpointer = paused_by_r1(&path, codec).await;
        let seconds = Arc::default();
        let app = ticket_graph::<r3::Ticket>(Arc::clone(&checkpointer), codec, r3_update, &seconds);
        let config = RunConfig::thread("ticket-9");
        let error = app.get_state(&config).await.unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, Error::Checkpoint(CheckpointError::VersionMismatch { .. })), "{message}");
        assert!(message.contains("ticket-9"), "{message}");
        assert!(message.contains("field `score`: u32 in the checkpoint, String in the state type"), "{message}");
        assert!(message.contains("field `meta` was removed or renamed"), "{message}");
        assert!(message.contains("with_migration"), "{message}");
        let error = app.resume(Command::resume(serde_json::json!("yes")), config.clone()).await.unwrap_err();
        assert!(error.to_string().contains("field `score`"), "{error}");

        let app = app.with_migration::<r1::Ticket>(|old| r3::Ticket {
            lines: old.lines,
            score: format!("{} points", old.score),
            owner: old.meta.owner,
        });
        let snapshot = app.get_state(&config).await.unwrap().unwrap();
        assert_eq!(snapshot.state.score, "3 points", "{codec:?}");
        assert_eq!(snapshot.interrupts.len(), 1, "{codec:?}");
        let done = app.resume(Command::resume(serde_json::json!("yes")), config.clone()).await.unwrap();
        // `second` finished under release 1; its result was of the old update type.
        assert_eq!(seconds.load(std::sync::atomic::Ordering::SeqCst), 1, "{codec:?}");
        assert_eq!(done.state.lines, ["first", "second", "ask:yes", "finish"], "{codec:?}");
        assert_eq!((done.state.score.as_str(), done.state.owner.as_str()), ("3 points", "ana"));
        // The thread is of the new shape now: a graph without the migration reads it.
        let plain = ticket_graph::<r3::Ticket>(checkpointer, codec, r3_update, &seconds);
        assert_eq!(plain.get_state(&config).await.unwrap().unwrap().state, done.state);
    }
}

/// A state whose shape cannot be traced: an untagged enum needs a self-describing format.
mod untraceable {
    use dashflow_graph::GraphState;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
    pub(crate) struct Ticket {
        pub(crate) reference: Option<Reference>,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    pub(crate) enum Reference {
        Number(u64),
        Text(String),
    }
}

#[tokio::test]
async fn a_state_whose_shape_cannot_be_traced_still_reads_its_own_threads_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let checkpointer = sqlite(&dir.path().join("threads.db")).await;
    let update = untraceable::TicketUpdate::default().reference(Some(untraceable::Reference::Text("A-7".into())));
    let app = graph::<untraceable::Ticket>(Arc::clone(&checkpointer), Codec::Json, update);
    let config = RunConfig::thread("ticket-1");
    app.invoke(untraceable::Ticket::default(), config.clone()).await.unwrap();
    let state = app.get_state(&config).await.unwrap().unwrap().state;
    assert_eq!(state.reference, Some(untraceable::Reference::Text("A-7".into())));

    let old = graph::<v1::Ticket>(Arc::clone(&checkpointer), Codec::Json, v1::sample());
    old.invoke(v1::Ticket::default(), RunConfig::thread("ticket-2")).await.unwrap();
    let error = app.get_state(&RunConfig::thread("ticket-2")).await.unwrap_err();
    assert!(matches!(error, Error::Checkpoint(CheckpointError::VersionMismatch { .. })), "{error}");
    assert!(error.to_string().contains("cannot be traced"), "{error}");
}
