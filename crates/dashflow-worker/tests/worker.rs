//! A worker in the test's own process: invoke, resume and update runs through the queue, the
//! idempotence of retried attempts (docs/distributed.md, Takeover), counters, and the client.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashflow_checkpoint_postgres::testing::TestDatabase;
use dashflow_executor::CompiledGraph;
use dashflow_graph::{END, GraphState, NodeContext, NodeError, START, StateGraph};
use dashflow_queue::{Multitask, RunQueue, RunRecord, RunState, Timings};
use dashflow_queue_postgres::PostgresRunQueue;
use dashflow_worker::{Client, RegisteredGraph, RunRequest, RunnableGraph, Worker, WorkerCounters};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Chat {
    #[reduce(append)]
    log: Vec<String>,
}

/// START -> ask (interrupts for an answer) -> reply -> END; every execution is counted.
fn chat(executions: &Arc<Mutex<Vec<String>>>) -> CompiledGraph<Chat> {
    let mut graph = StateGraph::<Chat>::new();
    let (ask_log, reply_log) = (Arc::clone(executions), Arc::clone(executions));
    graph
        .add_node("ask", move |_: Arc<Chat>, ctx: NodeContext| {
            let log = Arc::clone(&ask_log);
            async move {
                log.lock().unwrap().push("ask".to_owned());
                let answer = ctx.interrupt("your name?")?;
                Ok::<_, NodeError>(ChatUpdate::default().log(vec![format!("name={}", answer.as_str().unwrap_or("?"))]))
            }
        })
        .add_node("reply", move |_: Arc<Chat>| {
            let log = Arc::clone(&reply_log);
            async move {
                log.lock().unwrap().push("reply".to_owned());
                Ok::<_, NodeError>(ChatUpdate::default().log(vec!["reply".to_owned()]))
            }
        })
        .add_edge(START, "ask")
        .add_edge("ask", "reply")
        .add_edge("reply", END);
    CompiledGraph::new(graph.build().unwrap())
}

async fn setup(test: &str) -> Option<(TestDatabase, Arc<PostgresRunQueue>)> {
    let db = TestDatabase::from_env(test).await?;
    let queue = Arc::new(PostgresRunQueue::new(db.checkpointer().await).await.unwrap());
    Some((db, queue))
}

/// Starts a worker of `graph` on `queue` in this process; stopping the returned sender stops it.
fn start_worker(
    queue: &Arc<PostgresRunQueue>,
    graph: RegisteredGraph<Chat>,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>, Arc<WorkerCounters>) {
    let worker =
        Worker::builder(Arc::clone(queue) as Arc<dyn RunQueue>).graph(graph).timings(Timings::short()).build().unwrap();
    let counters = worker.counters();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        worker.run(async move { drop(stopped.await) }).await.unwrap();
    });
    (stop, task, counters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_resume_and_update_runs_go_through_the_queue() {
    let Some((_db, queue)) = setup("invoke_resume_and_update_runs_go_through_the_queue").await else { return };
    let executions = Arc::new(Mutex::new(Vec::new()));
    let graph = RegisteredGraph::new("chat", "v1", chat(&executions));
    let (stop, task, counters) = start_worker(&queue, graph.clone());
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>).with_poll_interval(Duration::from_millis(20));
    let wait = Duration::from_secs(30);

    let (first, _) = client.submit(&graph, RunRequest::invoke(Chat::default()).thread("c")).await.unwrap();
    let paused = client.wait_for_state(&graph, &first, wait).await.unwrap();
    assert_eq!(paused.run.state, RunState::Interrupted);
    assert_eq!(paused.state.unwrap().interrupts.len(), 1);

    let (answer, _) = client.submit(&graph, RunRequest::resume("ada").thread("c")).await.unwrap();
    let done = client.wait_for_state(&graph, &answer, wait).await.unwrap();
    assert_eq!(done.run.state, RunState::Completed);
    assert_eq!(done.state.unwrap().state.log, ["name=ada", "reply"]);

    let update = ChatUpdate::default().log(vec!["again".to_owned()]);
    let (again, _) = client.submit(&graph, RunRequest::update(update).thread("c")).await.unwrap();
    let paused = client.wait_for_state(&graph, &again, wait).await.unwrap();
    assert_eq!(paused.run.state, RunState::Interrupted);
    assert_eq!(paused.state.unwrap().state.log, ["name=ada", "reply", "again"]);

    // Stopped first: a run's counter moves just after its finish commits.
    drop(stop);
    task.await.unwrap();
    assert_eq!(WorkerCounters::get(&counters.claimed), 3);
    assert_eq!(WorkerCounters::get(&counters.finished), 3);
    let workers = queue.workers().await.unwrap();
    assert_eq!(workers[0].state, dashflow_queue::WorkerState::Stopped);
}

