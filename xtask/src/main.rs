//! Project automation, run as `cargo xtask <command>` (see `docs/dev/xtask.md`).
//!
//! - `ci`: everything CI checks, in order, stopping at the first failure.
//! - `lint`: the crate layering check from `cargo metadata`.
//! - `tidy`: docs name existing files, configuration.md lists the environment, no figures in
//!   code comments.
//! - `bench`: the benchmark workloads, optionally side by side with LangGraph.
#![allow(clippy::print_stdout, reason = "xtask reports to the terminal")]

mod bench;
mod ci;
mod lint;
mod process;
mod tidy;
mod workspace;

use std::process::ExitCode;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command> [flags]

commands:
  ci      fmt check, tidy, clippy, the facade's feature combinations, tests, doc build and the
          layering check, in that order
            --skip fmt,tidy,clippy,features,tests,doc,lint   skip the named steps
            --no-nextest                       run tests with `cargo test` even if nextest is installed
  lint    check the crate layering rules against `cargo metadata`
  tidy    check that docs name existing files, docs/configuration.md lists every environment
          variable the code reads (and no other), and no code comment carries a measured figure
  bench   run the benchmark workloads and print a table, then B7 and its decision
            --quick                            short criterion run, fewer B7 runs
            --only b7|criterion                run one of the two suites
            --sweeps N                         run B7's grid N times; its table and rule use medians
            --b8                               run B8 (the PostgreSQL queue) instead
            --compare langgraph                also run the same graphs in LangGraph (Python venv)
            --write-doc                        write the table to docs/benchmarks.md
  help    print this message
";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let Some((command, flags)) = args.split_first() else {
        print!("{USAGE}");
        bail!("no command given");
    };
    match command.as_str() {
        "ci" => ci::run(&ci::Options::parse(flags)?),
        "lint" => {
            reject_flags(command, flags)?;
            lint::run()
        }
        "tidy" => {
            reject_flags(command, flags)?;
            tidy::run()
        }
        "bench" => bench::run(&bench::Options::parse(flags)?),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            print!("{USAGE}");
            bail!("unknown command `{other}`")
        }
    }
}

fn reject_flags(command: &str, flags: &[String]) -> Result<()> {
    match flags.first() {
        Some(flag) => bail!("`{command}` takes no flags, got `{flag}`"),
        None => Ok(()),
    }
}
