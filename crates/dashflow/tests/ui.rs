//! The web viewer end to end: real graphs fill a temporary home, the viewer serves it (with the
//! graphs registered, as `dashflow::ui` does), and headless Chromium, driven over WebDriver,
//! opens every page, filters, follows a live run, answers an interrupt, updates and forks a
//! thread. Screenshots of each page go to `<target>/tmp/ui-screenshots/`.
//!
//! Without `chromium` and `chromedriver` on the PATH the browser trials are ignored with the
//! reason; `DASHFLOW_TEST_BROWSER_REQUIRED=1` (CI) makes that a failure instead. Trials share
//! one browser session, so they run one at a time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, reason = "a test harness")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use dashflow::prelude::*;
use dashflow::ui::{Bind, EVENTS_PAGE, ServeGraph, TIMELINE_PAGE, Viewer};
use dashflow::wal::{EventStore, StoreConfig, TraceConfig};
use dashflow::{Codec, EventCallback, SqliteCheckpointer};
use fantoccini::{Client, ClientBuilder, Locator};
use libtest_mimic::{Arguments, Failed, Trial};
use tokio::sync::Notify;

const REQUIRED_VAR: &str = "DASHFLOW_TEST_BROWSER_REQUIRED";
/// How long a page may take to show what a trial waits for.
const WAIT: Duration = Duration::from_secs(20);

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap());

// ----- the store the pages show -----

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Ticket {
    text: String,
    category: String,
    reply: String,
    sent: bool,
    #[reduce(add)]
    ticks: u32,
}

async fn classify(ticket: Arc<Ticket>) -> Result<TicketUpdate> {
    let category = if ticket.text.contains("refund") { "billing" } else { "other" };
    Ok(TicketUpdate::default().category(category))
}

async fn billing(ticket: Arc<Ticket>) -> Result<TicketUpdate> {
    if ticket.text.contains("outage") {
        return Err(NodeError::permanent_msg("the payment system is down"));
    }
    Ok(TicketUpdate::default().reply("refunded"))
}

async fn draft(ticket: Arc<Ticket>) -> Result<TicketUpdate> {
    Ok(TicketUpdate::default().reply(format!("{} (drafted)", ticket.reply)))
}

async fn send(_: Arc<Ticket>) -> Result<TicketUpdate> {
    Ok(TicketUpdate::default().sent(true))
}

/// classify, then billing (fails on "outage") or straight to draft; then send.
fn support(name: &str) -> StateGraph<Ticket> {
    let mut graph = StateGraph::<Ticket>::named(name);
    graph
        .add_node("classify", classify)
        .add_node("billing", billing)
        .add_node("draft", draft)
        .add_node("send", send)
        .add_edge(START, "classify")
        .add_conditional_edges(
            "classify",
            |ticket: &Ticket| if ticket.category == "billing" { "billing" } else { "other" },
            [("billing", "billing"), ("other", "draft")],
        )
        .add_edge("billing", "draft")
        .add_edge("draft", "send")
        .add_edge("send", END);
    graph
}

/// A temporary home, its event store and a checkpoint database in it.
struct Home {
    dir: tempfile::TempDir,
    store: Arc<EventStore>,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::default().traces(TraceConfig::files_in(dir.path()));
        let store = Arc::new(EventStore::open(dir.path().join("wal"), config).unwrap());
        Self { dir, store }
    }

    fn wal_dir(&self) -> PathBuf {
        self.dir.path().join("wal")
    }

    /// `graph` compiled with this home's store as its observer and, when asked, a JSON-coded
    /// SQLite checkpointer.
    async fn compile(&self, graph: StateGraph<Ticket>, checkpoints: bool) -> CompiledGraph<Ticket> {
        let store = Arc::clone(&self.store);
        let app = CompiledGraph::new(graph.build().unwrap()).with_callback(move |event: &Event| store.on_event(event));
        if !checkpoints {
            return app;
        }
        let checkpointer = SqliteCheckpointer::open(self.dir.path().join("checkpoints.db")).await.unwrap();
        app.with_checkpointer(checkpointer).with_codec(Codec::Json)
    }

    fn flush(&self) {
        self.store.flush().unwrap();
    }
}

