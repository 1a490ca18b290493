//! `dashflow tail`: new events as graphs write them, one line each, like `tail -f`.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use dashflow_telemetry::{Event, EventKind, InterruptReason, RunId};
use dashflow_wal::{Position, RunStatus, Wal};

use crate::cli::TailArgs;
use crate::render;
use crate::store;
use crate::time::format_utc_millis;

/// Records read per poll; a smaller batch than this means the follower has caught up.
const BATCH: usize = 1024;
/// Characters of a custom value or error shown on a line.
const EXCERPT: usize = 100;
/// How often, while idle, the runs seen and not finished are checked for a dead process.
const ABANDONED_CHECK: Duration = Duration::from_secs(1);

pub(crate) fn run(wal: &Wal, args: &TailArgs, out: &mut dyn Write) -> Result<()> {
    let from = if args.from_start { Position::START } else { wal.end() };
    let mut follower = wal.follow(from);
    if !args.exit_when_idle {
        // On stderr, so stdout stays one line per event; it also tells a script (or a test)
        // that every event written from now on will be printed.
        let what = if args.from_start { "all events" } else { "new events" };
        let _ = writeln!(io::stderr(), "following {what} in {} (Ctrl-C stops)", wal.dir().display());
    }
    let mut graphs = GraphNames::default();
    let mut open = OpenRuns::default();
    // Damage the open found was reported already; the follower meets it again from the start.
    let mut reported: Vec<(PathBuf, u64)> = wal.damage().into_iter().map(|r| (r.segment, r.offset)).collect();
    let mut printed = 0u64;
    if args.max_events == Some(0) {
        return Ok(());
    }
    loop {
        let batch = follower.poll(BATCH)?;
        let damage: Vec<_> = follower
            .take_damage()
            .into_iter()
            .filter(|range| {
                !reported.iter().any(|(segment, offset)| *segment == range.segment && *offset == range.offset)
            })
            .collect();
        reported.extend(damage.iter().map(|range| (range.segment.clone(), range.offset)));
        store::warn_damage(&damage);
        store::warn_missing_schemas(&follower.take_missing_schemas());
        let caught_up = batch.len() < BATCH;
        for (_, event) in &batch {
            let graph = graphs.of(wal, event)?;
            if args.graph.as_deref().is_some_and(|wanted| graph.as_deref() != Some(wanted)) {
                continue;
            }
            open.saw(event, graph.as_ref());
            if args.json {
                writeln!(out, "{}", serde_json::to_string(event)?)?;
            } else {
                writeln!(out, "{}", line(event, graph.as_deref()))?;
            }
            printed += 1;
            if args.max_events.is_some_and(|max| printed >= max) {
                out.flush()?;
                return Ok(());
            }
        }
        out.flush()?;
        if caught_up {
            // A run whose process died never writes its end: say so once it is certain (in
            // the text form only; `--json` stays one event per line).
            if !args.json && (args.exit_when_idle || open.due()) {
                for (run_id, graph) in open.abandoned(wal)? {
                    writeln!(out, "{}", abandoned_line(run_id, graph.as_deref()))?;
                }
                out.flush()?;
            }
            if args.exit_when_idle {
                return Ok(());
            }
            // Polling is what `Follower` is built for: it takes no lock and costs one
            // directory listing and a read of the new bytes.
            std::thread::sleep(Duration::from_millis(args.interval_ms));
        }
    }
}

/// The runs seen and not finished, checked now and then for a process that died.
#[derive(Debug)]
struct OpenRuns {
    runs: HashMap<RunId, Option<Arc<str>>>,
    checked: Instant,
}

impl Default for OpenRuns {
    fn default() -> Self {
        Self { runs: HashMap::new(), checked: Instant::now() }
    }
}

impl OpenRuns {
    fn saw(&mut self, event: &Event, graph: Option<&Arc<str>>) {
        if matches!(event.kind, EventKind::RunFinished { .. }) {
            self.runs.remove(&event.run.run_id);
        } else {
            self.runs.entry(event.run.run_id).or_insert_with(|| graph.cloned());
        }
    }

    /// Whether a check is due.
    fn due(&self) -> bool {
        !self.runs.is_empty() && self.checked.elapsed() >= ABANDONED_CHECK
    }

    /// The runs the index now calls abandoned, which are no longer followed.
    fn abandoned(&mut self, wal: &Wal) -> Result<Vec<(RunId, Option<Arc<str>>)>> {
        self.checked = Instant::now();
        let mut gone = Vec::new();
        for (&run_id, graph) in &self.runs {
            if wal.run(run_id)?.is_some_and(|run| run.status == RunStatus::Abandoned) {
                gone.push((run_id, graph.clone()));
            }
        }
        for (run_id, _) in &gone {
            self.runs.remove(run_id);
        }
        gone.sort_by_key(|(run_id, _)| *run_id);
        Ok(gone)
    }
}