/// Runs one claimed run of `graph` to its end by hand, as a worker would, and returns its end.
async fn attempt(
    queue: &PostgresRunQueue,
    graph: &RegisteredGraph<Chat>,
) -> (dashflow_worker::RunEnd, dashflow_queue::Lease) {
    let claimed = queue.claim("w", &["default".to_owned()], std::slice::from_ref(graph.key()), 1).await.unwrap();
    let run = claimed.into_iter().next().expect("a run to claim");
    let end = graph.execute(&run, queue.fenced_checkpointer(&run.lease), None).await;
    (end, run.lease)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_attempt_applies_its_input_and_answer_once() {
    let Some((_db, queue)) = setup("a_retried_attempt_applies_its_input_and_answer_once").await else { return };
    let info = dashflow_queue::WorkerInfo::new("w", "h", 1, vec!["default".to_owned()], Vec::new(), 1);
    queue.register_worker(&info).await.unwrap();
    let executions = Arc::new(Mutex::new(Vec::new()));
    let graph = RegisteredGraph::new("chat", "v1", chat(&executions));
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>);

    // Attempt 1 runs the invoke to its interrupt and "dies" before finishing (F3): released.
    let (run_id, _) = client.submit(&graph, RunRequest::invoke(Chat::default()).thread("c")).await.unwrap();
    let (_, lease) = attempt(&queue, &graph).await;
    queue.release(&lease, "died").await.unwrap();
    // Attempt 2 finds the run's input stored and continues: no second input checkpoint.
    let (end, lease) = attempt(&queue, &graph).await;
    let dashflow_worker::RunEnd::Finished(finish) = end else { panic!("{end:?}") };
    assert_eq!(finish.state, RunState::Interrupted);
    queue.finish(&lease, finish).await.unwrap();
    let inputs = queue
        .checkpointer()
        .list("c", &dashflow_checkpoint::ListOptions::new().metadata("source", "input"))
        .await
        .unwrap();
    assert_eq!(inputs.len(), 1, "the input was stored {} times", inputs.len());
    let _ = run_id;

    // The answer: attempt 1 applies it and runs to the end, then dies before finishing.
    client.submit(&graph, RunRequest::resume("ada").thread("c")).await.unwrap();
    let (_, lease) = attempt(&queue, &graph).await;
    queue.release(&lease, "died").await.unwrap();
    let replies = executions.lock().unwrap().iter().filter(|name| *name == "reply").count();
    assert_eq!(replies, 1);
    // Attempt 2 must not answer again (the interrupt is gone) nor run anything again.
    let (end, _) = attempt(&queue, &graph).await;
    let dashflow_worker::RunEnd::Finished(finish) = end else { panic!("{end:?}") };
    assert_eq!(finish.state, RunState::Completed, "{finish:?}");
    let replies = executions.lock().unwrap().iter().filter(|name| *name == "reply").count();
    assert_eq!(replies, 1, "the retried attempt ran `reply` again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueued_runs_of_one_thread_run_in_order_one_at_a_time() {
    let Some((_db, queue)) = setup("enqueued_runs_of_one_thread_run_in_order_one_at_a_time").await else { return };
    let executions = Arc::new(Mutex::new(Vec::new()));
    let graph = RegisteredGraph::new("chat", "v1", chat(&executions));
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>).with_poll_interval(Duration::from_millis(20));
    let (first, _) = client.submit(&graph, RunRequest::invoke(Chat::default()).thread("c")).await.unwrap();
    let request = RunRequest::resume("bob").thread("c").multitask(Multitask::Enqueue);
    let (second, state) = client.submit(&graph, request).await.unwrap();
    assert_eq!(state, RunState::Pending);
    let busy = client.submit(&graph, RunRequest::resume("eve").thread("c")).await.unwrap_err();
    assert!(matches!(busy, dashflow_worker::WorkerError::Queue(dashflow_queue::QueueError::ThreadBusy { .. })));
    let (stop, task, _) = start_worker(&queue, graph.clone());
    let wait = Duration::from_secs(30);
    assert_eq!(client.wait(&first, wait).await.unwrap().state, RunState::Interrupted);
    let done = client.wait_for_state(&graph, &second, wait).await.unwrap();
    assert_eq!(done.state.unwrap().state.log, ["name=bob", "reply"]);
    drop(stop);
    task.await.unwrap();
}

#[tokio::test]
async fn a_worker_needs_graphs_with_distinct_names() {
    let queue: Arc<dyn RunQueue> = Arc::new(NoQueue);
    assert!(matches!(Worker::builder(Arc::clone(&queue)).build(), Err(dashflow_worker::WorkerError::NoGraphs)));
    let executions = Arc::new(Mutex::new(Vec::new()));
    let (v1, v2) =
        (RegisteredGraph::new("chat", "v1", chat(&executions)), RegisteredGraph::new("chat", "v2", chat(&executions)));
    assert_ne!(v1.key(), v2.key());
    let twice = Worker::builder(queue).graph(v1).graph(v2).build();
    assert!(matches!(twice, Err(dashflow_worker::WorkerError::DuplicateGraph { name }) if name == "chat"));
}

/// A queue that is never reached: for checks that fail before any call.
#[derive(Debug)]
struct NoQueue;

