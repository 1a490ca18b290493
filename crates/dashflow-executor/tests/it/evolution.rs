//! R25 second half and R26: the fingerprint covers the state's whole shape, nested types
//! included, so a change anywhere is a `VersionMismatch` naming thread and checkpoint, never
//! misread values; through a real backend (SQLite in a temporary directory).

use std::path::Path;
use std::sync::Arc;

use dashflow_checkpoint::{CheckpointError, CheckpointId, Checkpointer, Codec};
use dashflow_checkpoint_sqlite::SqliteCheckpointer;
use dashflow_executor::{CompileExt, CompiledGraph, Error, RunConfig};
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
    graph.compile().unwrap().with_shared_checkpointer(checkpointer).with_codec(codec)
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
async fn refused_as<S: MergeableState + std::fmt::Debug>(what: &str)
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
        let error = new.resume(Command::new(), config.clone()).await.unwrap_err();
        assert_mismatch_in(&error, "ticket-1", &ids, &format!("{what}: resume"));
        let error = new.get_state_history(&config, None).await.unwrap_err();
        assert_mismatch_in(&error, "ticket-1", &ids, &format!("{what}: history"));
    }
}

#[tokio::test]
async fn fields_swapped_in_a_struct_inside_a_vec_are_a_version_mismatch() {
    refused_as::<swapped::Ticket>("fields of `Line` swapped").await;
}

#[tokio::test]
async fn a_changed_enum_variant_inside_an_option_is_a_version_mismatch() {
    refused_as::<variant_changed::Ticket>("`Outcome::Refunded` retyped").await;
}

#[tokio::test]
async fn a_changed_map_value_type_is_a_version_mismatch() {
    refused_as::<map_changed::Ticket>("`scores` values retyped").await;
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
