//! The pages: what each reads and how it is drawn. Every value goes through maud, which
//! escapes it; nothing is written to the page unescaped but the viewer's own markup.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dashflow_checkpoint::{CheckpointRecord, Codec, ThreadSummary};
use dashflow_graph::GraphSchema;
use dashflow_telemetry::{Event, EventKind};
use dashflow_wal::{ExecutionTrace, RunFilter, RunStatus, RunSummary, TraceStatus};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::diff::{Change, diff};
use crate::layout::{GraphPicture, draw};
use crate::util::{encode, format_duration, format_ms, format_time};

/// Runs on the runs page when the request names no limit.
pub const RUNS_PAGE_DEFAULT: usize = 50;
/// The most runs the runs page shows, whatever the request asks: the page's query is always
/// limited, so it answers in bounded time however many runs the index holds.
pub const RUNS_PAGE_MAX: usize = 500;
/// Tasks of a run's timeline on one page; longer runs are paged, and summed per node above.
pub const TIMELINE_PAGE: usize = 200;
/// Events of a run on one page.
pub const EVENTS_PAGE: usize = 200;
/// Threads on one page of the threads list.
pub const THREADS_PAGE: usize = 50;
/// Checkpoints of a thread's history on one page.
pub(crate) const HISTORY_PAGE: usize = 200;

/// The statuses the runs page filters by.
const STATUSES: [&str; 5] = ["running", "abandoned", "completed", "failed", "interrupted"];

/// A page's frame. `live` marks a page that refreshes its `#live` part when the WAL grows.
pub(crate) fn frame(title: &str, live: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · DashFlow" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body data-live=[live.then_some("1")] {
                header {
                    span.brand { "DashFlow" }
                    nav { a href="/" { "Runs" } a href="/threads" { "Threads" } }
                }
                main { (body) }
            }
        }
    }
}

/// An error page's body.
pub(crate) fn error_page(message: &str) -> Markup {
    frame("error", false, html! { h1 { "Something went wrong" } p.error { (message) } })
}

fn status_class(status: &str) -> String {
    format!("status {status}")
}

// ----- runs -----

/// The runs page's query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RunsQuery {
    pub(crate) status: Option<String>,
    pub(crate) graph: Option<String>,
    pub(crate) thread: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) limit: Option<usize>,
}

fn nonempty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|value| !value.is_empty())
}

/// The index query of a runs page: always limited to at most [`RUNS_PAGE_MAX`] runs.
pub(crate) fn runs_filter(query: &RunsQuery) -> Result<RunFilter, String> {
    let mut filter = RunFilter::all();
    if let Some(status) = nonempty(&query.status) {
        let status: RunStatus = status
            .parse()
            .map_err(|_| format!("`{status}` is not a run status: use one of {}", STATUSES.join(", ")))?;
        filter = filter.status(status);
    }
    if let Some(graph) = nonempty(&query.graph) {
        filter = filter.graph(graph);
    }
    if let Some(thread) = nonempty(&query.thread) {
        filter = filter.thread_id(thread);
    }
    if let Some(tag) = nonempty(&query.tag) {
        filter = filter.tag(tag);
    }
    let limit = query.limit.filter(|limit| *limit > 0).unwrap_or(RUNS_PAGE_DEFAULT).min(RUNS_PAGE_MAX);
    Ok(filter.limit(limit))
}

