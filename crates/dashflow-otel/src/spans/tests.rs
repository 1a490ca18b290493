#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashflow_telemetry::{Event, EventKind, RunId, RunIds, RunOutcome};
use opentelemetry::trace::{SpanContext, SpanId, Status, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::trace::SpanData;

use super::SpanMaker;
use crate::{parse_trace_parent, trace_parent_tag};

fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000 + ms)
}

fn started(run: RunIds, ms: u64, tags: Vec<Arc<str>>) -> Event {
    Event::at(run, at(ms), EventKind::RunStarted { graph: "g".into(), thread_id: None, tags })
}

fn step(run: RunIds, ms: u64, step: u64) -> Event {
    Event::at(run, at(ms), EventKind::SuperstepStarted { step, nodes: Arc::from([Arc::from("n")]) })
}

fn task(run: RunIds, ms: u64, step: u64, took: u64) -> Event {
    Event::at(
        run,
        at(ms),
        EventKind::TaskFinished {
            step,
            node: "n".into(),
            attempt: 1,
            duration: Duration::from_millis(took),
            error: None,
        },
    )
}

fn finished(run: RunIds, ms: u64) -> Event {
    Event::at(
        run,
        at(ms),
        EventKind::RunFinished {
            outcome: RunOutcome::Completed,
            steps: 1,
            duration: Duration::from_millis(ms),
            error: None,
        },
    )
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|span| span.name == name).collect()
}

#[test]
fn a_task_span_starts_its_duration_before_its_end() {
    let run = RunIds::root(RunId::new());
    let mut maker = SpanMaker::new();
    let mut out = Vec::new();
    for event in [started(run, 0, Vec::new()), step(run, 1, 1), task(run, 10, 1, 4), finished(run, 12)] {
        maker.push_event(&event, &mut out);
    }
    let task = named(&out, "dashflow.task")[0];
    assert_eq!((task.start_time, task.end_time), (at(6), at(10)));
    let run_span = named(&out, "dashflow.run")[0];
    assert_eq!((run_span.start_time, run_span.end_time), (at(0), at(12)));
    assert_eq!(run_span.status, Status::Ok);
    // The step never reported its end: it ends with the run.
    assert_eq!(named(&out, "dashflow.superstep")[0].end_time, at(12));
    assert_eq!(maker.open_runs(), 0);
}

#[test]
fn a_subgraph_run_hangs_under_the_parents_running_superstep_in_its_trace() {
    let parent = RunIds::root(RunId::new());
    let child = parent.child(RunId::new());
    let mut maker = SpanMaker::new();
    let mut out = Vec::new();
    for event in [
        started(parent, 0, Vec::new()),
        step(parent, 1, 1),
        started(child, 2, Vec::new()),
        step(child, 3, 1),
        task(child, 4, 1, 1),
        finished(child, 5),
        task(parent, 6, 1, 5),
        finished(parent, 7),
    ] {
        maker.push_event(&event, &mut out);
    }
    let runs = named(&out, "dashflow.run");
    let (child_run, parent_run) = (runs[0], runs[1]);
    let parent_step = named(&out, "dashflow.superstep")
        .into_iter()
        .find(|s| s.parent_span_id == parent_run.span_context.span_id())
        .unwrap();
    assert_eq!(child_run.parent_span_id, parent_step.span_context.span_id());
    assert_eq!(child_run.span_context.trace_id(), parent_run.span_context.trace_id());
}

#[test]
fn runs_still_open_when_the_exporter_stops_are_exported_unfinished() {
    let run = RunIds::root(RunId::new());
    let mut maker = SpanMaker::new();
    let mut out = Vec::new();
    maker.push_event(&started(run, 0, Vec::new()), &mut out);
    maker.push_event(&step(run, 1, 1), &mut out);
    assert!(out.is_empty(), "nothing ends before the run does");
    maker.finish_all(at(50), &mut out);
    let run_span = named(&out, "dashflow.run")[0];
    let outcome = run_span.attributes.iter().find(|kv| kv.key.as_str() == "dashflow.run.outcome").unwrap();
    assert_eq!(outcome.value.as_str(), "unfinished");
    assert_eq!(named(&out, "dashflow.superstep").len(), 1);
}

