//! [`Client`]: submit runs to the queue from any process, wait for them, cancel them.

use std::sync::Arc;
use std::time::Duration;

use dashflow_executor::{Durability, RunConfig, StateSnapshot};
use dashflow_graph::MergeableState;
use dashflow_queue::{Multitask, NewRun, Priority, RunKind, RunQueue, RunRecord, RunState, Wake};

use crate::registry::{Payload, RegisteredGraph};
use crate::stream::RunEvents;
use crate::{Result, WorkerError};

/// A run to submit: invoke, update or resume one thread of a registered graph.
#[derive(Debug)]
pub struct RunRequest<S: MergeableState> {
    payload: Payload<S>,
    kind: RunKind,
    thread_id: String,
    run_id: Option<String>,
    queue: String,
    tenant: String,
    priority: Priority,
    multitask: Multitask,
    durability: Durability,
    recursion_limit: Option<u32>,
    timeout: Option<Duration>,
    max_attempts: i32,
    event_stream: bool,
}

impl<S: MergeableState> std::fmt::Debug for Payload<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Invoke(_) => "Invoke",
            Self::Update(_) => "Update",
            Self::Resume { .. } => "Resume",
        })
    }
}

impl<S: MergeableState> RunRequest<S> {
    fn new(payload: Payload<S>, kind: RunKind) -> Self {
        Self {
            payload,
            kind,
            thread_id: String::new(),
            run_id: None,
            queue: "default".to_owned(),
            tenant: String::new(),
            priority: Priority::Normal,
            multitask: Multitask::Reject,
            durability: Durability::Sync,
            recursion_limit: None,
            timeout: None,
            max_attempts: 5,
            event_stream: true,
        }
    }

    /// Runs the graph from `START` with `input` as the state (`CompiledGraph::invoke`).
    pub fn invoke(input: S) -> Self {
        Self::new(Payload::Invoke(input), RunKind::Invoke)
    }

    /// Runs the graph from `START` on the thread's state after `update`
    /// (`CompiledGraph::invoke_update`).
    pub fn update(update: S::Update) -> Self {
        Self::new(Payload::Update(update), RunKind::Update)
    }

    /// Continues the thread, answering its pending interrupt with `answer`
    /// (`CompiledGraph::resume` with `Command::resume`).
    pub fn resume(answer: impl Into<serde_json::Value>) -> Self {
        // A `Value` always serializes.
        let answer = serde_json::to_string(&answer.into()).unwrap_or_default();
        Self::new(Payload::Resume { answer: Some(answer), update: None }, RunKind::Resume)
    }

    /// Continues the thread without an answer (after a crash, a failure or
    /// `interrupt_before`/`interrupt_after`).
    pub fn resume_without_answer() -> Self {
        Self::new(Payload::Resume { answer: None, update: None }, RunKind::Resume)
    }

    /// On thread `thread_id` (required).
    pub fn thread(mut self, thread_id: impl Into<String>) -> Self {
        self.thread_id = thread_id.into();
        self
    }

    /// With this run id (a fresh ULID by default); submitting one id twice submits one run.
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// In `queue` (`default`).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// For `tenant`: claims are fair across tenants of one priority.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// At `priority` (strict: every run of a higher priority is claimed first).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// What to do when the thread has an active run (reject by default).
    pub fn multitask(mut self, multitask: Multitask) -> Self {
        self.multitask = multitask;
        self
    }

    /// Checkpoint durability on the worker (`Sync` by default, so a takeover loses no step).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The run's recursion limit.
    pub fn recursion_limit(mut self, limit: u32) -> Self {
        self.recursion_limit = Some(limit);
        self
    }

    /// Fails the run when an attempt takes longer than `timeout` on its worker
    /// (`RunConfig::timeout`): the run ends `failed`, naming the limit and the step it was
    /// in, and is not tried again. Each attempt (after a worker died) has the whole limit.
    /// Milliseconds count; no limit by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Fails after `attempts` workers died holding it (5).
    pub fn max_attempts(mut self, attempts: i32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Keeps no event stream of this run: nobody can [`follow`](Client::follow) it, and its
    /// worker writes nothing but its checkpoints (streams cost a write a tenth of a second
    /// while the run emits events).
    pub fn without_event_stream(mut self) -> Self {
        self.event_stream = false;
        self
    }
}

/// Submits runs to a queue and follows them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    queue: Arc<dyn RunQueue>,
    poll: Duration,
}

/// A finished run with its final state.
#[derive(Debug)]
#[non_exhaustive]
pub struct Finished<S> {
    /// The run as the queue stores it (state, worker, attempts, error).
    pub run: RunRecord,
    /// The thread's state at the run's last checkpoint, when it has one.
    pub state: Option<StateSnapshot<S>>,
}

impl Client {
    /// A client of `queue`. `wait` listens for the queue's wake-ups and polls every second
    /// besides, for those it misses.
    pub fn new(queue: Arc<dyn RunQueue>) -> Self {
        Self { queue, poll: Duration::from_secs(1) }
    }

