//! The web viewer, served from your own program (feature `ui`): the runs in the process's
//! WAL, and the threads of your compiled graphs with their states decoded by their real type,
//! whatever the codec. A person can resume a paused run, update a thread's state as a node
//! would, and fork a thread from an older checkpoint.
//!
//! ```no_run
//! # async fn demo(app: dashflow::CompiledGraph<MyState>) -> Result<(), dashflow::ui::UiError> {
//! use dashflow::ui::{self, ServeGraph};
//!
//! // Loopback only; the viewer's address is printed by the caller, here 127.0.0.1:7878.
//! ui::serve("127.0.0.1:7878".parse().unwrap(), [app.ui()]).await
//! # }
//! # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, dashflow::GraphState)]
//! # struct MyState { n: u32 }
//! ```
//!
//! `dashflow ui` (the CLI) serves the same pages over any home and checkpoint database, but
//! without your state types it shows states only where the codec is JSON, and cannot act.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use dashflow_checkpoint::{CheckpointId, Checkpointer};
use dashflow_executor::{CompiledGraph, RunConfig, RunStatus};
use dashflow_graph::{Command, GraphSchema, GraphState, MergeableState};
pub use dashflow_ui::{
    ActionError, Bind, Change, EVENTS_PAGE, Listener, MIN_TOKEN_LEN, RUNS_PAGE_DEFAULT, RUNS_PAGE_MAX, Reach,
    StateView, THREADS_PAGE, TIMELINE_PAGE, UiError, UiGraph, Viewer, diff,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Registers a compiled graph with a viewer: `Viewer::graph(app.ui())`.
pub trait ServeGraph {
    /// The graph as the viewer sees it.
    fn ui(&self) -> Arc<dyn UiGraph>;
}

impl<S> ServeGraph for CompiledGraph<S>
where
    S: MergeableState + Serialize + DeserializeOwned,
    S::Update: DeserializeOwned,
{
    fn ui(&self) -> Arc<dyn UiGraph> {
        Arc::new(Served(self.clone()))
    }
}

struct Served<S: GraphState>(CompiledGraph<S>);

fn action(what: &str, thread: &str, error: &dyn std::error::Error) -> ActionError {
    let mut text = format!("cannot {what} thread `{thread}`: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    ActionError(text)
}

fn config(thread: &str, checkpoint: Option<&str>) -> Result<RunConfig, ActionError> {
    let config = RunConfig::thread(thread);
    match checkpoint {
        None => Ok(config),
        Some(id) => {
            let id: CheckpointId = id.parse().map_err(|_| ActionError(format!("`{id}` is not a checkpoint id")))?;
            Ok(config.checkpoint_id(id))
        }
    }
}

#[async_trait]
impl<S> UiGraph for Served<S>
where
    S: MergeableState + Serialize + DeserializeOwned,
    S::Update: DeserializeOwned,
{
    fn name(&self) -> &str {
        self.0.name()
    }

    fn schema(&self) -> &GraphSchema {
        self.0.schema()
    }

    fn checkpointer(&self) -> Option<Arc<dyn Checkpointer>> {
        self.0.checkpointer().cloned()
    }

    async fn state(&self, thread: &str, checkpoint: Option<&str>) -> Result<Option<StateView>, ActionError> {
        let config = config(thread, checkpoint)?;
        let Some(snapshot) = self.0.get_state(&config).await.map_err(|error| action("read", thread, &error))? else {
            return Ok(None);
        };
        let state = serde_json::to_value(&snapshot.state).map_err(|error| {
            ActionError(format!("the state of thread `{thread}` does not serialize as JSON: {error}"))
        })?;
        Ok(Some(StateView::new(
            state,
            snapshot.next,
            snapshot.checkpoint_id.to_string(),
            snapshot.step,
            snapshot.interrupts,
        )))
    }

    async fn resume(&self, thread: &str, value: Option<Value>) -> Result<String, ActionError> {
        let command = value.map_or_else(Command::new, Command::resume);
        let result = self
            .0
            .resume(command, RunConfig::thread(thread))
            .await
            .map_err(|error| action("resume", thread, &error))?;
        Ok(match result.status {
            RunStatus::Completed => format!("completed after {} steps", result.steps),
            RunStatus::Interrupted { node, .. } => format!("paused again at {node}"),
            _ => "stopped".to_owned(),
        })
    }

    async fn update_state(
        &self,
        thread: &str,
        checkpoint: Option<&str>,
        update: Value,
        as_node: Option<&str>,
    ) -> Result<String, ActionError> {
        let update: S::Update = serde_json::from_value(update)
            .map_err(|error| ActionError(format!("the update does not fit the state's update type: {error}")))?;
        let config = config(thread, checkpoint)?;
        let id =
            self.0.update_state(&config, update, as_node).await.map_err(|error| action("update", thread, &error))?;
        Ok(id.to_string())
    }
}

/// A viewer of this process's WAL (under `DASHFLOW_HOME`, else `~/.dashflow`) with `graphs`
/// registered; their checkpointer gives the threads page its store.
pub fn viewer(graphs: impl IntoIterator<Item = Arc<dyn UiGraph>>) -> Result<Viewer, UiError> {
    let home = dashflow_wal::home_dir()
        .map_err(|error| UiError::Bind(format!("cannot find the DashFlow home for the viewer: {error}")))?;
    let viewer = Viewer::new(dashflow_wal::wal_dir(&home))?;
    Ok(graphs.into_iter().fold(viewer, Viewer::graph))
}

/// Serves [`viewer`]`(graphs)` on `addr`, which must be loopback (use [`Bind`] and
/// [`Viewer::serve`] for anything else), until the process ends or serving fails.
pub async fn serve(addr: SocketAddr, graphs: impl IntoIterator<Item = Arc<dyn UiGraph>>) -> Result<(), UiError> {
    let viewer = viewer(graphs)?;
    let listener = Bind::new(addr, Reach::LoopbackOnly, None)?.listen().await?;
    viewer.serve(listener, std::future::pending()).await
}
