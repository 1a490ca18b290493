//! `--write-doc`: the "Latest comparison" section of docs/benchmarks.md.

use std::process::Command;

use anyhow::{Context, Result};

use crate::{process, workspace};

const DOC_PATH: &str = "docs/benchmarks.md";
const HEADING: &str = "## Latest comparison";

/// Where and when the figures were measured.
#[derive(Debug)]
pub(crate) struct Machine {
    date: String,
    cpus: usize,
    cpu_model: String,
    rustc: String,
}

impl Machine {
    pub(crate) fn describe_current() -> Result<Machine> {
        Ok(Machine {
            date: process::stdout_of(Command::new("date").arg("-u"))?.trim().to_owned(),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model: cpu_model(),
            rustc: process::stdout_of(Command::new("rustc").current_dir(workspace::root()).arg("--version"))?
                .trim()
                .to_owned(),
        })
    }
}

fn cpu_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == "model name")
        .map_or_else(|| "unknown CPU".to_owned(), |(_, model)| model.trim().to_owned())
}

/// The section body: how it was measured, then the tables (already rendered as Markdown).
pub(crate) fn section(command_line: &str, machine: &Machine, python: Option<&str>, tables: &[String]) -> String {
    let python = python.map(|versions| format!(", {versions}")).unwrap_or_default();
    let mut text = format!(
        "{HEADING}\n\nMeasured with `{command_line}` on {date}.\nMachine: {cpus} CPUs ({model}), {rustc}{python}.\n",
        date = machine.date,
        cpus = machine.cpus,
        model = machine.cpu_model,
        rustc = machine.rustc,
    );
    for table in tables {
        text.push('\n');
        text.push_str(table);
    }
    text
}

/// Writes `section` into docs/benchmarks.md, replacing an earlier one.
pub(crate) fn write(section: &str) -> Result<()> {
    let path = workspace::root().join(DOC_PATH);
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            return Err(error).with_context(|| format!("could not read {}", path.display()));
        }
    };
    let updated = replace_section(&existing, section);
    std::fs::write(&path, updated).with_context(|| format!("could not write {}", path.display()))?;
    println!("wrote the comparison to {DOC_PATH}");
    Ok(())
}

/// `document` with its "Latest comparison" section (up to the next heading of the same or a
/// higher level) replaced by `section`, or with `section` appended if it has none.
pub(crate) fn replace_section(document: &str, section: &str) -> String {
    let lines: Vec<&str> = document.lines().collect();
    let Some(start) = lines.iter().position(|line| line.trim_end() == HEADING) else {
        return append_section(document, section);
    };
    let end = lines[start + 1..]
        .iter()
        .position(|line| line.starts_with("## ") || line.starts_with("# "))
        .map_or(lines.len(), |offset| start + 1 + offset);
    let before = lines[..start].join("\n");
    let after = lines[end..].join("\n");
    let parts = [before.trim_end(), section.trim_end(), after.trim_end()];
    let kept: Vec<&str> = parts.into_iter().filter(|part| !part.is_empty()).collect();
    kept.join("\n\n") + "\n"
}

fn append_section(document: &str, section: &str) -> String {
    let document = document.trim_end();
    let document = if document.is_empty() { "# Benchmarks" } else { document };
    format!("{document}\n\n{}\n", section.trim_end())
}
