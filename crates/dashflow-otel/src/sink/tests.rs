#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::mpsc;
use std::time::Duration;

use dashflow_telemetry::__private::Waits;
use dashflow_telemetry::{Event, EventCallback, EventKind, RunId, RunIds, RunOutcome};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use super::OtelBuilder;

/// Hands every exported batch to the test.
#[derive(Debug)]
struct Collect(mpsc::Sender<Vec<SpanData>>);

impl SpanExporter for Collect {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let _ = self.0.send(batch);
        Ok(())
    }
}

/// A run's start and end: its span is ready once the end is taken.
fn a_run() -> [Event; 2] {
    let run = RunIds::root(RunId::new());
    let started = EventKind::RunStarted { graph: "g".into(), thread_id: None, tags: Vec::new() };
    let finished =
        EventKind::RunFinished { outcome: RunOutcome::Completed, steps: 0, duration: Duration::ZERO, error: None };
    [Event::now(run, started), Event::now(run, finished)]
}

/// An exporter that waits as `waits` says, with a queue of `capacity` hand-overs, exporting
/// a span as soon as it is ready; and what it exports.
fn start(waits: Waits, capacity: usize) -> (super::OtelSink, super::OtelGuard, mpsc::Receiver<Vec<SpanData>>) {
    let (spans, exported) = mpsc::channel();
    let builder = OtelBuilder { waits, ..OtelBuilder::default() }.capacity(capacity).export_interval(Duration::ZERO);
    let (sink, guard) = builder.start_with_exporter(move || Ok(Collect(spans))).unwrap();
    (sink, guard, exported)
}

fn run_span(exported: &mpsc::Receiver<Vec<SpanData>>) -> SpanData {
    let batch = exported.recv_timeout(Duration::from_secs(20)).expect("no span was exported within 20 s");
    batch.into_iter().find(|span| span.name == "dashflow.run").unwrap()
}

const AN_HOUR: Duration = Duration::from_secs(3600);

#[test]
fn a_hand_over_wakes_an_exporter_sleeping_on_its_queue() {
    // Idle at once: the thread sleeps on the queue whenever it finds it empty.
    let waits = Waits { first: AN_HOUR, longest: AN_HOUR, sleep_after: Duration::ZERO };
    let (sink, guard, exported) = start(waits, 64);
    for event in a_run() {
        sink.take_event(event);
    }
    run_span(&exported);
    drop(guard);
}

#[test]
fn a_pausing_exporter_is_woken_by_a_hand_over_once_a_quarter_of_its_queue_is_taken() {
    // A quarter of a queue of two is nothing: every hand-over finds the queue past it.
    let waits = Waits { first: AN_HOUR, longest: AN_HOUR, sleep_after: AN_HOUR };
    let (sink, guard, exported) = start(waits, 2);
    for event in a_run() {
        sink.take_event(event);
    }
    run_span(&exported);
    assert_eq!(sink.stats().dropped, 0);
    drop(guard);
}

#[test]
fn a_flush_ends_a_pause_and_exports_what_it_held() {
    let waits = Waits { first: AN_HOUR, longest: AN_HOUR, sleep_after: AN_HOUR };
    let (sink, guard, exported) = start(waits, 64);
    for event in a_run() {
        sink.take_event(event);
    }
    sink.flush(Duration::from_secs(20)).unwrap();
    run_span(&exported);
    drop(guard);
}

#[test]
fn the_sink_asks_for_no_event_a_step_records_whole() {
    let waits = Waits::default();
    let (sink, guard, _exported) = start(waits, 64);
    let interest = sink.interest();
    // Step ends, task starts and custom values would each be a whole event per step; step
    // starts, task ends and routing decisions of a one-task step are recorded compactly.
    assert!(!interest.steps_finished && !interest.tasks_started && !interest.custom, "{interest:?}");
    assert!(interest.steps_started && interest.tasks_finished && interest.routing && interest.runs);
    assert!(!interest.deltas);
    drop(guard);
}

/// The nice value of thread `tid` of this process (`task`), or of the calling thread (`None`).
#[cfg(target_os = "linux")]
fn niceness(tid: Option<i32>) -> i32 {
    let path = tid.map_or_else(|| "/proc/thread-self/stat".to_owned(), |tid| format!("/proc/self/task/{tid}/stat"));
    let stat = std::fs::read_to_string(&path).unwrap();
    // `tid (comm) state ...`: the nice value is the 19th field, the 17th after the comm.
    let after_comm = &stat[stat.rfind(')').unwrap() + 1..];
    after_comm.split_whitespace().nth(16).unwrap().parse().unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn the_exporters_thread_runs_ten_steps_nicer_than_its_starter_unless_told_otherwise() {
    let starter = niceness(None);
    let started_at = |builder: OtelBuilder| {
        let (sink, guard) = builder.start_with_exporter(|| Ok(Collect(mpsc::channel().0))).unwrap();
        let nice = niceness(Some(sink.shared.thread_id));
        drop(guard);
        nice
    };
    assert_eq!(started_at(OtelBuilder::default()), (starter + 10).min(19));
    assert_eq!(started_at(OtelBuilder::default().nicer_by(3)), (starter + 3).min(19));
    assert_eq!(started_at(OtelBuilder::default().niceness(19).nicer_by(0)), starter);
    assert_eq!(started_at(OtelBuilder::default().nicer_by(0).niceness(19)), 19);
}

#[test]
fn a_niceness_linux_does_not_take_is_a_typed_error_naming_it() {
    let error = OtelBuilder::default().niceness(20).start_with_exporter(|| Ok(Collect(mpsc::channel().0))).unwrap_err();
    assert!(matches!(error, crate::Error::Niceness { requested: 20, .. }), "{error:?}");
    let report = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(report.contains("niceness 20") && report.contains("-20 to 19"), "{report}");
}
