//! Reading criterion's `--output-format bencher` lines.
//!
//! Criterion prints `test NAME ... bench:  12,345 ns/iter (+/- 678)`, where the first figure is
//! the median time per iteration and the second the standard deviation.

/// The median time of one benchmark, as criterion reported it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Measurement {
    pub(crate) id: String,
    pub(crate) median_ns: f64,
}

impl Measurement {
    pub(crate) fn median_us(&self) -> f64 {
        self.median_ns / 1_000.0
    }

    /// The workload the benchmark measures: its id without variant suffixes such as
    /// `/telemetry_off`.
    pub(crate) fn workload(&self) -> &str {
        self.id.split('/').next().unwrap_or(&self.id)
    }
}

/// Each benchmark's median over `rounds` (the mean of the middle two for an even count), in
/// the order the benchmarks first appear.
pub(crate) fn median(rounds: &[Vec<Measurement>]) -> Vec<Measurement> {
    let mut ids: Vec<&str> = Vec::new();
    for measurement in rounds.iter().flatten() {
        if !ids.contains(&measurement.id.as_str()) {
            ids.push(&measurement.id);
        }
    }
    ids.into_iter()
        .map(|id| {
            let mut values: Vec<f64> = rounds.iter().flatten().filter(|m| m.id == id).map(|m| m.median_ns).collect();
            Measurement { id: id.to_owned(), median_ns: super::metrics::median_of(&mut values) }
        })
        .collect()
}

/// Every bencher-format result line in `output`, in order; other lines are ignored.
pub(crate) fn parse(output: &str) -> Vec<Measurement> {
    output.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Measurement> {
    let rest = line.trim_start().strip_prefix("test ")?;
    let (id, result) = rest.split_once(" ... ")?;
    let result = result.trim_start().strip_prefix("bench:")?.trim_start();
    let (median, unit) = result.split_once(char::is_whitespace)?;
    if !unit.trim_start().starts_with("ns/iter") {
        return None;
    }
    let median_ns = median.replace(',', "").parse().ok()?;
    Some(Measurement { id: id.trim().to_owned(), median_ns })
}