/// The line that says a run was abandoned, stamped with the time it was noticed.
fn abandoned_line(run_id: RunId, graph: Option<&str>) -> String {
    format!(
        "{}  {run_id}  {}  run abandoned: its process died before the run finished",
        format_utc_millis(SystemTime::now()),
        graph.unwrap_or("?")
    )
}

/// The graph of each run seen, learned from its first events or asked of the index (for a
/// run that started before the tail did).
#[derive(Debug, Default)]
struct GraphNames {
    known: HashMap<RunId, Arc<str>>,
}

impl GraphNames {
    fn of(&mut self, wal: &Wal, event: &Event) -> Result<Option<Arc<str>>> {
        let run_id = event.run.run_id;
        if let EventKind::GraphDefined { graph, .. } | EventKind::RunStarted { graph, .. } = &event.kind {
            self.known.insert(run_id, Arc::clone(graph));
        }
        if let Some(graph) = self.known.get(&run_id) {
            return Ok(Some(Arc::clone(graph)));
        }
        // Not cached when unknown: the index may learn the run a moment later.
        let graph: Option<Arc<str>> = wal.run(run_id)?.and_then(|run| run.graph).map(Into::into);
        if let Some(graph) = &graph {
            self.known.insert(run_id, Arc::clone(graph));
        }
        Ok(graph)
    }
}

/// One event as one line: time, run, graph, then what happened, indented by nesting depth.
pub(crate) fn line(event: &Event, graph: Option<&str>) -> String {
    let indent = "  ".repeat(event.run.depth as usize);
    format!(
        "{}  {}  {}  {indent}{}",
        format_utc_millis(event.at),
        event.run.run_id,
        graph.unwrap_or("?"),
        describe(&event.kind)
    )
}

fn describe(kind: &EventKind) -> String {
    let attempt = |attempt: u32| if attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
    match kind {
        EventKind::GraphDefined { schema, .. } => {
            let count = |key: &str| schema.get(key).and_then(|v| v.as_array()).map_or(0, Vec::len);
            format!("graph defined: {} nodes, {} edges", count("nodes"), count("edges"))
        }
        EventKind::RunStarted { thread_id, .. } => match thread_id {
            Some(thread) => format!("run started on thread {thread}"),
            None => "run started".to_owned(),
        },
        EventKind::RunFinished { outcome, steps, duration, error } => {
            let mut text = format!("run {outcome} after {steps} step(s) in {}", render::duration(*duration));
            if let Some(error) = error {
                text.push_str(": ");
                text.push_str(&render::excerpt(error, EXCERPT));
            }
            text
        }
        EventKind::SuperstepStarted { step, nodes } => {
            let nodes: Vec<&str> = nodes.iter().map(|n| &**n).collect();
            format!("step {step} started: {}", nodes.join(", "))
        }
        EventKind::SuperstepFinished { step, duration } => {
            format!("step {step} finished in {}", render::duration(*duration))
        }
        EventKind::TaskStarted { step, node, attempt: n } => format!("step {step} {node} started{}", attempt(*n)),
        EventKind::TaskFinished { step, node, attempt: n, duration, error } => match error {
            None => format!("step {step} {node} finished in {}{}", render::duration(*duration), attempt(*n)),
            Some(error) => format!(
                "step {step} {node} FAILED after {}{}: {}",
                render::duration(*duration),
                attempt(*n),
                render::excerpt(error, EXCERPT)
            ),
        },
        EventKind::Routed { step, from, label, target } => {
            format!("step {step} {from} chose \"{label}\" -> {target}")
        }
        EventKind::Custom { step, node, value } => {
            format!("step {step} {node} emitted {}", render::excerpt(&value.to_string(), EXCERPT))
        }
        EventKind::CheckpointCommitted { step, checkpoint_id, snapshot, bytes } => {
            let kind = if *snapshot { "snapshot" } else { "delta" };
            format!("step {step} checkpoint {checkpoint_id} committed ({kind}, {bytes} bytes)")
        }
        EventKind::Interrupted { step, node, reason, value } => {
            let at = match reason {
                InterruptReason::Before => format!("before {node}"),
                InterruptReason::After => format!("after {node}"),
                _ => format!("in {node}"),
            };
            match value {
                Some(value) => format!("step {step} paused {at}: {}", render::excerpt(&value.to_string(), EXCERPT)),
                None => format!("step {step} paused {at}"),
            }
        }
        _ => "an event this version of the CLI does not know".to_owned(),
    }
}
