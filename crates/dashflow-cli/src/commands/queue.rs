//! `dashflow workers list|drain` and `dashflow queue stats`: the run queue of a PostgreSQL
//! database, through `dashflow-queue-postgres`.

use std::io::Write;

use anyhow::{Context, Result};
use dashflow_checkpoint_postgres::PostgresCheckpointer;
use dashflow_queue::{RunQueue, RunState};
use dashflow_queue_postgres::PostgresRunQueue;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;

use crate::cli::{DrainArgs, QueueArgs};
use crate::render::{self, Table};

fn open(args: &QueueArgs) -> Result<(PostgresRunQueue, tokio::runtime::Runtime)> {
    open_at(&args.db, args.schema.as_deref(), "--db")
}

/// The run queue at `url` (given as option `flag`), in `schema`, with a runtime to drive it.
pub(crate) fn open_at(
    url: &str,
    schema: Option<&str>,
    flag: &str,
) -> Result<(PostgresRunQueue, tokio::runtime::Runtime)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime for the run queue")?;
    // The URL is not repeated in errors: it may hold a password.
    let mut options: PgConnectOptions =
        url.parse().with_context(|| format!("the {flag} URL is not a valid PostgreSQL URL"))?;
    if let Some(schema) = schema {
        options = options.options([("search_path", schema)]);
    }
    let queue = runtime.block_on(async {
        let checkpointer =
            PostgresCheckpointer::connect_with(options).await.with_context(|| format!("cannot connect to {flag}"))?;
        PostgresRunQueue::new(checkpointer).await.with_context(|| format!("cannot open the run queue of {flag}"))
    })?;
    Ok((queue, runtime))
}

/// A dead-row share above which `queue stats` warns: vacuum is behind.
const DEAD_WARN_PERCENT: f64 = 20.0;
/// ... when the table has at least this many dead rows: autovacuum leaves small tables alone
/// until dozens of rows are dead, which costs nothing.
const DEAD_WARN_ROWS: i64 = 1000;
/// A snapshot older than this many transactions makes `queue stats` warn.
const XMIN_WARN_AGE: i64 = 100_000;
/// A transaction open this long makes `queue stats` warn, however few transactions passed.
const XMIN_WARN_OPEN_MS: i64 = 5 * 60 * 1000;

pub(crate) fn drain(args: &DrainArgs, out: &mut dyn Write) -> Result<()> {
    let (queue, runtime) = open(&args.queue)?;
    runtime
        .block_on(queue.drain_worker(&args.worker))
        .with_context(|| format!("cannot drain worker {}", args.worker))?;
    if args.queue.json {
        writeln!(out, "{}", json!({ "worker_id": args.worker, "state": "draining" }))?;
    } else {
        writeln!(
            out,
            "worker {} is draining: it claims no more runs, and stops at its next heartbeat once its runs are done",
            args.worker
        )?;
    }
    Ok(())
}

