//! The publisher and the consumer against real NATS servers: the machine's (its URL in
//! `DASHFLOW_TEST_NATS_URL`) and, for restarts, private ones this test starts on ports and
//! store directories of their own. Without the URL (or the `nats-server` binary) the trials
//! print a skip line, which `DASHFLOW_TEST_NATS_REQUIRED=1` turns into a failure.
//!
//! Its own harness (libtest-mimic) because one trial runs this binary again as a second
//! publishing process (`--publisher-child`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, reason = "tests")]

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashflow_executor::{CompiledGraph, RunConfig};
use dashflow_graph::{END, GraphState, NodeError, START, StateGraph};
use dashflow_nats::{DEFAULT_INTEREST, Follow, Item, NatsConsumer, NatsSink, Received, StartAt};
use dashflow_telemetry::{DeltaKind, Event, EventCallback, EventKind, Interest, RunId};
use futures::StreamExt;
use libtest_mimic::{Arguments, Failed, Trial};
use serde::{Deserialize, Serialize};

const URL_VAR: &str = "DASHFLOW_TEST_NATS_URL";
const REQUIRED_VAR: &str = "DASHFLOW_TEST_NATS_REQUIRED";
const CHILD_FLAG: &str = "--publisher-child";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(CHILD_FLAG) {
        publisher_child(&args[2], &args[3], &args[4]);
        return;
    }
    let trials = vec![
        trial(
            "concurrent_runs_arrive_complete_and_in_order_per_run",
            concurrent_runs_arrive_complete_and_in_order_per_run,
        ),
        trial(
            "a_consumer_starting_late_replays_from_the_start_or_a_chosen_point",
            a_consumer_starting_late_replays_from_the_start_or_a_chosen_point,
        ),
        trial("two_publishing_processes_are_told_apart", two_publishing_processes_are_told_apart),
        trial(
            "a_server_restarted_mid_run_loses_nothing_acknowledged_and_the_run_never_waits",
            a_server_restarted_mid_run_loses_nothing_acknowledged_and_the_run_never_waits,
        ),
        trial(
            "with_the_server_away_a_full_queue_drops_and_counts_and_runs_finish",
            with_the_server_away_a_full_queue_drops_and_counts_and_runs_finish,
        ),
        trial(
            "an_unreachable_server_is_a_typed_error_naming_the_url",
            an_unreachable_server_is_a_typed_error_naming_the_url,
        ),
        trial(
            "a_sink_started_and_dropped_inside_async_code_publishes",
            a_sink_started_and_dropped_inside_async_code_publishes,
        ),
        trial(
            "a_consumer_rebuilds_a_threads_state_from_the_deltas_alone",
            a_consumer_rebuilds_a_threads_state_from_the_deltas_alone,
        ),
        trial(
            "a_state_that_cannot_be_written_as_json_fails_no_run_and_is_counted",
            a_state_that_cannot_be_written_as_json_fails_no_run_and_is_counted,
        ),
        trial(
            "messages_stored_out_of_order_come_in_seq_order_and_a_missing_one_as_a_gap",
            messages_stored_out_of_order_come_in_seq_order_and_a_missing_one_as_a_gap,
        ),
    ];
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}

fn trial(name: &'static str, test: fn() -> Result<(), Failed>) -> Trial {
    Trial::test(name, test)
}

fn required() -> bool {
    std::env::var(REQUIRED_VAR).is_ok_and(|value| value.trim() == "1")
}

/// The machine's server, or `None` after a skip line (a failure when required).
fn server_url(test: &str) -> Result<Option<String>, Failed> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Ok(Some(url)),
        _ if required() => {
            Err(format!("{test}: {REQUIRED_VAR}=1 but {URL_VAR} is not set; set it to a NATS URL with JetStream")
                .into())
        }
        _ => {
            eprintln!(
                "skipped {test}: {URL_VAR} is not set (set it to a NATS server with JetStream, nats://127.0.0.1:4222)"
            );
            Ok(None)
        }
    }
}

