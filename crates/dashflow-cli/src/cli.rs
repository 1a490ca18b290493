//! The command line as clap types; the doc comments are the `--help` text.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dashflow_wal::RunStatus;

/// Inspect DashFlow runs: what ran, how long each node took, where it failed, what is
/// running now.
///
/// Reads the write-ahead log that graphs write to `<home>/wal` and the checkpoint databases
/// that durable graphs write to. Exit codes: 0 success, 1 failure (an error, or damage found
/// by `wal verify`), 2 a usage error.
#[derive(Debug, Parser)]
#[command(name = "dashflow", version)]
pub struct Cli {
    /// The DashFlow home directory; the WAL is `<DIR>/wal`. [default: $DASHFLOW_HOME, else
    /// $HOME/.dashflow]
    // Not clap's `env`: an empty DASHFLOW_HOME means unset, as it does for the writers.
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List runs or show one run as a timeline.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Follow new events as graphs write them, one line per event (Ctrl-C to stop), and a
    /// line for each followed run found abandoned.
    Tail(TailArgs),
    /// List threads, or show a thread's checkpoints.
    #[command(subcommand)]
    Threads(ThreadsCommand),
    /// Print the graph a run used, as Mermaid or JSON.
    Graph(GraphArgs),
    /// Check, repair or compact the write-ahead log.
    #[command(subcommand)]
    Wal(WalCommand),
    /// Show the worker processes of a PostgreSQL run queue.
    #[command(subcommand)]
    Workers(WorkersCommand),
    /// Show the run queue of a PostgreSQL database.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Serve a web viewer of the runs, their timelines and graphs, and the threads of a
    /// checkpoint database, on 127.0.0.1 (Ctrl-C to stop). It reads only.
    Ui(UiArgs),
}

/// `dashflow workers ...`.
#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// List registered workers, live ones first: id, host, pid, version, queues, slots, runs
    /// held, time since the last heartbeat (database time) and state (live, stale,
    /// draining, stopped).
    List(QueueArgs),
    /// Drain a worker: it claims no more runs, and at its next heartbeat it stops as on
    /// SIGTERM (finishes the runs it holds within its grace period, gives back the rest,
    /// deregisters).
    Drain(DrainArgs),
}

/// `dashflow workers drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The worker's id, as `workers list` shows it.
    #[arg(value_name = "WORKER")]
    pub worker: String,
    /// Where the run queue is.
    #[command(flatten)]
    pub queue: QueueArgs,
}

/// `dashflow queue ...`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Count runs per queue, priority and state, with how long the oldest queued run has
    /// waited; then the live and dead rows of the queue's tables and the oldest snapshot
    /// held on the server (a long transaction anywhere keeps vacuum from removing dead rows,
    /// and the queue slows down); warnings for graphs no live worker has, for tables with
    /// many dead rows and for old snapshots.
    Stats(QueueArgs),
}

/// Where the run queue is.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// The PostgreSQL database holding the run queue (`postgres://user:password@host/db`).
    #[arg(long, visible_alias = "postgres", value_name = "URL")]
    pub db: String,
    /// The schema holding the queue's tables (sets `search_path`).
    #[arg(long, value_name = "SCHEMA")]
    pub schema: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `dashflow ui`.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// The checkpoint database whose threads to show: a SQLite file (`path` or `sqlite://path`)
    /// or a PostgreSQL URL. Without it the viewer shows runs only.
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// For PostgreSQL: the schema holding the checkpoint tables (sets `search_path`).
    #[arg(long, value_name = "SCHEMA")]
    pub schema: Option<String>,
    /// The address to listen on; port 0 picks a free one. An address other than loopback
    /// needs --allow-remote and a token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
    pub bind: std::net::SocketAddr,
    /// Allow binding an address other than loopback (anyone who can reach it and has the
    /// token sees every run and state).
    #[arg(long)]
    pub allow_remote: bool,
    /// The access token every request to a remote viewer must carry (at least 16
    /// characters); the printed URL includes it.
    #[arg(long, value_name = "TOKEN", env = "DASHFLOW_UI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `dashflow runs ...`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first. A run whose process died before it finished is listed as
    /// `abandoned`, not `running`.
    List(ListArgs),
    /// Show one run: its summary, then every task in order with its duration as a bar,
    /// errors in place and the routing decisions between steps.
    Show(ShowArgs),
    /// Cancel a run of a PostgreSQL run queue: a queued or pending run at once, a running
    /// one at its worker's next heartbeat (the worker stops it and ends it `cancelled`).
    Cancel(CancelArgs),
    /// Retry a failed or cancelled run of a PostgreSQL run queue: queued again under its own
    /// id, it continues from its thread's last checkpoint and re-runs only what did not
    /// finish. Only a thread's latest run can be retried.
    Retry(RetryArgs),
    /// Follow a run of a PostgreSQL run queue from another process: print its event stream
    /// from the start (or after `--after`), then each item as its worker appends it, until the
    /// run is over (completed, interrupted, failed or cancelled), whichever worker runs it.
    Follow(FollowArgs),
}

