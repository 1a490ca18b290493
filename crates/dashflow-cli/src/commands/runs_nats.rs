//! `dashflow runs list --nats URL` and `runs show --nats URL RUN`: the runs a JetStream stream
//! holds, from every publishing host, in the shapes `runs list` and `runs show` print for the
//! WAL. The stream is read from its start (or from `--since`) up to what it holds when the
//! command starts.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use dashflow_nats::{Follow, Item, NatsConsumer, Publisher, Received, StartAt};
use dashflow_telemetry::{Event, EventKind, RunId, RunIds, RunOutcome};
use dashflow_wal::RunStatus;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::cli::{ListArgs, ShowArgs};
use crate::commands::runs_list::{graph_cell, millis, status_cell};
use crate::commands::runs_show::{Header, entry_json, timeline, write_children, write_header, write_timeline};
use crate::render::{self, Table};
use crate::time::{format_rfc3339, format_utc};

/// Characters of an error shown in the table, as `runs list` shows.
const ERROR_EXCERPT: usize = 120;
/// With nothing matching, no message ever says the reader caught up: a quiet spell ends it.
const IDLE: Duration = Duration::from_secs(2);
/// How long a message missing from a run is waited for before it is taken as lost: the
/// stream is read as stored, so a re-sent message is already there or not coming soon.
const REORDER_WAIT: Duration = Duration::from_secs(1);

/// One run as the stream tells it.
struct StreamRun {
    ids: RunIds,
    graph: Option<String>,
    thread_id: Option<String>,
    tags: Vec<String>,
    status: RunStatus,
    started_at: Option<SystemTime>,
    ended_at: Option<SystemTime>,
    last_event_at: Option<SystemTime>,
    duration: Option<Duration>,
    error: Option<String>,
    steps: u64,
    events: Vec<Event>,
    /// Its start is not in what was read (removed by the stream's limits, before `--since`,
    /// or never published).
    partial: bool,
    /// Messages of the run that never arrived.
    missing: u64,
    publisher: Publisher,
    /// Where its first message is in the stream, to order runs without a start.
    first_sequence: u64,
}

impl StreamRun {
    fn new(received: &Received) -> Self {
        Self {
            ids: received.run,
            graph: (&*received.graph != "?").then(|| received.graph.to_string()),
            thread_id: None,
            tags: Vec::new(),
            status: RunStatus::Running,
            started_at: None,
            ended_at: None,
            last_event_at: None,
            duration: None,
            error: None,
            steps: 0,
            events: Vec::new(),
            partial: true,
            missing: 0,
            publisher: received.publisher.clone(),
            first_sequence: received.stream_sequence,
        }
    }

    fn add(&mut self, received: Received) {
        let event = match received.item {
            Item::Event(event) => event,
            Item::Gap { count } => {
                self.missing += count;
                return;
            }
            _ => return,
        };
        self.last_event_at = Some(self.last_event_at.map_or(event.at, |last| last.max(event.at)));
        match &event.kind {
            EventKind::RunStarted { graph, thread_id, tags } => {
                self.graph = Some(graph.to_string());
                self.thread_id = thread_id.as_ref().map(ToString::to_string);
                self.tags = tags.iter().map(ToString::to_string).collect();
                self.started_at = Some(event.at);
                self.partial = false;
            }
            EventKind::SuperstepStarted { step, .. } => self.steps = self.steps.max(*step),
            EventKind::RunFinished { outcome, steps, duration, error } => {
                self.status = match outcome {
                    RunOutcome::Completed => RunStatus::Completed,
                    RunOutcome::Failed => RunStatus::Failed,
                    _ => RunStatus::Interrupted,
                };
                self.steps = *steps;
                self.duration = Some(*duration);
                self.error.clone_from(error);
                self.ended_at = Some(event.at);
            }
            _ => {}
        }
        self.events.push(event);
    }

    /// Newest first, as `runs list` orders: by start, then by id.
    fn order_key(&self) -> (Option<SystemTime>, u64, RunId) {
        (self.started_at, self.first_sequence, self.ids.run_id)
    }