/// A stream and subject prefix no other test uses.
fn unique_stream(test: &str) -> (String, String) {
    let id = ulid::Ulid::new().to_string().to_lowercase();
    (format!("DFTEST_{}", id.to_uppercase()), format!("dftest.{}.{id}", &test[..test.len().min(12)]))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Job {
    #[reduce(append)]
    log: Vec<String>,
}

type Ready = std::future::Ready<Result<JobUpdate, NodeError>>;

fn node(name: &'static str) -> impl Fn(Arc<Job>) -> Ready + Send + Sync + 'static {
    move |_| std::future::ready(Ok(JobUpdate::default().log(vec![name.to_owned()])))
}

/// fetch, then check and score in parallel, then report: four supersteps' worth of events.
fn job_graph(name: &str) -> CompiledGraph<Job> {
    let mut graph = StateGraph::<Job>::named(name);
    graph
        .add_node("fetch", node("fetch"))
        .add_node("check", node("check"))
        .add_node("score", node("score"))
        .add_node("report", node("report"))
        .add_edge(START, "fetch")
        .add_parallel_edges("fetch", ["check", "score"])
        .add_join(["check", "score"], "report")
        .add_edge("report", END);
    CompiledGraph::new(graph.build().unwrap())
}

/// Every event the sink is interested in, as the runs emitted them, per run.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<BTreeMap<RunId, Vec<EventKind>>>>);

impl EventCallback for Recorder {
    fn on_event(&self, event: &Event) {
        self.0.lock().unwrap().entry(event.run.run_id).or_default().push(event.kind.clone());
    }

    fn interest(&self) -> Interest {
        DEFAULT_INTEREST
    }
}

impl Recorder {
    fn runs(&self) -> BTreeMap<RunId, Vec<EventKind>> {
        self.0.lock().unwrap().clone()
    }

    fn total(&self) -> usize {
        self.0.lock().unwrap().values().map(Vec::len).sum()
    }
}

/// Reads `count` events from the start of the stream, failing after 30 s.
async fn read(url: &str, stream: &str, prefix: &str, follow: Follow, count: usize) -> Result<Vec<Received>, Failed> {
    let consumer = NatsConsumer::connect_to(url, stream, prefix).await?;
    let mut events = consumer.follow(follow).await?;
    let mut received = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        while received.len() < count {
            match events.next().await {
                Some(event) => received.push(event?),
                None => break,
            }
        }
        Ok::<_, dashflow_nats::Error>(())
    })
    .await;
    match outcome {
        Ok(result) => result?,
        Err(_) => return Err(format!("only {} of {count} events arrived within 30 s", received.len()).into()),
    }
    Ok(received)
}

/// Groups received events by run, in stream order.
fn by_run(received: &[Received]) -> BTreeMap<RunId, Vec<&Received>> {
    let mut runs: BTreeMap<RunId, Vec<&Received>> = BTreeMap::new();
    for event in received {
        runs.entry(event.run.run_id).or_default().push(event);
    }
    runs
}

/// How many messages the stream holds.
async fn stored(url: &str, stream: &str) -> Result<u64, Failed> {
    let client = async_nats::connect(url).await?;
    let mut stream = async_nats::jetstream::new(client).get_stream(stream).await?;
    Ok(stream.info().await?.state.messages)
}

/// Deletes a test's stream from the machine's server, so that runs of the suite leave none.
async fn delete_stream(url: &str, stream: &str) -> Result<(), Failed> {
    let client = async_nats::connect(url).await?;
    async_nats::jetstream::new(client).delete_stream(stream).await?;
    Ok(())
}

/// Flushes off the runtime (a flush blocks).
fn flush(sink: &NatsSink) -> Result<(), Failed> {
    sink.flush(Duration::from_secs(30)).map_err(|error| format!("flush: {error}").into())
}

