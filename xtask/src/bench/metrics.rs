//! Reading the figures the benches print besides criterion's times.
//!
//! A bench prints one line per figure, `metric ID NAME VALUE`, for instance
//! `metric b4_chain100_sqlite db_bytes_per_step 150.1`: the benchmark id (as in criterion's
//! lines), the figure's name, and its value as a decimal number.

use std::collections::BTreeMap;

/// Figures by benchmark id, then by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Metrics {
    values: BTreeMap<String, BTreeMap<String, f64>>,
}

impl Metrics {
    /// The figure `name` of benchmark `id`.
    pub(crate) fn get(&self, id: &str, name: &str) -> Option<f64> {
        self.values.get(id)?.get(name).copied()
    }

    /// Whether any figure of benchmark `id` was reported.
    pub(crate) fn has(&self, id: &str) -> bool {
        self.values.contains_key(id)
    }

    pub(crate) fn insert(&mut self, id: &str, name: &str, value: f64) {
        self.values.entry(id.to_owned()).or_default().insert(name.to_owned(), value);
    }

    /// Each figure's median over the runs that reported it (the mean of the middle two for an
    /// even count).
    pub(crate) fn median(runs: &[Metrics]) -> Metrics {
        let mut gathered: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
        for run in runs {
            for (id, figures) in &run.values {
                for (name, value) in figures {
                    gathered.entry((id, name)).or_default().push(*value);
                }
            }
        }
        let mut median = Metrics::default();
        for ((id, name), mut values) in gathered {
            median.insert(id, name, median_of(&mut values));
        }
        median
    }
}

impl From<BTreeMap<String, BTreeMap<String, f64>>> for Metrics {
    fn from(values: BTreeMap<String, BTreeMap<String, f64>>) -> Self {
        Self { values }
    }
}

/// Every `metric` line in `output`; other lines are ignored, and a later line for the same
/// figure replaces an earlier one.
pub(crate) fn parse(output: &str) -> Metrics {
    let mut metrics = Metrics::default();
    for (id, name, value) in output.lines().filter_map(parse_line) {
        metrics.insert(id, name, value);
    }
    metrics
}

fn parse_line(line: &str) -> Option<(&str, &str, f64)> {
    let mut words = line.trim().strip_prefix("metric ")?.split_whitespace();
    let (id, name, value) = (words.next()?, words.next()?, words.next()?);
    if words.next().is_some() {
        return None;
    }
    let value: f64 = value.parse().ok()?;
    value.is_finite().then_some((id, name, value))
}

/// The median of `values` (the mean of the middle two for an even count); sorts them.
pub(crate) fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() % 2 {
        1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    }
}