#[async_trait::async_trait]
impl RunQueue for NoQueue {
    async fn submit(&self, _: dashflow_queue::NewRun) -> dashflow_queue::Result<RunState> {
        unreachable!()
    }
    async fn register_worker(&self, _: &dashflow_queue::WorkerInfo) -> dashflow_queue::Result<()> {
        unreachable!()
    }
    async fn stop_worker(&self, _: &str) -> dashflow_queue::Result<()> {
        unreachable!()
    }
    async fn heartbeat(
        &self,
        _: &str,
        _: &[dashflow_queue::Lease],
        _: &Timings,
    ) -> dashflow_queue::Result<dashflow_queue::HeartbeatReply> {
        unreachable!()
    }
    async fn claim(
        &self,
        _: &str,
        _: &[String],
        _: &[dashflow_queue::GraphKey],
        _: usize,
    ) -> dashflow_queue::Result<Vec<dashflow_queue::ClaimedRun>> {
        unreachable!()
    }
    async fn finish(&self, _: &dashflow_queue::Lease, _: dashflow_queue::Finish) -> dashflow_queue::Result<()> {
        unreachable!()
    }
    async fn release(&self, _: &dashflow_queue::Lease, _: &str) -> dashflow_queue::Result<()> {
        unreachable!()
    }
    async fn give_up(&self, _: &dashflow_queue::Lease, _: &str) -> dashflow_queue::Result<RunState> {
        unreachable!()
    }
    async fn cancel(&self, _: &str) -> dashflow_queue::Result<RunState> {
        unreachable!()
    }
    async fn retry(&self, _: &str, _: i32) -> dashflow_queue::Result<RunState> {
        unreachable!()
    }
    async fn sweep(&self, _: &Timings) -> dashflow_queue::Result<dashflow_queue::SweepReport> {
        unreachable!()
    }
    async fn get(&self, _: &str) -> dashflow_queue::Result<Option<dashflow_queue::RunRecord>> {
        unreachable!()
    }
    async fn list(&self, _: &dashflow_queue::RunFilter) -> dashflow_queue::Result<Vec<dashflow_queue::RunRecord>> {
        unreachable!()
    }
    async fn stats(&self) -> dashflow_queue::Result<Vec<dashflow_queue::QueueStat>> {
        unreachable!()
    }
    async fn workers(&self) -> dashflow_queue::Result<Vec<dashflow_queue::WorkerRecord>> {
        unreachable!()
    }
    fn fenced_checkpointer(&self, _: &dashflow_queue::Lease) -> Arc<dyn dashflow_checkpoint::Checkpointer> {
        unreachable!()
    }
    fn checkpointer(&self) -> Arc<dyn dashflow_checkpoint::Checkpointer> {
        unreachable!()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_ups_start_and_report_runs_without_waiting_for_a_poll() {
    let Some((_db, queue)) = setup("wake_ups_start_and_report_runs_without_waiting_for_a_poll").await else { return };
    let executions = Arc::new(Mutex::new(Vec::new()));
    let graph = RegisteredGraph::new("chat", "v1", chat(&executions));
    // Polls far apart: only wake-ups can make the worker claim and the client return in time.
    let hour = Duration::from_secs(3600);
    let worker = Worker::builder(Arc::clone(&queue) as Arc<dyn RunQueue>)
        .graph(graph.clone())
        .timings(Timings::short().poll(hour))
        .build()
        .unwrap();
    let counters = worker.counters();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move { worker.run(async move { drop(stopped.await) }).await.unwrap() });
    // The worker went idle after its first (empty) claim.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while queue.workers().await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the worker never registered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>).with_poll_interval(hour);
    let (run_id, _) = client.submit(&graph, RunRequest::invoke(Chat::default()).thread("c")).await.unwrap();
    let run = client.wait(&run_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(run.state, RunState::Interrupted);
    drop(stop);
    task.await.unwrap();
    assert_eq!(WorkerCounters::get(&counters.claimed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_counters_reach_the_metrics_facade() {
    let Some((_db, queue)) = setup("worker_counters_reach_the_metrics_facade").await else { return };
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // The process's only recorder: this test's binary installs none elsewhere.
    metrics::set_global_recorder(recorder).expect("no other recorder in this test process");
    let executions = Arc::new(Mutex::new(Vec::new()));
    let graph = RegisteredGraph::new("chat", "v1", chat(&executions));
    let (stop, task, _) = start_worker(&queue, graph.clone());
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>).with_poll_interval(Duration::from_millis(20));
    let (run_id, _) = client.submit(&graph, RunRequest::invoke(Chat::default()).thread("c")).await.unwrap();
    client.wait(&run_id, Duration::from_secs(30)).await.unwrap();
    drop(stop);
    task.await.unwrap();
    let text = handle.render();
    // At least this test's run: other tests of this binary may run workers meanwhile.
    // How long runs waited to be claimed, as a summary of seconds.
    let waits = text
        .lines()
        .find_map(|line| line.strip_prefix("dashflow_queue_wait_seconds_count")?.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no `dashflow_queue_wait_seconds` in:\n{text}"));
    assert!(waits >= 1.0, "{waits} waits recorded");
    for name in ["dashflow_runs_claimed_total", "dashflow_runs_finished_total"] {
        let value = text
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no `{name}` in:\n{text}"));
        assert!(value >= 1.0, "{name} is {value}");
    }
}

/// A run submitted with a timeout fails when an attempt outlasts it, naming the limit, and is
/// not tried again; the same graph within its limit completes. A worker's own timeout bounds
/// runs submitted without one, and gives way to a run's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_timeout_fails_naming_the_limit() {
    let test = "a_run_past_its_timeout_fails_naming_the_limit";
    let Some((_db, queue)) = setup(test).await else { return };
    let mut graph = StateGraph::<Chat>::new();
    graph
        .add_node("wait", |chat: Arc<Chat>| async move {
            // A fresh thread waits far past any limit here, a `medium` one past the worker's
            // own but well within the one its run asks for; others do not wait.
            if chat.log.is_empty() {
                tokio::time::sleep(Duration::from_secs(60)).await;
            } else if chat.log == ["medium"] {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok::<_, NodeError>(ChatUpdate::default().log(vec!["waited".to_owned()]))
        })
        .add_edge(START, "wait")
        .add_edge("wait", END);
    let graph = RegisteredGraph::new("wait", "v1", CompiledGraph::new(graph.build().unwrap()));
    let (stop, task, _) = start_worker(&queue, graph.clone());
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>).with_poll_interval(Duration::from_millis(20));
    let limit = Duration::from_millis(300);
    let request = RunRequest::invoke(Chat::default()).thread("slow").timeout(limit);
    let (run_id, _) = client.submit(&graph, request).await.unwrap();
    let run = client.wait(&run_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!((run.state, run.attempt), (RunState::Failed, 1), "{run:?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("exceeded its timeout of 300ms"), "{error}");
    let within = RunRequest::invoke(Chat { log: vec!["seen".to_owned()] }).thread("quick").timeout(limit);
    let (run_id, _) = client.submit(&graph, within).await.unwrap();
    let run = client.wait(&run_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(run.state, RunState::Completed, "{run:?}");
    drop(stop);
    task.await.unwrap();

    // A worker's own timeout bounds the runs submitted without one.
    let worker = Worker::builder(Arc::clone(&queue) as Arc<dyn RunQueue>)
        .graph(graph.clone())
        .timings(Timings::short())
        .run_timeout(Duration::from_millis(250))
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async move { drop(stopped.await) }));
    let (run_id, _) = client.submit(&graph, RunRequest::invoke(Chat::default()).thread("unbounded")).await.unwrap();
    let run = client.wait(&run_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!((run.state, run.attempt), (RunState::Failed, 1), "{run:?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("exceeded its timeout of 250ms"), "{error}");
    // A run's own timeout holds over the worker's.
    let asked =
        RunRequest::invoke(Chat { log: vec!["medium".to_owned()] }).thread("asked").timeout(Duration::from_secs(20));
    let (run_id, _) = client.submit(&graph, asked).await.unwrap();
    assert_eq!(client.wait(&run_id, Duration::from_secs(30)).await.unwrap().state, RunState::Completed);
    drop(stop);
    task.await.unwrap().unwrap();
}

/// A node that holds its thread (no await) far past its run's timeout: the timeout cannot stop
/// it, so once the stuck grace has passed too the worker gives the run up (back to the queue
/// with the attempt charged, or failed on its last attempt, the thread's fence bumped), counts
/// it, and stops with `StuckRun`. What the node would write when it returns does not land.
async fn a_stuck_run_is_given_up(test: &str, max_attempts: i32) -> Option<(RunRecord, Option<String>)> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (db, queue) = setup(test).await?;
    let released = Arc::new(AtomicBool::new(false));
    let node_released = Arc::clone(&released);
    let mut graph = StateGraph::<Chat>::new();
    graph
        .add_node("hold", move |_: Arc<Chat>| {
            let released = Arc::clone(&node_released);
            async move {
                // Holds its thread until the test lets it go, as a blocking call left on the
                // runtime does.
                while !released.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok::<_, NodeError>(ChatUpdate::default().log(vec!["held".to_owned()]))
            }
        })
        .add_edge(START, "hold")
        .add_edge("hold", "after")
        .add_node("after", |_: Arc<Chat>| async {
            Ok::<_, NodeError>(ChatUpdate::default().log(vec!["after".to_owned()]))
        })
        .add_edge("after", END);
    let graph = RegisteredGraph::new("hold", "v1", CompiledGraph::new(graph.build().unwrap()));
    let grace = Duration::from_millis(300);
    let worker = Worker::builder(Arc::clone(&queue) as Arc<dyn RunQueue>)
        .graph(graph.clone())
        .timings(Timings::short())
        .stuck_grace(grace)
        .build()
        .unwrap();
    let counters = worker.counters();
    let worker_id = worker.id().to_owned();
    let running = tokio::spawn(worker.run(std::future::pending()));
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>).with_poll_interval(Duration::from_millis(20));
    let request = RunRequest::invoke(Chat::default())
        .thread("held")
        .timeout(Duration::from_millis(200))
        .max_attempts(max_attempts);
    let (run_id, _) = client.submit(&graph, request).await.unwrap();
    // The worker stops by itself, naming the run.
    let stopped = tokio::time::timeout(Duration::from_secs(30), running).await.expect("the worker never stopped");
    match stopped.unwrap() {
        Err(dashflow_worker::WorkerError::StuckRun { run_id: stuck, after }) => {
            assert_eq!((stuck.as_str(), after), (run_id.as_str(), grace));
        }
        other => panic!("the worker ended with {other:?}"),
    }
    assert_eq!(WorkerCounters::get(&counters.stuck), 1);
    released.store(true, Ordering::SeqCst);
    let run = queue.get(&run_id).await.unwrap().unwrap();
    // The attempt's lease is fenced off: whatever it would write now is refused.
    let lease = dashflow_queue::Lease {
        run_id: run_id.clone(),
        thread_id: "held".to_owned(),
        worker_id,
        epoch: run.lease_epoch.expect("the run was claimed"),
    };
    let config = dashflow_executor::RunConfig::thread("held").checkpointer(queue.fenced_checkpointer(&lease));
    let late = graph.app().invoke(Chat::default(), config).await;
    let late = late.err().map(|error| dashflow_telemetry::Report(&error).to_string());
    drop(db);
    Some((run, late))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_run_on_its_last_attempt_fails_and_its_worker_stops() {
    let test = "a_stuck_run_on_its_last_attempt_fails_and_its_worker_stops";
    let Some((run, late)) = a_stuck_run_is_given_up(test, 1).await else { return };
    assert_eq!((run.state, run.attempt), (RunState::Failed, 1), "{run:?}");
    assert!(run.error.as_deref().is_some_and(|error| error.starts_with("stuck:")), "{run:?}");
    assert!(late.is_some(), "the given-up attempt could still write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_run_with_attempts_left_is_queued_again_with_the_attempt_charged() {
    let test = "a_stuck_run_with_attempts_left_is_queued_again_with_the_attempt_charged";
    let Some((run, late)) = a_stuck_run_is_given_up(test, 2).await else { return };
    assert_eq!((run.state, run.attempt, run.worker_id.as_deref()), (RunState::Queued, 1, None), "{run:?}");
    assert!(late.is_some(), "the given-up attempt could still write");
}

/// A run that failed on a node error, retried: it continues from its thread's last
/// checkpoint, so the node that had finished is not run again and the input is applied once,
/// and completes. A completed run, a run a later one followed on its thread, an unknown run
/// and a retry without attempts are refused, each saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_retried_continues_from_its_last_checkpoint() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let test = "a_failed_run_retried_continues_from_its_last_checkpoint";
    let Some((_db, queue)) = setup(test).await else { return };
    let (firsts, seconds) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (node_firsts, node_seconds) = (Arc::clone(&firsts), Arc::clone(&seconds));
    let mut graph = StateGraph::<Chat>::new();
    graph
        .add_node("first", move |_: Arc<Chat>| {
            let firsts = Arc::clone(&node_firsts);
            async move {
                firsts.fetch_add(1, Ordering::SeqCst);
                Ok::<_, NodeError>(ChatUpdate::default().log(vec!["first".to_owned()]))
            }
        })
        .add_node("second", move |_: Arc<Chat>| {
            let seconds = Arc::clone(&node_seconds);
            async move {
                // Fails the first time, as a flaky service does.
                if seconds.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(NodeError::msg("the service is down"));
                }
                Ok(ChatUpdate::default().log(vec!["second".to_owned()]))
            }
        })
        .add_edge(START, "first")
        .add_edge("first", "second")
        .add_edge("second", END);
    let graph = RegisteredGraph::new("flaky", "v1", CompiledGraph::new(graph.build().unwrap()));
    let worker = Worker::builder(Arc::clone(&queue) as Arc<dyn RunQueue>)
        .graph(graph.clone())
        .timings(Timings::short())
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move { drop(stopped.await) }));
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>).with_poll_interval(Duration::from_millis(20));
    let wait = Duration::from_secs(30);
    let input = Chat { log: vec!["input".to_owned()] };
    let (run_id, _) = client.submit(&graph, RunRequest::invoke(input).thread("flaky")).await.unwrap();
    let failed = client.wait(&run_id, wait).await.unwrap();
    assert_eq!((failed.state, failed.attempt), (RunState::Failed, 1), "{failed:?}");
    assert!(failed.error.as_deref().is_some_and(|error| error.contains("the service is down")), "{failed:?}");

    let refused = |result: dashflow_worker::Result<RunState>| match result {
        Err(dashflow_worker::WorkerError::Queue(error)) => error.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let none = refused(client.retry(&run_id, 0).await);
    assert!(none.contains("at least one attempt"), "{none}");
    assert_eq!(client.retry(&run_id, 2).await.unwrap(), RunState::Queued);
    let done = client.wait_for_state(&graph, &run_id, wait).await.unwrap();
    assert_eq!((done.run.state, done.run.attempt, done.run.error.as_deref()), (RunState::Completed, 2, None));
    assert_eq!(done.state.unwrap().state.log, ["input", "first", "second"]);
    assert_eq!((firsts.load(Ordering::SeqCst), seconds.load(Ordering::SeqCst)), (1, 2));

    let completed = refused(client.retry(&run_id, 1).await);
    assert!(completed.contains("it is completed; only failed or cancelled runs are retried"), "{completed}");
    let unknown = refused(client.retry("01NOSUCHRUN", 1).await);
    assert!(unknown.contains("run 01NOSUCHRUN was not found"), "{unknown}");
    // A later run on the thread moves it on: the earlier run's checkpoint is no longer the
    // thread's. (The earlier one waits in a queue no worker serves until it is cancelled.)
    let parked = RunRequest::invoke(Chat::default()).thread("moved").queue("parked");
    let (cancelled, _) = client.submit(&graph, parked).await.unwrap();
    client.cancel(&cancelled).await.unwrap();
    let (later, _) = client.submit(&graph, RunRequest::invoke(Chat::default()).thread("moved")).await.unwrap();
    client.wait(&later, wait).await.unwrap();
    let moved = refused(client.retry(&cancelled, 1).await);
    assert!(moved.contains(&format!("run {later} came after it on thread `moved`")), "{moved}");
    drop(stop);
    running.await.unwrap().unwrap();
}

/// A stuck node on a current-thread runtime holds the runtime's only thread, so the worker
/// cannot give the run up there: its heartbeat thread stops heart-beating instead, the lease
/// ends, and another worker's sweeper takes the run over and finishes it in a second attempt.
/// When the node finally returns, the first worker's late write is refused and it stops with
/// `StuckRun`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_runtime_cannot_give_a_stuck_run_up_stops_heartbeating_and_is_taken_over() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let test = "a_worker_whose_runtime_cannot_give_a_stuck_run_up_stops_heartbeating_and_is_taken_over";
    let Some((db, queue)) = setup(test).await else { return };
    // A lease long enough that a loaded machine's slow heartbeat does not fence the worker.
    let timings = Timings::short().lease(Duration::from_secs(4)).self_fence_margin(Duration::from_secs(1));
    let (released, calls) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)));
    let (node_released, node_calls) = (Arc::clone(&released), Arc::clone(&calls));
    let mut graph = StateGraph::<Chat>::new();
    graph
        .add_node("hold", move |_: Arc<Chat>| {
            let (released, calls) = (Arc::clone(&node_released), Arc::clone(&node_calls));
            async move {
                // The first call holds its thread until the test lets it go; later ones do not.
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    while !released.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                Ok::<_, NodeError>(ChatUpdate::default().log(vec!["held".to_owned()]))
            }
        })
        .add_node("after", |_: Arc<Chat>| async {
            Ok::<_, NodeError>(ChatUpdate::default().log(vec!["after".to_owned()]))
        })
        .add_edge(START, "hold")
        .add_edge("hold", "after")
        .add_edge("after", END);
    let graph = RegisteredGraph::new("hold", "v1", CompiledGraph::new(graph.build().unwrap()));
    let options = db.connect_options();
    let (counters_sent, counters) = std::sync::mpsc::channel();
    let stuck_graph = graph.clone();
    let stuck = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let checkpointer = dashflow_checkpoint_postgres::PostgresCheckpointer::connect_with(options).await.unwrap();
            let queue = Arc::new(PostgresRunQueue::new(checkpointer).await.unwrap());
            let worker = Worker::builder(queue)
                .graph(stuck_graph)
                .worker_id("stuck")
                .timings(timings)
                .stuck_grace(Duration::from_millis(300))
                .build()
                .unwrap();
            counters_sent.send(worker.counters()).unwrap();
            worker.run(std::future::pending()).await
        })
    });
    let stuck_counters = tokio::task::spawn_blocking(move || counters.recv().unwrap()).await.unwrap();
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>).with_poll_interval(Duration::from_millis(20));
    let request =
        RunRequest::invoke(Chat::default()).thread("held").timeout(Duration::from_millis(200)).max_attempts(2);
    let (run_id, _) = client.submit(&graph, request).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the stuck worker never started the node");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Only now a second worker, so that the first attempt is the stuck worker's.
    let rescuer = Worker::builder(Arc::clone(&queue) as Arc<dyn RunQueue>)
        .graph(graph.clone())
        .worker_id("rescuer")
        .timings(timings)
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let rescuing = tokio::spawn(rescuer.run(async move { drop(stopped.await) }));
    let done = client.wait_for_state(&graph, &run_id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        (done.run.state, done.run.attempt, done.run.worker_id.as_deref()),
        (RunState::Completed, 2, Some("rescuer")),
        "{:?}",
        done.run
    );
    assert_eq!(done.state.unwrap().state.log, ["held", "after"]);
    assert_eq!(WorkerCounters::get(&stuck_counters.stuck), 1);
    assert_eq!(WorkerCounters::get(&stuck_counters.abandoned), 1);
    // The node returns at last: what the stuck attempt writes now is refused, and its worker
    // stops, naming the run.
    released.store(true, Ordering::SeqCst);
    let ended = tokio::task::spawn_blocking(move || stuck.join().unwrap()).await.unwrap();
    match ended {
        Err(dashflow_worker::WorkerError::StuckRun { run_id: named, .. }) => assert_eq!(named, run_id),
        other => panic!("the stuck worker ended with {other:?}"),
    }
    let after = client.wait_for_state(&graph, &run_id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(after.state.unwrap().state.log, ["held", "after"], "the stuck attempt's late write landed");
    drop(stop);
    rescuing.await.unwrap().unwrap();
}

