//! Retries, timeouts, and the typed error a run fails with when retrying does not help.
//!
//! One node calls a flaky exchange-rate service, with a `RetryPolicy` (3 attempts, 10 ms
//! backoff doubling each time) and a 50 ms timeout per attempt. Four scripted services show
//! the cases: two 503s then an answer; a hung call that the timeout cancels; 503s until the
//! attempts run out; and a 400 that is not retried at all.
//!
//! ```text
//! cargo run --release --example retries
//! ```
#![allow(clippy::print_stdout, reason = "examples print their results")]

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use dashflow::prelude::*;
use dashflow::{Event, EventKind};

/// What the service does on one call.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Rate(f64),
    Status(u16),
    Hang,
}

/// An error status from the service, kept typed all the way to the run's error.
#[derive(Debug)]
struct UpstreamError {
    status: u16,
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the rate service answered HTTP {}", self.status)
    }
}

impl std::error::Error for UpstreamError {}

/// A deterministic stand-in for an HTTP client: plays its replies in order, then repeats the last.
struct RateService {
    replies: Mutex<VecDeque<Reply>>,
}

impl RateService {
    fn scripted(replies: &[Reply]) -> Arc<Self> {
        Arc::new(Self { replies: Mutex::new(replies.iter().copied().collect()) })
    }

    async fn usd_to_eur(&self) -> Result<f64, UpstreamError> {
        let reply = {
            let mut replies = self.replies.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if replies.len() > 1 { replies.pop_front() } else { replies.front().copied() }
        };
        match reply {
            Some(Reply::Rate(rate)) => Ok(rate),
            Some(Reply::Status(status)) => Err(UpstreamError { status }),
            Some(Reply::Hang) | None => std::future::pending().await,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Quote {
    usd: f64,
    rate: f64,
    eur: f64,
}

fn quote_graph(service: Arc<RateService>) -> Result<CompiledGraph<Quote>, dashflow::Error> {
    // A node that needs a client captures it; the closure is called once per attempt.
    let fetch_rate = move |_: Arc<Quote>| {
        let service = Arc::clone(&service);
        async move {
            // 5xx errors are worth retrying; anything else is the caller's mistake.
            let rate = service.usd_to_eur().await.map_err(|error| match error.status {
                500..=599 => NodeError::new(error),
                _ => NodeError::permanent(error),
            })?;
            Ok(QuoteUpdate::default().rate(rate))
        }
    };
    let convert = |quote: Arc<Quote>| async move { Ok(QuoteUpdate::default().eur(quote.usd * quote.rate)) };

    let retry = RetryPolicy::new(3).backoff(Duration::from_millis(10), 2.0, Duration::from_millis(100));
    let options = NodeOptions::new().retry(retry).timeout(Duration::from_millis(50));
    let mut graph = StateGraph::<Quote>::named("quote");
    graph
        .add_node_with("fetch_rate", fetch_rate, options)
        .add_node("convert", convert)
        .add_edge(START, "fetch_rate")
        .add_edge("fetch_rate", "convert")
        .add_edge("convert", END);
    // The callback sees every event of every run; here it reports each failed attempt.
    Ok(graph.compile()?.with_callback(|event: &Event| {
        if let EventKind::TaskFinished { node, attempt, error: Some(error), .. } = &event.kind {
            println!("  {node} attempt {attempt} failed: {error}");
        }
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use Reply::{Hang, Rate, Status};
    let scenarios: [(&str, &[Reply]); 4] = [
        ("two 503s, then an answer", &[Status(503), Status(503), Rate(0.92)]),
        ("a hung call, then an answer", &[Hang, Rate(0.92)]),
        ("503 every time", &[Status(503)]),
        ("400 Bad Request", &[Status(400)]),
    ];
    for (title, replies) in scenarios {
        println!("== {title}");
        let app = quote_graph(RateService::scripted(replies))?;
        match app.invoke(Quote { usd: 100.0, ..Quote::default() }, RunConfig::new()).await {
            Ok(result) => {
                let attempts = result.nodes.iter().find(|run| run.node == "fetch_rate").map_or(0, |run| run.attempts);
                println!("  ok: {} USD = {:.2} EUR, after {attempts} attempt(s)", result.state.usd, result.state.eur);
            }
            Err(error) => {
                println!("  error: {error}");
                // The error is typed: which node, how many attempts, why, and the node's own
                // error as the source, still an `UpstreamError` underneath.
                if let dashflow::Error::NodeFailed { attempts, kind, source, .. } = &error {
                    let status = source.downcast_ref::<UpstreamError>().map(|upstream| upstream.status);
                    println!("  typed: {attempts} attempt(s), kind {kind:?}, upstream status {status:?}");
                }
            }
        }
    }
    Ok(())
}
