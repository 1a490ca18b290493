//! B7, B7s and B7n (see `dashflow_benches::cpu`): every workload on every route for CPU-bound
//! nodes, on a multi-thread and a current-thread runtime. Run through `cargo xtask bench`,
//! which reads the `metric` lines this prints and makes the table and the decision.
//!
//! Each cell of the grid (workload, runtime, route) runs in a process of its own, so that
//! threads, CPU time and pools started by one route (the global pool, rayon's) never count
//! against another. The parent calibrates the spin loop once and passes it to every cell, so
//! every cell does the same work. The ticker's idle baseline is paired with the bursts: after
//! each burst, the ticker runs alone for as long as the burst took, so that both see the same
//! load from the rest of the machine.
//!
//! ```text
//! cargo bench -p dashflow-benches --bench cpu -- [--quick] [--only b7|b7s|b7n]
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use dashflow_benches::cpu::{
    Flavor, PeakThreads, Route, Ticker, Workload, burst, calibrate, cores, cpu_time, quantile,
};

/// Bursts per cell, after warm-up bursts that are not measured.
const RUNS: usize = 30;
const WARM_UP: usize = 2;
/// The same for `--quick`.
const QUICK_RUNS: usize = 5;
const QUICK_WARM_UP: usize = 1;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().position(|arg| arg == "--cell") {
        Some(at) => Cell::parse(&args[at + 1..]).and_then(|cell| cell.run()),
        None => grid(&args),
    };
    if let Err(error) = result {
        eprintln!("B7: {error}");
        std::process::exit(1);
    }
}

/// Runs every cell, each in a child process, and passes their lines through.
#[allow(clippy::print_stdout, reason = "`cargo xtask bench` reads the cells' lines from stdout")]
fn grid(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|arg| arg == "--quick");
    let only: Option<Workload> = match args.iter().position(|arg| arg == "--only") {
        Some(at) => Some(args.get(at + 1).ok_or("`--only` needs a workload: b7, b7s or b7n")?.parse()?),
        None => None,
    };
    let (runs, warm_up) = if quick { (QUICK_RUNS, QUICK_WARM_UP) } else { (RUNS, WARM_UP) };
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this benchmark's executable: {e}"))?;
    metric("b7", "load_before", load_average()?);
    let ns_per_iteration = calibrate(20);
    metric("b7", "ns_per_iteration", ns_per_iteration);
    metric("b7", "cores", cores() as f64);
    for workload in Workload::ALL.into_iter().filter(|workload| only.is_none_or(|only| only == *workload)) {
        for flavor in Flavor::ALL {
            for route in Route::ALL {
                let output = Command::new(&exe)
                    .args(["--cell", &workload.to_string(), &route.to_string(), &flavor.to_string()])
                    .args(["--runs", &runs.to_string(), "--warm-up", &warm_up.to_string()])
                    .args(["--ns-per-iteration", &ns_per_iteration.to_string()])
                    .output()
                    .map_err(|e| format!("cannot start the cell {workload}/{flavor}/{route}: {e}"))?;
                print!("{}", String::from_utf8_lossy(&output.stdout));
                if !output.status.success() {
                    return Err(format!(
                        "the cell {workload}/{flavor}/{route} failed ({}): {}",
                        output.status,
                        String::from_utf8_lossy(&output.stderr).trim()
                    ));
                }
            }
        }
    }
    metric("b7", "load_after", load_average()?);
    Ok(())
}

/// One workload on one route and runtime.
struct Cell {
    workload: Workload,
    route: Route,
    flavor: Flavor,
    runs: usize,
    warm_up: usize,
    ns_per_iteration: f64,
}

impl Cell {
    /// `WORKLOAD ROUTE RUNTIME --runs N --warm-up N --ns-per-iteration X`.
    fn parse(args: &[String]) -> Result<Cell, String> {
        let [workload, route, flavor, rest @ ..] = args else {
            return Err("`--cell` needs a workload, a route and a runtime".to_owned());
        };
        let flag = |name: &str| -> Result<&str, String> {
            let at = rest.iter().position(|arg| arg == name).ok_or_else(|| format!("`--cell` needs `{name}`"))?;
            rest.get(at + 1).map(String::as_str).ok_or_else(|| format!("`{name}` needs a value"))
        };
        let number = |name: &str| -> Result<f64, String> {
            let value = flag(name)?;
            value.parse().map_err(|e| format!("`{name} {value}`: {e}"))
        };
        Ok(Cell {
            workload: workload.parse()?,
            route: route.parse()?,
            flavor: flavor.parse()?,
            runs: number("--runs")?.max(1.0) as usize,
            warm_up: number("--warm-up")? as usize,
            ns_per_iteration: number("--ns-per-iteration")?,
        })
    }

