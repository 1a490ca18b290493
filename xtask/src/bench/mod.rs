//! `cargo xtask bench`: runs the criterion workloads (the shared benchmark brief), prints their medians
//! against the targets (and B4's checkpoints per second and database bytes per step, and the
//! large-state workload's bytes per step), B1 and B3 against graph-flow (measured in the same
//! run), C1's runs per second, and optionally compares them with the same graphs in LangGraph.
//! Then B7 (`cpu.rs`): CPU-bound fan-outs on each route, and the rule that decides the pool.

mod bencher;
mod cpu;
mod doc;
mod langgraph;
mod metrics;
mod report;
#[cfg(test)]
mod tests;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use anyhow::{Context, Result, bail};

use self::bencher::Measurement;
use self::metrics::Metrics;
use crate::{process, workspace};

/// Criterion flags for `--quick`: enough samples to see the order of magnitude.
const QUICK_CRITERION_FLAGS: [&str; 4] = ["--warm-up-time", "1", "--measurement-time", "2"];

/// How long the benches run: `--quick` for the order of magnitude.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Length {
    #[default]
    Full,
    Quick,
}

impl Length {
    /// The flag that asks a bench binary for this length, if any.
    fn flag(self) -> Option<&'static str> {
        (self == Length::Quick).then_some("--quick")
    }
}

/// The flags of `cargo xtask bench`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Options {
    length: Length,
    /// Run B8 (the PostgreSQL queue with worker processes) instead of the criterion workloads.
    b8: bool,
    compare_langgraph: bool,
    write_doc: bool,
    /// `--only`: one suite instead of both.
    only: Option<Suite>,
    /// `--sweeps N`: B7's grid runs N times and its table and rule use each figure's median
    /// (one sweep when unset). A single sweep's efficiency moves by a few percent from run to
    /// run, about the rule's own margin.
    sweeps: Option<usize>,
    /// `--rounds N`: the criterion workloads run N times and every table uses each
    /// benchmark's median over the rounds (one round when unset). On a shared machine a
    /// round's figures move with whatever else runs meanwhile; the median of rounds taken
    /// minutes apart is less at the mercy of one burst.
    rounds: Option<usize>,
}

/// The two halves of the benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suite {
    /// The criterion workloads (B1-B4, C1, the large state) and the LangGraph comparison.
    Criterion,
    /// B7, B7s and B7n.
    Cpu,
}

impl Options {
    pub(crate) fn parse(flags: &[String]) -> Result<Options> {
        let mut options = Options::default();
        let mut flags = flags.iter();
        while let Some(flag) = flags.next() {
            match flag.as_str() {
                "--quick" => options.length = Length::Quick,
                "--b8" => options.b8 = true,
                "--write-doc" => options.write_doc = true,
                "--sweeps" => options.sweeps = Some(count(flags.next(), "sweeps")?),
                "--rounds" => options.rounds = Some(count(flags.next(), "rounds")?),
                "--only" => {
                    let suite = flags.next().context("`--only` needs a suite: `--only b7` or `--only criterion`")?;
                    options.only = Some(match suite.as_str() {
                        "b7" => Suite::Cpu,
                        "criterion" => Suite::Criterion,
                        other => bail!("unknown suite `{other}` for `--only`; the suites are b7 and criterion"),
                    });
                }
                "--compare" => {
                    let baseline = flags.next().context("`--compare` needs a baseline: `--compare langgraph`")?;
                    options.set_baseline(baseline)?;
                }
                other => match other.strip_prefix("--compare=") {
                    Some(baseline) => options.set_baseline(baseline)?,
                    None => bail!("unknown flag `{other}` for `bench`"),
                },
            }
        }
        if options.only.is_some() && options.write_doc {
            bail!("`--write-doc` rewrites the whole comparison in docs/benchmarks.md: run it without `--only`");
        }
        if options.sweeps.is_some() && !options.runs(Suite::Cpu) {
            bail!("`--sweeps` repeats B7's grid, which `--only criterion` skips");
        }
        if options.rounds.is_some() && !options.runs(Suite::Criterion) {
            bail!("`--rounds` repeats the criterion workloads, which `--only b7` skips");
        }
        if options.only == Some(Suite::Cpu) && options.compare_langgraph {
            bail!("`--compare langgraph` compares the criterion workloads, which `--only b7` skips");
        }
        Ok(options)
    }

