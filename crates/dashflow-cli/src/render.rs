//! Text output: aligned tables, duration bars, and short forms of durations, sizes and errors.

use std::io::{self, Write};
use std::time::Duration;

/// The widest a duration bar gets, in character cells.
pub(crate) const BAR_WIDTH: usize = 30;

/// A table printed with columns aligned; cells are counted in characters.
#[derive(Debug)]
pub(crate) struct Table {
    headers: Vec<&'static str>,
    /// Per column: whether it is right-aligned (numbers).
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns; a header starting with `>` is right-aligned (the `>` is
    /// not printed).
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        let right = headers.iter().map(|h| h.starts_with('>')).collect();
        let headers = headers.iter().map(|h| h.trim_start_matches('>')).collect();
        Self { headers, right, rows: Vec::new() }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the header and the rows. Trailing spaces are trimmed, so the last column may
    /// be as long as it likes.
    pub(crate) fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count());
                if self.right.get(i).copied().unwrap_or(false) {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// A bar of `duration` scaled so that `longest` fills `width` cells, drawn in eighths of a
/// cell (`████▌`). A non-zero duration always shows at least a sliver.
pub(crate) fn bar(duration: Duration, longest: Duration, width: usize) -> String {
    const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    if longest.is_zero() || duration.is_zero() {
        return String::new();
    }
    let ratio = duration.as_secs_f64() / longest.as_secs_f64();
    // Rounded to the nearest eighth; the cast cannot overflow, the ratio is at most 1.
    let eighths = ((ratio.min(1.0) * width as f64 * 8.0).round() as usize).max(1);
    let mut bar: String = std::iter::repeat_n('█', eighths / 8).collect();
    let rest = eighths % 8;
    if rest > 0 {
        bar.push(EIGHTHS[rest]);
    }
    bar
}

/// A duration in a short, human form with three significant digits: `850µs`, `12.3ms`,
/// `4.20s`, `3m04s`, `2h05m`.
pub(crate) fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if d < Duration::from_millis(1) {
        format!("{}µs", d.as_micros())
    } else if d < Duration::from_secs(1) {
        let ms = secs * 1_000.0;
        if ms < 10.0 {
            format!("{ms:.2}ms")
        } else if ms < 100.0 {
            format!("{ms:.1}ms")
        } else {
            format!("{ms:.0}ms")
        }
    } else if d < Duration::from_secs(60) {
        if secs < 10.0 { format!("{secs:.2}s") } else { format!("{secs:.1}s") }
    } else if d < Duration::from_secs(3_600) {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        let whole = d.as_secs();
        format!("{}h{:02}m", whole / 3_600, whole % 3_600 / 60)
    }
}

/// A byte count: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The first line of `text`, cut to `max` characters with an ellipsis.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let first_line = text.lines().next().unwrap_or_default();
    let cut = first_line.chars().count() > max || text.lines().nth(1).is_some();
    if !cut {
        return first_line.to_owned();
    }
    let mut short: String = first_line.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// `-` for a missing value.
pub(crate) fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests;
