//! B7 in `cargo xtask bench`: runs the `cpu` bench of dashflow-benches (each cell of workload,
//! runtime and route in a process of its own), makes its table, and applies issue 11's rule
//! for keeping the work-stealing pool.
//!
//! The rule: keep the pool only where, on both runtimes, it reaches efficiency >= 0.9 on B7,
//! keeps the ticker's p99 lateness within 2x of idle where plain tokio does not, and is no
//! worse than `spawn_blocking` and rayon on B7s (per-task overhead).

use anyhow::{Result, bail};

use super::metrics::{self, Metrics};
use super::report::{Align, Table, format_number};
use crate::{process, workspace};

const WORKLOADS: [&str; 3] = ["b7", "b7s", "b7n"];
const FLAVORS: [&str; 2] = ["multi_thread", "current_thread"];
const ROUTES: [&str; 5] = ["tokio", "spawn_blocking", "rayon", "pool", "pool_nice"];
const POOL: &str = "pool";

/// The pool's B7 efficiency must reach this on both runtimes.
const MIN_EFFICIENCY: f64 = 0.9;
/// The ticker's p99 lateness during a burst, at most this many times its idle p99.
const MAX_TICK_OVER_IDLE: f64 = 2.0;
/// "No worse" on B7s: the pool's median makespan at most this many times the other route's.
/// The machine is shared with other work, so a smaller difference is noise.
const NO_WORSE_SLACK: f64 = 1.1;

/// Runs the `cpu` bench, echoing its output, and returns its figures.
pub(crate) fn run(length: super::Length) -> Result<Metrics> {
    let mut command = workspace::cargo();
    command.args(["bench", "-p", "dashflow-benches", "--bench", "cpu", "--"]);
    command.args(length.flag());
    println!("==> DashFlow: B7, B7s and B7n (CPU-bound fan-outs on each route)\n$ {}", process::display(&command));
    let output = super::echo_and_capture_stdout(&mut command)?;
    let metrics = metrics::parse(&output);
    if !metrics.has("b7") {
        bail!("the cpu bench printed no `metric b7 ...` lines");
    }
    Ok(metrics)
}

fn id(workload: &str, flavor: &str, route: &str) -> String {
    format!("{workload}/{flavor}/{route}")
}

/// Every cell's figures, one row each. `None` if the bench reported no cell.
pub(crate) fn table(metrics: &Metrics) -> Option<Table> {
    let cell = |name: &str, id: &str| metrics.get(id, name).map_or_else(|| "-".to_owned(), format_number);
    let mut rows = Vec::new();
    for workload in WORKLOADS {
        for flavor in FLAVORS {
            for route in ROUTES {
                let id = id(workload, flavor, route);
                if !metrics.has(&id) {
                    continue;
                }
                let mut row = vec![workload.to_owned(), flavor.to_owned(), route.to_owned()];
                row.extend(
                    [
                        "makespan_p50_ms",
                        "makespan_p90_ms",
                        "efficiency",
                        "tick_p50_ms",
                        "tick_p99_ms",
                        "tick_max_ms",
                        "idle_p99_ms",
                        "peak_threads",
                        "cpu_ms",
                        "overhead_cpu_us_per_task",
                    ]
                    .map(|name| cell(name, &id)),
                );
                rows.push(row);
            }
        }
    }
    (!rows.is_empty()).then(|| {
        Table::new(
            vec![
                ("workload", Align::Left),
                ("runtime", Align::Left),
                ("route", Align::Left),
                ("makespan p50 ms", Align::Right),
                ("p90 ms", Align::Right),
                ("efficiency", Align::Right),
                ("tick p50 ms", Align::Right),
                ("tick p99 ms", Align::Right),
                ("tick max ms", Align::Right),
                ("idle p99 ms", Align::Right),
                ("peak threads", Align::Right),
                ("CPU ms per run", Align::Right),
                ("CPU overhead µs per task", Align::Right),
            ],
            rows,
        )
    })
}

/// One condition of the rule, on one runtime.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Check {
    pub(crate) what: String,
    /// `None` when a figure it needs was not measured: not met.
    pub(crate) met: Option<bool>,
}