    fn runs(&self, suite: Suite) -> bool {
        self.only.is_none_or(|only| only == suite)
    }

    fn set_baseline(&mut self, baseline: &str) -> Result<()> {
        match baseline {
            "langgraph" => {
                self.compare_langgraph = true;
                Ok(())
            }
            other => bail!("unknown baseline `{other}`; the only one is `langgraph`"),
        }
    }

    /// The command line these options came from, for the doc.
    fn command_line(&self) -> String {
        let mut line = "cargo xtask bench".to_owned();
        if self.length == Length::Quick {
            line.push_str(" --quick");
        }
        if self.compare_langgraph {
            line.push_str(" --compare langgraph");
        }
        if let Some(sweeps) = self.sweeps {
            line.push_str(&format!(" --sweeps {sweeps}"));
        }
        if let Some(rounds) = self.rounds {
            line.push_str(&format!(" --rounds {rounds}"));
        }
        line
    }
}

/// The count after `--{flag}`: a whole number of at least 1.
fn count(value: Option<&String>, flag: &str) -> Result<usize> {
    let value = value.with_context(|| format!("`--{flag}` needs a count: `--{flag} 3`"))?;
    match value.parse::<usize>() {
        Ok(count) if count > 0 => Ok(count),
        _ => bail!("`--{flag}` takes a whole number of {flag} of at least 1, not `{value}`"),
    }
}

pub(crate) fn run(options: &Options) -> Result<()> {
    if options.b8 {
        return run_b8(options.length);
    }
    let mut tables = Vec::new();
    let mut versions = None;
    if options.runs(Suite::Criterion) {
        versions = run_criterion_suite(options, &mut tables)?;
    }
    if options.runs(Suite::Cpu) {
        let sweeps = options.sweeps.unwrap_or(1);
        let mut each = Vec::with_capacity(sweeps);
        for sweep in 1..=sweeps {
            let metrics = cpu::run(options.length)?;
            if sweeps > 1 {
                let verdict = if cpu::decide(&metrics).keeps_pool() { "met" } else { "not met" };
                println!("\nB7 sweep {sweep} of {sweeps}: the rule is {verdict} on this sweep's figures alone");
            }
            each.push(metrics);
        }
        let metrics = Metrics::median(&each);
        if let Some(table) = cpu::table(&metrics) {
            let table = table.render();
            let over = if sweeps > 1 { format!(" (each figure the median of {sweeps} sweeps)") } else { String::new() };
            println!("\nB7, B7s and B7n: CPU-bound fan-outs on each route and runtime{over}:\n\n{table}");
            tables.push(table);
        }
        let decision = cpu::decide(&metrics).render();
        println!("\nB7's rule for the work-stealing pool:\n\n{decision}");
        tables.push(decision);
    }

    if options.write_doc {
        let machine = doc::Machine::describe_current()?;
        doc::write(&doc::section(&options.command_line(), &machine, versions.as_deref(), &tables))?;
    }
    Ok(())
}

