//! Graphs are code: every worker process registers the same compiled graphs by name and
//! version, and a run names the graph it needs by [`GraphKey`].

use std::sync::Arc;

use async_trait::async_trait;
use dashflow_checkpoint::{Checkpointer, ListOptions, open, seal};
use dashflow_executor::{CompiledGraph, Durability, Error as RunError, ExecutionResult, RunConfig, RunStatus};
use dashflow_graph::{Command, GraphState, MergeableState};
use dashflow_queue::{ClaimedRun, Finish, GraphKey, RunState};
use dashflow_telemetry::{Report, RunId};
use serde::{Deserialize, Serialize};

use crate::WorkerError;
use crate::stream::RunEventSink;

/// What a queued run carries, sealed with the graph's codec and state fingerprint, so that a
/// worker whose state type differs refuses it (`VersionMismatch`) instead of misreading it.
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "", deserialize = ""))]
pub(crate) enum Payload<S: GraphState> {
    Invoke(S),
    Update(S::Update),
    /// The answer as JSON text: bincode cannot carry a `serde_json::Value` itself.
    Resume {
        answer: Option<String>,
        update: Option<S::Update>,
    },
}

/// A compiled graph under a name and version: what a worker runs and a client submits to.
///
/// Its [`GraphKey`] is `name@version#hash`, the hash covering the graph's shape (its schema:
/// nodes, edges) and its state's schema fingerprint: a worker built from other code has
/// another key, and never claims the run.
pub struct RegisteredGraph<S: MergeableState> {
    key: GraphKey,
    app: CompiledGraph<S>,
}

impl<S: MergeableState> Clone for RegisteredGraph<S> {
    fn clone(&self) -> Self {
        Self { key: self.key.clone(), app: self.app.clone() }
    }
}

impl<S: MergeableState> std::fmt::Debug for RegisteredGraph<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredGraph").field("key", &self.key).finish()
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike std's hasher.
fn fnv(bytes: impl IntoIterator<Item = u8>, seed: u64) -> u64 {
    bytes.into_iter().fold(seed, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

impl<S: MergeableState> RegisteredGraph<S> {
    /// `app` as graph `name` at `version`. The app needs no checkpointer: each run gets the
    /// one fenced by its lease.
    pub fn new(name: &str, version: &str, app: CompiledGraph<S>) -> Self {
        // A schema is plain data: serializing it cannot fail.
        let shape = serde_json::to_string(app.schema()).unwrap_or_default();
        let hash = fnv(app.state_fingerprint().to_le_bytes(), fnv(shape.into_bytes(), 0xcbf2_9ce4_8422_2325));
        Self { key: GraphKey::new(name, version, hash), app }
    }

    /// The key runs of this graph carry.
    pub fn key(&self) -> &GraphKey {
        &self.key
    }

    /// The compiled graph.
    pub fn app(&self) -> &CompiledGraph<S> {
        &self.app
    }

    pub(crate) fn seal(&self, payload: &Payload<S>) -> Result<Vec<u8>, WorkerError> {
        seal(self.app.codec(), self.app.state_fingerprint(), payload).map_err(WorkerError::Input)
    }

    fn open(&self, blob: &[u8]) -> Result<Payload<S>, WorkerError> {
        open(blob, self.app.state_fingerprint()).map_err(WorkerError::Input)
    }
}

/// How a run a worker held ended, as the worker reports it to the queue.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunEnd {
    /// It ended: finish it.
    Finished(Finish),
    /// The storage was unavailable: give it back to the queue for another attempt.
    Unavailable(String),
}

/// A registered graph with its state type erased, so one worker runs graphs of many types.
#[async_trait]
pub trait RunnableGraph: Send + Sync + 'static {
    /// The key the graph's runs carry.
    fn key(&self) -> &GraphKey;

    /// Runs `run` to its end, checkpointing through `checkpointer` (fenced by the run's lease)
    /// and telling `events` (the run's event stream, when the worker keeps one) what happens.
    /// A retried run (a takeover) continues from the thread's checkpoints and never applies its
    /// input, update or resume answer twice.
    async fn execute(
        &self,
        run: &ClaimedRun,
        checkpointer: Arc<dyn Checkpointer>,
        events: Option<RunEventSink>,
    ) -> RunEnd;
}

/// Whether the thread has a checkpoint written by run `run_id` (of `source`, when given).
async fn applied(checkpointer: &dyn Checkpointer, thread_id: &str, run_id: RunId, source: Option<&str>) -> bool {
    let mut options = ListOptions::new().metadata("run_id", run_id.to_string()).limit(1);
    if let Some(source) = source {
        options = options.metadata("source", source);
    }
    checkpointer.list(thread_id, &options).await.is_ok_and(|found| !found.is_empty())
}