/// `dashflow runs follow`.
#[derive(Debug, Args)]
pub struct FollowArgs {
    /// The run's id.
    #[arg(value_name = "RUN_ID")]
    pub run: String,
    /// Start after this item of the stream (a `SEQ` printed before), so that following again
    /// prints only what was not seen.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub after: i64,
    /// Print each item as one line of JSON (`seq`, `attempt`, `epoch`, `rerun`, `item`), then
    /// the run's end as `{"run_id": ..., "state": ..., "error": ...}`.
    #[arg(long)]
    pub json: bool,
    /// How often to look for new items and for the run's end, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval_ms: u64,
    /// Where the run queue is.
    #[command(flatten)]
    pub queue: QueueOnly,
}

/// `dashflow runs retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The run's id.
    #[arg(value_name = "RUN_ID")]
    pub run: String,
    /// How many more claims the run may take (a worker that dies holding it costs one).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..))]
    pub attempts: i32,
    /// Where the run queue is.
    #[command(flatten)]
    pub queue: QueueOnly,
}

/// `dashflow runs cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run's id.
    #[arg(value_name = "RUN_ID")]
    pub run: String,
    /// Where the run queue is.
    #[command(flatten)]
    pub queue: QueueOnly,
}

/// A PostgreSQL run queue, for commands that read the run log otherwise.
#[derive(Debug, Args)]
pub struct QueueOnly {
    /// The PostgreSQL database holding the run queue (`postgres://user:password@host/db`).
    #[arg(long, value_name = "URL")]
    pub postgres: String,
    /// The schema holding the queue's tables (sets `search_path`).
    #[arg(long, value_name = "SCHEMA")]
    pub schema: Option<String>,
}

/// `dashflow runs list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only runs with this status: running, abandoned, completed, failed or interrupted.
    ///
    /// `abandoned` runs started and never finished, and the process executing them is gone
    /// (killed, crashed, or the machine restarted); they are not `running`. A run whose
    /// process cannot be checked (written by an older DashFlow, on another host or outside
    /// Linux) stays `running`.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<RunStatus>,
    /// Only runs of this graph.
    #[arg(long, value_name = "NAME")]
    pub graph: Option<String>,
    /// Only runs of this thread.
    #[arg(long, value_name = "THREAD")]
    pub thread: Option<String>,
    /// Only runs tagged this (`RunConfig::tag`).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Only runs started since then: a duration back from now (30m, 2h, 7d, 1h30m) or a UTC
    /// timestamp (2025-01-31, 2025-01-31T08:00:00Z).
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<SystemTime>,
    /// At most this many runs (0 for all).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Read the NATS JetStream stream at this URL (`nats://127.0.0.1:4222`), where runs of
    /// every publishing host arrive, instead of this host's WAL: from its start up to what it
    /// holds now. Runs not finished there are `running` (a stream cannot tell abandoned ones).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// With `--nats`: the stream's name.
    #[arg(long, value_name = "NAME", default_value = "dashflow-events", requires = "nats")]
    pub stream: String,
    /// With `--nats`: the first tokens of the stream's subjects.
    #[arg(long, value_name = "PREFIX", default_value = "dashflow.events", requires = "nats")]
    pub subject_prefix: String,
    /// List the runs of the PostgreSQL run queue at this URL instead of this host's run log:
    /// state, the worker that holds (or last held) each run, its attempt and fence epoch,
    /// how long it waited in the queue before its first claim, and its age.
    #[arg(long, value_name = "URL", conflicts_with_all = ["status", "graph", "tag", "since", "nats"])]
    pub postgres: Option<String>,
    /// With --postgres: the schema holding the queue's tables (sets `search_path`).
    #[arg(long, value_name = "SCHEMA", requires = "postgres")]
    pub schema: Option<String>,
    /// With --postgres: only runs in this state (pending, queued, running, completed,
    /// interrupted, failed or cancelled).
    #[arg(long, value_name = "STATE", requires = "postgres", value_parser = parse_run_state)]
    pub state: Option<dashflow_queue::RunState>,
}