pub(crate) fn runs_page(query: &RunsQuery, runs: &[RunSummary], limit: usize) -> Markup {
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let selected = nonempty(&query.status).unwrap_or("");
    frame(
        "Runs",
        true,
        html! {
            h1 { "Runs" }
            form.filters method="get" action="/" {
                label { "Status " select name="status" {
                    option value="" selected[selected.is_empty()] { "any" }
                    @for status in STATUSES { option value=(status) selected[selected == status] { (status) } }
                } }
                label { "Graph " input type="text" name="graph" value=(value(&query.graph)); }
                label { "Thread " input type="text" name="thread" value=(value(&query.thread)); }
                label { "Tag " input type="text" name="tag" value=(value(&query.tag)); }
                button type="submit" #filter { "Filter" }
            }
            div #live {
                p.count { (runs.len()) " runs" @if runs.len() == limit { " (the newest " (limit) "; filter to see others)" } }
                table.runs {
                    thead { tr { th { "Run" } th { "Graph" } th { "Thread" } th { "Status" } th { "Started (UTC)" } th { "Duration" } th { "Steps" } th { "Tags" } th { "Error" } } }
                    tbody {
                        @for run in runs {
                            @let status = run.status.as_str();
                            tr.run data-status=(status) {
                                td { a href=(format!("/runs/{}", run.ids.run_id)) { code { (run.ids.run_id) } } }
                                td { (run.graph.as_deref().unwrap_or("-")) }
                                td { @match &run.thread_id { Some(thread) => a href=(format!("/threads/{}", encode(thread))) { (thread) }, None => "-" } }
                                td { span class=(status_class(status)) { (status) } }
                                td { (run.started_at.map(format_time).unwrap_or_default()) }
                                td { (run.duration.map(format_duration).unwrap_or_default()) }
                                td.num { (run.steps) }
                                td { (run.tags.join(", ")) }
                                td.error { (run.error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        },
    )
}

// ----- one run -----

/// A run page's query: the first task and event shown.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RunQuery {
    pub(crate) from: Option<usize>,
    pub(crate) events_from: Option<usize>,
}

/// The graph a run used, from its `GraphDefined` event.
pub(crate) fn schema_of(events: &[Event]) -> Option<GraphSchema> {
    events.iter().find_map(|event| match &event.kind {
        EventKind::GraphDefined { schema, .. } => serde_json::from_value((**schema).clone()).ok(),
        _ => None,
    })
}

/// The nodes a run ran and the edges it took, from its trace.
pub(crate) fn picture(schema: &GraphSchema, trace: &ExecutionTrace) -> GraphPicture {
    const START: &str = "__start__";
    const END: &str = "__end__";
    let mut by_step: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for task in &trace.tasks {
        by_step.entry(task.step).or_default().insert(&task.node);
    }
    let mut picture = GraphPicture::default();
    picture.visited.insert(START.to_owned());
    let edge_set: BTreeSet<(&str, &str)> =
        schema.edges.iter().map(|edge| (edge.from.as_str(), edge.to.as_str())).collect();
    let mut previous: BTreeSet<&str> = BTreeSet::from([START]);
    for nodes in by_step.values() {
        for node in nodes {
            picture.visited.insert((*node).to_owned());
            for from in &previous {
                if edge_set.contains(&(*from, *node)) {
                    picture.taken.insert(((*from).to_owned(), (*node).to_owned()));
                }
            }
        }
        previous = nodes.clone();
    }
    for route in &trace.routes {
        picture.taken.insert((route.from.clone(), route.target.clone()));
    }
    if trace.status == TraceStatus::Completed {
        picture.visited.insert(END.to_owned());
        for from in &previous {
            if edge_set.contains(&(*from, END)) {
                picture.taken.insert(((*from).to_owned(), END.to_owned()));
            }
        }
    }
    picture
}

/// What the run page shows.
pub(crate) struct RunView<'a> {
    pub(crate) run: &'a RunSummary,
    pub(crate) trace: &'a ExecutionTrace,
    pub(crate) schema: Option<&'a GraphSchema>,
    pub(crate) events: &'a [Event],
}

/// One node's tasks summed over the run.
#[derive(Default)]
struct NodeTotal {
    tasks: u64,
    failed_attempts: u64,
    total: Duration,
}

pub(crate) fn run_page(view: &RunView<'_>, query: &RunQuery) -> Markup {
    let run = view.run;
    let trace = view.trace;
    let status = run.status.as_str();
    let run_id = run.ids.run_id.to_string();
    let from = query.from.unwrap_or(0).min(trace.tasks.len());
    let window = &trace.tasks[from..(from + TIMELINE_PAGE).min(trace.tasks.len())];
    let events_from = query.events_from.unwrap_or(0).min(view.events.len());
    let events = &view.events[events_from..(events_from + EVENTS_PAGE).min(view.events.len())];
    let start = trace.started_at.or(run.started_at);
    let span = trace
        .tasks
        .iter()
        .filter_map(|task| {
            let begin = task.started_at()?.duration_since(start?).ok()?;
            Some(begin + task.duration())
        })
        .max()
        .unwrap_or_default()
        .max(Duration::from_micros(1));
    let mut totals: BTreeMap<&str, NodeTotal> = BTreeMap::new();
    for task in &trace.tasks {
        let total = totals.entry(&task.node).or_default();
        total.tasks += 1;
        total.failed_attempts += task.attempts.iter().filter(|attempt| attempt.error.is_some()).count() as u64;
        total.total += task.duration();
    }
    let mut routes: BTreeMap<u64, Vec<&dashflow_wal::TraceRoute>> = BTreeMap::new();
    for route in &trace.routes {
        routes.entry(route.step).or_default().push(route);
    }
    let page_link = |task_from: usize, ev_from: usize| format!("/runs/{run_id}?from={task_from}&events_from={ev_from}");
    let live = run.status == RunStatus::Running;
    frame(
        &format!("Run {run_id}"),
        live,
        html! {
            h1 { "Run " code { (run_id) } }
            div #live {
                div.overview {
                div {
                table.summary {
                    tr { th { "Graph" } td { (run.graph.as_deref().unwrap_or("-")) } }
                    tr { th { "Thread" } td { @match &run.thread_id { Some(thread) => a href=(format!("/threads/{}", encode(thread))) { (thread) }, None => "-" } } }
                    tr { th { "Status" } td { span #run-status class=(status_class(status)) { (status) } } }
                    tr { th { "Started (UTC)" } td { (run.started_at.map(format_time).unwrap_or_default()) } }
                    tr { th { "Duration" } td { (trace.duration.or(run.duration).map(format_duration).unwrap_or_default()) } }
                    tr { th { "Steps" } td { (run.steps) } }
                    tr { th { "Events" } td { (run.events) } }
                    @if !run.tags.is_empty() { tr { th { "Tags" } td { (run.tags.join(", ")) } } }
                    @if let Some(parent) = run.ids.parent_run_id { tr { th { "Parent run" } td { a href=(format!("/runs/{parent}")) { code { (parent) } } } } }
                    @if let Some(error) = &run.error { tr { th { "Error" } td.error { (error) } } }
                    @if let Some(interrupt) = &trace.interrupt {
                        tr { th { "Paused" } td { "at " (interrupt.node.as_deref().unwrap_or("-")) @if let Some(message) = &interrupt.message { ": " (message) } } }
                    }
                    @if run.status == RunStatus::Abandoned {
                        tr { th { "Abandoned" } td { "the process running it is gone"
                            @if let Some(process) = &run.process { " (pid " (process.pid) ")" }
                            @if let Some(last) = run.last_event_at { "; its last event was at " (format_time(last)) } } }
                    }
                    tr { th { "Trace" } td { a href=(format!("/runs/{run_id}/trace.json")) { "trace.json" } } }
                }
                }
                div {
                h2.first { "Graph" }
                @match view.schema {
                    Some(schema) => div.picture { (draw(schema, &picture(schema, trace))) },
                    None => p { "The WAL has no graph definition for this run (removed by retention, or written by an older DashFlow)." },
                }
                }
                }
                h2 { "Timeline" }
                @if trace.tasks.len() > TIMELINE_PAGE {
                    h3 { "By node" }
                    table.totals {
                        thead { tr { th { "Node" } th { "Tasks" } th { "Failed attempts" } th { "Total time" } } }
                        tbody { @for (node, total) in &totals {
                            tr.total { td { (node) } td.num { (total.tasks) } td.num { (total.failed_attempts) } td { (format_duration(total.total)) } }
                        } }
                    }
                    p.pager {
                        "Tasks " (from + 1) "–" (from + window.len()) " of " (trace.tasks.len()) ". "
                        @if from > 0 { a href=(page_link(from.saturating_sub(TIMELINE_PAGE), events_from)) { "earlier" } " " }
                        @if from + window.len() < trace.tasks.len() { a href=(page_link(from + TIMELINE_PAGE, events_from)) { "later" } }
                    }
                }
                @if trace.omitted > 0 { p { (trace.omitted) " task and routing events were left out of the trace (its size limit)." } }
                table.timeline {
                    thead { tr { th { "Step" } th { "Node" } th { "Attempts" } th { "Duration" } th { "" } th { "Error" } } }
                    tbody {
                        @for (i, task) in window.iter().enumerate() {
                            @let offset = task.started_at().zip(start).and_then(|(at, start)| at.duration_since(start).ok()).unwrap_or_default();
                            @let x = (offset.as_secs_f64() / span.as_secs_f64() * 300.0).clamp(0.0, 299.0);
                            @let w = (task.duration().as_secs_f64() / span.as_secs_f64() * 300.0).clamp(1.0, 300.0 - x);
                            @let unfinished = task.attempts.last().is_some_and(|attempt| attempt.duration.is_none());
                            tr.task.failed[task.error().is_some()] {
                                td.num { (task.step) }
                                td { (task.node) }
                                td.num { (task.attempts.len()) @if task.attempts.len() > 1 { " (" (task.attempts.len() - 1) " retried)" } }
                                td { @if unfinished { "running" } @else { (format_duration(task.duration())) } }
                                td { svg.bar width="300" height="12" { rect x=(format!("{x:.1}")) y="1" width=(format!("{w:.1}")) height="10" {} } }
                                td.error { (task.error().unwrap_or("")) }
                            }
                            @let last_of_step = window.get(i + 1).is_none_or(|next| next.step != task.step);
                            @if last_of_step { @if let Some(step_routes) = routes.get(&task.step) { @for route in step_routes {
                                tr.route { td.num { (route.step) } td colspan="5" { (route.from) " → " (route.label) " → " (route.target) } }
                            } } }
                        }
                    }
                }
                h2 { "Events" }
                p.pager {
                    "Events " (events_from + usize::from(!events.is_empty())) "–" (events_from + events.len()) " of " (view.events.len()) ". "
                    @if events_from > 0 { a href=(page_link(from, events_from.saturating_sub(EVENTS_PAGE))) { "earlier" } " " }
                    @if events_from + events.len() < view.events.len() { a href=(page_link(from, events_from + EVENTS_PAGE)) { "later" } }
                }
                table.events {
                    thead { tr { th { "At (UTC)" } th { "Event" } th { "Detail" } } }
                    tbody { @for event in events {
                        @let (kind, detail) = describe_event(event);
                        tr.event { td { (format_time(event.at)) } td { (kind) } td { code { (detail) } } }
                    } }
                }
            }
        },
    )
}

/// An event's kind and its fields as compact JSON (the graph schema left out: it is drawn).
fn describe_event(event: &Event) -> (String, String) {
    let value = serde_json::to_value(&event.kind).unwrap_or(Value::Null);
    match value {
        Value::Object(map) if map.len() == 1 => {
            let (kind, fields) = map.into_iter().next().unwrap_or((String::new(), Value::Null));
            let detail = if kind == "GraphDefined" { String::new() } else { fields.to_string() };
            (kind, detail)
        }
        Value::String(kind) => (kind, String::new()),
        other => (String::new(), other.to_string()),
    }
}

// ----- threads -----

/// The threads page's query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ThreadsQuery {
    pub(crate) prefix: Option<String>,
    pub(crate) after: Option<String>,
}

pub(crate) fn threads_page(query: &ThreadsQuery, threads: Option<&[ThreadSummary]>) -> Markup {
    let prefix = query.prefix.clone().unwrap_or_default();
    frame(
        "Threads",
        true,
        html! {
            h1 { "Threads" }
            @match threads {
                None => p { "No checkpoint store: start the viewer with --db (a SQLite file or a PostgreSQL URL)." },
                Some(threads) => {
                    form.filters method="get" action="/threads" {
                        label { "Thread id starts with " input type="text" name="prefix" value=(prefix); }
                        button type="submit" #search { "Search" }
                    }
                    div #live {
                        table.threads {
                            thead { tr { th { "Thread" } th { "Updated (UTC)" } th { "Head" } th { "Step" } th { "Source" } th { "Checkpoints" } } }
                            tbody { @for thread in threads {
                                tr.thread {
                                    td { a href=(format!("/threads/{}", encode(&thread.thread_id))) { (thread.thread_id) } }
                                    td { (format_ms(thread.updated_at_ms)) }
                                    td { code { (thread.checkpoint_id) } }
                                    td.num { (thread.step) }
                                    td { (metadata_text(thread.metadata.get("source"))) }
                                    td.num { (thread.checkpoints) }
                                }
                            } }
                        }
                        @if threads.len() == THREADS_PAGE { @if let Some(last) = threads.last() {
                            p.pager { a href=(format!("/threads?prefix={}&after={}", encode(&prefix), encode(&last.cursor().to_string()))) { "next page" } }
                        } }
                    }
                }
            }
        },
    )
}

fn metadata_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// A thread page's query: the checkpoint shown, and two to compare.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ThreadQuery {
    pub(crate) at: Option<String>,
    pub(crate) a: Option<String>,
    pub(crate) b: Option<String>,
    pub(crate) graph: Option<String>,
}

/// A checkpoint's content as the viewer can show it.
pub(crate) enum Content {
    /// Decoded with the graph's state type.
    State(Value),
    /// The stored payload, decoded because its codec is JSON: a snapshot's state, or a delta's
    /// update since its parent.
    Payload(Value),
    /// Not decodable here.
    Opaque(String),
}

impl Content {
    pub(crate) fn value(&self) -> Option<&Value> {
        match self {
            Self::State(value) | Self::Payload(value) => Some(value),
            Self::Opaque(_) => None,
        }
    }
}

/// A checkpoint's blob decoded as JSON where its codec is JSON.
pub(crate) fn payload(record: &CheckpointRecord) -> Content {
    match dashflow_checkpoint::unseal(&record.blob) {
        Ok(sealed) if sealed.codec == Codec::Json => match sealed.decode::<Value>() {
            Ok(value) => Content::Payload(value),
            Err(error) => Content::Opaque(format!("the JSON payload does not decode: {error}")),
        },
        Ok(_) => Content::Opaque(
            "Encoded with bincode: only the program that runs the graph can decode it (serve the viewer from it \
             with dashflow::ui::serve)."
                .to_owned(),
        ),
        Err(error) => Content::Opaque(format!("the blob cannot be read: {error}")),
    }
}

/// What the thread page shows.
pub(crate) struct ThreadView<'a> {
    pub(crate) thread: &'a str,
    pub(crate) history: &'a [CheckpointRecord],
    /// The checkpoint shown and its content.
    pub(crate) selected: Option<(&'a CheckpointRecord, Content)>,
    /// The two compared, when asked.
    pub(crate) compared: Option<(String, String, Result<Vec<Change>, String>)>,
    /// The registered graph that owns the thread, for the action forms.
    pub(crate) graph: Option<&'a str>,
    /// The interrupts the head waits on (embedded only).
    pub(crate) interrupts: Vec<(String, Value)>,
    pub(crate) note: Option<String>,
    pub(crate) csrf: &'a str,
}

pub(crate) fn compare(a: &Content, b: &Content) -> Result<Vec<Change>, String> {
    match (a.value(), b.value()) {
        (Some(a), Some(b)) => Ok(diff(a, b)),
        _ => Err("one of the two cannot be decoded here, so they cannot be compared".to_owned()),
    }
}

pub(crate) fn thread_page(view: &ThreadView<'_>) -> Markup {
    let thread = view.thread;
    let base = format!("/threads/{}", encode(thread));
    let head = view.history.first();
    let graph_param = view.graph.map(|graph| format!("&graph={}", encode(graph))).unwrap_or_default();
    let selected_id = view.selected.as_ref().map(|(record, _)| record.checkpoint_id.to_string());
    // An update at a checkpoint older than the head forks the thread from it.
    let fork_from = selected_id.clone().filter(|id| head.is_some_and(|head| head.checkpoint_id.to_string() != *id));
    frame(
        &format!("Thread {thread}"),
        true,
        html! {
            h1 { "Thread " code #thread-id { (thread) } }
            div #live {
                @if let Some(note) = &view.note { p #note { (note) } }
                @if let (Some(graph), Some(head)) = (view.graph, head) {
                    section.actions {
                        h2 { "Act as graph " code { (graph) } }
                        @if !head.next_nodes.is_empty() {
                            form #resume-form method="post" action=(format!("{base}/resume")) {
                                input type="hidden" name="csrf" value=(view.csrf);
                                input type="hidden" name="graph" value=(graph);
                                p { "Paused before " strong { (head.next_nodes.join(", ")) } "."
                                    @for (node, value) in &view.interrupts { " " (node) " asks: " code { (value.to_string()) } } }
                                label { "Resume value (JSON, empty to continue) " textarea name="value" rows="2" cols="50" {} }
                                button type="submit" #resume { "Resume" }
                            }
                        }
                        form #update-form method="post" action=(format!("{base}/update")) {
                            input type="hidden" name="csrf" value=(view.csrf);
                            input type="hidden" name="graph" value=(graph);
                            @if let Some(id) = fork_from.as_ref() {
                                input type="hidden" name="checkpoint" value=(id);
                                p { "Fork: the new checkpoint branches from " code { (id) } "." }
                            }
                            label { "Update (JSON of the state's update type) " textarea name="update" rows="3" cols="50" {} }
                            label { "As node " input type="text" name="as_node"; }
                            button type="submit" #update { @if fork_from.is_some() { "Fork" } @else { "Update state" } }
                        }
                    }
                }
                h2 { "Checkpoints" }
                form.compare method="get" action=(base) {
                    @if let Some(graph) = view.graph { input type="hidden" name="graph" value=(graph); }
                    table.history {
                        thead { tr { th { "A" } th { "B" } th { "Checkpoint" } th { "Step" } th { "Kind" } th { "Source" } th { "Next" } th { "Created (UTC)" } th { "Metadata" } } }
                        tbody { @for record in view.history {
                            @let id = record.checkpoint_id.to_string();
                            tr.checkpoint.selected[selected_id.as_deref() == Some(id.as_str())] data-checkpoint=(id) {
                                td { input type="radio" name="a" value=(id); }
                                td { input type="radio" name="b" value=(id); }
                                td { a href=(format!("{base}?at={id}{graph_param}")) { code { (id) } } @if !record.namespace.is_empty() { " (" (record.namespace) ")" } }
                                td.num { (record.step) }
                                td { (record.kind.as_str()) }
                                td { (metadata_text(record.metadata.get("source"))) }
                                td { @if record.next_nodes.is_empty() { "(done)" } @else { (record.next_nodes.join(", ")) } }
                                td { (format_ms(record.created_at_ms)) }
                                td { code { (serde_json::to_string(&record.metadata).unwrap_or_default()) } }
                            }
                        } }
                    }
                    @if view.history.len() == HISTORY_PAGE { p { "The newest " (HISTORY_PAGE) " checkpoints." } }
                    button type="submit" #compare { "Compare A with B" }
                }
                @if let Some((a, b, changes)) = &view.compared {
                    h2 { "From " code { (a) } " to " code { (b) } }
                    @match changes {
                        Err(message) => p { (message) },
                        Ok(changes) if changes.is_empty() => p { "No difference." },
                        Ok(changes) => table.diff {
                            thead { tr { th { "Path" } th { "Before" } th { "After" } } }
                            tbody { @for change in changes {
                                tr.change {
                                    td { code { (change.path) } }
                                    td.before { code { (change.before.as_ref().map(Value::to_string).unwrap_or_else(|| "(absent)".to_owned())) } }
                                    td.after { code { (change.after.as_ref().map(Value::to_string).unwrap_or_else(|| "(absent)".to_owned())) } }
                                }
                            } }
                        },
                    }
                }
                @if let Some((record, content)) = &view.selected {
                    h2 { "Checkpoint " code { (record.checkpoint_id) } }
                    @match content {
                        Content::State(value) => { h3 { "State" } pre #state { (pretty(value)) } }
                        Content::Payload(value) => {
                            h3 { @if record.kind.as_str() == "delta" { "Update since its parent (stored payload)" } @else { "Stored payload" } }
                            pre #state { (pretty(value)) }
                        }
                        Content::Opaque(message) => p #state { (message) },
                    }
                }
            }
        },
    )
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runs_query_is_always_limited() {
        for asked in [None, Some(0), Some(10), Some(RUNS_PAGE_MAX + 1), Some(usize::MAX)] {
            let filter = runs_filter(&RunsQuery { limit: asked, ..RunsQuery::default() }).unwrap();
            let limit = filter.limit.unwrap();
            assert!((1..=RUNS_PAGE_MAX).contains(&limit), "{asked:?} gave {limit}");
        }
        assert_eq!(runs_filter(&RunsQuery::default()).unwrap().limit, Some(RUNS_PAGE_DEFAULT));
    }

    #[test]
    fn a_bad_status_is_an_error_that_lists_the_good_ones() {
        let query = RunsQuery { status: Some("sleeping".into()), ..RunsQuery::default() };
        let error = runs_filter(&query).unwrap_err();
        assert!(error.contains("`sleeping` is not a run status") && error.contains("abandoned"), "{error}");
        let query = RunsQuery { status: Some("failed".into()), graph: Some(" ".into()), ..RunsQuery::default() };
        let filter = runs_filter(&query).unwrap();
        assert_eq!(filter.status, Some(RunStatus::Failed));
        assert_eq!(filter.graph, None, "a blank field does not filter");
    }
}
