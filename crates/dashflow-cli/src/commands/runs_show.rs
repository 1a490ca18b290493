//! `dashflow runs show`: one run as a timeline of its tasks, built from its events.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use dashflow_telemetry::{Event, EventKind, RunOutcome};
use dashflow_wal::{RunFilter, RunStatus, RunSummary, Wal};
use serde_json::{Value, json};

use crate::cli::ShowArgs;
use crate::commands::runs_list::{indexed_duration, millis, run_json};
use crate::render::{self, BAR_WIDTH, Table};
use crate::store;
use crate::time::{format_utc, format_utc_millis};

/// One line of the timeline.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Entry {
    /// One attempt of a task.
    Task(Task),
    /// A conditional edge's decision after a step.
    Routed { step: u64, from: String, label: String, target: String },
    /// The run paused after `step` (for a person, or a configured interrupt), at `node`
    /// (`before` it, `after` it, or inside it: `node`) when the WAL says so.
    Interrupted { step: u64, node: Option<String>, reason: Option<String> },
}

/// One attempt of one task.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Task {
    pub(crate) step: u64,
    pub(crate) node: String,
    pub(crate) attempt: u32,
    /// `None` while no `TaskFinished` was seen: still running, or its process died.
    pub(crate) duration: Option<Duration>,
    pub(crate) error: Option<String>,
}

/// The timeline of a run's events, in the order they happened: tasks in the order their
/// steps started them, each routing decision after the step it routed.
///
/// A step's `SuperstepStarted` lists its tasks, so a task shows even when only its end is
/// recorded (the WAL does not ask for `TaskStarted`) or when it never ended (its process
/// died). `TaskStarted` events, where a store has them, are matched to the same rows.
pub(crate) fn timeline(events: &[Event]) -> Vec<Entry> {
    let mut entries = Vec::new();
    // Rows of a step's tasks not yet matched to a start or an end, by step and node.
    let mut planned: HashMap<(u64, &str), VecDeque<usize>> = HashMap::new();
    // Rows of tasks started but not finished, by step, node and attempt; parallel tasks of one
    // node (a map-reduce fan-out) finish in any order, so the earliest unfinished one is matched.
    let mut open: HashMap<(u64, &str, u32), VecDeque<usize>> = HashMap::new();
    let new_task = |step: u64, node: &str, attempt: u32| {
        Entry::Task(Task { step, node: node.to_owned(), attempt, duration: None, error: None })
    };
    for event in events {
        match &event.kind {
            EventKind::SuperstepStarted { step, nodes } => {
                for node in nodes.iter() {
                    planned.entry((*step, &**node)).or_default().push_back(entries.len());
                    entries.push(new_task(*step, node, 1));
                }
            }
            EventKind::TaskStarted { step, node, attempt } => {
                let row = (*attempt == 1)
                    .then(|| planned.get_mut(&(*step, &**node)).and_then(VecDeque::pop_front))
                    .flatten()
                    .unwrap_or_else(|| {
                        entries.push(new_task(*step, node, *attempt));
                        entries.len() - 1
                    });
                open.entry((*step, &**node, *attempt)).or_default().push_back(row);
            }
            EventKind::TaskFinished { step, node, attempt, duration, error } => {
                let started = open.get_mut(&(*step, &**node, *attempt)).and_then(VecDeque::pop_front);
                let planned_row = || {
                    (*attempt == 1).then(|| planned.get_mut(&(*step, &**node)).and_then(VecDeque::pop_front)).flatten()
                };
                let row = started.or_else(planned_row).unwrap_or_else(|| {
                    // A retry, or a start the WAL lacks (retention cut the run): the end still counts.
                    entries.push(new_task(*step, node, *attempt));
                    entries.len() - 1
                });
                if let Some(Entry::Task(task)) = entries.get_mut(row) {
                    task.duration = Some(*duration);
                    task.error.clone_from(error);
                }
            }
            EventKind::Routed { step, from, label, target } => entries.push(Entry::Routed {
                step: *step,
                from: from.to_string(),
                label: label.to_string(),
                target: target.to_string(),
            }),
            EventKind::Interrupted { step, node, reason, .. } => entries.push(Entry::Interrupted {
                step: *step,
                node: Some(node.to_string()),
                reason: Some(reason.to_string()),
            }),
            // Older stores only have the run's outcome.
            EventKind::RunFinished { outcome: RunOutcome::Interrupted, steps, .. }
                if !entries.iter().any(|entry| matches!(entry, Entry::Interrupted { .. })) =>
            {
                entries.push(Entry::Interrupted { step: *steps, node: None, reason: None });
            }
            _ => {}
        }
    }
    entries
}

