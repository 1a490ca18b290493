//! The LangGraph side of the comparison: a throwaway venv and `benches/langgraph/bench.py`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::metrics::Metrics;
use crate::{process, workspace};

const VENV_DIR: &str = "target/langgraph-venv";
const REQUIREMENTS: &str = "benches/langgraph/requirements.txt";
const SCRIPT: &str = "benches/langgraph/bench.py";

/// What `bench.py` reports: median µs per invoke by workload id, other figures (B4's
/// checkpoints per invoke and database bytes per step), and the versions it ran on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LangGraphResults {
    pub(crate) medians_us: BTreeMap<String, f64>,
    pub(crate) metrics: Metrics,
    pub(crate) python_version: String,
    pub(crate) langgraph_version: String,
}

impl LangGraphResults {
    pub(crate) fn median_us(&self, workload: &str) -> Option<f64> {
        self.medians_us.get(workload).copied()
    }
}

/// Makes the venv if needed, installs the pinned requirements, and runs the script.
pub(crate) fn run(length: super::Length) -> Result<LangGraphResults> {
    let python = prepare_venv()?;
    println!("\n==> LangGraph: running {SCRIPT}");
    let mut command = Command::new(&python);
    command.current_dir(workspace::root()).arg(SCRIPT);
    command.args(length.flag());
    parse_report(&process::stdout_of(&mut command)?)
}

/// Returns the venv's python, creating the venv on first use. `pip install` runs every time
/// so a changed requirements file takes effect; with everything installed it is quick.
fn prepare_venv() -> Result<PathBuf> {
    let root = workspace::root();
    let venv = root.join(VENV_DIR);
    let python = venv.join("bin").join("python");
    if !python.exists() {
        println!("\n==> LangGraph: creating the venv {VENV_DIR}");
        process::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    install_requirements(&python, &root.join(REQUIREMENTS))?;
    Ok(python)
}

fn install_requirements(python: &Path, requirements: &Path) -> Result<()> {
    process::run(
        Command::new(python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(requirements),
    )
}

#[derive(Deserialize)]
struct Report {
    python: String,
    langgraph: String,
    /// Figures other than times, by workload id and name.
    #[serde(default)]
    metrics: BTreeMap<String, BTreeMap<String, f64>>,
    /// The workload medians, plus entries such as `samples` that are not numbers.
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

/// Parses the JSON object the script prints as its last line of stdout.
pub(crate) fn parse_report(stdout: &str) -> Result<LangGraphResults> {
    let line = stdout.lines().rev().find(|line| !line.trim().is_empty()).context("bench.py printed nothing")?;
    let report: Report =
        serde_json::from_str(line).with_context(|| format!("bench.py printed unexpected output: {line}"))?;
    let medians_us = report
        .rest
        .into_iter()
        .filter_map(|(workload, value)| value.as_f64().map(|median| (workload, median)))
        .collect();
    Ok(LangGraphResults {
        medians_us,
        metrics: report.metrics.into(),
        python_version: report.python,
        langgraph_version: report.langgraph,
    })
}