/// The rule applied to one run of the bench.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    pub(crate) checks: Vec<Check>,
    /// Per runtime, the route with the shortest B7 makespan among those that keep the ticker
    /// within 2x of idle (or none does).
    pub(crate) winners: Vec<(&'static str, Option<&'static str>)>,
}

impl Decision {
    /// Whether the pool met every condition.
    pub(crate) fn keeps_pool(&self) -> bool {
        self.checks.iter().all(|check| check.met == Some(true))
    }

    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        for check in &self.checks {
            let mark = match check.met {
                Some(true) => "yes",
                Some(false) => "NO ",
                None => "-  ",
            };
            text.push_str(&format!("- {mark} {}\n", check.what));
        }
        for (flavor, winner) in &self.winners {
            text.push_str(&format!(
                "- B7's best route on {flavor} with the ticker within 2x of idle: {}\n",
                winner.unwrap_or("none")
            ));
        }
        text.push_str(if self.keeps_pool() {
            "\nDecision: keep the work-stealing pool for CPU-bound nodes.\n"
        } else {
            "\nDecision: the pool does not meet the rule; ship placement with the routes that won.\n"
        });
        text
    }
}

/// Applies the rule to the bench's figures.
pub(crate) fn decide(metrics: &Metrics) -> Decision {
    let get = |workload: &str, flavor: &str, route: &str, name: &str| metrics.get(&id(workload, flavor, route), name);
    let ticker_within = |flavor: &str, route: &str| {
        let tick = get("b7", flavor, route, "tick_p99_ms")?;
        let idle = get("b7", flavor, route, "idle_p99_ms")?;
        Some(tick <= MAX_TICK_OVER_IDLE * idle)
    };
    let mut checks = Vec::new();
    for flavor in FLAVORS {
        let efficiency = get("b7", flavor, POOL, "efficiency");
        checks.push(Check {
            what: format!(
                "{flavor}: the pool's B7 efficiency ({}) >= {MIN_EFFICIENCY}",
                efficiency.map_or_else(|| "not measured".to_owned(), format_number)
            ),
            met: efficiency.map(|efficiency| efficiency >= MIN_EFFICIENCY),
        });
    }
    for flavor in FLAVORS {
        let (what, met) = match ticker_within(flavor, "tokio") {
            Some(true) => {
                (format!("{flavor}: tokio keeps the ticker's p99 within 2x of idle, so the pool need not"), Some(true))
            }
            Some(false) => (
                format!("{flavor}: tokio does not keep the ticker's p99 within 2x of idle; the pool does"),
                ticker_within(flavor, POOL),
            ),
            None => (format!("{flavor}: the ticker's lateness under tokio was not measured"), None),
        };
        checks.push(Check { what, met });
    }
    for flavor in FLAVORS {
        for other in ["spawn_blocking", "rayon"] {
            let pool = get("b7s", flavor, POOL, "makespan_p50_ms");
            let theirs = get("b7s", flavor, other, "makespan_p50_ms");
            let show = |ms: Option<f64>| ms.map_or_else(|| "not measured".to_owned(), format_number);
            checks.push(Check {
                what: format!(
                    "{flavor}: the pool's B7s makespan ({} ms) no worse than {other}'s ({} ms), within {}%",
                    show(pool),
                    show(theirs),
                    ((NO_WORSE_SLACK - 1.0) * 100.0).round()
                ),
                met: pool.zip(theirs).map(|(pool, theirs)| pool <= NO_WORSE_SLACK * theirs),
            });
        }
    }
    let winners = FLAVORS
        .into_iter()
        .map(|flavor| {
            let candidates = ROUTES.into_iter().filter(|route| ticker_within(flavor, route) == Some(true));
            let makespan = |route: &&str| get("b7", flavor, route, "makespan_p50_ms").unwrap_or(f64::INFINITY);
            (flavor, candidates.min_by(|a, b| makespan(a).total_cmp(&makespan(b))))
        })
        .collect();
    Decision { checks, winners }
}
