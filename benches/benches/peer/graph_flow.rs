//! B1 and B3 in graph-flow 0.8.1, the Rust peer `cargo xtask bench` compares with in the
//! same run: the same shapes (a chain of 100 tasks; one task looping on itself through a
//! conditional edge until the counter reaches 1000), the counter in graph-flow's `Context`,
//! each run a fresh session executed in one call (`ContinueAndExecute`, no storage), as
//! DashFlow's runs have no checkpointer. graph-flow records no events.

use std::sync::Arc;

use async_trait::async_trait;
use graph_flow::{Context, Graph, GraphBuilder, NextAction, Session, Task, TaskResult};

/// Adds one to the context's counter and continues, or ends the run when it is the last.
struct Increment {
    id: String,
    last: bool,
}

#[async_trait]
impl Task for Increment {
    fn id(&self) -> &str {
        &self.id
    }

    async fn run(&self, context: Context) -> graph_flow::Result<TaskResult> {
        let counter: u64 = context.get("counter").unwrap_or(0);
        context.set("counter", counter + 1)?;
        let next = if self.last { NextAction::End } else { NextAction::ContinueAndExecute };
        Ok(TaskResult::new(None, next))
    }
}

/// Ends the run (B3's way out of its loop, as DashFlow's conditional edge goes to `END`).
struct Done;

#[async_trait]
impl Task for Done {
    fn id(&self) -> &str {
        "done"
    }

    async fn run(&self, _context: Context) -> graph_flow::Result<TaskResult> {
        Ok(TaskResult::new(None, NextAction::End))
    }
}

fn increment(id: String, last: bool) -> Arc<dyn Task> {
    Arc::new(Increment { id, last })
}

/// B1: 100 tasks in a line.
pub(crate) fn chain100() -> Graph {
    let names: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
    let mut builder = GraphBuilder::new("chain100").with_max_execution_steps(1_000);
    for (index, name) in names.iter().enumerate() {
        builder = builder.add_task(increment(name.clone(), index == names.len() - 1));
    }
    for pair in names.windows(2) {
        builder = builder.add_edge(pair[0].as_str(), pair[1].as_str());
    }
    or_panic(builder.set_start_task("n0").build())
}

/// B3: one task looping on itself until the counter reaches 1000.
pub(crate) fn loop1000() -> Graph {
    let builder = GraphBuilder::new("loop1000")
        .with_max_execution_steps(10_000)
        .add_task(increment("inc".to_owned(), false))
        .add_task(Arc::new(Done))
        .add_conditional_edge(
            "inc",
            |context: &Context| context.get::<u64>("counter").unwrap_or(0) < 1000,
            "inc",
            "done",
        )
        .set_start_task("inc");
    or_panic(builder.build())
}

/// Runs `graph` once from its start task on a new session; returns the final counter.
pub(crate) async fn invoke(graph: &Graph, start: &str) -> u64 {
    let mut session = Session::new_from_task("bench".to_owned(), start);
    or_panic(graph.execute_session(&mut session).await);
    session.context.get("counter").unwrap_or(0)
}

fn or_panic<T>(result: graph_flow::Result<T>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("graph-flow: {error}"),
    }
}
