//! The tables `cargo xtask bench` prints: DashFlow against its targets, and side by side with
//! LangGraph. Both render as Markdown, which also reads well in a terminal.

use super::bencher::Measurement;
use super::langgraph::LangGraphResults;
use super::metrics::Metrics;

/// Targets from the shared benchmark brief, in µs per invoke. B1 has 20 µs with telemetry off and twice that
/// with telemetry at its defaults; B3 has 200 µs either way.
const TARGETS_US: &[(&str, f64)] = &[
    ("b1_chain100", 40.0),
    ("b1_chain100/telemetry_off", 20.0),
    ("b3_loop1000", 200.0),
    ("b3_loop1000/telemetry_off", 200.0),
];

fn target_us(benchmark_id: &str) -> Option<f64> {
    TARGETS_US.iter().find(|(id, _)| *id == benchmark_id).map(|(_, target)| *target)
}

/// B4's workload id; its variants are `b4_chain100_sqlite` (`Async`) and `/sync`.
const B4: &str = "b4_chain100_sqlite";

/// B4's targets from the shared benchmark brief: checkpoints per second (at least) in `Async` durability
/// (`b4_chain100_sqlite`) and in `Sync` (ids with `/sync`), with or without telemetry.
const B4_CHECKPOINTS_PER_S_ASYNC: f64 = 50_000.0;
const B4_CHECKPOINTS_PER_S_SYNC: f64 = 20_000.0;

/// The suffix of the benchmarks that run without observers.
const TELEMETRY_OFF: &str = "/telemetry_off";

/// B4's target from the shared benchmark brief: database bytes per step (at most), in any durability.
const B4_DB_BYTES_PER_STEP_TARGET: f64 = 300.0;

/// The suffix of the Rust peer's benchmarks (graph-flow), run in the same process as ours.
const PEER: &str = "/graph_flow";

/// The workloads compared with the peer, with their issue-10 target: DashFlow with the
/// default observers at most this many times its time with none.
const PEER_WORKLOADS: [&str; 2] = ["b1_chain100", "b3_loop1000"];
const DEFAULTS_OVER_OFF_MAX: f64 = 1.5;

/// The concurrent workload: `CONCURRENT_RUNS` runs per iteration, at least
/// `CONCURRENT_RUNS_PER_S` runs per second with the defaults, within
/// `CONCURRENT_OFF_OVER_DEFAULTS_MAX` of telemetry off.
const CONCURRENT: &str = "c1_concurrent1000";
const CONCURRENT_RUNS: f64 = 1_000.0;
const CONCURRENT_RUNS_PER_S: f64 = 20_000.0;
const CONCURRENT_OFF_OVER_DEFAULTS_MAX: f64 = 2.0;

/// Whether a measurement is the peer's rather than DashFlow's.
pub(crate) fn is_peer(measurement: &Measurement) -> bool {
    measurement.id.ends_with(PEER)
}

/// The large-state workload's id in the `metric` lines.
const LARGE_STATE: &str = "large_state_sqlite";

#[derive(Debug, Clone, Copy)]
pub(crate) enum Align {
    Left,
    Right,
}

/// A Markdown table with padded columns.
#[derive(Debug)]
pub(crate) struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(columns: Vec<(&'static str, Align)>, rows: Vec<Vec<String>>) -> Table {
        Table { columns, rows }
    }

    pub(crate) fn render(&self) -> String {
        let widths = self.column_widths();
        let header: Vec<String> = self.columns.iter().map(|(name, _)| (*name).to_owned()).collect();
        let separator = self.columns.iter().zip(&widths).map(|((_, align), width)| match align {
            Align::Left => "-".repeat(*width),
            Align::Right => format!("{}:", "-".repeat(width.saturating_sub(1))),
        });
        let mut lines = vec![self.render_row(&header, &widths), format!("|{}|", wrap_cells(separator))];
        lines.extend(self.rows.iter().map(|row| self.render_row(row, &widths)));
        lines.join("\n") + "\n"
    }

    fn column_widths(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .map(|(index, (name, _))| {
                let cells = self.rows.iter().filter_map(|row| row.get(index)).map(|cell| cell.chars().count());
                cells.chain([name.chars().count(), 3]).max().unwrap_or(3)
            })
            .collect()
    }

    fn render_row(&self, cells: &[String], widths: &[usize]) -> String {
        let padded = self.columns.iter().zip(cells).zip(widths).map(|(((_, align), cell), width)| match align {
            Align::Left => format!("{cell:<width$}"),
            Align::Right => format!("{cell:>width$}"),
        });
        format!("|{}|", wrap_cells(padded))
    }
}