    fn json(&self) -> Value {
        json!({
            "run_id": self.ids.run_id.to_string(),
            "parent_run_id": self.ids.parent_run_id.map(|id| id.to_string()),
            "root_run_id": self.ids.root_run_id.to_string(),
            "depth": self.ids.depth,
            "graph": self.graph,
            "thread_id": self.thread_id,
            "tags": self.tags,
            "status": self.status.as_str(),
            "started_at": self.started_at.map(format_rfc3339),
            "ended_at": self.ended_at.map(format_rfc3339),
            "last_event_at": self.last_event_at.map(format_rfc3339),
            "duration_ms": self.duration.map(millis),
            "steps": self.steps,
            "events": self.events.len(),
            "error": self.error,
            "partial": self.partial,
            // The WAL's field: which process runs it. A stream names the publisher instead.
            "process": Value::Null,
            "publisher": { "id": self.publisher.id, "name": self.publisher.name },
            "missing_messages": self.missing,
        })
    }
}

/// Where the stream is, from the command's arguments.
struct Source<'a> {
    url: &'a str,
    stream: &'a str,
    prefix: &'a str,
}

/// The runs the stream holds now, by id, read from `start`.
async fn read_runs(source: &Source<'_>, start: StartAt) -> Result<BTreeMap<RunId, StreamRun>> {
    let Source { url, stream, prefix } = source;
    let consumer = NatsConsumer::connect_to(url, stream, prefix).await?;
    let reading = || format!("reading stream {stream} at {url}");
    let mut runs: BTreeMap<RunId, StreamRun> = BTreeMap::new();
    if consumer.last_sequence().await.with_context(reading)? == 0 {
        return Ok(runs);
    }
    let follow = Follow::all().start_at(start).reorder_wait(REORDER_WAIT);
    let mut messages = consumer.follow(follow).await.with_context(reading)?;
    loop {
        let Ok(Some(received)) = tokio::time::timeout(IDLE, messages.next()).await else { break };
        let received = received.with_context(reading)?;
        let caught_up = received.pending == 0;
        runs.entry(received.run.run_id).or_insert_with(|| StreamRun::new(&received)).add(received);
        if caught_up {
            break;
        }
    }
    Ok(runs)
}

fn source<'a>(nats: Option<&'a str>, stream: &'a str, prefix: &'a str) -> Option<Source<'a>> {
    Some(Source { url: nats?, stream, prefix })
}

fn block_on<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(future)
}

/// `runs list --nats URL`.
pub(crate) fn list(args: &ListArgs, out: &mut dyn Write) -> Result<()> {
    let Some(source) = source(args.nats.as_deref(), &args.stream, &args.subject_prefix) else { return Ok(()) };
    if args.status == Some(RunStatus::Abandoned) {
        bail!(
            "--status abandoned needs the WAL: a stream cannot tell whether a publisher's process is still alive, \
             so its unfinished runs are listed as running"
        );
    }
    let start = args.since.map_or(StartAt::Beginning, StartAt::Time);
    let runs = block_on(read_runs(&source, start))?;
    let mut runs: Vec<StreamRun> = runs
        .into_values()
        .filter(|run| args.status.is_none_or(|status| run.status == status))
        .filter(|run| args.graph.as_deref().is_none_or(|graph| run.graph.as_deref() == Some(graph)))
        .filter(|run| args.thread.as_deref().is_none_or(|thread| run.thread_id.as_deref() == Some(thread)))
        .filter(|run| args.tag.as_deref().is_none_or(|tag| run.tags.iter().any(|t| t == tag)))
        .filter(|run| args.since.is_none_or(|since| run.started_at.is_some_and(|at| at >= since)))
        .collect();
    runs.sort_by_key(|run| std::cmp::Reverse(run.order_key()));
    if args.limit > 0 {
        runs.truncate(args.limit);
    }
    if args.json {
        let runs: Vec<Value> = runs.iter().map(StreamRun::json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&runs)?)?;
        return Ok(());
    }
    if runs.is_empty() {
        writeln!(out, "no runs match")?;
        return Ok(());
    }
    let mut table =
        Table::new(&["RUN", "GRAPH", "THREAD", "STATUS", "STARTED (UTC)", ">DURATION", ">STEPS", "PUBLISHER", "ERROR"]);
    for run in &runs {
        table.row(vec![
            run.ids.run_id.to_string(),
            graph_cell(run.graph.as_deref(), run.ids.depth),
            render::or_dash(run.thread_id.as_deref()),
            status_cell(run.status, run.partial),
            render::or_dash(run.started_at.map(format_utc)),
            render::or_dash(run.duration.map(render::duration)),
            run.steps.to_string(),
            run.publisher.name.clone(),
            run.error.as_deref().map(|e| render::excerpt(e, ERROR_EXCERPT)).unwrap_or_default(),
        ]);
    }
    table.write(out)?;
    Ok(())
}