fn concurrent_runs_arrive_complete_and_in_order_per_run() -> Result<(), Failed> {
    let Some(url) = server_url("concurrent_runs_arrive_complete_and_in_order_per_run")? else { return Ok(()) };
    let (stream, prefix) = unique_stream("concurrent");
    let (sink, guard) = NatsSink::builder(&url).stream(&stream).subject_prefix(&prefix).start()?;
    let recorder = Recorder::default();
    let app = job_graph("jobs").with_callback(sink.clone()).with_callback(recorder.clone());
    let rt = runtime();
    rt.block_on(async {
        let runs = (0..40).map(|n| {
            let app = app.clone();
            tokio::spawn(async move { app.invoke(Job::default(), RunConfig::thread(format!("job-{n}"))).await })
        });
        for run in futures::future::join_all(runs).await {
            run.unwrap().unwrap();
        }
    });
    flush(&sink)?;
    let expected = recorder.runs();
    let received = rt.block_on(read(&url, &stream, &prefix, Follow::all(), recorder.total()))?;
    let got = by_run(&received);
    assert_eq!(got.len(), 40);
    for (run, kinds) in &expected {
        let events = &got[run];
        let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
        assert_eq!(seqs, (1..=kinds.len() as u64).collect::<Vec<_>>(), "run {run}: in order, none missing");
        let got_kinds: Vec<&EventKind> = events.iter().map(|event| &event.event().unwrap().kind).collect();
        assert_eq!(got_kinds, kinds.iter().collect::<Vec<_>>(), "run {run}");
        assert!(events.iter().all(|event| &*event.graph == "jobs" && event.publisher == *sink.publisher()));
    }
    assert_eq!(sink.stats().acknowledged, received.len() as u64);
    assert_eq!(sink.stats().dropped, 0);
    guard.shutdown(Duration::from_secs(10))?;
    rt.block_on(delete_stream(&url, &stream))?;
    Ok(())
}

fn a_consumer_starting_late_replays_from_the_start_or_a_chosen_point() -> Result<(), Failed> {
    let Some(url) = server_url("a_consumer_starting_late_replays_from_the_start_or_a_chosen_point")? else {
        return Ok(());
    };
    let (stream, prefix) = unique_stream("late");
    let (sink, guard) = NatsSink::builder(&url).stream(&stream).subject_prefix(&prefix).start()?;
    let recorder = Recorder::default();
    let app = job_graph("late").with_callback(sink.clone()).with_callback(recorder.clone());
    let rt = runtime();
    rt.block_on(async {
        for _ in 0..3 {
            app.invoke(Job::default(), RunConfig::new()).await.unwrap();
        }
    });
    flush(&sink)?;
    drop(guard);
    // The publisher is gone; a consumer that starts now still gets every event.
    let total = recorder.total();
    let all = rt.block_on(read(&url, &stream, &prefix, Follow::all().start_at(StartAt::Beginning), total))?;
    assert!(matches!(all[0].event().unwrap().kind, EventKind::GraphDefined { .. } | EventKind::RunStarted { .. }));
    assert_eq!(
        all.iter().map(|event| event.stream_sequence).collect::<Vec<_>>(),
        (1..=total as u64).collect::<Vec<_>>()
    );
    // From a point: the rest of the stream, from that message on.
    let from = all[total / 2].stream_sequence;
    let rest =
        rt.block_on(read(&url, &stream, &prefix, Follow::all().start_at(StartAt::Sequence(from)), total - total / 2))?;
    assert_eq!(rest.first().map(|event| event.stream_sequence), Some(from));
    assert_eq!(rest, all[total / 2..]);
    // One run only.
    let second = all
        .iter()
        .find_map(|e| matches!(e.event().unwrap().kind, EventKind::RunStarted { .. }).then_some(e.run.run_id))
        .unwrap();
    let expected = recorder.runs()[&second].len();
    let one = rt.block_on(read(&url, &stream, &prefix, Follow::all().graph("late").run(second), expected))?;
    assert!(one.iter().all(|event| event.run.run_id == second));
    rt.block_on(delete_stream(&url, &stream))?;
    Ok(())
}

/// The second process: publishes one run of `graph` to `stream`, then prints its publisher id.
fn publisher_child(url: &str, stream: &str, prefix: &str) {
    let (sink, guard) = NatsSink::builder(url).stream(stream).subject_prefix(prefix).start().unwrap();
    let app = job_graph("fleet").with_callback(sink.clone());
    runtime().block_on(app.invoke(Job::default(), RunConfig::new())).unwrap();
    sink.flush(Duration::from_secs(30)).unwrap();
    println!("{}", sink.publisher().id);
    guard.shutdown(Duration::from_secs(10)).unwrap();
}

