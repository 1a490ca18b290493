//! Workloads with a checkpointer: B4 `chain100_sqlite` and the large-state workload.
//!
//! - B4: B1's 100-node chain with the file-backed [`SqliteCheckpointer`] and a new thread per
//!   invoke, so every invoke writes 101 checkpoints (its input, then one per superstep).
//! - Large state: a document of 10,000 lines of 100 bytes (~1 MB) that each of 100 chained
//!   nodes extends by one short line. Incremental checkpoints must make a step cost bytes in
//!   proportion to the line, not to the document.
//!
//! Besides the graphs, this module measures what they store: [`b4_storage`] and
//! [`large_state_storage`] run a fixed number of invokes on a new database and report its
//! growth per checkpoint (`SqliteCheckpointer::database_bytes`: pages in use or free, counting
//! pages still in the WAL, so the figure does not depend on when SQLite last checkpointed its
//! log).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashflow::checkpoint::ListOptions;
use dashflow::prelude::*;
use dashflow::{Checkpointer, SqliteCheckpointer};

use crate::{Counter, Telemetry, chain100, check, compile};

/// Checkpoints one B4 invoke writes: the input, then one per node of the chain.
pub const B4_CHECKPOINTS_PER_INVOKE: u64 = 101;

/// Lines in the large state's input.
pub const LARGE_STATE_LINES: usize = 10_000;

/// Bytes per line of the large state's input.
pub const LARGE_STATE_LINE_BYTES: usize = 100;

/// Nodes (and so supersteps, each appending one line) of the large-state chain.
pub const LARGE_STATE_NODES: usize = 100;

/// B4: B1 with `checkpointer` attached; each run with a thread id checkpoints every
/// superstep.
pub fn chain100_checkpointed(telemetry: Telemetry, checkpointer: Arc<dyn Checkpointer>) -> CompiledGraph<Counter> {
    chain100(telemetry).with_checkpointer(checkpointer)
}