/// The criterion workloads and, if asked, LangGraph's: prints their tables and adds them to
/// `tables`. Returns the Python and LangGraph versions when compared.
fn run_criterion_suite(options: &Options, tables: &mut Vec<String>) -> Result<Option<String>> {
    let rounds = options.rounds.unwrap_or(1);
    let (mut each, mut each_metrics) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for round in 1..=rounds {
        if rounds > 1 {
            println!("\n==> Round {round} of {rounds}");
        }
        let (measurements, metrics) = run_criterion(options.length)?;
        each.push(measurements);
        each_metrics.push(metrics);
    }
    let (measurements, metrics) = (bencher::median(&each), Metrics::median(&each_metrics));
    if rounds > 1 {
        println!("\nEach figure below is the median of {rounds} rounds.");
    }
    let targets = report::targets_table(&measurements).render();
    println!("\nDashFlow, median per invoke:\n\n{targets}");
    let b4 = report::b4_table(&measurements, &metrics).map(|table| table.render());
    if let Some(b4) = &b4 {
        println!(
            "\nB4 with SQLite: checkpoints per second (checkpoints per invoke over the median) and database bytes per step:\n\n{b4}"
        );
    }
    let peer = report::peer_table(&measurements, &metrics).map(|table| table.render());
    if let Some(peer) = &peer {
        println!(
            "\nB1 and B3: the default observers against none, and against graph-flow 0.8.1 in the same run:\n\n{peer}"
        );
    }
    let exporters = report::exporters_table(&measurements).map(|table| table.render());
    if let Some(exporters) = &exporters {
        println!("\nB1 and B3 with one exporter and no default observer, against none:\n\n{exporters}");
    }
    let concurrent = report::concurrent_table(&measurements).map(|table| table.render());
    if let Some(concurrent) = &concurrent {
        println!("\nC1, 1,000 concurrent 10-node runs with the memory checkpointer, runs per second:\n\n{concurrent}");
    }
    let large_state = report::large_state_table(&metrics).map(|table| table.render());
    if let Some(large_state) = &large_state {
        println!(
            "\nA ~1 MB state growing by one short line per step, SQLite: database bytes per step within a run \
             (the run's input snapshot excluded) and over whole continuing runs (included):\n\n{large_state}"
        );
    }

    let mut versions = None;
    if options.compare_langgraph {
        let langgraph = langgraph::run(options.length)?;
        let comparison = report::comparison_table(&measurements, &langgraph).render();
        println!(
            "\nDashFlow vs LangGraph {} (Python {}), median per invoke:\n\n{comparison}",
            langgraph.langgraph_version, langgraph.python_version
        );
        tables.push(comparison);
        if let Some(b4_comparison) = report::b4_comparison_table(&measurements, &metrics, &langgraph) {
            let b4_comparison = b4_comparison.render();
            println!(
                "\nB4, DashFlow SqliteCheckpointer vs LangGraph SqliteSaver (ratios: how many times better DashFlow \
                 does):\n\n{b4_comparison}"
            );
            tables.push(b4_comparison);
        }
        versions = Some(format!("Python {}, LangGraph {}", langgraph.python_version, langgraph.langgraph_version));
    }
    tables.push(targets);
    tables.extend(peer);
    tables.extend(exporters);
    tables.extend(concurrent);
    tables.extend(b4);
    tables.extend(large_state);
    Ok(versions)
}

/// Runs the criterion workloads, echoing their output, and returns the parsed medians and the
/// `metric` lines.
fn run_criterion(length: Length) -> Result<(Vec<Measurement>, Metrics)> {
    let mut command = workspace::cargo();
    command.args(["bench", "-p", "dashflow-benches", "--bench", "workloads", "--", "--output-format", "bencher"]);
    // The default observers log every benchmark run: keep that log out of the user's home,
    // and start it empty so its size does not depend on earlier runs. No trace directory: the
    // defaults write no trace files, and the rows measure the defaults (the bench runs in the
    // workspace, which has no `.dashflow/`).
    let home = workspace::root().join("target").join("bench-home");
    if home.exists() {
        std::fs::remove_dir_all(&home)?;
    }
    command.env("DASHFLOW_HOME", &home).env_remove("DASHFLOW_TRACE_DIR");
    if length == Length::Quick {
        command.args(QUICK_CRITERION_FLAGS);
    }
    println!("==> DashFlow: criterion workloads\n$ {}", process::display(&command));
    let output = echo_and_capture_stdout(&mut command)?;
    let measurements = bencher::parse(&output);
    if measurements.is_empty() {
        bail!("`cargo bench` printed no results in bencher format (`test NAME ... bench: N ns/iter`)");
    }
    Ok((measurements, metrics::parse(&output)))
}

/// B8: the run queue with worker processes, on the PostgreSQL of `DASHFLOW_TEST_POSTGRES_URL`.
fn run_b8(length: Length) -> Result<()> {
    let mut command = workspace::cargo();
    command.args(["bench", "-p", "dashflow-benches", "--bench", "b8", "--"]);
    command.args(length.flag());
    println!("==> B8: runs through the PostgreSQL queue\n$ {}", process::display(&command));
    let output = echo_and_capture_stdout(&mut command)?;
    match report::b8_table(&metrics::parse(&output)) {
        Some(table) => println!("\n{}", table.render()),
        None => println!("\nB8 did not run (see its output above)"),
    }
    Ok(())
}

/// Runs `command`, passing its stdout through line by line so progress stays visible, and
/// returns that stdout.
fn echo_and_capture_stdout(command: &mut std::process::Command) -> Result<String> {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", process::display(command)))?;
    let stdout = child.stdout.take().context("the child's stdout was not captured")?;
    let mut captured = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("could not read the benchmark output")?;
        println!("{line}");
        captured.push_str(&line);
        captured.push('\n');
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("`{}` failed ({status})", process::display(command));
    }
    Ok(captured)
}
