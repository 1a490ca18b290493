use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use dashflow_telemetry::{Event, EventKind, InterruptReason, RunId, RunIds, RunOutcome};

use super::*;
use crate::testing::{finished, root, started};

fn at(run: RunIds, ms: u64, kind: EventKind) -> Event {
    Event { run, at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms), kind }
}

fn task_started(run: RunIds, step: u64, node: &str, attempt: u32) -> Event {
    at(run, step * 100, EventKind::TaskStarted { step, node: node.into(), attempt })
}

fn task_finished(run: RunIds, step: u64, node: &str, attempt: u32, ms: u64, error: Option<&str>) -> Event {
    at(
        run,
        step * 100 + ms,
        EventKind::TaskFinished {
            step,
            node: node.into(),
            attempt,
            duration: Duration::from_millis(ms),
            error: error.map(Into::into),
        },
    )
}

fn superstep(run: RunIds, step: u64, nodes: &[&str]) -> Event {
    at(run, step * 100, EventKind::SuperstepStarted { step, nodes: nodes.iter().map(|&n| n.into()).collect() })
}

fn routed(run: RunIds, step: u64, from: &str, label: &str, target: &str) -> Event {
    at(run, step * 100 + 99, EventKind::Routed { step, from: from.into(), label: label.into(), target: target.into() })
}

fn build(run: RunIds, events: &[Event]) -> TraceBuilder {
    let mut builder = TraceBuilder::new(run);
    events.iter().for_each(|event| builder.push(event));
    builder
}

fn nodes(trace: &ExecutionTrace) -> Vec<(u64, &str)> {
    trace.tasks.iter().map(|task| (task.step, task.node.as_str())).collect()
}

#[test]
fn a_retried_task_keeps_both_attempts_with_the_first_error() {
    let run = root();
    let trace = build(
        run,
        &[
            started(run, "g", Some("t1")),
            superstep(run, 1, &["flaky"]),
            task_started(run, 1, "flaky", 1),
            task_finished(run, 1, "flaky", 1, 7, Some("connection reset")),
            task_started(run, 1, "flaky", 2),
            task_finished(run, 1, "flaky", 2, 3, None),
            finished(run, RunOutcome::Completed, 1, None),
        ],
    )
    .finish()
    .unwrap();
    assert_eq!(trace.status, TraceStatus::Completed);
    assert_eq!(trace.graph.as_deref(), Some("g"));
    assert_eq!(trace.thread_id.as_deref(), Some("t1"));
    assert_eq!(trace.tasks.len(), 1);
    let task = &trace.tasks[0];
    let attempts: Vec<_> = task.attempts.iter().map(|a| (a.attempt, a.duration, a.error.as_deref())).collect();
    assert_eq!(
        attempts,
        [(1, Some(Duration::from_millis(7)), Some("connection reset")), (2, Some(Duration::from_millis(3)), None)]
    );
    assert_eq!(task.duration(), Duration::from_millis(10));
    assert_eq!(task.error(), None);
    assert_eq!(trace.failed_attempts(), 1);
}

#[test]
fn a_failed_run_keeps_its_error_and_the_failing_task() {
    let run = root();
    let trace = build(
        run,
        &[
            started(run, "g", None),
            task_started(run, 1, "a", 1),
            task_finished(run, 1, "a", 1, 2, Some("boom")),
            finished(run, RunOutcome::Failed, 1, Some("node `a` failed: boom")),
        ],
    )
    .finish()
    .unwrap();
    assert_eq!(trace.status, TraceStatus::Failed);
    assert_eq!(trace.error.as_deref(), Some("node `a` failed: boom"));
    assert_eq!(trace.tasks[0].error(), Some("boom"));
    assert_eq!(trace.interrupt, None);
}

#[test]
fn an_interrupt_inside_a_node_names_the_node_from_the_rolled_back_step() {
    let run = root();
    let trace = build(
        run,
        &[
            started(run, "g", None),
            task_finished(run, 1, "draft", 1, 2, None),
            superstep(run, 2, &["review", "approve"]),
            task_finished(run, 2, "review", 1, 1, None),
            task_finished(run, 2, "approve", 1, 1, Some("the node is waiting for input: \"ok?\"")),
            // The interrupted step does not count: the run stands before it.
            finished(run, RunOutcome::Interrupted, 1, None),
        ],
    )
    .finish()
    .unwrap();
    assert_eq!(trace.status, TraceStatus::Interrupted);
    assert_eq!(trace.steps, 1);
    let interrupt = trace.interrupt.unwrap();
    assert_eq!(interrupt.node.as_deref(), Some("approve"));
    assert_eq!(interrupt.message.as_deref(), Some("the node is waiting for input: \"ok?\""));
}

