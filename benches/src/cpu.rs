//! B7, the benchmark that decides where CPU-bound nodes run, and its companions.
//!
//! - B7 `b7`: START -> split -> `Send` x 64 -> crunch (CPU-bound) -> sum -> END; each crunch
//!   spins a calibrated loop for a seeded Pareto cost (alpha 1.5, mean 2 ms, capped at 20x).
//! - B7s `b7s`: the same graph with 1,024 short crunches of [`B7S_COST_US`] each (per-task
//!   overhead).
//! - B7n `b7n`: 8 CPU-bound tasks, each running an 8-way CPU-bound subgraph over 8 of B7's
//!   costs (nested spawns and stealing).
//!
//! Each runs on every [`Route`] for CPU-bound nodes, chosen per graph with
//! `CompiledGraph::with_scheduler_for`, on a multi-thread and a current-thread runtime. While a
//! burst runs, a [`Ticker`] on the same runtime sleeps 1 ms in a loop and records how late it
//! wakes: the latency every other async task of the process sees. The `cpu` bench (`benches/benches/cpu.rs`) runs the
//! grid and prints the figures for `cargo xtask bench`.

use std::fmt;
use std::hint::black_box;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dashflow::prelude::*;
use dashflow::{Placement, Scheduler, TokioScheduler};
use tokio::runtime::Handle;

#[cfg(test)]
mod tests;

/// B7's task costs: a Pareto law of this shape parameter...
pub const PARETO_ALPHA: f64 = 1.5;
/// ...with this mean, in microseconds...
pub const MEAN_COST_US: f64 = 2_000.0;
/// ...capped at this many times the mean.
pub const COST_CAP: f64 = 20.0;
/// B7's tasks.
pub const B7_TASKS: usize = 64;
/// B7s's tasks...
pub const B7S_TASKS: usize = 1_024;
/// ...and the cost of each, in microseconds.
pub const B7S_COST_US: f64 = 50.0;
/// B7n's outer CPU-bound tasks...
pub const B7N_OUTER: usize = 8;
/// ...each running a subgraph of this many.
pub const B7N_INNER: usize = 8;
/// The seed of B7's costs: every run, route and runtime gets the same tasks.
pub const SEED: u64 = 7;

/// The spin loop every task runs: `iterations` dependent steps that the optimiser cannot fold
/// away. Returns a value the caller passes to `black_box`.
pub fn spin(iterations: u64) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..iterations {
        x = black_box(x.rotate_left(5) ^ i).wrapping_mul(0x0000_0100_0000_01B3);
    }
    x
}

/// How fast [`spin`] runs on this machine: nanoseconds per iteration, the fastest of `trials`
/// timed runs (the least disturbed by other processes).
pub fn calibrate(trials: usize) -> f64 {
    const ITERATIONS: u64 = 1_000_000;
    black_box(spin(ITERATIONS));
    (0..trials.max(1))
        .map(|_| {
            let started = Instant::now();
            black_box(spin(black_box(ITERATIONS)));
            started.elapsed().as_nanos() as f64 / ITERATIONS as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// B7's 64 costs in microseconds: Pareto draws (alpha 1.5) from `seed`, scaled so that they
/// sum to 64 times the 2 ms mean, then capped at 20 times the mean.
pub fn pareto_costs_us(tasks: usize, seed: u64) -> Vec<f64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let scale = MEAN_COST_US * (PARETO_ALPHA - 1.0) / PARETO_ALPHA;
    // 1 - f64() lies in (0, 1]: no division by zero.
    let draws: Vec<f64> = (0..tasks).map(|_| scale / (1.0 - rng.f64()).powf(1.0 / PARETO_ALPHA)).collect();
    let sum: f64 = draws.iter().sum();
    let target = MEAN_COST_US * tasks as f64;
    draws.into_iter().map(|cost| (cost * target / sum).min(MEAN_COST_US * COST_CAP)).collect()
}

/// A workload of this module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    /// 64 heavy-tailed tasks.
    B7,
    /// 1,024 short tasks.
    B7s,
    /// 8 tasks, each an 8-way subgraph.
    B7n,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 3] = [Workload::B7, Workload::B7s, Workload::B7n];

    /// The task costs in microseconds: for B7n, the inner tasks, 8 per outer task.
    pub fn costs_us(self) -> Vec<f64> {
        match self {
            Workload::B7 | Workload::B7n => pareto_costs_us(B7_TASKS, SEED),
            Workload::B7s => vec![B7S_COST_US; B7S_TASKS],
        }
    }

    /// The graph of this workload with CPU-bound nodes on `route`, its costs given in spin
    /// iterations.
    pub fn graph(self, route: Route) -> CompiledGraph<Burst> {
        match self {
            Workload::B7 | Workload::B7s => fan_out(route),
            Workload::B7n => nested(route),
        }
    }

    /// The input of one burst: the costs in spin iterations, for `ns_per_iteration`.
    pub fn input(self, ns_per_iteration: f64) -> Burst {
        let costs = self.costs_us().into_iter().map(|us| (us * 1_000.0 / ns_per_iteration).round() as u64).collect();
        Burst { costs, ..Burst::default() }
    }

    /// How many crunch tasks a burst runs.
    pub fn tasks(self) -> u64 {
        self.costs_us().len() as u64
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Workload::B7 => "b7",
            Workload::B7s => "b7s",
            Workload::B7n => "b7n",
        })
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Workload::ALL
            .into_iter()
            .find(|workload| workload.to_string() == name)
            .ok_or_else(|| format!("unknown workload `{name}`; the workloads are b7, b7s and b7n"))
    }
}

