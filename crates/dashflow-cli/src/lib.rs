//! The `dashflow` command: ask the stores DashFlow writes what ran, how long each node took,
//! where it failed, and what is running now.
//!
//! ```text
//! dashflow runs list [--status S] [--graph G] [--thread T] [--since 2h] [--limit N] [--json]
//! dashflow runs show RUN_ID [--json]       # a timeline; any unique prefix of the id works
//! dashflow runs list --postgres URL        # the runs of a PostgreSQL run queue, with their workers
//! dashflow runs show RUN_ID --postgres URL # a queued run's row and the end of its event stream
//! dashflow runs cancel RUN_ID --postgres URL
//! dashflow runs retry RUN_ID --postgres URL  # a failed run again, from its last checkpoint
//! dashflow runs follow RUN_ID --postgres URL # its event stream as it grows, until it ends
//! dashflow workers list --db URL           # the workers of a run queue; `workers drain WORKER` stops one
//! dashflow queue stats --db URL            # counts, dead rows and the oldest snapshot
//! dashflow tail [--graph G] [--from-start] # follow new events live; Ctrl-C stops
//! dashflow runs list --nats nats://127.0.0.1:4222   # runs of every publishing host
//! dashflow runs show RUN_ID --nats nats://127.0.0.1:4222
//! dashflow threads history THREAD --db .dashflow/app.db      # or --db postgres://...
//! dashflow graph RUN_ID [--format mermaid|json]
//! dashflow wal verify                      # only reads; exit code 1 when anything is damaged
//! dashflow wal repair                      # sets damage aside, keeps every intact record
//! dashflow wal compact
//! dashflow ui --db .dashflow/app.db       # a web viewer on http://127.0.0.1:7878/
//! ```
//!
//! Runs, timelines, `tail` and `graph` read the write-ahead log in `<home>/wal`, where the
//! home is `--home`, else `$DASHFLOW_HOME`, else `~/.dashflow` (see `dashflow_wal` for the
//! variables). The CLI opens it with retention off, so looking never deletes history, and
//! these reading commands open it read-only: they change no segment (nor any other file while
//! the run index is up to date; a stale index, a cache, is brought up to date), and skip damaged bytes
//! with a warning line on stderr naming the segment and offset. `wal verify` changes no file
//! at all; `wal repair` copies damaged ranges into `<home>/wal/quarantine/`, rewrites the
//! segments without them and rebuilds the run index.
//!
//! A run's status is `running`, `completed`, `failed`, `interrupted`, or `abandoned`: started,
//! never finished, and its process is gone (killed, crashed, or the machine restarted), so
//! `runs list --status running` answers "what is running now?" and `--status abandoned`
//! lists the runs that died; `runs show` names the process and the time of the run's last
//! event; `tail` prints a line when a run it followed is found abandoned (checked about once a
//! second while idle, and before `--exit-when-idle` exits; not with `--json`). The WAL records which process executes each run (on Linux); a run that cannot be
//! checked (written by an older DashFlow, on another host, or outside Linux) stays `running`.
//!
//! `threads history` reads a checkpoint database (SQLite or PostgreSQL) and shows records, not
//! states: it does not know the graphs' state types.
//!
//! `ui` serves the same over HTTP as web pages (the `dashflow-ui` crate): runs with filters and
//! live updates, a run's timeline, graph and events, and threads with their checkpoints (a
//! payload decoded where its codec is JSON). It binds 127.0.0.1 unless `--allow-remote` and a
//! token are given, and only reads.
//!
//! Exit codes: 0 success; 1 failure (an error such as a missing store or an unknown run id,
//! or damage found by `wal verify`); 2 a usage error. Errors go to stderr as one sentence that
//! says what to do.
//!
//! The logic lives in this library so that it can be called in-process; `main.rs` only
//! parses the arguments and prints errors.
//!
//! ```
//! use clap::Parser;
//! use dashflow_cli::Cli;
//!
//! let home = tempfile::tempdir()?;
//! let cli = Cli::try_parse_from(["dashflow", "--home", &home.path().display().to_string(), "runs", "list"])?;
//! let mut out = Vec::new();
//! let error = dashflow_cli::run(&cli, &mut out).unwrap_err();
//! assert!(error.to_string().starts_with("no DashFlow store at"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Feature flags
//!
//! This crate has no feature flags: both checkpoint backends are always built in.

mod cli;
mod commands;
mod render;
mod store;
mod time;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

pub use cli::{
    CancelArgs, Cli, Command, DatabaseArgs, DrainArgs, GraphArgs, GraphFormat, HistoryArgs, ListArgs, QueueArgs,
    QueueCommand, QueueOnly, RunsCommand, ShowArgs, TailArgs, ThreadsCommand, ThreadsListArgs, UiArgs, WalCommand,
    WorkersCommand,
};

/// Runs the command `cli` describes, writing its output to `out`.
///
/// Returns the exit code for outcomes that are not errors (`wal verify` finding damage is
/// [`ExitCode::FAILURE`]); an error means exit code 1 after printing it.
pub fn run(cli: &Cli, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let home = cli.home.as_deref();
    match &cli.command {
        Command::Runs(RunsCommand::List(args)) if args.nats.is_some() => commands::runs_nats::list(args, out)?,
        Command::Runs(RunsCommand::Show(args)) if args.nats.is_some() => commands::runs_nats::show(args, out)?,
        Command::Runs(RunsCommand::List(args)) if args.postgres.is_some() => commands::queue_runs::list(args, out)?,
        Command::Runs(RunsCommand::Show(args)) if args.postgres.is_some() => commands::queue_runs::show(args, out)?,
        Command::Runs(RunsCommand::List(args)) => store::read(home, |wal| commands::runs_list::run(wal, args, out))?,
        Command::Runs(RunsCommand::Show(args)) => store::read(home, |wal| commands::runs_show::run(wal, args, out))?,
        Command::Runs(RunsCommand::Cancel(args)) => commands::queue_runs::cancel(args, out)?,
        Command::Runs(RunsCommand::Retry(args)) => commands::queue_runs::retry(args, out)?,
        Command::Runs(RunsCommand::Follow(args)) => commands::queue_runs::follow(args, out)?,
        Command::Tail(args) if args.nats.is_some() => commands::tail_nats::run(args, out)?,
        Command::Tail(args) => store::read(home, |wal| commands::tail::run(wal, args, out))?,
        Command::Threads(ThreadsCommand::History(args)) => commands::threads::run(args, out)?,
        Command::Threads(ThreadsCommand::List(args)) => commands::threads_list::run(args, out)?,
        Command::Graph(args) => store::read(home, |wal| commands::graph::run(wal, args, out))?,
        Command::Wal(WalCommand::Verify) => return commands::wal::verify(home, out),
        Command::Wal(WalCommand::Compact) => return commands::wal::compact(home, out),
        Command::Wal(WalCommand::Repair) => return commands::wal::repair(home, out),
        Command::Ui(args) => commands::ui::run(home, args, out)?,
        Command::Workers(WorkersCommand::List(args)) => commands::queue::workers(args, out)?,
        Command::Workers(WorkersCommand::Drain(args)) => commands::queue::drain(args, out)?,
        Command::Queue(QueueCommand::Stats(args)) => commands::queue::stats(args, out)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The binary: parses the process's arguments, runs the command on stdout and reports an
/// error on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = run(&cli, &mut out).and_then(|code| {
        out.flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        // A reader that went away (`dashflow tail | head`) is not a failure of the command.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(io::stderr(), "error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests;