fn two_publishing_processes_are_told_apart() -> Result<(), Failed> {
    let Some(url) = server_url("two_publishing_processes_are_told_apart")? else { return Ok(()) };
    let (stream, prefix) = unique_stream("fleet");
    let (sink, guard) = NatsSink::builder(&url).stream(&stream).subject_prefix(&prefix).start()?;
    let recorder = Recorder::default();
    let app = job_graph("fleet").with_callback(sink.clone()).with_callback(recorder.clone());
    runtime().block_on(app.invoke(Job::default(), RunConfig::new())).unwrap();
    flush(&sink)?;
    let child = Command::new(std::env::current_exe()?).args([CHILD_FLAG, &url, &stream, &prefix]).output()?;
    assert!(child.status.success(), "child: {}", String::from_utf8_lossy(&child.stderr));
    let child_id = String::from_utf8(child.stdout)?.trim().to_owned();
    let per_run = recorder.total();
    let received = runtime().block_on(read(&url, &stream, &prefix, Follow::all(), 2 * per_run))?;
    let publishers: HashSet<(&str, &str)> =
        received.iter().map(|event| (event.publisher.id.as_str(), event.publisher.name.as_str())).collect();
    assert_eq!(publishers.len(), 2, "{publishers:?}");
    let ours = sink.publisher();
    assert!(publishers.contains(&(ours.id.as_str(), ours.name.as_str())));
    let theirs = publishers.iter().find(|(id, _)| *id == child_id).expect("the child's id");
    assert_ne!(theirs.1, ours.name, "names carry the process id");
    // Each publisher's run is whole.
    for (run, events) in by_run(&received) {
        assert_eq!(events.len(), per_run, "run {run}");
        assert_eq!(events.iter().map(|event| &event.publisher.id).collect::<HashSet<_>>().len(), 1);
    }
    drop(guard);
    runtime().block_on(delete_stream(&url, &stream))?;
    Ok(())
}

