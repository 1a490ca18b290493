//! `invoke_sequential` on whole-state types, and how many state clones a run makes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::Compiled;
use dashflow_executor::{CompiledGraph, Error, RunConfig, StreamEvent, StreamMode};
use dashflow_graph::{END, GraphState, NodeError, START, StateGraph};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::common::{Ledger, drain};

/// A state whose updates are whole states: nodes return the next state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Doc {
    text: String,
    edits: u32,
}
dashflow_graph::whole_state!(Doc);

#[tokio::test]
async fn invoke_sequential_runs_a_whole_state_graph_with_a_loop() {
    let mut graph = StateGraph::<Doc>::new();
    graph
        .add_node("draft", |doc: Arc<Doc>| async move {
            Ok(Doc { text: format!("{} draft", doc.text), edits: doc.edits + 1 })
        })
        .add_node(
            "shout",
            |doc: Arc<Doc>| async move { Ok(Doc { text: doc.text.to_uppercase(), edits: doc.edits + 1 }) },
        )
        .add_edge(START, "draft")
        .add_conditional_edges(
            "draft",
            |doc: &Doc| if doc.edits < 2 { "again" } else { "done" },
            [("again", "draft"), ("done", "shout")],
        )
        .add_edge("shout", END);
    let input = Doc { text: "essay:".into(), edits: 0 };
    let result = graph.compiled().unwrap().invoke_sequential(input, RunConfig::new()).await.unwrap();

    assert_eq!(result.state, Doc { text: "ESSAY: DRAFT DRAFT".into(), edits: 3 });
    assert_eq!(result.nodes_executed().collect::<Vec<_>>(), ["draft", "draft", "shout"]);
    // Each execution read back with its node, step and attempts, in order, and no more.
    let runs: Vec<(&str, u64, u32)> = result.nodes.iter().map(|run| (run.node, run.step, run.attempts)).collect();
    assert_eq!(runs, [("draft", 1, 1), ("draft", 2, 1), ("shout", 3, 1)]);
    assert_eq!((result.nodes.len(), result.nodes.iter().len()), (3, 3));
    assert_eq!(result.nodes.get(2).map(|run| run.node), Some("shout"));
    assert!(result.nodes.get(3).is_none() && !result.nodes.is_empty());
    assert_eq!(
        format!("{:?}", result.nodes.get(0).unwrap()),
        format!("{:?}", (&result.nodes).into_iter().next().unwrap())
    );
    assert_eq!(result.nodes.clone(), result.nodes);
}

#[tokio::test]
async fn invoke_sequential_refuses_a_parallel_step_before_running_it() {
    let ran = Ledger::default();
    let node = |name: &'static str| {
        let ran = ran.clone();
        move |doc: Arc<Doc>| {
            ran.push(name);
            let next = Doc { text: name.to_owned(), ..(*doc).clone() };
            async move { Ok::<_, NodeError>(next) }
        }
    };
    let mut graph = StateGraph::<Doc>::new();
    graph
        .add_node("start", node("start"))
        .add_node("a", node("a"))
        .add_node("b", node("b"))
        .add_edge(START, "start")
        .add_parallel_edges("start", ["a", "b"])
        .add_edge("a", END)
        .add_edge("b", END);
    let error = graph.compiled().unwrap().invoke_sequential(Doc::default(), RunConfig::new()).await.unwrap_err();

    match error {
        Error::ParallelStepInSequentialRun { step, count, first } => {
            assert_eq!((step, count, &*first), (2, 2, "a"));
        }
        other => panic!("expected ParallelStepInSequentialRun, got {other:?}"),
    }
    assert_eq!(ran.entries(), ["start"]);
}