#[test]
fn a_configured_interrupt_between_steps_without_its_event_has_no_node() {
    let run = root();
    let trace = build(
        run,
        &[
            started(run, "g", None),
            task_finished(run, 1, "a", 1, 2, None),
            finished(run, RunOutcome::Interrupted, 1, None),
        ],
    )
    .finish()
    .unwrap();
    assert_eq!(trace.interrupt, Some(TraceInterrupt { node: None, message: None, reason: None }));
}

#[test]
fn the_interrupt_event_names_node_reason_and_value() {
    let run = root();
    let interrupted = |node: &str, reason, value| {
        Event::now(run, EventKind::Interrupted { step: 1, node: node.into(), reason, value })
    };
    for (event, expected) in [
        (
            interrupted("send", InterruptReason::Before, None),
            TraceInterrupt { node: Some("send".into()), message: None, reason: Some("before".into()) },
        ),
        (
            interrupted("review", InterruptReason::Node, Some(Arc::new(serde_json::json!({"q": "ok?"})))),
            TraceInterrupt {
                node: Some("review".into()),
                message: Some("{\"q\":\"ok?\"}".into()),
                reason: Some("node".into()),
            },
        ),
    ] {
        let trace = build(
            run,
            &[
                started(run, "g", None),
                task_finished(run, 1, "a", 1, 2, None),
                event,
                finished(run, RunOutcome::Interrupted, 1, None),
            ],
        )
        .finish()
        .unwrap();
        assert_eq!(trace.interrupt, Some(expected));
    }
}

#[test]
fn tasks_are_ordered_by_step_then_frontier_whatever_order_they_finish_in() {
    let run = root();
    let trace = build(
        run,
        &[
            started(run, "g", None),
            superstep(run, 1, &["a", "b", "a"]),
            task_finished(run, 1, "b", 1, 1, None),
            task_finished(run, 1, "a", 1, 1, None),
            task_finished(run, 1, "a", 1, 2, None),
            superstep(run, 2, &["c"]),
            task_finished(run, 2, "c", 1, 1, None),
            finished(run, RunOutcome::Completed, 2, None),
        ],
    )
    .finish()
    .unwrap();
    assert_eq!(nodes(&trace), [(1, "a"), (1, "b"), (1, "a"), (2, "c")]);
}

#[test]
fn retries_of_two_tasks_of_one_node_in_one_step_stay_with_their_task() {
    let run = root();
    let trace = build(
        run,
        &[
            started(run, "g", None),
            task_started(run, 1, "worker", 1),
            task_started(run, 1, "worker", 1),
            task_finished(run, 1, "worker", 1, 5, Some("flaky")),
            task_finished(run, 1, "worker", 1, 6, None),
            task_started(run, 1, "worker", 2),
            task_finished(run, 1, "worker", 2, 7, None),
            finished(run, RunOutcome::Completed, 1, None),
        ],
    )
    .finish()
    .unwrap();
    let attempts: Vec<Vec<u32>> =
        trace.tasks.iter().map(|task| task.attempts.iter().map(|a| a.attempt).collect()).collect();
    assert_eq!(attempts, [vec![1, 2], vec![1]]);
    assert_eq!(trace.tasks[0].attempts[0].error.as_deref(), Some("flaky"));
}

#[test]
fn a_task_finished_without_its_start_event_starts_its_duration_before_it_ended() {
    let run = root();
    let finish = task_finished(run, 1, "a", 1, 30, None);
    let trace = build(run, std::slice::from_ref(&finish)).build();
    assert_eq!(trace.tasks[0].started_at(), Some(finish.at - Duration::from_millis(30)));
}

#[test]
fn routing_decisions_are_kept_in_order_with_their_step() {
    let run = root();
    let trace = build(
        run,
        &[
            started(run, "g", None),
            routed(run, 0, "__start__", "first", "a"),
            task_finished(run, 1, "a", 1, 1, None),
            routed(run, 1, "a", "done", "__end__"),
            finished(run, RunOutcome::Completed, 1, None),
        ],
    )
    .finish()
    .unwrap();
    let routes: Vec<_> =
        trace.routes.iter().map(|r| (r.step, r.from.as_str(), r.label.as_str(), r.target.as_str())).collect();
    assert_eq!(routes, [(0, "__start__", "first", "a"), (1, "a", "done", "__end__")]);
}

#[test]
fn a_subgraph_run_keeps_its_parent_and_root() {
    let parent = root();
    let child = parent.child(RunId::new());
    let mut builder = TraceBuilder::new(child);
    builder.push(&started(parent, "outer", None));
    builder.push(&started(child, "inner", None));
    builder.push(&finished(child, RunOutcome::Completed, 0, None));
    let trace = builder.finish().unwrap();
    assert_eq!(trace.run, child);
    assert_eq!(trace.run.parent_run_id, Some(parent.run_id));
    assert_eq!(trace.run.root_run_id, parent.run_id);
    assert_eq!(trace.run.depth, 1);
    assert_eq!(trace.graph.as_deref(), Some("inner"), "the parent's events are ignored");
}

