//! The stores the tests read: real graphs run through the facade, their events written by an
//! `EventStore` in a temporary home, and the `dashflow` binary run against it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use dashflow::{CompiledGraph, END, Event, EventCallback, GraphState, NodeError, RunConfig, RunId, START, StateGraph};
use dashflow_wal::{EventStore, StoreConfig, TraceConfig, WalConfig};
use serde::{Deserialize, Serialize};

/// A temporary DashFlow home.
pub(crate) struct Home {
    dir: tempfile::TempDir,
}

/// What the binary did.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    /// Asserts exit code 0 and returns stdout.
    #[track_caller]
    pub(crate) fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success, got {self:#?}");
        &self.stdout
    }

    /// Asserts exit code 1 and returns stderr.
    #[track_caller]
    pub(crate) fn failed(&self) -> &str {
        assert_eq!(self.code, 1, "expected exit code 1, got {self:#?}");
        assert!(self.stdout.is_empty(), "an error prints nothing on stdout: {self:#?}");
        assert!(self.stderr.starts_with("error: "), "{self:#?}");
        &self.stderr
    }
}

impl Home {
    pub(crate) fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn wal_dir(&self) -> PathBuf {
        self.path().join("wal")
    }

    /// An event store writing this home's WAL, and its trace files under this home (by
    /// default they would go to the working directory: the crate's source tree).
    pub(crate) fn store(&self, config: StoreConfig) -> Arc<EventStore> {
        let config = config.traces(TraceConfig::files_in(self.path()));
        Arc::new(EventStore::open(self.wal_dir(), config).unwrap())
    }

    /// Runs `dashflow --home <this home> args...`.
    pub(crate) fn dashflow(&self, args: &[&str]) -> Output {
        let home = self.path().display().to_string();
        let mut all = vec!["--home", home.as_str()];
        all.extend_from_slice(args);
        dashflow(&all)
    }
}

/// The binary, isolated from the environment's DashFlow home.
pub(crate) fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dashflow"));
    command.env_remove("DASHFLOW_HOME").env("HOME", "/nonexistent/dashflow-cli-test-home");
    command.stdin(Stdio::null());
    command
}

/// Runs the binary with `args`.
pub(crate) fn dashflow(args: &[&str]) -> Output {
    output(command().args(args))
}

pub(crate) fn output(command: &mut Command) -> Output {
    let out = command.output().unwrap();
    Output {
        code: out.status.code().expect("the binary exited by a signal"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(future)
}

/// The state of the support graph.
#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
pub(crate) struct Ticket {
    pub(crate) text: String,
    pub(crate) category: String,
    pub(crate) reply: String,
}

async fn classify(ticket: Arc<Ticket>) -> Result<TicketUpdate, NodeError> {
    let category = if ticket.text.contains("refund") { "billing" } else { "other" };
    Ok(TicketUpdate::default().category(category))
}

async fn billing(ticket: Arc<Ticket>) -> Result<TicketUpdate, NodeError> {
    if ticket.text.contains("outage") {
        return Err(NodeError::permanent_msg("the payment system is down"));
    }
    Ok(TicketUpdate::default().reply("refunded"))
}

async fn answer(ticket: Arc<Ticket>) -> Result<TicketUpdate, NodeError> {
    Ok(TicketUpdate::default().reply(format!("{} (answered)", ticket.reply)))
}

/// `classify`, then a conditional edge to `billing` (which fails on "outage") or straight to
/// `answer`.
pub(crate) fn support_graph() -> CompiledGraph<Ticket> {
    let mut graph = StateGraph::<Ticket>::named("support");
    graph
        .add_node("classify", classify)
        .add_node("billing", billing)
        .add_node("answer", answer)
        .add_edge(START, "classify")
        .add_conditional_edges(
            "classify",
            |ticket: &Ticket| if ticket.category == "billing" { "billing" } else { "other" },
            [("billing", "billing"), ("other", "answer")],
        )
        .add_edge("billing", "answer")
        .add_edge("answer", END);
    // The executor's compile: the facade's would also write to the process's own home.
    dashflow::CompiledGraph::new(graph.build().unwrap())
}

/// A one-node graph of another name, to filter by.
pub(crate) fn echo_graph() -> CompiledGraph<Ticket> {
    let mut graph = StateGraph::<Ticket>::named("echo");
    graph.add_node("answer", answer).add_edge(START, "answer").add_edge("answer", END);
    dashflow::CompiledGraph::new(graph.build().unwrap())
}

/// A graph whose one node is the echo graph: its run has a subgraph run.
pub(crate) fn nesting_graph() -> CompiledGraph<Ticket> {
    let mut graph = StateGraph::<Ticket>::named("outer");
    graph.add_node("inner", echo_graph()).add_edge(START, "inner").add_edge("inner", END);
    dashflow::CompiledGraph::new(graph.build().unwrap())
}

/// Sends the graph's events to `store`.
pub(crate) fn observed(app: CompiledGraph<Ticket>, store: &Arc<EventStore>) -> CompiledGraph<Ticket> {
    let store = Arc::clone(store);
    app.with_callback(move |event: &Event| store.on_event(event))
}

pub(crate) fn ticket(text: &str) -> Ticket {
    Ticket { text: text.into(), ..Ticket::default() }
}

/// The runs [`record_runs`] made, oldest first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Runs {
    /// support, thread t-1: classify, billing, answer.
    pub(crate) completed: RunId,
    /// support, thread t-2: classify, then billing fails.
    pub(crate) failed: RunId,
    /// support, thread t-3: classify, then answer.
    pub(crate) answered: RunId,
    /// echo, no thread.
    pub(crate) echo: RunId,
}

/// Runs four graphs into this home's WAL.
pub(crate) fn record_runs(home: &Home) -> Runs {
    record_runs_with(home, StoreConfig::default())
}

/// [`record_runs`] with a store configuration (a small segment size, say).
pub(crate) fn record_runs_with(home: &Home, config: StoreConfig) -> Runs {
    let store = home.store(config);
    let support = observed(support_graph(), &store);
    let echo = observed(echo_graph(), &store);
    let completed = RunId::new();
    let failed = later_than(completed);
    let answered = later_than(failed);
    let runs = Runs { completed, failed, answered, echo: later_than(answered) };
    block_on(async {
        let config = |thread: &str, run| RunConfig::thread(thread).run_id(run);
        support.invoke(ticket("refund for march"), config("t-1", runs.completed)).await.unwrap();
        support.invoke(ticket("refund during the outage"), config("t-2", runs.failed)).await.unwrap_err();
        support.invoke(ticket("how do I export?"), config("t-3", runs.answered)).await.unwrap();
        echo.invoke(ticket("hello"), RunConfig::new().run_id(runs.echo)).await.unwrap();
    });
    store.flush().unwrap();
    runs
}

/// A run id that sorts after `earlier`. Runs that start in the same millisecond are listed
/// by id, and ids made in one millisecond are random, not increasing.
pub(crate) fn later_than(earlier: RunId) -> RunId {
    loop {
        let id = RunId::new();
        if id > earlier {
            return id;
        }
    }
}

/// A small segment size, so a few runs fill several segments.
pub(crate) fn small_segments() -> StoreConfig {
    StoreConfig::default().wal(WalConfig::default().segment_size(2048))
}
