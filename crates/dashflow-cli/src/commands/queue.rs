//! `dashflow workers list` and `dashflow queue stats`: the run queue of a PostgreSQL database,
//! read through `dashflow-queue-postgres`.

use std::io::Write;

use anyhow::{Context, Result};
use dashflow_checkpoint_postgres::PostgresCheckpointer;
use dashflow_queue::{RunQueue, RunState};
use dashflow_queue_postgres::PostgresRunQueue;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;

use crate::cli::QueueArgs;
use crate::render::{self, Table};

fn open(args: &QueueArgs) -> Result<(PostgresRunQueue, tokio::runtime::Runtime)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime for the run queue")?;
    // The URL is not repeated in errors: it may hold a password.
    let mut options: PgConnectOptions = args.db.parse().context("the --db URL is not a valid PostgreSQL URL")?;
    if let Some(schema) = &args.schema {
        options = options.options([("search_path", schema.as_str())]);
    }
    let queue = runtime.block_on(async {
        let checkpointer = PostgresCheckpointer::connect_with(options).await.context("cannot connect to --db")?;
        PostgresRunQueue::new(checkpointer).await.context("cannot open the run queue of --db")
    })?;
    Ok((queue, runtime))
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
    let (stats, workers) = runtime.block_on(async {
        let stats = queue.stats().await.context("cannot read the queue's counts")?;
        let workers = queue.workers().await.context("cannot list the workers")?;
        anyhow::Ok((stats, workers))
    })?;
    if args.json {
        let rows: Vec<_> = stats
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
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
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