/// Where CPU-bound nodes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// Placement ignored: tokio tasks on the runtime's own threads (`TokioScheduler`).
    Tokio,
    /// A thread of tokio's blocking pool per task (`BlockingScheduler`).
    SpawnBlocking,
    /// Rayon's global pool, futures driven as runnables ([`RayonScheduler`]).
    Rayon,
    /// The default route: `WorkStealingPool::global()`.
    Pool,
    /// A pool of the same size whose threads run at niceness [`POOL_NICENESS`], below the
    /// runtime's threads ([`NicePool`]).
    PoolNice,
}

/// The niceness of [`Route::PoolNice`]'s threads: a lower priority than the runtime's (0),
/// which any process may ask for.
pub const POOL_NICENESS: i32 = 10;

impl Route {
    /// Every route, in report order.
    pub const ALL: [Route; 5] = [Route::Tokio, Route::SpawnBlocking, Route::Rayon, Route::Pool, Route::PoolNice];

    /// `graph` with its CPU-bound nodes on this route.
    fn apply<S: GraphState>(self, graph: CompiledGraph<S>) -> CompiledGraph<S> {
        match self {
            Route::Tokio => graph.with_scheduler_for(Placement::CpuBound, TokioScheduler),
            Route::SpawnBlocking => graph.with_scheduler_for(Placement::CpuBound, dashflow::BlockingScheduler),
            Route::Rayon => graph.with_scheduler_for(Placement::CpuBound, RayonScheduler),
            // What `.cpu_bound()` gets with nothing else said.
            Route::Pool => graph,
            Route::PoolNice => graph.with_scheduler_for(Placement::CpuBound, NicePool),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Route::Tokio => "tokio",
            Route::SpawnBlocking => "spawn_blocking",
            Route::Rayon => "rayon",
            Route::Pool => "pool",
            Route::PoolNice => "pool_nice",
        })
    }
}

impl FromStr for Route {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Route::ALL.into_iter().find(|route| route.to_string() == name).ok_or_else(|| {
            format!("unknown route `{name}`; the routes are tokio, spawn_blocking, rayon, pool and pool_nice")
        })
    }
}

/// A tokio runtime flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// Multi-thread with one worker per available core.
    MultiThread,
    /// Current-thread.
    CurrentThread,
}

impl Flavor {
    /// Both flavours, in report order.
    pub const ALL: [Flavor; 2] = [Flavor::MultiThread, Flavor::CurrentThread];

    /// A new runtime of this flavour, timers enabled.
    pub fn runtime(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Flavor::MultiThread => {
                tokio::runtime::Builder::new_multi_thread().worker_threads(cores()).enable_all().build()
            }
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::MultiThread => "multi_thread",
            Flavor::CurrentThread => "current_thread",
        })
    }
}

impl FromStr for Flavor {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Flavor::ALL
            .into_iter()
            .find(|flavor| flavor.to_string() == name)
            .ok_or_else(|| format!("unknown runtime `{name}`; the runtimes are multi_thread and current_thread"))
    }
}

