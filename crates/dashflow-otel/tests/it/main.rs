//! The exporter against a real OTLP receiver: the collector's gRPC trace service, served in the
//! test by tonic on the official protocol types, receiving what a real graph's runs export.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashflow_executor::{CompiledGraph, RunConfig};
use dashflow_graph::{END, GraphState, NodeContext, NodeError, NodeOptions, RetryPolicy, START, StateGraph};
use dashflow_otel::{OtelGuard, OtelSink, attributes, trace_parent_tag};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// What the receiver got: every span of every request, with its resource's `service.name`.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    arrived: Arc<Notify>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(|value| format!("{:?}", value.value))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|span| (service.clone(), span)));
            }
        }
        drop(spans);
        self.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Received {
    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().iter().map(|(_, span)| span.clone()).collect()
    }
}

/// A receiver on a free loopback port; its endpoint.
async fn receiver() -> (Received, String) {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let service = TraceServiceServer::new(received.clone());
    tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
    (received, endpoint)
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Ticket {
    #[reduce(append)]
    log: Vec<String>,
}

fn step(
    name: &'static str,
) -> impl Fn(Arc<Ticket>) -> std::future::Ready<Result<TicketUpdate, NodeError>> + Send + Sync {
    move |_| std::future::ready(Ok(TicketUpdate::default().log(vec![name.to_owned()])))
}

/// classify, then billing and account in parallel (billing fails its first attempt and is
/// retried), then draft, which fails: a parallel step, a retry and a failure.
fn ticket_graph() -> CompiledGraph<Ticket> {
    let mut graph = StateGraph::<Ticket>::named("tickets");
    let retry = RetryPolicy::new(2).backoff(Duration::from_millis(1), 1.0, Duration::from_millis(1));
    graph
        .add_node("classify", step("classify"))
        .add_node_with(
            "billing",
            |_: Arc<Ticket>, ctx: NodeContext| {
                std::future::ready(if ctx.attempt() == 1 {
                    Err(NodeError::msg("invoice service busy"))
                } else {
                    Ok(TicketUpdate::default().log(vec!["billing".to_owned()]))
                })
            },
            NodeOptions::new().retry(retry),
        )
        .add_node("account", step("account"))
        .add_node("draft", |_: Arc<Ticket>| std::future::ready(Err::<TicketUpdate, _>(NodeError::msg("no template"))))
        .add_edge(START, "classify")
        .add_parallel_edges("classify", ["billing", "account"])
        .add_join(["billing", "account"], "draft")
        .add_edge("draft", END);
    CompiledGraph::new(graph.build().unwrap())
}

/// Flushes off the runtime's threads (a flush blocks), failing the test after 20 s.
async fn flush(sink: &OtelSink) {
    let sink = sink.clone();
    tokio::task::spawn_blocking(move || sink.flush(Duration::from_secs(20))).await.unwrap().unwrap();
}

fn start(endpoint: &str) -> (OtelSink, OtelGuard) {
    OtelSink::builder().endpoint(endpoint).service_name("tickets-test").start().unwrap()
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

fn string(span: &Span, key: &str) -> Option<String> {
    match attribute(span, key)? {
        Value::StringValue(value) => Some(value.clone()),
        _ => None,
    }
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attribute(span, key)? {
        Value::IntValue(value) => Some(*value),
        _ => None,
    }
}

fn failed(span: &Span) -> bool {
    span.status.as_ref().is_some_and(|status| status.code == StatusCode::Error as i32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_a_parallel_step_a_retry_and_a_failure_exports_its_span_tree() {
    let (received, endpoint) = receiver().await;
    let (sink, guard) = start(&endpoint);
    let app = ticket_graph().with_callback(sink.clone());
    let error = app.invoke(Ticket::default(), RunConfig::thread("ticket-42")).await.unwrap_err();
    assert!(error.to_string().contains("draft"), "{error}");
    flush(&sink).await;
    tokio::task::spawn_blocking(move || drop(guard)).await.unwrap();

    let spans = received.spans();
    let by_name = |name: &str| spans.iter().filter(|span| span.name == name).collect::<Vec<_>>();
    let runs = by_name("dashflow.run");
    assert_eq!(runs.len(), 1, "{spans:#?}");
    let run = runs[0];
    assert!(run.parent_span_id.is_empty(), "a run without a caller's trace is a root span");
    assert_eq!(string(run, attributes::GRAPH).as_deref(), Some("tickets"));
    assert_eq!(string(run, attributes::THREAD_ID).as_deref(), Some("ticket-42"));
    assert_eq!(string(run, attributes::OUTCOME).as_deref(), Some("failed"));
    assert_eq!(string(run, attributes::ERROR_TYPE).as_deref(), Some("_OTHER"));
    assert!(failed(run));
    assert!(run.events.iter().any(|event| event.name == "exception"));
    let run_id = string(run, attributes::RUN_ID).unwrap();

    // Every span is in the run's trace and names the run.
    for span in &spans {
        assert_eq!(span.trace_id, run.trace_id, "{span:?}");
        assert_eq!(string(span, attributes::RUN_ID).as_deref(), Some(run_id.as_str()));
    }

    // Three supersteps, children of the run; the failed one is an error.
    let steps = by_name("dashflow.superstep");
    let step_of: HashMap<i64, &Span> =
        steps.iter().map(|span| (int(span, attributes::SUPERSTEP).unwrap(), *span)).collect();
    assert_eq!(steps.len(), 3, "{steps:#?}");
    for span in &steps {
        assert_eq!(span.parent_span_id, run.span_id);
        assert!(
            span.start_time_unix_nano >= run.start_time_unix_nano && span.end_time_unix_nano <= run.end_time_unix_nano
        );
    }
    assert!(!failed(step_of[&1]) && !failed(step_of[&2]));
    assert!(failed(step_of[&3]));

    // Tasks under their superstep: the parallel step holds billing twice (the retry) and account.
    let mut tasks: Vec<(i64, String, i64, bool)> = by_name("dashflow.task")
        .into_iter()
        .map(|span| {
            let step = int(span, attributes::SUPERSTEP).unwrap();
            assert_eq!(span.parent_span_id, step_of[&step].span_id, "{span:?}");
            (step, string(span, attributes::NODE).unwrap(), int(span, attributes::ATTEMPT).unwrap(), failed(span))
        })
        .collect();
    tasks.sort();
    assert_eq!(
        tasks,
        [
            (1, "classify".to_owned(), 1, false),
            (2, "account".to_owned(), 1, false),
            (2, "billing".to_owned(), 1, true),
            (2, "billing".to_owned(), 2, false),
            (3, "draft".to_owned(), 1, true),
        ]
    );
    let billing_failure = by_name("dashflow.task")
        .into_iter()
        .find(|span| string(span, attributes::NODE).as_deref() == Some("billing") && failed(span))
        .unwrap();
    assert_eq!(billing_failure.status.as_ref().unwrap().message, "invoice service busy");
    assert_eq!(string(billing_failure, attributes::TASK_OUTCOME).as_deref(), Some("error"));
    let service = received.spans.lock().unwrap()[0].0.clone();
    assert!(service.contains("tickets-test"), "{service}");
}

/// `count` appends to the log and loops back to itself until the log holds three entries.
fn loop_graph() -> CompiledGraph<Ticket> {
    let mut graph = StateGraph::<Ticket>::named("loop");
    graph.add_node("count", step("count")).add_edge(START, "count").add_conditional_edges(
        "count",
        |ticket: &Ticket| if ticket.log.len() < 3 { "again" } else { "done" },
        [("again", "count"), ("done", END)],
    );
    CompiledGraph::new(graph.build().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_ends_where_the_next_starts_and_carries_its_routing_decision() {
    // Alone, the sink takes each batch as it is; before another batching sink, it is lent
    // the batch and builds the events it wants from it: the spans are the same.
    for lent in [false, true] {
        let (received, endpoint) = receiver().await;
        let (sink, guard) = start(&endpoint);
        let mut app = loop_graph().with_callback(sink.clone());
        if lent {
            app = app.with_callback(dashflow_telemetry::LiveRuns::new());
        }
        app.invoke(Ticket::default(), RunConfig::new()).await.unwrap();
        flush(&sink).await;
        tokio::task::spawn_blocking(move || drop(guard)).await.unwrap();

        let spans = received.spans();
        let run = spans.iter().find(|span| span.name == "dashflow.run").unwrap();
        assert!(run.events.iter().all(|event| event.name != "dashflow.routed"), "lent: {lent}");
        let mut steps: Vec<&Span> = spans.iter().filter(|span| span.name == "dashflow.superstep").collect();
        steps.sort_by_key(|span| int(span, attributes::SUPERSTEP));
        assert_eq!(steps.len(), 3, "lent: {lent}: {steps:#?}");
        assert!(steps[0].start_time_unix_nano >= run.start_time_unix_nano);
        for pair in steps.windows(2) {
            assert_eq!(pair[0].end_time_unix_nano, pair[1].start_time_unix_nano, "lent: {lent}");
        }
        assert_eq!(steps[2].end_time_unix_nano, run.end_time_unix_nano, "the last step ends with the run");
        let labels: Vec<String> = steps
            .iter()
            .map(|step| {
                assert_eq!(step.parent_span_id, run.span_id);
                let routed: Vec<_> = step.events.iter().filter(|event| event.name == "dashflow.routed").collect();
                assert_eq!(routed.len(), 1, "lent: {lent}: {step:?}");
                let label = routed[0].attributes.iter().find(|kv| kv.key == "dashflow.route.label").unwrap();
                format!("{:?}", label.value.as_ref().unwrap().value.as_ref().unwrap())
            })
            .collect();
        assert!(labels[0].contains("again") && labels[1].contains("again") && labels[2].contains("done"), "{labels:?}");
        for task in spans.iter().filter(|span| span.name == "dashflow.task") {
            let step = steps.iter().find(|step| step.span_id == task.parent_span_id).unwrap();
            assert!(task.start_time_unix_nano >= step.start_time_unix_nano);
            assert!(task.end_time_unix_nano <= step.end_time_unix_nano);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_given_the_callers_span_joins_the_callers_trace() {
    let (received, endpoint) = receiver().await;
    let (sink, guard) = start(&endpoint);
    let caller = SpanContext::new(
        TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c_u128),
        SpanId::from(0xb7ad_6b71_6920_3331_u64),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let mut graph = StateGraph::<Ticket>::named("joined");
    graph.add_node("only", step("only")).add_edge(START, "only").add_edge("only", END);
    let app = CompiledGraph::new(graph.build().unwrap()).with_callback(sink.clone());
    app.invoke(Ticket::default(), RunConfig::new().tag(trace_parent_tag(&caller).unwrap())).await.unwrap();
    flush(&sink).await;
    tokio::task::spawn_blocking(move || drop(guard)).await.unwrap();

    let spans = received.spans();
    let run = spans.iter().find(|span| span.name == "dashflow.run").unwrap();
    assert_eq!(run.trace_id, caller.trace_id().to_bytes().to_vec());
    assert_eq!(run.parent_span_id, caller.span_id().to_bytes().to_vec());
    assert!(!failed(run));
    assert!(spans.iter().all(|span| span.trace_id == run.trace_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_exports_a_finished_run_without_a_flush() {
    let (received, endpoint) = receiver().await;
    let (sink, guard) = start(&endpoint);
    let mut graph = StateGraph::<Ticket>::named("guarded");
    graph.add_node("only", step("only")).add_edge(START, "only").add_edge("only", END);
    let app = CompiledGraph::new(graph.build().unwrap()).with_callback(sink.clone());
    app.invoke(Ticket::default(), RunConfig::new()).await.unwrap();
    // Dropping the guard blocks until the exporter's thread has exported and stopped.
    tokio::task::spawn_blocking(move || drop(guard)).await.unwrap();
    let names: Vec<String> = received.spans().into_iter().map(|span| span.name).collect();
    assert!(names.contains(&"dashflow.run".to_owned()), "{names:?}");
    assert_eq!(sink.stats().exported, names.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_fails_no_run_and_counts_the_lost_spans() {
    // A port nothing listens on: bind one, then free it.
    let endpoint = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let (sink, guard) = OtelSink::builder().endpoint(endpoint).timeout(Duration::from_secs(2)).start().unwrap();
    let mut graph = StateGraph::<Ticket>::named("unreachable");
    graph.add_node("only", step("only")).add_edge(START, "only").add_edge("only", END);
    let app = CompiledGraph::new(graph.build().unwrap()).with_callback(sink.clone());
    app.invoke(Ticket::default(), RunConfig::new()).await.unwrap();
    let error = tokio::task::spawn_blocking({
        let sink = sink.clone();
        move || sink.flush(Duration::from_secs(30))
    })
    .await
    .unwrap()
    .unwrap_err();
    assert!(matches!(error, dashflow_otel::Error::Export { .. }), "{error}");
    assert!(sink.stats().failed >= 3, "{:?}", sink.stats());
    drop(guard);
}