/// A node that blocks its worker's runtime (a current-thread runtime: the node holds its only
/// thread) for one and a half leases: the worker's heartbeats run on a thread with a runtime
/// of their own, so the worker keeps its lease, the sweeper (judging it against a fresh worker)
/// finds nothing dead, and the run ends in its first attempt. The lease is longer than the
/// short timings' so that a heartbeat slowed by a loaded machine (the whole suite on two
/// cores) does not make the worker fence itself, which this test would read as a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_runtime_is_blocked_by_a_node_keeps_its_lease() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let test = "a_worker_whose_runtime_is_blocked_by_a_node_keeps_its_lease";
    let Some((db, queue)) = setup(test).await else { return };
    let timings = Timings::short().lease(Duration::from_secs(4)).self_fence_margin(Duration::from_secs(1));
    let (started, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let mut graph = StateGraph::<Chat>::new();
    let (node_started, node_done) = (Arc::clone(&started), Arc::clone(&done));
    graph
        .add_node("block", move |_: Arc<Chat>| {
            let (started, done) = (Arc::clone(&node_started), Arc::clone(&node_done));
            async move {
                started.store(true, Ordering::SeqCst);
                // Blocks the thread, as a CPU-bound node left on the runtime does.
                std::thread::sleep(timings.lease * 3 / 2);
                done.store(true, Ordering::SeqCst);
                Ok::<_, NodeError>(ChatUpdate::default().log(vec!["blocked".to_owned()]))
            }
        })
        .add_edge(START, "block")
        .add_edge("block", END);
    let graph = RegisteredGraph::new("block", "v1", CompiledGraph::new(graph.build().unwrap()));
    let options = db.connect_options();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (counters_sent, counters) = std::sync::mpsc::channel();
    let worker_graph = graph.clone();
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let checkpointer = dashflow_checkpoint_postgres::PostgresCheckpointer::connect_with(options).await.unwrap();
            let queue = Arc::new(PostgresRunQueue::new(checkpointer).await.unwrap());
            let worker =
                Worker::builder(queue).graph(worker_graph).worker_id("blocked").timings(timings).build().unwrap();
            counters_sent.send(worker.counters()).unwrap();
            worker.run(async move { drop(stopped.await) }).await.unwrap();
        });
    });
    let counters = tokio::task::spawn_blocking(move || counters.recv().unwrap()).await.unwrap();
    let fresh = dashflow_queue::WorkerInfo::new("fresh", "localhost", 1, vec!["default".to_owned()], Vec::new(), 1);
    queue.register_worker(&fresh).await.unwrap();
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>).with_poll_interval(Duration::from_millis(20));
    let (run_id, _) = client.submit(&graph, RunRequest::invoke(Chat::default()).thread("t")).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !started.load(Ordering::SeqCst) {
        assert!(tokio::time::Instant::now() < deadline, "the node never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut sweeps = 0;
    while !done.load(Ordering::SeqCst) {
        queue.heartbeat("fresh", &[], &timings).await.unwrap();
        let report = queue.sweep(&timings).await.unwrap();
        assert!(report.workers_stopped.is_empty(), "the sweeper took the blocked worker for dead: {report:?}");
        sweeps += 1;
        tokio::time::sleep(timings.heartbeat / 2).await;
    }
    assert!(sweeps > 1, "the node did not block long enough to be swept");
    let run = client.wait(&run_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!((run.state, run.attempt), (RunState::Completed, 1), "{run:?}");
    assert_eq!(WorkerCounters::get(&counters.self_fenced), 0);
    assert_eq!(WorkerCounters::get(&counters.lease_lost), 0);
    drop(stop);
    tokio::task::spawn_blocking(move || worker.join().unwrap()).await.unwrap();
}

/// A follower in another task reads what a node emits through its context, in the run's
/// stream of events, which ends with the run; a run submitted without an event stream leaves
/// nothing to follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_run_carries_the_values_its_nodes_emit() {
    use dashflow_telemetry::EventKind;
    use dashflow_worker::Streamed;
    let Some((_db, queue)) = setup("a_followed_run_carries_the_values_its_nodes_emit").await else { return };
    let mut graph = StateGraph::<Chat>::new();
    graph
        .add_node("talk", |_: Arc<Chat>, ctx: NodeContext| async move {
            for token in ["hel", "lo"] {
                ctx.emit(serde_json::json!({ "token": token })).await;
            }
            Ok::<_, NodeError>(ChatUpdate::default().log(vec!["hello".to_owned()]))
        })
        .add_edge(START, "talk")
        .add_edge("talk", END);
    let graph = RegisteredGraph::new("talk", "v1", CompiledGraph::new(graph.build().unwrap()));
    let (stop, task, _) = start_worker(&queue, graph.clone());
    // A poll far past the test's bound: the stream's items and the run's end reach the
    // follower through the queue's notifications.
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>).with_poll_interval(Duration::from_secs(600));

    let (run_id, _) = client.submit(&graph, RunRequest::invoke(Chat::default()).thread("a")).await.unwrap();
    let mut events = client.follow(&run_id).unwrap();
    let mut items = Vec::new();
    while let Some(item) = tokio::time::timeout(Duration::from_secs(30), events.next()).await.unwrap().unwrap() {
        items.push(item);
    }
    let tokens: Vec<serde_json::Value> = items
        .iter()
        .filter_map(|item| match &item.item {
            Streamed::Event(event) => match &event.kind {
                EventKind::Custom { node, value, .. } if &**node == "talk" => Some(value["token"].clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(tokens, ["hel", "lo"]);
    assert!(
        !items.iter().any(|item| matches!(item.event().map(|e| &e.kind), Some(EventKind::GraphDefined { .. }))),
        "the graph's shape went into the run's stream"
    );
    let last = items.last().and_then(dashflow_worker::RunEvent::event).map(|event| &event.kind);
    assert!(matches!(last, Some(EventKind::RunFinished { .. })), "{items:?}");
    assert_eq!(events.last_seq(), items.len() as i64);

    let quiet = RunRequest::invoke(Chat::default()).thread("b").without_event_stream();
    let (quiet, _) = client.submit(&graph, quiet).await.unwrap();
    assert_eq!(client.wait(&quiet, Duration::from_secs(30)).await.unwrap().state, RunState::Completed);
    assert!(client.follow(&quiet).unwrap().next().await.unwrap().is_none(), "a run without a stream streamed");
    drop(stop);
    task.await.unwrap();
}

/// A node that emits far more values than the sink buffers, without ever yielding to the
/// worker's runtime (its only thread): the run does not wait for its stream; the values the
/// buffer could not hold are counted in a `lost` note of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_outpaces_its_stream_goes_on_and_the_stream_counts_what_it_lost() {
    use dashflow_telemetry::EventKind;
    use dashflow_worker::Streamed;
    const VALUES: usize = 10_000;
    let test = "a_run_that_outpaces_its_stream_goes_on_and_the_stream_counts_what_it_lost";
    let Some((db, queue)) = setup(test).await else { return };
    let mut graph = StateGraph::<Chat>::new();
    graph
        .add_node("chatty", |_: Arc<Chat>, ctx: NodeContext| async move {
            for n in 0..VALUES {
                ctx.emit(serde_json::json!(n)).await;
            }
            Ok::<_, NodeError>(ChatUpdate::default().log(vec!["said".to_owned()]))
        })
        .add_edge(START, "chatty")
        .add_edge("chatty", END);
    let graph = RegisteredGraph::new("chatty", "v1", CompiledGraph::new(graph.build().unwrap()));
    let options = db.connect_options();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker_graph = graph.clone();
    // A current-thread runtime: the stream's writer cannot run while the node emits.
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let checkpointer = dashflow_checkpoint_postgres::PostgresCheckpointer::connect_with(options).await.unwrap();
            let queue = Arc::new(PostgresRunQueue::new(checkpointer).await.unwrap());
            let worker = Worker::builder(queue).graph(worker_graph).timings(Timings::short()).build().unwrap();
            worker.run(async move { drop(stopped.await) }).await.unwrap();
        });
    });
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>).with_poll_interval(Duration::from_millis(20));
    let (run_id, _) = client.submit(&graph, RunRequest::invoke(Chat::default()).thread("t")).await.unwrap();
    assert_eq!(client.wait(&run_id, Duration::from_secs(60)).await.unwrap().state, RunState::Completed);
    let mut events = client.follow(&run_id).unwrap();
    let (mut values, mut lost) = (0, 0);
    while let Some(item) = events.next().await.unwrap() {
        match &item.item {
            Streamed::Event(event) if matches!(event.kind, EventKind::Custom { .. }) => values += 1,
            Streamed::Lost(count) => lost += *count as usize,
            _ => {}
        }
    }
    assert!(lost > 0 && values < VALUES, "{values} values streamed, {lost} lost");
    assert!(values + lost >= VALUES, "{values} values streamed and {lost} lost of {VALUES}");
    drop(stop);
    tokio::task::spawn_blocking(move || worker.join().unwrap()).await.unwrap();
}