/// The available parallelism: the `P` of the list-scheduling bound, and the multi-thread
/// runtime's workers.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The state of every workload.
#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
pub struct Burst {
    /// The split node's input: one cost per task, in spin iterations (for B7n, 8 per outer task).
    pub costs: Vec<u64>,
    /// One crunch task's cost, set only in its `Send` input.
    pub cost: u64,
    /// Tasks that finished, counted by each crunch.
    #[reduce(add)]
    pub tasks: u64,
    /// Written by the sum node: the tasks counted.
    pub total: u64,
}

/// START -> split -> one crunch per cost (CPU-bound) -> sum -> END.
fn fan_out(route: Route) -> CompiledGraph<Burst> {
    let mut graph = StateGraph::<Burst>::named("cpu_fan_out");
    graph
        .add_node("split", |_: Arc<Burst>| async { Ok(BurstUpdate::default()) })
        .add_node_with(
            "crunch",
            |task: Arc<Burst>| async move {
                black_box(spin(task.cost));
                Ok(BurstUpdate::default().tasks(1u64))
            },
            NodeOptions::new().cpu_bound(),
        )
        .add_node("sum", |state: Arc<Burst>| async move { Ok(BurstUpdate::default().total(state.tasks)) })
        .add_edge(START, "split")
        .add_send_edges(
            "split",
            |state: &Burst| {
                let task = |&cost: &u64| dashflow::Send::new("crunch", Burst { cost, ..Burst::default() });
                state.costs.iter().map(task).collect()
            },
            ["crunch"],
        )
        .add_edge("crunch", "sum")
        .add_edge("sum", END);
    compiled(graph, route)
}

/// START -> split -> one outer task per 8 costs (CPU-bound, each running [`fan_out`] over its
/// 8) -> sum -> END.
fn nested(route: Route) -> CompiledGraph<Burst> {
    let inner = fan_out(route);
    let mut graph = StateGraph::<Burst>::named("cpu_nested");
    graph
        .add_node("split", |_: Arc<Burst>| async { Ok(BurstUpdate::default()) })
        .add_node_with(
            "outer",
            move |task: Arc<Burst>| {
                let inner = inner.clone();
                async move {
                    let input = Burst { costs: task.costs.clone(), ..Burst::default() };
                    let done = inner.invoke(input, RunConfig::new()).await.map_err(NodeError::new)?;
                    Ok(BurstUpdate::default().tasks(done.state.total))
                }
            },
            NodeOptions::new().cpu_bound(),
        )
        .add_node("sum", |state: Arc<Burst>| async move { Ok(BurstUpdate::default().total(state.tasks)) })
        .add_edge(START, "split")
        .add_send_edges(
            "split",
            |state: &Burst| {
                let task =
                    |costs: &[u64]| dashflow::Send::new("outer", Burst { costs: costs.to_vec(), ..Burst::default() });
                state.costs.chunks(B7N_INNER).map(task).collect()
            },
            ["outer"],
        )
        .add_edge("outer", "sum")
        .add_edge("sum", END);
    compiled(graph, route)
}

/// The graph without observers (the executor's own `CompiledGraph::new`): the benchmark
/// measures scheduling, not the run log.
fn compiled(graph: StateGraph<Burst>, route: Route) -> CompiledGraph<Burst> {
    match graph.build() {
        Ok(graph) => route.apply(CompiledGraph::new(graph)),
        // The workloads are fixed graphs; failing to build one is a bug in this file.
        Err(error) => panic!("a B7 graph is invalid: {error}"),
    }
}

/// Runs one burst of `workload` and checks that every task ran.
pub async fn burst(app: &CompiledGraph<Burst>, workload: Workload, input: Burst) -> Result<(), String> {
    let done = app.invoke(input, RunConfig::new()).await.map_err(|e| format!("{workload}: {e}"))?;
    if done.state.total == workload.tasks() {
        Ok(())
    } else {
        Err(format!("{workload} counted {} tasks, expected {}", done.state.total, workload.tasks()))
    }
}

/// A bench-only scheduler on rayon's global pool: each task is an `async-task` runnable that
/// `rayon::spawn` polls, with the spawner's tokio runtime entered, so a task that awaits (an
/// outer B7n task waiting for its subgraph) frees its rayon thread instead of blocking it. A
/// `block_on` per task would deadlock B7n once every rayon thread waits on tasks queued
/// behind it.
#[derive(Clone, Copy, Debug, Default)]
pub struct RayonScheduler;

