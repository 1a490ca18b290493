//! Map-reduce with `Send`: summarise several documents in parallel, then combine the summaries
//! into one digest.
//!
//! A send edge's router returns one `dashflow::Send` per document. Each send becomes a task of
//! the same superstep that reads its own input instead of the shared state; their updates
//! merge through the `append` reducer, in the order the router returned them.
//!
//! ```text
//! cargo run --release --example map_reduce
//! ```
#![allow(clippy::print_stdout, reason = "examples print their results")]

use std::time::Duration;

use dashflow::prelude::*;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Doc {
    title: String,
    body: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Digest {
    docs: Vec<Doc>,
    /// The document one `summarize` task works on: set only in each `Send`'s own input.
    doc: Option<Doc>,
    #[reduce(append)]
    summaries: Vec<String>,
    digest: String,
}

/// The map step: one `summarize` task per document, each with the document as its input.
fn one_task_per_doc(state: &Digest) -> Vec<dashflow::Send<Digest>> {
    state
        .docs
        .iter()
        .map(|doc| dashflow::Send::new("summarize", Digest { doc: Some(doc.clone()), ..Digest::default() }))
        .collect()
}

/// A stand-in for a model call (100 ms): the first sentence and a word count.
async fn summarize(task: Arc<Digest>) -> Result<DigestUpdate> {
    let doc = task.doc.as_ref().ok_or_else(|| NodeError::permanent_msg("summarize only runs through Send"))?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first = doc.body.split_inclusive(". ").next().unwrap_or_default().trim();
    let words = doc.body.split_whitespace().count();
    Ok(DigestUpdate::default().summaries(vec![format!("{}: {first} ({words} words)", doc.title)]))
}

/// The reduce step: runs once, after every `summarize` task of the superstep has finished.
async fn combine(state: Arc<Digest>) -> Result<DigestUpdate> {
    let lines: Vec<String> = state.summaries.iter().map(|summary| format!("- {summary}")).collect();
    Ok(DigestUpdate::default().digest(format!("Digest of {} documents\n{}", lines.len(), lines.join("\n"))))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut graph = StateGraph::<Digest>::named("digest");
    graph
        .add_node("summarize", summarize)
        .add_node("combine", combine)
        .add_send_edges(START, one_task_per_doc, ["summarize"])
        .add_edge("summarize", "combine")
        .add_edge("combine", END);
    let app = graph.compile()?;

    let result = app.invoke(Digest { docs: documents(), ..Digest::default() }, RunConfig::new()).await?;
    println!("{}\n", result.state.digest);

    for step in 1..=result.steps {
        let tasks: Vec<&str> = result.nodes.iter().filter(|run| run.step == step).map(|run| run.node).collect();
        println!("step {step}: {}", tasks.join(", "));
    }
    println!(
        "{} documents at 100 ms each, summarised side by side: the run took {:.0?}",
        result.state.docs.len(),
        result.duration
    );
    Ok(())
}

fn documents() -> Vec<Doc> {
    [
        (
            "Release notes",
            "Version 2.4 adds CSV export. Imports are twice as fast. Three crashes on startup are fixed.",
        ),
        (
            "Incident report",
            "Checkout was down for 14 minutes on Tuesday. A certificate expired. Renewal is now automated.",
        ),
        (
            "Customer survey",
            "Most customers rate onboarding highly. Pricing confuses small teams. Mobile support is the top request.",
        ),
        (
            "Hiring plan",
            "We open four engineering roles this quarter. Two are for the mobile team. Interviews start in May.",
        ),
        (
            "Security review",
            "No critical findings this quarter. Two dependencies need upgrades. Access reviews are on schedule.",
        ),
    ]
    .into_iter()
    .map(|(title, body)| Doc { title: title.into(), body: body.into() })
    .collect()
}