/// A viewer served on a free loopback port for the rest of the process.
async fn serve(viewer: Viewer) -> String {
    let listener = Bind::new("127.0.0.1:0".parse().unwrap(), dashflow::ui::Reach::LoopbackOnly, None)
        .unwrap()
        .listen()
        .await
        .unwrap();
    let url = listener.url();
    tokio::spawn(viewer.serve(listener, std::future::pending()));
    url.trim_end_matches('/').to_owned()
}

fn ticket(text: &str) -> Ticket {
    Ticket { text: text.to_owned(), ..Ticket::default() }
}

// ----- the browser -----

struct Browser {
    client: Client,
    driver: Mutex<Child>,
    _profile: tempfile::TempDir,
}

/// The one browser session, or why there is none.
static BROWSER: OnceLock<Result<Browser, String>> = OnceLock::new();
/// Trials take the browser one at a time (libtest-mimic may run them on several threads).
static TURN: Mutex<()> = Mutex::new(());

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |name| dir.join(name))).find(|p| p.is_file())
}

fn start_browser() -> Result<Browser, String> {
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"])
        .ok_or("no chromium on the PATH (apt-get install chromium chromium-driver)")?;
    let driver =
        find_program(&["chromedriver"]).ok_or("no chromedriver on the PATH (apt-get install chromium-driver)")?;
    let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    // The browser's profile, cache and config stay in the temporary directory.
    let mut child = Process::new(&driver)
        .arg(format!("--port={port}"))
        .env("HOME", profile.path())
        .env("XDG_CONFIG_HOME", profile.path())
        .env("XDG_CACHE_HOME", profile.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", driver.display()))?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("started successfully") => break,
            Some(Ok(_)) => {}
            _ => return Err(format!("{} exited before it was ready", driver.display())),
        }
    }
    // Drain the driver's further output so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--window-size=1280,1000".to_owned(),
        format!("--user-data-dir={}", profile.path().join("profile").display()),
    ];
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".to_owned(), json!({ "binary": chromium, "args": args }));
    let client = RUNTIME
        .block_on(async {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            ClientBuilder::new(connector).capabilities(capabilities).connect(&format!("http://127.0.0.1:{port}")).await
        })
        .map_err(|e| format!("cannot open a WebDriver session: {e}"))?;
    Ok(Browser { client, driver: Mutex::new(child), _profile: profile })
}

/// Ends the browser session (chromedriver then quits chromium) and stops chromedriver: the
/// process exits without dropping statics, so the browser would outlive the tests.
fn close_browser() {
    let Some(Ok(browser)) = BROWSER.get() else { return };
    if let Err(error) = RUNTIME.block_on(browser.client.clone().close()) {
        eprintln!("cannot end the browser session: {error}");
    }
    let mut driver = browser.driver.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = driver.kill();
    let _ = driver.wait();
}

fn shots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
    std::fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
}

async fn wait_for(client: &Client, css: &str) -> fantoccini::elements::Element {
    match client.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
        Ok(element) => element,
        Err(error) => {
            let source = client.source().await.unwrap_or_default();
            panic!("`{css}` never appeared ({error}); the page:\n{source}");
        }
    }
}

async fn wait_for_text(client: &Client, css_id: &str, text: &str) {
    let xpath = format!("//*[@id='{css_id}'][contains(., '{text}')]");
    if let Err(error) = client.wait().at_most(WAIT).for_element(Locator::XPath(&xpath)).await {
        let source = client.source().await.unwrap_or_default();
        panic!("#{css_id} never said `{text}` ({error}); the page:\n{source}");
    }
}

/// Waits until the page has exactly `n` rows of class `class` (a submitted form's new page).
async fn wait_for_rows(client: &Client, class: &str, n: usize) {
    let xpath = format!("//tbody[count(tr[@class='{class}'])={n}]");
    if let Err(error) = client.wait().at_most(WAIT).for_element(Locator::XPath(&xpath)).await {
        let source = client.source().await.unwrap_or_default();
        panic!("never {n} rows of `{class}` ({error}); the page:\n{source}");
    }
}