/// Streams are kept for `event_retention` after their run ends, then the sweeping worker
/// deletes them; a worker built without event streams keeps none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_runs_streams_are_trimmed_after_the_retention_and_a_worker_can_keep_none() {
    let test = "ended_runs_streams_are_trimmed_after_the_retention_and_a_worker_can_keep_none";
    let Some((_db, queue)) = setup(test).await else { return };
    let executions = Arc::new(Mutex::new(Vec::new()));
    let graph = RegisteredGraph::new("chat", "v1", chat(&executions));
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>).with_poll_interval(Duration::from_millis(20));
    let streams = queue.streams().unwrap();
    let run_with = |worker: Worker| {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        (stop, tokio::spawn(async move { worker.run(async move { drop(stopped.await) }).await.unwrap() }))
    };

    let keeps_none = Worker::builder(Arc::clone(&queue) as Arc<dyn RunQueue>)
        .graph(graph.clone())
        .timings(Timings::short())
        .without_event_streams()
        .build()
        .unwrap();
    let (stop, task) = run_with(keeps_none);
    let (quiet, _) = client.submit(&graph, RunRequest::invoke(Chat::default()).thread("quiet")).await.unwrap();
    assert_eq!(client.wait(&quiet, Duration::from_secs(30)).await.unwrap().state, RunState::Interrupted);
    assert!(streams.read(&quiet, 0, 10).await.unwrap().is_empty(), "a worker without streams streamed");
    drop(stop);
    task.await.unwrap();

    let trims = Worker::builder(Arc::clone(&queue) as Arc<dyn RunQueue>)
        .graph(graph.clone())
        .timings(Timings::short())
        .event_retention(Duration::from_secs(3))
        .build()
        .unwrap();
    let (stop, task) = run_with(trims);
    let (run_id, _) = client.submit(&graph, RunRequest::invoke(Chat::default()).thread("loud")).await.unwrap();
    assert_eq!(client.wait(&run_id, Duration::from_secs(30)).await.unwrap().state, RunState::Interrupted);
    // Kept within the retention, then deleted by a sweep.
    assert!(!streams.read(&run_id, 0, 100).await.unwrap().is_empty(), "the run streamed nothing");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !streams.read(&run_id, 0, 100).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the ended run's stream was never trimmed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stop);
    task.await.unwrap();
}

