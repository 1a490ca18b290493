//! The tables `cargo xtask bench` prints: DashFlow against its targets, and side by side with
//! LangGraph. Both render as Markdown, which also reads well in a terminal.

use super::bencher::Measurement;
use super::langgraph::LangGraphResults;

/// Targets from BENCHMARKS.md, in µs per invoke. B1 has 20 µs with telemetry off and twice that
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

#[derive(Debug, Clone, Copy)]
enum Align {
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

/// DashFlow's medians against the targets of BENCHMARKS.md.
pub(crate) fn targets_table(measurements: &[Measurement]) -> Table {
    let rows = measurements
        .iter()
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
        .map(|measurement| comparison_row(measurement, langgraph.median_us(measurement.workload())))
        .collect();
    let unmatched_langgraph = langgraph
        .medians_us
        .iter()
        .filter(|(workload, _)| !measurements.iter().any(|measurement| measurement.workload() == *workload));
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

fn comparison_row(measurement: &Measurement, langgraph_us: Option<f64>) -> Vec<String> {
    let dash = || "-".to_owned();
    vec![
        measurement.id.clone(),
        format_us(measurement.median_us()),
        langgraph_us.map_or_else(dash, format_us),
        langgraph_us.map_or_else(dash, |us| format_ratio(us / measurement.median_us())),
    ]
}

/// Nanosecond precision below 1 µs, one decimal below 100 µs, whole microseconds with
/// thousands separators above.
pub(crate) fn format_us(us: f64) -> String {
    if us < 1.0 {
        format!("{us:.3}")
    } else if us < 100.0 {
        format!("{us:.1}")
    } else {
        with_thousands(us.round() as u64)
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