#[test]
fn a_run_whose_caller_is_not_sampled_exports_nothing() {
    let caller = SpanContext::new(
        TraceId::from(7_u128),
        SpanId::from(9_u64),
        TraceFlags::NOT_SAMPLED,
        true,
        TraceState::default(),
    );
    let run = RunIds::root(RunId::new());
    let mut maker = SpanMaker::new();
    let mut out = Vec::new();
    let tag: Arc<str> = trace_parent_tag(&caller).unwrap().into();
    for event in [started(run, 0, vec![tag]), step(run, 1, 1), task(run, 3, 1, 1), finished(run, 4)] {
        maker.push_event(&event, &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_trace_parent_tag_round_trips_and_bad_ones_are_refused_with_the_reason() {
    let caller = SpanContext::new(
        TraceId::from(0xabc_u128),
        SpanId::from(0xdef_u64),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let tag = trace_parent_tag(&caller).unwrap();
    assert_eq!(tag, "traceparent=00-00000000000000000000000000000abc-0000000000000def-01");
    let parsed = parse_trace_parent(tag.strip_prefix("traceparent=").unwrap()).unwrap();
    assert_eq!((parsed.trace_id(), parsed.span_id(), parsed.is_sampled()), (caller.trace_id(), caller.span_id(), true));
    for bad in [
        "",
        "01-00000000000000000000000000000abc-0000000000000def-01",
        "00-xyz-0000000000000def-01",
        "00-00000000000000000000000000000000-0000000000000def-01",
    ] {
        let error = parse_trace_parent(bad).unwrap_err().to_string();
        assert!(error.contains("invalid trace parent"), "{error}");
    }
    assert!(trace_parent_tag(&SpanContext::NONE).is_err());
}

#[test]
fn past_the_open_run_bound_the_runs_heard_from_least_recently_end_unfinished() {
    let mut maker = SpanMaker::with_max_open(4);
    let mut out = Vec::new();
    let runs: Vec<RunIds> = (0..4).map(|_| RunIds::root(RunId::new())).collect();
    for (n, run) in runs.iter().enumerate() {
        maker.push_event(&started(*run, n as u64, Vec::new()), &mut out);
    }
    // The first run is heard from again: the second is now the quietest.
    maker.push_event(&step(runs[0], 10, 1), &mut out);
    assert_eq!((maker.open_runs(), out.len()), (4, 0));
    let fifth = RunIds::root(RunId::new());
    maker.push_event(&started(fifth, 20, Vec::new()), &mut out);
    assert_eq!(maker.open_runs(), 4, "one ended to make room, the new one opened");
    let run_spans = named(&out, "dashflow.run");
    assert_eq!(run_spans.len(), 1);
    let id = run_spans[0].attributes.iter().find(|kv| kv.key.as_str() == "dashflow.run.id").unwrap();
    assert_eq!(id.value.as_str(), runs[1].run_id.to_string());
    let outcome = run_spans[0].attributes.iter().find(|kv| kv.key.as_str() == "dashflow.run.outcome").unwrap();
    assert_eq!(outcome.value.as_str(), "unfinished");
    // The ended run's later events are ignored; the others go on.
    maker.push_event(&finished(runs[1], 30), &mut out);
    maker.push_event(&finished(runs[0], 31), &mut out);
    assert_eq!(named(&out, "dashflow.run").len(), 2);
}

fn routed(run: RunIds, ms: u64, step: u64) -> Event {
    Event::at(run, at(ms), EventKind::Routed { step, from: "n".into(), label: "again".into(), target: "n".into() })
}

#[test]
fn a_step_ends_where_the_next_one_starts_and_carries_its_routing_decisions() {
    let run = RunIds::root(RunId::new());
    let mut maker = SpanMaker::new();
    let mut out = Vec::new();
    for event in [started(run, 0, Vec::new()), step(run, 1, 1), task(run, 3, 1, 2), routed(run, 4, 1)] {
        maker.push_event(&event, &mut out);
    }
    assert!(named(&out, "dashflow.superstep").is_empty(), "a step is open until its successor starts");
    maker.push_event(&step(run, 5, 2), &mut out);
    let first = named(&out, "dashflow.superstep");
    assert_eq!(first.len(), 1, "the second step's start ends the first");
    assert_eq!((first[0].start_time, first[0].end_time), (at(1), at(5)));
    let route = first[0].events.iter().find(|event| event.name == "dashflow.routed").unwrap();
    assert_eq!(route.timestamp, at(4));
    for event in [task(run, 7, 2, 2), finished(run, 9)] {
        maker.push_event(&event, &mut out);
    }
    let steps = named(&out, "dashflow.superstep");
    assert_eq!(steps.len(), 2);
    assert_eq!((steps[1].start_time, steps[1].end_time), (at(5), at(9)), "the last step ends with its run");
    assert!(steps.iter().all(|step| step.status == Status::Unset));
    let run_span = named(&out, "dashflow.run")[0];
    assert!(run_span.events.iter().all(|event| event.name != "dashflow.routed"), "the decision is its step's");
}

#[test]
fn a_task_of_a_step_whose_start_was_lost_opens_it_and_ends_the_step_before() {
    let run = RunIds::root(RunId::new());
    let mut maker = SpanMaker::new();
    let mut out = Vec::new();
    // Step 2's start never arrives (a hand-over dropped on a full queue).
    for event in [started(run, 0, Vec::new()), step(run, 1, 1), task(run, 3, 1, 2), task(run, 8, 2, 2)] {
        maker.push_event(&event, &mut out);
    }
    let steps = named(&out, "dashflow.superstep");
    assert_eq!(steps.len(), 1, "step 1 ended where step 2's task began");
    assert_eq!((steps[0].start_time, steps[0].end_time), (at(1), at(6)));
    maker.push_event(&finished(run, 9), &mut out);
    let steps = named(&out, "dashflow.superstep");
    assert_eq!((steps[1].start_time, steps[1].end_time), (at(6), at(9)));
    let tasks = named(&out, "dashflow.task");
    assert_eq!(tasks[1].parent_span_id, steps[1].span_context.span_id());
}

#[test]
fn a_failed_run_marks_the_step_whose_task_failed_and_not_the_steps_before() {
    let run = RunIds::root(RunId::new());
    let failed_task = Event::at(
        run,
        at(7),
        EventKind::TaskFinished {
            step: 2,
            node: "n".into(),
            attempt: 1,
            duration: Duration::from_millis(1),
            error: Some("boom".to_owned()),
        },
    );
    let failed_run = Event::at(
        run,
        at(8),
        EventKind::RunFinished {
            outcome: RunOutcome::Failed,
            steps: 2,
            duration: Duration::from_millis(8),
            error: Some("boom".to_owned()),
        },
    );
    let mut maker = SpanMaker::new();
    let mut out = Vec::new();
    for event in
        [started(run, 0, Vec::new()), step(run, 1, 1), task(run, 3, 1, 2), step(run, 5, 2), failed_task, failed_run]
    {
        maker.push_event(&event, &mut out);
    }
    let steps = named(&out, "dashflow.superstep");
    let status = |n: i64| {
        let step = steps
            .iter()
            .find(|span| {
                span.attributes.iter().any(|kv| kv.key.as_str() == "dashflow.superstep" && kv.value == n.into())
            })
            .unwrap();
        step.status.clone()
    };
    assert_eq!(status(1), Status::Unset);
    assert_eq!(status(2), Status::error("boom"));
}