/// The PostgreSQL queue, with a finish that returns only after two more heartbeats answered:
/// a heartbeat then sees the run ended while its worker still holds it.
#[derive(Debug)]
struct SlowFinish {
    inner: Arc<PostgresRunQueue>,
    heartbeats: tokio::sync::watch::Sender<u64>,
}

#[async_trait::async_trait]
impl RunQueue for SlowFinish {
    async fn submit(&self, run: dashflow_queue::NewRun) -> dashflow_queue::Result<RunState> {
        self.inner.submit(run).await
    }
    async fn register_worker(&self, worker: &dashflow_queue::WorkerInfo) -> dashflow_queue::Result<()> {
        self.inner.register_worker(worker).await
    }
    async fn stop_worker(&self, worker_id: &str) -> dashflow_queue::Result<()> {
        self.inner.stop_worker(worker_id).await
    }
    async fn heartbeat(
        &self,
        worker_id: &str,
        held: &[dashflow_queue::Lease],
        timings: &Timings,
    ) -> dashflow_queue::Result<dashflow_queue::HeartbeatReply> {
        let reply = self.inner.heartbeat(worker_id, held, timings).await;
        self.heartbeats.send_modify(|count| *count += 1);
        reply
    }
    async fn claim(
        &self,
        worker_id: &str,
        queues: &[String],
        keys: &[dashflow_queue::GraphKey],
        limit: usize,
    ) -> dashflow_queue::Result<Vec<dashflow_queue::ClaimedRun>> {
        self.inner.claim(worker_id, queues, keys, limit).await
    }
    async fn finish(
        &self,
        lease: &dashflow_queue::Lease,
        finish: dashflow_queue::Finish,
    ) -> dashflow_queue::Result<()> {
        let finished = self.inner.finish(lease, finish).await;
        let after = *self.heartbeats.borrow() + 2;
        let mut heartbeats = self.heartbeats.subscribe();
        heartbeats.wait_for(|count| *count >= after).await.expect("the sender lives in self");
        finished
    }
    async fn release(&self, lease: &dashflow_queue::Lease, why: &str) -> dashflow_queue::Result<()> {
        self.inner.release(lease, why).await
    }
    async fn give_up(&self, lease: &dashflow_queue::Lease, why: &str) -> dashflow_queue::Result<RunState> {
        self.inner.give_up(lease, why).await
    }
    async fn cancel(&self, run_id: &str) -> dashflow_queue::Result<RunState> {
        self.inner.cancel(run_id).await
    }
    async fn retry(&self, run_id: &str, attempts: i32) -> dashflow_queue::Result<RunState> {
        self.inner.retry(run_id, attempts).await
    }
    async fn sweep(&self, timings: &Timings) -> dashflow_queue::Result<dashflow_queue::SweepReport> {
        self.inner.sweep(timings).await
    }
    async fn get(&self, run_id: &str) -> dashflow_queue::Result<Option<dashflow_queue::RunRecord>> {
        self.inner.get(run_id).await
    }
    async fn list(&self, filter: &dashflow_queue::RunFilter) -> dashflow_queue::Result<Vec<dashflow_queue::RunRecord>> {
        self.inner.list(filter).await
    }
    async fn stats(&self) -> dashflow_queue::Result<Vec<dashflow_queue::QueueStat>> {
        self.inner.stats().await
    }
    async fn workers(&self) -> dashflow_queue::Result<Vec<dashflow_queue::WorkerRecord>> {
        self.inner.workers().await
    }
    fn fenced_checkpointer(&self, lease: &dashflow_queue::Lease) -> Arc<dyn dashflow_checkpoint::Checkpointer> {
        self.inner.fenced_checkpointer(lease)
    }
    fn checkpointer(&self) -> Arc<dyn dashflow_checkpoint::Checkpointer> {
        self.inner.checkpointer()
    }
}