/// A private nats-server with JetStream, on its own port and store directory.
struct PrivateServer {
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateServer {
    /// `None` after a skip line when there is no `nats-server` binary (a failure when required).
    fn start(test: &str) -> Result<Option<Self>, Failed> {
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.exists());
        let Some(binary) = binary else {
            if required() {
                return Err(format!("{test}: {REQUIRED_VAR}=1 but no nats-server binary is installed").into());
            }
            eprintln!("skipped {test}: no nats-server binary (install Debian's nats-server to run it)");
            return Ok(None);
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = Self { binary, port, dir: tempfile::tempdir()?, child: None };
        server.up()?;
        Ok(Some(server))
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits (at most 20 s) for its "ready" line.
    fn up(&mut self) -> Result<(), Failed> {
        let mut child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().unwrap();
        let (ready, is_ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server is ready") {
                    let _ = ready.send(());
                }
            }
        });
        self.child = Some(child);
        is_ready
            .recv_timeout(Duration::from_secs(20))
            .map_err(|_| Failed::from("nats-server did not become ready within 20 s"))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    #[allow(dead_code, reason = "the store directory, for debugging a failure")]
    fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A graph whose `gate` node waits until the test opens it, telling the test it has started.
fn gated_graph(entered: tokio::sync::mpsc::UnboundedSender<()>, gate: Arc<tokio::sync::Notify>) -> CompiledGraph<Job> {
    let mut graph = StateGraph::<Job>::named("gated");
    graph
        .add_node("first", node("first"))
        .add_node("gate", move |_: Arc<Job>| {
            let entered = entered.clone();
            let gate = Arc::clone(&gate);
            async move {
                let _ = entered.send(());
                gate.notified().await;
                Ok(JobUpdate::default().log(vec!["gate".to_owned()]))
            }
        })
        .add_node("last", node("last"))
        .add_edge(START, "first")
        .add_edge("first", "gate")
        .add_edge("gate", "last")
        .add_edge("last", END);
    CompiledGraph::new(graph.build().unwrap())
}

fn a_server_restarted_mid_run_loses_nothing_acknowledged_and_the_run_never_waits() -> Result<(), Failed> {
    let test = "a_server_restarted_mid_run_loses_nothing_acknowledged_and_the_run_never_waits";
    let Some(mut server) = PrivateServer::start(test)? else { return Ok(()) };
    let url = server.url();
    let (stream, prefix) = unique_stream("restart");
    let (sink, guard) =
        NatsSink::builder(&url).stream(&stream).subject_prefix(&prefix).ack_timeout(Duration::from_secs(1)).start()?;
    let recorder = Recorder::default();
    let (entered, mut has_entered) = tokio::sync::mpsc::unbounded_channel();
    let gate = Arc::new(tokio::sync::Notify::new());
    let app = gated_graph(entered, Arc::clone(&gate)).with_callback(sink.clone()).with_callback(recorder.clone());
    let rt = runtime();
    let run = rt.spawn({
        let app = app.clone();
        async move { app.invoke(Job::default(), RunConfig::new()).await }
    });
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), has_entered.recv()).await })?.unwrap();
    // The run hands its first events over when the gate makes it wait, just after telling
    // us it entered: flush until they are acknowledged (each flush is a round trip to the
    // publisher's thread), for at most 20 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sink.stats().acknowledged == 0 {
        assert!(std::time::Instant::now() < deadline, "the run's first events were never acknowledged");
        flush(&sink)?;
    }

    server.kill();
    // The server is gone: the run goes on and finishes (bounded: a run waiting on the stream
    // would time out here), and so do new runs.
    gate.notify_one();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("the run finished with the server away")
            .unwrap()
            .unwrap();
        for _ in 0..5 {
            let other = app.clone();
            let opened = Arc::clone(&gate);
            let finished = tokio::spawn(async move { other.invoke(Job::default(), RunConfig::new()).await });
            has_entered.recv().await.unwrap();
            opened.notify_one();
            tokio::time::timeout(Duration::from_secs(20), finished).await.expect("finished").unwrap().unwrap();
        }
    });

    server.up()?;
    flush(&sink)?;
    let stats = sink.stats();
    assert_eq!((stats.dropped, stats.lost), (0, 0), "{stats:?}");
    let total = recorder.total();
    let received = rt.block_on(read(&url, &stream, &prefix, Follow::all(), total))?;
    assert_eq!(received.len(), total);
    for (run, kinds) in recorder.runs() {
        let events = &by_run(&received)[&run];
        let mut seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=kinds.len() as u64).collect::<Vec<_>>(), "run {run}: every event once");
    }
    // Each event is stored once, re-sent ones included.
    assert_eq!(rt.block_on(stored(&url, &stream))?, total as u64);
    drop(guard);
    Ok(())
}

fn with_the_server_away_a_full_queue_drops_and_counts_and_runs_finish() -> Result<(), Failed> {
    let test = "with_the_server_away_a_full_queue_drops_and_counts_and_runs_finish";
    let Some(mut server) = PrivateServer::start(test)? else { return Ok(()) };
    let url = server.url();
    let (stream, prefix) = unique_stream("drops");
    let (sink, guard) = NatsSink::builder(&url)
        .stream(&stream)
        .subject_prefix(&prefix)
        // Events: a few hand-overs' worth.
        .capacity(64)
        .pending_limit(4)
        .ack_timeout(Duration::from_secs(1))
        .start()?;
    let recorder = Recorder::default();
    let app = job_graph("drops").with_callback(sink.clone()).with_callback(recorder.clone());
    server.kill();
    let rt = runtime();
    rt.block_on(async {
        for _ in 0..50 {
            tokio::time::timeout(Duration::from_secs(20), app.invoke(Job::default(), RunConfig::new()))
                .await
                .expect("a run never waits for the stream")
                .unwrap();
        }
    });
    assert!(sink.stats().dropped > 0, "{:?}", sink.stats());
    server.up()?;
    flush(&sink)?;
    let stats = sink.stats();
    assert!(stats.acknowledged > 0 && stats.lost == 0, "{stats:?}");
    let received = rt.block_on(read(&url, &stream, &prefix, Follow::all(), stats.acknowledged as usize))?;
    // Whatever was kept arrived once: the stream holds exactly what was acknowledged.
    let distinct: HashSet<(RunId, u64)> = received.iter().map(|event| (event.run.run_id, event.seq)).collect();
    assert_eq!(distinct.len(), received.len());
    assert_eq!(rt.block_on(stored(&url, &stream))?, stats.acknowledged);
    assert!(received.len() < recorder.total());
    drop(guard);
    Ok(())
}