#[tokio::test]
async fn invoke_on_a_whole_state_graph_reports_two_parallel_writers_as_a_conflict() {
    let mut graph = StateGraph::<Doc>::new();
    graph
        .add_node("a", |_: Arc<Doc>| async move { Ok(Doc::default()) })
        .add_node("b", |_: Arc<Doc>| async move { Ok(Doc::default()) })
        .add_parallel_edges(START, ["a", "b"])
        .add_edge("a", END)
        .add_edge("b", END);
    let error = graph.compiled().unwrap().invoke(Doc::default(), RunConfig::new()).await.unwrap_err();

    assert!(
        matches!(&error, Error::StateConflict { field: "<whole state>", first, second, step: 1 } if &**first == "a" && &**second == "b"),
        "{error:?}"
    );
}

/// Counts the clones of the state that holds it; serialized as nothing.
#[derive(Debug, Default)]
struct CloneProbe(Arc<AtomicUsize>);

impl CloneProbe {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Clone for CloneProbe {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(&self.0))
    }
}

impl PartialEq for CloneProbe {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Serialize for CloneProbe {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for CloneProbe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <()>::deserialize(deserializer).map(|()| Self::default())
    }
}

/// A state that knows how often it was cloned. The probe is an overwrite field no node sets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Counted {
    #[reduce(add)]
    visits: u64,
    #[reduce(append)]
    path: Vec<u32>,
    probe: CloneProbe,
}

/// `START -> n0 -> n1 -> ... -> n{len-1} -> END`, each node counting its visit.
fn chain(len: u32) -> CompiledGraph<Counted> {
    let mut graph = StateGraph::<Counted>::new();
    for index in 0..len {
        let name = format!("n{index}");
        graph.add_node(name.as_str(), move |_: Arc<Counted>| async move {
            Ok(CountedUpdate::default().visits(1_u64).path(vec![index]))
        });
        if index > 0 {
            graph.add_edge(format!("n{}", index - 1), name);
        }
    }
    graph.add_edge(START, "n0").add_edge(format!("n{}", len - 1), END);
    graph.compiled().unwrap()
}

#[tokio::test]
async fn a_fifty_step_sequential_run_clones_the_state_zero_times() {
    let input = Counted::default();
    let clones = Arc::clone(&input.probe.0);
    let result = chain(50).invoke(input, RunConfig::new().recursion_limit(50)).await.unwrap();

    assert_eq!(result.state.visits, 50);
    assert_eq!(result.state.path, (0..50).collect::<Vec<_>>());
    assert_eq!(clones.load(Ordering::SeqCst), 0, "the executor cloned the state of a sequential run");
    assert_eq!(result.state.probe.count(), 0);
}

#[tokio::test]
async fn streaming_updates_events_and_custom_values_clones_no_state() {
    let input = Counted::default();
    let clones = Arc::clone(&input.probe.0);
    let config = RunConfig::new().recursion_limit(50).stream_modes([
        StreamMode::Updates,
        StreamMode::Events,
        StreamMode::Custom,
    ]);
    let (events, result) = drain(chain(50).stream(input, config)).await;

    assert_eq!(result.unwrap().state.visits, 50);
    assert!(events.len() > 50);
    assert_eq!(clones.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn values_stream_mode_copies_the_state_at_most_once_per_step_while_the_consumer_holds_it() {
    let input = Counted::default();
    let clones = Arc::clone(&input.probe.0);
    let config = RunConfig::new().recursion_limit(50).stream_modes([StreamMode::Values]);
    let (events, result) = drain(chain(50).stream(input, config)).await;

    let snapshots: Vec<(u64, u64)> = events
        .iter()
        .map(|event| match event {
            StreamEvent::Values { step, state } => (*step, state.visits),
            _ => panic!("only values were asked for"),
        })
        .collect();
    // Every snapshot the consumer holds is intact: the run copied the state instead of
    // mutating a snapshot in place.
    assert_eq!(snapshots, (0..=50).map(|step| (step, step)).collect::<Vec<_>>());
    assert_eq!(result.unwrap().state.visits, 50);
    let clones = clones.load(Ordering::SeqCst);
    // One copy per step while the stream still holds the previous snapshot, plus at most one
    // for the final result.
    assert!((1..=51).contains(&clones), "{clones} clones");
}
