//! `dashflow runs list`: the index's runs as a table or JSON.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use dashflow_wal::{RunFilter, RunStatus, RunSummary, Wal};
use serde_json::{Value, json};

use crate::cli::ListArgs;
use crate::render::{self, Table};
use crate::time::{format_rfc3339, format_utc};

/// Characters of an error shown in the table: the last column, so enough for the executor's
/// whole sentence (`node `x` failed at step 2 after 1 attempt(s) (Permanent): ...`).
const ERROR_EXCERPT: usize = 120;

pub(crate) fn run(wal: &Wal, args: &ListArgs, out: &mut dyn Write) -> Result<()> {
    let mut filter = RunFilter::all();
    if let Some(status) = args.status {
        filter = filter.status(status);
    }
    if let Some(graph) = &args.graph {
        filter = filter.graph(graph);
    }
    if let Some(thread) = &args.thread {
        filter = filter.thread_id(thread);
    }
    if let Some(since) = args.since {
        filter = filter.since(since);
    }
    if let Some(tag) = &args.tag {
        filter = filter.tag(tag);
    }
    if args.limit > 0 {
        filter = filter.limit(args.limit);
    }
    let runs = wal.list_runs(&filter)?;
    if args.json {
        let runs: Vec<Value> = runs.iter().map(run_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&runs)?)?;
        return Ok(());
    }
    if runs.is_empty() {
        writeln!(out, "no runs match")?;
        return Ok(());
    }
    let mut table = Table::new(&["RUN", "GRAPH", "THREAD", "STATUS", "STARTED (UTC)", ">DURATION", ">STEPS", "ERROR"]);
    for run in &runs {
        table.row(vec![
            run.ids.run_id.to_string(),
            graph_cell(run.graph.as_deref(), run.ids.depth),
            render::or_dash(run.thread_id.as_deref()),
            status_cell(run.status, run.partial),
            render::or_dash(run.started_at.map(format_utc)),
            render::or_dash(run.duration.map(indexed_duration)),
            run.steps.to_string(),
            run.error.as_deref().map(|e| render::excerpt(e, ERROR_EXCERPT)).unwrap_or_default(),
        ]);
    }
    table.write(out)?;
    Ok(())
}

/// A run summary as JSON (also used by `runs show --json`).
pub(crate) fn run_json(run: &RunSummary) -> Value {
    json!({
        "run_id": run.ids.run_id.to_string(),
        "parent_run_id": run.ids.parent_run_id.map(|id| id.to_string()),
        "root_run_id": run.ids.root_run_id.to_string(),
        "depth": run.ids.depth,
        "graph": run.graph,
        "thread_id": run.thread_id,
        "tags": run.tags,
        "status": run.status.as_str(),
        "started_at": run.started_at.map(format_rfc3339),
        "ended_at": run.ended_at.map(format_rfc3339),
        "last_event_at": run.last_event_at.map(format_rfc3339),
        "duration_ms": run.duration.map(millis),
        "steps": run.steps,
        "events": run.events,
        "error": run.error,
        "partial": run.partial,
        "process": run.process.as_ref().map(|process| json!({ "pid": process.pid, "host": process.host })),
    })
}

/// A run's duration as the index keeps it, in whole microseconds: zero means under one.
pub(crate) fn indexed_duration(d: Duration) -> String {
    if d.is_zero() { "<1µs".to_owned() } else { render::duration(d) }
}

/// A duration in (fractional) milliseconds, for JSON.
pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// A run's graph in the runs table; subgraph runs are marked, so they are not mistaken for
/// runs someone started.
pub(crate) fn graph_cell(graph: Option<&str>, depth: u32) -> String {
    let graph = graph.unwrap_or("?");
    if depth > 0 { format!("↳ {graph}") } else { graph.to_owned() }
}

/// A run's status in the runs table, marked when its start is no longer in the log.
pub(crate) fn status_cell(status: RunStatus, partial: bool) -> String {
    if partial { format!("{status} (partial)") } else { status.to_string() }
}
