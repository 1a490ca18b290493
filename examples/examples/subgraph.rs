//! Subgraphs: compiled graphs used as nodes of another graph.
//!
//! - `research` has its own state (`Research`). The parent uses it twice, in parallel, through
//!   `Subgraph::mapped`: one closure maps the parent's state into a fresh `Research`, another
//!   maps the finished `Research` back into an update of the parent.
//! - `editing` works on the parent's own state (`Briefing`), so the compiled graph is passed
//!   to `add_node` as it is: its whole run becomes one update of the parent.
//!
//! Values the nested nodes emit reach the parent's stream, tagged with the nesting depth.
//!
//! ```text
//! cargo run --release --example subgraph
//! ```
#![allow(clippy::print_stdout, reason = "examples print their results")]

use dashflow::prelude::*;

/// A tiny offline knowledge base: (keyword, fact).
const FACTS: &[(&str, &str)] = &[
    ("products", "Acme sells anvils, rockets and industrial magnets"),
    ("products", "its best seller is the giant rubber band"),
    ("competitors", "Ajax Corp undercuts Acme on anvils by 20%"),
    ("competitors", "Wile E. Supplies ships faster in the southwest"),
    ("competitors", "no rival offers Acme's catalogue of explosives"),
];

// ---- The research subgraph: its own state and nodes. ----

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Research {
    question: String,
    #[reduce(append)]
    facts: Vec<String>,
    answer: String,
}

async fn search(research: Arc<Research>, ctx: NodeContext) -> Result<ResearchUpdate> {
    let facts: Vec<String> = FACTS
        .iter()
        .filter(|(keyword, _)| research.question.contains(keyword))
        .map(|(_, fact)| (*fact).to_owned())
        .collect();
    ctx.emit(json!({ "progress": format!("{} fact(s) for {:?}", facts.len(), research.question) })).await;
    Ok(ResearchUpdate::default().facts(facts))
}

async fn answer(research: Arc<Research>) -> Result<ResearchUpdate> {
    Ok(ResearchUpdate::default().answer(format!("{}: {}.", research.question, research.facts.join("; "))))
}

fn research_graph() -> Result<CompiledGraph<Research>, dashflow::Error> {
    let mut graph = StateGraph::<Research>::named("research");
    graph
        .add_node("search", search)
        .add_node("answer", answer)
        .add_edge(START, "search")
        .add_edge("search", "answer")
        .add_edge("answer", END);
    graph.compile()
}

// ---- The parent graph. ----

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Briefing {
    company: String,
    /// The two research branches run in parallel, so they append rather than overwrite.
    #[reduce(append)]
    sections: Vec<String>,
    text: String,
}

/// A node that runs `research` on one aspect of the company.
fn research_on(research: &CompiledGraph<Research>, aspect: &'static str) -> Subgraph<Briefing, Research> {
    Subgraph::mapped(
        research.clone(),
        move |briefing: &Briefing| Research {
            question: format!("{} {aspect}", briefing.company),
            ..Research::default()
        },
        |research: Research| BriefingUpdate::default().sections(vec![research.answer]),
    )
}

async fn assemble(briefing: Arc<Briefing>) -> Result<BriefingUpdate> {
    let body: Vec<String> = briefing.sections.iter().map(|section| format!("* {section}")).collect();
    Ok(BriefingUpdate::default().text(format!("Briefing: {}\n{}", briefing.company, body.join("\n"))))
}

async fn sign(briefing: Arc<Briefing>, ctx: NodeContext) -> Result<BriefingUpdate> {
    ctx.emit(json!({ "progress": "signing off" })).await;
    Ok(BriefingUpdate::default().text(format!("{}\n-- the research desk", briefing.text)))
}

/// Editing works on the parent's own state: two steps that the parent sees as one update.
fn editing_graph() -> Result<CompiledGraph<Briefing>, dashflow::Error> {
    let mut graph = StateGraph::<Briefing>::named("editing");
    graph
        .add_node("assemble", assemble)
        .add_node("sign", sign)
        .add_edge(START, "assemble")
        .add_edge("assemble", "sign")
        .add_edge("sign", END);
    graph.compile()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One compiled research graph serves both branches, concurrently.
    let research = research_graph()?;
    let mut graph = StateGraph::<Briefing>::named("briefing");
    graph
        .add_node("products", research_on(&research, "products"))
        .add_node("competitors", research_on(&research, "competitors"))
        .add_node("edit", editing_graph()?)
        .add_parallel_edges(START, ["products", "competitors"])
        .add_join(["products", "competitors"], "edit")
        .add_edge("edit", END);
    let app = graph.compile()?;

    let input = Briefing { company: "Acme".into(), ..Briefing::default() };
    let config = RunConfig::new().stream_modes([StreamMode::Updates, StreamMode::Custom]);
    let mut events = app.stream(input, config);
    while let Some(event) = events.next().await {
        match event? {
            StreamEvent::Custom(custom) => {
                let progress = custom.value["progress"].as_str().unwrap_or_default();
                println!("  depth {} {:<7} ... {progress}", custom.run.depth, custom.node);
            }
            StreamEvent::Updates { step, node, update } => {
                let change = match (&update.sections, &update.text) {
                    (Some(sections), _) => format!("adds {} section(s)", sections.len()),
                    (None, Some(text)) => format!("writes the text ({} lines)", text.lines().count()),
                    (None, None) => "changes nothing".to_owned(),
                };
                println!("  step {step} {node:<11} {change}");
            }
            _ => {}
        }
    }
    let result = events.result().await?;
    println!("\n{}\n", result.state.text);
    println!("parent nodes: {}", result.nodes_executed().collect::<Vec<_>>().join(", "));
    Ok(())
}