pub(crate) fn run(wal: &Wal, args: &ShowArgs, out: &mut dyn Write) -> Result<()> {
    let run = store::resolve_run(wal, &args.run)?;
    let events = wal.run_events(run.ids.run_id)?;
    let entries = timeline(&events);
    let children: Vec<RunSummary> = wal
        .list_runs(&RunFilter::all().root_run_id(run.ids.root_run_id))?
        .into_iter()
        .filter(|child| child.ids.parent_run_id == Some(run.ids.run_id))
        .rev()
        .collect();
    if args.json {
        // The trace record of a finished run: every trace is readable here, whether or not
        // trace files were written.
        let trace = wal.trace(run.ids.run_id)?;
        let value = json!({
            "run": run_json(&run),
            "timeline": entries.iter().map(entry_json).collect::<Vec<_>>(),
            "subgraph_runs": children.iter().map(run_json).collect::<Vec<_>>(),
            "trace": trace,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    // The run's own event has the duration to the microsecond; the index keeps milliseconds.
    let duration = events.iter().rev().find_map(|event| match event.kind {
        EventKind::RunFinished { duration, .. } => Some(render::duration(duration)),
        _ => None,
    });
    write_header(&Header::of(&run, duration.or_else(|| run.duration.map(indexed_duration))), out)?;
    writeln!(out)?;
    write_timeline(&entries, run.status, out)?;
    let rows = children.iter().map(|child| {
        let duration = child.duration.map(indexed_duration);
        (child.ids.run_id, child.graph.as_deref(), child.status, duration)
    });
    write_children(rows, out)
}

/// The table of a run's subgraph runs under its timeline (run, graph, status, duration);
/// nothing for a run without any.
pub(crate) fn write_children<'a>(
    children: impl Iterator<Item = (dashflow_telemetry::RunId, Option<&'a str>, RunStatus, Option<String>)>,
    out: &mut dyn Write,
) -> Result<()> {
    let mut children = children.peekable();
    if children.peek().is_none() {
        return Ok(());
    }
    writeln!(out, "\nsubgraph runs:")?;
    let mut table = Table::new(&["RUN", "GRAPH", "STATUS", ">DURATION"]);
    for (run_id, graph, status, duration) in children {
        table.row(vec![run_id.to_string(), render::or_dash(graph), status.to_string(), render::or_dash(duration)]);
    }
    table.write(out)?;
    Ok(())
}

/// What the header of `runs show` says, from the WAL's index or from a stream.
pub(crate) struct Header<'a> {
    pub(crate) ids: dashflow_telemetry::RunIds,
    pub(crate) graph: Option<&'a str>,
    pub(crate) thread_id: Option<&'a str>,
    pub(crate) tags: &'a [String],
    pub(crate) status: RunStatus,
    pub(crate) started_at: Option<SystemTime>,
    pub(crate) duration: Option<String>,
    pub(crate) steps: u64,
    pub(crate) error: Option<&'a str>,
    /// Which process runs it (`pid N on HOST`), shown while it runs.
    pub(crate) process: Option<String>,
    /// Which process published it, for a run read from a stream: shown always.
    pub(crate) publisher: Option<String>,
    pub(crate) last_event_at: Option<SystemTime>,
    /// Why the timeline may be incomplete, if it may.
    pub(crate) partial: Option<&'static str>,
}

impl<'a> Header<'a> {
    fn of(run: &'a RunSummary, duration: Option<String>) -> Self {
        Self {
            ids: run.ids,
            graph: run.graph.as_deref(),
            thread_id: run.thread_id.as_deref(),
            tags: &run.tags,
            status: run.status,
            started_at: run.started_at,
            duration,
            steps: run.steps,
            error: run.error.as_deref(),
            process: run.process.as_ref().map(|process| format!("pid {} on {}", process.pid, process.host)),
            publisher: None,
            last_event_at: run.last_event_at,
            partial: run.partial.then_some(
                "the WAL lacks the run's start (removed by retention, or never written); the timeline may be incomplete",
            ),
        }
    }
}

pub(crate) fn write_header(run: &Header<'_>, out: &mut dyn Write) -> Result<()> {
    let mut field = |name: &str, value: &str| writeln!(out, "{name:<9} {value}");
    field("run", &run.ids.run_id.to_string())?;
    field("graph", run.graph.unwrap_or("?"))?;
    field("thread", run.thread_id.unwrap_or("-"))?;
    if !run.tags.is_empty() {
        field("tags", &run.tags.join(", "))?;
    }
    match run.status {
        RunStatus::Abandoned => field("status", "abandoned: its process died before the run finished")?,
        status => field("status", status.as_str())?,
    }
    field("started", &run.started_at.map_or_else(|| "-".to_owned(), |at| format!("{} UTC", format_utc(at))))?;
    field("duration", &render::or_dash(run.duration.clone()))?;
    field("steps", &run.steps.to_string())?;
    if let Some(parent) = run.ids.parent_run_id {
        field("parent", &format!("{parent} (root {}, depth {})", run.ids.root_run_id, run.ids.depth))?;
    }
    if let Some(error) = run.error {
        field("error", error)?;
    }
    if let Some(publisher) = &run.publisher {
        field("publisher", publisher)?;
    }
    if matches!(run.status, RunStatus::Running | RunStatus::Abandoned) {
        if let Some(process) = &run.process {
            let gone = if run.status == RunStatus::Abandoned { " (gone)" } else { "" };
            field("process", &format!("{process}{gone}"))?;
        }
        if let Some(last) = run.last_event_at {
            field("last seen", &last_seen(last, run.started_at))?;
        }
    }
    if let Some(partial) = run.partial {
        field("note", partial)?;
    }
    Ok(())
}

/// When a run's latest event happened, and how long after its start: for an abandoned run,
/// about when its process died.
fn last_seen(last: SystemTime, started: Option<SystemTime>) -> String {
    let after = started.and_then(|started| last.duration_since(started).ok());
    match after {
        Some(after) => {
            format!("{} UTC (the last event, {} after the start)", format_utc_millis(last), indexed_duration(after))
        }
        None => format!("{} UTC (the last event)", format_utc_millis(last)),
    }
}

pub(crate) fn write_timeline(entries: &[Entry], status: RunStatus, out: &mut dyn Write) -> Result<()> {
    let tasks = || entries.iter().filter_map(|entry| if let Entry::Task(task) = entry { Some(task) } else { None });
    if entries.is_empty() {
        writeln!(out, "no tasks recorded")?;
        return Ok(());
    }
    let longest = tasks().filter_map(|task| task.duration).max().unwrap_or_default();
    let node_width = tasks().map(|task| task.node.chars().count()).max().unwrap_or(0).max("NODE".len());
    let duration_width = "DURATION".len();
    writeln!(out, "STEP  {:<node_width$}  TRY  {:>duration_width$}", "NODE", "DURATION")?;
    // Where notes after the bar start, and where the continuation lines of an error start.
    let indent = " ".repeat(4 + 2 + node_width + 2 + 3 + 2 + duration_width + 2 + BAR_WIDTH + 2 + 2);
    for entry in entries {
        match entry {
            Entry::Task(task) => {
                let (took, bar) = match task.duration {
                    Some(took) => (render::duration(took), render::bar(took, longest, BAR_WIDTH)),
                    None => ("…".to_owned(), String::new()),
                };
                let note = match (&task.error, task.duration) {
                    (Some(error), _) => {
                        let mark = if error.contains("waiting for input") { "⏸" } else { "✗" };
                        format!("{mark} {}", error.replace('\n', &format!("\n{indent}")))
                    }
                    (None, None) if status == RunStatus::Running => "running".to_owned(),
                    (None, None) if status == RunStatus::Abandoned => "never finished: its process died".to_owned(),
                    (None, None) => "no end recorded (its process may have died)".to_owned(),
                    (None, Some(_)) => String::new(),
                };
                let bar_pad = BAR_WIDTH.saturating_sub(bar.chars().count());
                let line = format!(
                    "{:>4}  {:<node_width$}  {:>3}  {took:>duration_width$}  {bar}{}  {note}",
                    task.step,
                    task.node,
                    task.attempt,
                    " ".repeat(bar_pad),
                );
                writeln!(out, "{}", line.trim_end())?;
            }
            Entry::Routed { from, label, target, .. } => {
                writeln!(out, "      ↳ {from} chose \"{label}\" → {target}")?;
            }
            Entry::Interrupted { step, node, reason } => {
                let at = match (node, reason.as_deref()) {
                    (Some(node), Some("before")) => format!(" before {node}"),
                    (Some(node), Some("after")) => format!(" after {node}"),
                    (Some(node), _) => format!(" in {node}"),
                    (None, _) => String::new(),
                };
                writeln!(out, "      ⏸ interrupted{at} after step {step}; resuming the thread continues the run")?;
            }
        }
    }
    Ok(())
}

pub(crate) fn entry_json(entry: &Entry) -> Value {
    match entry {
        Entry::Task(task) => json!({
            "type": "task",
            "step": task.step,
            "node": task.node,
            "attempt": task.attempt,
            "duration_ms": task.duration.map(millis),
            "error": task.error,
        }),
        Entry::Routed { step, from, label, target } => {
            json!({ "type": "routed", "step": step, "from": from, "label": label, "target": target })
        }
        Entry::Interrupted { step, node, reason } => {
            json!({ "type": "interrupted", "step": step, "node": node, "reason": reason })
        }
    }
}

#[cfg(test)]
mod tests;