/// `dashflow runs show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run's id, or any prefix of it that names one run (the full id with --postgres).
    #[arg(value_name = "RUN_ID")]
    pub run: String,
    /// Print JSON instead of a timeline.
    #[arg(long)]
    pub json: bool,
    /// Read the NATS JetStream stream at this URL (`nats://127.0.0.1:4222`), where runs of
    /// every publishing host arrive, instead of this host's WAL: from its start up to what it
    /// holds now. Runs not finished there are `running` (a stream cannot tell abandoned ones).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// With `--nats`: the stream's name.
    #[arg(long, value_name = "NAME", default_value = "dashflow-events", requires = "nats")]
    pub stream: String,
    /// With `--nats`: the first tokens of the stream's subjects.
    #[arg(long, value_name = "PREFIX", default_value = "dashflow.events", requires = "nats")]
    pub subject_prefix: String,
    /// Show the run as the PostgreSQL run queue at this URL has it: its row (state, worker,
    /// attempt, epoch, times, error) and the last items of its event stream.
    #[arg(long, value_name = "URL", conflicts_with = "nats")]
    pub postgres: Option<String>,
    /// With --postgres: the schema holding the queue's tables (sets `search_path`).
    #[arg(long, value_name = "SCHEMA", requires = "postgres")]
    pub schema: Option<String>,
}

fn parse_run_state(text: &str) -> Result<dashflow_queue::RunState, String> {
    dashflow_queue::RunState::parse(text).ok_or_else(|| {
        format!("`{text}` is not a run state: pending, queued, running, completed, interrupted, failed or cancelled")
    })
}

/// `dashflow tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Only events of runs of this graph.
    #[arg(long, value_name = "NAME")]
    pub graph: Option<String>,
    /// Replay every event in the WAL first, instead of starting with the next new one.
    #[arg(long)]
    pub from_start: bool,
    /// Stop after printing this many events.
    #[arg(long, value_name = "N")]
    pub max_events: Option<u64>,
    /// Stop as soon as there is nothing new to print, instead of waiting for more.
    #[arg(long)]
    pub exit_when_idle: bool,
    /// How often to look for new events, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub interval_ms: u64,
    /// Print each event as one line of JSON.
    #[arg(long)]
    pub json: bool,
    /// Follow the NATS JetStream stream at this URL (`nats://127.0.0.1:4222`), where runs of
    /// every publishing host arrive, instead of this host's WAL. Each line names the
    /// publisher (`{pid}@{host}`).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// With `--nats`: the stream's name.
    #[arg(long, value_name = "NAME", default_value = "dashflow-events", requires = "nats")]
    pub stream: String,
    /// With `--nats`: the first tokens of the stream's subjects.
    #[arg(long, value_name = "PREFIX", default_value = "dashflow.events", requires = "nats")]
    pub subject_prefix: String,
    /// With `--nats`: replay from this message of the stream (the `seq` of `--json` lines).
    #[arg(long, value_name = "SEQ", requires = "nats", conflicts_with = "from_start")]
    pub from_seq: Option<u64>,
    /// With `--nats`: only this run (its full id).
    #[arg(long, value_name = "RUN_ID", requires = "nats")]
    pub run: Option<String>,
}