    /// Polls every `poll` while waiting.
    #[must_use]
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll.max(Duration::from_millis(1));
        self
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<dyn RunQueue> {
        &self.queue
    }

    /// Submits `request` for `graph`; returns the run id and whether it is queued or pending.
    /// The input is sealed with the graph's codec and state fingerprint.
    pub async fn submit<S: MergeableState>(
        &self,
        graph: &RegisteredGraph<S>,
        request: RunRequest<S>,
    ) -> Result<(String, RunState)> {
        let input = graph.seal(&request.payload)?;
        let durability = match request.durability {
            Durability::Async => "async",
            Durability::Exit => "exit",
            _ => "sync",
        };
        let mut config = serde_json::json!({ "durability": durability });
        if let Some(limit) = request.recursion_limit {
            config["recursion_limit"] = limit.into();
        }
        if let Some(timeout) = request.timeout {
            config["timeout_ms"] = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).into();
        }
        if !request.event_stream {
            config["event_stream"] = false.into();
        }
        let mut run = NewRun::new(graph.key().clone(), request.thread_id, request.kind, input)
            .queue(request.queue)
            .tenant(request.tenant)
            .priority(request.priority)
            .multitask(request.multitask)
            .max_attempts(request.max_attempts)
            .config(config);
        if let Some(run_id) = request.run_id {
            run = run.run_id(run_id);
        }
        let run_id = run.run_id.clone();
        let state = self.queue.submit(run).await?;
        Ok((run_id, state))
    }

    /// Waits until run `run_id` is over (completed, interrupted, failed or cancelled), at most
    /// `timeout`.
    pub async fn wait(&self, run_id: &str, timeout: Duration) -> Result<RunRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Wake-ups make waiting prompt; the poll is the guarantee when one is missed.
        let mut wakeups = self.queue.wakeups().await.ok().flatten();
        loop {
            let run = self
                .queue
                .get(run_id)
                .await?
                .ok_or_else(|| dashflow_queue::QueueError::NotFound { what: format!("run {run_id}") })?;
            if run.state.is_terminal() {
                return Ok(run);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(WorkerError::Timeout { run_id: run_id.to_owned(), after: timeout, state: run.state });
            }
            let until = (now + self.poll).min(deadline);
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    wake = dashflow_queue::next_wake(&mut wakeups) => match wake {
                        Some(Wake::Done(done)) if done != run_id => {}
                        Some(_) => break,
                        None => wakeups = None,
                    },
                }
            }
        }
    }

    /// Waits for run `run_id` and reads the thread's state at its last checkpoint.
    pub async fn wait_for_state<S: MergeableState>(
        &self,
        graph: &RegisteredGraph<S>,
        run_id: &str,
        timeout: Duration,
    ) -> Result<Finished<S>> {
        let run = self.wait(run_id, timeout).await?;
        let mut config = RunConfig::thread(run.thread_id.as_str()).checkpointer(self.queue.checkpointer());
        let Some(checkpoint) = run.checkpoint_id.as_deref() else { return Ok(Finished { run, state: None }) };
        let id = checkpoint.parse().map_err(|_| {
            WorkerError::Queue(dashflow_queue::QueueError::Corrupt {
                detail: format!("run {run_id} names checkpoint `{checkpoint}`, which is not a checkpoint id"),
            })
        })?;
        config = config.checkpoint_id(id);
        let app = graph.app().clone().with_checkpointer(self.queue.checkpointer());
        let state =
            app.get_state(&config).await.map_err(|source| WorkerError::Result { run_id: run_id.to_owned(), source })?;
        Ok(Finished { run, state })
    }

    /// Follows run `run_id`'s events from its first, live, from any process: the events its
    /// worker's run emits (tasks, steps, checkpoints, custom values written by nodes), in
    /// order, across takeovers. Ends once the run is over and every event was read.
    pub fn follow(&self, run_id: &str) -> Result<RunEvents> {
        self.follow_from(run_id, 0)
    }

    /// Follows run `run_id`'s events after item `after_seq` (a [`RunEvent::seq`](crate::RunEvent::seq) seen
    /// before): re-attaching yields exactly the items not yet seen.
    pub fn follow_from(&self, run_id: &str, after_seq: i64) -> Result<RunEvents> {
        RunEvents::new(Arc::clone(&self.queue), run_id, after_seq, self.poll)
    }

    /// Cancels run `run_id`: a queued or pending one at once, a running one at its worker's
    /// next heartbeat. Returns its state afterwards.
    pub async fn cancel(&self, run_id: &str) -> Result<RunState> {
        Ok(self.queue.cancel(run_id).await?)
    }

    /// Queues failed or cancelled run `run_id` again with `attempts` more claims allowed: it
    /// continues from its thread's last checkpoint, re-running only what did not finish, and
    /// applies its input (or update, or resume answer) only if no attempt did. Only a thread's
    /// latest run can be retried (see `RunQueue::retry`).
    pub async fn retry(&self, run_id: &str, attempts: i32) -> Result<RunState> {
        Ok(self.queue.retry(run_id, attempts).await?)
    }
}