fn an_unreachable_server_is_a_typed_error_naming_the_url() -> Result<(), Failed> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("nats://127.0.0.1:{port}");
    let error = NatsSink::builder(&url).start().unwrap_err();
    assert!(matches!(error, dashflow_nats::Error::Connect { .. }), "{error}");
    assert!(error.to_string().contains(&url), "{error}");
    let error = NatsSink::builder(&url).subject_prefix("bad.>").start().unwrap_err();
    assert!(error.to_string().contains("subject prefix"), "{error}");
    Ok(())
}

fn a_sink_started_and_dropped_inside_async_code_publishes() -> Result<(), Failed> {
    let Some(url) = server_url("a_sink_started_and_dropped_inside_async_code_publishes")? else { return Ok(()) };
    let (stream, prefix) = unique_stream("async");
    let recorder = Recorder::default();
    let rt = runtime();
    let stats = rt.block_on(async {
        let (sink, guard) = NatsSink::builder(&url).stream(&stream).subject_prefix(&prefix).start()?;
        let app = job_graph("inside").with_callback(sink.clone()).with_callback(recorder.clone());
        app.invoke(Job::default(), RunConfig::new()).await.unwrap();
        // Dropping the guard in async code publishes what is left and stops the thread.
        drop(guard);
        Ok::<_, Failed>(sink.stats())
    })?;
    assert_eq!(stats.acknowledged, recorder.total() as u64, "{stats:?}");
    let received = rt.block_on(read(&url, &stream, &prefix, Follow::all(), recorder.total()))?;
    assert_eq!(received.len(), recorder.total());
    rt.block_on(delete_stream(&url, &stream))?;
    Ok(())
}

/// A thread's state with a reducer of each common kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Ledger {
    #[reduce(append)]
    log: Vec<String>,
    #[reduce(add)]
    total: u64,
    note: String,
}

type LedgerReady = std::future::Ready<Result<LedgerUpdate, NodeError>>;

