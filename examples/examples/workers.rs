//! Worker processes on PostgreSQL: two workers share a run queue, a client submits runs, one
//! worker is killed in the middle of a run, and the other finishes everything.
//!
//! ```text
//! # a PostgreSQL you can write to, e.g. in a container:
//! docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16
//! cargo run --example workers -- demo postgres://postgres@127.0.0.1:5432/postgres
//!
//! # or by hand, in separate terminals:
//! cargo run --example workers -- worker postgres://...      # as many as you like
//! cargo run --example workers -- submit postgres://... 20   # submit 20 runs and wait for them
//! dashflow workers list --db postgres://...                  # who is alive, what each runs
//! dashflow queue stats --db postgres://...                   # runs per state, dead rows, oldest xmin
//! dashflow runs list --postgres postgres://...               # each run's worker, attempt, queue latency
//! dashflow runs show RUN_ID --postgres postgres://...        # one run and the end of its event stream
//! ```

#![allow(clippy::print_stdout, reason = "examples print their results")]

use std::process::{Child, Command as Process};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dashflow::distributed::{
    Client, PostgresRunQueue, RegisteredGraph, RunQueue, RunRequest, RunState, Worker, WorkerState, shutdown_signal,
};
use dashflow::prelude::*;

/// A ten-step pipeline whose steps take a little while, so a kill lands mid-run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Job {
    #[reduce(append)]
    steps: Vec<String>,
}

fn pipeline() -> Result<RegisteredGraph<Job>> {
    let mut graph = StateGraph::<Job>::named("pipeline");
    let names: Vec<String> = (1..=10).map(|n| format!("step{n}")).collect();
    for name in &names {
        let step = name.clone();
        graph.add_node(name.as_str(), move |_: Arc<Job>| {
            let step = step.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(JobUpdate::default().steps(vec![format!("{step} by pid {}", std::process::id())]))
            }
        });
    }
    graph.add_edge(START, names[0].as_str());
    for pair in names.windows(2) {
        graph.add_edge(pair[0].as_str(), pair[1].as_str());
    }
    graph.add_edge(names[9].as_str(), END);
    // The workers checkpoint through the queue: no checkpointer on the graph itself. Each
    // process's run log (`dashflow runs list`) shows its attempts with their worker tags.
    Ok(RegisteredGraph::new("pipeline", "v1", graph.compile()?))
}

async fn queue(url: &str) -> Result<PostgresRunQueue> {
    PostgresRunQueue::connect(url).await.context("cannot open the run queue (is PostgreSQL running at the URL?)")
}

async fn worker(url: &str) -> Result<()> {
    let queue: Arc<dyn RunQueue> = Arc::new(queue(url).await?);
    let worker = Worker::builder(queue).graph(pipeline()?).slots(4).build()?;
    println!("worker {} (pid {}) running; SIGTERM or Ctrl-C stops it", worker.id(), std::process::id());
    worker.run(shutdown_signal()).await?;
    println!("worker stopped");
    Ok(())
}

async fn submit(url: &str, runs: usize) -> Result<Vec<String>> {
    let client = Client::new(Arc::new(queue(url).await?));
    let pipeline = pipeline()?;
    let mut ids = Vec::new();
    for n in 0..runs {
        // A fresh thread per run (a thread has one active run at a time).
        let thread = format!("job-{}-{n}", std::process::id());
        ids.push(client.submit(&pipeline, RunRequest::invoke(Job::default()).thread(thread)).await?.0);
    }
    println!("submitted {runs} runs");
    Ok(ids)
}

async fn wait_all(url: &str, ids: &[String]) -> Result<()> {
    let client = Client::new(Arc::new(queue(url).await?));
    let pipeline = pipeline()?;
    for id in ids {
        let finished = client.wait_for_state(&pipeline, id, Duration::from_secs(120)).await?;
        let steps = finished.state.map(|snapshot| snapshot.state.steps.len()).unwrap_or_default();
        println!(
            "run {id}: {} after {} attempt(s), last worker {}, {steps} steps",
            finished.run.state,
            finished.run.attempt,
            finished.run.worker_id.as_deref().unwrap_or("-")
        );
        if finished.run.state != RunState::Completed || steps != 10 {
            bail!("run {id} did not complete all ten steps once");
        }
    }
    Ok(())
}

fn spawn_worker(url: &str) -> Result<Child> {
    Process::new(std::env::current_exe()?).args(["worker", url]).spawn().context("cannot start a worker process")
}

async fn demo(url: &str) -> Result<()> {
    let mut first = spawn_worker(url)?;
    let mut second = spawn_worker(url)?;
    let observer = queue(url).await?;
    let started = Instant::now();
    while observer.workers().await?.iter().filter(|w| w.state == WorkerState::Live).count() < 2 {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the workers did not register within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids = submit(url, 8).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("killing worker pid {} (SIGKILL) in the middle of its runs", first.id());
    first.kill()?;
    first.wait()?;
    wait_all(url, &ids).await?;
    for worker in observer.workers().await? {
        println!("worker {} on {}: {}", worker.info.worker_id, worker.info.host, worker.state.as_str());
    }
    println!("every run completed; the killed worker's runs finished on the other one");
    let _ = Process::new("kill").args(["-TERM", &second.id().to_string()]).status();
    second.wait()?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["worker", url] => worker(url).await,
        ["submit", url, runs] => {
            let ids = submit(url, runs.parse().context("the number of runs")?).await?;
            wait_all(url, &ids).await
        }
        ["demo", url] => demo(url).await,
        _ => bail!("usage: workers (demo URL | worker URL | submit URL RUNS)"),
    }
}
