//! The runs in progress in this process, for live introspection.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::run_map::RunIdMap;
use crate::{Event, EventBatch, EventCallback, EventKind, Interest, RunIds};

/// One run in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LiveRun {
    /// The run's place in the execution stack.
    pub run: RunIds,
    /// The graph.
    pub graph: Arc<str>,
    /// The thread, if any.
    pub thread_id: Option<Arc<str>>,
    /// When it started.
    pub started_at: SystemTime,
    /// The superstep in progress (0 before the first).
    pub step: u64,
    /// The nodes of the superstep in progress (or of the last one, between steps).
    pub running: Arc<[Arc<str>]>,
}

/// Tracks runs from their events: started, which step, which nodes are running, finished.
///
/// Register it as an event callback (the facade registers [`LiveRuns::global`] by default)
/// and ask [`LiveRuns::snapshot`] what is running. It takes a run's events in batches (see
/// [`EventCallback::batches`]), each under one short lock, so it is current whenever a run
/// waits; nothing is held across an await.
#[derive(Debug, Default)]
pub struct LiveRuns {
    runs: Mutex<Runs>,
}

impl LiveRuns {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide registry.
    pub fn global() -> Arc<LiveRuns> {
        static GLOBAL: OnceLock<Arc<LiveRuns>> = OnceLock::new();
        Arc::clone(GLOBAL.get_or_init(|| Arc::new(LiveRuns::new())))
    }

    /// The runs in progress, oldest first.
    pub fn snapshot(&self) -> Vec<LiveRun> {
        let mut runs: Vec<LiveRun> = self.runs.lock().values().cloned().collect();
        runs.sort_by_key(|run| (run.started_at, run.run.run_id));
        runs
    }
}

impl LiveRuns {
    /// Applies one event to the registry.
    fn apply(runs: &mut Runs, event: &Event) {
        match &event.kind {
            EventKind::RunStarted { graph, thread_id, .. } => {
                runs.insert(
                    event.run.run_id,
                    LiveRun {
                        run: event.run,
                        graph: Arc::clone(graph),
                        thread_id: thread_id.clone(),
                        started_at: event.at,
                        step: 0,
                        running: Arc::from([]),
                    },
                );
            }
            EventKind::RunFinished { .. } => {
                runs.remove(&event.run.run_id);
            }
            EventKind::SuperstepStarted { step, nodes } => {
                Self::advance(runs, &event.run, *step, nodes, Seen::StepStart)
            }
            EventKind::TaskFinished { step, node, .. }
                if runs.get(&event.run.run_id).is_some_and(|live| *step > live.step) =>
            {
                Self::advance(runs, &event.run, *step, &Arc::from([Arc::clone(node)]), Seen::TaskEnd);
            }
            _ => {}
        }
    }

    /// Records that `run` stands at `step` running `nodes`, as `seen` shows. A task's end moves
    /// a run only to a later step: in a batch a step of one task may show only as its task's
    /// end (see `EventCallback::batches`).
    fn advance(runs: &mut Runs, run: &RunIds, step: u64, nodes: &Arc<[Arc<str>]>, seen: Seen) {
        if let Some(live) = runs.get_mut(&run.run_id)
            && (seen == Seen::StepStart || step > live.step)
        {
            live.step = step;
            live.running = Arc::clone(nodes);
        }
    }
}

type Runs = RunIdMap<LiveRun>;

impl EventCallback for LiveRuns {
    fn on_event(&self, event: &Event) {
        Self::apply(&mut self.runs.lock(), event);
    }

    fn name(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed("live runs")
    }

    /// Runs and supersteps are enough: a step's nodes are the ones running.
    fn interest(&self) -> Interest {
        Interest { runs: true, steps_started: true, ..Interest::NONE }
    }

    /// A tight loop of steps then takes one lock per batch, not one per step.
    fn batches(&self) -> bool {
        true
    }

    fn on_batch(&self, batch: &EventBatch) {
        // The events kept whole in order (runs starting and ending), then where each run's
        // last compact step says it stands, unless a kept event said so later: a tight loop
        // batches dozens of steps, of which only the last matters here.
        let mut runs = self.runs.lock();
        let mut later: Vec<(crate::RunId, u32)> = Vec::new();
        for (index, event) in batch.kept_events() {
            Self::apply(&mut runs, event);
            if matches!(event.kind, EventKind::SuperstepStarted { .. } | EventKind::TaskFinished { .. }) {
                later.push((event.run.run_id, index));
            }
        }
        for last in batch.last_steps() {
            if !later.iter().any(|&(run, index)| run == last.run.run_id && index > last.index) {
                let seen = if last.ended { Seen::TaskEnd } else { Seen::StepStart };
                Self::advance(&mut runs, last.run, last.step, last.nodes, seen);
            }
        }
    }
}

/// What showed a run at a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// The step's start.
    StepStart,
    /// The end of one of its tasks.
    TaskEnd,
}

impl EventCallback for Arc<LiveRuns> {
    fn on_event(&self, event: &Event) {
        LiveRuns::on_event(self, event);
    }

    fn name(&self) -> std::borrow::Cow<'_, str> {
        LiveRuns::name(self)
    }

    fn interest(&self) -> Interest {
        LiveRuns::interest(self)
    }

    fn batches(&self) -> bool {
        LiveRuns::batches(self)
    }

    fn on_batch(&self, batch: &EventBatch) {
        LiveRuns::on_batch(self, batch);
    }
}