fn wrap_cells(cells: impl Iterator<Item = String>) -> String {
    cells.map(|cell| format!(" {cell} ")).collect::<Vec<_>>().join("|")
}

/// DashFlow's medians against the targets of the shared benchmark brief.
pub(crate) fn targets_table(measurements: &[Measurement]) -> Table {
    let rows = measurements
        .iter()
        .filter(|measurement| !is_peer(measurement) && measurement.workload() != CONCURRENT)
        .map(|measurement| {
            let target = target_us(&measurement.id);
            vec![
                measurement.id.clone(),
                format_us(measurement.median_us()),
                target.map_or_else(|| "-".to_owned(), |target| format!("<= {}", format_us(target))),
                target.map_or("-", |target| if measurement.median_us() <= target { "yes" } else { "NO" }).to_owned(),
            ]
        })
        .collect();
    Table {
        columns: vec![
            ("workload", Align::Left),
            ("µs per invoke", Align::Right),
            ("target", Align::Right),
            ("met", Align::Left),
        ],
        rows,
    }
}

/// DashFlow and LangGraph side by side; the ratio is how many times faster DashFlow is.
/// LangGraph workloads that DashFlow did not measure get a row of their own.
pub(crate) fn comparison_table(measurements: &[Measurement], langgraph: &LangGraphResults) -> Table {
    let mut rows: Vec<Vec<String>> = measurements
        .iter()
        .filter(|measurement| !is_peer(measurement) && measurement.workload() != CONCURRENT)
        .map(|measurement| comparison_row(measurement, langgraph_median_us(langgraph, measurement)))
        .collect();
    let unmatched_langgraph = langgraph.medians_us.iter().filter(|(workload, _)| {
        !measurements.iter().any(|measurement| lookup_ids(measurement).contains(&workload.as_str()))
    });
    rows.extend(
        unmatched_langgraph
            .map(|(workload, us)| vec![workload.clone(), "-".to_owned(), format_us(*us), "-".to_owned()]),
    );
    Table {
        columns: vec![
            ("workload", Align::Left),
            ("DashFlow µs", Align::Right),
            ("LangGraph µs", Align::Right),
            ("ratio", Align::Right),
        ],
        rows,
    }
}

/// The ids whose figures stand for `measurement`'s, best first: its own, the same without
/// `/telemetry_off` (LangGraph has no such variant, and B4's storage does not depend on it),
/// then its workload's (`b1_chain100` for `b1_chain100/telemetry_off`).
fn lookup_ids(measurement: &Measurement) -> [&str; 3] {
    let id = measurement.id.as_str();
    [id, id.strip_suffix(TELEMETRY_OFF).unwrap_or(id), measurement.workload()]
}

/// LangGraph's median for the closest benchmark id (see [`lookup_ids`]), so that
/// `b4_chain100_sqlite/sync/telemetry_off` pairs with LangGraph's `b4_chain100_sqlite/sync`.
fn langgraph_median_us(langgraph: &LangGraphResults, measurement: &Measurement) -> Option<f64> {
    lookup_ids(measurement).into_iter().find_map(|id| langgraph.median_us(id))
}