fn age(ms: i64) -> String {
    render::duration(std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

pub(crate) fn workers(args: &QueueArgs, out: &mut dyn Write) -> Result<()> {
    let (queue, runtime) = open(args)?;
    let workers = runtime.block_on(queue.workers()).context("cannot list the workers")?;
    if args.json {
        let rows: Vec<_> = workers
            .iter()
            .map(|worker| {
                json!({
                    "worker_id": worker.info.worker_id,
                    "host": worker.info.host,
                    "pid": worker.info.pid,
                    "version": worker.info.version,
                    "queues": worker.info.queues,
                    "graphs": worker.info.graph_keys,
                    "slots": worker.info.slots,
                    "running": worker.running,
                    "heartbeat_age_ms": worker.heartbeat_age_ms,
                    "state": worker.state.as_str(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    if workers.is_empty() {
        writeln!(out, "no workers have registered with this run queue")?;
        return Ok(());
    }
    let mut table =
        Table::new(&["WORKER", "HOST", "PID", "VERSION", "QUEUES", "SLOTS", "RUNNING", "HEARTBEAT", "STATE"]);
    for worker in &workers {
        table.row(vec![
            worker.info.worker_id.clone(),
            worker.info.host.clone(),
            worker.info.pid.to_string(),
            render::or_dash(Some(&worker.info.version).filter(|version| !version.is_empty())),
            worker.info.queues.join(","),
            worker.info.slots.to_string(),
            worker.running.to_string(),
            format!("{} ago", age(worker.heartbeat_age_ms)),
            worker.state.as_str().to_owned(),
        ]);
    }
    table.write(out)?;
    Ok(())
}

pub(crate) fn stats(args: &QueueArgs, out: &mut dyn Write) -> Result<()> {
    let (queue, runtime) = open(args)?;
    let (stats, workers, health) = runtime.block_on(async {
        let stats = queue.stats().await.context("cannot read the queue's counts")?;
        let workers = queue.workers().await.context("cannot list the workers")?;
        let health = queue.health().await.context("cannot read the health of the queue's tables")?;
        anyhow::Ok((stats, workers, health))
    })?;
    if args.json {
        let runs: Vec<_> = stats
            .iter()
            .map(|stat| {
                json!({
                    "queue": stat.queue,
                    "priority": stat.priority.level(),
                    "state": stat.state.as_str(),
                    "runs": stat.count,
                    "oldest_wait_ms": stat.oldest_wait_ms,
                })
            })
            .collect();
        let tables: Vec<_> = health
            .tables
            .iter()
            .map(|table| {
                json!({
                    "table": table.table,
                    "live_tuples": table.live_tuples,
                    "dead_tuples": table.dead_tuples,
                    "dead_percent": table.dead_percent(),
                    "vacuumed_ms_ago": table.vacuumed_ms_ago,
                })
            })
            .collect();
        let oldest_xmin = health
            .oldest_xmin
            .as_ref()
            .map(|xmin| json!({ "holder": xmin.holder, "age": xmin.age, "open_ms": xmin.open_ms }));
        let report = json!({ "runs": runs, "tables": tables, "oldest_xmin": oldest_xmin });
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    if stats.is_empty() {
        writeln!(out, "the run queue is empty")?;
    } else {
        let mut table = Table::new(&["QUEUE", "PRIORITY", "STATE", "RUNS", "OLDEST-WAIT"]);
        for stat in &stats {
            table.row(vec![
                stat.queue.clone(),
                stat.priority.level().to_string(),
                stat.state.as_str().to_owned(),
                stat.count.to_string(),
                render::or_dash(stat.oldest_wait_ms.filter(|_| stat.state == RunState::Queued).map(age)),
            ]);
        }
        table.write(out)?;
    }
    writeln!(out)?;
    let mut tables = Table::new(&["TABLE", ">LIVE", ">DEAD", ">DEAD%", "VACUUMED"]);
    for table in &health.tables {
        tables.row(vec![
            table.table.clone(),
            table.live_tuples.to_string(),
            table.dead_tuples.to_string(),
            format!("{:.1}", table.dead_percent()),
            render::or_dash(table.vacuumed_ms_ago.map(|ms| format!("{} ago", age(ms)))),
        ]);
    }
    tables.write(out)?;
    match &health.oldest_xmin {
        Some(xmin) => writeln!(
            out,
            "oldest xmin: {} transactions old, held by {}{}",
            xmin.age,
            xmin.holder,
            xmin.open_ms.map(|ms| format!(" (transaction open {})", age(ms))).unwrap_or_default()
        )?,
        None => writeln!(out, "oldest xmin: none held")?,
    }
    for table in health
        .tables
        .iter()
        .filter(|table| table.dead_percent() > DEAD_WARN_PERCENT && table.dead_tuples >= DEAD_WARN_ROWS)
    {
        writeln!(
            out,
            "warning: {} rows of {} ({:.0}%) are dead: vacuum is behind (is a long transaction holding the oldest xmin?)",
            table.dead_tuples,
            table.table,
            table.dead_percent()
        )?;
    }
    if let Some(xmin) = health
        .oldest_xmin
        .as_ref()
        .filter(|xmin| xmin.age > XMIN_WARN_AGE || xmin.open_ms.is_some_and(|ms| ms > XMIN_WARN_OPEN_MS))
    {
        writeln!(
            out,
            "warning: {} holds a snapshot {} transactions old: no dead row newer than it can be vacuumed, in any table; end that transaction",
            xmin.holder, xmin.age
        )?;
    }
    // Graphs with queued runs that no live worker has: those runs wait for a deploy.
    let live: Vec<_> = workers
        .iter()
        .filter(|worker| worker.state == dashflow_queue::WorkerState::Live)
        .flat_map(|worker| worker.info.graph_keys.iter())
        .collect();
    let queued = runtime
        .block_on(queue.list(&dashflow_queue::RunFilter::new().state(RunState::Queued).limit(1000)))
        .context("cannot list queued runs")?;
    let mut orphaned: Vec<String> =
        queued.iter().filter(|run| !live.contains(&&run.graph_key)).map(|run| run.graph_key.to_string()).collect();
    orphaned.sort();
    orphaned.dedup();
    for key in orphaned {
        writeln!(out, "warning: runs of graph {key} are queued and no live worker has that graph")?;
    }
    Ok(())
}
