//! Measures single-writer `Sync` put throughput and database bytes per checkpoint.
//!
//! `cargo run --release -p dashflow-checkpoint-sqlite --example put_rate [puts per round]`
//!
//! One writer puts a line of deltas (a 20-byte blob, metadata `{"source":"loop","step":n}`,
//! one next node) into one thread of a file database, awaiting each put before the next as a
//! `Sync` run does, in five rounds; it prints each round's rate, the median, the median put
//! latency, and the database bytes per checkpoint. Then sixteen writers do the same, each on
//! its own thread. The machine's other load shows up in the numbers: compare medians.
#![allow(clippy::print_stdout, reason = "an example reports on stdout")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashflow_checkpoint::{CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer, Metadata, now_ms};
use dashflow_checkpoint_sqlite::SqliteCheckpointer;
use serde_json::json;

fn record(thread: &str, parent: Option<&CheckpointRecord>) -> CheckpointRecord {
    let step = parent.map_or(-1, |parent| parent.step + 1);
    CheckpointRecord {
        thread_id: thread.to_owned(),
        namespace: String::new(),
        checkpoint_id: CheckpointId::new(),
        parent_id: parent.map(|parent| parent.checkpoint_id.clone()),
        step,
        kind: if parent.is_none() { CheckpointKind::Snapshot } else { CheckpointKind::Delta },
        blob: vec![0xab; 20],
        metadata: Metadata::from_iter([("source".to_owned(), json!("loop")), ("step".to_owned(), json!(step))]),
        next_nodes: vec!["node".to_owned()],
        created_at_ms: now_ms(),
    }
}

/// Puts `puts` records in a line onto `head`; returns the new head and each put's latency.
async fn write_line(
    checkpointer: Arc<SqliteCheckpointer>,
    thread: String,
    mut head: Option<CheckpointRecord>,
    puts: usize,
) -> anyhow::Result<(Option<CheckpointRecord>, Vec<Duration>)> {
    let mut latencies = Vec::with_capacity(puts);
    for _ in 0..puts {
        let next = record(&thread, head.as_ref());
        let started = Instant::now();
        checkpointer.put(next.clone(), head.as_ref().map(|head| &head.checkpoint_id)).await?;
        latencies.push(started.elapsed());
        head = Some(next);
    }
    Ok((head, latencies))
}

fn median<T: PartialOrd + Copy>(values: &mut [T]) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let puts: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(10_000);
    let dir = tempfile::tempdir()?;

    let checkpointer = Arc::new(SqliteCheckpointer::open(dir.path().join("one.db")).await?);
    let empty = checkpointer.database_bytes().await?;
    let (mut head, mut rates, mut latencies) = (None, Vec::new(), Vec::new());
    for round in 1..=5 {
        let started = Instant::now();
        let (new_head, round_latencies) =
            write_line(Arc::clone(&checkpointer), "thread-1".to_owned(), head, puts).await?;
        let rate = puts as f64 / started.elapsed().as_secs_f64();
        println!("round {round}: {rate:.0} puts/s");
        (head, rates) = (new_head, [rates, vec![rate]].concat());
        latencies.extend(round_latencies);
    }
    let total = 5 * puts;
    let grown = checkpointer.database_bytes().await? - empty;
    let spent: Duration = latencies.iter().sum();
    let slow: Duration = latencies.iter().filter(|latency| latency.as_millis() >= 1).sum();
    latencies.sort_unstable();
    let at = |quantile: f64| latencies[((latencies.len() as f64 * quantile) as usize).min(latencies.len() - 1)];
    println!(
        "one writer:  median {:.0} puts/s; put latency p50 {:?} p90 {:?} p99 {:?} max {:?}; {} puts over 1 ms take {:.0}% of the time",
        median(&mut rates),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        latencies.iter().filter(|latency| latency.as_millis() >= 1).count(),
        slow.as_secs_f64() * 100.0 / spent.as_secs_f64()
    );
    println!(
        "database:    {grown} bytes for {total} checkpoints = {:.1} bytes/checkpoint",
        grown as f64 / total as f64
    );

    let writers = 16;
    let checkpointer = Arc::new(SqliteCheckpointer::open(dir.path().join("many.db")).await?);
    let per_writer = puts / writers;
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| tokio::spawn(write_line(Arc::clone(&checkpointer), format!("thread-{writer}"), None, per_writer)))
        .collect();
    for task in tasks {
        task.await??;
    }
    let rate = (per_writer * writers) as f64 / started.elapsed().as_secs_f64();
    println!("{writers} writers: {rate:.0} puts/s");
    Ok(())
}
