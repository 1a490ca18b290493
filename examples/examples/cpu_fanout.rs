//! CPU-heavy nodes: the same fan-out of scoring tasks with and without `.cpu_bound()`.
//!
//! Each `score` task computes without awaiting, a stand-in for parsing or scoring. Without
//! `.cpu_bound()` the tasks run on the async runtime's threads, and everything else on that
//! runtime waits for them: here a ticker that wants to wake every millisecond, as a
//! heartbeat or another request would. With `.cpu_bound()` they run on the process's
//! work-stealing pool and the runtime stays free. On a current-thread runtime the difference
//! is starker: without it the tasks run one after another on the runtime's only thread.
//!
//! ```text
//! cargo run --release --example cpu_fanout
//! ```
#![allow(clippy::print_stdout, reason = "examples print their results")]

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use dashflow::prelude::*;
use tokio::runtime::{Builder, Runtime};

/// Scoring tasks per run, and how long each computes.
const TASKS: u64 = 16;
const WORK: Duration = Duration::from_millis(20);

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Batch {
    /// The items to score.
    items: Vec<u64>,
    /// The item one `score` task works on: set only in each `Send`'s own input.
    item: u64,
    #[reduce(add)]
    total: u64,
    /// The threads the `score` tasks ran on.
    #[reduce(union)]
    threads: BTreeSet<String>,
}

/// Busy for `work` without awaiting, as a parser or a scoring model would be.
fn compute(item: u64, work: Duration) -> u64 {
    let started = Instant::now();
    let mut x = item;
    while started.elapsed() < work {
        x = black_box(x.rotate_left(7) ^ 0x9E37_79B9);
    }
    item * 2
}

/// START -> one `score` task per item -> END, with `options` on `score`.
fn scoring_graph(options: NodeOptions, work: Duration) -> anyhow::Result<CompiledGraph<Batch>> {
    let mut graph = StateGraph::<Batch>::named("scoring");
    graph
        .add_node_with(
            "score",
            move |task: Arc<Batch>| async move {
                let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
                Ok(BatchUpdate::default().total(compute(task.item, work)).threads(BTreeSet::from([thread])))
            },
            options,
        )
        .add_send_edges(
            START,
            |batch: &Batch| {
                let task = |&item: &u64| dashflow::Send::new("score", Batch { item, ..Batch::default() });
                batch.items.iter().map(task).collect()
            },
            ["score"],
        )
        .add_edge("score", END);
    Ok(graph.compile()?.without_default_observers())
}

/// What one run showed.
struct Report {
    makespan: Duration,
    total: u64,
    threads: BTreeSet<String>,
    /// How late each of the ticker's wake-ups was, sorted.
    lateness: Vec<Duration>,
}

/// Runs `tasks` scoring tasks on `runtime` with `options`, while a ticker on the same runtime
/// sleeps 1 ms in a loop and notes how late it wakes.
fn run(runtime: &Runtime, options: NodeOptions, tasks: u64, work: Duration) -> anyhow::Result<Report> {
    let app = scoring_graph(options, work)?;
    runtime.block_on(async {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let ticker = tokio::spawn(async move {
            let mut lateness = Vec::new();
            loop {
                let asleep = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                lateness.push(asleep.elapsed().saturating_sub(Duration::from_millis(1)));
                if stopped.try_recv().is_ok() {
                    return lateness;
                }
            }
        });
        let started = Instant::now();
        let batch = Batch { items: (1..=tasks).collect(), ..Batch::default() };
        // Spawned, as a server runs a request.
        let done = tokio::spawn(async move { app.invoke(batch, RunConfig::new()).await }).await??;
        let makespan = started.elapsed();
        let _ = stop.send(());
        let mut lateness = ticker.await?;
        lateness.sort();
        Ok(Report { makespan, total: done.state.total, threads: done.state.threads, lateness })
    })
}

fn main() -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let runtimes = [
        (format!("multi-thread runtime, {cores} workers"), Builder::new_multi_thread().enable_all().build()?),
        ("current-thread runtime".to_owned(), Builder::new_current_thread().enable_all().build()?),
    ];
    println!("{TASKS} tasks of {WORK:?} of computation each, on {cores} cores\n");
    for (name, runtime) in &runtimes {
        println!("{name}:");
        for (label, options) in
            [("without .cpu_bound()", NodeOptions::new()), ("with .cpu_bound()   ", NodeOptions::new().cpu_bound())]
        {
            let report = run(runtime, options, TASKS, WORK)?;
            anyhow::ensure!(report.total == (1..=TASKS).map(|item| item * 2).sum::<u64>(), "a score went missing");
            let at = |q: f64| report.lateness[((report.lateness.len() - 1) as f64 * q) as usize];
            println!(
                "  {label}: done in {:>4} ms; the ticker woke {:.1} ms late at the median, {:.1} ms at worst; ran on {}",
                report.makespan.as_millis(),
                at(0.5).as_secs_f64() * 1e3,
                at(1.0).as_secs_f64() * 1e3,
                report.threads.iter().cloned().collect::<Vec<_>>().join(", "),
            );
        }
        println!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both runtimes: without `.cpu_bound()` the tasks run on the runtime's threads, with it
    /// on the CPU pool's, and every task is counted either way.
    #[test]
    fn cpu_bound_moves_the_scoring_off_the_runtime_on_both_flavours() {
        let runtimes = [
            Builder::new_multi_thread().worker_threads(2).thread_name("example-runtime").enable_all().build().unwrap(),
            Builder::new_current_thread().enable_all().build().unwrap(),
        ];
        let expected_total = (1..=4).map(|item| item * 2).sum::<u64>();
        for runtime in &runtimes {
            let plain = run(runtime, NodeOptions::new(), 4, Duration::ZERO).unwrap();
            let cpu = run(runtime, NodeOptions::new().cpu_bound(), 4, Duration::ZERO).unwrap();
            assert_eq!((plain.total, cpu.total), (expected_total, expected_total));
            assert!(!plain.lateness.is_empty() && !cpu.lateness.is_empty());
            let on_pool = |report: &Report| report.threads.iter().all(|t| t.starts_with("dashflow-global-pool"));
            assert!(on_pool(&cpu), "{:?}", cpu.threads);
            assert!(plain.threads.iter().all(|t| !t.starts_with("dashflow-global-pool")), "{:?}", plain.threads);
        }
    }
}