/// Opens (creating it) the SQLite database at `path`.
pub async fn open_sqlite(path: &Path) -> Result<Arc<SqliteCheckpointer>, String> {
    SqliteCheckpointer::open(path).await.map(Arc::new).map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// A new thread id for every invoke: `thread-000000`, `thread-000001`, ... (13 bytes, the
/// same ids the LangGraph side uses, since every checkpoint row stores its thread id).
#[derive(Debug, Default)]
pub struct Threads {
    next: AtomicU64,
}

impl Threads {
    /// Ids from `thread-000000` on.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next thread id.
    pub fn next_id(&self) -> Arc<str> {
        format!("thread-{:06}", self.next.fetch_add(1, Ordering::Relaxed)).into()
    }

    /// The run configuration of one B4 invoke: a new thread, enough supersteps for 100
    /// nodes, and `durability`.
    pub fn next_config(&self, durability: Durability) -> RunConfig {
        RunConfig::thread(self.next_id()).recursion_limit(100).durability(durability)
    }
}

/// What a fixed run of invokes wrote to a fresh database.
#[derive(Clone, Copy, Debug)]
pub struct Storage {
    /// Invokes measured.
    pub invokes: u64,
    /// Checkpoints they wrote, as listed back from the database.
    pub checkpoints: u64,
    /// Growth of the database over those invokes.
    pub database_bytes: u64,
    /// Wall time of those invokes.
    pub elapsed: Duration,
}

impl Storage {
    /// Checkpoints per invoke.
    pub fn checkpoints_per_invoke(&self) -> f64 {
        self.checkpoints as f64 / self.invokes.max(1) as f64
    }

    /// Database bytes per checkpoint written (one checkpoint per step, plus the input's).
    pub fn bytes_per_step(&self) -> f64 {
        self.database_bytes as f64 / self.checkpoints.max(1) as f64
    }

    /// Mean µs per invoke of the fixed run.
    pub fn us_per_invoke(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e6 / self.invokes.max(1) as f64
    }
}

/// Runs B4 (default observers) `invokes` times, each on a new thread, into a new database at
/// `path`, checks every result and the checkpoints written, and reports the database's growth.
pub async fn b4_storage(path: &Path, durability: Durability, invokes: u64) -> Result<Storage, String> {
    let checkpointer = open_sqlite(path).await?;
    let before = database_bytes(&checkpointer).await?;
    let app = chain100_checkpointed(Telemetry::Defaults, checkpointer.clone());
    let threads = Threads::new();
    let mut thread_ids = Vec::new();
    let started = Instant::now();
    for _ in 0..invokes {
        let config = threads.next_config(durability);
        thread_ids.extend(config.thread_id.clone());
        let result = app.invoke(Counter::default(), config).await.map_err(|e| format!("B4: {e}"))?;
        check("B4 counter", result.state.counter, 100)?;
    }
    let elapsed = started.elapsed();
    let after = database_bytes(&checkpointer).await?;
    let mut checkpoints = 0;
    for thread_id in &thread_ids {
        let written = count_checkpoints(&checkpointer, thread_id).await?;
        check("B4 checkpoints per invoke", written, B4_CHECKPOINTS_PER_INVOKE)?;
        checkpoints += written;
    }
    Ok(Storage { invokes, checkpoints, database_bytes: after.saturating_sub(before), elapsed })
}

/// State of the large-state workload.
#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
pub struct Document {
    /// Each node appends one line.
    #[reduce(append)]
    pub lines: Vec<String>,
}

/// The large state's input: [`LARGE_STATE_LINES`] lines of [`LARGE_STATE_LINE_BYTES`] bytes.
pub fn large_state_input() -> Document {
    let filler = "x".repeat(LARGE_STATE_LINE_BYTES - 6);
    Document { lines: (0..LARGE_STATE_LINES).map(|i| format!("{i:05} {filler}")).collect() }
}

/// The line node `index` of the large-state chain appends.
pub fn large_state_line(index: usize) -> String {
    format!("node {index:03} appends this line")
}

/// Reads the database's size when the first node of the large-state chain runs. In `Sync`
/// durability the run's input checkpoint (the snapshot of the whole document) is committed
/// before that, so the growth from then to the end of the run is what the run's supersteps
/// wrote, without the snapshot.
#[derive(Clone, Debug)]
pub struct Probe {
    checkpointer: Arc<SqliteCheckpointer>,
    bytes: Arc<AtomicU64>,
}

impl Probe {
    /// A probe of `checkpointer`'s database.
    pub fn new(checkpointer: Arc<SqliteCheckpointer>) -> Self {
        Self { checkpointer, bytes: Arc::new(AtomicU64::new(0)) }
    }

    /// The size read when the first node last ran.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    async fn read(&self) -> Result<(), NodeError> {
        let bytes = self.checkpointer.database_bytes().await?;
        self.bytes.store(bytes, Ordering::Release);
        Ok(())
    }
}

/// [`LARGE_STATE_NODES`] nodes in a line, each appending [`large_state_line`], checkpointed
/// into the probe's checkpointer; the first node reads the database's size into the probe.
pub fn large_state_chain(probe: &Probe) -> CompiledGraph<Document> {
    let mut graph = StateGraph::<Document>::named("large_state");
    let names: Vec<String> = (0..LARGE_STATE_NODES).map(|i| format!("n{i}")).collect();
    for (index, name) in names.iter().enumerate() {
        let line = large_state_line(index);
        let probe = (index == 0).then(|| probe.clone());
        graph.add_node(name.as_str(), move |_: Arc<Document>| {
            let (line, probe) = (line.clone(), probe.clone());
            async move {
                if let Some(probe) = probe {
                    probe.read().await?;
                }
                Ok(DocumentUpdate::default().lines(vec![line]))
            }
        });
    }
    graph.add_edge(START, names[0].as_str());
    for pair in names.windows(2) {
        graph.add_edge(pair[0].as_str(), pair[1].as_str());
    }
    graph.add_edge(names[LARGE_STATE_NODES - 1].as_str(), END);
    let checkpointer: Arc<dyn Checkpointer> = probe.checkpointer.clone();
    compile(graph, Telemetry::Defaults).with_checkpointer(checkpointer)
}

