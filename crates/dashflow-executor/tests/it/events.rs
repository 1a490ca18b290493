//! What observers hear: only the kinds they ask for, checkpoint commits, interrupts, and
//! event times that agree with the durations they carry.

use std::sync::{Arc, Mutex};

use crate::common::Compiled;
use dashflow_checkpoint::Checkpointer;
use dashflow_checkpoint_memory::MemoryCheckpointer;
use dashflow_executor::{CompiledGraph, Durability, RunConfig, RunStatus};
use dashflow_graph::{Command, END, NodeContext, START, StateGraph};
use dashflow_telemetry::{Event, EventCallback, EventKind, Interest};
use serde_json::json;

use crate::common::{Recorder, Trail, TrailUpdate, log};

/// Keeps the events of the kinds it asks for, and counts any other that reaches it.
#[derive(Clone, Default)]
struct Narrow {
    interest: Option<Interest>,
    events: Arc<Mutex<Vec<Event>>>,
    unwanted: Arc<Mutex<Vec<String>>>,
}

impl Narrow {
    fn asking(interest: Interest) -> Self {
        Self { interest: Some(interest), ..Self::default() }
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

impl EventCallback for Narrow {
    fn on_event(&self, event: &Event) {
        if self.interest.unwrap_or(Interest::ALL).covers(&event.kind) {
            self.events.lock().unwrap().push(event.clone());
        } else {
            self.unwanted.lock().unwrap().push(format!("{:?}", event.kind));
        }
    }

    fn interest(&self) -> Interest {
        self.interest.unwrap_or(Interest::ALL)
    }
}

/// `a` -> (`b`, `c`) -> END.
fn fan_out() -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::named("fan");
    graph
        .add_node("a", log("a"))
        .add_node("b", log("b"))
        .add_node("c", log("c"))
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("a", "c")
        .add_edge("b", END)
        .add_edge("c", END);
    graph.compiled().unwrap()
}

#[tokio::test]
async fn a_callback_hears_only_the_kinds_it_asks_for_and_unasked_kinds_are_not_built() {
    let finished_only = Narrow::asking(Interest { tasks_finished: true, ..Interest::NONE });
    let steps_only = Narrow::asking(Interest { steps_started: true, ..Interest::NONE });
    let app = fan_out().with_callback(finished_only.clone()).with_callback(steps_only.clone());
    app.invoke(Trail::default(), RunConfig::new()).await.unwrap();

    let tasks: Vec<String> = finished_only
        .events()
        .iter()
        .map(|event| match &event.kind {
            EventKind::TaskFinished { step, node, .. } => format!("{step} {node}"),
            other => panic!("asked only for finished tasks, heard {other:?}"),
        })
        .collect();
    let mut sorted = tasks.clone();
    sorted.sort();
    assert_eq!(sorted, ["1 a", "2 b", "2 c"]);
    let steps: Vec<String> = steps_only
        .events()
        .iter()
        .map(|event| match &event.kind {
            EventKind::SuperstepStarted { step, nodes } => format!("{step} {nodes:?}"),
            other => panic!("asked only for step starts, heard {other:?}"),
        })
        .collect();
    assert_eq!(steps, ["1 [\"a\"]", "2 [\"b\", \"c\"]"]);
    // Neither sink was handed an event of a kind it did not ask for.
    assert!(finished_only.unwanted.lock().unwrap().is_empty());
    assert!(steps_only.unwanted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn event_times_never_go_backwards_and_a_task_ends_its_duration_after_the_step_started() {
    let recorder = Recorder::default();
    let app = fan_out().with_callback(recorder.clone());
    app.invoke(Trail::default(), RunConfig::new()).await.unwrap();

    let events = recorder.events();
    assert!(events.windows(2).all(|pair| pair[0].at <= pair[1].at), "{events:#?}");
    let step_started = |wanted: u64| {
        events
            .iter()
            .find_map(|event| match &event.kind {
                EventKind::SuperstepStarted { step, .. } if *step == wanted => Some(event.at),
                _ => None,
            })
            .unwrap()
    };
    for event in &events {
        if let EventKind::TaskFinished { step, duration, .. } = &event.kind {
            let started = event.at.checked_sub(*duration).unwrap();
            assert!(started >= step_started(*step), "{event:?} started before its step");
        }
    }
}

/// `draft` -> `review` (asks a person through `interrupt`) -> `send` -> END.
fn approval() -> StateGraph<Trail> {
    let mut graph = StateGraph::<Trail>::named("approval");
    graph
        .add_node("draft", log("draft"))
        .add_node("review", |_: Arc<Trail>, ctx: NodeContext| async move {
            let answer = ctx.interrupt(json!({ "question": "send it?" }))?;
            Ok(TrailUpdate::default().note(answer.to_string()))
        })
        .add_node("send", log("send"))
        .add_edge(START, "draft")
        .add_edge("draft", "review")
        .add_edge("review", "send")
        .add_edge("send", END);
    graph
}

fn memory() -> Arc<dyn Checkpointer> {
    Arc::new(MemoryCheckpointer::new())
}

/// `a` -> `b`, named `name`, checkpointed in memory.
fn a_then_b(name: &str) -> CompiledGraph<Trail> {
    let mut graph = StateGraph::<Trail>::named(name);
    graph.add_node("a", log("a")).add_node("b", log("b")).add_edge(START, "a").add_edge("a", "b").add_edge("b", END);
    graph.compiled().unwrap().with_checkpointer(memory())
}

/// The run-level part of what a recorder heard: checkpoints (by step; whether one is a
/// snapshot depends on sizes), interrupts, the outcome.
fn milestones(recorder: &Recorder) -> Vec<String> {
    recorder
        .described()
        .into_iter()
        .filter(|line| ["checkpoint", "interrupted", "completed"].iter().any(|prefix| line.starts_with(prefix)))
        .map(|line| line.trim_end_matches(" snapshot").trim_end_matches(" delta").to_owned())
        .collect()
}

#[tokio::test]
async fn every_committed_checkpoint_is_reported_with_the_id_history_shows_in_both_durabilities() {
    for durability in [Durability::Sync, Durability::Async] {
        let recorder = Recorder::default();
        let app = a_then_b("chain").with_callback(recorder.clone());
        let config = RunConfig::thread("t").durability(durability);
        app.invoke(Trail::default(), config.clone()).await.unwrap();

        // All of them arrive before the run's end, each once, the input's snapshot first.
        let expected = ["checkpoint 0", "checkpoint 1", "checkpoint 2", "completed after 2"];
        assert_eq!(milestones(&recorder), expected, "{durability:?}");
        let first = recorder.described().into_iter().find(|line| line.starts_with("checkpoint"));
        assert_eq!(first.as_deref(), Some("checkpoint 0 snapshot"));
        let reported: Vec<String> = recorder
            .events()
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::CheckpointCommitted { checkpoint_id, bytes, .. } => {
                    assert!(*bytes > 0);
                    Some(checkpoint_id.to_string())
                }
                _ => None,
            })
            .collect();
        let mut history: Vec<String> = app
            .get_state_history(&config, None)
            .await
            .unwrap()
            .iter()
            .map(|snapshot| snapshot.checkpoint_id.to_string())
            .collect();
        history.reverse();
        assert_eq!(reported, history, "{durability:?}");
    }
}

#[tokio::test]
async fn a_node_interrupt_is_reported_with_its_value_after_what_resuming_needs_is_stored() {
    let recorder = Recorder::default();
    let app = approval().compiled().unwrap().with_checkpointer(memory()).with_callback(recorder.clone());
    let config = RunConfig::thread("ask");
    let paused = app.invoke(Trail::default(), config.clone()).await.unwrap();
    assert!(matches!(paused.status, RunStatus::Interrupted { .. }));
    assert_eq!(
        milestones(&recorder),
        [
            "checkpoint 0",
            "checkpoint 1",
            "interrupted 1 node review: {\"question\":\"send it?\"}",
            "interrupted after 1",
        ]
    );

    let resumed = Recorder::default();
    let config = config.callback(resumed.clone());
    let done = app.resume(Command::resume(json!("yes")), config).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(milestones(&resumed), ["checkpoint 2", "checkpoint 3", "completed after 3"]);
}

#[tokio::test]
async fn pauses_before_and_after_a_node_are_reported_with_their_reason() {
    for (before, expected) in [(true, "interrupted 1 before b"), (false, "interrupted 1 after a")] {
        let recorder = Recorder::default();
        let app = a_then_b("pause").with_callback(recorder.clone());
        let app = if before { app.interrupt_before(["b"]).unwrap() } else { app.interrupt_after(["a"]).unwrap() };
        app.invoke(Trail::default(), RunConfig::thread("p")).await.unwrap();
        let interrupts: Vec<String> =
            recorder.described().into_iter().filter(|line| line.starts_with("interrupted 1 ")).collect();
        assert_eq!(interrupts, [expected]);
    }
}

#[tokio::test]
async fn exit_durability_reports_the_one_checkpoint_it_writes_at_the_pause() {
    let recorder = Recorder::default();
    let app = approval().compiled().unwrap().with_checkpointer(memory());
    let config = RunConfig::thread("exit").durability(Durability::Exit).callback(recorder.clone());
    app.invoke(Trail::default(), config).await.unwrap();
    assert_eq!(
        milestones(&recorder),
        ["checkpoint 1", "interrupted 1 node review: {\"question\":\"send it?\"}", "interrupted after 1"]
    );
}

/// Counts how each event arrived: by reference or handed over.
#[derive(Clone, Default)]
struct Taker {
    borrowed: Arc<Mutex<u32>>,
    taken: Arc<Mutex<u32>>,
}

impl EventCallback for Taker {
    fn on_event(&self, _: &Event) {
        *self.borrowed.lock().unwrap() += 1;
    }

    fn take_event(&self, _: Event) {
        *self.taken.lock().unwrap() += 1;
    }
}

#[tokio::test]
async fn the_last_sink_that_wants_an_event_takes_it_unless_a_stream_needs_it() {
    let (first, last) = (Taker::default(), Taker::default());
    let app = fan_out().with_callback(first.clone()).with_callback(last.clone());
    app.invoke(Trail::default(), RunConfig::new()).await.unwrap();
    let events = *first.borrowed.lock().unwrap();
    assert!(events > 0);
    assert_eq!((*first.taken.lock().unwrap(), *last.borrowed.lock().unwrap()), (0, 0));
    assert_eq!(*last.taken.lock().unwrap(), events, "the last sink takes every event");

    // An events stream keeps the event, so every sink borrows it.
    let streamed = Taker::default();
    let config = RunConfig::new().callback(streamed.clone()).stream_modes([dashflow_executor::StreamMode::Events]);
    let mut stream = fan_out().stream(Trail::default(), config);
    while futures::StreamExt::next(&mut stream).await.is_some() {}
    assert_eq!(*streamed.taken.lock().unwrap(), 0);
    assert!(*streamed.borrowed.lock().unwrap() > 0);
}