/// `dashflow threads ...`.
#[derive(Debug, Subcommand)]
pub enum ThreadsCommand {
    /// List threads, most recently updated first: id, latest checkpoint, its step and
    /// source, the number of checkpoints and the time of the last update. A full page ends
    /// with the `--after` value of the next one.
    List(ThreadsListArgs),
    /// List a thread's checkpoints, newest first: id, parent, step, kind, source, next nodes,
    /// blob size and time. States are not decoded (the CLI does not know their types), but
    /// each blob's checksum is checked: a damaged checkpoint is marked and named on stderr.
    History(HistoryArgs),
}

/// `dashflow threads history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The thread's id.
    #[arg(value_name = "THREAD")]
    pub thread: String,
    /// Where the checkpoints are.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Only this namespace (`""` is the top-level graph; subgraphs have their own).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// At most this many checkpoints (0 for all).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Where the checkpoints are, for the `threads` commands.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// The checkpoint database: a SQLite file (`path` or `sqlite://path`) or a PostgreSQL URL
    /// (`postgres://user:password@host/db`, `?options=-csearch_path%3Dschema` selects a
    /// schema).
    #[arg(long, value_name = "URL")]
    pub db: String,
    /// For PostgreSQL: the schema holding the checkpoint tables (sets `search_path`).
    #[arg(long, value_name = "SCHEMA")]
    pub schema: Option<String>,
}

/// `dashflow threads list`.
#[derive(Debug, Args)]
pub struct ThreadsListArgs {
    /// Where the checkpoints are.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Only threads whose id starts with this.
    #[arg(long, value_name = "TEXT")]
    pub prefix: Option<String>,
    /// Only threads updated since then: a duration back from now (30m, 2h, 7d) or a UTC
    /// timestamp (2025-01-31, 2025-01-31T08:00:00Z).
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<SystemTime>,
    /// Only threads last updated before then (same forms as --since).
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub before: Option<SystemTime>,
    /// Only threads whose latest checkpoint's metadata has KEY = VALUE (VALUE is read as
    /// JSON when it parses, as a string otherwise: `step=3`, `source=loop`); repeatable.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_metadata)]
    pub metadata: Vec<(String, serde_json::Value)>,
    /// Only threads after this position: the cursor a full page printed last.
    #[arg(long, value_name = "CURSOR")]
    pub after: Option<dashflow_checkpoint::ThreadCursor>,
    /// At most this many threads (0 for all).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// Print JSON instead of a table: `{"threads": [...], "next": cursor or null}`.
    #[arg(long)]
    pub json: bool,
}

fn parse_metadata(text: &str) -> Result<(String, serde_json::Value), String> {
    let (key, value) =
        text.split_once('=').ok_or_else(|| format!("`{text}` is not KEY=VALUE (e.g. source=loop or step=3)"))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
    Ok((key.to_owned(), value))
}

/// `dashflow graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The run's id, or any prefix of it that names one run.
    #[arg(value_name = "RUN_ID")]
    pub run: String,
    /// What to print.
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    pub format: GraphFormat,
}

/// The output of `dashflow graph`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// A Mermaid flowchart.
    Mermaid,
    /// The graph's schema as JSON: nodes and edges.
    Json,
}

/// `dashflow wal ...`.
#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// Read every segment and report each damaged range with its segment, byte offset and
    /// size; exit code 1 when anything is damaged. Only reads: no file is changed, created or
    /// removed.
    Verify,
    /// Make a damaged log read clean again, keeping every intact record: copy each damaged
    /// range into `<home>/wal/quarantine/`, rewrite the segments without it, and rebuild the
    /// run index. Run it while no graph is writing and no `tail` is following.
    Repair,
    /// Rewrite the sealed segments without the records of runs whose start retention removed,
    /// merging small segments. Run it while no graph is writing.
    Compact,
}

fn parse_since(text: &str) -> Result<SystemTime, String> {
    crate::time::parse_since(text, SystemTime::now())
}
