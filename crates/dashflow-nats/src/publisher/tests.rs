use std::sync::atomic::AtomicUsize;

use super::*;

#[test]
fn past_the_run_bound_the_runs_used_least_recently_are_forgotten() {
    let mut runs = HashMap::new();
    let ids: Vec<RunId> = (0..4).map(|_| RunId::new()).collect();
    for (n, id) in ids.iter().enumerate() {
        run_state(&mut runs, ("p", 4), *id, n as u64 + 1).seq = 7;
    }
    // The first run is used again: the second is now the least recent.
    run_state(&mut runs, ("p", 4), ids[0], 5);
    let fifth = RunId::new();
    assert_eq!(run_state(&mut runs, ("p", 4), fifth, 6).seq, 0);
    assert_eq!(runs.len(), 4);
    assert!(!runs.contains_key(&ids[1]), "the least recently used run is forgotten");
    assert!(ids.iter().filter(|id| **id != ids[1]).all(|id| runs[id].seq == 7), "the others keep their numbers");
}

#[test]
fn the_queue_counts_events_and_refuses_a_hand_over_past_its_capacity() {
    let queued = AtomicUsize::new(0);
    assert!(take_room(&queued, 60, 100));
    assert!(!take_room(&queued, 41, 100), "60 + 41 events would pass 100");
    assert_eq!(queued.load(Ordering::Relaxed), 60, "a refused hand-over counts nothing");
    assert!(take_room(&queued, 40, 100));
    assert!(!take_room(&queued, 1, 100));
    assert!(!take_room(&AtomicUsize::new(0), 101, 100), "a hand-over larger than the queue");
}

/// How the publisher's thread is woken, against the machine's server
/// (`DASHFLOW_TEST_NATS_URL`; without it these print a skip line, which
/// `DASHFLOW_TEST_NATS_REQUIRED=1` turns into a failure).
mod wake {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use std::time::Duration;

    use dashflow_telemetry::__private::Waits;
    use dashflow_telemetry::{Event, EventCallback, EventKind, RunId, RunIds, RunOutcome};
    use futures::StreamExt;

    use crate::{Follow, NatsConsumer, NatsSink};

    const AN_HOUR: Duration = Duration::from_secs(3600);

    pub(super) fn server_url(test: &str) -> Option<String> {
        match std::env::var("DASHFLOW_TEST_NATS_URL") {
            Ok(url) if !url.trim().is_empty() => Some(url),
            _ => {
                let required = std::env::var("DASHFLOW_TEST_NATS_REQUIRED").is_ok_and(|value| value.trim() == "1");
                assert!(!required, "{test}: DASHFLOW_TEST_NATS_REQUIRED=1 but DASHFLOW_TEST_NATS_URL is not set");
                eprintln!("skipped {test}: DASHFLOW_TEST_NATS_URL is not set (a NATS server with JetStream)");
                None
            }
        }
    }

    /// A run's start and end.
    fn a_run() -> [Event; 2] {
        let run = RunIds::root(RunId::new());
        let started = EventKind::RunStarted { graph: "g".into(), thread_id: None, tags: Vec::new() };
        let finished =
            EventKind::RunFinished { outcome: RunOutcome::Completed, steps: 0, duration: Duration::ZERO, error: None };
        [Event::now(run, started), Event::now(run, finished)]
    }