#[test]
fn an_unfinished_run_builds_a_running_trace_but_does_not_finish() {
    let run = root();
    let builder = build(run, &[started(run, "g", None), task_started(run, 3, "a", 1)]);
    let trace = builder.build();
    assert_eq!(trace.status, TraceStatus::Running);
    assert_eq!(trace.steps, 3);
    assert_eq!((trace.ended_at, trace.duration), (None, None));
    assert_eq!(trace.tasks[0].attempts[0].duration, None);
    assert!(builder.finish().is_none());
}

#[test]
fn a_trace_reads_back_from_json_equal_and_with_microsecond_fields() {
    let run = root();
    let mut events = vec![started(run, "g", None), task_finished(run, 1, "a", 1, 2, Some("e"))];
    events.push(Event {
        run,
        at: SystemTime::now(),
        kind: EventKind::RunFinished {
            outcome: RunOutcome::Completed,
            steps: 1,
            duration: Duration::from_nanos(1_234_567),
            error: None,
        },
    });
    let trace = ExecutionTrace::from_events(&events).unwrap();
    assert_eq!(trace.duration, Some(Duration::from_micros(1234)), "truncated to microseconds");
    let json = serde_json::to_value(&trace).unwrap();
    assert_eq!(json["duration_us"], 1234);
    assert_eq!(json["status"], "completed");
    assert_eq!(json["run"]["run_id"], run.run_id.to_string());
    assert_eq!(json["tasks"][0]["attempts"][0]["duration_us"], 2000);
    assert_eq!(json["tasks"][0]["attempts"][0]["error"], "e");
    assert_eq!(serde_json::from_value::<ExecutionTrace>(json).unwrap(), trace);
}

#[test]
fn a_reader_tolerates_unknown_fields_and_statuses() {
    let run = root();
    let mut json = serde_json::to_value(TraceBuilder::new(run).build()).unwrap();
    json["status"] = "paused-forever".into();
    json["added_later"] = 7.into();
    let trace: ExecutionTrace = serde_json::from_value(json).unwrap();
    assert_eq!(trace.status, TraceStatus::Unknown);
}

#[test]
fn a_runaway_trace_stops_recording_and_counts_what_it_left_out() {
    let run = root();
    let mut builder = TraceBuilder::new(run);
    let event = routed(run, 1, "a", "again", "a");
    for _ in 0..MAX_ITEMS + 5 {
        builder.push(&event);
    }
    let trace = builder.build();
    assert_eq!(trace.routes.len(), MAX_ITEMS);
    assert_eq!(trace.omitted, 5);
}

#[test]
fn the_collector_hands_out_each_trace_when_its_run_finishes() {
    let (one, two) = (root(), root());
    let mut collector = TraceCollector::new();
    assert_eq!(collector.push(&started(one, "g", None)), None);
    assert_eq!(collector.push(&started(two, "g", None)), None);
    let trace = collector.push(&finished(two, RunOutcome::Failed, 0, Some("x"))).unwrap();
    assert_eq!((trace.run, trace.status), (two, TraceStatus::Failed));
    let in_progress: Vec<_> = collector.in_progress().into_iter().map(|trace| trace.run).collect();
    assert_eq!(in_progress, [one]);
}

#[test]
fn the_collector_gives_up_the_oldest_run_past_its_limit() {
    let mut runs: Vec<_> = (0..3).map(|_| root()).collect();
    // Ids made within one millisecond are not ordered by creation; the collector goes by id.
    runs.sort_by_key(|run| run.run_id);
    let mut collector = TraceCollector::new().max_open(2);
    for &run in &runs {
        collector.push(&started(run, "g", None));
    }
    assert_eq!(collector.abandoned(), 1);
    assert_eq!(collector.push(&finished(runs[0], RunOutcome::Completed, 0, None)).unwrap().graph, None);
    assert_eq!(collector.push(&finished(runs[2], RunOutcome::Completed, 0, None)).unwrap().graph.as_deref(), Some("g"));
}

#[test]
fn a_trace_status_maps_to_the_run_status_of_the_index() {
    for (status, expected) in [
        (TraceStatus::Completed, RunStatus::Completed),
        (TraceStatus::Failed, RunStatus::Failed),
        (TraceStatus::Interrupted, RunStatus::Interrupted),
        (TraceStatus::Running, RunStatus::Running),
    ] {
        assert_eq!(RunStatus::from(status), expected);
        assert_eq!(status.as_str(), expected.as_str());
    }
}
