//! The DashFlow executor: `CompiledGraph<S>` and the superstep loop behind every run.
//!
//! A run proceeds in supersteps. The frontier's tasks all read the same state snapshot and
//! run concurrently (async tasks polled together on the run's own task, CPU-bound and
//! blocking ones on threads of their own, or every task on a custom [`Scheduler`]); their
//! updates merge in frontier order, then the edges of the finished nodes give the next
//! frontier. `invoke`, `invoke_sequential`, `stream` and subgraph nodes all drive this one loop.
//!
//! ```
//! use std::sync::Arc;
//! use dashflow_executor::{CompiledGraph, RunConfig};
//! use dashflow_graph::{GraphState, NodeError, StateGraph, END, START};
//!
//! #[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, GraphState)]
//! struct Tally {
//!     #[reduce(add)]
//!     total: u64,
//! }
//!
//! async fn add_one(_: Arc<Tally>) -> Result<TallyUpdate, NodeError> {
//!     Ok(TallyUpdate::default().total(1u64))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), dashflow_executor::Error> {
//! let mut graph = StateGraph::<Tally>::new();
//! graph
//!     .add_node("left", add_one)
//!     .add_node("right", add_one)
//!     .add_parallel_edges(START, ["left", "right"])
//!     .add_edge("left", END)
//!     .add_edge("right", END);
//! let app = CompiledGraph::new(graph.build()?);
//! let result = app.invoke(Tally::default(), RunConfig::new()).await?;
//! assert_eq!(result.state.total, 2);
//! # Ok(())
//! # }
//! ```
//!
//! This crate has no feature flags.
//!
//! # Where things are
//!
//! - `compiled.rs`: [`CompiledGraph`], its settings, and how a run is launched (fresh, from
//!   an update, resumed); `observer.rs` the observers it lists; `config.rs` [`RunConfig`].
//! - `run/`: one run, split as LangGraph splits its pregel loop: `loop.rs` drives it step by
//!   step and is the one place its events are reported; `algo.rs` the routing algorithm (next
//!   frontier, joins, `Send`, `Command` gotos; pure, unit-tested without a hub); `runner.rs`
//!   runs a frontier's tasks (async ones polled on the run's task, the others spawned, all
//!   dropped with the run); `task.rs` the one task runner (attempts, timeouts whose late
//!   results are discarded, backoff, panics caught).
//! - `stream.rs`: [`RunStream`], which drives the run as it is polled; `hub.rs` fans events out
//!   to sinks and the stream; `batcher.rs` the buffer of batching sinks (one per run and its
//!   subgraph runs, handed over when the run waits, ends or fills).
//! - `subgraph.rs`: compiled graphs as nodes, and where a subgraph run under a durable parent
//!   starts (its own namespace per parent task id, tied to the parent checkpoint its step
//!   started from).
//! - `durable.rs` writes checkpoints (see its module docs for what is stored when);
//!   `payload.rs` is what blobs hold; `schema.rs` traces a state type's schema once;
//!   `evolve.rs` reads blobs of older shapes and migrations; `inspect.rs` is `get_state`,
//!   history and `update_state` (and their subgraph forms); `retention.rs` prunes threads.
//!
//! [`Scheduler`]: dashflow_scheduler::Scheduler

mod batcher;
mod compiled;
mod config;
mod durable;
mod error;
mod evolve;
mod hub;
mod inspect;
mod observer;
mod payload;
mod result;
mod retention;
mod run;
mod schema;
mod stream;
mod subgraph;
mod task;

pub use compiled::CompiledGraph;
pub use config::{Durability, RunConfig, StreamMode, StreamModes};
pub use error::{Error, Result};
pub use inspect::{SnapshotTask, StateSnapshot};
pub use observer::Observer;
pub use result::{ExecutionResult, NodeRun, NodeRuns, NodeRunsIter, RunStatus};
pub use stream::{CustomValue, RunStream, StreamEvent};
pub use subgraph::{Subgraph, SubgraphMarker};
