//! A run whose process is killed with SIGKILL before it finishes: while the process lives the
//! run is `running`; once it is dead, `runs list` shows it `abandoned` (and `--status running`
//! no longer lists it), `runs show` says that its process died and when its last event was, and
//! `tail` says the run was abandoned.
//!
//! The test binary is its own child: with [`CHILD_HOME`] set, the test runs a graph whose only
//! node reports the run on stdout and then waits forever, writing to that home's WAL; the
//! parent reads the report, looks, kills the child and looks again.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use dashflow::{END, NodeContext, NodeError, RunConfig, RunId, START, StateGraph};
use dashflow_wal::{EventStore, StoreConfig, TraceConfig};

use crate::common::{Home, Ticket, TicketUpdate, block_on, observed, ticket};

/// Set in the child: the home whose WAL it writes.
const CHILD_HOME: &str = "DASHFLOW_CLI_TEST_CHILD_HOME";
/// The line the child prints, followed by the run id, once its run is in the WAL.
const STARTED: &str = "run in the WAL:";
/// How long the child may take to start its run, on a loaded machine.
const REPORT_DEADLINE: Duration = Duration::from_secs(300);
/// This test, as the test harness names it (the child runs only this one).
const TEST_NAME: &str = "abandoned::a_run_whose_process_was_killed_is_abandoned_not_running";

#[test]
fn a_run_whose_process_was_killed_is_abandoned_not_running() {
    if let Some(home) = std::env::var_os(CHILD_HOME) {
        run_forever(Path::new(&home));
    }
    let home = Home::new();
    let (mut child, run) = spawn_writer(&home);
    let id = run.to_string();
    let pid = child.id();

    // Alive: running, with its process.
    assert_eq!(listed(&home, &["--status", "running"]), vec![id.clone()]);
    assert_eq!(home.dashflow(&["runs", "list", "--status", "abandoned"]).ok(), "no runs match\n");
    let show = home.dashflow(&["runs", "show", &id]);
    let text = show.ok();
    assert!(text.contains("status    running\n"), "{text}");
    assert!(text.contains(&format!("process   pid {pid} on ")) && !text.contains("(gone)"), "{text}");
    let tail = home.dashflow(&["tail", "--from-start", "--exit-when-idle"]);
    let text = tail.ok();
    assert!(text.contains(&id) && !text.contains("abandoned"), "{text}");

    // SIGKILL: no destructor, flush or `RunFinished` runs in the child.
    child.kill().unwrap();
    child.wait().unwrap();

    let out = home.dashflow(&["runs", "list"]);
    let line = out.ok().lines().find(|line| line.starts_with(&id)).expect(&out.stdout);
    assert!(line.contains("abandoned"), "{line}");
    assert_eq!(home.dashflow(&["runs", "list", "--status", "running"]).ok(), "no runs match\n");
    assert_eq!(listed(&home, &["--status", "abandoned"]), vec![id.clone()]);

    // The web viewer marks it too.
    let server = crate::ui::serve(&home, &[]);
    let (status, page) = crate::ui::get(&server.url, "/?status=abandoned", None, &[]);
    assert_eq!(status, 200);
    assert!(page.contains(&id) && page.contains("data-status=\"abandoned\""), "{page}");
    let (_, page) = crate::ui::get(&server.url, &format!("/runs/{id}"), None, &[]);
    assert!(page.contains("the process running it is gone"), "{page}");
    drop(server);

    let show = home.dashflow(&["runs", "show", &id]);
    let text = show.ok();
    assert!(text.contains("status    abandoned: its process died before the run finished\n"), "{text}");
    assert!(text.contains(&format!("process   pid {pid} on ")) && text.contains("(gone)"), "{text}");
    assert!(text.contains("last seen ") && text.contains("(the last event, "), "{text}");
    let wait = text.lines().find(|line| line.contains(" wait ")).expect(text);
    assert!(wait.ends_with("never finished: its process died"), "{text}");

    // `tail` says so once, after the run's last event.
    let tail = home.dashflow(&["tail", "--from-start", "--exit-when-idle"]);
    let text = tail.ok();
    let last = text.lines().last().expect(text);
    assert!(
        last.contains(&id) && last.ends_with("stuck  run abandoned: its process died before the run finished"),
        "{text}"
    );
    assert_eq!(text.matches("abandoned").count(), 1, "{text}");
    let json = home.dashflow(&["tail", "--from-start", "--exit-when-idle", "--json"]);
    assert!(!json.ok().contains("abandoned"), "JSON stays one event per line");

    let out = home.dashflow(&["runs", "list", "--status", "abandoned", "--json"]);
    let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    let summary = &json[0];
    assert_eq!(summary["status"], "abandoned");
    assert_eq!(summary["process"]["pid"], pid);
    assert!(summary["last_event_at"].as_str().unwrap().ends_with('Z'));
    assert!(summary["ended_at"].is_null());
}

/// The ids `runs list ARGS` prints.
fn listed(home: &Home, args: &[&str]) -> Vec<String> {
    let mut all = vec!["runs", "list"];
    all.extend_from_slice(args);
    let out = home.dashflow(&all);
    out.ok().lines().skip(1).map(|line| line.split_whitespace().next().unwrap().to_owned()).collect()
}

/// Starts this test binary as the writing child and waits until its run is in the WAL.
fn spawn_writer(home: &Home) -> (Child, RunId) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_HOME, home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // A child that never reports would block the read below forever: past the deadline it is
    // killed, which ends the read.
    let (watchdog_done, reported) = std::sync::mpsc::channel::<()>();
    let pid = child.id().to_string();
    let watchdog = std::thread::spawn(move || {
        if reported.recv_timeout(REPORT_DEADLINE) == Err(RecvTimeoutError::Timeout) {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    });
    let run = started_run(stdout);
    drop(watchdog_done);
    watchdog.join().unwrap();
    match run {
        Some(run) => (child, run),
        None => {
            let _ = child.kill();
            panic!("the child did not report its run: {:?}", child.wait());
        }
    }
}

/// Reads the child's output up to its report. The test harness prints there too, and the
/// report may follow its `test NAME ... ` on the same line.
fn started_run(stdout: ChildStdout) -> Option<RunId> {
    BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.split_once(STARTED).map(|(_, id)| id.trim().parse().unwrap()))
}

fn report(run: RunId) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{STARTED} {run}").unwrap();
    stdout.flush().unwrap();
}

/// The child: one run of a graph whose node waits forever once the run's start is written.
fn run_forever(home: &Path) -> ! {
    let config = StoreConfig::default().traces(TraceConfig::files_in(home));
    let store = Arc::new(EventStore::open(home.join("wal"), config).unwrap());
    let writer = Arc::clone(&store);
    let mut graph = StateGraph::<Ticket>::named("stuck");
    graph
        .add_node("wait", move |_: Arc<Ticket>, ctx: NodeContext| {
            let store = Arc::clone(&writer);
            let run = ctx.run().run_id;
            async move {
                // The run's start and this task's are written before the parent is told.
                store.flush().unwrap();
                report(run);
                std::future::pending::<Result<TicketUpdate, NodeError>>().await
            }
        })
        .add_edge(START, "wait")
        .add_edge("wait", END);
    let app = observed(dashflow::CompiledGraph::new(graph.build().unwrap()), &store);
    let result = block_on(app.invoke(ticket("never answered"), RunConfig::thread("t-stuck")));
    panic!("the run was to wait until killed, but ended: {result:?}");
}