/// A heartbeat that lands between a run's finish and its worker letting go of it sees the run
/// ended: the run is not counted lost, nor stopped, and its finish is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_while_a_finish_is_reported_takes_the_run_for_finished_not_lost() {
    let test = "a_heartbeat_while_a_finish_is_reported_takes_the_run_for_finished_not_lost";
    let Some((_db, inner)) = setup(test).await else { return };
    let queue: Arc<dyn RunQueue> = Arc::new(SlowFinish { inner, heartbeats: tokio::sync::watch::channel(0).0 });
    let executions = Arc::new(Mutex::new(Vec::new()));
    let graph = RegisteredGraph::new("chat", "v1", chat(&executions));
    let worker = Worker::builder(Arc::clone(&queue)).graph(graph.clone()).timings(Timings::short()).build().unwrap();
    let counters = worker.counters();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move { worker.run(async move { drop(stopped.await) }).await.unwrap() });
    let client = Client::new(Arc::clone(&queue)).with_poll_interval(Duration::from_millis(20));
    let (run_id, _) = client.submit(&graph, RunRequest::invoke(Chat::default()).thread("c")).await.unwrap();
    assert_eq!(client.wait(&run_id, Duration::from_secs(30)).await.unwrap().state, RunState::Interrupted);
    drop(stop);
    task.await.unwrap();
    let read = |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(read(&counters.finished), 1, "the finish was not counted");
    assert_eq!(read(&counters.lease_lost), 0, "a finished run was counted lost");
}