/// A figure of `measurement` from `metrics`, under the closest benchmark id (see [`lookup_ids`]).
fn metric(metrics: &Metrics, measurement: &Measurement, name: &str) -> Option<f64> {
    lookup_ids(measurement).into_iter().find_map(|id| metrics.get(id, name))
}

fn comparison_row(measurement: &Measurement, langgraph_us: Option<f64>) -> Vec<String> {
    let dash = || "-".to_owned();
    vec![
        measurement.id.clone(),
        format_us(measurement.median_us()),
        langgraph_us.map_or_else(dash, format_us),
        langgraph_us.map_or_else(dash, |us| format_ratio(us / measurement.median_us())),
    ]
}

/// Checkpoints per second of a B4 benchmark: the checkpoints one invoke writes (its
/// `checkpoints_per_invoke` metric) over criterion's median time per invoke.
pub(crate) fn checkpoints_per_s(measurement: &Measurement, metrics: &Metrics) -> Option<f64> {
    let per_invoke = metric(metrics, measurement, "checkpoints_per_invoke")?;
    (measurement.median_ns > 0.0).then(|| per_invoke * 1e9 / measurement.median_ns)
}

fn is_b4(measurement: &Measurement) -> bool {
    measurement.workload() == B4
}

fn b4_checkpoints_per_s_target(measurement: &Measurement) -> f64 {
    if measurement.id.split('/').any(|part| part == "sync") {
        B4_CHECKPOINTS_PER_S_SYNC
    } else {
        B4_CHECKPOINTS_PER_S_ASYNC
    }
}

/// `yes` or `NO` for a measured figure, `-` when it is missing.
fn verdict(value: Option<f64>, met: impl Fn(f64) -> bool) -> String {
    match value {
        Some(value) => if met(value) { "yes" } else { "NO" }.to_owned(),
        None => "-".to_owned(),
    }
}

/// A count (bytes, checkpoints per second) as a whole number with thousands separators.
fn format_optional(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| with_thousands(value.max(0.0).round() as u64))
}

/// B4 against its targets: checkpoints per second (from criterion's median) and database
/// bytes per step (from the bench's fixed run on a new database). `None` without B4 results.
pub(crate) fn b4_table(measurements: &[Measurement], metrics: &Metrics) -> Option<Table> {
    let rows: Vec<Vec<String>> = measurements
        .iter()
        .filter(|measurement| is_b4(measurement))
        .map(|measurement| {
            let per_s = checkpoints_per_s(measurement, metrics);
            let per_s_target = b4_checkpoints_per_s_target(measurement);
            let bytes = metric(metrics, measurement, "db_bytes_per_step");
            vec![
                measurement.id.clone(),
                format_us(measurement.median_us()),
                format_optional(per_s),
                format!(">= {}", format_optional(Some(per_s_target))),
                verdict(per_s, |value| value >= per_s_target),
                format_optional(bytes),
                format!("<= {}", format_optional(Some(B4_DB_BYTES_PER_STEP_TARGET))),
                verdict(bytes, |value| value <= B4_DB_BYTES_PER_STEP_TARGET),
            ]
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        columns: vec![
            ("workload", Align::Left),
            ("µs per invoke", Align::Right),
            ("checkpoints/s", Align::Right),
            ("target", Align::Right),
            ("met", Align::Left),
            ("db bytes per step", Align::Right),
            ("target", Align::Right),
            ("met", Align::Left),
        ],
        rows,
    })
}