fn entry(name: &'static str, amount: u64) -> impl Fn(Arc<Ledger>) -> LedgerReady + Send + Sync + 'static {
    move |_| std::future::ready(Ok(LedgerUpdate::default().log(vec![name.to_owned()]).total(amount)))
}

fn a_consumer_rebuilds_a_threads_state_from_the_deltas_alone() -> Result<(), Failed> {
    let Some(url) = server_url("a_consumer_rebuilds_a_threads_state_from_the_deltas_alone")? else { return Ok(()) };
    let (stream, prefix) = unique_stream("deltas");
    let (sink, guard) = NatsSink::builder(&url).stream(&stream).subject_prefix(&prefix).state_deltas().start()?;
    // open -> (debit, credit) in parallel -> close, paused before `close`: two runs of one
    // thread, the second resuming from a checkpoint.
    let mut graph = StateGraph::<Ledger>::named("ledger");
    graph
        .add_node("open", |_: Arc<Ledger>| {
            std::future::ready(Ok::<_, NodeError>(LedgerUpdate::default().note("opened".to_owned())))
        })
        .add_node("debit", entry("debit", 5))
        .add_node("credit", entry("credit", 7))
        .add_node("close", entry("close", 100))
        .add_edge(START, "open")
        .add_parallel_edges("open", ["debit", "credit"])
        .add_join(["debit", "credit"], "close")
        .add_edge("close", END);
    let app = CompiledGraph::new(graph.build().unwrap())
        .with_checkpointer(dashflow_checkpoint_memory::MemoryCheckpointer::new())
        .interrupt_before(["close"])
        .unwrap()
        .with_callback(sink.clone());
    let config = RunConfig::thread("ledger-1");
    let rt = runtime();
    let input = Ledger { log: vec!["input".into()], ..Ledger::default() };
    let expected = rt.block_on(async {
        app.invoke(input, config.clone()).await.unwrap();
        app.resume(dashflow_graph::Command::new(), config.clone()).await.unwrap();
        app.get_state(&config).await.unwrap().unwrap().state
    });
    assert_eq!(expected.total, 112, "the run went through every node");
    flush(&sink)?;
    let total = sink.stats().acknowledged as usize;

    // From the stream alone: which runs belong to the thread, then their deltas in order.
    let received = rt.block_on(read(&url, &stream, &prefix, Follow::all().state_deltas(), total))?;
    let mut thread_runs = HashSet::new();
    let mut state: Option<Ledger> = None;
    let mut kinds = Vec::new();
    for message in &received {
        match &message.item {
            Item::Event(Event { kind: EventKind::RunStarted { thread_id: Some(thread), .. }, .. })
                if &**thread == "ledger-1" =>
            {
                thread_runs.insert(message.run.run_id);
            }
            Item::Delta(delta) if thread_runs.contains(&message.run.run_id) => {
                kinds.push((delta.kind, delta.step));
                match delta.kind {
                    DeltaKind::Snapshot => state = Some(delta.decode()?),
                    _ => state.as_mut().ok_or("an update before any snapshot")?.apply(delta.decode()?),
                }
            }
            _ => {}
        }
    }
    assert_eq!(thread_runs.len(), 2);
    assert_eq!(
        kinds,
        [
            (DeltaKind::Snapshot, 0),
            (DeltaKind::Update, 1),
            (DeltaKind::Update, 2),
            (DeltaKind::Snapshot, 2),
            (DeltaKind::Update, 3)
        ],
        "each run's starting state, then one update per step"
    );
    assert_eq!(state.as_ref(), Some(&expected), "the state rebuilt from the stream is the checkpointer's");
    // A consumer that does not ask for deltas never sees one.
    let events = received.iter().filter(|message| message.event().is_some()).count();
    let plain = rt.block_on(read(&url, &stream, &prefix, Follow::all(), events))?;
    assert!(plain.iter().all(|message| message.delta().is_none()));
    assert_eq!(sink.stats().unencodable, 0);
    guard.shutdown(Duration::from_secs(10))?;
    rt.block_on(delete_stream(&url, &stream))?;
    Ok(())
}

/// A value whose `Serialize` refuses human-readable formats such as JSON (binary ones, a
/// checkpoint's, take it).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
struct BinaryOnly(u32);

impl Serialize for BinaryOnly {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return Err(serde::ser::Error::custom("BinaryOnly has no JSON form"));
        }
        serializer.serialize_u32(self.0)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Opaque {
    value: BinaryOnly,
}

fn a_state_that_cannot_be_written_as_json_fails_no_run_and_is_counted() -> Result<(), Failed> {
    let Some(url) = server_url("a_state_that_cannot_be_written_as_json_fails_no_run_and_is_counted")? else {
        return Ok(());
    };
    let (stream, prefix) = unique_stream("opaque");
    let (sink, guard) = NatsSink::builder(&url).stream(&stream).subject_prefix(&prefix).state_deltas().start()?;
    let mut graph = StateGraph::<Opaque>::named("opaque");
    graph
        .add_node("set", |_: Arc<Opaque>| {
            std::future::ready(Ok::<_, NodeError>(OpaqueUpdate::default().value(BinaryOnly(7))))
        })
        .add_edge(START, "set")
        .add_edge("set", END);
    let app = CompiledGraph::new(graph.build().unwrap()).with_callback(sink.clone());
    let rt = runtime();
    let result = rt.block_on(app.invoke(Opaque::default(), RunConfig::new())).unwrap();
    assert_eq!(result.state.value, BinaryOnly(7), "the run finished");
    flush(&sink)?;
    assert_eq!(sink.stats().unencodable, 2, "the starting state and the one update");
    let total = sink.stats().acknowledged as usize;
    let received = rt.block_on(read(&url, &stream, &prefix, Follow::all().state_deltas(), total))?;
    let deltas: Vec<_> = received.iter().filter_map(Received::delta).collect();
    assert_eq!(deltas.len(), 2);
    for delta in deltas {
        let reason = delta.value.as_ref().unwrap_err();
        assert!(reason.contains("BinaryOnly has no JSON form"), "{reason}");
    }
    let seqs: Vec<u64> = received.iter().map(|message| message.seq).collect();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>(), "no number skipped");
    guard.shutdown(Duration::from_secs(10))?;
    rt.block_on(delete_stream(&url, &stream))?;
    Ok(())
}