fn durability(config: &serde_json::Value) -> Durability {
    match config.get("durability").and_then(serde_json::Value::as_str) {
        Some("async") => Durability::Async,
        Some("exit") => Durability::Exit,
        _ => Durability::Sync,
    }
}

fn ended<S>(result: Result<ExecutionResult<S>, RunError>) -> RunEnd {
    match result {
        Ok(result) => {
            let checkpoint = result.checkpoint_id.map(|id| id.to_string());
            let state = match result.status {
                RunStatus::Interrupted { .. } => RunState::Interrupted,
                _ => RunState::Completed,
            };
            RunEnd::Finished(Finish::new(state, checkpoint))
        }
        Err(RunError::Checkpoint(error)) if error.is_retryable() => {
            RunEnd::Unavailable(Report(&RunError::Checkpoint(error)).to_string())
        }
        // A fenced write is a `ThreadBusy` here; the finish that follows is fenced too, so it
        // only ends the run when the thread was busy for another reason.
        Err(error) => RunEnd::Finished(Finish::failed(Report(&error).to_string(), None)),
    }
}

#[async_trait]
impl<S: MergeableState> RunnableGraph for RegisteredGraph<S> {
    fn key(&self) -> &GraphKey {
        &self.key
    }

    async fn execute(
        &self,
        run: &ClaimedRun,
        checkpointer: Arc<dyn Checkpointer>,
        events: Option<RunEventSink>,
    ) -> RunEnd {
        let lease = &run.lease;
        let Ok(run_id) = lease.run_id.parse::<RunId>() else {
            let error = format!("run id `{}` is not a ULID; submit runs through the client", lease.run_id);
            return RunEnd::Finished(Finish::failed(error, None));
        };
        let payload = match self.open(&run.input) {
            Ok(payload) => payload,
            Err(error) => return RunEnd::Finished(Finish::failed(Report(&error).to_string(), None)),
        };
        let mut config = RunConfig::thread(lease.thread_id.as_str())
            .run_id(run_id)
            .durability(durability(&run.config))
            .checkpointer(Arc::clone(&checkpointer))
            // The run log and `dashflow runs list` then tell attempts and their workers apart.
            .tag(format!("worker={}", lease.worker_id))
            .tag(format!("attempt={}", run.attempt))
            .tag(format!("epoch={}", lease.epoch));
        if let Some(sink) = events {
            config = config.callback(sink);
        }
        if let Some(limit) = run.config.get("recursion_limit").and_then(serde_json::Value::as_u64) {
            config = config.recursion_limit(u32::try_from(limit).unwrap_or(u32::MAX));
        }
        if let Some(ms) = run.config.get("timeout_ms").and_then(serde_json::Value::as_u64) {
            config = config.timeout(std::time::Duration::from_millis(ms));
        }
        let thread = lease.thread_id.as_str();
        let app = &self.app;
        // A run no claim started before has stored nothing: no need to look.
        let retried = !run.first_claim;
        let result = match payload {
            // A retried run whose input is stored continues from the thread's checkpoint.
            Payload::Invoke(_) | Payload::Update(_)
                if retried && applied(&*checkpointer, thread, run_id, Some("input")).await =>
            {
                app.resume(Command::new(), config).await
            }
            Payload::Invoke(input) => app.invoke(input, config).await,
            Payload::Update(update) => app.invoke_update(update, config).await,
            Payload::Resume { answer, update } => {
                let update = match update {
                    Some(_) if retried && applied(&*checkpointer, thread, run_id, Some("update")).await => None,
                    update => update,
                };
                let answer = match answer.map(|text| serde_json::from_str::<serde_json::Value>(&text)).transpose() {
                    Ok(answer) => answer,
                    Err(error) => {
                        let error = format!("the resume answer is not JSON: {error}");
                        return RunEnd::Finished(Finish::failed(error, None));
                    }
                };
                // An earlier attempt that answered and went on marked its checkpoints with
                // the run id: the answer is not given twice.
                let answered = answer.is_some()
                    && retried
                    && (applied(&*checkpointer, thread, run_id, Some("loop")).await
                        || applied(&*checkpointer, thread, run_id, Some("exit")).await);
                let mut command = match answer {
                    Some(answer) if !answered => Command::resume(answer),
                    _ => Command::new(),
                };
                if let Some(update) = update {
                    command = command.with_update(update);
                }
                app.resume(command, config).await
            }
        };
        ended(result)
    }
}