/// B1 and B3 with the default observers against telemetry off (at most 1.5x) and against
/// graph-flow measured in the same run (faster), with the share of their events the default
/// observers' log kept (its writer drops what it cannot keep up with, and the run does not
/// wait for it). `None` without the peer's results.
pub(crate) fn peer_table(measurements: &[Measurement], metrics: &Metrics) -> Option<Table> {
    let median = |id: &str| measurements.iter().find(|measurement| measurement.id == id).map(Measurement::median_us);
    let rows: Vec<Vec<String>> = PEER_WORKLOADS
        .iter()
        .filter_map(|workload| {
            let peer = median(&format!("{workload}{PEER}"))?;
            let defaults = median(workload);
            let off = median(&format!("{workload}{TELEMETRY_OFF}"));
            let over_off = defaults.zip(off).map(|(defaults, off)| defaults / off);
            Some(vec![
                (*workload).to_owned(),
                defaults.map_or_else(|| "-".to_owned(), format_us),
                off.map_or_else(|| "-".to_owned(), format_us),
                over_off.map_or_else(|| "-".to_owned(), format_ratio_2),
                verdict(over_off, |ratio| ratio <= DEFAULTS_OVER_OFF_MAX),
                format_us(peer),
                verdict(defaults, |defaults| defaults < peer),
                metrics.get(workload, "log_kept_percent").map_or_else(|| "-".to_owned(), |kept| format!("{kept:.0}%")),
            ])
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        columns: vec![
            ("workload", Align::Left),
            ("defaults µs", Align::Right),
            ("off µs", Align::Right),
            ("defaults / off", Align::Right),
            ("<= 1.5x", Align::Left),
            ("graph-flow µs", Align::Right),
            ("faster", Align::Left),
            ("log kept", Align::Right),
        ],
        rows,
    })
}

/// The exporters' rows: a sink alone, after no default observer (issue 14: a sink keeps B1
/// and B3 within the defaults' telemetry budget, at most 1.5x off).
const EXPORTERS: [(&str, &str); 2] = [("/otel", "OpenTelemetry"), ("/nats", "NATS")];

/// B1 and B3 with each exporter alone against telemetry off (at most 1.5x, the defaults'
/// budget), with the defaults' own figure beside them. `None` without any exporter's results.
pub(crate) fn exporters_table(measurements: &[Measurement]) -> Option<Table> {
    let median = |id: &str| measurements.iter().find(|measurement| measurement.id == id).map(Measurement::median_us);
    let rows: Vec<Vec<String>> = PEER_WORKLOADS
        .iter()
        .flat_map(|workload| EXPORTERS.iter().map(move |exporter| (workload, exporter)))
        .filter_map(|(workload, (suffix, exporter))| {
            let with_sink = median(&format!("{workload}{suffix}"))?;
            let off = median(&format!("{workload}{TELEMETRY_OFF}"));
            let defaults = median(workload);
            let over_off = off.map(|off| with_sink / off);
            Some(vec![
                (*workload).to_owned(),
                (*exporter).to_owned(),
                format_us(with_sink),
                off.map_or_else(|| "-".to_owned(), format_us),
                over_off.map_or_else(|| "-".to_owned(), format_ratio_2),
                verdict(over_off, |ratio| ratio <= DEFAULTS_OVER_OFF_MAX),
                defaults.map_or_else(|| "-".to_owned(), format_us),
            ])
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        columns: vec![
            ("workload", Align::Left),
            ("exporter", Align::Left),
            ("exporter µs", Align::Right),
            ("off µs", Align::Right),
            ("exporter / off", Align::Right),
            ("<= 1.5x", Align::Left),
            ("defaults µs", Align::Right),
        ],
        rows,
    })
}