    /// Starts a sink on a stream of its own that waits as `waits` says, with a queue of
    /// `capacity` events; runs `test` with it; reads the stream's first `expect` events
    /// (failing after 30 s without them) and deletes the stream.
    fn with_sink(test: &str, waits: Waits, capacity: usize, expect: usize, body: impl FnOnce(&NatsSink)) {
        let Some(url) = server_url(test) else { return };
        let id = ulid::Ulid::new().to_string();
        let (stream, prefix) = (format!("DFTEST_WAKE_{id}"), format!("dftest.wake.{}", id.to_lowercase()));
        let mut builder = NatsSink::builder(&url).stream(&stream).subject_prefix(&prefix).capacity(capacity);
        builder.waits = waits;
        let (sink, guard) = builder.start().unwrap();
        body(&sink);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let consumer = NatsConsumer::connect_to(&url, &stream, &prefix).await.unwrap();
            let mut events = consumer.follow(Follow::all()).await.unwrap();
            for n in 0..expect {
                let next = tokio::time::timeout(Duration::from_secs(30), events.next()).await;
                assert!(matches!(next, Ok(Some(Ok(_)))), "{test}: event {n} of {expect} did not arrive: {next:?}");
            }
        });
        assert_eq!(sink.stats().dropped, 0);
        drop(guard);
        runtime.block_on(async {
            let client = async_nats::connect(&url).await.unwrap();
            async_nats::jetstream::new(client).delete_stream(&stream).await.unwrap();
        });
    }

    #[test]
    fn a_hand_over_wakes_a_publisher_sleeping_on_its_queue() {
        // Idle at once: the publisher awaits the queue whenever it finds it empty.
        let waits = Waits { first: AN_HOUR, longest: AN_HOUR, sleep_after: Duration::ZERO };
        with_sink("a_hand_over_wakes_a_publisher_sleeping_on_its_queue", waits, 64, 2, |sink| {
            a_run().into_iter().for_each(|event| sink.take_event(event));
        });
    }

    #[test]
    fn a_pausing_publisher_is_woken_by_a_hand_over_once_a_quarter_of_its_queue_is_taken() {
        // A quarter of a queue of two events is nothing: every hand-over finds it passed.
        let waits = Waits { first: AN_HOUR, longest: AN_HOUR, sleep_after: AN_HOUR };
        let test = "a_pausing_publisher_is_woken_by_a_hand_over_once_a_quarter_of_its_queue_is_taken";
        with_sink(test, waits, 2, 2, |sink| {
            a_run().into_iter().for_each(|event| sink.take_event(event));
        });
    }

    #[test]
    fn a_flush_ends_a_publishers_pause() {
        let waits = Waits { first: AN_HOUR, longest: AN_HOUR, sleep_after: AN_HOUR };
        with_sink("a_flush_ends_a_publishers_pause", waits, 64, 2, |sink| {
            a_run().into_iter().for_each(|event| sink.take_event(event));
            sink.flush(Duration::from_secs(20)).unwrap();
            assert_eq!(sink.stats().acknowledged, 2);
        });
    }
}

/// The nice value of thread `tid` of this process, or of the calling thread (`None`).
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
fn the_publishers_thread_runs_ten_steps_nicer_than_its_starter_unless_told_otherwise() {
    let test = "the_publishers_thread_runs_ten_steps_nicer_than_its_starter_unless_told_otherwise";
    let Some(url) = wake::server_url(test) else { return };
    let starter = niceness(None);
    let started_at = |builder: NatsBuilder| {
        let (sink, guard) = builder.start().unwrap();
        let nice = niceness(Some(sink.shared.thread_id));
        drop(guard);
        nice
    };
    assert_eq!(started_at(NatsSink::builder(&url)), (starter + 10).min(19));
    assert_eq!(started_at(NatsSink::builder(&url).nicer_by(3)), (starter + 3).min(19));
    assert_eq!(started_at(NatsSink::builder(&url).niceness(19).nicer_by(0)), starter);
    assert_eq!(started_at(NatsSink::builder(&url).nicer_by(0).niceness(19)), 19);
}

#[test]
fn a_niceness_linux_does_not_take_is_a_typed_error_naming_it() {
    // Refused before connecting: nothing listens on port 1.
    let error = NatsSink::builder("nats://127.0.0.1:1").niceness(-21).start().unwrap_err();
    assert!(matches!(error, Error::Niceness { requested: -21, .. }), "{error:?}");
    let report = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(report.contains("niceness -21") && report.contains("-20 to 19"), "{report}");
}
