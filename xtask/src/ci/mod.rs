//! `cargo xtask ci`: every check CI runs, in order, stopping at the first failure.

mod features;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{lint, process, tidy, workspace};

/// One check of the CI run, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Fmt,
    Tidy,
    Clippy,
    Features,
    Tests,
    Doc,
    Lint,
    Loom,
}

impl Step {
    const ALL: [Step; 8] =
        [Step::Fmt, Step::Tidy, Step::Clippy, Step::Features, Step::Tests, Step::Doc, Step::Lint, Step::Loom];

    fn name(self) -> &'static str {
        match self {
            Step::Fmt => "fmt",
            Step::Tidy => "tidy",
            Step::Clippy => "clippy",
            Step::Features => "features",
            Step::Tests => "tests",
            Step::Doc => "doc",
            Step::Lint => "lint",
            Step::Loom => "loom",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Step::Fmt => "formatting (cargo fmt --check)",
            Step::Tidy => "docs name existing files, configuration.md lists the environment, no figures in comments",
            Step::Clippy => "clippy, warnings denied",
            Step::Features => "the facade builds with no features, each feature alone, and all",
            Step::Tests => "tests, then doc tests",
            Step::Doc => "doc build, warnings denied",
            Step::Lint => "crate layering (cargo xtask lint)",
            Step::Loom => {
                "the WAL writer's and the pool's wake-up protocols and the held-back step start, model-checked (--cfg loom)"
            }
        }
    }

    fn from_name(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.name() == name)
    }
}

/// The flags of `cargo xtask ci`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Options {
    skipped: Vec<Step>,
    no_nextest: bool,
}

impl Options {
    pub(crate) fn parse(flags: &[String]) -> Result<Options> {
        let mut options = Options::default();
        let mut flags = flags.iter();
        while let Some(flag) = flags.next() {
            match flag.as_str() {
                "--no-nextest" => options.no_nextest = true,
                "--skip" => {
                    let list = flags.next().context("`--skip` needs a list of steps, e.g. `--skip fmt,clippy`")?;
                    options.skip_steps(list)?;
                }
                other => match other.strip_prefix("--skip=") {
                    Some(list) => options.skip_steps(list)?,
                    None => bail!("unknown flag `{other}` for `ci`"),
                },
            }
        }
        Ok(options)
    }

    fn skip_steps(&mut self, list: &str) -> Result<()> {
        for name in list.split(',').map(str::trim).filter(|name| !name.is_empty()) {
            let Some(step) = Step::from_name(name) else {
                let known: Vec<&str> = Step::ALL.iter().map(|step| step.name()).collect();
                bail!("unknown ci step `{name}`; the steps are {}", known.join(", "));
            };
            self.skipped.push(step);
        }
        Ok(())
    }

    fn steps_to_run(&self) -> Vec<Step> {
        Step::ALL.into_iter().filter(|step| !self.skipped.contains(step)).collect()
    }
}

pub(crate) fn run(options: &Options) -> Result<()> {
    let started = Instant::now();
    let steps = options.steps_to_run();
    for (index, &step) in steps.iter().enumerate() {
        println!("\n==> ci [{}/{}] {}: {}", index + 1, steps.len(), step.name(), step.description());
        let step_started = Instant::now();
        run_step(step, options).with_context(|| format!("ci step `{}` failed", step.name()))?;
        println!("==> {} passed in {}", step.name(), short_duration(step_started.elapsed()));
    }
    println!("\nci passed in {}{}", short_duration(started.elapsed()), skipped_note(options));
    Ok(())
}

fn run_step(step: Step, options: &Options) -> Result<()> {
    match step {
        Step::Fmt => process::run(workspace::cargo().args(["fmt", "--all", "--", "--check"])),
        Step::Tidy => tidy::run(),
        Step::Features => features::run(),
        Step::Clippy => process::run(workspace::cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ])),
        Step::Tests => run_tests(options),
        Step::Doc => process::run(workspace::cargo().env("RUSTDOCFLAGS", "-D warnings").args([
            "doc",
            "--workspace",
            "--no-deps",
            "--all-features",
        ])),
        Step::Lint => lint::run(),
        Step::Loom => run_loom(),
    }
}

/// The loom models (`loom_` tests of dashflow-wal, dashflow-scheduler and dashflow-telemetry), built with
/// `--cfg loom` in a target directory of their own so that they do not invalidate the
/// workspace's build.
fn run_loom() -> Result<()> {
    process::run(
        workspace::cargo()
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", workspace::root().join("target").join("loom"))
            .args(["test", "-p", "dashflow-wal", "-p", "dashflow-scheduler", "-p", "dashflow-telemetry"])
            .args(["--release", "--lib", "loom"]),
    )
}

/// Runs the test suite with nextest when it is installed, then the doc tests, which nextest
/// cannot run. The `cargo test` fallback names its targets (`--tests`) so that doc tests run
/// once, in the second command, either way.
fn run_tests(options: &Options) -> Result<()> {
    if !options.no_nextest && nextest_is_installed() {
        process::run(workspace::cargo().args(["nextest", "run", "--workspace", "--all-features", "--no-tests=warn"]))?;
    } else {
        if !options.no_nextest {
            println!("cargo-nextest is not installed; running the tests with cargo test");
        }
        process::run(workspace::cargo().args(["test", "--workspace", "--all-features", "--tests"]))?;
    }
    process::run(workspace::cargo().args(["test", "--workspace", "--doc", "--all-features"]))
}

fn nextest_is_installed() -> bool {
    process::succeeds(workspace::cargo().args(["nextest", "--version"]))
}

fn skipped_note(options: &Options) -> String {
    if options.skipped.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = options.skipped.iter().map(|step| step.name()).collect();
    format!(" (skipped: {})", names.join(", "))
}

fn short_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds >= 60 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}