/// C1: runs per second with the default observers and with none; the defaults must reach
/// 20,000 runs/s and stay within 2x of off. `None` without C1's results.
pub(crate) fn concurrent_table(measurements: &[Measurement]) -> Option<Table> {
    let runs_per_s = |id: &str| {
        measurements
            .iter()
            .find(|measurement| measurement.id == id && measurement.median_ns > 0.0)
            .map(|measurement| CONCURRENT_RUNS * 1e9 / measurement.median_ns)
    };
    let defaults = runs_per_s(CONCURRENT);
    let off = runs_per_s(&format!("{CONCURRENT}{TELEMETRY_OFF}"));
    if defaults.is_none() && off.is_none() {
        return None;
    }
    let off_over_defaults = defaults.zip(off).map(|(defaults, off)| off / defaults);
    Some(Table {
        columns: vec![
            ("workload", Align::Left),
            ("defaults runs/s", Align::Right),
            (">= 20,000", Align::Left),
            ("off runs/s", Align::Right),
            ("off / defaults", Align::Right),
            ("<= 2x", Align::Left),
        ],
        rows: vec![vec![
            CONCURRENT.to_owned(),
            format_optional(defaults),
            verdict(defaults, |defaults| defaults >= CONCURRENT_RUNS_PER_S),
            format_optional(off),
            off_over_defaults.map_or_else(|| "-".to_owned(), format_ratio_2),
            verdict(off_over_defaults, |ratio| ratio <= CONCURRENT_OFF_OVER_DEFAULTS_MAX),
        ]],
    })
}

/// A ratio near its target, with two decimals: `1.46x`.
fn format_ratio_2(ratio: f64) -> String {
    format!("{ratio:.2}x")
}

/// The large-state workload: what a step of a ~1 MB state costs in the database, within a run
/// and over whole continuing runs. `None` if the bench did not report it.
pub(crate) fn large_state_table(metrics: &Metrics) -> Option<Table> {
    if !metrics.has(LARGE_STATE) {
        return None;
    }
    let get = |name: &str| format_optional(metrics.get(LARGE_STATE, name));
    Some(Table {
        columns: vec![
            ("workload", Align::Left),
            ("state bytes", Align::Right),
            ("item bytes", Align::Right),
            ("snapshot bytes", Align::Right),
            ("db bytes per step", Align::Right),
            ("db bytes per step, continuing runs", Align::Right),
        ],
        rows: vec![vec![
            LARGE_STATE.to_owned(),
            get("state_bytes"),
            get("item_bytes"),
            get("snapshot_bytes"),
            get("db_bytes_per_step"),
            get("continuing_db_bytes_per_step"),
        ]],
    })
}

/// B4's checkpoints per second and database bytes per step, DashFlow and LangGraph side by
/// side; each ratio is how many times better DashFlow does (more checkpoints per second,
/// fewer bytes per step). `None` without B4 results.
pub(crate) fn b4_comparison_table(
    measurements: &[Measurement],
    metrics: &Metrics,
    langgraph: &LangGraphResults,
) -> Option<Table> {
    let rows: Vec<Vec<String>> = measurements
        .iter()
        .filter(|measurement| is_b4(measurement))
        .map(|measurement| {
            let lookup = |name: &str| metric(&langgraph.metrics, measurement, name);
            let per_s = checkpoints_per_s(measurement, metrics);
            let langgraph_per_s = langgraph_median_us(langgraph, measurement)
                .zip(lookup("checkpoints_per_invoke"))
                .map(|(us, per_invoke)| per_invoke * 1e6 / us);
            let bytes = metric(metrics, measurement, "db_bytes_per_step");
            let langgraph_bytes = lookup("db_bytes_per_step");
            let ratio = |better: Option<f64>, worse: Option<f64>| match (better, worse) {
                (Some(better), Some(worse)) if worse > 0.0 => format_ratio(better / worse),
                _ => "-".to_owned(),
            };
            vec![
                measurement.id.clone(),
                format_optional(per_s),
                format_optional(langgraph_per_s),
                ratio(per_s, langgraph_per_s),
                format_optional(bytes),
                format_optional(langgraph_bytes),
                ratio(langgraph_bytes, bytes),
            ]
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        columns: vec![
            ("workload", Align::Left),
            ("DashFlow checkpoints/s", Align::Right),
            ("LangGraph checkpoints/s", Align::Right),
            ("ratio", Align::Right),
            ("DashFlow db bytes/step", Align::Right),
            ("LangGraph db bytes/step", Align::Right),
            ("ratio", Align::Right),
        ],
        rows,
    })
}

