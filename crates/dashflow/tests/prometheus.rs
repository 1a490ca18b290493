//! `serve_prometheus`: graphs compiled after it report run and node metrics on the endpoint.

use std::net::{SocketAddr, TcpListener};

use dashflow::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Tally {
    #[reduce(add)]
    total: u64,
}

/// One scrape of `http://{addr}/metrics`; `None` while the listener is not accepting yet.
async fn scrape(addr: SocketAddr) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    Some(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphs_compiled_after_serve_prometheus_expose_task_counters_and_durations() {
    // A free port: bind, read it, release it for the exporter.
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    dashflow::serve_prometheus(addr).unwrap();

    let mut graph = StateGraph::<Tally>::named("metered");
    graph
        .add_node("count", |_: Arc<Tally>| async { Ok(TallyUpdate::default().total(1_u64)) })
        .add_edge(START, "count")
        .add_edge("count", END);
    let app = graph.compile().unwrap();
    for _ in 0..3 {
        app.invoke(Tally::default(), RunConfig::new()).await.unwrap();
    }

    // The exporter binds its listener on a task of its own: try until it accepts (bounded).
    let mut body = None;
    for _ in 0..10_000 {
        if let Some(response) = scrape(addr).await {
            body = Some(response);
            break;
        }
        tokio::task::yield_now().await;
    }
    let body = body.expect("the Prometheus endpoint never accepted a connection");
    let tasks = body
        .lines()
        .find(|line| line.starts_with("dashflow_tasks_total") && line.contains("node=\"count\""))
        .unwrap_or_else(|| panic!("no task counter for `count` in:\n{body}"));
    assert!(tasks.contains("graph=\"metered\"") && tasks.ends_with(" 3"), "{tasks}");
    assert!(body.contains("dashflow_task_duration_seconds"), "{body}");
    assert!(
        body.lines()
            .any(|line| line.starts_with("dashflow_runs_finished_total") && line.contains("outcome=\"completed\""))
    );
}
