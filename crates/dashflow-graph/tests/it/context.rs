//! `NodeContext`: what a node knows about its task, and how it emits custom values.

use std::any::Any;
use std::sync::{Arc, Mutex};

use dashflow_graph::__private::RunScope;
use dashflow_graph::{NodeContext, TaskId};
use dashflow_telemetry::{RunId, RunIds};
use futures::future::BoxFuture;

#[test]
fn a_detached_context_is_the_first_attempt_of_step_one() {
    let ctx = NodeContext::detached("fetch");
    assert_eq!(&**ctx.node(), "fetch");
    assert_eq!(ctx.step(), 1);
    assert_eq!(ctx.attempt(), 1);
    assert_eq!(ctx.task_id(), &TaskId { step: 1, node: "fetch".into(), index: 0 },);
    assert_eq!(ctx.thread_id(), None);
    assert!(!ctx.custom_enabled());
}

#[test]
fn a_detached_context_is_a_fresh_top_level_run() {
    let (first, second) = (NodeContext::detached("a"), NodeContext::detached("a"));
    let run = first.run();
    assert_eq!(run.depth, 0);
    assert_eq!(run.parent_run_id, None);
    assert_eq!(run.root_run_id, run.run_id);
    assert_ne!(first.run().run_id, second.run().run_id);
}

#[test]
fn without_a_thread_the_idempotency_key_is_the_run_and_the_task() {
    let ctx = NodeContext::detached("fetch");
    assert_eq!(ctx.idempotency_key(), format!("{}/1:fetch:0", ctx.run().run_id));
    assert_ne!(ctx.idempotency_key(), NodeContext::detached("fetch").idempotency_key());
}

#[test]
fn a_task_id_displays_as_step_node_and_index() {
    let task = TaskId { step: 7, node: "map".into(), index: 3 };
    assert_eq!(task.to_string(), "7:map:3");
}

#[tokio::test]
async fn emit_on_a_detached_context_is_a_no_op_that_completes() {
    let ctx = NodeContext::detached("fetch");
    ctx.emit("progress").await;
    ctx.emit(serde_json::json!({ "done": 3 })).await;
}

/// A scope that records custom values, to see what `emit` delivers.
struct Recorder {
    enabled: bool,
    thread: Option<String>,
    values: Mutex<Vec<(String, serde_json::Value)>>,
    /// What a resume answered to the first interrupt, if anything.
    answer: Option<serde_json::Value>,
}

impl RunScope for Recorder {
    fn custom_enabled(&self) -> bool {
        self.enabled
    }

    fn emit_custom(&self, task: &TaskId, value: serde_json::Value) -> BoxFuture<'static, ()> {
        self.values.lock().unwrap().push((task.to_string(), value));
        Box::pin(async {})
    }

    fn thread_id(&self) -> Option<&str> {
        self.thread.as_deref()
    }

    fn resume_value(&self, _task: &TaskId, index: u32) -> Option<serde_json::Value> {
        (index == 0).then(|| self.answer.clone()).flatten()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn context_with(enabled: bool, thread: Option<&str>) -> (NodeContext, Arc<Recorder>) {
    let recorder = Arc::new(Recorder {
        enabled,
        thread: thread.map(ToOwned::to_owned),
        values: Mutex::new(Vec::new()),
        answer: None,
    });
    let task = TaskId { step: 4, node: "summarize".into(), index: 2 };
    let scope: Arc<dyn RunScope> = Arc::<Recorder>::clone(&recorder);
    let ctx = NodeContext::new(task, 3, RunIds::root(RunId::new()), scope);
    (ctx, recorder)
}

#[test]
fn with_a_thread_the_idempotency_key_is_the_thread_and_the_task() {
    let (ctx, _) = context_with(false, Some("thread-9"));
    assert_eq!(ctx.thread_id(), Some("thread-9"));
    assert_eq!(ctx.attempt(), 3);
    assert_eq!(ctx.idempotency_key(), "thread-9/4:summarize:2");
}

#[tokio::test]
async fn emit_delivers_values_to_a_listening_scope_with_the_task() {
    let (ctx, recorder) = context_with(true, None);
    assert!(ctx.custom_enabled());
    ctx.emit("halfway").await;
    ctx.emit(serde_json::json!({ "tokens": 12 })).await;
    assert_eq!(
        *recorder.values.lock().unwrap(),
        [
            ("4:summarize:2".to_owned(), serde_json::json!("halfway")),
            ("4:summarize:2".to_owned(), serde_json::json!({ "tokens": 12 })),
        ],
    );
}

#[tokio::test]
async fn emit_skips_a_scope_nobody_listens_to() {
    let (ctx, recorder) = context_with(false, None);
    ctx.emit("ignored").await;
    assert!(recorder.values.lock().unwrap().is_empty());
}

#[test]
fn the_scope_can_be_recovered_as_its_concrete_type() {
    let (ctx, _) = context_with(true, None);
    assert!(ctx.scope().as_any().downcast_ref::<Recorder>().is_some());
    let debug = format!("{ctx:?}");
    assert!(debug.contains("summarize") && debug.contains("attempt: 3"), "{debug}");
}

#[test]
fn interrupt_pauses_until_a_resume_answers_and_then_returns_the_answer() {
    let task = TaskId { step: 2, node: "review".into(), index: 0 };
    let run = RunIds::root(RunId::new());
    let unanswered = Arc::new(Recorder { enabled: false, thread: None, values: Mutex::new(Vec::new()), answer: None });
    let ctx = NodeContext::new(task.clone(), 1, run, unanswered);
    let paused = ctx.interrupt(serde_json::json!("approve?")).unwrap_err();
    assert_eq!(paused.interrupt().unwrap().value, serde_json::json!("approve?"));
    assert!(!dashflow_graph::RetryPolicy::new(5).should_retry(1, &paused), "an interrupt is never retried");

    let answered =
        Arc::new(Recorder { enabled: false, thread: None, values: Mutex::new(Vec::new()), answer: Some("yes".into()) });
    let ctx = NodeContext::new(task, 1, run, answered);
    assert_eq!(ctx.interrupt("approve?").unwrap(), serde_json::json!("yes"));
    // A second interrupt in the same node has no answer yet.
    assert!(ctx.interrupt("and this?").unwrap_err().interrupt().is_some());
}