/// Nanosecond precision below 1 µs, one decimal below 100 µs, whole microseconds with
/// thousands separators above.
pub(crate) fn format_us(us: f64) -> String {
    format_number(us)
}

/// Three decimals below 1, one below 100, whole numbers with thousands separators above.
pub(crate) fn format_number(value: f64) -> String {
    if value < 1.0 {
        format!("{value:.3}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        with_thousands(value.round() as u64)
    }
}

/// `1,950x` for large ratios, `3.2x` for small ones.
pub(crate) fn format_ratio(ratio: f64) -> String {
    if ratio >= 10.0 { format!("{}x", with_thousands(ratio.round() as u64)) } else { format!("{ratio:.1}x") }
}

pub(crate) fn with_thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// B8: runs through the PostgreSQL queue with 1, 2 and 4 worker processes (`Sync` checkpoints,
/// and 2 workers without event streams and with `Async` checkpoints) against the same runs in
/// one process without the queue, and the takeover time. Per run: the statements the processes
/// sent, the transactions that wrote, the database server's CPU, the workers' CPU and the WAL
/// written. `None` if B8 did not run.
pub(crate) fn b8_table(metrics: &Metrics) -> Option<Table> {
    if !metrics.has("b8_workers1") && !metrics.has("b8_in_process") {
        return None;
    }
    let figure = |id: &str, name: &str| metrics.get(id, name).map_or_else(|| "-".to_owned(), format_number);
    let wal = |id: &str| format_optional(metrics.get(id, "wal_bytes_per_run"));
    let mut rows: Vec<Vec<String>> = [
        ("b8_workers1", "1 worker"),
        ("b8_workers2", "2 workers"),
        ("b8_workers4", "4 workers"),
        ("b8_nostream_workers2", "2 workers, no event streams"),
        ("b8_async_workers2", "2 workers, Async"),
    ]
    .iter()
    .filter(|(id, _)| metrics.has(id) || ["b8_workers1", "b8_workers2", "b8_workers4"].contains(id))
    .map(|(id, label)| {
        vec![
            (*label).to_owned(),
            figure(id, "runs_per_sec"),
            verdict(metrics.get(id, "runs_per_sec"), |runs| runs >= 500.0),
            figure(id, "p50_ms"),
            figure(id, "p99_ms"),
            figure(id, "statements_per_run"),
            figure(id, "xact_per_run"),
            figure(id, "db_cpu_ms_per_run"),
            figure(id, "worker_cpu_ms_per_run"),
            wal(id),
        ]
    })
    .collect();
    let dash = || "-".to_owned();
    rows.push(vec![
        "one process, no queue".to_owned(),
        figure("b8_in_process", "runs_per_sec"),
        dash(),
        dash(),
        dash(),
        figure("b8_in_process", "statements_per_run"),
        figure("b8_in_process", "xact_per_run"),
        figure("b8_in_process", "db_cpu_ms_per_run"),
        figure("b8_in_process", "client_cpu_ms_per_run"),
        wal("b8_in_process"),
    ]);
    let mut takeover = vec![format!(
        "SIGKILL to done elsewhere: median {} s, max {} s",
        figure("b8_takeover", "median_s"),
        figure("b8_takeover", "max_s")
    )];
    takeover.extend(std::iter::repeat_with(dash).take(9));
    rows.push(takeover);
    Some(Table {
        columns: vec![
            ("B8, 10-step runs, Sync", Align::Left),
            ("runs/s", Align::Right),
            (">= 500", Align::Left),
            ("p50 ms", Align::Right),
            ("p99 ms", Align::Right),
            ("statements/run", Align::Right),
            ("writing xacts/run", Align::Right),
            ("db CPU ms/run", Align::Right),
            ("worker CPU ms/run", Align::Right),
            ("WAL bytes/run", Align::Right),
        ],
        rows,
    })
}