type Runnable = async_task::Runnable<Option<Handle>>;

impl Scheduler for RayonScheduler {
    fn spawn(&self, task: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) {
        let schedule = |runnable: Runnable| {
            rayon::spawn(move || {
                let handle = runnable.metadata().clone();
                let _entered = handle.as_ref().map(Handle::enter);
                runnable.run();
            });
        };
        let (runnable, task) =
            async_task::Builder::new().metadata(Handle::try_current().ok()).spawn(move |_| task, schedule);
        task.detach();
        runnable.schedule();
    }

    fn runs_single_tasks_inline(&self) -> bool {
        false
    }
}

/// The process's one pool for [`Route::PoolNice`], shared by every graph that uses it (B7n's
/// outer and inner graphs), started on first use like `WorkStealingPool::global()`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NicePool;

impl NicePool {
    fn pool() -> &'static dashflow::WorkStealingPool {
        static POOL: std::sync::OnceLock<dashflow::WorkStealingPool> = std::sync::OnceLock::new();
        POOL.get_or_init(|| {
            let pool = dashflow::WorkStealingPool::builder()
                .threads(cores())
                .thread_name("b7-nice-pool")
                .niceness(POOL_NICENESS)
                .build();
            pool.unwrap_or_else(|error| panic!("cannot start B7's nice pool: {error}"))
        })
    }
}

impl Scheduler for NicePool {
    fn spawn(&self, task: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) {
        Self::pool().spawn(task);
    }

    fn runs_single_tasks_inline(&self) -> bool {
        false
    }
}

/// A tokio task that sleeps 1 ms in a loop and records how late each wake-up is.
pub struct Ticker {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Duration>>,
}

impl Ticker {
    /// Starts ticking on the current runtime.
    pub fn start() -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut lateness = Vec::with_capacity(1_024);
            // At least one tick, and the one under way when told to stop: the ticks cover
            // the whole time between start and stop.
            loop {
                let asleep = Instant::now();
                tokio::time::sleep(TICK).await;
                lateness.push(asleep.elapsed().saturating_sub(TICK));
                if flag.load(Ordering::Relaxed) {
                    return lateness;
                }
            }
        });
        Ticker { stop, task }
    }

    /// Stops ticking and returns the lateness of every tick.
    pub async fn stop(self) -> Result<Vec<Duration>, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.map_err(|e| format!("the ticker failed: {e}"))
    }
}

/// The ticker's period.
pub const TICK: Duration = Duration::from_millis(1);

/// The `q` quantile (0 to 1) of `values` by nearest rank; `values` need not be sorted. Zero
/// for no values.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The process's threads now, from `/proc/self/status`.
pub fn threads_now() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
        .ok_or_else(|| "/proc/self/status has no `Threads:` line".to_owned())
}

/// The CPU time (user and system) the process has used so far, all threads included.
pub fn cpu_time() -> Result<Duration, String> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).map_err(|e| format!("getrusage: {e}"))?;
    let micros = |time: nix::sys::time::TimeVal| {
        let micros = time.tv_sec() as i128 * 1_000_000 + i128::from(time.tv_usec());
        Duration::from_micros(u64::try_from(micros).unwrap_or(0))
    };
    Ok(micros(usage.user_time()) + micros(usage.system_time()))
}

/// The most threads the process ran at once while it was sampling (every 2 ms, from a thread
/// of its own that is not counted).
pub struct PeakThreads {
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<Result<u64, String>>,
}

impl PeakThreads {
    /// Starts sampling.
    pub fn start() -> Result<PeakThreads, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let sampler = std::thread::Builder::new()
            .name("b7-thread-sampler".into())
            .spawn(move || {
                let mut peak = 0;
                loop {
                    // Minus this sampler.
                    peak = peak.max(threads_now()?.saturating_sub(1));
                    if flag.load(Ordering::Relaxed) {
                        return Ok(peak);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
            .map_err(|e| format!("cannot start the thread sampler: {e}"))?;
        Ok(PeakThreads { stop, sampler })
    }

    /// Stops sampling and returns the peak.
    pub fn stop(self) -> Result<u64, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().map_err(|_| "the thread sampler panicked".to_owned())?
    }
}
