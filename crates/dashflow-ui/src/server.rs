//! The HTTP side: routes, the access and host checks, security headers, live updates and
//! the actions.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Form, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use dashflow_checkpoint::{CheckpointRecord, ListOptions, ThreadCursor, ThreadListOptions};
use dashflow_telemetry::RunId;
use dashflow_wal::{ExecutionTrace, Retention, RunFilter, Wal, WalConfig};
use futures::Stream;
use serde::Deserialize;
use serde_json::Value;

use crate::pages::{
    self, Content, HISTORY_PAGE, RunQuery, RunView, RunsQuery, THREADS_PAGE, ThreadQuery, ThreadView, ThreadsQuery,
};
use crate::util::{encode, same_secret};
use crate::{Shared, UiGraph};

type Shared_ = Arc<Shared>;

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");
/// How often the live stream looks at the WAL directory for new writes.
const LIVE_POLL: Duration = Duration::from_millis(250);
const TOKEN_COOKIE: &str = "dashflow_ui_token";

/// Bumped by every action, so that live pages see its note.
static ACTIONS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn router(shared: Shared_) -> Router {
    Router::new()
        .route("/", get(runs))
        .route("/runs/{id}", get(run))
        .route("/runs/{id}/trace.json", get(trace))
        .route("/threads", get(threads))
        .route("/threads/{id}", get(thread))
        .route("/threads/{id}/resume", post(resume))
        .route("/threads/{id}/update", post(update))
        .route("/live", get(live))
        .route("/assets/app.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }))
        .route("/assets/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], JS) }))
        .layer(middleware::from_fn(security_headers))
        .with_state(shared)
}

/// The router behind the checks `serve` adds: the host a loopback viewer answers to, and the
/// access token of a remote one.
pub(crate) fn guarded(shared: Shared_, addr: SocketAddr) -> Router {
    let loopback = addr.ip().is_loopback();
    let guard_state = (Arc::clone(&shared), loopback);
    router(shared).layer(middleware::from_fn_with_state(guard_state, guard))
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    // Only the viewer's own script and style run, whatever a page holds.
    set(
        headers,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "cache-control", "no-store");
    response
}

/// Hosts a loopback viewer answers to: a page of another site that rebinds its name to
/// 127.0.0.1 names its own host, and is refused.
fn loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    matches!(name, "localhost" | "[::1]") || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

async fn guard(State((shared, loopback)): State<(Shared_, bool)>, request: Request, next: Next) -> Response {
    if loopback {
        let host = request.headers().get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or("");
        if !loopback_host(host) {
            return (StatusCode::MISDIRECTED_REQUEST, "the viewer answers to localhost only").into_response();
        }
    }
    let Some(token) = shared.access_token.lock().clone() else {
        return next.run(request).await;
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let cookie =
        request.headers().get_all(header::COOKIE).iter().filter_map(|value| value.to_str().ok()).find_map(|cookies| {
            cookies.split(';').find_map(|pair| pair.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
        });
    if bearer.or(cookie).is_some_and(|given| same_secret(given, &token)) {
        return next.run(request).await;
    }
    let in_query = request
        .uri()
        .query()
        .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("token=")))
        .is_some_and(|given| same_secret(&decode(given), &token));
    if in_query {
        // Trade the token in the URL for a cookie, and drop it from the address bar.
        let path = request.uri().path().to_owned();
        let mut response = Redirect::to(&path).into_response();
        let cookie = format!("{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        return response;
    }
    (StatusCode::UNAUTHORIZED, "this viewer needs its access token: open the URL `dashflow ui` printed").into_response()
}

/// Percent-decoding of a query value.
fn decode(text: &str) -> String {
    let hex = |byte: u8| char::from(byte).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
        {
            (b'%', Some(high), Some(low)) => u8::try_from(high * 16 + low).ok(),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A page's failure: its status and a message for the person.
struct PageError(StatusCode, String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        (self.0, Html(pages::error_page(&self.1).into_string())).into_response()
    }
}

fn internal(message: impl Into<String>) -> PageError {
    PageError(StatusCode::INTERNAL_SERVER_ERROR, message.into())
}

/// Runs `f` on the WAL, opened read-only, on a blocking thread.
async fn with_wal<T: Send + 'static>(
    shared: &Shared_,
    f: impl FnOnce(&Wal) -> Result<T, PageError> + Send + 'static,
) -> Result<T, PageError> {
    let dir = shared.wal_dir.clone();
    tokio::task::spawn_blocking(move || {
        if !dir.is_dir() {
            return Err(PageError(
                StatusCode::NOT_FOUND,
                format!("no WAL at {}: run a graph with DASHFLOW_WAL unset first, or pass --home", dir.display()),
            ));
        }
        let wal = Wal::open_read_only(&dir, WalConfig::default().retention(Retention::KEEP_ALL))
            .map_err(|error| internal(format!("cannot open the WAL at {}: {}", dir.display(), chain(&error))))?;
        f(&wal)
    })
    .await
    .map_err(|error| internal(format!("the page's reader stopped: {error}")))?
}

/// An error with its causes, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn html(markup: maud::Markup) -> Response {
    Html(markup.into_string()).into_response()
}

async fn runs(State(shared): State<Shared_>, Query(query): Query<RunsQuery>) -> Result<Response, PageError> {
    let filter = pages::runs_filter(&query).map_err(|message| PageError(StatusCode::BAD_REQUEST, message))?;
    let limit = filter.limit.unwrap_or(pages::RUNS_PAGE_DEFAULT);
    let runs = with_wal(&shared, move |wal| {
        wal.list_runs(&filter).map_err(|error| internal(format!("cannot list runs: {}", chain(&error))))
    })
    .await?;
    Ok(html(pages::runs_page(&query, &runs, limit)))
}

fn parse_run(id: &str) -> Result<RunId, PageError> {
    id.parse::<RunId>().map_err(|_| PageError(StatusCode::NOT_FOUND, format!("`{id}` is not a run id")))
}

async fn run(
    State(shared): State<Shared_>,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<RunQuery>,
) -> Result<Response, PageError> {
    let run_id = parse_run(&id)?;
    let markup = with_wal(&shared, move |wal| {
        let read = |error: dashflow_wal::WalError| internal(format!("cannot read run {run_id}: {}", chain(&error)));
        let run = wal
            .run(run_id)
            .map_err(read)?
            .ok_or_else(|| PageError(StatusCode::NOT_FOUND, format!("no run {run_id} in the WAL")))?;
        let events = wal.run_events(run_id).map_err(read)?;
        let trace = match wal.trace(run_id).map_err(read)? {
            Some(trace) => trace,
            None => ExecutionTrace::from_events(&events)
                .ok_or_else(|| PageError(StatusCode::NOT_FOUND, format!("run {run_id} has no events in the WAL")))?,
        };
        let schema = pages::schema_of(&events);
        Ok(pages::run_page(&RunView { run: &run, trace: &trace, schema: schema.as_ref(), events: &events }, &query))
    })
    .await?;
    Ok(html(markup))
}

async fn trace(State(shared): State<Shared_>, UrlPath(id): UrlPath<String>) -> Result<Response, PageError> {
    let run_id = parse_run(&id)?;
    let trace = with_wal(&shared, move |wal| {
        let read = |error: dashflow_wal::WalError| internal(format!("cannot read run {run_id}: {}", chain(&error)));
        match wal.trace(run_id).map_err(read)? {
            Some(trace) => Ok(trace),
            None => ExecutionTrace::from_events(&wal.run_events(run_id).map_err(read)?)
                .ok_or_else(|| PageError(StatusCode::NOT_FOUND, format!("no run {run_id} in the WAL"))),
        }
    })
    .await?;
    let body = serde_json::to_string_pretty(&trace).map_err(|error| internal(error.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn threads(State(shared): State<Shared_>, Query(query): Query<ThreadsQuery>) -> Result<Response, PageError> {
    let Some(checkpointer) = shared.checkpointer.clone() else {
        return Ok(html(pages::threads_page(&query, None)));
    };
    let mut options = ThreadListOptions::new().limit(THREADS_PAGE);
    if let Some(prefix) = query.prefix.as_deref().filter(|prefix| !prefix.is_empty()) {
        options = options.prefix(prefix);
    }
    if let Some(after) = query.after.as_deref().filter(|after| !after.is_empty()) {
        let cursor: ThreadCursor = after
            .parse()
            .map_err(|_| PageError(StatusCode::BAD_REQUEST, format!("`{after}` is not a thread list cursor")))?;
        options = options.after(cursor);
    }
    let threads = checkpointer
        .list_threads(&options)
        .await
        .map_err(|error| internal(format!("cannot list threads: {}", chain(&error))))?;
    Ok(html(pages::threads_page(&query, Some(&threads))))
}

/// The registered graph that owns `thread`: the one asked for, else the graph of the thread's
/// latest run in the WAL, else the only one registered.
async fn owner(shared: &Shared_, thread: &str, asked: Option<&str>) -> Option<Arc<dyn UiGraph>> {
    if shared.graphs.is_empty() {
        return None;
    }
    if let Some(graph) = asked.and_then(|name| shared.graphs.get(name)) {
        return Some(Arc::clone(graph));
    }
    let filter = RunFilter::all().thread_id(thread).limit(1);
    let latest = with_wal(shared, move |wal| Ok(wal.list_runs(&filter).ok().and_then(|mut runs| runs.pop())))
        .await
        .ok()
        .flatten();
    if let Some(graph) = latest.and_then(|run| run.graph).and_then(|name| shared.graphs.get(&name).cloned()) {
        return Some(graph);
    }
    (shared.graphs.len() == 1).then(|| shared.graphs.values().next().cloned()).flatten()
}

async fn content(graph: Option<&Arc<dyn UiGraph>>, thread: &str, record: &CheckpointRecord) -> Content {
    match graph {
        Some(graph) => match graph.state(thread, Some(&record.checkpoint_id.to_string())).await {
            Ok(Some(view)) => Content::State(view.state),
            Ok(None) => Content::Opaque("the checkpoint is gone".to_owned()),
            Err(error) => Content::Opaque(format!("cannot decode the state: {error}")),
        },
        None => pages::payload(record),
    }
}

async fn thread(
    State(shared): State<Shared_>,
    UrlPath(thread): UrlPath<String>,
    Query(query): Query<ThreadQuery>,
) -> Result<Response, PageError> {
    let Some(checkpointer) = shared.checkpointer.clone() else {
        return Err(PageError(StatusCode::NOT_FOUND, "no checkpoint store: start the viewer with --db".to_owned()));
    };
    let history = checkpointer
        .list(&thread, &ListOptions::new().limit(HISTORY_PAGE))
        .await
        .map_err(|error| internal(format!("cannot list the checkpoints of thread `{thread}`: {}", chain(&error))))?;
    if history.is_empty() {
        return Err(PageError(StatusCode::NOT_FOUND, format!("thread `{thread}` has no checkpoints")));
    }
    let graph = owner(&shared, &thread, query.graph.as_deref()).await;
    let find = |id: &str| history.iter().find(|record| record.checkpoint_id.to_string() == id);
    let selected_record = match query.at.as_deref().filter(|at| !at.is_empty()) {
        Some(at) => Some(find(at).ok_or_else(|| {
            PageError(
                StatusCode::NOT_FOUND,
                format!("thread `{thread}` has no checkpoint `{at}` among its newest {HISTORY_PAGE}"),
            )
        })?),
        None => history.first(),
    };
    let selected = match selected_record {
        Some(record) => Some((record, content(graph.as_ref(), &thread, record).await)),
        None => None,
    };
    let compared = match (query.a.as_deref(), query.b.as_deref()) {
        (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => {
            let (Some(ra), Some(rb)) = (find(a), find(b)) else {
                return Err(PageError(
                    StatusCode::NOT_FOUND,
                    format!("thread `{thread}` has no checkpoint `{a}` or `{b}`"),
                ));
            };
            let (ca, cb) = (content(graph.as_ref(), &thread, ra).await, content(graph.as_ref(), &thread, rb).await);
            Some((a.to_owned(), b.to_owned(), pages::compare(&ca, &cb)))
        }
        _ => None,
    };
    let interrupts = match &graph {
        Some(graph) => graph.state(&thread, None).await.ok().flatten().map(|view| view.interrupts).unwrap_or_default(),
        None => Vec::new(),
    };
    let note = shared.notes.lock().get(&thread).cloned();
    let view = ThreadView {
        thread: &thread,
        history: &history,
        selected,
        compared,
        graph: graph.as_ref().map(|graph| graph.name()),
        interrupts,
        note,
        csrf: &shared.csrf,
    };
    Ok(html(pages::thread_page(&view)))
}

#[derive(Debug, Deserialize)]
struct ResumeForm {
    csrf: String,
    graph: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
struct UpdateForm {
    csrf: String,
    graph: String,
    #[serde(default)]
    update: String,
    #[serde(default)]
    as_node: String,
    #[serde(default)]
    checkpoint: String,
}

fn check_csrf(shared: &Shared, given: &str) -> Result<(), PageError> {
    if same_secret(given, &shared.csrf) {
        Ok(())
    } else {
        Err(PageError(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is wrong: reload the page and try again".to_owned(),
        ))
    }
}

fn registered(shared: &Shared, name: &str) -> Result<Arc<dyn UiGraph>, PageError> {
    shared
        .graphs
        .get(name)
        .cloned()
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, format!("no graph `{name}` is registered with this viewer")))
}

fn note(shared: &Shared, thread: &str, text: String) {
    shared.notes.lock().insert(thread.to_owned(), text);
    ACTIONS.fetch_add(1, Ordering::Relaxed);
}

fn back_to(thread: &str, graph: &str) -> Response {
    Redirect::to(&format!("/threads/{}?graph={}", encode(thread), encode(graph))).into_response()
}

async fn resume(
    State(shared): State<Shared_>,
    UrlPath(thread): UrlPath<String>,
    Form(form): Form<ResumeForm>,
) -> Result<Response, PageError> {
    check_csrf(&shared, &form.csrf)?;
    let graph = registered(&shared, &form.graph)?;
    let value =
        match form.value.trim() {
            "" => None,
            text => Some(serde_json::from_str::<Value>(text).map_err(|error| {
                PageError(StatusCode::BAD_REQUEST, format!("the resume value is not JSON: {error}"))
            })?),
        };
    note(&shared, &thread, "Resuming…".to_owned());
    // The run goes on after the answer: its page and this thread's follow it live.
    let task_shared = Arc::clone(&shared);
    let task_thread = thread.clone();
    tokio::spawn(async move {
        let text = match graph.resume(&task_thread, value).await {
            Ok(outcome) => format!("Resumed: the run {outcome}."),
            Err(error) => format!("Resume failed: {error}"),
        };
        note(&task_shared, &task_thread, text);
    });
    Ok(back_to(&thread, &form.graph))
}

async fn update(
    State(shared): State<Shared_>,
    UrlPath(thread): UrlPath<String>,
    Form(form): Form<UpdateForm>,
) -> Result<Response, PageError> {
    check_csrf(&shared, &form.csrf)?;
    let graph = registered(&shared, &form.graph)?;
    let update: Value = serde_json::from_str(form.update.trim())
        .map_err(|error| PageError(StatusCode::BAD_REQUEST, format!("the update is not JSON: {error}")))?;
    let as_node = Some(form.as_node.trim()).filter(|node| !node.is_empty());
    let checkpoint = Some(form.checkpoint.trim()).filter(|id| !id.is_empty());
    let text = match graph.update_state(&thread, checkpoint, update, as_node).await {
        Ok(id) => match checkpoint {
            Some(from) => format!("Forked from {from}: new checkpoint {id}."),
            None => format!("Updated: new checkpoint {id}."),
        },
        Err(error) => format!("Update failed: {error}"),
    };
    note(&shared, &thread, text);
    Ok(back_to(&thread, &form.graph))
}

/// A cheap fingerprint of the WAL directory's files (names, sizes, times) and of the actions
/// taken: it changes whenever a writer appends.
fn wal_version(dir: &Path) -> u64 {
    let mut version = ACTIONS.load(Ordering::Relaxed);
    let Ok(entries) = std::fs::read_dir(dir) else { return version };
    for entry in entries.flatten() {
        let Ok(metadata) = entry.metadata() else { continue };
        let modified = metadata
            .modified()
            .ok()
            .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_nanos() as u64);
        let name = entry.file_name();
        let name_hash =
            name.as_encoded_bytes().iter().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)));
        version = version.wrapping_add(name_hash ^ metadata.len().rotate_left(17) ^ modified.rotate_left(33));
    }
    version
}

/// Server-sent events: one `changed` message whenever the WAL (or an action's outcome)
/// changes; pages marked live then fetch themselves again.
async fn live(State(shared): State<Shared_>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let dir = shared.wal_dir.clone();
    let first = wal_version(&dir);
    let stream = futures::stream::unfold((dir, first), |(dir, seen)| async move {
        let mut interval = tokio::time::interval(LIVE_POLL);
        interval.tick().await;
        loop {
            interval.tick().await;
            let probe = dir.clone();
            let now = tokio::task::spawn_blocking(move || wal_version(&probe)).await.unwrap_or(seen);
            if now != seen {
                return Some((Ok(SseEvent::default().data("changed")), (dir, now)));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_pass() {
        for host in ["127.0.0.1:8080", "localhost:1", "localhost", "[::1]:9", "127.1.2.3:80"] {
            assert!(loopback_host(host), "{host}");
        }
        for host in ["evil.example:8080", "10.0.0.1:80", "", "localhost.evil.example", "127.0.0.1.nip.io:80"] {
            assert!(!loopback_host(host), "{host}");
        }
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(decode("a%20b+c%2F"), "a b c/");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
