use std::sync::Arc;
use std::time::Duration;

use super::*;

fn event(run: RunIds, kind: EventKind) -> Event {
    Event::now(run, kind)
}

#[test]
fn live_runs_follow_a_run_from_start_to_finish() {
    let live = LiveRuns::new();
    let run = RunIds::root(RunId::new());
    let node: Arc<str> = Arc::from("fetch");
    live.on_event(&event(
        run,
        EventKind::RunStarted { graph: "g".into(), thread_id: Some("t".into()), tags: Vec::new() },
    ));
    live.on_event(&event(run, EventKind::SuperstepStarted { step: 3, nodes: Arc::from([Arc::clone(&node)]) }));
    let snapshot = live.snapshot();
    assert_eq!(snapshot.len(), 1);
    assert_eq!((snapshot[0].step, snapshot[0].running.to_vec()), (3, vec![node]));
    assert_eq!(snapshot[0].thread_id.as_deref(), Some("t"));
    live.on_event(&event(run, EventKind::SuperstepStarted { step: 4, nodes: Arc::from([]) }));
    assert!(live.snapshot()[0].running.is_empty());
    let end =
        EventKind::RunFinished { outcome: RunOutcome::Completed, steps: 3, duration: Duration::ZERO, error: None };
    live.on_event(&event(run, end));
    assert!(live.snapshot().is_empty());
}

fn finished(step: u64, node: &str) -> EventKind {
    EventKind::TaskFinished { step, node: node.into(), attempt: 1, duration: Duration::ZERO, error: None }
}

fn running(live: &LiveRuns) -> Vec<(u64, Vec<String>)> {
    live.snapshot().iter().map(|run| (run.step, run.running.iter().map(|node| node.to_string()).collect())).collect()
}

#[test]
fn live_runs_read_batches_where_one_task_steps_show_only_as_their_task_ends() {
    let live = LiveRuns::new();
    let (run, other) = (RunIds::root(RunId::new()), RunIds::root(RunId::new()));
    let start = |run| event(run, EventKind::RunStarted { graph: "g".into(), thread_id: None, tags: Vec::new() });
    let routed = EventKind::Routed { step: 2, from: "b".into(), label: "again".into(), target: "a".into() };
    live.on_batch(&EventBatch::from_events(vec![
        start(run),
        event(run, finished(1, "a")),
        start(other),
        event(run, finished(2, "b")),
        event(other, EventKind::SuperstepStarted { step: 1, nodes: Arc::from([Arc::from("x"), Arc::from("y")]) }),
        event(run, routed),
    ]));
    let mut now = running(&live);
    now.sort();
    assert_eq!(now, [(1, vec!["x".to_owned(), "y".to_owned()]), (2, vec!["b".to_owned()])]);

    // An end of a step already known (its start came one by one, or in an earlier batch)
    // changes nothing.
    let other_only = LiveRuns::new();
    other_only.on_batch(&EventBatch::from_events(vec![
        start(other),
        event(other, EventKind::SuperstepStarted { step: 1, nodes: Arc::from([Arc::from("x"), Arc::from("y")]) }),
    ]));
    other_only.on_batch(&EventBatch::from_events(vec![event(other, finished(1, "x"))]));
    assert_eq!(running(&other_only), [(1, vec!["x".to_owned(), "y".to_owned()])]);
}

#[test]
fn metrics_callback_counts_runs_and_tasks_per_graph_and_node() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let sink = MetricsCallback::new();
        let run = RunIds::root(RunId::new());
        sink.on_event(&event(run, EventKind::RunStarted { graph: "triage".into(), thread_id: None, tags: Vec::new() }));
        for error in [None, Some("boom".to_owned())] {
            let kind =
                EventKind::TaskFinished { step: 1, node: "fetch".into(), attempt: 1, duration: Duration::ZERO, error };
            sink.on_event(&event(run, kind));
        }
        let end =
            EventKind::RunFinished { outcome: RunOutcome::Failed, steps: 1, duration: Duration::ZERO, error: None };
        sink.on_event(&event(run, end));
    });
    type Counter = (String, Vec<(String, String)>, u64);
    let counters: Vec<Counter> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(count) => {
                let labels = key.key().labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
                Some((key.key().name().to_owned(), labels, count))
            }
            _ => None,
        })
        .collect();
    let tasks: Vec<_> = counters.iter().filter(|(name, _, _)| name == "dashflow_tasks_total").collect();
    assert_eq!(tasks.len(), 2, "{counters:?}");
    for (_, labels, count) in tasks {
        assert_eq!(*count, 1);
        assert!(labels.contains(&("graph".into(), "triage".into())));
        assert!(labels.contains(&("node".into(), "fetch".into())));
    }
    let finished = counters.iter().find(|(name, _, _)| name == "dashflow_runs_finished_total").unwrap();
    assert!(finished.1.contains(&("outcome".into(), "failed".into())));
}