/// What the large-state workload wrote.
#[derive(Clone, Copy, Debug)]
pub struct LargeStateStorage {
    /// Bytes of text in the input document.
    pub state_bytes: u64,
    /// Bytes of the line one step appends.
    pub item_bytes: u64,
    /// The largest checkpoint blob written: a snapshot of the whole document.
    pub snapshot_bytes: u64,
    /// Runs on new threads, each from the ~1 MB input: the growth over their supersteps
    /// (after each run's input snapshot) and the checkpoints those supersteps wrote.
    pub steps: Storage,
    /// Runs continuing the last thread (`invoke_update` with an empty update): the growth over
    /// whole runs, their input checkpoints included.
    pub continuing: Storage,
}

/// Runs the large-state chain in `Sync` durability on a new database at `path`: `threads`
/// runs on new threads from the ~1 MB input, measuring what their supersteps wrote (see
/// [`Probe`]), then `continuing` runs that continue the last thread from its state with an
/// empty update, measuring whole runs. Every run appends 100 lines; their count is checked.
///
/// A thread of up to 9 runs stays below the default chain of 1000 deltas between snapshots,
/// so no periodic snapshot falls into the measurement; one adds `snapshot_bytes / 1000` per
/// step, amortized.
pub async fn large_state_storage(path: &Path, threads: u64, continuing: u64) -> Result<LargeStateStorage, String> {
    let checkpointer = open_sqlite(path).await?;
    let probe = Probe::new(checkpointer.clone());
    let app = large_state_chain(&probe);
    let input = large_state_input();
    let state_bytes = input.lines.iter().map(|line| line.len() as u64).sum();
    let config = |thread_id: &Arc<str>| {
        RunConfig::thread(Arc::clone(thread_id)).recursion_limit(LARGE_STATE_NODES as u32).durability(Durability::Sync)
    };
    let fresh_lines = (LARGE_STATE_LINES + LARGE_STATE_NODES) as u64;

    let mut steps = Storage { invokes: threads, checkpoints: 0, database_bytes: 0, elapsed: Duration::ZERO };
    let mut thread_id: Arc<str> = Arc::from("");
    for index in 0..threads {
        thread_id = format!("large-{index:03}").into();
        let started = Instant::now();
        let result = app.invoke(input.clone(), config(&thread_id)).await.map_err(|e| format!("large state: {e}"))?;
        steps.elapsed += started.elapsed();
        check("large-state lines", result.state.lines.len() as u64, fresh_lines)?;
        steps.database_bytes += database_bytes(&checkpointer).await?.saturating_sub(probe.bytes());
        // Every checkpoint of the run but its input.
        steps.checkpoints += count_checkpoints(&checkpointer, &thread_id).await?.saturating_sub(1);
    }

    let checkpoints_before = count_checkpoints(&checkpointer, &thread_id).await?;
    let bytes_before = database_bytes(&checkpointer).await?;
    let started = Instant::now();
    for run in 1..=continuing {
        let result = app
            .invoke_update(DocumentUpdate::default(), config(&thread_id))
            .await
            .map_err(|e| format!("large state: {e}"))?;
        check("large-state lines", result.state.lines.len() as u64, fresh_lines + run * LARGE_STATE_NODES as u64)?;
    }
    let elapsed = started.elapsed();
    let continuing = Storage {
        invokes: continuing,
        checkpoints: count_checkpoints(&checkpointer, &thread_id).await?.saturating_sub(checkpoints_before),
        database_bytes: database_bytes(&checkpointer).await?.saturating_sub(bytes_before),
        elapsed,
    };

    let records = checkpointer
        .list(&thread_id, &ListOptions::new())
        .await
        .map_err(|e| format!("cannot list checkpoints: {e}"))?;
    let snapshot_bytes = records.iter().map(|record| record.blob.len() as u64).max().unwrap_or(0);
    Ok(LargeStateStorage {
        state_bytes,
        item_bytes: large_state_line(0).len() as u64,
        snapshot_bytes,
        steps,
        continuing,
    })
}

async fn database_bytes(checkpointer: &SqliteCheckpointer) -> Result<u64, String> {
    checkpointer.database_bytes().await.map_err(|e| format!("cannot read the database size: {e}"))
}

async fn count_checkpoints(checkpointer: &SqliteCheckpointer, thread_id: &str) -> Result<u64, String> {
    let records =
        checkpointer.list(thread_id, &ListOptions::new()).await.map_err(|e| format!("cannot list checkpoints: {e}"))?;
    Ok(records.len() as u64)
}