/// A worker runs 8 runs at once unless told otherwise, and at least one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_has_eight_slots_by_default_and_at_least_one() {
    let test = "a_worker_has_eight_slots_by_default_and_at_least_one";
    let Some((_db, queue)) = setup(test).await else { return };
    let executions = Arc::new(Mutex::new(Vec::new()));
    let graph = RegisteredGraph::new("chat", "v1", chat(&executions));
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for (id, slots) in [("default", None), ("zero", Some(0))] {
        let mut builder = Worker::builder(Arc::clone(&queue) as Arc<dyn RunQueue>)
            .graph(graph.clone())
            .worker_id(id)
            .timings(Timings::short());
        if let Some(slots) = slots {
            builder = builder.slots(slots);
        }
        let worker = builder.build().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tasks.push(tokio::spawn(async move { worker.run(async move { drop(stopped.await) }).await.unwrap() }));
        stops.push(stop);
    }
    // A worker registers before it claims: runs until both are listed, with no sleep.
    let client = Client::new(Arc::clone(&queue) as Arc<dyn RunQueue>).with_poll_interval(Duration::from_millis(20));
    for n in 0.. {
        let thread = format!("t{n}");
        let (run_id, _) = client.submit(&graph, RunRequest::invoke(Chat::default()).thread(thread)).await.unwrap();
        client.wait(&run_id, Duration::from_secs(30)).await.unwrap();
        let workers = queue.workers().await.unwrap();
        if workers.len() == 2 {
            let slots: std::collections::HashMap<String, i32> =
                workers.iter().map(|worker| (worker.info.worker_id.clone(), worker.info.slots)).collect();
            assert_eq!((slots["default"], slots["zero"]), (8, 1));
            break;
        }
    }
    drop(stops);
    for task in tasks {
        task.await.unwrap();
    }
}