/// A version-1 event message of `run` with `seq`, as a publisher writes it.
fn raw_event(run: RunId, seq: u64) -> String {
    format!(
        r#"{{"v":1,"publisher":{{"id":"P1","name":"1@test"}},"seq":{seq},"graph":"raw",
        "run":{{"id":"{run}","parent":null,"root":"{run}","depth":0}},"at_ns":{seq},
        "event":{{"type":"task_started","step":{seq},"node":"n","attempt":1}}}}"#
    )
}

fn messages_stored_out_of_order_come_in_seq_order_and_a_missing_one_as_a_gap() -> Result<(), Failed> {
    let Some(url) = server_url("messages_stored_out_of_order_come_in_seq_order_and_a_missing_one_as_a_gap")? else {
        return Ok(());
    };
    let (stream, prefix) = unique_stream("reorder");
    let rt = runtime();
    let (resent, lost, crowded) = (RunId::new(), RunId::new(), RunId::new());
    // As a publisher's re-send stores them: `resent`'s 3 after its 4; `lost`'s 3 never;
    // `crowded`'s 2 never, with more after it than a small window holds.
    let order = [
        (resent, 1),
        (lost, 1),
        (resent, 2),
        (resent, 4),
        (lost, 2),
        (lost, 4),
        (resent, 3),
        (resent, 5),
        (lost, 5),
        (crowded, 1),
        (crowded, 3),
        (crowded, 4),
        (crowded, 5),
    ];
    rt.block_on(async {
        let consumer = NatsConsumer::connect_to(&url, &stream, &prefix).await?;
        consumer.ensure_stream().await?;
        let js = async_nats::jetstream::new(async_nats::connect(&url).await?);
        for (run, seq) in order {
            js.publish(format!("{prefix}.raw.{run}"), raw_event(run, seq).into()).await?.await?;
        }
        Ok::<_, Failed>(())
    })?;
    let show = |messages: &[Received], run: RunId| -> Vec<String> {
        messages
            .iter()
            .filter(|message| message.run.run_id == run)
            .map(|message| match &message.item {
                Item::Gap { count } => format!("gap {}+{count}", message.seq),
                _ => message.seq.to_string(),
            })
            .collect()
    };
    // A short wait: the lost message's gap is reported once it has not come in time.
    let follow = Follow::all().reorder_wait(Duration::from_millis(200));
    let received = rt.block_on(read(&url, &stream, &prefix, follow, order.len() + 2))?;
    assert_eq!(show(&received, resent), ["1", "2", "3", "4", "5"]);
    assert_eq!(show(&received, lost), ["1", "2", "gap 3+1", "4", "5"]);
    // A window of two: the gap is reported when a third message waits, not after the wait.
    let follow = Follow::all().graph("raw").reorder_window(2).reorder_wait(Duration::from_secs(3600));
    let crowded_only = rt.block_on(async {
        let consumer = NatsConsumer::connect_to(&url, &stream, &prefix).await?;
        let mut events = consumer.follow(follow.run(crowded)).await?;
        let mut got = Vec::new();
        while got.len() < 5 {
            let next = tokio::time::timeout(Duration::from_secs(30), events.next()).await;
            got.push(next.map_err(|_| format!("only {got:?} within 30 s"))?.ok_or("the stream ended")??);
        }
        Ok::<_, Failed>(got)
    })?;
    assert_eq!(show(&crowded_only, crowded), ["1", "gap 2+1", "3", "4", "5"]);
    rt.block_on(delete_stream(&url, &stream))?;
    Ok(())
}