async fn count(client: &Client, css: &str) -> usize {
    client.find_all(Locator::Css(css)).await.unwrap().len()
}

async fn nothing_ran(client: &Client) {
    let checks = client
        .execute(
            "return [window.__pwned === undefined, document.scripts.length, document.querySelectorAll('img').length]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(checks, json!([true, 1, 0]), "markup from the store became live on {:?}", client.current_url().await);
}

/// A browser trial: skipped (ignored) with the reason when there is no browser, failed when
/// one is required.
fn browser_trial<F>(name: &'static str, body: fn(Client) -> F) -> Trial
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let required = std::env::var(REQUIRED_VAR).is_ok_and(|v| v == "1");
    let missing = find_program(&["chromedriver"]).is_none()
        || find_program(&["chromium", "chromium-browser", "google-chrome"]).is_none();
    let ignored = missing && !required;
    if ignored {
        // Standard error: a test runner lists trials from standard output.
        eprintln!("{name}: skipped: chromium or chromedriver is not installed (set {REQUIRED_VAR}=1 to fail instead)");
    }
    Trial::test(name, move || {
        let _turn = TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let browser = BROWSER.get_or_init(start_browser).as_ref().map_err(|why| Failed::from(why.clone()))?;
        let client = browser.client.clone();
        RUNTIME
            .block_on(async move { tokio::spawn(body(client)).await })
            .map_err(|error| Failed::from(error.to_string()))
    })
    .with_ignored_flag(ignored)
}

/// A trial that speaks HTTP without a browser.
fn http_trial<F>(name: &'static str, body: fn() -> F) -> Trial
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    Trial::test(name, move || {
        RUNTIME.block_on(async move { tokio::spawn(body()).await }).map_err(|error| Failed::from(error.to_string()))
    })
}

/// A request over a fresh connection, on a blocking thread (the server shares the runtime):
/// status and body.
async fn http(base: &str, method: &str, path: &str, form: Option<&str>) -> (u16, String) {
    let (base, method, path, form) = (base.to_owned(), method.to_owned(), path.to_owned(), form.map(str::to_owned));
    tokio::task::spawn_blocking(move || http_blocking(&base, &method, &path, form.as_deref())).await.unwrap()
}

fn http_blocking(base: &str, method: &str, path: &str, form: Option<&str>) -> (u16, String) {
    let (status, _, body) = exchange(base, method, path, form);
    (status, body)
}

/// Status, header block and body of one request.
fn exchange(base: &str, method: &str, path: &str, form: Option<&str>) -> (u16, String, String) {
    let addr: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    let body = form.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

// ----- the trials -----

/// Three finished runs and a failed one of `support`, on threads with checkpoints.
async fn filled() -> (Home, CompiledGraph<Ticket>, String) {
    let home = Home::new();
    let app = home.compile(support("support"), true).await;
    app.invoke(ticket("refund for march"), RunConfig::thread("t-1")).await.unwrap();
    app.invoke(ticket("refund in the outage"), RunConfig::thread("t-2")).await.unwrap_err();
    app.invoke(ticket("how do I export?"), RunConfig::thread("t-3").tag("faq")).await.unwrap();
    home.flush();
    // Standalone, as `dashflow ui` serves it: no graph registered.
    let viewer = Viewer::new(home.wal_dir()).unwrap().checkpointer(Arc::clone(app.checkpointer().unwrap()));
    let url = serve(viewer).await;
    (home, app, url)
}

async fn runs_page_filters_and_links_to_a_run(client: Client) {
    let (_home, _app, url) = filled().await;
    client.goto(&format!("{url}/")).await.unwrap();
    wait_for(&client, "table.runs").await;
    assert_eq!(count(&client, "tr.run").await, 3);
    screenshot(&client, "runs").await;

    client.find(Locator::Css("select[name=status]")).await.unwrap().select_by_value("failed").await.unwrap();
    client.find(Locator::Id("filter")).await.unwrap().click().await.unwrap();
    wait_for_rows(&client, "run", 1).await;
    wait_for(&client, "tr.run[data-status=failed]").await;
    assert!(client.current_url().await.unwrap().as_str().contains("status=failed"));

    client.goto(&format!("{url}/?tag=faq")).await.unwrap();
    assert_eq!(count(&client, "tr.run").await, 1);
    client.find(Locator::Css("tr.run a")).await.unwrap().click().await.unwrap();
    wait_for(&client, "#run-status.completed").await;
    // classify -> draft -> send: the conditional edge's route and the path are drawn.
    assert_eq!(count(&client, "tr.task").await, 3);
    assert_eq!(count(&client, "tr.route").await, 1);
    let taken: Vec<String> = {
        let mut names = Vec::new();
        for node in client.find_all(Locator::Css("svg.graph g.node.taken")).await.unwrap() {
            names.push(node.attr("data-node").await.unwrap().unwrap());
        }
        names
    };
    assert_eq!(taken, ["__start__", "classify", "draft", "send", "__end__"], "the path the run took");
    assert!(count(&client, "tr.event").await >= 6, "its events are listed");
    screenshot(&client, "run").await;
}

async fn a_failed_run_shows_its_error_in_place(client: Client) {
    let (_home, _app, url) = filled().await;
    client.goto(&format!("{url}/?status=failed")).await.unwrap();
    client.find(Locator::Css("tr.run a")).await.unwrap().click().await.unwrap();
    let failed = wait_for(&client, "tr.task.failed").await;
    assert!(failed.text().await.unwrap().contains("the payment system is down"));
    let (_, json) =
        http(&url, "GET", &format!("{}/trace.json", client.current_url().await.unwrap().path()), None).await;
    let trace: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(trace["status"], "failed", "{trace}");
}

async fn threads_and_the_difference_between_two_checkpoints(client: Client) {
    let (_home, _app, url) = filled().await;
    client.goto(&format!("{url}/threads")).await.unwrap();
    assert_eq!(count(&client, "tr.thread").await, 3);
    client.find(Locator::Css("input[name=prefix]")).await.unwrap().send_keys("t-3").await.unwrap();
    client.find(Locator::Id("search")).await.unwrap().click().await.unwrap();
    wait_for_rows(&client, "thread", 1).await;
    screenshot(&client, "threads").await;
    client.find(Locator::Css("tr.thread a")).await.unwrap().click().await.unwrap();
    wait_for(&client, "table.history").await;
    // The JSON codec: the stored payload is shown decoded, without the state type.
    let state = client.find(Locator::Id("state")).await.unwrap().text().await.unwrap();
    assert!(state.contains("how do I export?") || state.contains("sent"), "{state}");
    let rows = client.find_all(Locator::Css("tr.checkpoint")).await.unwrap();
    assert!(rows.len() >= 3);
    // Compare the oldest with the newest.
    rows.last().unwrap().find(Locator::Css("input[name=a]")).await.unwrap().click().await.unwrap();
    rows[0].find(Locator::Css("input[name=b]")).await.unwrap().click().await.unwrap();
    client.find(Locator::Id("compare")).await.unwrap().click().await.unwrap();
    wait_for(&client, "table.diff tr.change").await;
    screenshot(&client, "thread").await;
}

async fn markup_in_names_thread_ids_and_states_never_runs(client: Client) {
    let home = Home::new();
    let evil = "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>";
    let mut graph = StateGraph::<Ticket>::named(format!("g{evil}"));
    graph.add_node(format!("n{evil}"), send).add_edge(START, format!("n{evil}")).add_edge(format!("n{evil}"), END);
    let app = home.compile(graph, true).await;
    let thread = format!("t{evil}");
    app.invoke(ticket(evil), RunConfig::thread(thread.as_str()).tag(evil)).await.unwrap();
    home.flush();
    let viewer = Viewer::new(home.wal_dir()).unwrap().graph(app.ui());
    let url = serve(viewer).await;
    client.goto(&format!("{url}/")).await.unwrap();
    wait_for(&client, "tr.run").await;
    nothing_ran(&client).await;
    let row = client.find(Locator::Css("tr.run")).await.unwrap().text().await.unwrap();
    assert!(row.contains("<script>window.__pwned=2</script>"), "names show as text: {row}");
    client.find(Locator::Css("tr.run a")).await.unwrap().click().await.unwrap();
    wait_for(&client, "svg.graph").await;
    nothing_ran(&client).await;
    let node = client.find(Locator::Css("tr.task")).await.unwrap().text().await.unwrap();
    assert!(node.contains("n<img"), "{node}");
    client.goto(&format!("{url}/threads")).await.unwrap();
    nothing_ran(&client).await;
    client.find(Locator::Css("tr.thread a")).await.unwrap().click().await.unwrap();
    wait_for(&client, "#state").await;
    nothing_ran(&client).await;
    assert_eq!(client.find(Locator::Id("thread-id")).await.unwrap().text().await.unwrap(), thread);
    let state = client.find(Locator::Id("state")).await.unwrap().text().await.unwrap();
    assert!(state.contains("<script>window.__pwned=2</script>"), "{state}");
}

async fn a_live_run_is_followed_to_its_end(client: Client) {
    let home = Home::new();
    let gate = Arc::new(Notify::new());
    let held = Arc::clone(&gate);
    let mut graph = StateGraph::<Ticket>::named("slow");
    graph
        .add_node("wait", move |_: Arc<Ticket>| {
            let gate = Arc::clone(&held);
            async move {
                gate.notified().await;
                Ok::<_, NodeError>(TicketUpdate::default().reply("done"))
            }
        })
        .add_edge(START, "wait")
        .add_edge("wait", END);
    let app = home.compile(graph, false).await;
    let url = serve(Viewer::new(home.wal_dir()).unwrap()).await;
    std::fs::create_dir_all(home.wal_dir()).unwrap();
    let run =
        tokio::spawn(async move { app.invoke(ticket("slow"), RunConfig::new()).await.map(|result| result.status) });
    client.goto(&format!("{url}/?graph=slow")).await.unwrap();
    wait_for(&client, "tr.run[data-status=running]").await;
    screenshot(&client, "live-running").await;
    gate.notify_one();
    assert!(matches!(run.await.unwrap().unwrap(), RunStatus::Completed));
    // No reload: the page follows the WAL and swaps its table in.
    wait_for(&client, "tr.run[data-status=completed]").await;
    assert_eq!(count(&client, "tr.run").await, 1);
    let refreshed = client.find(Locator::Css("body")).await.unwrap().attr("data-refreshed").await.unwrap();
    assert!(refreshed.is_some(), "the table came from a live refresh");
}

/// The quickstart's shape: a run paused before `send`, with the graph registered.
async fn paused() -> (Home, CompiledGraph<Ticket>, String) {
    let home = Home::new();
    let app = home.compile(support("support"), true).await.interrupt_before(["send"]).unwrap();
    let result = app.invoke(ticket("refund for march"), RunConfig::thread("ticket-1")).await.unwrap();
    assert!(matches!(result.status, RunStatus::Interrupted { .. }));
    home.flush();
    let url = serve(Viewer::new(home.wal_dir()).unwrap().graph(app.ui())).await;
    (home, app, url)
}

async fn answering_an_interrupt_resumes_the_run(client: Client) {
    let (_home, app, url) = paused().await;
    client.goto(&format!("{url}/threads/ticket-1")).await.unwrap();
    let form = wait_for(&client, "#resume-form").await;
    assert!(form.text().await.unwrap().contains("Paused before send"));
    // The decoded state, by its real type.
    let state: serde_json::Value =
        serde_json::from_str(&client.find(Locator::Id("state")).await.unwrap().text().await.unwrap()).unwrap();
    assert_eq!(state["reply"], "refunded (drafted)");
    screenshot(&client, "paused").await;
    client.find(Locator::Id("resume")).await.unwrap().click().await.unwrap();
    wait_for_text(&client, "note", "completed").await;
    let snapshot = app.get_state(&RunConfig::thread("ticket-1")).await.unwrap().unwrap();
    assert!(snapshot.next.is_empty() && snapshot.state.sent, "the run finished: {:?}", snapshot.next);
    screenshot(&client, "resumed").await;
    client.goto(&format!("{url}/?thread=ticket-1&status=completed")).await.unwrap();
    assert_eq!(count(&client, "tr.run").await, 1, "the resumed run is in the WAL");
}

async fn update_state_and_fork_from_the_browser(client: Client) {
    let (_home, app, url) = paused().await;
    client.goto(&format!("{url}/threads/ticket-1")).await.unwrap();
    wait_for(&client, "#update-form").await;
    let form = client.find(Locator::Id("update-form")).await.unwrap();
    form.find(Locator::Css("textarea")).await.unwrap().send_keys(r#"{"reply": "edited by a person"}"#).await.unwrap();
    form.find(Locator::Css("input[name=as_node]")).await.unwrap().send_keys("draft").await.unwrap();
    client.find(Locator::Id("update")).await.unwrap().click().await.unwrap();
    wait_for_text(&client, "note", "Updated: new checkpoint").await;
    let head = app.get_state(&RunConfig::thread("ticket-1")).await.unwrap().unwrap();
    assert_eq!(head.state.reply, "edited by a person");
    assert_eq!(head.next, ["send"], "updated as draft: send is still next");

    // Fork from the first checkpoint.
    let history = app.get_state_history(&RunConfig::thread("ticket-1"), None).await.unwrap();
    let first = history.last().unwrap().checkpoint_id.to_string();
    client.goto(&format!("{url}/threads/ticket-1?at={first}")).await.unwrap();
    let form = wait_for(&client, "#update-form").await;
    assert_eq!(client.find(Locator::Id("update")).await.unwrap().text().await.unwrap(), "Fork");
    form.find(Locator::Css("textarea")).await.unwrap().send_keys(r#"{"text": "a forked ticket"}"#).await.unwrap();
    client.find(Locator::Id("update")).await.unwrap().click().await.unwrap();
    wait_for_text(&client, "note", "Forked from").await;
    let head = app.get_state(&RunConfig::thread("ticket-1")).await.unwrap().unwrap();
    assert_eq!(head.state.text, "a forked ticket");
    assert_eq!(head.parent_id.map(|id| id.to_string()), Some(first), "the fork's parent is the chosen checkpoint");
}

async fn actions_need_the_csrf_token_and_a_registered_graph() {
    let (_home, app, url) = paused().await;
    let (status, body) = http(&url, "POST", "/threads/ticket-1/resume", Some("csrf=wrong&graph=support&value=")).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = http(&url, "GET", "/threads/ticket-1/resume", None).await;
    assert_eq!(status, 405, "actions are POSTs only");
    let snapshot = app.get_state(&RunConfig::thread("ticket-1")).await.unwrap().unwrap();
    assert_eq!(snapshot.next, ["send"], "nothing resumed");
    let (_, page) = http(&url, "GET", "/threads/ticket-1", None).await;
    let token = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let (status, body) =
        http(&url, "POST", "/threads/ticket-1/update", Some(&format!("csrf={token}&graph=nope&update=%7B%7D"))).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no graph `nope` is registered"));
    let (status, _) =
        http(&url, "POST", "/threads/ticket-1/update", Some(&format!("csrf={token}&graph=support&update=%7B"))).await;
    assert_eq!(status, 400, "an update that is not JSON is refused");
}

async fn a_long_run_pages_its_timeline() {
    const STEPS: u32 = 10_000;
    let home = Home::new();
    let mut graph = StateGraph::<Ticket>::named("long");
    graph
        .add_node("tick", |_: Arc<Ticket>| async { Ok::<_, NodeError>(TicketUpdate::default().ticks(1u32)) })
        .add_edge(START, "tick")
        .add_conditional_edges(
            "tick",
            |ticket: &Ticket| if ticket.ticks < STEPS { "again" } else { "done" },
            [("again", "tick"), ("done", END)],
        );
    let app = home.compile(graph, false).await;
    let result = app.invoke(Ticket::default(), RunConfig::new().recursion_limit(STEPS + 1)).await.unwrap();
    assert_eq!(result.steps, u64::from(STEPS));
    home.flush();
    let url = serve(Viewer::new(home.wal_dir()).unwrap()).await;
    let (status, page) = http(&url, "GET", &format!("/runs/{}", result.run_id), None).await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("<tr class=\"task").count(), TIMELINE_PAGE, "one page of the timeline");
    assert!(page.contains(&format!("of {STEPS}")), "the pager names the total");
    assert!(page.contains("<tr class=\"total\"><td>tick</td><td class=\"num\">10000</td>"), "summed per node");
    assert_eq!(page.matches("<tr class=\"event\"").count(), EVENTS_PAGE, "one page of the events");
    let (_, last) = http(&url, "GET", &format!("/runs/{}?from={}", result.run_id, STEPS as usize - 1), None).await;
    assert_eq!(last.matches("<tr class=\"task").count(), 1, "the last page");
}

async fn a_retried_task_shows_its_attempts() {
    let home = Home::new();
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut graph = StateGraph::<Ticket>::named("flaky");
    let retry = RetryPolicy::new(2).backoff(Duration::from_millis(1), 1.0, Duration::from_millis(1));
    graph
        .add_node_with(
            "call",
            move |_: Arc<Ticket>| {
                let calls = Arc::clone(&calls);
                async move {
                    match calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                        0 => Err(NodeError::msg("the service hung up")),
                        _ => Ok(TicketUpdate::default().reply("answered")),
                    }
                }
            },
            NodeOptions::default().retry(retry),
        )
        .add_edge(START, "call")
        .add_edge("call", END);
    let app = home.compile(graph, false).await;
    let result = app.invoke(Ticket::default(), RunConfig::new()).await.unwrap();
    home.flush();
    let url = serve(Viewer::new(home.wal_dir()).unwrap()).await;
    let (status, page) = http(&url, "GET", &format!("/runs/{}", result.run_id), None).await;
    assert_eq!(status, 200);
    let row = page.split("<tr class=\"task").nth(1).unwrap().split("</tr>").next().unwrap().to_owned();
    assert!(row.contains("2 (1 retried)"), "the task's attempts: {row}");
}

fn main() {
    let mut args = Arguments::from_args();
    // One browser session: one trial at a time.
    args.test_threads = Some(1);
    let trials = vec![
        browser_trial("browser/runs_page_filters_and_links_to_a_run", runs_page_filters_and_links_to_a_run),
        browser_trial("browser/a_failed_run_shows_its_error_in_place", a_failed_run_shows_its_error_in_place),
        browser_trial(
            "browser/threads_and_the_difference_between_two_checkpoints",
            threads_and_the_difference_between_two_checkpoints,
        ),
        browser_trial(
            "browser/markup_in_names_thread_ids_and_states_never_runs",
            markup_in_names_thread_ids_and_states_never_runs,
        ),
        browser_trial("browser/a_live_run_is_followed_to_its_end", a_live_run_is_followed_to_its_end),
        browser_trial("browser/answering_an_interrupt_resumes_the_run", answering_an_interrupt_resumes_the_run),
        browser_trial("browser/update_state_and_fork_from_the_browser", update_state_and_fork_from_the_browser),
        http_trial(
            "http/actions_need_the_csrf_token_and_a_registered_graph",
            actions_need_the_csrf_token_and_a_registered_graph,
        ),
        http_trial("http/a_long_run_pages_its_timeline", a_long_run_pages_its_timeline),
        http_trial("http/a_retried_task_shows_its_attempts", a_retried_task_shows_its_attempts),
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    close_browser();
    conclusion.exit();
}
