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
        maker.push(&event, &mut out);
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
        maker.push(&event, &mut out);
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
    maker.push(&started(run, 0, Vec::new()), &mut out);
    maker.push(&step(run, 1, 1), &mut out);
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
        maker.push(&event, &mut out);
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
        maker.push(&started(*run, n as u64, Vec::new()), &mut out);
    }
    // The first run is heard from again: the second is now the quietest.
    maker.push(&step(runs[0], 10, 1), &mut out);
    assert_eq!((maker.open_runs(), out.len()), (4, 0));
    let fifth = RunIds::root(RunId::new());
    maker.push(&started(fifth, 20, Vec::new()), &mut out);
    assert_eq!(maker.open_runs(), 4, "one ended to make room, the new one opened");
    let run_spans = named(&out, "dashflow.run");
    assert_eq!(run_spans.len(), 1);
    let id = run_spans[0].attributes.iter().find(|kv| kv.key.as_str() == "dashflow.run.id").unwrap();
    assert_eq!(id.value.as_str(), runs[1].run_id.to_string());
    let outcome = run_spans[0].attributes.iter().find(|kv| kv.key.as_str() == "dashflow.run.outcome").unwrap();
    assert_eq!(outcome.value.as_str(), "unfinished");
    // The ended run's later events are ignored; the others go on.
    maker.push(&finished(runs[1], 30), &mut out);
    maker.push(&finished(runs[0], 31), &mut out);
    assert_eq!(named(&out, "dashflow.run").len(), 2);
}
