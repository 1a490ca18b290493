use std::time::Duration;

use std::sync::Arc;

use dashflow_telemetry::{Event, EventKind, InterruptReason, RunId, RunIds, RunOutcome};

use super::*;

fn events(kinds: Vec<EventKind>) -> Vec<Event> {
    let run = RunIds::root(RunId::new());
    kinds.into_iter().map(|kind| Event::now(run, kind)).collect()
}

fn started(step: u64, node: &str, attempt: u32) -> EventKind {
    EventKind::TaskStarted { step, node: node.into(), attempt }
}

fn finished(step: u64, node: &str, attempt: u32, ms: u64, error: Option<&str>) -> EventKind {
    EventKind::TaskFinished {
        step,
        node: node.into(),
        attempt,
        duration: Duration::from_millis(ms),
        error: error.map(Into::into),
    }
}

fn task(step: u64, node: &str, attempt: u32, ms: Option<u64>, error: Option<&str>) -> Entry {
    Entry::Task(Task {
        step,
        node: node.into(),
        attempt,
        duration: ms.map(Duration::from_millis),
        error: error.map(Into::into),
    })
}

#[test]
fn tasks_appear_in_the_order_they_started_with_their_finish_filled_in() {
    let timeline = timeline(&events(vec![
        started(1, "a", 1),
        started(1, "b", 1),
        finished(1, "b", 1, 5, None),
        finished(1, "a", 1, 9, Some("boom")),
    ]));
    assert_eq!(timeline, vec![task(1, "a", 1, Some(9), Some("boom")), task(1, "b", 1, Some(5), None)]);
}

#[test]
fn parallel_tasks_of_one_node_are_matched_first_started_first_finished() {
    let timeline = timeline(&events(vec![
        started(2, "worker", 1),
        started(2, "worker", 1),
        finished(2, "worker", 1, 3, None),
        finished(2, "worker", 1, 4, None),
    ]));
    assert_eq!(timeline, vec![task(2, "worker", 1, Some(3), None), task(2, "worker", 1, Some(4), None)]);
}

#[test]
fn retries_are_separate_rows_and_unfinished_tasks_have_no_duration() {
    let timeline = timeline(&events(vec![
        started(1, "flaky", 1),
        finished(1, "flaky", 1, 2, Some("timeout")),
        started(1, "flaky", 2),
    ]));
    assert_eq!(timeline, vec![task(1, "flaky", 1, Some(2), Some("timeout")), task(1, "flaky", 2, None, None)]);
}

#[test]
fn routing_decisions_and_interrupts_sit_between_the_steps_they_follow() {
    let timeline = timeline(&events(vec![
        started(1, "review", 1),
        finished(1, "review", 1, 1, None),
        EventKind::Routed { step: 1, from: "review".into(), label: "approved".into(), target: "send".into() },
        EventKind::RunFinished {
            outcome: RunOutcome::Interrupted,
            steps: 1,
            duration: Duration::from_millis(3),
            error: None,
        },
    ]));
    assert_eq!(
        timeline,
        vec![
            task(1, "review", 1, Some(1), None),
            Entry::Routed { step: 1, from: "review".into(), label: "approved".into(), target: "send".into() },
            Entry::Interrupted { step: 1, node: None, reason: None },
        ]
    );
}

fn step(step: u64, nodes: &[&str]) -> EventKind {
    EventKind::SuperstepStarted { step, nodes: nodes.iter().map(|node| Arc::from(*node)).collect() }
}

#[test]
fn a_step_lists_its_tasks_so_ends_alone_fill_them_in_and_unfinished_ones_show() {
    // What the WAL stores: steps and task ends, no task starts.
    let timeline = timeline(&events(vec![
        step(1, &["a"]),
        finished(1, "a", 1, 4, None),
        step(2, &["b", "c", "b"]),
        finished(2, "b", 1, 3, None),
        finished(2, "c", 1, 8, Some("boom")),
        finished(2, "c", 2, 1, None),
    ]));
    assert_eq!(
        timeline,
        vec![
            task(1, "a", 1, Some(4), None),
            task(2, "b", 1, Some(3), None),
            task(2, "c", 1, Some(8), Some("boom")),
            task(2, "b", 1, None, None),
            task(2, "c", 2, Some(1), None),
        ]
    );
}

#[test]
fn task_starts_take_the_rows_their_step_planned_instead_of_adding_rows() {
    let timeline = timeline(&events(vec![
        step(1, &["a", "b"]),
        started(1, "b", 1),
        started(1, "a", 1),
        finished(1, "a", 1, 2, None),
        started(1, "b", 2),
    ]));
    assert_eq!(
        timeline,
        vec![task(1, "a", 1, Some(2), None), task(1, "b", 1, None, None), task(1, "b", 2, None, None)]
    );
}

#[test]
fn an_interrupt_event_names_the_node_and_reason_once() {
    let timeline = timeline(&events(vec![
        step(1, &["draft"]),
        finished(1, "draft", 1, 1, None),
        EventKind::Interrupted { step: 1, node: "send".into(), reason: InterruptReason::Before, value: None },
        EventKind::RunFinished {
            outcome: RunOutcome::Interrupted,
            steps: 1,
            duration: Duration::from_millis(2),
            error: None,
        },
    ]));
    assert_eq!(
        timeline,
        vec![
            task(1, "draft", 1, Some(1), None),
            Entry::Interrupted { step: 1, node: Some("send".into()), reason: Some("before".into()) },
        ]
    );
    let mut out = Vec::new();
    write_timeline(&timeline, RunStatus::Interrupted, &mut out).unwrap();
    assert!(String::from_utf8(out).unwrap().contains("⏸ interrupted before send after step 1"));
}

#[test]
fn a_finish_without_its_start_still_makes_a_row() {
    let timeline = timeline(&events(vec![finished(3, "late", 1, 7, None)]));
    assert_eq!(timeline, vec![task(3, "late", 1, Some(7), None)]);
}

#[test]
fn the_timeline_draws_bars_scaled_to_the_longest_task_and_errors_in_place() {
    let entries = vec![task(1, "fast", 1, Some(10), None), task(1, "slow", 1, Some(40), Some("it broke"))];
    let mut out = Vec::new();
    write_timeline(&entries, RunStatus::Failed, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "STEP  NODE  TRY  DURATION");
    assert!(lines[1].starts_with("   1  fast    1    10.0ms  ███████▌"), "{text}");
    assert!(lines[2].contains(&"█".repeat(BAR_WIDTH)), "{text}");
    assert!(lines[2].ends_with("✗ it broke"), "{text}");
}