/// `runs show --nats URL RUN`.
pub(crate) fn show(args: &ShowArgs, out: &mut dyn Write) -> Result<()> {
    let Some(source) = source(args.nats.as_deref(), &args.stream, &args.subject_prefix) else { return Ok(()) };
    // The whole stream: a run's subgraph runs have subjects of their own.
    let mut runs = block_on(read_runs(&source, StartAt::Beginning))?;
    let run_id = resolve(&runs, &args.run, &source)?;
    let Some(run) = runs.remove(&run_id) else { bail!("no run `{}` in stream {}", args.run, source.stream) };
    let entries = timeline(&run.events);
    let mut children: Vec<&StreamRun> =
        runs.values().filter(|child| child.ids.parent_run_id == Some(run.ids.run_id)).collect();
    children.sort_by_key(|child| child.order_key());
    if args.json {
        let value = json!({
            "run": run.json(),
            "timeline": entries.iter().map(entry_json).collect::<Vec<_>>(),
            "subgraph_runs": children.iter().map(|child| child.json()).collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    let partial = match (run.partial, run.missing) {
        (true, _) => Some(
            "the stream lacks the run's start (removed by the stream's limits, or never published); the timeline \
             may be incomplete",
        ),
        (false, 0) => None,
        (false, _) => Some(
            "some of the run's messages never reached the stream (given up by their publisher, or removed by the \
             stream's limits); the timeline may be incomplete",
        ),
    };
    let header = Header {
        ids: run.ids,
        graph: run.graph.as_deref(),
        thread_id: run.thread_id.as_deref(),
        tags: &run.tags,
        status: run.status,
        started_at: run.started_at,
        duration: run.duration.map(render::duration),
        steps: run.steps,
        error: run.error.as_deref(),
        process: None,
        publisher: Some(format!("{} ({})", run.publisher.name, run.publisher.id)),
        last_event_at: run.last_event_at,
        partial,
    };
    write_header(&header, out)?;
    writeln!(out)?;
    write_timeline(&entries, run.status, out)?;
    let rows = children
        .iter()
        .map(|child| (child.ids.run_id, child.graph.as_deref(), child.status, child.duration.map(render::duration)));
    write_children(rows, out)
}

/// The run `text` names among `runs`: a whole id, or a prefix of exactly one.
fn resolve(runs: &BTreeMap<RunId, StreamRun>, text: &str, source: &Source<'_>) -> Result<RunId> {
    let prefix = text.trim().to_ascii_uppercase();
    let matches: Vec<RunId> =
        runs.keys().copied().filter(|id| !prefix.is_empty() && id.to_string().starts_with(&prefix)).collect();
    match matches[..] {
        [run] => Ok(run),
        [] => bail!(
            "no run `{text}` in stream {} at {}: check the id with `dashflow runs list --nats {}` (the stream's \
             limits may have removed old runs)",
            source.stream,
            source.url,
            source.url
        ),
        _ => {
            let shown: Vec<String> = matches.iter().take(10).map(ToString::to_string).collect();
            bail!(
                "run id prefix `{text}` is ambiguous: it matches {} runs; type more of the id:\n  {}",
                matches.len(),
                shown.join("\n  ")
            )
        }
    }
}