    fn run(&self) -> Result<(), String> {
        let runtime = self.flavor.runtime().map_err(|e| format!("cannot start the runtime: {e}"))?;
        let app = self.workload.graph(self.route);
        let input = self.workload.input(self.ns_per_iteration);

        for _ in 0..self.warm_up {
            runtime.block_on(burst(&app, self.workload, input.clone()))?;
        }

        let peak = PeakThreads::start()?;
        let mut cpu = Duration::ZERO;
        let mut makespans = Vec::with_capacity(self.runs);
        let mut lateness = Vec::new();
        let mut idle = Vec::new();
        for _ in 0..self.runs {
            let cpu_before = cpu_time()?;
            let (makespan, ticks) = runtime.block_on(async {
                let ticker = Ticker::start();
                let (app, input, workload) = (app.clone(), input.clone(), self.workload);
                let started = Instant::now();
                // Spawned, as a server runs a request: the run's own loop competes for the
                // runtime's threads too.
                let run = tokio::spawn(async move { burst(&app, workload, input).await });
                run.await.map_err(|e| format!("the run's task failed: {e}"))??;
                let makespan = started.elapsed();
                Ok::<_, String>((makespan, ticker.stop().await?))
            })?;
            cpu += cpu_time()?.saturating_sub(cpu_before);
            makespans.push(makespan);
            lateness.extend(ticks);
            idle.extend(runtime.block_on(async {
                let ticker = Ticker::start();
                tokio::time::sleep(makespan).await;
                ticker.stop().await
            })?);
        }
        let peak_threads = peak.stop()?;
        self.report(&makespans, &lateness, &idle, cpu, peak_threads);
        Ok(())
    }

    fn report(&self, makespans: &[Duration], lateness: &[Duration], idle: &[Duration], cpu: Duration, threads: u64) {
        let id = format!("{}/{}/{}", self.workload, self.flavor, self.route);
        let ms = |durations: &[Duration]| durations.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<f64>>();
        let (makespans, lateness, idle) = (ms(makespans), ms(lateness), ms(idle));
        let costs = self.workload.costs_us();
        let sum_ms = costs.iter().sum::<f64>() / 1e3;
        let max_ms = costs.iter().copied().fold(0.0, f64::max) / 1e3;
        let bound_ms = (sum_ms / cores() as f64).max(max_ms);
        let median = quantile(&makespans, 0.5);
        let tasks = costs.len() as f64;
        let cpu_ms = cpu.as_secs_f64() * 1e3 / self.runs as f64;
        for (name, value) in [
            ("runs", self.runs as f64),
            ("tasks", tasks),
            ("sum_ms", sum_ms),
            ("max_ms", max_ms),
            ("bound_ms", bound_ms),
            ("makespan_p50_ms", median),
            ("makespan_p90_ms", quantile(&makespans, 0.9)),
            ("efficiency", bound_ms / median),
            ("tick_p50_ms", quantile(&lateness, 0.5)),
            ("tick_p99_ms", quantile(&lateness, 0.99)),
            ("tick_max_ms", quantile(&lateness, 1.0)),
            ("idle_p50_ms", quantile(&idle, 0.5)),
            ("idle_p99_ms", quantile(&idle, 0.99)),
            ("idle_max_ms", quantile(&idle, 1.0)),
            ("peak_threads", threads as f64),
            ("cpu_ms", cpu_ms),
            ("overhead_cpu_us_per_task", (cpu_ms - sum_ms) * 1e3 / tasks),
            ("overhead_wall_us_per_task", (median - sum_ms / cores() as f64) * 1e3 / tasks),
        ] {
            metric(&id, name, value);
        }
    }
}

/// The one-minute load average: other processes compete for the same cores.
fn load_average() -> Result<f64, String> {
    let text = std::fs::read_to_string("/proc/loadavg").map_err(|e| format!("/proc/loadavg: {e}"))?;
    text.split_whitespace().next().and_then(|load| load.parse().ok()).ok_or_else(|| format!("/proc/loadavg: {text}"))
}

#[allow(clippy::print_stdout, reason = "`cargo xtask bench` reads these lines from stdout")]
fn metric(id: &str, name: &str, value: f64) {
    println!("metric {id} {name} {value:.4}");
}
