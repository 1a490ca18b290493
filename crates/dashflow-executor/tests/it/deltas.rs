//! State deltas: only sinks that ask for them get them (one by one or inside batches), and
//! the run's starting state plus each step's merged update rebuild its final state.

use std::sync::{Arc, Mutex};

use dashflow_executor::{CompiledGraph, RunConfig};
use dashflow_graph::{END, GraphState, START, StateGraph};
use dashflow_telemetry::{DeltaKind, Event, EventBatch, EventCallback, Interest, StateDelta};

use crate::common::{Compiled, Trail, TrailUpdate, log, tick};

/// Keeps the deltas it gets and counts them; asks for deltas only if told to.
#[derive(Clone, Default)]
struct Deltas {
    asks: bool,
    batches: bool,
    deltas: Arc<Mutex<Vec<StateDelta>>>,
    events: Arc<Mutex<usize>>,
}

impl Deltas {
    fn new(asks: bool, batches: bool) -> Self {
        Self { asks, batches, ..Self::default() }
    }

    fn deltas(&self) -> Vec<StateDelta> {
        self.deltas.lock().unwrap().clone()
    }
}

impl EventCallback for Deltas {
    fn on_event(&self, _: &Event) {
        *self.events.lock().unwrap() += 1;
    }

    fn interest(&self) -> Interest {
        Interest { deltas: self.asks, ..Interest::ALL }
    }

    fn batches(&self) -> bool {
        self.batches
    }

    // `on_batch` is the default one: it must pass deltas on only to a sink that asks.

    fn on_delta(&self, delta: &StateDelta) {
        self.deltas.lock().unwrap().push(delta.clone());
    }
}

/// A batching sink that asks for no deltas and counts those its batches hold.
#[derive(Clone, Default)]
struct HeldDeltas(Arc<Mutex<usize>>);

impl EventCallback for HeldDeltas {
    fn on_event(&self, _: &Event) {}

    fn batches(&self) -> bool {
        true
    }

    fn on_batch(&self, batch: &EventBatch) {
        *self.0.lock().unwrap() += batch.deltas().count();
    }
}

/// `a` -> (`b`, `c`, `tick`) -> `d` -> END: a parallel step that appends twice and adds.
fn graph() -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::named("deltas");
    graph
        .add_node("a", log("a"))
        .add_node("b", log("b"))
        .add_node("c", log("c"))
        .add_node("tick", tick)
        .add_node("d", log("d"))
        .add_edge(START, "a")
        .add_parallel_edges("a", ["b", "c", "tick"])
        .add_join(["b", "c", "tick"], "d")
        .add_edge("d", END);
    graph.compiled().unwrap()
}

/// The state the deltas say the run ended with: the snapshot, then each update applied.
fn rebuilt(deltas: &[StateDelta]) -> Trail {
    let mut state: Option<Trail> = None;
    for delta in deltas {
        let json = delta.to_json().unwrap();
        match delta.kind {
            DeltaKind::Snapshot => state = Some(serde_json::from_value(json).unwrap()),
            DeltaKind::Update => {
                let update: TrailUpdate = serde_json::from_value(json).unwrap();
                state.as_mut().expect("a snapshot comes first").apply(update);
            }
            other => panic!("unknown delta kind {other:?}"),
        }
    }
    state.expect("a snapshot")
}

#[tokio::test]
async fn only_sinks_that_ask_get_deltas_and_they_rebuild_the_final_state() {
    let one_by_one = Deltas::new(true, false);
    let batched = Deltas::new(true, true);
    let not_asking = Deltas::new(false, false);
    let not_asking_batched = Deltas::new(false, true);
    let app = graph()
        .with_callback(one_by_one.clone())
        .with_callback(batched.clone())
        .with_callback(not_asking.clone())
        .with_callback(not_asking_batched.clone());
    let input = Trail { note: "start".into(), ..Trail::default() };
    let result = app.invoke(input, RunConfig::new()).await.unwrap();
    drop(app);

    for sink in [&one_by_one, &batched] {
        let deltas = sink.deltas();
        let shape: Vec<(DeltaKind, u64)> = deltas.iter().map(|delta| (delta.kind, delta.step)).collect();
        assert_eq!(
            shape,
            [(DeltaKind::Snapshot, 0), (DeltaKind::Update, 1), (DeltaKind::Update, 2), (DeltaKind::Update, 3)]
        );
        assert_eq!(deltas[0].to_json().unwrap()["note"], "start", "the snapshot is the run's input");
        let parallel: TrailUpdate = serde_json::from_value(deltas[2].to_json().unwrap()).unwrap();
        assert_eq!(parallel.log.as_deref(), Some(&["b".to_owned(), "c".to_owned()][..]), "merged in frontier order");
        assert_eq!(rebuilt(&deltas), result.state);
        assert!(deltas.iter().all(|delta| delta.run == deltas[0].run));
    }
    for sink in [&not_asking, &not_asking_batched] {
        assert!(sink.deltas().is_empty(), "a sink that did not ask got deltas: {:?}", sink.deltas());
        assert!(*sink.events.lock().unwrap() > 0, "it heard the events");
    }
}

#[tokio::test]
async fn a_run_whose_sinks_ask_for_no_deltas_records_none() {
    let held = HeldDeltas::default();
    let not_asking = Deltas::new(false, false);
    let app = graph().with_callback(held.clone()).with_callback(not_asking.clone());
    app.invoke(Trail::default(), RunConfig::new()).await.unwrap();
    drop(app);
    assert_eq!(*held.0.lock().unwrap(), 0, "batches carried deltas nobody asked for");
    assert!(not_asking.deltas().is_empty());
}
